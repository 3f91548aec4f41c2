"""A store that SQLite finds its disk too full for is said to be that, not "damaged".

``Home.unwritable`` calls a disk full below 1 MiB free. A store that needs more than what is
left — the first command making agent.db's schema, or migrating a large store, which copies
its tables — failed with SQLite's own "database or disk is full" while more than that was
free, and the person read "the data directory is damaged: agent.db is not a usable database
(sqlite: database or disk is full); restore it from a backup". Now SQLite's SQLITE_FULL is
said as the full disk it is: "cannot write in your data directory …: its disk is full", exit
2, kind ``unwritable``, the files as they were.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests._cli_helpers import new_home
from vrmproto.cli._errors import EXIT_USAGE, CliError
from vrmproto.cli._home import Home

_connect = sqlite3.connect


def refusal_opening(home: Path) -> CliError:
    """What opening the store of ``home`` as a command does raises (it must not open)."""

    async def open_it() -> CliError:
        try:
            await (await Home(home).open_store()).close()
        except CliError as exc:
            return exc
        raise AssertionError("opened")

    return asyncio.run(open_it())


def _no_room(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
    """A write connection to agent.db that cannot grow it: SQLite says SQLITE_FULL."""
    conn = _connect(database, *args, **kwargs)
    if str(database).endswith("agent.db") and not kwargs.get("uri"):
        conn.execute("PRAGMA max_page_count = 1")
    return conn


def test_sqlite_full_is_said_as_a_full_disk(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    home = new_home(tmp_path)
    monkeypatch.setattr(sqlite3, "connect", _no_room)
    err = refusal_opening(home)
    assert err.kind == "unwritable", err.message
    assert err.exit_code == EXIT_USAGE
    assert "full" in err.message
    assert "damaged" not in err.message
    assert "backup" not in err.message
