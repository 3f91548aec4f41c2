"""``commit_ids``: the library's stores say which ids they gave a Commit's outbox items (#12).

The agent's ``data.share`` stores its signed message in the outbox and then delivers it; it
needs the item's id for the Commit that closes it. The store that gave the id returns it
(:meth:`~vrmproto.store.SQLiteStore.commit_ids` and the same on the other stores), so the agent
does not read the outbox back after storing the item. These tests hold, on every store, that
the ids returned are those the outbox holds, in the order of ``outbox_add``, also when an item
was deleted before (ids are never reused) and when the Commit is refused (nothing returned,
nothing written); and that an agent whose store's ``commit`` was replaced (a wrapper that could
not say) reads the outbox back as before and still closes the right item.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _postgres
import pytest

from vrmproto import Identity
from vrmproto.client import DEFAULT_TERMS, Agent
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import (
    Commit,
    MemoryStore,
    Store,
    StoreConflict,
)
from vrmproto.testing.store_contract import T1, T2, entry, outbox, rel
from vrmproto.testing.transport import MemoryTransport

postgres_cluster = _postgres.postgres_cluster

STORES = ("memory", "sqlite", "sqlite-inline", "postgres")
URL = "http://acme.test"
YEAR_MS = 365 * 86_400_000


def time_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    kind, _, how = request.param.partition("-")
    async with _postgres.opened_store(request, tmp_path, kind, inline=how == "inline") as s:
        yield s


async def test_the_ids_returned_are_those_the_outbox_holds_in_order(store: Any) -> None:
    assert await store.commit_ids(Commit(relationships=(rel(),))) == ()
    first = await store.commit_ids(Commit(outbox_add=(outbox("a", 5),)))
    (a,) = await store.outbox_all()
    assert first == (a.item_id,)
    # the newest item deleted: the next ids are still new ones (never reused)
    ids = await store.commit_ids(Commit(
        outbox_done=(a.item_id,),
        outbox_add=(outbox("b", 9), outbox("c", 1, thread=T2), outbox("d", 3)),
    ))  # fmt: skip
    held = await store.outbox_all()
    assert ids == tuple(o.item_id for o in held)
    assert [o.destination for o in held] == ["b", "c", "d"]
    assert min(ids) > a.item_id
    assert len(set(ids)) == 3
    # with expect= too (the vendor's keyword): the ids of the Commit it let through
    more = await store.commit_ids(Commit(outbox_add=(outbox("e", 2),)), expect=rel())
    assert more == ((await store.outbox_all())[-1].item_id,)


async def test_a_refused_commit_returns_nothing_and_writes_nothing(store: Any) -> None:
    await store.commit(Commit(relationships=(rel(),), history=(entry(T1, 0),)))
    with pytest.raises(StoreConflict):
        await store.commit_ids(Commit(outbox_add=(outbox("a", 5),), history=(entry(T1, 0),)))
    assert await store.outbox_all() == []
    assert await store.commit_ids(Commit(outbox_add=(outbox("a", 5),))) == (
        (await store.outbox_all())[0].item_id,
    )


class Wrapped:
    """A store whose ``commit`` is a wrapper's: the agent cannot learn the ids from it."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.outbox_reads = 0

    async def commit(self, c: Commit) -> None:
        await self._inner.commit(c)

    async def outbox_for(self, thread: bytes) -> Any:
        self.outbox_reads += 1
        return await self._inner.outbox_for(thread)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize("wrapped", [False, True])
async def test_a_share_closes_the_item_it_queued(store: Any, wrapped: bool) -> None:
    """Each share is confirmed and leaves nothing in the outbox, on every store: the id the
    closing Commit deletes is the one the item got. Through a wrapper the agent reads the
    outbox back for it."""
    transport = MemoryTransport()
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme")
    transport.add(URL, vendor)
    used: Any = Wrapped(store) if wrapped else store
    agent = await Agent.open(used, os.urandom(32), client=transport)
    thread = (await agent.connect(URL)).thread
    for n in range(3):
        d = await agent.share(thread, {"email": f"ada{n}@example.org"}, purposes=["delivery"],
                              categories=["contact"], expires_ms=YEAR_MS + time_ms())  # fmt: skip
        assert d.status == "confirmed"
        assert await store.outbox_all() == []
    notes = await store.share_notes(thread)
    assert [n.status for n in notes] == ["confirmed"] * 3
    if wrapped:
        assert used.outbox_reads >= 3
    await agent.close()
