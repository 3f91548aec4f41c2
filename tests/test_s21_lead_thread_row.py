"""A share does not rewrite the thread's row when only its last activity moved (#12).

Every Commit of a relationship wrote its :class:`~vrmproto.store.ThreadRecord` again — the
vendor's inbox, name, types… and ``last_activity_ms``, the one field that changed: on SQLite a
page of the ``threads`` b-tree in each of a share's two transactions (~2 of ~28 WAL frames a
share). The relationship's record, written by every Commit with a later ``updated_ms``, says
when it was last active as well; the thread's row is written when something else of it changes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from vrmproto import Identity
from vrmproto.client import DEFAULT_TERMS, Agent
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import Commit, MemoryStore, SQLiteStore
from vrmproto.testing.transport import MemoryTransport

URLS = ("http://hotel.test", "http://cars.test")
DAY_MS = 86_400_000


class Ticking:
    """A clock that moves 5 ms each time it is read: a person's commands, not a benchmark's
    (several Commits in one millisecond bump ``updated_ms`` past the clock, §12.7)."""

    def __init__(self) -> None:
        self.ms = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        self.ms += 5
        return self.ms


class Recording(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.commits: list[Commit] = []

    async def commit(self, c: Commit, **kw: object) -> None:  # type: ignore[override]
        self.commits.append(c)
        await super().commit(c, **kw)  # type: ignore[arg-type]


def vendors() -> dict[str, Endpoint]:
    return {u: Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name=u[7:12],
                        policy=ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS],
                                               name=u[7:12]))
            for u in URLS}  # fmt: skip


async def share(agent: Agent, url: str, value: str) -> None:
    d = await agent.share(url, {"email": value}, purposes=["delivery"], categories=["contact"],
                          expires_ms=time.time_ns() // 1_000_000 + DAY_MS)  # fmt: skip
    assert d.confirmed


async def test_a_share_writes_no_thread_row_and_the_order_of_activity_holds(
        tmp_path: Path) -> None:  # fmt: skip
    eps = vendors()
    store = Recording()
    transport = MemoryTransport(dict(eps))
    seed = os.urandom(32)
    clock = Ticking()
    agent = await Agent.open(store, seed, client=transport, clock=clock)
    try:
        for url in URLS:
            assert (await agent.connect(url)).status == "accepted"
        before = len(store.commits)
        await share(agent, URLS[0], "zoe@example.org")
        shared = store.commits[before:]
        assert len(shared) == 2  # the send, then the close
        assert all(c.relationships and not c.threads for c in shared)
        await share(agent, URLS[1], "zoe@example.org")
        assert [v.url for v in await agent.relationships()] == [URLS[1], URLS[0]]
        await share(agent, URLS[0], "zoe@example.org")
        assert [v.url for v in await agent.relationships()] == [URLS[0], URLS[1]]
        # something else of the thread changes: its row is written, as before
        transport.remove(URLS[1])
        d = await agent.share(URLS[1], {"email": "z@example.org"}, purposes=["delivery"],
                              categories=["contact"], expires_ms=time.time_ns() // 1_000_000
                              + DAY_MS)  # fmt: skip
        assert d.status == "queued"
    finally:
        await agent.close()
    # a fresh agent on the same store (another `vrm` command) sees the same order
    again = await Agent.open(store, seed, client=transport, clock=clock)
    try:
        assert [v.url for v in await again.relationships()] == [URLS[1], URLS[0]]
    finally:
        await again.close()
        for ep in eps.values():
            await ep.drain()


async def test_sqlite_a_share_does_not_write_the_threads_btree(tmp_path: Path) -> None:
    eps = vendors()
    store = await SQLiteStore.open(tmp_path / "agent.db", inline=True)
    agent = await Agent.open(store, os.urandom(32), client=MemoryTransport(dict(eps)))
    try:
        assert (await agent.connect(URLS[0])).status == "accepted"
        await share(agent, URLS[0], "first@example.org")
        ((root,),) = store._point_now(  # the threads table's root page
            "SELECT rootpage FROM sqlite_schema WHERE name = 'threads'", ())
        wal = tmp_path / "agent.db-wal"
        start = len(wal_pages(wal))
        for i in range(5):
            await share(agent, URLS[0], f"z{i}@example.org")
        pages = wal_pages(wal)[start:]
    finally:
        await agent.close()
        await store.close()
        for ep in eps.values():
            await ep.drain()
    assert len(pages) >= 10  # the shares were written (no checkpoint restarted the WAL)
    assert root not in pages  # (one page: the threads of one relationship fit its root)


def wal_pages(wal: Path) -> list[int]:
    """The page number of each frame of the WAL's current generation."""
    data = wal.read_bytes()
    page_size = int.from_bytes(data[8:12], "big")
    salts, out, at = data[16:24], [], 32
    while at + 24 + page_size <= len(data) and data[at + 8:at + 16] == salts:
        out.append(int.from_bytes(data[at:at + 4], "big"))
        at += 24 + page_size
    return out
