"""A disk that fills in the middle of a command (SQLite's SQLITE_FULL while more than 1 MiB is
still free) is said as the full disk it is, as s22b-store made opening the store say it: the
command's error reporter did not pass the exception on, so it ended as exit 1 "sqlite:
database or disk is full" (s22b-store's note)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import new_home
from vrmproto.cli import _app, _context


def _sqlite_full(tmp_path: Path) -> sqlite3.Error:
    conn = sqlite3.connect(tmp_path / "full.db")
    conn.execute("PRAGMA max_page_count = 2")
    try:
        conn.execute("CREATE TABLE t (b BLOB)")
        for _ in range(8):
            conn.execute("INSERT INTO t VALUES (randomblob(4000))")
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("SQLite did not run out of room")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[None]:
    """As if a command were running on a data directory (its Env is the current one)."""
    _context._current.append(_context.Env(data_dir=str(new_home(tmp_path))))
    try:
        yield
    finally:
        _context._current.pop()


@pytest.mark.usefixtures("running")
def test_sqlite_full_in_a_command_is_said_as_a_full_disk(tmp_path: Path) -> None:
    said = _app._unwritable(_sqlite_full(tmp_path))
    assert said is not None  # was None: reported as a failed command, exit 1
    assert said.kind == "unwritable"
    assert "full" in said.message
