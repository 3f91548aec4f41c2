"""What a step of the customer's agent reads again from the store, and what it need not.

:meth:`vrmproto.client._ledger.Ledger.load` takes the thread set aside at the lock back whole,
after one read of its relationship record, when that record is exactly the one our last Commit
wrote: every Commit of a thread writes a record with a later ``updated_ms`` than the stored one,
so any other ledger's Commit in between — even in the same millisecond, even one that changes
only the thread's drafts — is seen, and the thread is read afresh. The outbox's sender does not
decode again the header of a message it signed itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from vrmproto import Identity
from vrmproto.client import DEFAULT_TERMS, Agent, _sending
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore, RelationshipRecord
from vrmproto.testing.transport import MemoryTransport

URL = "http://acme.test"
T0 = 1_800_000_000_000
FIELDS = {"email": "ada@example.org"}


def frozen() -> int:
    """A clock that never moves: every step of every agent in the same millisecond."""
    return T0


class CountingStore(MemoryStore):
    """A MemoryStore that counts the reads a step makes of one thread."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def get_relationship(self, thread: bytes) -> RelationshipRecord | None:
        self.reads.append("relationship")
        return await super().get_relationship(thread)

    async def get_thread(self, thread: bytes) -> Any:
        self.reads.append("thread")
        return await super().get_thread(thread)

    async def drafts(self, thread: bytes | None = None) -> Any:
        self.reads.append("drafts")
        return await super().drafts(thread)

    async def save_points(self, thread: bytes) -> Any:
        self.reads.append("save_points")
        return await super().save_points(thread)

    async def history_head(self, thread: bytes) -> Any:
        self.reads.append("history_head")
        return await super().history_head(thread)

    async def outbox_for(self, thread: bytes) -> Any:
        self.reads.append("outbox")
        return await super().outbox_for(thread)


@dataclass
class World:
    store: CountingStore
    transport: MemoryTransport
    vendor: Endpoint
    seed: bytes

    async def agent(self, clock: Callable[[], int] = frozen) -> Agent:
        return await Agent.open(self.store, self.seed, client=self.transport, clock=clock)


@pytest.fixture
async def world() -> World:
    transport = MemoryTransport(clock=frozen)
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme",
                      clock=frozen)  # fmt: skip
    transport.add(URL, vendor)
    return World(CountingStore(), transport, vendor, os.urandom(32))


async def share(agent: Agent, thread: bytes, n: int) -> str:
    d = await agent.share(thread, {**FIELDS, "n": str(n)}, purposes=["delivery"],
                          categories=["contact"], expires_ms=T0 + 86_400_000)  # fmt: skip
    return d.status


async def test_a_share_after_a_share_reads_the_record_only(world: World) -> None:
    """The second share of a row takes the thread back after one read (its record); it reads
    no drafts, save points, thread record or history head, does not read the outbox before
    signing (the last step left it empty), nor after storing its item (the Commit that stored
    it said which id it got: ``commit_ids``)."""
    agent = await world.agent()
    thread = (await agent.connect(URL)).thread
    assert await share(agent, thread, 1) == "confirmed"
    world.store.reads.clear()
    assert await share(agent, thread, 2) == "confirmed"
    assert world.store.reads == ["relationship"]
    await agent.close()


async def test_a_commit_by_another_ledger_in_the_same_millisecond_is_seen(
    world: World,
) -> None:
    """Agent A queues a share behind one the vendor cannot take yet; agent B — another ledger
    on the same store, its clock in the same millisecond — drops A's queued share, a step that
    changes the thread's drafts and not its relationship's state. A's next step must see that:
    the dropped share is never sent."""
    a = await world.agent()
    b = await world.agent()
    thread = (await a.connect(URL)).thread
    world.transport.remove(URL)  # the vendor is down: the first share waits in the outbox
    assert await share(a, thread, 1) == "queued"
    assert await share(a, thread, 2) == "queued"  # a draft behind it
    (draft,) = [w for w in await b.waiting() if w.item_id is None]
    assert (await b.drop_waiting(draft.msg_id.hex())).status == "dropped"

    world.transport.add(URL, world.vendor)
    run = await a.retry_waiting()  # now, whatever the retry schedule says
    assert [d.status for d in run.deliveries] == ["confirmed"]
    assert await a.waiting() == []
    shared = [dict(n.fields)["n"] for n in await a.share_notes(thread)]
    assert shared == ["1"]
    await a.close()
    await b.close()


async def test_a_message_signed_here_is_delivered_without_decoding_its_header_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender keeps the id, expiry and type of what it signs: delivering it decodes none of
    our own envelopes (:func:`vrmproto.client._own.own_header`); an item signed elsewhere (here:
    by another agent on the store, delivered by this one) is still read from its bytes."""
    decoded: list[bytes] = []
    real = _sending.own_header

    def spy(envelope: bytes) -> Any:
        decoded.append(envelope)
        return real(envelope)

    monkeypatch.setattr(_sending, "own_header", spy)
    a = await world.agent()
    thread = (await a.connect(URL)).thread
    assert await share(a, thread, 1) == "confirmed"
    assert decoded == []

    world.transport.remove(URL)
    assert await share(a, thread, 2) == "queued"
    decoded.clear()
    b = await world.agent()
    world.transport.add(URL, world.vendor)
    run = await b.retry_waiting()
    assert [d.status for d in run.deliveries] == ["confirmed"]
    assert len(decoded) == 1
    await a.close()
    await b.close()


async def test_a_thread_changed_in_memory_and_not_committed_is_read_again(world: World) -> None:
    """A working copy that differs from what its last Commit stored — a step that failed
    half-way without dropping it from the cache — is not taken back: the next step reads the
    thread from the store, and what the store holds is what it works on."""
    agent = await world.agent()
    thread = (await agent.connect(URL)).thread
    assert await share(agent, thread, 1) == "confirmed"
    agent.ledger._cache[thread].meta.last_problem = "never stored"
    world.store.reads.clear()
    assert await share(agent, thread, 2) == "confirmed"
    assert {"thread", "drafts", "save_points", "history_head"} <= set(world.store.reads)
    stored = await world.store.get_thread(thread)
    assert stored is not None
    assert stored.last_problem == ""
    await agent.close()
