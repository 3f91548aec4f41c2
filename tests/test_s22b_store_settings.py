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
