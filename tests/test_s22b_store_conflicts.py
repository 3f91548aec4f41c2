"""`vrm doctor` names the conflicted copies a sync service leaves in the data directory.

A data directory synced by Dropbox, Syncthing or Nextcloud between two laptops that both ran
vrm: the service keeps the losing side's agent.db (or settings.json, or seed) as a conflicted
copy beside the real one — what that machine recorded (messages, receipts, offers) is only in
the copy. Before, ``vrm doctor`` said "ok" to every check and exit 0: the loss went unseen.
Now a copy of agent.db or of the seed fails the check (exit 1) and says what to do; a copy of
settings.json is a warning.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests._cli_helpers import new_home, ok, vrm
from vrmproto.cli._seedtext import seed_to_text

COPIES = (
    "agent (conflicted copy 2026-12-05).db",  # Dropbox
    "agent (Doc's conflicted copy 2026-12-05).db",  # Dropbox, another user's machine
    "agent.sync-conflict-20261205-112233-ABCDEFG.db",  # Syncthing
    "agent (conflicted copy 2026-12-05 112233).db",  # Nextcloud / ownCloud
)


def _checks(home: Path) -> tuple[int, dict[str, dict[str, str]]]:
    r = vrm("--json", "doctor", home=home)
    assert "Traceback" not in r.stderr, r
    return r.code, {c["check"]: c for c in r.json["checks"]}


@pytest.mark.parametrize("copy", COPIES)
def test_a_conflicted_copy_of_agent_db_fails(tmp_path: Path, copy: str) -> None:
    home = new_home(tmp_path)
    ok(vrm("relationships", home=home))
    assert _checks(home)[0] == 0
    shutil.copy(home / "agent.db", home / copy)
    code, checks = _checks(home)
    assert code == 1
    found = checks["sync conflicts"]
    assert found["status"] == "fail"
    assert copy in found["detail"]
    assert "reconcile" in found["detail"]


def test_a_conflicted_copy_of_settings_warns(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    shutil.copy(home / "settings.json", home / "settings (conflicted copy 2026-12-05).json")
    code, checks = _checks(home)
    assert code == 0
    assert checks["sync conflicts"]["status"] == "warn"
    assert "vrm terms" in checks["sync conflicts"]["detail"]


def test_a_conflicted_copy_of_another_seed_fails(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    copy = home / "seed.sync-conflict-20261205-112233-ABCDEFG"
    shutil.copy(home / "seed", copy)
    code, checks = _checks(home)  # the same seed: only to be removed
    assert code == 0
    assert checks["sync conflicts"]["status"] == "warn"
    copy.write_text(seed_to_text(os.urandom(32)) + "\n")
    code, checks = _checks(home)
    assert code == 1
    assert checks["sync conflicts"]["status"] == "fail"
    assert "another seed" in checks["sync conflicts"]["detail"]


def test_no_copy_no_line(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    note = home / "notes about my conflict with Avis.txt"  # not a copy of ours
    note.write_text("mine")
    note.chmod(0o600)
    code, checks = _checks(home)
    assert code == 0
    assert "sync conflicts" not in checks
