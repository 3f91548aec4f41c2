"""``vrm doctor`` changes nothing (its docstring: "read-only: nothing is migrated"): on an
agent.db of an older schema it warned "the next command migrates it" — and then opened the
store for its later checks, which migrated it there and then (s22b-store's note)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests._cli_helpers import ok, vrm
from vrmproto.store._sqlite import SCHEMA_VERSION


def test_doctor_leaves_an_older_schema_as_it_found_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok(vrm("init", "--name", "Doc", home=home))
    ok(vrm("outbox", home=home))  # (agent.db made)
    db = home / "agent.db"
    assert db.exists()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    conn.close()
    r = vrm("doctor", "--json", home=home)
    with sqlite3.connect(db) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert version == SCHEMA_VERSION - 1, r  # was migrated by doctor
    checks = {c["check"]: c for c in r.json["checks"]}
    assert checks["schema"]["status"] == "warn"
    assert "next command" in checks["store"]["detail"]
