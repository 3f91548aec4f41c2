"""An opening message in a thread the vendor already holds open, counted in PostgreSQL (spec
§10-17, §12.9-8): the scenarios of tests/test_s16_srv_admission.py, where the vendor's
processes share their counts through the database (:mod:`vrmproto.store._pg_admission`).

The message is tried without a read of the store (the thread is assumed new), admitted as a
first contact, then conflicts with the stored thread and is given back. The thread must keep
counting once, under the prefix that opened it: neither a ghost left under another prefix
(refusing negotiations the prefix has room for, §10-17 MUST NOT) nor a thread that stopped
counting while still open (a prefix past ``open_relationships_per_address``, MUST).
"""

from __future__ import annotations

import _postgres
import pytest
from _vendor_proc import Customer
from test_admission import VENDOR, intentcast
from test_admission_shared import now_clock, two_endpoints

from vrmproto import Limits
from vrmproto.store import PostgresConfig

pytest.importorskip("asyncpg", reason="asyncpg is not installed (pip install -e '.[dev]')")

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config

HOME = "198.51.100.7"
ELSEWHERE = "203.0.113.9"


def reopening(c: Customer, now: int) -> bytes:
    """Another message that opens ``c``'s thread (no ``prev``), from the same key."""
    return intentcast(Customer(VENDOR, identity=c.identity, thread=c.thread), now)


async def test_reopening_from_another_prefix_leaves_the_first_count_as_it_was(
    postgres_config: PostgresConfig,
) -> None:
    clock = now_clock()
    ttl = 60_000
    limits = Limits(open_relationships_per_address=1, open_relationship_ttl_ms=ttl)
    async with two_endpoints(postgres_config, limits, clock) as (a, b):
        c = Customer(VENDOR)
        assert (await a.handle_inbox(intentcast(c, clock.now), client=HOME)).status == 200
        # at the other process, from another prefix: refused, and counted nowhere
        assert (await b.handle_inbox(reopening(c, clock.now), client=ELSEWHERE)).status != 200
        other = await b.handle_inbox(intentcast(Customer(VENDOR), clock.now), client=ELSEWHERE)
        assert other.status == 200  # ELSEWHERE's one place was not taken by the reopening
        full = await a.handle_inbox(intentcast(Customer(VENDOR), clock.now), client=HOME)
        assert full.status == 429  # HOME's place is still the first thread's
        # Both negotiations expire: HOME's place is free again, not held by a ghost.
        clock.now += ttl + 1
        assert await a.expire_unagreed() == 2
        again = await b.handle_inbox(intentcast(Customer(VENDOR), clock.now), client=HOME)
        assert again.status == 200


async def test_reopening_from_the_same_prefix_keeps_the_thread_counted(
    postgres_config: PostgresConfig,
) -> None:
    clock = now_clock()
    limits = Limits(open_relationships_per_address=2)  # room for the reopening to be counted
    async with two_endpoints(postgres_config, limits, clock) as (a, b):
        c = Customer(VENDOR)
        assert (await a.handle_inbox(intentcast(c, clock.now), client=HOME)).status == 200
        assert (await b.handle_inbox(reopening(c, clock.now), client=HOME)).status != 200
        assert (await a.handle_inbox(reopening(c, clock.now), client=HOME)).status != 200
        # One more negotiation fits; then the prefix holds two and a third is refused.
        second = await b.handle_inbox(intentcast(Customer(VENDOR), clock.now), client=HOME)
        assert second.status == 200
        third = await a.handle_inbox(intentcast(Customer(VENDOR), clock.now), client=HOME)
        assert third.status == 429
