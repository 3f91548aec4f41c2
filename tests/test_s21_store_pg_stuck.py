"""A PostgreSQL store whose statement waits for a lock someone else keeps fails, it does not hang.

A vendor's database is shared with its other software and its DBAs: a ``psql`` session left
inside ``BEGIN`` after a ``SELECT … FOR UPDATE``, a schema change of another application
holding a table lock, a long ``VACUUM FULL``. Before, every store statement that needed such a
lock waited for ever (no ``lock_timeout``): the customers' requests hung without an answer or
a log line, the writers stopped, and the queue of Commits behind them grew. Now a lock wait
ends after :attr:`PostgresConfig.lock_timeout_ms` (10 s by default) with a
:class:`StoreError` — nothing of the batch written, so the customer gets ``internal_error`` and
delivers again later (§12.4-3) — and the store goes on once the lock is free.
"""

from __future__ import annotations

import asyncio
import dataclasses

import _postgres
import pytest

from vrmproto.store import Commit, PostgresConfig, PostgresStore, StoreError
from vrmproto.testing.store_contract import T1, entry, rel

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config


def test_the_default_and_the_url_setting() -> None:
    assert PostgresConfig("postgresql:///x").lock_timeout_ms == 10_000
    url = "postgresql:///x?vrm_lock_timeout_ms=250&sslmode=disable"
    assert PostgresConfig.from_url(url).lock_timeout_ms == 250
    with pytest.raises(ValueError, match="lock_timeout_ms"):
        PostgresConfig("postgresql:///x", lock_timeout_ms=-1)


async def test_a_commit_waiting_for_a_lock_held_elsewhere_fails_and_writes_nothing(
    postgres_config: PostgresConfig,
) -> None:
    import asyncpg  # noqa: PLC0415 -- the cluster fixture has checked it exists

    config = dataclasses.replace(postgres_config, lock_timeout_ms=200)
    async with await PostgresStore.open(config) as s:
        await s.commit(Commit(relationships=(rel(T1),)))
        dba = await asyncpg.connect(config.dsn)
        try:
            tx = dba.transaction()
            await tx.start()  # a session left open in psql, holding the relationship's row
            await dba.execute(f"SELECT * FROM {config.schema}.relationships FOR UPDATE")
            with pytest.raises(StoreError, match="lock timeout"):
                await asyncio.wait_for(s.commit(Commit(
                    relationships=(rel(T1, state="agreed"),), history=(entry(T1, 0),))), 30)
            assert (await s.get_relationship(T1)) == rel(T1)  # reads do not wait for it
            assert await s.history(T1) == []
            await tx.rollback()
        finally:
            await dba.close()
        await s.commit(Commit(relationships=(rel(T1, state="agreed"),), history=(entry(T1, 0),)))
        assert await s.history(T1) == [entry(T1, 0)]


async def test_opening_waits_for_another_process_migrating_whatever_the_timeout(
    postgres_config: PostgresConfig,
) -> None:
    """The schema step of another process may take longer than the lock timeout (a step that
    rewrites the feed): a store opening meanwhile waits for it, not fails."""
    import asyncpg  # noqa: PLC0415

    from vrmproto.store._pg_schema import advisory_key  # noqa: PLC0415

    config = dataclasses.replace(postgres_config, lock_timeout_ms=100)
    other = await asyncpg.connect(config.dsn)
    try:
        tx = other.transaction()
        await tx.start()  # another process inside a migration step
        await other.execute("SELECT pg_advisory_xact_lock($1)",
                            advisory_key(config.schema, "migrate"))  # fmt: skip
        opening = asyncio.create_task(PostgresStore.open(config))

        async def waited() -> None:  # by PostgreSQL's clock: three lock timeouts and more
            watch = await asyncpg.connect(config.dsn)  # outside a transaction: fresh stats
            try:
                while not await watch.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                        "AND wait_event_type = 'Lock' "
                        "AND clock_timestamp() - query_start > interval '300 ms'",
                        f"vrmproto {config.schema}"):
                    pass
            finally:
                await watch.close()

        await asyncio.wait_for(waited(), 30)
        assert not opening.done()  # still waiting, not failed
        await tx.rollback()
        store = await asyncio.wait_for(opening, 30)
        await store.close()
    finally:
        await other.close()
