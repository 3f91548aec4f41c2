"""A store written by a newer vrm is said to be that, not "damaged".

A person who ran a newer vrm (or restored a directory from a machine that has one) and then
runs an older vrm found: "the data directory is damaged: agent.db is not a usable database
(database schema version 99 is newer …); restore it from a backup, or import your seed into a
new directory" — and either remedy loses what the newer vrm recorded, while the files are
fine. Now: agent.db "was written by a newer vrm: upgrade vrm", exit 2.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tests._cli_helpers import fails, new_home, ok, vrm
from vrmproto.store import SchemaTooNew, SQLiteStore
from vrmproto.store._sqlite import SCHEMA_VERSION


def _newer_store(home: Path) -> None:
    async def make() -> None:
        await (await SQLiteStore.open(home / "agent.db")).close()

    asyncio.run(make())
    conn = sqlite3.connect(home / "agent.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 4}")
    conn.commit()
    conn.close()


def test_the_store_refuses_a_newer_schema_as_such(tmp_path: Path) -> None:
    _newer_store(tmp_path)

    async def open_it() -> SchemaTooNew:
        try:
            await SQLiteStore.open(tmp_path / "agent.db")
        except SchemaTooNew as exc:
            return exc
        raise AssertionError("opened")

    exc = asyncio.run(open_it())
    assert (exc.version, exc.supported) == (SCHEMA_VERSION + 4, SCHEMA_VERSION)


def test_a_newer_store_says_upgrade_not_damaged(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    _newer_store(home)
    before = (home / "agent.db").read_bytes()
    r = fails(vrm("relationships", home=home), 2, "newer", "upgrade vrm")
    assert "damaged" not in r.stderr
    assert "restore it from a backup" not in r.stderr
    assert (home / "agent.db").read_bytes() == before
    j = vrm("--json", "relationships", home=home).json
    assert j["error"]["kind"] == "too_new"


def test_the_current_schema_still_opens(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    ok(vrm("relationships", home=home))
