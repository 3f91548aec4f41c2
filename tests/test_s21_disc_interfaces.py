"""``--interface`` of ``vrm discover`` / ``vrm connect NAME``: where browsing cannot happen, the
person is told where and why (s21).

Before: ``--interface ::1`` browsed nowhere and said "No vrm endpoints answered on ::1" (local
discovery speaks IPv4 multicast DNS only: it never listened there); ``--interface fe80::1``
ended in "vrm: RuntimeError: No adapter found for IP address fe80::1." (exit 1); an address
no interface has said only "vrm: No such device." Every ``vrm`` here runs in a private network
namespace (tests/test_discovery.py), where nothing can leave the machine.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests._cli_helpers import ROOT, VRM, cli_env, new_home
from tests.test_discovery import _namespace_or_skip
from vrmproto.discovery import browse


def vrm_inside(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    prefix = _namespace_or_skip()
    return subprocess.run([*prefix, *VRM, *args], capture_output=True, text=True, timeout=60,
                          env=cli_env(new_home(tmp_path)), cwd=ROOT, check=False)  # fmt: skip


def said(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("vrm: ")]
    assert len(lines) == 1, proc
    assert "Traceback" not in proc.stderr, proc
    return lines[0]


@pytest.mark.parametrize(("command", "address"), [
    (["discover", "--timeout", "0.2"], "::1"),
    (["connect", "Nobody"], "fe80::1"),
    (["intent", "new", "skis", "--no-relays", "--deadline", "1s"], "localhost"),
])  # fmt: skip
def test_an_interface_that_is_no_ipv4_address_is_a_usage_error(
    tmp_path: Path, command: list[str], address: str
) -> None:
    proc = vrm_inside(tmp_path, *command, "--interface", address)
    assert proc.returncode == 2, proc
    line = said(proc)
    assert "--interface" in line, line
    assert address in line, line
    assert "IPv4" in line, line


def test_an_address_no_interface_has_is_named(tmp_path: Path) -> None:
    proc = vrm_inside(tmp_path, "discover", "--timeout", "0.2", "--interface", "10.9.9.9")
    assert proc.returncode == 2, proc
    line = said(proc)
    assert "10.9.9.9" in line, line
    assert "local discovery is unavailable" in line, line
    assert "no interface of this machine has that address" in line, line


async def test_browse_refuses_an_interface_that_is_no_ipv4_address() -> None:
    """The library says so before it opens a socket (nothing here is sent anywhere)."""
    for address in ("::1", "fe80::1%lo", "localhost", ""):
        with pytest.raises(ValueError, match="IPv4"):
            await browse(0.1, (address,))
    with pytest.raises(ValueError, match="interface"):
        await browse(0.1, ())

