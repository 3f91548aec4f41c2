"""Atomic file writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vrmproto._files import atomic_write, atomic_write_text


def test_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "key"
    atomic_write(target, b"first")
    assert target.read_bytes() == b"first"
    atomic_write(target, b"second, longer than the first")
    assert target.read_bytes() == b"second, longer than the first"
    atomic_write_text(target, "tërms\n")
    assert target.read_text(encoding="utf-8") == "tërms\n"
    assert os.listdir(tmp_path) == ["key"]  # no temporary files left


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640])
def test_sets_mode_exactly(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    target.chmod(0o666)
    old_umask = os.umask(0o077)
    try:
        atomic_write(target, b"new", mode=mode)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == mode


def test_default_mode_is_private(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    atomic_write_text(target, "s3cret")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_failure_keeps_old_content_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes", mode=0o600)  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "nope" / "f", b"x")
