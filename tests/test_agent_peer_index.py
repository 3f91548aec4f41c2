"""The agent finds a relationship by what it is known by — URL, name, key, thread-id prefix,
live or ended — through the store's index (``Store.relationships_where``), not by reading every
relationship a customer has (#12: an intentcast makes one per vendor it asks).

On the three stores: the look-ups' answers; that one store object sees what another, on the same
SQLite file, wrote (a second ``vrm`` process); and how many records a look-up reads among
thousands.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import _postgres
import pytest
from test_client import FakeVendor

from vrmproto import Money
from vrmproto.client import Agent, RetryPolicy
from vrmproto.client._agent import KeyChangedError
from vrmproto.client._agent_base import prefix_range
from vrmproto.store import (
    Commit,
    MemoryStore,
    RelationshipRecord,
    SQLiteStore,
    Store,
    ThreadKind,
    ThreadRecord,
)
from vrmproto.store._rel_query import RelationshipsWhere

postgres_cluster = _postgres.postgres_cluster

STORES = ("memory", "sqlite", "postgres")


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with _postgres.opened_store(request, tmp_path, request.param, inline=True) as s:
        yield s


async def open_agent(store: Store, seed: bytes | None = None) -> Agent:
    return await Agent.open(store, seed or os.urandom(32), fanout_retry=RetryPolicy(attempts=1),
                            retry=RetryPolicy(attempts=1))  # fmt: skip


def row(thread: bytes, *, role: str = "customer", peer: bytes = b"P" * 32, state: str = "agreed",
        label: str = "Acme", url: str = "http://acme.example", updated: int = 1
        ) -> RelationshipRecord:  # fmt: skip
    return RelationshipRecord(thread, role, b"L" * 32, peer, state, b"\x80", label, url, updated)


def thread_row(thread: bytes, *, kind: ThreadKind = ThreadKind.VENDOR, vendor: bytes = b"P" * 32,
               name: str = "Acme") -> ThreadRecord:  # fmt: skip
    return ThreadRecord(thread, kind, vendor, name, "http://x/inbox", "http://x/history",
                        60_000, intent_id=os.urandom(16) if kind is ThreadKind.INTENT else None)


def light(records: list[RelationshipRecord]) -> list[tuple[object, ...]]:
    """The columns a look-up reads (a store may or may not hand ``data`` over)."""
    return [(r.thread, r.role, r.peer_key, r.state, r.label, r.peer_url, r.updated_ms)
            for r in records]  # fmt: skip


# -- the store's look-up --------------------------------------------------------------------------


async def test_relationships_where_is_a_filter_of_every_relationship(store: Store) -> None:
    """Whatever upserts and drops came before, ``relationships_where`` answers what filtering
    every relationship would: an index left pointing at a record's old URL, label, key or state
    (or at a dropped thread) shows here."""
    rnd = random.Random(12)
    keys, urls, labels = [b"K" * 32, b"Q" * 32, b"Z" * 32], ["http://a", "http://b", ""], [
        "Acme", "acme", "Budget"]  # fmt: skip
    states = ["agreed", "offered", "ended", "intent_answered"]
    threads = [bytes([0xAB, i]) + bytes(14) for i in range(6)] + [bytes([0xAC]) + bytes(15)]
    for _ in range(12):
        ups = tuple(row(t, role=rnd.choice(["customer", "customer", "vendor"]),
                        peer=rnd.choice(keys), state=rnd.choice(states), label=rnd.choice(labels),
                        url=rnd.choice(urls), updated=rnd.randrange(100))
                    for t in rnd.sample(threads, 3))  # fmt: skip
        ts = tuple(thread_row(r.thread, vendor=rnd.choice(keys),
                              kind=rnd.choice(list(ThreadKind))) for r in ups)  # fmt: skip
        await store.commit(Commit(relationships=ups, threads=ts))
        await store.commit(Commit(drop=(rnd.choice(threads),)))
        every = await store.relationships(with_data=False)
        every_thread = await store.threads()
        for where in [
            RelationshipsWhere(peer_key=keys[0]), RelationshipsWhere(peer_url="http://a"),
            RelationshipsWhere(peer_url=""), RelationshipsWhere(label="acme"),
            RelationshipsWhere(role="customer", peer_url="http://a"),  # an agent's, per message
            RelationshipsWhere(role="vendor", peer_url="http://b"),
            RelationshipsWhere(role="customer", label="Acme", states=("agreed", "offered")),
            RelationshipsWhere(role="customer", peer_key=keys[1], states=("ended",)),
            RelationshipsWhere(states=()), RelationshipsWhere(),
            RelationshipsWhere(role="customer", states=("agreed",)),
            RelationshipsWhere(thread_range=prefix_range("ab")),
            RelationshipsWhere(thread_range=prefix_range("ab0")),
            RelationshipsWhere(thread_range=(threads[2], threads[2]), role="customer"),
        ]:  # fmt: skip
            got = await store.relationships_where(
                role=where.role, peer_key=where.peer_key, peer_url=where.peer_url,
                label=where.label, states=where.states, thread_range=where.thread_range,
            )  # fmt: skip
            assert light(got) == light([r for r in every if where.matches(r)]), where
        for key in keys:
            for kind in (None, *ThreadKind):
                got_threads = await store.threads(vendor_key=key, kind=kind)
                assert got_threads == [t for t in every_thread if t.vendor_key == key
                                       and kind in (None, t.kind)]  # fmt: skip
        assert await store.threads(kind=ThreadKind.INTENT) == [
            t for t in every_thread if t.kind is ThreadKind.INTENT]  # fmt: skip


def test_a_prefix_names_the_range_of_its_thread_ids() -> None:
    assert prefix_range("abcdef") == (bytes.fromhex("abcdef") + bytes(13),
                                      bytes.fromhex("abcdef") + b"\xff" * 13)  # fmt: skip
    low, high = prefix_range("abcdef1")
    assert low == bytes.fromhex("abcdef10") + bytes(12)
    assert high == bytes.fromhex("abcdef1f") + b"\xff" * 12
    for _ in range(200):
        thread = os.urandom(16)
        digits = thread.hex()[: random.randrange(6, 32)]
        first, last = prefix_range(digits)
        assert first <= thread <= last


# -- the agent's look-ups, end to end -------------------------------------------------------------


async def test_lookups_by_url_name_prefix_pins_and_the_vendors_an_intentcast_asks(
    store: Store,
) -> None:
    prices = (("Acme", 300), ("Budget", 100), ("Hertz", 200))
    acme, budget, hertz = (FakeVendor(n, price=Money(p, "USD")) for n, p in prices)
    await asyncio.gather(acme.start(), budget.start(), hertz.start())
    agent = await open_agent(store)
    impostor: FakeVendor | None = None
    try:
        a = await agent.connect(acme.url)
        cast = await agent.intentcast("an suv", vendors=[acme.url, budget.url, hertz.url],
                                      deadline_ms=10_000)  # fmt: skip
        assert len(cast.offers) == 3
        assert cast.skipped == ()
        # the pairwise relationship wins over Acme's intentcast thread (agreed, then newest)
        assert await agent.resolve("Acme") == a.thread
        assert await agent.resolve(acme.url + "/") == a.thread
        assert await agent.resolve(" " + acme.url) == a.thread
        for digits in (a.thread.hex()[:8], a.thread.hex()[:9], a.thread.hex()[:31].upper()):
            assert await agent.resolve(digits) == a.thread
        budget_cast = next(o.thread for o in cast.offers if o.vendor == "Budget")
        assert await agent.resolve(budget.url) == budget_cast
        with pytest.raises(LookupError):
            await agent.resolve("Nobody Inc")
        with pytest.raises(LookupError):
            await agent.resolve("acme")  # a name as the vendor spells it

        assert await agent.live_thread(acme.key) == a.thread
        assert await agent.live_thread(budget.key) is None  # an intentcast thread is not one
        assert not await agent._ended(acme.key)

        # another key at a URL we know, and a new URL claiming a name we know (any case)
        port = acme.port
        await acme.stop()
        impostor = FakeVendor("Acme")
        await impostor.start(port)
        with pytest.raises(KeyChangedError) as by_url:
            await agent.connect(impostor.url)
        assert by_url.value.by == "url"
        report = (await agent.intentcast("a van", vendors=[impostor.url],
                                         deadline_ms=10_000)).report  # fmt: skip
        assert isinstance(report.results[0].error, KeyChangedError)
        await impostor.stop()
        impostor = FakeVendor("  ACME ")
        await impostor.start()
        with pytest.raises(KeyChangedError) as by_name:
            await agent.connect(impostor.url)
        assert by_name.value.by == "name"
        await impostor.stop()
        impostor = None
        await acme.start(port)

        # ended with Acme, no live relationship: an intentcast leaves it out
        await agent.end(a.thread)
        assert await agent.live_thread(acme.key) is None
        assert await agent._ended(acme.key)
        again = await agent.intentcast("a bike", vendors=[acme.url, budget.url],
                                       deadline_ms=10_000)  # fmt: skip
        assert again.skipped == ((acme.url, "you ended your relationship with this vendor"),)
        assert [o.vendor for o in again.offers] == ["Budget"]
        # live again: asked again
        b = await agent.connect(acme.url)
        assert not b.existing
        assert await agent.live_thread(acme.key) == b.thread
        assert (await agent.connect(acme.url)).existing
        third = await agent.intentcast("a boat", vendors=[acme.url], deadline_ms=10_000)
        assert third.skipped == ()
        assert await agent.resolve("Acme") == b.thread
    finally:
        await agent.close()
        await asyncio.gather(acme.stop(), budget.stop(), hertz.stop(),
                             *([impostor.stop()] if impostor else []))  # fmt: skip


async def test_live_thread_follows_a_vendor_that_rotated_its_key(store: Store) -> None:
    """The vendor signs with another key now (peer_key moved, §2.6); the thread record keeps the
    key of first contact: either finds the relationship, and only a vendor thread counts."""
    agent = await open_agent(store)
    try:
        first, now = b"F" * 32, b"N" * 32
        t_vendor, t_intent, t_old = b"\x05" * 16, b"\x06" * 16, b"\x07" * 16
        await store.commit(Commit(
            relationships=(row(t_vendor, peer=now, updated=5),
                           row(t_intent, peer=first, state="offered", updated=9),
                           row(t_old, peer=first, state="ended", updated=7)),
            threads=(thread_row(t_vendor, vendor=first),
                     thread_row(t_intent, vendor=first, kind=ThreadKind.INTENT),
                     thread_row(t_old, vendor=first)),
        ))  # fmt: skip
        assert await agent.live_thread(first) == t_vendor
        assert await agent.live_thread(now) == t_vendor
        assert await agent._ended(first)
        assert not await agent._ended(now)
    finally:
        await agent.close()


async def test_another_store_object_on_the_same_file_is_seen(tmp_path: Path) -> None:
    """What a second ``vrm`` process writes to the same SQLite file (here: a second store
    object) is what the first agent's next look-up finds: no cache of the first to go stale."""
    path = tmp_path / "vrm.db"
    async with await SQLiteStore.open(path, inline=True) as mine:
        agent = await open_agent(mine)
        try:
            with pytest.raises(LookupError):
                await agent.resolve("Zeta")
            thread = os.urandom(16)
            async with await SQLiteStore.open(path) as other:
                await other.commit(Commit(relationships=(row(thread, label="Zeta",
                                                             url="http://zeta.example"),),
                                          threads=(thread_row(thread, name="Zeta"),)))  # fmt: skip
                assert await agent.resolve("Zeta") == thread
                assert await agent.resolve("http://zeta.example/") == thread
                assert await agent.resolve(thread.hex()[:10]) == thread
                assert await agent.live_thread(b"P" * 32) == thread
                await other.commit(Commit(relationships=(row(thread, label="Zeta", state="ended",
                                                             url="http://zeta.example"),)))
                assert await agent.live_thread(b"P" * 32) is None
                await other.commit(Commit(drop=(thread,)))
            with pytest.raises(LookupError):
                await agent.resolve("Zeta")
        finally:
            await agent.close()


# -- what a look-up reads -------------------------------------------------------------------------


class CountingStore(MemoryStore):
    """A MemoryStore that counts full reads and the rows each look-up hands back."""

    def __init__(self) -> None:
        super().__init__()
        self.full_reads = 0
        self.rows = 0

    async def relationships(self, *, with_data: bool = True) -> list[RelationshipRecord]:
        self.full_reads += 1
        return await super().relationships(with_data=with_data)

    async def relationships_where(self, **where: Any) -> list[RelationshipRecord]:
        found = await super().relationships_where(**where)
        self.rows += len(found)
        return found

    async def threads(self, **where: Any) -> list[ThreadRecord]:
        found = await super().threads(**where)
        self.rows += len(found)
        return found


@pytest.fixture
def examined(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many records the in-memory store has compared with a look-up's criteria so far."""
    seen = [0]
    matches = RelationshipsWhere.matches

    def counting(self: RelationshipsWhere, r: RelationshipRecord) -> bool:
        seen[0] += 1
        return matches(self, r)

    monkeypatch.setattr(RelationshipsWhere, "matches", counting)
    return lambda: seen[0]


async def test_among_thousands_of_relationships_a_lookup_reads_its_matches(
    examined: Callable[[], int],
) -> None:
    """2,000 intentcast threads at 20 other vendors beside the relationships in use: a share by
    URL and an intentcast to one vendor read no full list, and each look-up compares only the
    records indexed under its URL, name or key — a handful, not thousands."""
    store = CountingStore()
    rows: list[RelationshipRecord] = []
    threads: list[bytes] = []
    for i in range(2000):
        thread, vendor = os.urandom(16), bytes([i % 20]) * 32
        rows.append(row(thread, peer=vendor, state="intent_answered", label=f"Shop {i % 20}",
                        url=f"http://shop{i % 20}.example"))  # fmt: skip
        threads.append(thread)
    await store.commit(Commit(relationships=tuple(rows), threads=tuple(
        thread_row(t, kind=ThreadKind.INTENT, vendor=r.peer_key) for t, r in zip(threads, rows,
                                                                                 strict=True))))
    acme = FakeVendor("Acme", price=Money(100, "EUR"))
    await acme.start()
    agent = await open_agent(store)
    try:
        a = await agent.connect(acme.url)
        before_rows, before_examined = store.rows, examined()
        in_a_year = time.time_ns() // 1_000_000 + 365 * 86_400_000
        for _ in range(5):
            d = await agent.share(acme.url, {"email": "ada@example.org"}, purposes=["delivery"],
                                  categories=["contact"], expires_ms=in_a_year)  # fmt: skip
            assert d.confirmed
        assert store.full_reads == 0
        assert store.rows - before_rows <= 5 * 2  # one relationship, by URL (and no label)
        assert examined() - before_examined <= 5 * 2
        before_rows, before_examined = store.rows, examined()
        cast = await agent.intentcast("an suv", vendors=[acme.url], deadline_ms=10_000)
        assert len(cast.offers) == 1
        assert store.full_reads == 0
        assert store.rows - before_rows <= 10
        assert examined() - before_examined <= 10
        assert await agent.resolve(a.thread.hex()[:7]) == a.thread
        assert store.full_reads == 0
        # 500 more intentcast threads with Acme, under its key: whether one with it is live or
        # ended is read by key and state, not among those
        await store.commit(Commit(
            relationships=tuple(row(t, peer=acme.key, state="intent_answered",
                                    url="http://acme.old.example") for t in threads[:500]),
        ))  # fmt: skip
        before_examined = examined()
        assert await agent.live_thread(acme.key) == a.thread
        assert not await agent._ended(acme.key)
        assert examined() - before_examined <= 2
        assert store.full_reads == 0
    finally:
        await agent.close()
        await acme.stop()


async def test_sqlite_looks_up_by_url_name_and_key_through_their_indexes(tmp_path: Path) -> None:
    """SQLite's plan for each look-up names the index of its column (schema 7 for URL and
    name): a search of that index, not a scan of every relationship row."""
    async with await SQLiteStore.open(tmp_path / "vrm.db") as s:
        await s.commit(Commit(relationships=(row(os.urandom(16)),)))
        conn = sqlite3.connect(tmp_path / "vrm.db")
        try:
            for where, index in [
                (RelationshipsWhere(role="customer", peer_url="http://a"),
                 "relationships_by_peer_url"),
                (RelationshipsWhere(role="customer", label="Acme"), "relationships_by_label"),
                (RelationshipsWhere(role="customer", peer_key=b"K" * 32, states=("agreed",)),
                 "relationships_by_peer_key"),
            ]:  # fmt: skip
                sql, params = where.sql(lambda n: f"?{n}")
                plan = " ".join(str(step[-1]) for step in conn.execute(
                    "EXPLAIN QUERY PLAN SELECT thread FROM relationships " + sql, params))
                assert f"USING INDEX {index}" in plan, plan
        finally:
            conn.close()


async def test_a_relationship_that_moves_to_another_url_or_name_is_found_there(
    store: Store,
) -> None:
    """A Commit that changes a relationship's URL or label writes them (the upsert that keeps
    them, and leaves them out, then writes nothing), and the look-ups follow."""
    thread = os.urandom(16)
    await store.commit(Commit(relationships=(row(thread),)))
    await store.commit(Commit(relationships=(row(thread, url="http://new", label="New"),)))
    assert await store.relationships_where(peer_url="http://acme.example") == []
    assert await store.relationships_where(label="Acme") == []
    assert light(await store.relationships_where(peer_url="http://new", label="New")) == light(
        [row(thread, url="http://new", label="New")])  # fmt: skip


async def test_a_vendors_rows_are_not_in_the_url_and_name_indexes(tmp_path: Path) -> None:
    """Schema 7: the URL and name indexes are partial, a customer's rows only (a vendor never
    looks a customer up so, and each first contact would write a random page of the label
    index); a vendor's query does not use them, and ``held_by_share`` is gone."""
    async with await SQLiteStore.open(tmp_path / "vrm.db") as s:
        await s.commit(Commit(relationships=(row(os.urandom(16)),)))
        conn = sqlite3.connect(tmp_path / "vrm.db")
        try:
            indexes = dict(conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
            for name in ("relationships_by_peer_url", "relationships_by_label"):
                assert indexes[name].endswith("WHERE role = 'customer'"), indexes[name]
            assert "held_by_share" not in indexes
            sql, params = RelationshipsWhere(role="vendor", label="Acme").sql(lambda n: f"?{n}")
            plan = " ".join(str(step[-1]) for step in conn.execute(
                "EXPLAIN QUERY PLAN SELECT thread FROM relationships " + sql, params))
            assert "relationships_by_label" not in plan, plan
        finally:
            conn.close()


async def test_a_vendor_named_like_a_url_does_not_receive_what_is_sent_to_that_url(
    store: Store,
) -> None:
    """A vendor's name is its own claim: one calling itself ``https://bank.example`` is never
    what ``share("https://bank.example")`` names — a URL resolves by address only; the name
    still resolves to it."""
    bank, mimic = FakeVendor("Bank"), FakeVendor("")
    await asyncio.gather(bank.start(), mimic.start())
    mimic.name = bank.url  # the name it claims in its discovery document and terms
    agent = await open_agent(store)
    try:
        m = await agent.connect(mimic.url)
        assert await agent.resolve(mimic.url) == m.thread
        with pytest.raises(LookupError):
            await agent.resolve(bank.url)  # no relationship at that address yet
        b = await agent.connect(bank.url)
        assert await agent.resolve(bank.url) == b.thread
        assert await agent.resolve(bank.url + "/") == b.thread
    finally:
        await agent.close()
        await asyncio.gather(bank.stop(), mimic.stop())
