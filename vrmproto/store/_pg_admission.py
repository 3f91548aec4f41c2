"""The open negotiations per client address prefix in PostgreSQL, shared by every server process
(spec §10-17, §12.9-8): what :class:`~vrmproto.server._admission.SharedAdmission` asks.

Two ``UNLOGGED`` tables, made on first use beside ``rate_buckets``
(:mod:`vrmproto.store._pg_rates`), outside the versioned schema:

- ``open_negotiations``: one row per relationship counted as an open negotiation — its thread,
  the prefix that opened it, the time (ms) it was admitted;
- ``open_counts``: per prefix, how many rows it has there. Every change of
  ``open_negotiations`` updates its prefix's count in the same statement, under that count
  row's lock, so the two always agree, and admitting one more first contact is one row read,
  not a count.

Admitting a first contact that opens a relationship is one statement, the function
``vrm_open_admit``: it raises the prefix's count unless it holds
``open_relationships_per_address`` (§10-17) — which locks the count row, so processes admitting
from one prefix at once take turns — then takes a token of
``first_contacts_per_address_per_day`` from ``rate_buckets`` (§10-16) and records the thread;
where either fails, it lowers the count again before it returns, in the same transaction. (A
PL/pgSQL function runs each statement on a fresh snapshot, and an UPDATE that waited for a row
lock re-reads the row: what it reads includes everything the process that held the lock before
committed.)
The admissions a process asks for while one of its statements is on its way go together in
the next one, ``vrm_open_admit_batch``: it calls ``vrm_open_admit`` for each, in the order they
were asked for per prefix, the prefixes in order (:mod:`vrmproto.store._pg_batch`), so each gets
what it would have got alone and every batch takes the count rows' locks in the same order.
``vrm_open_close`` stops counting a thread (it was settled, expired, or its message was not
stored after all); it takes the count row's lock first too, so the two never wait on each other
in opposite order.

A process killed between admitting a message and storing it leaves its row behind. So do rows
of relationships settled where nothing closed them. :meth:`PgOpenNegotiations.prune`, run now
and then, closes every row whose relationship is settled, gone, or was never stored
:data:`IN_FLIGHT_MS` after its admission. The tables are empty again after a crash of the
database, as every process's counts are after a restart of one process (§12.9-8).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vrmproto.store._pg_batch import Coalescer
from vrmproto.store._pg_rates import PRUNE_EVERY_MS, TABLE, TAKE
from vrmproto.store._pg_schema import advisory_key

if TYPE_CHECKING:
    from asyncpg import Connection

    from vrmproto.store._postgres import PostgresStore

__all__ = ["ADMITTED", "DAY_SPENT", "IN_FLIGHT_MS", "OPEN_FULL", "PgOpenNegotiations"]

#: What ``vrm_open_admit`` answers: admitted; refused by §10-17; refused by §10-16.
ADMITTED, OPEN_FULL, DAY_SPENT = 0, 1, 2
#: How long after its admission a thread with no stored relationship still counts (a message
#: being stored); after that its row is a leftover and :meth:`PgOpenNegotiations.prune` drops it.
IN_FLIGHT_MS = 300_000

#: The relationship states of an open negotiation (§10-17).
_OPEN_STATES = "('offered', 'countered', 'intent_open', 'intent_answered')"

_TABLES = (
    TABLE,
    """CREATE UNLOGGED TABLE IF NOT EXISTS open_negotiations (
        thread bytea PRIMARY KEY, prefix bytea NOT NULL, at_ms bigint NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS open_negotiations_by_prefix ON open_negotiations (prefix)",
    """CREATE UNLOGGED TABLE IF NOT EXISTS open_counts (
        prefix bytea PRIMARY KEY, n bigint NOT NULL)""",
)

# $1 bucket name, $2 prefix, $3 rate, $4 burst, $5 now (as the bucket's TAKE), $6 thread,
# $7 open_relationships_per_address
_ADMIT_FUNCTION = f"""CREATE OR REPLACE FUNCTION vrm_open_admit(
        text, bytea, float8, float8, bigint, bytea, bigint,
        OUT out_code int, OUT out_held bigint, OUT out_oldest bigint, OUT out_tokens float8)
    LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_taken boolean;
BEGIN
    -- count it, if there is room: the row is locked until COMMIT (and re-read if it was)
    UPDATE open_counts SET n = n + 1 WHERE prefix = $2 AND n < $7 RETURNING n - 1 INTO out_held;
    IF NOT FOUND THEN
        INSERT INTO open_counts (prefix, n) VALUES ($2, 0) ON CONFLICT (prefix) DO NOTHING;
        UPDATE open_counts SET n = n + 1 WHERE prefix = $2 AND n < $7
            RETURNING n - 1 INTO out_held;
    END IF;
    IF NOT FOUND THEN  -- full, unless this thread is one of those counted
        SELECT n INTO out_held FROM open_counts WHERE prefix = $2 FOR UPDATE;
        IF NOT EXISTS (SELECT 1 FROM open_negotiations WHERE thread = $6 AND prefix = $2) THEN
            SELECT min(coalesce(r.updated_ms, o.at_ms)) INTO out_oldest
                FROM open_negotiations o LEFT JOIN relationships r ON r.thread = o.thread
                WHERE o.prefix = $2;
            out_code := {OPEN_FULL};
            RETURN;
        END IF;
        {TAKE} INTO out_tokens, v_taken;
        out_code := CASE WHEN v_taken THEN {ADMITTED} ELSE {DAY_SPENT} END;
        RETURN;
    END IF;
    {TAKE} INTO out_tokens, v_taken;
    IF NOT v_taken THEN
        UPDATE open_counts SET n = n - 1 WHERE prefix = $2;
        out_code := {DAY_SPENT};
        RETURN;
    END IF;
    INSERT INTO open_negotiations (thread, prefix, at_ms) VALUES ($6, $2, $5)
        ON CONFLICT (thread) DO NOTHING;
    IF NOT FOUND THEN  -- counted already (a delivery of the same message at once elsewhere)
        UPDATE open_counts SET n = n - 1 WHERE prefix = $2;
    END IF;
    out_code := {ADMITTED};
END $fn$"""  # noqa: S608 -- no input is written into the text

# $1 thread, $2 keep it while its relationship is stored as an open negotiation
_CLOSE_FUNCTION = f"""CREATE OR REPLACE FUNCTION vrm_open_close(bytea, boolean) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_prefix bytea;
BEGIN
    SELECT prefix INTO v_prefix FROM open_negotiations WHERE thread = $1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF $2 AND EXISTS (
            SELECT 1 FROM relationships WHERE thread = $1 AND state IN {_OPEN_STATES}) THEN
        RETURN;
    END IF;
    PERFORM 1 FROM open_counts WHERE prefix = v_prefix FOR UPDATE;
    DELETE FROM open_negotiations WHERE thread = $1 AND prefix = v_prefix;
    IF FOUND THEN
        UPDATE open_counts SET n = n - 1 WHERE prefix = v_prefix;
    END IF;
END $fn$"""  # noqa: S608

# The admissions of a batch, one each in $1 … $7 as vrm_open_admit takes them: each admitted as
# alone, in the order asked for per prefix, the prefixes in order — the order in which every
# batch takes the count rows' locks (and the day buckets', after each count's).
_BATCH_FUNCTION = """CREATE OR REPLACE FUNCTION vrm_open_admit_batch(
        text[], bytea[], float8[], float8[], bigint[], bytea[], bigint[])
    RETURNS TABLE (out_ord int, out_code int, out_held bigint, out_oldest bigint,
                   out_tokens float8)
    LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    i int;
BEGIN
    FOR i IN SELECT u.o::int FROM unnest($2) WITH ORDINALITY AS u(p, o) ORDER BY u.p, u.o LOOP
        out_ord := i;
        SELECT * INTO out_code, out_held, out_oldest, out_tokens
            FROM vrm_open_admit($1[i], $2[i], $3[i], $4[i], $5[i], $6[i], $7[i]);
        RETURN NEXT;
    END LOOP;
END $fn$"""

_ADMIT = ("SELECT out_ord, out_code, out_held, out_oldest, out_tokens "
          "FROM vrm_open_admit_batch($1, $2, $3, $4, $5, $6, $7)")

#: One admission of a batch: (bucket name, prefix, rate, burst, now, thread, budget).
_Admit = tuple[str, bytes, float, float, int, bytes, int]
#: What it answers (see :meth:`PgOpenNegotiations.admit`).
_Admitted = tuple[int, int, int | None, float | None]
_CLOSE = "SELECT vrm_open_close($1, $2)"

# rows past their time in flight whose relationship was never stored, or is stored settled
_LEFTOVERS = f"""SELECT o.thread FROM open_negotiations o
    LEFT JOIN relationships r ON r.thread = o.thread
    WHERE o.at_ms < $1::bigint - {IN_FLIGHT_MS}
      AND (r.thread IS NULL OR r.state NOT IN {_OPEN_STATES})
    ORDER BY o.prefix, o.thread"""  # noqa: S608


class PgOpenNegotiations:
    """The open negotiations of a :class:`~vrmproto.store.PostgresStore`'s vendor, per prefix
    (see the module docstring)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._made = False
        self._making = asyncio.Lock()
        self._pruned_ms = 0
        self._batches: Coalescer[_Admit, _Admitted] = Coalescer(self._send)

    async def _make(self, conn: Connection) -> None:
        async with conn.transaction():  # under a lock, as rate_buckets
            key = advisory_key(self._store.config.schema, "rate_buckets")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
            for statement in (*_TABLES, _ADMIT_FUNCTION, _BATCH_FUNCTION, _CLOSE_FUNCTION):
                await conn.execute(statement)

    async def _ensure(self) -> None:
        if not self._made:
            async with self._making:  # once, not by every request that comes meanwhile
                if not self._made:
                    await self._store._pooled(self._make)
                    self._made = True

    async def _ready(self, now: int) -> None:
        await self._ensure()
        if now - self._pruned_ms >= PRUNE_EVERY_MS:
            self._pruned_ms = now
            await self.prune(now)

    async def admit(
        self, prefix: bytes, thread: bytes, *, now: int, budget: int, name: str, rate: float,
        burst: float,
    ) -> tuple[int, int, int | None, float | None]:
        """Admit ``thread``, opened from ``prefix``: (:data:`ADMITTED`, :data:`OPEN_FULL` or
        :data:`DAY_SPENT`; the open negotiations the prefix held; the time of the last message
        of its oldest one when full; the day bucket's level after the take, if one was tried).
        ``name``, ``rate`` and ``burst``: the day bucket's, as :class:`PgRateBuckets` takes."""
        await self._ready(now)
        return await self._batches.ask((name, prefix, rate, burst, now, thread, budget))

    async def _send(self, admits: Sequence[_Admit]) -> list[_Admitted]:
        """One statement for ``admits`` (see :mod:`vrmproto.store._pg_batch`)."""
        columns = [list(column) for column in zip(*admits, strict=True)]
        rows = await self._store._pooled(lambda conn: conn.fetch(_ADMIT, *columns))
        out: list[_Admitted | None] = [None] * len(admits)
        for ord_, code, held, oldest, tokens in rows:
            out[ord_ - 1] = (int(code), int(held), None if oldest is None else int(oldest),
                             None if tokens is None else float(tokens))  # fmt: skip
        assert all(answer is not None for answer in out)
        return out  # type: ignore[return-value]

    async def close(self, thread: bytes, *, unless_open: bool = False) -> None:
        """Stop counting ``thread``; with ``unless_open``, not while it is stored as an open
        negotiation (another process stored the message this one failed to)."""
        await self._ensure()
        await self._store._pooled(lambda conn: conn.execute(_CLOSE, thread, unless_open))

    async def prune(self, now: int) -> int:
        """Close the leftovers (see the module docstring); how many."""
        rows = await self._store._pooled(lambda conn: conn.fetch(_LEFTOVERS, now))
        leftovers = [bytes(row[0]) for row in rows]
        for thread in leftovers:
            await self.close(thread)
        await self._store._pooled(lambda conn: conn.execute("DELETE FROM open_counts WHERE n = 0"))
        return len(leftovers)
