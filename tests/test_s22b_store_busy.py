"""agent.db whose write lock another process holds while this one opens it: said as busy.

Two ``vrm`` processes on one data directory while one of them migrates a large store (or holds
a write transaction: stopped with ^Z, or on a network file system whose locks never clear):
the second waited the busy timeout and then said "the data directory is damaged: agent.db is
not a usable database (sqlite: database is locked); restore it from a backup" — a person who
did so lost what the other process was writing, from a store that was fine. Now: "agent.db is
busy: another vrm process is writing to it", exit 2, kind ``busy``, and the file is untouched.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_s22b_store_full import refusal_opening

from tests._cli_helpers import new_home
from vrmproto.cli._cmd_doctor import diagnose
from vrmproto.cli._errors import EXIT_USAGE
from vrmproto.cli._home import Home
from vrmproto.store import SQLiteStore, StoreBusy
from vrmproto.store import _sqlite as sqlite_store
from vrmproto.store._sqlite import SCHEMA_VERSION


@pytest.fixture
def quick_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "_BUSY_TIMEOUT_S", 0.05)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = new_home(tmp_path)

    async def make() -> None:
        await (await SQLiteStore.open(path / "agent.db")).close()

    asyncio.run(make())
    return path


def _at_version(db: Path, version: int) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {version:d}")
    conn.commit()
    conn.close()


@pytest.fixture
def writing(home: Path) -> Iterator[sqlite3.Connection]:
    """Another process's write transaction on agent.db, held for the test."""
    conn = sqlite3.connect(home / "agent.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    yield conn
    conn.execute("ROLLBACK")
    conn.close()


@pytest.mark.usefixtures("quick_busy")
def test_an_open_that_must_migrate_while_another_writes_says_busy(
    home: Path, writing: sqlite3.Connection
) -> None:
    writing.execute("ROLLBACK")
    _at_version(home / "agent.db", SCHEMA_VERSION - 1)  # another vrm is migrating it
    writing.execute("BEGIN IMMEDIATE")
    before = (home / "agent.db").read_bytes()
    err = refusal_opening(home)
    assert err.kind == "busy", err.message
    assert err.exit_code == EXIT_USAGE
    assert "another vrm process" in err.message
    assert "damaged" not in err.message
    assert "backup" not in err.message
    assert (home / "agent.db").read_bytes() == before


@pytest.mark.usefixtures("quick_busy")
def test_the_store_raises_store_busy(home: Path, writing: sqlite3.Connection) -> None:
    writing.execute("ROLLBACK")
    _at_version(home / "agent.db", SCHEMA_VERSION - 1)
    writing.execute("BEGIN IMMEDIATE")

    async def open_it() -> None:
        await (await SQLiteStore.open(home / "agent.db")).close()

    with pytest.raises(StoreBusy):
        asyncio.run(open_it())


@pytest.mark.usefixtures("quick_busy")
def test_doctor_says_busy_in_a_line_and_keeps_the_others(
    home: Path, writing: sqlite3.Connection
) -> None:
    """Before, `vrm doctor` printed none of its checks: the store's error ended it. (At the
    current schema: of an older one, doctor no longer opens the store at all, as it would
    migrate it: tests/test_s22_lead_doctor_readonly.py.)"""
    checks = {c.name: c for c in diagnose(Home(home), 1.0)}
    assert checks["seed"].status == "ok"
    assert checks["schema"].status == "ok"
    assert checks["store"].status == "fail"
    assert "another vrm process" in checks["store"].detail
