"""A real PostgreSQL for tests: one private cluster per test session, one schema per test.

The cluster (:class:`vrmproto.store._pg_cluster.PrivateCluster`) is initialised in a temporary
directory, listens only on a Unix socket there (no TCP), runs as the ``postgres`` user when the
tests run as root, and is stopped and deleted when the session ends. Where PostgreSQL or asyncpg
is missing, every test using it skips with the reason.

Use it from a test module by naming the fixtures there (pytest finds fixtures by name in the
module)::

    import _postgres

    postgres_cluster = _postgres.postgres_cluster
    postgres_config = _postgres.postgres_config

Each module naming it that way has a fixture of its own, so the cluster is kept in the session's
config (``config.stash``) and every module's ``postgres_cluster`` returns the same one: before,
each of the ten modules initialised and started a cluster of its own (2 s or more each), and all
of them ran until the session ended.
"""

from __future__ import annotations

import contextlib
import importlib.util
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vrmproto.store import MemoryStore, PostgresConfig, PostgresStore, SQLiteStore, Store
from vrmproto.store._pg_cluster import PrivateCluster, missing_reason

__all__ = ["drop_schema", "postgres_cluster", "postgres_config"]


_CLUSTER = pytest.StashKey[PrivateCluster]()


@pytest.fixture(scope="session")
def postgres_cluster(request: pytest.FixtureRequest) -> PrivateCluster:
    """A private PostgreSQL server for the whole session (skips where it cannot run)."""
    reason = missing_reason()
    if reason is None and importlib.util.find_spec("asyncpg") is None:
        reason = "asyncpg is not installed (pip install -e '.[dev]')"
    if reason is not None:
        pytest.skip(reason)
    config = request.config
    if _CLUSTER not in config.stash:
        cluster = PrivateCluster.start()
        config.stash[_CLUSTER] = cluster
        config.add_cleanup(cluster.stop)  # when the session ends
    return config.stash[_CLUSTER]


async def drop_schema(dsn: str, schema: str) -> None:
    import asyncpg  # noqa: PLC0415 -- only once the cluster fixture has checked it exists

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def postgres_config(postgres_cluster: PrivateCluster) -> AsyncIterator[PostgresConfig]:
    """A config naming a fresh schema of the session's cluster, dropped after the test."""
    schema = "t_" + uuid.uuid4().hex[:16]
    yield PostgresConfig(postgres_cluster.dsn, schema=schema, pool_size=2, writers=2)
    await drop_schema(postgres_cluster.dsn, schema)


@contextlib.asynccontextmanager
async def opened_store(request: pytest.FixtureRequest, tmp_path: Path, kind: str, *,
                       inline: bool = False) -> AsyncIterator[Store]:  # fmt: skip
    """A fresh store of ``kind`` ("memory", "sqlite" — ``inline``: the agent's way — or
    "postgres": a schema of its own in the session's private cluster, skipped where there is
    none, dropped after), closed after."""
    s: Any
    schema = dsn = ""
    if kind == "memory":
        s = MemoryStore()
    elif kind == "sqlite":
        s = await SQLiteStore.open(tmp_path / "agent.db", inline=inline)
    else:
        dsn = request.getfixturevalue("postgres_cluster").dsn
        schema = "t_" + uuid.uuid4().hex[:16]
        s = await PostgresStore.open(PostgresConfig(dsn, schema=schema, pool_size=2, writers=2))
    try:
        yield s
    finally:
        await s.close()
        if schema:
            await drop_schema(dsn, schema)
