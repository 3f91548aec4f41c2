"""Requests to the shared rate limits and first-contact budgets made while one is on its way go
in one statement (vrmproto/store/_pg_batch.py), and every limit holds as if they had been sent
one at a time (spec §12.9-8): the coalescer alone, then two processes' worth of concurrent
takes and first contacts on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence

import _postgres
from _vendor_proc import Customer
from test_admission import VENDOR, intentcast, problem
from test_admission_shared import CLIENT, now_clock, two_endpoints

from vrmproto import Identity, Limits
from vrmproto.store import PostgresConfig, PostgresStore
from vrmproto.store._pg_batch import Coalescer
from vrmproto.store._pg_rates import PgRateBuckets, _Op

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config


class _Deadlock(Exception):
    sqlstate = "40P01"


class _Database:
    """A stand-in for the database: records each statement's requests; the first statement
    waits until :attr:`release` is set, so that the test decides what is asked meanwhile."""

    def __init__(self) -> None:
        self.statements: list[list[int]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail: list[Exception] = []

    async def run(self, items: Sequence[int]) -> list[int]:
        self.statements.append(list(items))
        self.started.set()
        await self.release.wait()
        if self.fail:
            raise self.fail.pop(0)
        return [item * 10 for item in items]


async def test_requests_made_while_one_is_sent_go_together_in_the_next_statement() -> None:
    db = _Database()
    coalescer: Coalescer[int, int] = Coalescer(db.run)
    first = asyncio.ensure_future(coalescer.ask(1))
    await db.started.wait()
    assert db.statements == [[1]]  # alone: sent at once, not held back for a batch
    rest = [asyncio.ensure_future(coalescer.ask(n)) for n in (2, 3, 4)]
    seen: list[list[list[int]]] = []

    async def release() -> None:  # runs after the three have asked (tasks start in order)
        seen.append(list(db.statements))
        db.release.set()

    await asyncio.ensure_future(release())
    assert seen == [[[1]]]  # asked meanwhile: they waited for it
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40]  # each its own answer, in order
    assert db.statements == [[1], [2, 3, 4]]


async def test_a_failed_statement_fails_each_request_in_it_and_a_deadlock_is_sent_again() -> None:
    db = _Database()
    db.release.set()
    coalescer: Coalescer[int, int] = Coalescer(db.run)
    db.fail = [_Deadlock("deadlock detected")]
    assert await coalescer.ask(5) == 50  # the victim of a deadlock applied nothing: again
    assert db.statements == [[5], [5]]
    db.fail = [RuntimeError("connection lost")]
    got = await asyncio.gather(coalescer.ask(6), coalescer.ask(7), return_exceptions=True)
    assert [type(r) for r in got] == [RuntimeError, RuntimeError]
    assert await coalescer.ask(8) == 80  # and the next one is sent as usual


def _counting(bucket: PgRateBuckets, sent: list[int]) -> Callable[[Sequence[_Op]], Awaitable[
        list[tuple[float | None, bool | None]]]]:  # fmt: skip
    """``bucket``'s statement, noting in ``sent`` how many requests each one carried."""
    send = bucket._send

    async def counted(ops: Sequence[_Op]) -> list[tuple[float | None, bool | None]]:
        sent.append(len(ops))
        return await send(ops)

    return counted


async def test_takes_at_once_from_two_processes_take_each_token_once(
    postgres_config: PostgresConfig,
) -> None:
    """80 takes at once, 40 from each of two processes, from one bucket of 50 (no refill to
    speak of): 50 are taken, each seeing the level its own take left (49 … 0) — as one after
    another — and the processes' requests went in fewer statements than requests."""
    async with await PostgresStore.open(postgres_config) as a, \
            await PostgresStore.open(postgres_config) as b:  # fmt: skip
        buckets = [PgRateBuckets(a), PgRateBuckets(b)]
        sent: list[int] = []
        for bucket in buckets:
            bucket._batches = Coalescer(_counting(bucket, sent))
        now = 1_767_225_600_000
        got = await asyncio.gather(*(
            buckets[n % 2].take("address", b"192.0.2.0/24", 1e-9, 50.0, now) for n in range(80)
        ))  # fmt: skip
        taken = sorted(round(level) for level, ok in got if ok)
        assert taken == list(range(50))
        assert all(level < 1 for level, ok in got if not ok)
        assert sum(sent) == 80
        assert len(sent) < 80  # at least one statement carried several


async def test_first_contacts_at_once_at_two_processes_are_admitted_up_to_the_budget(
    postgres_config: PostgresConfig,
) -> None:
    """60 intentcasts from one prefix at once, 30 at each of two processes, 20 open
    negotiations allowed (§10-17): 20 are stored, 40 refused for §10-17, whatever went in
    which statement."""
    clock = now_clock()
    limits = Limits(open_relationships_per_address=20)
    async with two_endpoints(postgres_config, limits, clock) as (a, b):
        casts = [intentcast(Customer(VENDOR), clock.now) for _ in range(60)]
        got = await asyncio.gather(*(
            (a, b)[n % 2].handle_inbox(cast, client=CLIENT) for n, cast in enumerate(casts)
        ))  # fmt: skip
        assert sorted(r.status for r in got) == [200] * 20 + [429] * 40
        assert {problem(r).clause for r in got if r.status == 429} == {"§10-17"}
        late = await b.handle_inbox(intentcast(Customer(VENDOR), clock.now), client=CLIENT)
        assert late.status == 429


async def test_requests_one_after_another_are_one_statement_each() -> None:
    """Requests one after another (none made while another is sent) go one per statement."""
    n = 3
    db = _Database()
    db.release.set()
    coalescer: Coalescer[int, int] = Coalescer(db.run)
    for item in range(n):
        assert await coalescer.ask(item) == item * 10
    assert db.statements == [[item] for item in range(n)]


async def test_a_senders_messages_at_once_at_two_processes_get_no_more_than_its_quota(
    postgres_config: PostgresConfig,
) -> None:
    """50 offers from one key at once, 25 at each of two processes, 20 a minute allowed and the
    clock standing still (§12.9-5 over both, §12.9-8): 20 are stored and 30 refused. Each
    process checks the sender's bucket before verifying and takes its token after: the token
    is taken only if it is still there, since the others' checks at the same moment passed on
    the same level (§12.9-6)."""
    clock = now_clock()
    limits = Limits(rate_per_sender_per_minute=20, open_relationships_per_address=1000)
    me = Identity(os.urandom(32))
    async with two_endpoints(postgres_config, limits, clock) as (a, b):
        offers = [Customer(VENDOR, identity=me).offer("vrm.no-tracking").envelope
                  for _ in range(50)]  # fmt: skip
        got = await asyncio.gather(*(
            (a, b)[n % 2].handle_inbox(env, client=CLIENT) for n, env in enumerate(offers)
        ))  # fmt: skip
        assert sorted(r.status for r in got) == [200] * 20 + [429] * 30
        assert {problem(r).clause for r in got if r.status == 429} == {"§12.9-5"}
