"""`vrm init` in a directory that holds a settings.json but no seed keeps the person's terms.

A person restoring by hand (settings.json copied from the old laptop, the seed kept offline
and not restored yet — or deciding on a new seed) ran ``vrm init``: it overwrote settings.json
with the default terms and no name, without a word, and the next ``vrm connect`` proffered
terms the person had not chosen. Now init keeps the terms (and the name, unless ``--name``
gives one) and says so.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from tests._cli_helpers import fails, new_home, ok, vrm
from vrmproto.cli._seedtext import seed_to_text


def test_init_keeps_the_terms_it_finds(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    ok(vrm("terms", "set", "vrm.no-tracking", "vrm.delete-after:days=30", home=home))
    chosen = json.loads((home / "settings.json").read_text())
    (home / "seed").unlink()

    r = ok(vrm("--json", "init", home=home))
    assert "settings.json" in r.stderr  # said: kept, not replaced
    assert json.loads((home / "settings.json").read_text()) == chosen
    assert [t["id"] for t in r.json["terms"]] == ["vrm.no-tracking", "vrm.delete-after"]
    assert r.json["name"] == "Doc"
    shown = ok(vrm("--json", "terms", home=home)).json["terms"]
    assert [t["id"] for t in shown] == ["vrm.no-tracking", "vrm.delete-after"]


def test_init_name_replaces_only_the_name(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    ok(vrm("terms", "set", "vrm.no-tracking", home=home))
    (home / "seed").unlink()
    ok(vrm("init", "--name", "Searls", home=home))
    kept = json.loads((home / "settings.json").read_text())
    assert kept["name"] == "Searls"
    assert [t["id"] for t in kept["terms"]] == ["vrm.no-tracking"]


def test_init_over_a_damaged_settings_file_keeps_a_copy(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    (home / "seed").unlink()
    (home / "settings.json").write_text("{not json")
    ok(vrm("init", home=home))
    assert (home / "settings.json.damaged").read_text() == "{not json"
    ok(vrm("terms", home=home))


def test_a_file_in_place_of_the_directory_is_left_alone(tmp_path: Path) -> None:
    """Before, `vrm init` (and `vrm key import`) with VRM_HOME naming a file made that file
    mode 0700 — "the data directory … could be read by other users; it is now 0700" — and
    then failed with "Not a directory (…/.seed.….tmp)"."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    notes.chmod(0o644)
    fails(vrm("init", home=notes), 2, str(notes), "not a directory")
    fails(vrm("key", "import", home=notes, stdin=seed_to_text(os.urandom(32))), 2,
          "not a directory")
    assert stat.S_IMODE(notes.stat().st_mode) == 0o644
    assert notes.read_text() == "mine\n"
