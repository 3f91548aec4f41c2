"""What a ``vrm`` command wrote is in ``agent.db`` once it has ended, not only in ``agent.db-wal``.

The SQLite store turns automatic checkpoints off and checkpoints (PASSIVE) every 64 commits it
made itself (``CHECKPOINT_EVERY``). A ``vrm`` command makes a few commits and ends, so it
relies on SQLite's checkpoint when the last connection to the database closes. ``SQLiteStore.
close`` used to close the writer's connection first and the reader connections — opened
``?mode=ro`` (``_connect_reader``) — last, and a read-only connection cannot checkpoint: the WAL
was never folded in nor reset. For a person who uses ``vrm`` commands (and a cron ``vrm outbox
run``), ``agent.db-wal`` grew with every commit (3.7 MB and 901 frames over an afternoon's
try-out, ``agent.db`` still one empty page), and a copy of ``agent.db`` alone — the file a
person backs up — held none of it. The writer's connection now closes last.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from _agent_clock import URL

from vrmproto import Identity
from vrmproto.client import DEFAULT_TERMS, Agent
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore, SQLiteStore
from vrmproto.testing.transport import MemoryTransport


async def test_a_command_that_ended_left_its_relationships_in_agent_db(tmp_path: Path) -> None:
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name="Acme",
                      policy=ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS]))
    store = await SQLiteStore.open(tmp_path / "agent.db")
    agent = await Agent.open(store, os.urandom(32), client=MemoryTransport({URL: vendor}))
    await agent.connect(URL)  # what `vrm connect` does, then it ends
    await agent.close()
    await store.close()
    alone = sqlite3.connect(f"{(tmp_path / 'agent.db').as_uri()}?mode=ro&immutable=1", uri=True)
    try:  # agent.db as a backup holds it: without its -wal file
        (count,) = alone.execute("SELECT count(*) FROM relationships").fetchone()
    except sqlite3.OperationalError as exc:  # no such table: the schema is in the WAL too
        pytest.fail(f"agent.db alone: {exc}")
    finally:
        alone.close()
    assert count == 1
