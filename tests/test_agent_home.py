"""A lost seed file (issue #11 item 4): the advice points to ``vrm key import``, and ``vrm init``
refuses a directory whose store a new seed could never match."""

from __future__ import annotations

from pathlib import Path

from tests._cli_helpers import vrm


def test_a_lost_seed_is_restored_not_replaced(tmp_path: Path) -> None:
    home = tmp_path / "vrm"
    assert vrm("init", home=home).code == 0
    assert vrm("relationships", home=home).code == 0  # the store exists: agent.db
    seed = vrm("key", "export", home=home)
    assert seed.code == 0, seed
    (home / "seed").unlink()

    lost = vrm("relationships", home=home)
    assert lost.code == 2, lost
    assert "vrm key import" in lost.stderr
    assert "run `vrm init`" not in lost.stderr

    again = vrm("init", home=home)
    assert again.code == 2, again
    assert "vrm key import" in again.stderr
    assert not (home / "seed").exists()  # nothing was written beside the old store

    restored = vrm("key", "import", home=home, stdin=seed.stdout)
    assert restored.code == 0, restored
    assert vrm("relationships", home=home).code == 0
