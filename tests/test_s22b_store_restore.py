"""Restoring a damaged agent.db from a backup: the remedy says to remove its -wal first.

A vrm killed mid-write (power loss, ``kill -9``) leaves ``agent.db-wal`` beside agent.db. When
agent.db is then damaged (or emptied), every message said "restore it from a backup" — and a
backup copied over agent.db with the old ``-wal`` left beside it has that WAL laid over it by
SQLite the next time it is opened: the restored store is "malformed" too, or silently a mix of
both. Now, when a ``-wal`` or ``-shm`` is there (a command refuses an emptied agent.db before
SQLite opens it, and ``vrm doctor`` reads read-only, so it stays), the remedy says to remove
them first.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests._cli_helpers import fails, new_home, ok, vrm

_KILLED_WRITER = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("PRAGMA wal_autocheckpoint = 0")
conn.execute("CREATE TABLE IF NOT EXISTS filler (x)")
for _ in range(300):
    conn.execute("INSERT INTO filler VALUES (?)", (os.urandom(600),))
conn.commit()
os._exit(0)  # killed: its -wal stays
"""


def _store(home: Path) -> None:
    ok(vrm("relationships", home=home))


def _killed_mid_write(db: Path) -> None:
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(db)], check=True)
    assert db.with_name("agent.db-wal").stat().st_size > 0


def test_why_the_wal_must_go(tmp_path: Path) -> None:
    """What the remedy prevents: an older backup under a newer -wal is malformed."""
    home = new_home(tmp_path)
    db = home / "agent.db"
    _store(home)
    shutil.copy(db, tmp_path / "backup.db")
    conn = sqlite3.connect(db)  # the store moves on after the backup
    conn.execute("CREATE TABLE later (x)")
    conn.executemany("INSERT INTO later VALUES (?)", [(os.urandom(300),) for _ in range(400)])
    conn.commit()
    conn.close()
    _killed_mid_write(db)
    shutil.copy(tmp_path / "backup.db", db)  # restored, the -wal left beside it
    try:
        broken = sqlite3.connect(db).execute("PRAGMA integrity_check").fetchall() != [("ok",)]
    except sqlite3.DatabaseError:
        broken = True
    assert broken


def test_doctor_on_a_damaged_store_says_to_remove_its_wal_before_restoring(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    _store(home)
    _killed_mid_write(home / "agent.db")
    for name in ("agent.db", "agent.db-wal"):  # both headers destroyed
        with open(home / name, "r+b") as f:
            f.write(b"\xa5" * 100)
    checks = {c["check"]: c for c in vrm("--json", "doctor", home=home).json["checks"]}
    assert "backup" in checks["store"]["detail"]
    assert "remove agent.db-wal and agent.db-shm" in checks["store"]["detail"]
    # a command's failed open lets SQLite take the -wal away: then nothing more is said
    r = fails(vrm("relationships", home=home), 2, "damaged", "backup")
    assert ("agent.db-wal" in r.stderr) == (home / "agent.db-wal").exists()


def test_an_emptied_store_says_to_remove_its_wal_before_restoring(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    _store(home)
    _killed_mid_write(home / "agent.db")
    os.truncate(home / "agent.db", 0)
    fails(vrm("relationships", home=home), 2, "empty", "agent.db-wal")
    checks = {c["check"]: c for c in vrm("--json", "doctor", home=home).json["checks"]}
    assert "agent.db-wal" in checks["store"]["detail"]


def test_without_a_wal_nothing_more_is_said(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    _store(home)
    assert not (home / "agent.db-wal").exists()  # the last vrm closed it cleanly
    os.truncate(home / "agent.db", 0)
    r = fails(vrm("relationships", home=home), 2, "empty")
    assert "agent.db-wal" not in r.stderr


def test_the_remedy_works(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    db = home / "agent.db"
    _store(home)
    shutil.copy(db, tmp_path / "backup.db")
    _killed_mid_write(db)
    os.truncate(db, 0)
    for suffix in ("-wal", "-shm"):
        (home / f"agent.db{suffix}").unlink(missing_ok=True)
    shutil.copy(tmp_path / "backup.db", db)
    ok(vrm("relationships", home=home))
