"""A PostgreSQL that stops answering — a failover, a network cut without a reset — makes the
store's statements fail after :attr:`PostgresConfig.command_timeout_s`, not hang.

The store talks to PostgreSQL through a proxy here (a Unix socket of its own in front of the
private cluster's) that the test freezes: it keeps the connections open and passes nothing on,
as a database host that vanished behind a load balancer or a cut network does until TCP gives
up (about 15 minutes for a connection with data unacknowledged; for ever for one waiting for an
answer). Before, a Commit then waited that long, and every Commit queued behind its writer, and
every read: customers' requests hung without an answer or a log line. Now a statement without
an answer fails after ``command_timeout_s`` (60 s by default), the Commit with a
:class:`StoreError` (whose COMMIT may have landed: the customer's retry then meets the stored
response, as after any lost connection), the connection is dropped without waiting for the
server, and the store opens new ones once the database answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import _postgres
import pytest

from vrmproto.store import Commit, PostgresConfig, PostgresStore, StoreError
from vrmproto.store._pg_cluster import PrivateCluster
from vrmproto.testing.store_contract import T1, T2, entry, rel

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config


class Proxy:
    """Forwards connections from a Unix socket of its own to the cluster's; :attr:`frozen`
    stops passing bytes on, both ways, without closing anything."""

    def __init__(self, cluster: PrivateCluster, root: Path) -> None:
        self.target = str(cluster.socket_dir / f".s.PGSQL.{cluster.port}")
        self.path = root / f".s.PGSQL.{cluster.port}"
        self.dsn = cluster.dsn.replace(quote(str(cluster.socket_dir), safe="/"),
                                       quote(str(root), safe="/"))  # fmt: skip
        self.thawed = asyncio.Event()
        self.thawed.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self.thawed.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.target)
        self.writers += [writer, up_writer]
        for pipe in (self._pipe(reader, up_writer), self._pipe(up_reader, writer)):
            task = asyncio.create_task(pipe)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Proxy]:
        server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        try:
            yield self
        finally:
            server.close()
            for w in self.writers:
                w.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await server.wait_closed()


def test_the_default_and_the_url_setting() -> None:
    assert PostgresConfig("postgresql:///x").command_timeout_s == 60.0
    url = "postgresql:///x?vrm_command_timeout_s=2.5"
    assert PostgresConfig.from_url(url).command_timeout_s == 2.5
    with pytest.raises(ValueError, match="command_timeout_s"):
        PostgresConfig("postgresql:///x", command_timeout_s=0)


async def test_a_database_that_stops_answering_fails_the_commit_and_the_store_recovers(
    postgres_cluster: PrivateCluster, postgres_config: PostgresConfig,
) -> None:
    with tempfile.TemporaryDirectory() as root:
        async with Proxy(postgres_cluster, Path(root)).running() as proxy:
            config = dataclasses.replace(postgres_config, dsn=proxy.dsn, command_timeout_s=0.5,
                                         writers=1, pool_size=1)  # fmt: skip
            async with await PostgresStore.open(config) as s:
                await s.commit(Commit(relationships=(rel(T1),)))  # the writer is connected
                assert await s.get_relationship(T1) == rel(T1)  # and the reader
                proxy.thawed.clear()  # the database host is gone without a word
                with pytest.raises(StoreError):
                    await asyncio.wait_for(
                        s.commit(Commit(relationships=(rel(T2),), history=(entry(T2, 0),))), 20)
                with pytest.raises(StoreError):
                    await asyncio.wait_for(s.get_relationship(T1), 20)
                proxy.thawed.set()  # it answers again (the old connections were dropped)
                await s.commit(Commit(relationships=(rel(T1, state="agreed"),)))
                assert await s.get_relationship(T1) == rel(T1, state="agreed")
                async with s.lock(b"x"):  # the lock connection is open too
                    pass
                proxy.thawed.clear()  # gone again: closing the store does not wait for it
                await asyncio.wait_for(s.close(), 20)
