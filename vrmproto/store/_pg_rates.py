"""Rate-limit token buckets in PostgreSQL, shared by every server process (spec §12.9-8).

One row per (limit, key) in ``rate_buckets``: the tokens left and the time (ms) they were
counted at. Every operation (take, charge, refund, read the level) is one atomic update of one
row, which PostgreSQL runs under the row's lock, so processes taking from one bucket at once
each take their own token; the refill is computed in the statement from the caller's clock, as
:class:`~vrmproto.server.RateLimiter` does in memory (§12.9-5). The operations a process asks
for while one of its statements is on its way go to the database together, in the next
statement: ``vrm_bucket_batch`` applies them one after another, in the order they were asked
for per bucket, the buckets in (name, key) order (:mod:`vrmproto.store._pg_batch`).

The table is ``UNLOGGED`` and made on first use, outside the versioned schema
(:mod:`vrmproto.store._pg_schema`): its rows are not data anyone keeps. PostgreSQL writes no
WAL for it (an update costs no flush) and empties it after a crash or on a standby promoted —
every bucket then full, as after a restart of a single process. A full bucket and no row mean
the same, so rows that have refilled are deleted now and then (:data:`PRUNE_EVERY_MS`), which
keeps the table as small as the set of keys seen within a refill time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vrmproto.store._pg_batch import Coalescer
from vrmproto.store._pg_schema import advisory_key

if TYPE_CHECKING:
    from asyncpg import Connection

    from vrmproto.store._postgres import PostgresStore

__all__ = ["PRUNE_EVERY_MS", "TABLE", "TAKE", "PgRateBuckets"]

#: How often (by the callers' clock) one process deletes the rows of full buckets.
PRUNE_EVERY_MS = 60_000

#: The buckets' table (also made by :mod:`vrmproto.store._pg_admission`, whose function takes
#: from it).
TABLE = """CREATE UNLOGGED TABLE IF NOT EXISTS rate_buckets (
    name text NOT NULL, key bytea NOT NULL, tokens double precision NOT NULL,
    at_ms bigint NOT NULL, full_ms bigint NOT NULL, taken boolean NOT NULL,
    PRIMARY KEY (name, key))"""

# the level now: what was left plus the refill since, at most the burst ($3 rate, $4 burst, $5 now)
_LEVEL = "least($4::float8, b.tokens + greatest($5::bigint - b.at_ms, 0) * $3::float8 / 60000.0)"
# when a bucket at level L is full again (ms); a row past it may be deleted
_FULL = "$5::bigint + ceil(greatest($4::float8 - {level}, 0) * 60000.0 / $3::float8)::bigint"

_AFTER_TAKE = f"(CASE WHEN {_LEVEL} >= 1 THEN {_LEVEL} - 1 ELSE {_LEVEL} END)"

#: Take a token if there is one ($1 name, $2 key, $3 rate, $4 burst, $5 now): the level after,
#: and whether one was taken.
TAKE = f"""INSERT INTO rate_buckets AS b (name, key, tokens, at_ms, full_ms, taken)
    VALUES ($1::text, $2::bytea, $4::float8 - 1, $5::bigint,
            {_FULL.format(level="($4::float8 - 1)")}, $4::float8 >= 1)
    ON CONFLICT (name, key) DO UPDATE SET
        tokens = {_AFTER_TAKE},
        taken = {_LEVEL} >= 1,
        at_ms = greatest(b.at_ms, $5::bigint),
        full_ms = {_FULL.format(level=_AFTER_TAKE)}
    RETURNING tokens, taken"""  # noqa: S608 -- no input is written into the text

_CHARGE = f"""INSERT INTO rate_buckets AS b (name, key, tokens, at_ms, full_ms, taken)
    VALUES ($1::text, $2::bytea, $4::float8 - 1, $5::bigint,
            {_FULL.format(level="($4::float8 - 1)")}, true)
    ON CONFLICT (name, key) DO UPDATE SET
        tokens = greatest({_LEVEL} - 1, -$4::float8), taken = true,
        at_ms = greatest(b.at_ms, $5::bigint),
        full_ms = {_FULL.format(level=f"greatest({_LEVEL} - 1, -$4::float8)")}
    RETURNING tokens, true"""  # noqa: S608

_REFUND = f"""UPDATE rate_buckets AS b SET
        tokens = least($4::float8, {_LEVEL} + 1), at_ms = greatest(b.at_ms, $5::bigint),
        full_ms = {_FULL.format(level=f"least($4::float8, {_LEVEL} + 1)")}
    WHERE name = $1 AND key = $2 RETURNING tokens, true"""  # noqa: S608

_LEVEL_NOW = f"SELECT {_LEVEL}, true FROM rate_buckets AS b WHERE name = $1 AND key = $2"  # noqa: S608

#: What a batch asks of one bucket (the ``op`` of :data:`_BATCH_FUNCTION`).
TAKE_OP, CHARGE_OP, REFUND_OP, LEVEL_OP = 0, 1, 2, 3

# one function per operation: ($1 name, $2 key, $3 rate, $4 burst, $5 now) -> (tokens, taken);
# PL/pgSQL, whose plans each connection keeps (an SQL function called from PL/pgSQL is planned
# again at every call)
_OP_FUNCTIONS = tuple(
    f"""CREATE OR REPLACE FUNCTION {fn}(text, bytea, float8, float8, bigint,
        OUT out_tokens float8, OUT out_taken boolean) LANGUAGE plpgsql VOLATILE AS $fn$
    BEGIN {body} INTO out_tokens, out_taken; END $fn$"""
    for fn, body in (("vrm_bucket_take", TAKE), ("vrm_bucket_charge", _CHARGE),
                     ("vrm_bucket_refund", _REFUND), ("vrm_bucket_level", _LEVEL_NOW))
)  # fmt: skip

# The requests of a batch ($1 op, $2 name, $3 key, $4 rate, $5 burst, $6 now: one each), each
# applied as alone, in the order made per bucket, the buckets in (name, key) order: the order
# in which every batch takes the rows' locks (vrmproto.store._pg_batch).
_BATCH_FUNCTION = f"""CREATE OR REPLACE FUNCTION vrm_bucket_batch(
        int[], text[], bytea[], float8[], float8[], bigint[])
    RETURNS TABLE (out_ord int, out_tokens float8, out_taken boolean)
    LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    i int;
BEGIN
    FOR i IN SELECT u.o::int FROM unnest($2, $3) WITH ORDINALITY AS u(n, k, o)
            ORDER BY u.n, u.k, u.o LOOP
        out_ord := i;
        CASE $1[i]
            WHEN {TAKE_OP} THEN SELECT * INTO out_tokens, out_taken
                FROM vrm_bucket_take($2[i], $3[i], $4[i], $5[i], $6[i]);
            WHEN {CHARGE_OP} THEN SELECT * INTO out_tokens, out_taken
                FROM vrm_bucket_charge($2[i], $3[i], $4[i], $5[i], $6[i]);
            WHEN {REFUND_OP} THEN SELECT * INTO out_tokens, out_taken
                FROM vrm_bucket_refund($2[i], $3[i], $4[i], $5[i], $6[i]);
            ELSE SELECT * INTO out_tokens, out_taken
                FROM vrm_bucket_level($2[i], $3[i], $4[i], $5[i], $6[i]);
        END CASE;
        RETURN NEXT;
    END LOOP;
END $fn$"""  # noqa: S608 -- no input is written into the text

#: Make the table and the functions (under the advisory lock of :meth:`PgRateBuckets._make`).
MAKE = (TABLE, *_OP_FUNCTIONS, _BATCH_FUNCTION)

_BATCH = "SELECT out_ord, out_tokens, out_taken FROM vrm_bucket_batch($1, $2, $3, $4, $5, $6)"

_PRUNE = "DELETE FROM rate_buckets WHERE full_ms <= $1::bigint"

#: One request of a batch: (op, name, key, rate, burst, now).
_Op = tuple[int, str, bytes, float, float, int]


class PgRateBuckets:
    """The :class:`~vrmproto.server._ratelimit.BucketStore` of a
    :class:`~vrmproto.store.PostgresStore`: its pooled connections, its schema. Requests made
    while one is on its way go together in the next statement
    (:class:`~vrmproto.store._pg_batch.Coalescer`)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._made = False
        self._making = asyncio.Lock()
        self._pruned_ms = 0
        self._batches: Coalescer[_Op, tuple[float | None, bool | None]] = Coalescer(self._send)

    async def _make(self, conn: Connection) -> None:
        # under a lock: two processes creating the table at once would collide in the catalog
        async with conn.transaction():
            key = advisory_key(self._store.config.schema, "rate_buckets")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
            for statement in MAKE:
                await conn.execute(statement)

    async def _ready(self, now: int) -> None:
        if not self._made:
            async with self._making:  # once, not by every request that comes meanwhile
                if not self._made:
                    await self._store._pooled(self._make)
                    self._made = True
        if now - self._pruned_ms >= PRUNE_EVERY_MS:
            self._pruned_ms = now
            await self._store._pooled(lambda conn: conn.execute(_PRUNE, now))

    async def _send(self, ops: Sequence[_Op]) -> list[tuple[float | None, bool | None]]:
        """One statement for ``ops``: each one's (level after, taken)."""
        columns = [list(column) for column in zip(*ops, strict=True)]
        rows = await self._store._pooled(lambda conn: conn.fetch(_BATCH, *columns))
        out: list[tuple[float | None, bool | None]] = [(None, None)] * len(ops)
        for ord_, tokens, taken in rows:
            out[ord_ - 1] = (None if tokens is None else float(tokens), taken)
        return out

    async def _ask(self, op: _Op) -> tuple[float | None, bool | None]:
        await self._ready(op[5])
        return await self._batches.ask(op)

    async def take(self, name: str, key: bytes, rate: float, burst: float,
                   now: int) -> tuple[float, bool]:  # fmt: skip
        """Take a token if the bucket holds one; the level after, and whether it was taken."""
        tokens, taken = await self._ask((TAKE_OP, name, key, rate, burst, now))
        assert tokens is not None
        return tokens, bool(taken)

    async def charge(self, name: str, key: bytes, rate: float, burst: float, now: int) -> float:
        """Take a token whether or not one is there (down to ``-burst``)."""
        tokens, _ = await self._ask((CHARGE_OP, name, key, rate, burst, now))
        assert tokens is not None
        return tokens

    async def refund(self, name: str, key: bytes, rate: float, burst: float,
                     now: int) -> float | None:  # fmt: skip
        """Give a token back (never above ``burst``); nothing where the key has no bucket."""
        return (await self._ask((REFUND_OP, name, key, rate, burst, now)))[0]

    async def level(self, name: str, key: bytes, rate: float, burst: float,
                    now: int) -> float | None:  # fmt: skip
        """The tokens in the bucket now; None where the key has no bucket (a full one)."""
        return (await self._ask((LEVEL_OP, name, key, rate, burst, now)))[0]
