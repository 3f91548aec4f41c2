"""settings.json written by a newer vrm, or damaged: said as what it is, with a remedy that works.

Before, a settings.json of a newer format (or naming a term of a newer roster) was "damaged:
restore it from a backup, or import your seed into a new directory" — a new directory has none
of the person's relationships, and the file was fine. Now: "written by a newer vrm: upgrade
vrm", exit 2, and ``vrm terms set`` leaves it alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests._cli_helpers import fails, new_home, vrm
from vrmproto.cli._home import Home


def test_settings_from_a_newer_vrm_say_upgrade(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    (home / "settings.json").write_text(json.dumps(
        {"format": 2, "name": "Doc", "terms": [], "profiles": {}}))
    r = fails(vrm("terms", home=home), 2, "settings.json", "newer", "upgrade vrm")
    assert "damaged" not in r.stderr
    doctor = vrm("--json", "doctor", home=home)
    checks = {c["check"]: c for c in doctor.json["checks"]}
    assert checks["settings"]["status"] == "fail"
    assert "upgrade vrm" in checks["settings"]["detail"]


def test_a_term_of_a_newer_roster_says_upgrade(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    (home / "settings.json").write_text(json.dumps(
        {"format": 1, "name": "Doc", "terms": [{"id": "vrm.no-tracking", "version": 99}]}))
    fails(vrm("terms", home=home), 2, "settings.json", "newer", "upgrade vrm")
    # `vrm terms set` does not overwrite what a newer vrm wrote, either
    fails(vrm("terms", "set", "vrm.no-tracking", home=home), 2, "upgrade vrm")
    assert "99" in (home / "settings.json").read_text()
    assert Home(home).settings_path.exists()


def test_damaged_settings_name_a_remedy_that_works(tmp_path: Path) -> None:
    """Before: "restore it from a backup, or import your seed into a new directory" (a new
    directory holds none of the relationships), and `vrm terms set` refused the damaged file
    too, so no vrm command could repair it."""
    home = new_home(tmp_path)
    for damage in (b"", b'{"format": 1, "name": "Doc", "ter', b"\xff\xfe"):
        (home / "settings.json").write_bytes(damage)
        r = fails(vrm("terms", home=home), 2, "settings.json", "vrm terms set")
        assert "new directory" not in r.stderr
        checks = {c["check"]: c for c in vrm("--json", "doctor", home=home).json["checks"]}
        assert "vrm terms set" in checks["settings"]["detail"]

        chosen = vrm("terms", "set", "vrm.no-tracking", "vrm.delete-after:days=30", home=home)
        assert chosen.code == 0, chosen
        assert "settings.json" in chosen.stderr  # said: the damaged one was replaced
        assert (home / "settings.json.damaged").read_bytes() == damage  # kept, not lost
        shown = vrm("--json", "terms", home=home)
        assert shown.code == 0, shown
        assert [t["id"] for t in shown.json["terms"]] == ["vrm.no-tracking", "vrm.delete-after"]


def test_a_damaged_seed_file_points_to_key_import_here(tmp_path: Path) -> None:
    """`vrm key import` into the same directory repairs a damaged seed file (checked against
    agent.db); "into a new directory" left the relationships behind."""
    home = new_home(tmp_path)
    seed = vrm("key", "export", home=home).stdout.strip()
    (home / "seed").write_text("vrm1-this-is-not-it\n")
    r = fails(vrm("relationships", home=home), 2, "seed", "vrm key import")
    assert "new directory" not in r.stderr
    assert vrm("key", "import", home=home, stdin=seed).code == 0
    assert vrm("relationships", home=home).code == 0
