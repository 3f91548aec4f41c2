"""A fork server for the tests that run ``vrm``: each run is still its own process, forked from
one that has already imported the CLI.

Starting ``python -m vrmproto.cli`` costs ~0.5 s on the 2-core machine, nearly all of it
imports, and the suite runs ``vrm`` several hundred times. :class:`ForkServer` starts one
Python process per test session that imports what the commands need, then forks a child per
run. The child gets the run's argv, environment, working directory and standard streams, runs
``vrmproto.cli`` as ``python -m`` would (``runpy``, ``__main__``, ``sys.exit``), and exits with
its code: a separate process with its own memory, exit code, signals and file descriptors, as
``subprocess.run`` gives. What it shares with the server is only what importing left behind,
and the interpreter's start-up settings (``PYTHONHASHSEED``, UTF-8 mode), which the server
takes from the same environment the runs get.

Set ``VRM_TEST_CLI=subprocess`` to run every ``vrm`` as a fresh interpreter instead
(``tests/_cli_helpers.py``); the one test that checks what a command imports always does.

Protocol, over a Unix socket, one connection per run: the client sends a 4-byte length and a
JSON request ``{"argv", "env", "cwd"}`` with its stdin, stdout and stderr descriptors attached
(``SCM_RIGHTS``); the server forks a *monitor*, which forks the run and answers one line with
the run's pid, then one line with its exit code (``-N`` for signal N) once it ends; if the
client closes the connection first, the monitor kills the run. The monitor exists so the server
never waits for a run: it ignores ``SIGCHLD`` and the kernel reaps them.

Tests that need a ``Popen`` (a vendor serving, a command's streamed output) start
``tests/_forkclient.py``, a stdlib-only client that starts in ~20 ms, hands the server its own
standard streams, passes on the signals it gets and exits as the run did.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import IO, Any

from vrmproto.cli._app import COMMANDS

_HEADER = struct.Struct("!I")


# -- the server (python -m tests._forkserver SOCKET) -------------------------------------------


def _preload() -> None:
    """Import the CLI and every command's module (those ``COMMANDS`` loads on demand)."""
    for module in sorted({spec.partition(":")[0] for spec in COMMANDS.values()}):
        with contextlib.suppress(ImportError):  # `vrm conformance` says why, in the run
            importlib.import_module(module)


def _serve(path: str) -> None:
    _preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # monitors are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 1):
            return  # the test session ended (or died): nobody is left to ask
        if listener not in readable:
            continue
        conn, _ = listener.accept()
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            listener.close()
            _monitor(conn)  # never returns
        conn.close()


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    while len(data) < _HEADER.size:
        data += conn.recv(1 << 16)
    (length,) = _HEADER.unpack_from(data)
    while len(data) < _HEADER.size + length:
        more = conn.recv(1 << 16)
        if not more:
            raise EOFError("the request ended early")
        data += more
    return json.loads(data[_HEADER.size:]), fds


def _monitor(conn: socket.socket) -> None:
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        request, fds = _receive(conn)
        pid = os.fork()
        if pid == 0:
            conn.close()
            _run(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        conn.sendall(b"%d\n" % pid)
        ended = os.pidfd_open(pid)
        readable, _, _ = select.select([conn, ended], [], [])
        if ended not in readable:  # the client went away (killed, or timed out): so does the run
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        conn.sendall(b"%d\n" % os.waitstatus_to_exitcode(status))
    finally:
        os._exit(0)


#: Variables read when the interpreter starts or a module is imported (aiohttp makes its TLS
#: context at import, reading ``SSL_CERT_FILE``): a run whose values differ from the server's
#: is started as a fresh interpreter instead (:func:`needs_fresh`).
READ_AT_START = ("SSL_CERT_FILE", "SSL_CERT_DIR", "TZ", "LANG", "LANGUAGE", "PATH")
READ_AT_START_PREFIXES = ("PYTHON", "LC_")


def needs_fresh(env: dict[str, str], server_env: dict[str, str]) -> bool:
    """Whether a run with ``env`` differs from the server in what start-up and imports read."""
    names = {n for n in (*env, *server_env)
             if n in READ_AT_START or n.startswith(READ_AT_START_PREFIXES)}  # fmt: skip
    return any(env.get(n) != server_env.get(n) for n in names)


def _run(request: dict[str, Any], fds: list[int]) -> None:
    """Become ``python -m vrmproto.cli ARGV`` with the request's streams, environment and cwd."""
    code = 1
    try:
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        if needs_fresh(request["env"], dict(os.environ)):
            os.chdir(request["cwd"])
            os.execve(sys.executable, [sys.executable, "-m", "vrmproto.cli",
                                       *request["argv"][1:]], request["env"])  # fmt: skip
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = [str(request["argv"][0]), *request["argv"][1:]]
        try:
            runpy.run_module("vrmproto.cli", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:  # what the interpreter does with sys.exit's argument
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # what the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
        shutdown = getattr(threading, "_shutdown", None)  # joins non-daemon threads, as at exit
        if shutdown is not None:
            shutdown()
        atexit._run_exitfuncs()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


# -- the client --------------------------------------------------------------------------------


class ForkServer:
    """One server per test session, started on first use (see the module's docstring)."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self._dir = tempfile.mkdtemp(prefix="vrm-fork-")
        self.path = os.path.join(self._dir, "s")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests._forkserver", self.path], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, cwd=cwd,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.proc.kill()
            raise RuntimeError(f"the fork server did not start ({self.proc.wait()})")
        atexit.register(self.close)

    def run(
        self, argv: list[str], *, env: dict[str, str], cwd: Path, stdin: str, timeout: float
    ) -> tuple[int, str, str]:
        """Run ``argv`` (``argv[0]`` is the program's name) to its end: its exit code, stdout
        and stderr; :class:`subprocess.TimeoutExpired` after ``timeout`` s (the run killed)."""
        with (
            tempfile.TemporaryFile() as in_, tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn,
        ):  # fmt: skip
            in_.write(stdin.encode())
            in_.seek(0)
            conn.connect(self.path)
            body = json.dumps({"argv": argv, "env": env, "cwd": str(cwd)}).encode()
            socket.send_fds(conn, [_HEADER.pack(len(body)) + body],
                            [in_.fileno(), out.fileno(), err.fileno()])  # fmt: skip
            conn.settimeout(timeout)
            answer = _Lines(conn)
            pid = int(answer.line())
            try:
                code = int(answer.line())
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                conn.settimeout(10)
                answer.line()  # the monitor saw it end: its descriptors are closed
                raise subprocess.TimeoutExpired(argv, timeout, _read(out), _read(err)) from None
            return code, _read(out), _read(err)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


class _Lines:
    """The monitor's answer, a line at a time (a timed-out ``makefile`` cannot be read again)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            more = self.conn.recv(64)
            if not more:
                raise EOFError("the fork server's monitor ended without an answer")
            self.buffer += more
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


def _read(file: IO[bytes]) -> str:
    """What ``subprocess.run(text=True)`` returns: decoded, universal newlines."""
    file.seek(0)
    text = file.read().decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")


if __name__ == "__main__":
    _serve(sys.argv[1])
