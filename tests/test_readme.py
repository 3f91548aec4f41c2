"""The README is real: its API tour runs as written, and so does its walkthrough with `vrm`.

The walkthrough (from "Getting `vrm` on your PATH" to the end of "Walkthrough") is read out of
README.md: every ``sh`` block, line by line, run by ``bash`` from the checkout with the
first-run step (``. .venv/bin/activate``) before each command, on a fresh ``VRM_HOME``. What a
person does between the blocks, and what cannot happen in a test, is done here instead, each
named in :data:`ADAPTED`:

- the vendors the walkthrough starts (``vrm vendor serve --config … --port 870x``) are started
  by the test, each on a free loopback port with ``--no-advertise`` (no zeroconf from a test:
  other tests' vendors would answer), and every ``127.0.0.1:870x`` in a command is that port;
  a vendor started again (Hertz, listening on a relay) is stopped first;
- the relay ``ws://127.0.0.1:6969`` (``nostr-relay serve``, in prose) is a ``nostr-relay`` the
  test starts on a free port;
- ``VRM_HOME=/tmp/vrm-try`` is a directory of the test's own;
- ``vrm discover`` is skipped and ``vrm intent new`` gets ``--no-discover`` (zeroconf again);
- ``vrm intent accept 3605`` takes the id the intentcast suggested;
- ``--accept-new-key`` is an illustration (no vendor changed its key) and is skipped;
- installing (``make demo``, ``pipx``/``pip install``) is what the test runs in already;
- "stop the lodge" and "start the lodge again" (prose between blocks) stop and start it.

After the first-run block, whose ``vrm --version`` runs the console script that activating put on
the PATH, ``vrm`` in a line is a shell function that forks the command from a server with the CLI
imported (``tests/_forkserver.py``), as the other CLI tests run it: the same arguments,
environment, streams and exit code, without ~0.6 s of start-up a line. ``VRM_TEST_CLI=subprocess``
runs the console script for every line.

A comment ``(exit code N)`` on a line is the exit code the line must end with; every other line
must succeed.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests._cli_helpers import (
    VendorProcess,
    cli_env,
    cli_server,
    forked_vrm,
    fresh_interpreters,
)
from tests._nostr_relay import relay
from tests._ports import free_port
from vrmproto.store._pg_schema import SCHEMA_VERSION as POSTGRES_VERSION
from vrmproto.store._sqlite import SCHEMA_VERSION as SQLITE_VERSION

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_RELAY = "ws://127.0.0.1:6969"

ADAPTED = {
    "vrm vendor serve": "started by the test on a free port, --no-advertise",
    "ws://127.0.0.1:6969": "a nostr-relay the test starts on a free port",
    "vrm discover": "skipped: no zeroconf in a test",
    "vrm intent new": "--no-discover added",
    "vrm intent accept": "the id the intentcast suggested",
    "--accept-new-key": "skipped: an illustration, no key changed",
    "make demo": "skipped: the test runs in the installed checkout",
    "pipx install": "skipped: installing is not the test's business",
    "pip install": "skipped: installing is not the test's business",
}
SKIPPED = ("vrm discover", "--accept-new-key", "make demo", "pipx install", "pip install",
           "python -m vrmproto --help")  # fmt: skip


def test_api_tour_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "the README has a Python tour"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    assert "doc@example.org" in out.getvalue()


# -- reading the walkthrough -------------------------------------------------------------------


def walkthrough_blocks() -> list[tuple[str, list[str]]]:
    """(the prose before it, the command lines) of every ``sh`` block of the walkthrough."""
    text = README.read_text(encoding="utf-8")
    start = text.index("### Getting `vrm` on your PATH")
    end = text.index("\n## ", text.index("## Walkthrough"))
    blocks = []
    pos = start
    for m in re.finditer(r"```sh\n(.*?)```", text[start:end], re.S):
        prose = text[pos : start + m.start()]
        pos = start + m.end()
        joined = m.group(1).replace("\\\n", " ")
        blocks.append((prose, [line.strip() for line in joined.splitlines() if line.strip()]))
    return blocks



@dataclass
class Walk:
    """The state of one walk through the README."""

    tmp: Path
    home: Path
    vendors: dict[str, VendorProcess] = field(default_factory=dict)
    serve_args: dict[str, list[str]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # README port -> ours
    suggested: str = ""
    relays: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    relay_url: str = ""
    vrm_function: str = ""
    outputs: list[tuple[str, subprocess.CompletedProcess[str]]] = field(default_factory=list)

    def serve(self, line: str) -> None:
        m = re.search(r"--config (\S+)\s+--port (\d+)", line)
        assert m is not None, line
        config, port = m.group(1), m.group(2)
        self.ports.setdefault(port, free_port())
        name = Path(config).stem
        relay_arg = re.search(r"--relay (\S+)", line)
        self.serve_args[name] = [
            "--config", str(ROOT / config), "--port", str(self.ports[port]), "--no-advertise",
            *(["--relay", self.relay(relay_arg.group(1))] if relay_arg else []),
        ]  # fmt: skip
        if name in self.vendors:
            self.stop(name)
        self.start(name)

    def relay(self, url: str) -> str:
        """The walk's relay, started the first time the README names its one."""
        assert url == README_RELAY, url
        if not self.relay_url:
            self.relay_url = self.relays.enter_context(relay(self.tmp))
        return self.relay_url

    def start(self, name: str) -> None:
        self.vendors[name] = VendorProcess(*self.serve_args[name], home=self.tmp / "vendors")

    def stop(self, name: str) -> None:
        self.vendors.pop(name).stop()

    def command(self, line: str) -> str:
        for theirs, ours in self.ports.items():
            line = line.replace(f"127.0.0.1:{theirs}", f"127.0.0.1:{ours}")
        line = line.replace("/tmp/vrm-try", str(self.home))
        if README_RELAY in line:
            line = line.replace(README_RELAY, self.relay(README_RELAY))
        if line.startswith("vrm intent new"):
            line = line.replace("vrm intent new", "vrm intent new --no-discover", 1)
        if line.startswith("vrm intent accept"):
            assert self.suggested, "the intentcast suggested an offer"
            line = re.sub(r"accept \S+", f"accept {self.suggested}", line, count=1)
        return line

    def env(self) -> dict[str, str]:
        env = cli_env(self.home)
        # the interpreter running the tests has `vrm` beside it, whatever the venv is called
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def fork(self, first_run: list[str]) -> None:
        """From here on ``vrm`` in a line is a shell function that forks it from a server with
        the CLI imported (``tests/_forkserver.py``), started with the PATH the first-run step
        gives the lines, so that each run is forked, not exec'd (``needs_fresh``); with
        ``VRM_TEST_CLI=subprocess`` every line keeps running the ``vrm`` on that PATH."""
        if fresh_interpreters():
            return
        path = subprocess.run(["bash", "-c", "\n".join([*first_run, 'printf %s "$PATH"'])],
                              capture_output=True, text=True, env=self.env(), cwd=ROOT,
                              timeout=60, check=True).stdout  # fmt: skip
        server = cli_server({**self.env(), "PATH": path})
        self.relays.callback(server.close)
        self.vrm_function = f'vrm() {{ {shlex.join(forked_vrm(server))} "$@"; }}'

    def run(self, line: str, first_run: list[str]) -> subprocess.CompletedProcess[str]:
        cmd = self.command(line)
        want = re.search(r"exit code (\d+)", line)
        env = self.env()
        script = "\n".join([*first_run, *([self.vrm_function] if self.vrm_function else []),
                            cmd])  # fmt: skip
        answer = "y\n" if "accept its terms instead?" in line else ""
        proc = subprocess.run(["bash", "-c", script], input=answer, capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=120, check=False)  # fmt: skip
        expected = int(want.group(1)) if want else 0
        assert proc.returncode == expected, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        found = re.search(r"vrm intent accept (\w+)", proc.stdout)
        if found and cmd.startswith("vrm intent new"):
            self.suggested = found.group(1)
        self.outputs.append((cmd, proc))
        return proc


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    w = Walk(tmp=tmp_path, home=tmp_path / "vrm-try")
    try:
        yield w
    finally:
        for name in list(w.vendors):
            w.stop(name)
        w.relays.close()


def _first_run(lines: list[str]) -> list[str]:
    """The lines that put `vrm` on the PATH: run before every command, as a shell would have."""
    activate = ROOT / ".venv" / "bin" / "activate"
    return [line for line in lines if line.startswith(". .venv/bin/activate")
            and activate.exists()]  # fmt: skip


@pytest.mark.slow
def test_walkthrough_runs_as_written(walk: Walk) -> None:
    blocks = walkthrough_blocks()
    assert blocks[0][1][0].startswith(". .venv/bin/activate"), "the first-run step comes first"
    first_run: list[str] = []
    for prose, lines in blocks:
        if "stop the lodge" in prose:
            walk.stop("lodge")
        if "Start the lodge\nagain" in prose or "Start the lodge again" in prose:
            walk.start("lodge")
        for line in lines:
            if line.startswith(". .venv/bin/activate"):
                first_run = _first_run([line])
                continue
            if line.startswith("export VRM_HOME="):
                continue  # the test's own VRM_HOME is in every command's environment
            if line.startswith("vrm vendor serve"):
                walk.serve(line)
                continue
            if any(skip in line for skip in SKIPPED):
                continue
            walk.run(line, first_run)
        if first_run and not walk.vrm_function:  # `vrm --version` ran the console script
            walk.fork(first_run)
    said = {cmd.split("  #")[0].strip(): p.stdout + p.stderr for cmd, p in walk.outputs}
    text = "\n".join(said.values())
    assert "Wasatch Outfitters declined" in text
    assert "✓ verified" in text
    assert "✓ identical" in text
    hertz = next(v for k, v in said.items() if k.startswith('vrm history "Hertz Wasatch"'))
    assert "rejected: “" in hertz  # the signed reason, readable
    assert set(walk.vendors) == {"avis", "budget", "hertz", "outfitters", "lodge", "market"}
    relayed = next(v for k, v in said.items()
                   if k.startswith("vrm intent new") and "--geohash" in k)  # fmt: skip
    assert "Hertz Wasatch" in relayed  # reached only through the relay, ranked with the rest


def test_the_first_run_is_documented() -> None:
    """Item 12: how `vrm` gets on the PATH, an install for people who only want the agent,
    ``python -m vrmproto``, the licence, and a demo without the dev toolchain."""
    text = README.read_text(encoding="utf-8")
    for words in (". .venv/bin/activate", "pipx install .", "pip install .",
                  "python -m vrmproto"):  # fmt: skip
        assert words in text
    version = subprocess.run([sys.executable, "-m", "vrmproto", "--version"],
                             capture_output=True, text=True, env=cli_env(), cwd=ROOT,
                             timeout=60, check=False)  # fmt: skip
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("vrm, version")
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence
    assert "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^license = "Apache-2.0"$', pyproject, re.M)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    demo = re.search(r"^demo: (.*)$", makefile, re.M)
    assert demo is not None
    recipe = re.search(rf"^{re.escape(demo.group(1).split()[0])}:.*\n((?:\t.*\n)+)", makefile,
                       re.M)  # fmt: skip
    assert recipe is not None
    assert "[dev]" not in recipe.group(1)
    assert "pip install" in recipe.group(1)


def test_the_schema_versions_it_names_are_the_stores() -> None:
    """The README's sentence on the store's schema names the versions the stores write (it said
    SQLite's was 7 for eight schema versions after it)."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    said = re.search(r"SQLite's is at version (\d+), PostgreSQL's at (\d+)", text)
    assert said is not None, "the README no longer names the schema versions"
    assert (int(said[1]), int(said[2])) == (SQLITE_VERSION, POSTGRES_VERSION)
