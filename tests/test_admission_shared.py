"""The first-contact budgets per address prefix across processes (spec §10-15 to §10-17,
§12.9-8): two endpoints, each with a store of its own on one PostgreSQL schema — as two server
processes — share them through the database (``share_rate_limits``), so a prefix gets the
published budget in all, wherever its messages arrive. The same scenarios on one endpoint in
memory are in tests/test_admission.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import _postgres
import pytest
from _vendor_proc import Customer, Reply, now_ms
from test_admission import (
    DAY_MS,
    SUV,
    VENDOR,
    Clock,
    _offer,
    intentcast,
    padded_offer,
    problem,
)

from vrmproto import Intentcast, Limits, RelationshipEnd
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.server._admission import SharedAdmission
from vrmproto.server._workers import share_rate_limits
from vrmproto.store import PostgresConfig, PostgresStore
from vrmproto.store._pg_admission import ADMITTED, IN_FLIGHT_MS

pytest.importorskip("asyncpg", reason="asyncpg is not installed (pip install -e '.[dev]')")

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config

CLIENT = "192.0.2.1"
PREFIX = "192.0.2.0/24"


def now_clock() -> Clock:
    """A clock the test moves by hand, from now (the customers' offers are signed at now)."""
    found = Clock()
    found.now = now_ms()
    return found


@asynccontextmanager
async def two_endpoints(
    config: PostgresConfig, limits: Limits, clock: Clock
) -> AsyncIterator[tuple[Endpoint, Endpoint]]:
    """Two vendor endpoints, each on a store of its own over ``config``'s schema."""
    async with await PostgresStore.open(config) as a, await PostgresStore.open(config) as b:
        endpoints = []
        for store in (a, b):
            ep = Endpoint(VENDOR, store=store, limits=limits, clock=clock,
                          policy=ReferencePolicy(accepts_terms=("vrm.no-tracking",),
                                                 catalogue=(SUV,)))  # fmt: skip
            assert share_rate_limits(ep, store)
            endpoints.append(ep)
        yield endpoints[0], endpoints[1]
        for ep in endpoints:
            assert isinstance(ep.admission, SharedAdmission)
            await ep.admission.settled()


async def test_the_open_negotiations_budget_counts_those_opened_at_any_process(
    postgres_config: PostgresConfig,
) -> None:
    """Three open negotiations per prefix, opened alternately at two processes: the fourth is
    refused at either (§10-17), with the Retry-After of the oldest's expiry; another prefix is
    not affected, and one settled at the other process frees its place."""
    clock = now_clock()
    limits = Limits(open_relationships_per_address=3)
    async with two_endpoints(postgres_config, limits, clock) as (a, b):
        casts = [intentcast(Customer(VENDOR), clock.now) for _ in range(5)]
        got = [await (a, b)[n % 2].handle_inbox(cast, client=CLIENT)
               for n, cast in enumerate(casts[:3])]  # fmt: skip
        assert [r.status for r in got] == [200, 200, 200]
        for ep in (a, b):
            refused = await ep.handle_inbox(casts[3], client="192.0.2.77")
            assert refused.status == 429
            assert problem(refused).clause == "§10-17"
            assert refused.headers["Retry-After"] == "86400"  # the oldest expires in 7 days
        again = await b.handle_inbox(casts[0], client=CLIENT)  # a replay opens nothing
        assert (again.status, again.body) == (200, got[0].body)
        assert (await a.handle_inbox(casts[3], client="198.51.100.1")).status == 200

        # An offer rejected at A is settled and does not count; offered again at B, it is an
        # open negotiation again, and there is no room for it.
        clock.now += 1
        free = Limits(open_relationships_per_address=1)
        async with two_endpoints(postgres_config, free, clock) as (c, d):
            rejected = Customer(VENDOR)
            sent = rejected.offer("vrm.purpose-only")
            got_c = await c.handle_inbox(sent.envelope, client="203.0.113.5")
            replies = rejected.absorb(Reply(got_c.status, got_c.body, dict(got_c.headers)), sent)
            assert [r.message.type for r in replies] == ["receipt", "terms.reject"]
            opened = await d.handle_inbox(intentcast(Customer(VENDOR), clock.now),
                                          client="203.0.113.6")  # fmt: skip
            assert opened.status == 200
            refused = await d.handle_inbox(rejected.offer("vrm.purpose-only").envelope,
                                           client="203.0.113.7")  # fmt: skip
            assert refused.status == 429
            assert problem(refused).clause == "§10-17"


async def test_a_negotiation_settled_or_expired_at_one_process_frees_its_place_at_the_other(
    postgres_config: PostgresConfig,
) -> None:
    """One open negotiation per prefix. Opened at A and ended by the customer at B: free.
    Opened at B and deleted by A's sweep when its time is up (§10-18): free."""
    clock = now_clock()
    ttl = 60_000
    limits = Limits(open_relationships_per_address=1, open_relationship_ttl_ms=ttl)
    async with two_endpoints(postgres_config, limits, clock) as (a, b):
        c = Customer(VENDOR)
        cast = Intentcast(what="a 4-wheel-drive SUV", reply_by=clock.now + DAY_MS,
                          constraints=(), memberships=())  # fmt: skip
        sent = c.rel.send(cast, now=clock.now, msg_id=os.urandom(16)).message
        got = await a.handle_inbox(sent.envelope, client=CLIENT)
        replies = c.absorb(Reply(got.status, got.body, dict(got.headers)), sent)
        assert [r.message.type for r in replies] == ["receipt", "intent.offer"]  # still open
        blocked = await b.handle_inbox(intentcast(Customer(VENDOR), clock.now), client=CLIENT)
        assert blocked.status == 429
        end = c.rel.send(RelationshipEnd(reason="found one"), now=clock.now,
                         msg_id=os.urandom(16)).message  # fmt: skip
        assert (await b.handle_inbox(end.envelope, client=CLIENT)).status == 200
        cast_b = intentcast(Customer(VENDOR), clock.now)
        assert (await b.handle_inbox(cast_b, client=CLIENT)).status == 200  # its place was free
        blocked = await a.handle_inbox(intentcast(Customer(VENDOR), clock.now), client=CLIENT)
        assert blocked.status == 429

        clock.now += ttl + 1
        assert await a.expire_unagreed() == 2  # the ended one, and the one opened at B
        late = await a.handle_inbox(intentcast(Customer(VENDOR), clock.now), client=CLIENT)
        assert late.status == 200


async def test_relationships_opened_a_day_count_at_any_process(
    postgres_config: PostgresConfig,
) -> None:
    """Two relationships a day per prefix (§10-16), one opened at each process: the third is
    refused at either, until half a day has refilled one."""
    clock = now_clock()
    async with two_endpoints(postgres_config, Limits(first_contacts_per_address_per_day=2),
                             clock) as (a, b):  # fmt: skip
        assert (await a.handle_inbox(_offer(Customer(VENDOR), clock.now), client=CLIENT)).status \
            == 200  # fmt: skip
        assert (await b.handle_inbox(_offer(Customer(VENDOR), clock.now), client=CLIENT)).status \
            == 200  # fmt: skip
        third = _offer(Customer(VENDOR), clock.now)
        for ep in (a, b):
            refused = await ep.handle_inbox(third, client="192.0.2.99")
            assert refused.status == 429
            assert problem(refused).clause == "§10-16"
            assert refused.headers["Retry-After"] == str(DAY_MS // 2 // 1000)
        clock.now += DAY_MS // 2
        assert (await b.handle_inbox(third, client="192.0.2.99")).status == 200


async def test_large_first_contacts_count_at_any_process(postgres_config: PostgresConfig) -> None:
    """Two large first contacts a day per prefix (§10-15), one at each process: the third is
    ``too_large`` at either; an honest offer still passes."""
    clock = now_clock()
    limits = Limits(max_first_contact_bytes=4096, max_unknown_body_bytes=256,
                    large_first_contacts_per_address_per_day=2)  # fmt: skip
    async with two_endpoints(postgres_config, limits, clock) as (a, b):
        first = await a.handle_inbox(padded_offer(8000, clock.now), client=CLIENT)
        second = await b.handle_inbox(padded_offer(8000, clock.now), client=CLIENT)
        assert (first.status, second.status) == (200, 200)
        for ep in (a, b):
            refused = await ep.handle_inbox(padded_offer(8000, clock.now), client=CLIENT)
            assert refused.status == 413
            assert problem(refused).clause == "§10-15"
        honest = await b.handle_inbox(_offer(Customer(VENDOR), clock.now), client=CLIENT)
        assert honest.status == 200


async def test_one_message_at_two_processes_at_once_counts_once(
    postgres_config: PostgresConfig,
) -> None:
    """The same first contact delivered to both processes at once is stored once and counted
    once, ten times over. Two open negotiations and two a day are allowed: after it, one more
    fits (the loser gave its day's token back, in the background, and the winner's counts
    once), then the next is refused for the open ones (§10-17: the loser's giving back did not
    uncount the winner's)."""
    clock = now_clock()
    limits = Limits(open_relationships_per_address=2, first_contacts_per_address_per_day=2)
    async with two_endpoints(postgres_config, limits, clock) as (a, b):
        for _ in range(10):
            cast = intentcast(Customer(VENDOR), clock.now)
            got = await asyncio.gather(a.handle_inbox(cast, client=CLIENT),
                                       b.handle_inbox(cast, client=CLIENT))  # fmt: skip
            assert [r.status for r in got] == [200, 200]
            assert got[0].body == got[1].body
            for ep in (a, b):
                assert isinstance(ep.admission, SharedAdmission)
                await ep.admission.settled()
            second = await b.handle_inbox(intentcast(Customer(VENDOR), clock.now),
                                          client=CLIENT)  # fmt: skip
            assert second.status == 200
            third = await a.handle_inbox(intentcast(Customer(VENDOR), clock.now),
                                         client=CLIENT)  # fmt: skip
            assert third.status == 429
            assert problem(third).clause == "§10-17"
            clock.now += 7 * DAY_MS + 1  # the next round starts afresh
            assert await b.expire_unagreed() == 2  # both expire: the budget is empty again


async def test_a_process_that_died_before_storing_leaves_a_count_that_is_pruned(
    postgres_config: PostgresConfig,
) -> None:
    """A process that admitted a first contact and died before storing it leaves the count in
    the database; after IN_FLIGHT_MS it is pruned (at the next admission after the prune
    interval) and the prefix's place is free again."""
    clock = now_clock()
    async with two_endpoints(postgres_config, Limits(open_relationships_per_address=1),
                             clock) as (a, b):  # fmt: skip
        assert isinstance(a.admission, SharedAdmission)
        dead = a.admission._negotiations  # what the dead process did, and no more
        day = a.admission.first_contacts
        code, held, _, _ = await dead.admit(
            PREFIX.encode(), b"\x01" * 32, now=clock.now, budget=1, name="first_contact",
            rate=day.per_minute, burst=float(day.burst))  # fmt: skip
        assert (code, held) == (ADMITTED, 0)
        refused = await b.handle_inbox(intentcast(Customer(VENDOR), clock.now), client=CLIENT)
        assert refused.status == 429
        assert problem(refused).clause == "§10-17"
        clock.now += IN_FLIGHT_MS + 1  # past both its time in flight and the prune interval
        admitted = await b.handle_inbox(intentcast(Customer(VENDOR), clock.now), client=CLIENT)
        assert admitted.status == 200
