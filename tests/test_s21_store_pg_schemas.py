"""Two vendors sharing one PostgreSQL database, each in a schema of its own, do not wait for each
other's event feed.

Every transaction that writes events takes a transaction-level advisory lock so that events
become visible in ``pos`` order (docs/events.md, "Order"). Advisory locks belong to the
database, not to a schema: with one fixed key for every schema, a vendor whose event-writing
transaction waited (a row lock, a slow disk flush) held back every other vendor's commits on
the same database — their customers' receipts waited for a stranger's transaction. The order
is needed only within one feed, so the key is the schema's.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import _postgres

from vrmproto.store import Commit, PostgresConfig, PostgresStore
from vrmproto.store._pg_cluster import PrivateCluster
from vrmproto.testing.store_contract import event

postgres_cluster = _postgres.postgres_cluster

T1 = b"\x01" * 16


@contextlib.asynccontextmanager
async def two_vendors(
    cluster: PrivateCluster,
) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    schemas = ["t_" + uuid.uuid4().hex[:16] for _ in range(2)]
    stores = [await PostgresStore.open(PostgresConfig(cluster.dsn, schema=s, pool_size=1,
                                                      writers=1)) for s in schemas]  # fmt: skip
    try:
        yield stores[0], stores[1]
    finally:
        for s in stores:
            await s.close()
        for schema in schemas:
            await _postgres.drop_schema(cluster.dsn, schema)


async def test_a_vendor_waiting_in_its_feed_does_not_hold_back_another_schemas(
    postgres_cluster: PrivateCluster,
) -> None:
    import asyncpg  # noqa: PLC0415 -- the cluster fixture has checked it exists

    async with two_vendors(postgres_cluster) as (a, b):
        await a.commit(Commit(event_cursors=(("crm", 0),)))
        blocker = await asyncpg.connect(postgres_cluster.dsn)
        try:
            tx = blocker.transaction()
            await tx.start()  # holds vendor A's cursor row: A's next commit waits after its events
            await blocker.execute(f"SELECT pos FROM {a.config.schema}.event_cursors "
                                  "WHERE name = 'crm' FOR UPDATE")  # fmt: skip
            stuck = asyncio.create_task(
                a.commit(Commit(events=(event(T1, 0, "a"),), event_cursors=(("crm", 1),))))

            async def waiting() -> None:  # A's writer is inside its event transaction, waiting
                watch = await asyncpg.connect(postgres_cluster.dsn)  # no transaction: fresh
                try:
                    while not await watch.fetchval(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                            "AND wait_event_type = 'Lock'", f"vrmproto {a.config.schema}"):
                        pass
                finally:
                    await watch.close()

            await asyncio.wait_for(waiting(), 30)
            assert not stuck.done()
            # B, another vendor in another schema of the same database, commits its events
            await asyncio.wait_for(b.commit(Commit(events=(event(T1, 0, "b"),))), 5)
            assert [e.id for e in await b.events()] == [event(T1, 0, "b").id]
            await tx.rollback()
            await asyncio.wait_for(stuck, 5)
            assert await a.event_cursor("crm") == 1
        finally:
            await blocker.close()

