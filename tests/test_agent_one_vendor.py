"""One live relationship per vendor key (issue #11 item 6).

A vendor reached under two URLs (``127.0.0.1`` and ``localhost``) is one vendor: a second
``connect`` answers the relationship we have, and an intentcast asks each vendor key once and
never a vendor the person ended the relationship with. Over the in-memory transport.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vrmproto import Identity, Money
from vrmproto.client import Agent
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore, RelationshipRecord, SQLiteStore
from vrmproto.testing import MemoryTransport

ACCEPTS = ("vrm.no-tracking", "vrm.no-third-party")
IP = "http://127.0.0.1:8701"
HOST = "http://localhost:8701"
OTHER = "http://127.0.0.1:8702"


def vendor(name: str) -> Endpoint:
    catalogue = (CatalogueItem(f"{name} bike", ("bike",), Money(100, "USD")),)
    return Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name=name,
                    policy=ReferencePolicy(accepts_terms=ACCEPTS, name=name,
                                           catalogue=catalogue))  # fmt: skip


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    acme, other = vendor("Acme"), vendor("Other")
    transport = MemoryTransport({IP: acme, HOST: acme, OTHER: other})
    a = await Agent.open(MemoryStore(), os.urandom(32), client=transport)
    yield a
    await a.close()
    await acme.drain()
    await other.drain()


async def test_connect_under_another_url_reuses_the_live_relationship(agent: Agent) -> None:
    first = await agent.connect(IP)
    assert first.status == "accepted"
    assert not first.existing
    again = await agent.connect(HOST)
    assert again.existing
    assert again.thread == first.thread
    assert again.status == "accepted"
    assert again.agreement == first.agreement
    assert len([v for v in await agent.relationships() if v.kind == "vendor"]) == 1


async def test_concurrent_connects_to_one_vendor_open_one_relationship(agent: Agent) -> None:
    """Eight connects at once, under both names of the vendor: one relationship, the others
    answered with it (``existing``) — not eight (found by bench/ui.py, which made 16)."""
    results = await asyncio.gather(*(agent.connect(IP if i % 2 else HOST) for i in range(8)))
    assert len({r.thread for r in results}) == 1
    assert sum(not r.existing for r in results) == 1
    assert len([v for v in await agent.relationships() if v.kind == "vendor"]) == 1


async def test_two_agents_on_one_data_directory_open_one_relationship(tmp_path: Path) -> None:
    """Two ``vrm connect`` processes on one data directory: two agents, each with its own store
    object on the same file, connecting at once open one relationship — the check for a live one
    and the new thread's commit are under the store's lock, which other processes share
    (§11.11-2), not only under the agent's own."""
    acme = vendor("Acme")
    transport = MemoryTransport({IP: acme, HOST: acme})
    seed, path = os.urandom(32), tmp_path / "agent.db"
    first = await Agent.open(await SQLiteStore.open(path), seed, client=transport)
    second = await Agent.open(await SQLiteStore.open(path), seed, client=transport)
    try:
        results = await asyncio.gather(*(a.connect(url) for a in (first, second)
                                         for url in (IP, HOST)))  # fmt: skip
        assert len({r.thread for r in results}) == 1
        assert sum(not r.existing for r in results) == 1
        for a in (first, second):
            assert len([v for v in await a.relationships() if v.kind == "vendor"]) == 1
    finally:
        await first.close()
        await second.close()
        await acme.drain()


async def test_after_end_connect_opens_a_new_relationship(agent: Agent) -> None:
    first = await agent.connect(IP)
    await agent.end(first.thread)
    again = await agent.connect(HOST)
    assert not again.existing
    assert again.thread != first.thread
    assert again.status == "accepted"


async def test_intentcast_asks_each_vendor_key_once(agent: Agent) -> None:
    await agent.connect(IP)
    result = await agent.intentcast("bike", vendors=[IP, HOST, OTHER], deadline_ms=5_000)
    asked = [r for r in result.report.results if r.status == "confirmed"]
    assert sorted(r.url for r in asked) == [IP, OTHER]
    assert sorted(o.vendor for o in result.offers) == ["Acme", "Other"]
    (alias,) = [r for r in result.report.results if r.url == HOST]
    assert "the same vendor as" in str(alias.error)


async def test_an_unknown_alias_is_found_out_by_its_key(agent: Agent) -> None:
    result = await agent.intentcast("bike", vendors=[IP, HOST], deadline_ms=5_000)
    assert sorted(o.vendor for o in result.offers) == ["Acme"]


async def test_intentcast_never_reaches_an_ended_vendor(agent: Agent) -> None:
    c = await agent.connect(IP)
    await agent.connect(OTHER)
    await agent.end(c.thread)
    result = await agent.intentcast("bike", vendors=[IP, HOST, OTHER], deadline_ms=5_000)
    assert [o.vendor for o in result.offers] == ["Other"]
    assert {u for u, _ in result.skipped} | {
        r.url for r in result.report.results if r.status != "confirmed"} == {IP, HOST}


class _CountingStore(MemoryStore):
    """A MemoryStore that counts reads of every relationship's state blob."""

    def __init__(self) -> None:
        super().__init__()
        self.blob_scans = 0

    async def relationships(self, *, with_data: bool = True) -> list[RelationshipRecord]:
        self.blob_scans += with_data
        return await super().relationships(with_data=with_data)


async def test_a_share_by_url_or_name_reads_no_relationship_state() -> None:
    """Naming the vendor by URL or name per message finds the relationship without reading
    every relationship's state (#12: the state grows with the shares, and an agent may hold
    hundreds of relationships); the name still resolves to the agreed relationship."""
    acme = vendor("Acme")
    store = _CountingStore()
    transport = MemoryTransport({IP: acme, OTHER: vendor("Other")})
    a = await Agent.open(store, os.urandom(32), client=transport)
    try:
        first = await a.connect(IP)
        await a.connect(OTHER)
        store.blob_scans = 0
        for ref in (IP, IP + "/", " Acme "):
            d = await a.share(ref, {"email": "ada@example.org"}, purposes=["delivery"],
                              categories=["contact"], expires_ms=a.clock() + 86_400_000)
            assert d.confirmed
            assert d.thread == first.thread
        assert store.blob_scans == 0
    finally:
        await a.close()
        await acme.drain()
