"""A data directory that lost ``settings.json`` says so (the person's terms, §6).

``vrm init`` and ``vrm key import`` write it; a directory with a seed and no settings lost them
(a restore of ``seed`` and ``agent.db`` only, a file deleted). Before: every command silently
used the default terms and no name — a person who had chosen ``vrm.delete-after:days=30``
proffered other terms to the next vendor without a word, and ``vrm doctor`` said nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, new_home, ok, vendor_host, vrm

MISSING = "settings.json is missing"


@pytest.fixture(scope="module")
def host() -> Iterator[VendorHost]:
    with vendor_host("avis") as h:
        yield h


def test_lost_settings_are_said_until_terms_are_chosen_again(tmp_path: Path,
                                                             host: VendorHost) -> None:  # fmt: skip
    home = new_home(tmp_path)
    ok(vrm("terms", "set", "vrm.no-tracking", "vrm.delete-after:days=30", home=home))
    (home / "settings.json").unlink()

    connected = ok(vrm("--json", "connect", host["avis"].url, home=home))
    assert connected.stderr.count(MISSING) == 1, connected.stderr
    assert "vrm terms set" in connected.stderr
    assert "vrm.no-tracking@1, vrm.no-third-party@1" in connected.stderr  # what went instead
    shown = ok(vrm("terms", home=home))
    assert MISSING in shown.stderr

    doctor = vrm("--json", "doctor", home=home)
    checks = {c["check"]: c for c in doctor.json["checks"]}
    assert checks["settings"]["status"] == "warn"
    assert MISSING in checks["settings"]["detail"]

    chosen = ok(vrm("terms", "set", "vrm.no-tracking", "vrm.delete-after:days=30", home=home))
    assert MISSING not in chosen.stderr  # the remedy itself does not nag
    assert (home / "settings.json").exists()
    again = ok(vrm("terms", home=home))
    assert MISSING not in again.stderr
    assert "vrm.delete-after" in again.stdout
    checks = {c["check"]: c for c in vrm("--json", "doctor", home=home).json["checks"]}
    assert checks["settings"]["status"] == "ok"
    assert "vrm.delete-after@1" in checks["settings"]["detail"]


def test_a_fresh_directory_does_not_warn(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    shown = ok(vrm("terms", home=home))
    assert MISSING not in shown.stderr
    assert "vrm.no-tracking" in shown.stdout
