"""A person's week with ``vrm`` (session 20): what the terminal or the pipe cannot take must
not change what a command says happened (README "Exit codes").

A reader that went away (``| grep -q``, ``| head -1``) made every command exit 1 ("refused or
failed") in silence, after its vendor had confirmed; a terminal that cannot show ``⊂ ⊃ ✓`` (an
ASCII or ISO-8859-1 locale) made a confirmed share exit 2 ("nothing was sent"). A script
believing either sends again.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests._cli_helpers import (
    ROOT,
    VRM,
    VendorHost,
    cli_env,
    connected,
    fails,
    history_length,
    hosted,
    new_home,
    ok,
    vrm,
    vrm_command,
)
from vrmproto.cli._streams import DropWhenGone, json_ascii

vendors = hosted("outfitters", "lodge")

SHARE = ("share", "Wasatch Outfitters", "email=doc@example.org", "--purpose",
         "contracted-service", "--expires", "1d")  # fmt: skip


def _reader_gone(*args: str, home: Path) -> int:
    """``vrm ARGS`` with its stdout a pipe whose reader closed before it wrote: its exit code,
    its stderr said nothing."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([*vrm_command(), *args], stdout=write, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, env=cli_env(home), cwd=ROOT, timeout=60,
                              check=False, text=True)  # fmt: skip
    finally:
        os.close(write)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode


def test_a_share_whose_reader_went_away_ends_with_its_own_code(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = connected(tmp_path, vendors["outfitters"].url)
    before = history_length("Wasatch Outfitters", home)
    assert _reader_gone(*SHARE, home=home) == 0  # was 1: "refused or failed"
    assert history_length("Wasatch Outfitters", home) == before + 2  # the share, its receipt
    assert _reader_gone("relationships", "--json", home=home) == 0


def test_an_address_update_whose_reader_went_away_reaches_every_vendor(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = connected(tmp_path, vendors["outfitters"].url)
    ok(vrm("connect", vendors["lodge"].url, home=home))
    assert _reader_gone("address", "set", "city=Ogden", home=home) == 0
    out = ok(vrm("outbox", "--json", home=home)).json
    assert out["pending"] == [], out
    assert history_length("Silver Star Lodge", home) == history_length("Wasatch Outfitters",
                                                                       home)  # fmt: skip


def test_a_share_on_an_ascii_terminal_is_done_and_its_json_lossless(
    tmp_path: Path, vendors: VendorHost
) -> None:
    """Fresh interpreters (the encoding is chosen at start-up): about a second each."""
    home = connected(tmp_path, vendors["outfitters"].url)
    env = {**cli_env(home), "PYTHONIOENCODING": "ascii", "PYTHONUTF8": "0"}

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*VRM, *args], capture_output=True, env=env, cwd=ROOT,
                              timeout=60, check=False)  # fmt: skip

    human = run(*SHARE[:2], "name=Zoë", *SHARE[3:])
    assert human.returncode == 0, human  # was 2: "nothing was sent", after the receipt
    assert b"shared name until" in human.stdout, human
    held = run("--json", "data", "Wasatch Outfitters")  # what it holds: the name, returned
    assert held.returncode == 0, held
    assert held.stdout.isascii(), held  # escaped, not replaced by "?"
    values = {r["field"]: r["value"] for r in json.loads(held.stdout)["records"]}
    assert values["name"] == "Zoë", values


def test_a_stream_over_a_pipe_without_reader_drops_what_is_written() -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        raw = DropWhenGone(write)
        stream = io.TextIOWrapper(io.BufferedWriter(raw), encoding="ascii", errors="replace")
        stream.write("⊂ you ⊃\n" * 10_000)
        stream.flush()
        assert raw.gone
        stream.write("more\n")
        stream.flush()
    finally:
        os.close(write)


def test_json_is_escaped_to_ascii_only_for_a_stream_that_cannot_carry_unicode() -> None:
    assert json_ascii(io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    assert json_ascii(io.TextIOWrapper(io.BytesIO(), encoding="latin-1"))
    assert not json_ascii(io.TextIOWrapper(io.BytesIO(), encoding="UTF8"))


def test_a_value_typed_in_another_encoding_is_named_not_a_codec_error(
    tmp_path: Path, vendors: VendorHost
) -> None:
    """Latin-1 ``ë`` (byte EB) typed in a UTF-8 terminal: Python holds it as a lone surrogate,
    and vrm said "'utf-8' codec can't encode character '\\udceb' in position 2: surrogates not
    allowed"."""
    home = connected(tmp_path, vendors["outfitters"].url)
    r = fails(vrm(*SHARE[:2], "name=Zo\udceb", *SHARE[3:], home=home), 2,
              "'name=Zo\\xeb' is not text in your terminal's encoding")  # fmt: skip
    assert "codec" not in r.stderr, r
    assert ok(vrm("outbox", "--json", home=home)).json["pending"] == []  # nothing was sent
    said = vrm("--json", *SHARE[:2], "name=Zo\udceb", *SHARE[3:], home=home)
    assert said.json["error"]["kind"] == "not_text", said


def test_json_names_a_path_that_is_not_utf8_as_it_is(tmp_path: Path, vendors: VendorHost) -> None:
    """A file name of Latin-1 bytes (kept by Python as lone surrogates): ``vrm --json verify``
    exited 2 once it had verified the file ("surrogates not allowed"), then wrote ``?``."""
    home = connected(tmp_path, vendors["outfitters"].url)
    path = os.fsdecode(bytes(tmp_path) + b"/evidence-\xe9.json")
    ok(vrm("history", "Wasatch Outfitters", "--export", path, home=home))
    said = ok(vrm("--json", "verify", path, home=home)).json
    assert said["file"] == path, said
    assert said["valid"] is True


def test_a_command_started_without_stdout_runs(tmp_path: Path) -> None:
    """``vrm … >&-`` (cron, a daemon's child): the event loop's own descriptors took number 1,
    and uvloop aborted the process on closing it (SIGABRT, exit 134). A fresh interpreter."""
    home = new_home(tmp_path)
    proc = subprocess.run(["sh", "-c", 'exec "$@" >&- <&-', "sh", *VRM, "--json", "relationships"],
                          capture_output=True, env=cli_env(home), cwd=ROOT, timeout=60,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc
    assert proc.stderr == b"", proc


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_output_to_a_full_disk_is_said_once_and_the_share_is_done(
    tmp_path: Path, vendors: VendorHost
) -> None:
    """``vrm --json share … > file`` on a full disk: a traceback (ENOSPC on the output, then
    again on the error object) and exit 1 after the vendor had confirmed the share."""
    home = connected(tmp_path, vendors["outfitters"].url)
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([*vrm_command(), "--json", *SHARE], stdout=full,
                              stderr=subprocess.PIPE, env=cli_env(home), cwd=ROOT, timeout=60,
                              check=False, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("its output could not be written (No space left on device)") == 1
