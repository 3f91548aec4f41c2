"""Helpers for the tests that drive ``vrm`` as a person would: as a subprocess.

- :func:`vrm` runs ``python -m vrmproto.cli …`` with its own data directory and returns the exit
  code, stdout, stderr (and the JSON on stdout, for ``--json``).
- :class:`VendorHost` runs reference vendors (the TOML of ``examples/vendors``) in this process,
  on an event loop in a background thread, on 127.0.0.1; each can be stopped and started again
  on the same port. Starting returns when the server listens: no sleeps.
- :class:`VendorProcess` runs ``vrm vendor serve`` as a subprocess and reads the line that says
  where it listens; :func:`vrm_process` starts ``vrm`` from an event loop, its pid the run's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from tests._forkserver import AsyncRun, ForkServer
from vrmproto.cli import LocalVendor, load_vendor_config

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
VENDOR_FILES = EXAMPLES / "vendors"
VRM = [sys.executable, "-m", "vrmproto.cli"]


@dataclass
class Result:
    """What one ``vrm`` run did."""

    args: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (f"vrm {' '.join(self.args)} -> {self.code}\n--- stdout\n{self.stdout}"
                f"--- stderr\n{self.stderr}")


def cli_env(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VRM_")}
    env.update(COLUMNS="200", NO_COLOR="1", PYTHONUTF8="1")
    if home is not None:
        env["VRM_HOME"] = str(home)
    return env


def fresh_interpreters() -> bool:
    """``VRM_TEST_CLI=subprocess``: every ``vrm`` a fresh interpreter, as a shell starts it."""
    return os.environ.get("VRM_TEST_CLI") == "subprocess"


def cli_server(env: dict[str, str]) -> ForkServer:
    """A fork server for ``vrm`` runs whose start-up environment is ``env``'s: the CLI and
    every command's module (those ``COMMANDS`` loads on demand) imported."""
    from vrmproto.cli._app import COMMANDS  # noqa: PLC0415

    modules = sorted({spec.partition(":")[0] for spec in COMMANDS.values()})
    return ForkServer(["vrmproto.cli", *modules], env=env, cwd=ROOT)


@functools.cache
def _fork_server() -> ForkServer:
    """The session's server for ``vrm`` (:func:`cli_env`)."""
    return cli_server(cli_env())


def forked_vrm(server: ForkServer) -> list[str]:
    """The ``Popen`` argv of ``vrm`` forked from ``server``: ``tests/_forkclient.py``, its own
    process, which passes its streams and signals on and exits as the run did."""
    return [sys.executable, "-S", str(ROOT / "tests" / "_forkclient.py"), server.path, *VRM[1:]]


def vrm_command() -> list[str]:
    """What to start, as a ``Popen`` argv, to run ``vrm``: :func:`forked_vrm` of the session's
    server, or, with ``VRM_TEST_CLI=subprocess``, a fresh interpreter (:data:`VRM`)."""
    if fresh_interpreters():
        return list(VRM)
    return forked_vrm(_fork_server())


def vrm(*args: str, home: Path | None, stdin: str = "", timeout: float = 60) -> Result:
    """Run ``vrm ARGS`` with ``VRM_HOME=home`` in a process of its own; never raises on a
    non-zero exit. The process is forked from :mod:`tests._forkserver`, which has the CLI
    imported already; ``VRM_TEST_CLI=subprocess`` starts a fresh interpreter instead."""
    if fresh_interpreters():
        proc = subprocess.run(
            [*VRM, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
            env=cli_env(home), cwd=ROOT, check=False,
        )
        return Result(list(args), proc.returncode, proc.stdout, proc.stderr)
    code, out, err = _fork_server().run([*VRM[1:], *args], env=cli_env(home), cwd=ROOT,
                                        stdin=stdin, timeout=timeout)  # fmt: skip
    return Result(list(args), code, out, err)


class AsyncProcess(Protocol):
    """What :func:`vrm_process` gives: the part of :class:`asyncio.subprocess.Process` the tests
    use, which :class:`~tests._forkserver.AsyncRun` has too."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def stdout(self) -> asyncio.StreamReader | None: ...
    async def wait(self) -> int: ...
    def send_signal(self, signum: int) -> None: ...


@contextlib.asynccontextmanager
async def vrm_process(*args: str, home: Path | None = None,
                      session: bool = False) -> AsyncIterator[AsyncProcess]:  # fmt: skip
    """``vrm ARGS`` started from an event loop, its stdout a pipe, its stderr the test's, in a
    session (and process group) of its own if ``session``; ``pid`` is the run's own, whether
    forked from the fork server or, with ``VRM_TEST_CLI=subprocess``, a fresh interpreter. A
    process still running at the end of the block is killed."""
    if fresh_interpreters():
        proc = await asyncio.create_subprocess_exec(
            *VRM, *args, stdout=subprocess.PIPE, env=cli_env(home), cwd=ROOT,
            start_new_session=session,
        )  # fmt: skip
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return
    server = await asyncio.to_thread(_fork_server)  # started on first use: half a second
    async with await AsyncRun.start(server, [*VRM[1:], *args], env=cli_env(home), cwd=ROOT,
                                    session=session) as run:  # fmt: skip
        yield run


# -- vendors in this process -------------------------------------------------------------------


class VendorHost:
    """Reference vendors served from a background event loop (one thread for all of them)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vendors", daemon=True)
        self.thread.start()
        self.vendors: dict[str, LocalVendor] = {}

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def add(self, key: str, toml: str | None = None) -> LocalVendor:
        """Start the vendor of ``examples/vendors/<toml or key>.toml`` under ``key``."""
        vendor = LocalVendor.of(load_vendor_config(VENDOR_FILES / f"{toml or key}.toml"))
        self.vendors[key] = vendor
        self.start(key)
        return vendor

    def start(self, key: str) -> None:
        self.call(self.vendors[key].start())

    def stop(self, key: str) -> None:
        self.call(self.vendors[key].stop())

    def close(self) -> None:
        for key in list(self.vendors):
            self.stop(key)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def __getitem__(self, key: str) -> LocalVendor:
        return self.vendors[key]


# -- `vrm vendor serve` as a subprocess --------------------------------------------------------


class VendorProcess:
    """``vrm vendor serve --json …``; :attr:`info` is its first line (where it listens)."""

    def __init__(self, *args: str, home: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            [*vrm_command(), "vendor", "serve", "--json", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=cli_env(home), cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            _, err = self.proc.communicate(timeout=10)  # and closes the pipes
            raise RuntimeError(f"vrm vendor serve exited ({self.proc.returncode}): {err}")
        self.info: dict[str, Any] = json.loads(line)

    @property
    def url(self) -> str:
        return str(self.info["url"])

    def lines(self) -> Iterator[dict[str, Any]]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            yield json.loads(line)

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit code and the rest of stdout."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=15)
        return self.proc.returncode, out


# -- what every CLI test file needs ----------------------------------------------------------


def new_home(tmp_path: Path) -> Path:
    """A data directory as `vrm init` makes it (made in-process: init has its own test)."""
    from vrmproto.cli._home import Home, Settings  # noqa: PLC0415

    path = tmp_path / "you"
    Home(path).init(os.urandom(32), Settings(name="Doc"))
    return path


@contextlib.contextmanager
def vendor_host(*keys: str) -> Iterator[VendorHost]:
    """A :class:`VendorHost` running the vendors of ``examples/vendors/<key>.toml``."""
    h = VendorHost()
    try:
        for key in keys:
            h.add(key)
        yield h
    finally:
        h.close()


def hosted(*keys: str) -> Any:
    """:func:`vendor_host` as a fixture, one for a test module, named as the module names it
    (``vendors = hosted("outfitters")``)."""

    @pytest.fixture(scope="module")
    def host() -> Iterator[VendorHost]:
        with vendor_host(*keys) as h:
            yield h

    return host


def connected(tmp_path: Path, url: str, *args: str) -> Path:
    """A data directory (:func:`new_home`) with a relationship: ``vrm connect URL ARGS``."""
    home = new_home(tmp_path)
    ok(vrm("connect", url, *args, home=home))
    return home


def history_length(vendor: str, home: Path) -> int:
    """How many entries ``vrm history VENDOR`` lists."""
    return len(ok(vrm("history", vendor, "--json", home=home)).json["entries"])


def relationships(home: Path) -> list[dict[str, Any]]:
    """What ``vrm relationships --json`` lists."""
    rels: list[dict[str, Any]] = ok(vrm("relationships", "--json", home=home)).json["relationships"]
    return rels


def ok(r: Result) -> Result:
    """A success: exit 0, no traceback."""
    assert r.code == 0, r
    assert "Traceback" not in r.stderr, r
    return r


def fails(r: Result, code: int, *words: str) -> Result:
    """A failure: exit ``code``, one sentence on stderr naming ``words``, no traceback
    (beside any warnings, ``vrm: warning: …``, which say something else)."""
    assert r.code == code, r
    assert "Traceback" not in r.stderr, r
    lines = [line for line in r.stderr.splitlines()
             if line.startswith("vrm: ") and not line.startswith("vrm: warning: ")]  # fmt: skip
    assert len(lines) == 1, r
    for word in words:
        assert word in lines[0], r
    return r
