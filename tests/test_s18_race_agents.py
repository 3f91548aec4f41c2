"""Several agents on one data directory send into one relationship (spec §11.11-2, §12).

A fan-out (``vrm address set``) stores each vendor's message first (:meth:`Outbox.enqueue`) and
then delivers it (:meth:`Outbox.deliver`), taking the thread's lock twice. Another agent on the
same store — another ``vrm`` process — may take the thread in between: it queues its own
update behind ours, and when our turn comes we deliver the thread's whole queue, its update
too. Its ``deliver`` then found nothing of its message left to deliver and said ``queued``
("the update waits in the outbox", exit 3, CI about 1 run in 10 under load) although the vendor
held it: nothing waited, and `vrm outbox run` had nothing to do. It now reads what became of
it from the store: confirmed with the vendor's receipt, or, if it left the history, dropped
with the reason.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from test_client import FakeVendor, now_ms

from vrmproto import AddressUpdate, MasterSeed, Problem, ProtocolError, open_envelope
from vrmproto.client import CustomerNode
from vrmproto.client._drafts import AddressDraft
from vrmproto.store import SQLiteStore


class RefusingVendor(FakeVendor):
    """Refuses (``invalid_field``, final) the messages whose ids are in ``refuse_ids``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.refuse_ids: set[bytes] = set()

    async def inbox(self, request: web.Request) -> web.Response:
        data = await request.read()  # read again by FakeVendor.inbox (aiohttp keeps it)
        try:
            msg = open_envelope(data, now=now_ms(), recipients=(self.key,))
        except ProtocolError:
            msg = None
        if msg is not None and msg.id in self.refuse_ids:
            self.refuse_next = Problem.INVALID_FIELD
        return await super().inbox(request)


@asynccontextmanager
async def two_agents(db: Path, vendor: FakeVendor) -> AsyncIterator[
        tuple[CustomerNode, CustomerNode, bytes]]:  # fmt: skip
    """Two nodes of one person on one SQLite file, as two ``vrm`` processes are, and the
    thread of their agreement with ``vendor``."""
    seed = MasterSeed(os.urandom(32))
    await vendor.start()
    a = await CustomerNode.open(await SQLiteStore.open(db), seed)
    b = await CustomerNode.open(await SQLiteStore.open(db), seed)
    try:
        thread = (await a.agent.connect(vendor.url)).thread
        yield a, b, thread
    finally:
        for node in (a, b):
            await node.close()
            await node.store.close()
        await vendor.stop()


def update(city: str) -> AddressDraft:
    return AddressDraft(msg_id=os.urandom(16), fields={"city": city})


def address_ids(vendor: FakeVendor) -> list[bytes]:
    return [r.message.id for r in vendor.received if r.message.type == AddressUpdate.TYPE]


async def test_an_update_another_agent_delivered_is_confirmed_not_queued(tmp_path: Path) -> None:
    vendor = FakeVendor("Avis")
    async with two_agents(tmp_path / "agent.db", vendor) as (a, b, thread):
        mine, theirs = update("A"), update("B")
        assert await a.agent.outbox.enqueue([(thread, mine)]) == {}
        assert await b.agent.outbox.enqueue([(thread, theirs)]) == {}  # a draft behind a's
        first = await a.agent.outbox.deliver(thread, mine)  # delivers b's too
        assert first.status == "confirmed"
        assert address_ids(vendor) == [mine.msg_id, theirs.msg_id]
        got = await b.agent.outbox.deliver(thread, theirs)
        assert got.status == "confirmed", got.error
        assert got.msg_id == theirs.msg_id
        assert got.receipt is not None
        assert got.receipt.body.ack == got.msg_hash
        history = await b.agent.history(thread)
        assert any(e.msg_hash == got.msg_hash and e.outgoing for e in history)
        assert await b.store.outbox_all() == []
        assert await b.store.drafts() == []
        assert (await b.agent.run_outbox()).deliveries == ()  # nothing was left to deliver
        assert await b.agent.compare_history(thread) is None


async def test_an_update_another_agent_had_refused_says_so_not_queued(tmp_path: Path) -> None:
    vendor = RefusingVendor("Avis")
    async with two_agents(tmp_path / "agent.db", vendor) as (a, b, thread):
        mine, theirs = update("A"), update("B")
        vendor.refuse_ids.add(theirs.msg_id)
        await a.agent.outbox.enqueue([(thread, mine)])
        await b.agent.outbox.enqueue([(thread, theirs)])
        first = await a.agent.outbox.deliver(thread, mine)
        assert first.status == "confirmed"
        got = await b.agent.outbox.deliver(thread, theirs)
        assert got.status == "dropped", got
        assert "invalid_field" in str(got.error)
        assert "another vrm" in str(got.error)
        assert await b.store.outbox_all() == []
        assert address_ids(vendor) == [mine.msg_id]
        assert await b.agent.compare_history(thread) is None


async def test_an_update_still_behind_an_undelivered_one_stays_queued(tmp_path: Path) -> None:
    """The new look-up never hides a message that does wait: the vendor is down, the update
    waits behind the other agent's, both stay in the outbox and go later."""
    vendor = FakeVendor("Avis")
    async with two_agents(tmp_path / "agent.db", vendor) as (a, b, thread):
        mine, theirs = update("A"), update("B")
        await a.agent.outbox.enqueue([(thread, mine)])
        await b.agent.outbox.enqueue([(thread, theirs)])
        vendor.fail_next = [(503, {})] * 20
        a.agent.outbox.retry = b.agent.outbox.retry = None
        got = await b.agent.outbox.deliver(thread, theirs, timeout_s=0.5)
        assert got.status == "queued", got
        assert len(await b.store.outbox_all()) == 1  # a's, with b's draft behind it
        assert len(await b.store.drafts()) == 1
        vendor.fail_next = []
        ran = await a.agent.outbox.retry_now()
        assert [d.msg_id for d in ran.deliveries] == [mine.msg_id, theirs.msg_id]
        assert address_ids(vendor) == [mine.msg_id, theirs.msg_id]
