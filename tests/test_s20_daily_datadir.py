"""A person's week with ``vrm`` (session 20): a data directory that cannot be written — on a
file system the kernel remounted read-only after a disk error, on a backup disk, or on a full
disk — was called *damaged*, with the advice to restore it from a backup or start a new one
from the seed. Restoring an older backup forks every relationship (spec §11.11); the files were
fine. It is now said to be read-only, or full, with exit code 2 (README "Exit codes").

The file systems are real: a tmpfs in a mount namespace of the test's own (``unshare``), where
``vrm`` runs as a fresh interpreter (the fork server lives outside that namespace).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests._cli_helpers import ROOT, cli_env, fails, new_home, ok, vrm
from vrmproto.cli import main
from vrmproto.cli._home import Home
from vrmproto.store import StoreError


def _in_namespace(script: str, home: Path) -> list[tuple[int, Any]]:
    """Run ``script`` (sh) in a mount namespace of its own, ``$VRM`` the command, ``$M`` an
    empty directory to mount on; each ``vrm`` it runs is recorded with :func:`_record`."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) on this machine")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace for this user: {probe.stderr.decode().strip()}")
    mnt = home.parent / "mnt"
    mnt.mkdir()
    vrm_cmd = shlex.join([sys.executable, "-m", "vrmproto.cli", "--json"])
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-ec", f'M={shlex.quote(str(mnt))}; H={shlex.quote(str(home))}\n'
         f'record() {{ set +e; {vrm_cmd} "$@"; echo "=$?"; set -e; }}\n{script}'],
        capture_output=True, text=True, env=cli_env(), cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    if "mount:" in proc.stderr and "permission denied" in proc.stderr.lower():
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc
    runs, out = [], ""
    for line in proc.stdout.splitlines(keepends=True):
        if line.startswith("="):
            runs.append((int(line[1:]), json.loads(out)))
            out = ""
        else:
            out += line
    return runs


def _existing_home(tmp_path: Path) -> Path:
    """:func:`new_home` with its agent.db, as the first command that opens it leaves it."""
    home = new_home(tmp_path)

    async def make() -> None:
        await (await Home(home).open_store()).close()

    asyncio.run(make())
    assert (home / "agent.db").is_file()
    return home


def test_a_read_only_data_directory_is_read_only_not_damaged(tmp_path: Path) -> None:
    home = _existing_home(tmp_path)
    runs = _in_namespace(
        'mount -t tmpfs -o size=4m tmpfs "$M"; cp -a "$H" "$M/you"; mount -o remount,ro "$M"\n'
        'export VRM_HOME="$M/you"; record relationships; record doctor\n', home)
    (code, listed), (doctor_code, doctor) = runs
    assert code == 2, listed
    assert listed["error"]["kind"] == "unwritable", listed
    message = listed["error"]["message"]
    assert "read-only file system" in message, message
    assert "damaged" not in message, message
    assert "backup" not in message, message
    assert doctor_code == 1, doctor
    failing = [c for c in doctor["checks"] if c["status"] == "fail"]
    assert [c["check"] for c in failing] == ["writable"], doctor  # was "store": not usable


def test_a_full_disk_is_said_to_be_full(tmp_path: Path) -> None:
    home = _existing_home(tmp_path)
    runs = _in_namespace(
        'mount -t tmpfs -o size=2m tmpfs "$M"; cp -a "$H" "$M/you"\n'
        'dd if=/dev/zero of="$M/fill" bs=4k 2>/dev/null || true\n'
        'export VRM_HOME="$M/you"; record relationships\n', home)
    [(code, listed)] = runs
    assert code == 2, listed
    assert listed["error"]["kind"] == "unwritable", listed
    assert "the disk it is on is full" in listed["error"]["message"], listed


def test_a_store_that_fails_mid_command_for_want_of_space_is_not_a_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite's "database or disk is full" when a commit fails (the store opened): exit 1
    said "refused or failed: the same command gives the same answer"."""
    home = _existing_home(tmp_path)

    async def full(self: Home, **_: object) -> None:
        raise StoreError("transaction failed, nothing of it was written: database or disk is full")

    monkeypatch.setattr(Home, "open_store", full)
    monkeypatch.setattr(Home, "unwritable", lambda self: "the disk it is on is full (0 KiB free)")
    with pytest.raises(SystemExit) as ended:
        main(["--json", "--data-dir", str(home), "relationships"])
    assert ended.value.code == 2
    said = json.loads(capsys.readouterr().out)
    assert said["error"]["kind"] == "unwritable", said
    assert "`vrm outbox run`" in said["error"]["message"], said


def test_an_emptied_store_is_damaged_not_a_fresh_start(tmp_path: Path) -> None:
    """agent.db truncated to 0 bytes (its schema is written when it is first opened, so vrm
    never leaves it empty): SQLite made a new store of it, and ``vrm relationships`` said
    "No relationships yet" — every relationship gone without a word."""
    home = _existing_home(tmp_path)
    (home / "agent.db").write_bytes(b"")
    r = fails(vrm("relationships", home=home), 2, "damaged", "agent.db is empty (0 bytes)",
              "Restore it from a backup", "--reconcile", "to start afresh here, remove it")
    assert (home / "agent.db").stat().st_size == 0, r  # left as it was: nothing made of it
    doctor = vrm("doctor", "--json", home=home)
    assert doctor.code == 1, doctor
    failing = [c for c in doctor.json["checks"] if c["status"] == "fail"]
    assert [c["check"] for c in failing] == ["store"], doctor  # was: schema version 0, a warning
    (home / "agent.db").unlink()  # as it says: to start afresh
    assert "No relationships yet" in ok(vrm("relationships", home=home)).stdout
