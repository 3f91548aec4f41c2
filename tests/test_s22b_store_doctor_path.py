"""`vrm doctor` reads the data directory's own agent.db whatever characters its path holds.

Its read-only check built the SQLite URI by pasting the path into ``file:…?mode=ro``: a
directory named like "my docs #2" or "100%" cut the URI short, so doctor opened (and
*created*, world-readable, since ``mode=ro`` was cut off too) an empty file "my docs " beside
the data directory, and reported that file: "schema: version 0: the next command migrates it",
integrity ok — for a store that was at the current version, or damaged. Now the path is
quoted into the URI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._cli_helpers import new_home, ok, vrm
from vrmproto.store._sqlite import SCHEMA_VERSION


@pytest.mark.parametrize("name", ["my docs #2", "100%25 done", "what?mode=rwc"])
def test_doctor_reads_the_right_file(tmp_path: Path, name: str) -> None:
    parent = tmp_path / name
    parent.mkdir()
    home = new_home(parent)
    ok(vrm("relationships", home=home))
    before = sorted(p.name for p in tmp_path.iterdir())

    r = vrm("--json", "doctor", home=home)
    checks = {c["check"]: c for c in r.json["checks"]}
    assert checks["schema"]["status"] == "ok", checks
    assert checks["schema"]["detail"] == f"version {SCHEMA_VERSION}"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing made beside it
    assert sorted(p.name for p in parent.iterdir()) == ["you"]
