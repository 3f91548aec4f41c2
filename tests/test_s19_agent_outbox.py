"""The agent's outbox keeps a thread's messages in order (spec §8.2, §12).

- :meth:`Outbox.enqueue` (the first half of a fan-out, ``vrm address set``) queued a message as
  a draft only behind an outbox item; behind stored drafts with nothing in flight (the message
  before them was dropped: :meth:`Sender._promote`) it signed the new message at once, ahead of
  the drafts queued before it, and the vendor received the thread's messages out of order.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from test_client import FakeVendor

from vrmproto import AddressUpdate, MasterSeed
from vrmproto.client import CustomerNode
from vrmproto.client._drafts import AddressDraft, encode_draft
from vrmproto.store import MemoryStore


@pytest.fixture
async def vendor() -> AsyncIterator[FakeVendor]:
    v = FakeVendor("Avis")
    await v.start()
    yield v
    await v.stop()


def update(city: str) -> AddressDraft:
    return AddressDraft(msg_id=os.urandom(16), fields={"city": city})


def address_ids(vendor: FakeVendor) -> list[bytes]:
    return [r.message.id for r in vendor.received if r.message.type == AddressUpdate.TYPE]


async def test_enqueue_queues_behind_drafts_with_nothing_in_flight(vendor: FakeVendor) -> None:
    store = MemoryStore()
    node = await CustomerNode.open(store, MasterSeed(os.urandom(32)))
    try:
        agent = node.agent
        thread = (await agent.connect(vendor.url)).thread
        # A draft waiting with nothing in flight before it, as a dropped message leaves one.
        earlier = update("Earlier")
        ledger = agent.outbox.ledger
        async with ledger.lock(thread):
            t = await ledger.load(thread)
            t.meta.queue(thread, earlier.KIND.value, encode_draft(earlier))
            await store.commit(ledger.commit((t,), 1))
            ledger.adopt(t)
        assert await store.outbox_all() == []
        later = update("Later")
        assert await agent.outbox.enqueue([(thread, later)]) == {}
        assert await store.outbox_all() == []  # nothing signed ahead of the earlier draft
        assert [d.kind for d in await store.drafts(thread)] == [earlier.KIND.value] * 2
        got = await agent.outbox.deliver(thread, later)
        assert got.status == "confirmed", got.error
        assert [d.msg_id for d in got.earlier] == [earlier.msg_id]
        assert address_ids(vendor) == [earlier.msg_id, later.msg_id]
    finally:
        await node.close()
        await store.close()
