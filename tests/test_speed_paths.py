"""The message path made cheaper keeps what it promised (#12): no figures asserted here, only
the work each step does and what it leaves stored.

- A data.share costs the agent two Commits — the share persisted before it is sent, and the
  vendor's receipt with the outbox item's removal — and the second one also confirms the
  customer's note of the share (§5.3.1), which used to take a read and a third Commit.
- The SQLite store's point reads run on the calling thread and see every commit already made.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from test_client import ServerVendor

from vrmproto.client import Agent, RetryPolicy
from vrmproto.store import Commit, MemoryStore, RelationshipRecord, SQLiteStore, StoreError

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
