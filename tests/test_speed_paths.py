"""The message path made cheaper keeps what it promised (#12): no figures asserted here, only
the work each step does and what it leaves stored.

- A data.share costs the agent two Commits — the share persisted before it is sent, and the
  vendor's receipt with the outbox item's removal — and the second one also confirms the
  customer's note of the share (§5.3.1), which used to take a read and a third Commit.
- The SQLite store's point reads run on the calling thread and see every commit already made.
- A vendor takes the relationship it has just stored as it kept it, and rebuilds it from the
  store whenever the store holds anything else (another process of the same vendor wrote it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, Reply
from test_client import ServerVendor

from vrmproto import Identity
from vrmproto._envelope import Signed
from vrmproto.client import Agent, RetryPolicy
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import (
    Commit,
    HistoryEntry,
    MemoryStore,
    RelationshipRecord,
    SQLiteStore,
    StoreError,
)

YEAR_MS = 365 * 86_400_000


def in_a_year() -> int:
    return time.time_ns() // 1_000_000 + YEAR_MS


async def test_a_share_takes_two_commits_and_its_note_is_confirmed(tmp_path: Path) -> None:
    vendor = ServerVendor("Acme")
    await vendor.start()
    store = await SQLiteStore.open(tmp_path / "agent.db")
    agent = await Agent.open(store, os.urandom(32), retry=RetryPolicy(attempts=1))
    try:
        await agent.connect(vendor.url)
        before = store.stats.writes
        d = await agent.share("Acme", {"email": "ada@example.org"}, purposes=["delivery"],
                              categories=["contact"], expires_ms=in_a_year())  # fmt: skip
        assert d.confirmed
        assert store.stats.writes - before == 2
        (note,) = await agent.share_notes()
        assert note.share == d.msg_hash
        assert note.status == "confirmed"
        assert dict(note.fields) == {"email": "ada@example.org"}
        assert await agent.pending() == []
    finally:
        await agent.close()
        await store.close()
        await vendor.stop()


async def test_a_share_delivered_later_by_the_outbox_gets_its_note_confirmed() -> None:
    vendor = ServerVendor("Acme")
    await vendor.start()
    agent = await Agent.open(MemoryStore(), os.urandom(32), retry=RetryPolicy(attempts=1))
    try:
        await agent.connect(vendor.url)
        port = vendor.port
        await vendor.stop()
        d = await agent.share("Acme", {"email": "ada@example.org"}, purposes=["delivery"],
                              categories=["contact"], expires_ms=in_a_year())  # fmt: skip
        assert d.status == "queued"
        assert [n.status for n in await agent.share_notes()] == ["queued"]
        await vendor.start(port)
        run = await agent.run_outbox(now=time.time_ns() // 1_000_000 + 86_400_000)
        assert run.counts()["confirmed"] == 1
        assert [n.status for n in await agent.share_notes()] == ["confirmed"]
    finally:
        await agent.close()
        await vendor.stop()


async def test_sqlite_point_reads_see_each_commit_and_end_with_the_store(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    thread = os.urandom(16)
    assert await store.get_relationship(thread) is None
    for n in range(3):
        record = RelationshipRecord(thread, "vendor", bytes(32), bytes(32), "agreed",
                                    bytes([n]), "label", "", n)  # fmt: skip
        await store.commit(Commit(relationships=(record,)))
        assert await store.get_relationship(thread) == record  # read right after the commit
    await store.close()
    with pytest.raises(StoreError):
        await store.get_relationship(thread)


# -- the vendor keeps the relationships it just stored warm (server/_warm.py) ---------------


class CountingStore(MemoryStore):
    """A MemoryStore that counts the rebuilds of a relationship (its newest history row read)."""

    def __init__(self) -> None:
        super().__init__()
        self.head_reads = 0

    async def history_head(self, thread: bytes) -> HistoryEntry | None:
        self.head_reads += 1
        return await super().history_head(thread)


def vendor_endpoint(store: MemoryStore) -> Endpoint:
    return Endpoint(Identity(VENDOR_SEED), store=store,
                    policy=ReferencePolicy(accepts_terms=ACCEPTED))  # fmt: skip


async def send(ep: Endpoint, customer: Customer, msg: Signed[Any]) -> None:
    response = await ep.handle_inbox(msg.envelope)
    customer.absorb(Reply(response.status, response.body, dict(response.headers)), msg)


async def test_a_vendor_does_not_rebuild_the_relationship_it_just_stored() -> None:
    store = CountingStore()
    ep = vendor_endpoint(store)
    customer = Customer(Identity(VENDOR_SEED))
    await send(ep, customer, customer.offer(*ACCEPTED))
    await send(ep, customer, customer.share({"email": "a@b.c"}))
    before = store.head_reads
    for n in range(5):
        await send(ep, customer, customer.share({"email": f"{n}@b.c"}))
    assert store.head_reads == before
    assert len(await store.history(customer.thread)) == 15  # 7 messages, 7 receipts, 1 accept


async def test_a_relationship_changed_elsewhere_is_rebuilt_from_the_store() -> None:
    """Two endpoints on one store (two processes of one vendor): each message goes to the other
    one, which must see what the first stored, not what it kept itself."""
    store = CountingStore()
    one, two = vendor_endpoint(store), vendor_endpoint(store)
    customer = Customer(Identity(VENDOR_SEED))
    await send(one, customer, customer.offer(*ACCEPTED))
    for n in range(6):
        await send((two, one)[n % 2], customer, customer.share({"email": f"{n}@b.c"}))
    assert store.head_reads >= 6  # every step rebuilt: the record had moved on
    history = await store.history(customer.thread)
    assert [h.index for h in history] == list(range(15))
