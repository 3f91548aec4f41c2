"""A relationship that expires without an agreement goes from the event feed too (§11.8-3).

The vendor deletes such a relationship "with its whole history and the data it holds from it"
``open_relationship_ttl_ms`` after its last message. Its events are copies of that history's
bodies: the intentcast's text (what the customer wants, where, when, the memberships it
named), the terms proffered with the customer's agent URL and note. Before, they outlived the
deletion whole (Commit part 23: "Events outlive drop"), until retention trimmed them — 30 days
at the least, never with ``trim = false``, a year behind a webhook that is down — and a CRM
resynchronised from scratch, or a webhook added later, got the intentcast the vendor had
deleted. Now the deletion keeps each event's place, id, kind and time, and drops what the
message said (``body`` is ``{}``, ``"forgotten": true``), on every store; the Tryton bridge
makes nothing of such an event. A store written before forgets at its upgrade (SQLite 15,
PostgreSQL 11) what relationships deleted before had said.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _postgres
import pytest
from _sqlite_versions import sqlite_at_version
from _vendor_proc import ACCEPTED, DAY_MS, VENDOR_SEED, Customer, now_ms, terms

from vrmproto import Identity, Money
from vrmproto._messages import Intentcast, TermsOffer
from vrmproto.crm._changes import changes_of
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy
from vrmproto.server._events import follow
from vrmproto.store import Commit, PostgresConfig, PostgresStore, SQLiteStore, Store
from vrmproto.store import _sqlite_events as feed
from vrmproto.store._redact import UNAGREED_SQL
from vrmproto.testing.store_contract import T1, T2, event, rel

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config

WHAT, WHERE, MEMBER = "a 4-wheel-drive SUV", "Park City, March 20-25", "Avis Wizard 4471"
AGENT_URL, NOTE = "https://ada.example.net/vrm", "call me after six"


class Vendor:
    """The reference vendor on ``store``, at a clock the test moves."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.now = now_ms()
        suv = CatalogueItem("Jeep Grand Cherokee 4x4", ("suv",), Money(28_900, "USD"))
        self.endpoint = Endpoint(Identity(VENDOR_SEED), store=store, clock=lambda: self.now,
                                 policy=ReferencePolicy(accepts_terms=ACCEPTED,
                                                        catalogue=(suv,)))  # fmt: skip

    async def send(self, c: Customer, body: Any) -> None:
        msg = c.rel.send(body, now=self.now, msg_id=os.urandom(16)).message
        assert (await self.endpoint.handle_inbox(msg.envelope)).status == 200

    async def feed(self) -> list[dict[str, Any]]:
        return [e.as_json() async for e in follow(self.store, None, 0, clock=lambda: self.now)]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def vendor(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Vendor]:
    async with _postgres.opened_store(request, tmp_path, request.param) as store:
        yield Vendor(store)


async def test_an_expired_relationship_leaves_no_body_in_the_feed(vendor: Vendor) -> None:
    v = vendor
    caster, refused, agreed = (Customer(v.endpoint.identity) for _ in range(3))
    await v.send(caster, Intentcast(what=WHAT, reply_by=v.now + DAY_MS, constraints=("suv",),
                                    memberships=(MEMBER,), where=WHERE))  # fmt: skip
    await v.send(refused, TermsOffer(terms=terms("vrm.purpose-only"),
                                     enc_key=refused.identity.enc_public_key,
                                     endpoint=AGENT_URL, note=NOTE))  # fmt: skip
    await v.send(agreed, TermsOffer(terms=terms(*ACCEPTED), enc_key=agreed.identity.enc_public_key,
                                    endpoint=AGENT_URL))  # fmt: skip
    before = await v.feed()
    assert WHAT in json.dumps(before)
    v.now += v.endpoint.limits.open_relationship_ttl_ms + 1
    assert await v.endpoint.expire_unagreed() == 2
    after = await v.feed()
    gone = {caster.thread.hex(), refused.thread.hex()}
    told = after[len(before):]  # and the deletion is told (session 21b): test_s21b_feed_expired
    assert sorted((e["kind"], e["relationship"]) for e in told) == sorted(
        ("relationship.expired", t) for t in gone)  # fmt: skip
    after = after[: len(before)]
    assert [(e["id"], e["pos"], e["kind"], e["seq"]) for e in after] == [
        (e["id"], e["pos"], e["kind"], e["seq"]) for e in before]  # every event keeps its place
    for e in after:
        if e["relationship"] in gone:
            assert e["body"] == {}
            assert e["forgotten"] is True
            assert changes_of(e) == ()  # a CRM reading the feed later learns nothing of it
        else:
            assert e == next(b for b in before if b["id"] == e["id"])  # the agreed one: as it was
    text = json.dumps([e for e in after if e["relationship"] in gone])
    for said in (WHAT, WHERE, MEMBER, NOTE, AGENT_URL, "Jeep"):
        assert said not in text
    assert AGENT_URL in json.dumps(after)  # the agreed relationship's own offer keeps it


def opened(thread: bytes) -> Any:
    """A relationship.opened event of ``thread``, as the feed writes one."""
    data = json.dumps({"body": {"endpoint": AGENT_URL, "note": NOTE}, "created": 5,
                       "from": "customer", "type": "terms.offer"},
                      separators=(",", ":"), sort_keys=True).encode()  # fmt: skip
    return dataclasses.replace(event(thread, 0), kind="relationship.opened", data=data)


async def check_forgotten(store: Store) -> None:
    found = {e.thread: e for e in await store.events()}
    assert json.loads(found[T1].data)["body"] == {}
    assert json.loads(found[T1].data)["forgotten"] is True
    assert found[T2].data == opened(T2).data  # a relationship still held keeps its events


async def test_sqlite_upgrade_forgets_relationships_deleted_before(tmp_path: Path) -> None:
    path = tmp_path / "v14.db"
    conn = sqlite_at_version(path, 14)
    try:
        conn.execute("INSERT INTO relationships (thread, role, local_key, peer_key, state, data, "
                     "label, peer_url, updated_ms) VALUES (?, 'vendor', ?, ?, 'agreed', x'', '', "
                     "'', 1)", (T2, b"\x01" * 32, b"\x02" * 32))  # fmt: skip
        conn.executemany(feed.INSERT_EVENTS + "(?, ?, ?, ?, ?, ?, ?, ?)",
                         [feed.event_row(opened(t)) for t in (T1, T2)])  # fmt: skip
    finally:
        conn.close()
    async with await SQLiteStore.open(path) as s:
        await check_forgotten(s)
    conn = sqlite3.connect(path)
    try:  # the drop finds a thread's events by the index
        plan = conn.execute(f"EXPLAIN QUERY PLAN SELECT pos, data FROM events WHERE thread = ? "
                            f"AND {UNAGREED_SQL}", (T1,)).fetchall()  # fmt: skip
    finally:
        conn.close()
    assert "events_unagreed" in str(plan)


async def test_postgres_upgrade_forgets_relationships_deleted_before(
    postgres_config: PostgresConfig,
) -> None:
    import asyncpg  # noqa: PLC0415 -- the cluster fixture has checked it exists

    from vrmproto.store._pg_schema import migrate  # noqa: PLC0415

    config = postgres_config
    conn = await asyncpg.connect(config.dsn, server_settings={"search_path": config.schema})
    try:
        assert await migrate(conn, config.schema, target=10) == 10
        await conn.execute(
            "INSERT INTO relationships (thread, role, local_key, peer_key, state, data, label, "
            "peer_url, updated_ms) VALUES ($1, 'vendor', $2, $3, 'agreed', '', '', '', 1)",
            T2, b"\x01" * 32, b"\x02" * 32)  # fmt: skip
        await conn.executemany(
            f"INSERT INTO events ({feed.EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [feed.event_row(opened(t)) for t in (T1, T2)])  # fmt: skip
    finally:
        await conn.close()
    async with await PostgresStore.open(config) as s:
        await check_forgotten(s)


async def test_a_drop_forgets_on_every_store_the_same_way(vendor: Vendor) -> None:
    """The store's part: ``drop`` rewrites the thread's events of the kinds a relationship has
    before an agreement, byte for byte the same on each store, and leaves other threads'."""
    s = vendor.store
    await s.commit(Commit(relationships=(rel(T1), rel(T2)), events=(opened(T1), opened(T2))))
    await s.commit(Commit(drop=(T1,)))
    await check_forgotten(s)
    (first,) = [e for e in await s.events() if e.thread == T1]
    assert first.data == (b'{"body":{},"created":5,"forgotten":true,"from":"customer",'
                          b'"type":"terms.offer"}')  # fmt: skip
    await s.commit(Commit(drop=(T1,)))  # again: nothing changes
    assert [e for e in await s.events() if e.thread == T1] == [first]
