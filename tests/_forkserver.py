"""A fork server for the tests that start Python programs: each run is still its own process,
forked from one that has already imported what the program needs.

Starting ``python -m vrmproto.cli`` costs ~0.5 s on the 2-core machine, nearly all of it
imports, and the suite runs ``vrm`` several hundred times; the conformance tests serve dozens of
broken vendors (``tests/_broken_vendor.py MODE``). :class:`ForkServer` starts one Python process
that imports the modules it is told to preload, then forks a child per run. The child gets the
run's Python argv (``-m MODULE ARGS`` or ``SCRIPT ARGS``), environment, working directory and
standard streams, runs the program as ``python ARGV`` would (``runpy``, ``__main__``,
``sys.argv``, ``sys.path[0]``, ``sys.exit``), and exits with its code: a separate process with
its own memory, exit code, signals and file descriptors, as ``subprocess`` gives. What it shares
with the server is only what importing left behind, and the interpreter's start-up settings
(``PYTHONHASHSEED``, UTF-8 mode), which the server takes from the same environment the runs get;
a run whose start-up environment differs is exec'd as a fresh interpreter (:func:`needs_fresh`).

Protocol, over a Unix socket, one connection per run: the client sends a 4-byte length and a
JSON request ``{"argv", "env", "cwd", "session"}`` with its stdin, stdout and stderr descriptors
attached (``SCM_RIGHTS``); the server forks a *monitor*, which forks the run (in a session of its
own if ``session``) and answers one line with the run's pid, then one line with its exit code
(``-N`` for signal N) once it ends and is reaped; if the client closes the connection first, the
monitor kills the run. The monitor exists so the server never waits for a run: it ignores
``SIGCHLD`` and the kernel reaps them.

Clients: :meth:`ForkServer.run` (a run to its end, its output captured: what ``vrm()`` of
``tests/_cli_helpers.py`` uses), :meth:`ForkServer.spawn` and :class:`AsyncRun` (a run the test
talks to while it runs: its pid, pipes and exit code; ``tests/_broken_vendor.Vendors``,
``tests/test_workers.py``), and ``tests/_forkclient.py``, a stdlib-only program that starts in
~20 ms and is the run for a test that needs a ``Popen``.
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
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # asyncio is imported where it is used: _forkclient.py starts without it
    import asyncio

_HEADER = struct.Struct("!I")


def request_bytes(argv: Sequence[str], env: dict[str, str], cwd: str, *,
                  session: bool = False) -> bytes:  # fmt: skip
    """The request that asks for ``python ARGV`` (see the module's docstring)."""
    body = json.dumps({"argv": list(argv), "env": env, "cwd": cwd, "session": session}).encode()
    return _HEADER.pack(len(body)) + body


class Lines:
    """The monitor's answer, a line at a time (a timed-out ``makefile`` cannot be read again)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""

    def line(self) -> int:
        while b"\n" not in self.buffer:
            self._more(self.conn.recv(64))
        return self._take()

    async def line_async(self) -> int:
        import asyncio  # noqa: PLC0415 - see the import of TYPE_CHECKING

        self.conn.setblocking(False)
        while b"\n" not in self.buffer:
            self._more(await asyncio.get_running_loop().sock_recv(self.conn, 64))
        return self._take()

    def _more(self, data: bytes) -> None:
        if not data:
            raise EOFError("the fork server's monitor ended without an answer")
        self.buffer += data

    def _take(self) -> int:
        line, _, self.buffer = self.buffer.partition(b"\n")
        return int(line)


# -- the server (python -m tests._forkserver SOCKET PRELOAD...) ---------------------------------


def _preload(names: Sequence[str]) -> None:
    """Import each module name, and each ``.py`` file as the module of its name (its folder
    appended to ``sys.path``: a script run from that folder has it first, as ``sys.path[0]``,
    and finds the same module)."""
    for name in names:
        if name.endswith(".py"):
            folder, name = os.path.split(os.path.abspath(name))  # noqa: PLW2901
            if folder not in sys.path:
                sys.path.append(folder)
            name = name.removesuffix(".py")  # noqa: PLW2901
        with contextlib.suppress(ImportError):  # the run imports it again and says why
            importlib.import_module(name)


def _serve(path: str, preload: Sequence[str]) -> None:
    _preload(preload)
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
    """Become ``python ARGV`` with the request's streams, environment, cwd and session."""
    code = 1
    try:
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        if request["session"]:
            os.setsid()
        argv: list[str] = request["argv"]
        os.chdir(request["cwd"])
        if needs_fresh(request["env"], dict(os.environ)):
            os.execve(sys.executable, [sys.executable, *argv], request["env"])
        os.environ.clear()
        os.environ.update(request["env"])
        try:
            _as_python(argv)
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


def _as_python(argv: list[str]) -> None:
    """What ``python -m MODULE ARGS`` (``sys.path[0]`` the working directory) or ``python
    SCRIPT ARGS`` (``sys.path[0]`` the script's folder) does, the interpreter started."""
    if argv[0] == "-m":
        sys.argv = argv[1:]
        sys.path[0] = os.getcwd()
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")


# -- the client --------------------------------------------------------------------------------


class ForkServer:
    """A server that has imported ``preload`` (module names, or ``.py`` files), started at once
    with ``env`` and ``cwd``; :meth:`close` ends it (see the module's docstring)."""

    def __init__(self, preload: Sequence[str], *, env: dict[str, str], cwd: Path) -> None:
        self._dir = tempfile.mkdtemp(prefix="vrm-fork-")
        self.path = os.path.join(self._dir, "s")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests._forkserver", self.path, *preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=cwd,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.proc.kill()
            raise RuntimeError(f"the fork server did not start ({self.proc.wait()})")
        atexit.register(self.close)

    def _request(self, argv: Sequence[str], stdio: Sequence[int], env: dict[str, str],
                 cwd: Path, session: bool) -> socket.socket:  # fmt: skip
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
            socket.send_fds(conn, [request_bytes(argv, env, str(cwd), session=session)],
                            list(stdio))  # fmt: skip
        except BaseException:
            conn.close()
            raise
        return conn

    def spawn(self, argv: Sequence[str], *, stdio: Sequence[int], env: dict[str, str],
              cwd: Path, session: bool = False) -> Forked:  # fmt: skip
        """Start ``python ARGV`` with ``stdio`` (three descriptors, which stay the caller's
        to close) as its standard streams; in a session of its own if ``session``."""
        forked = Forked(self._request(argv, stdio, env, cwd, session), argv)
        try:
            forked.pid = forked.lines.line()
        except BaseException:
            forked.close()
            raise
        return forked

    async def spawn_async(self, argv: Sequence[str], *, stdio: Sequence[int],
                          env: dict[str, str], cwd: Path, session: bool = False) -> Forked:
        """:meth:`spawn`, its pid awaited."""
        forked = Forked(self._request(argv, stdio, env, cwd, session), argv)
        try:
            forked.pid = await forked.lines.line_async()
        except BaseException:
            forked.close()
            raise
        return forked

    def run(
        self, argv: Sequence[str], *, env: dict[str, str], cwd: Path, stdin: str, timeout: float
    ) -> tuple[int, str, str]:
        """Run ``python ARGV`` to its end: its exit code, stdout and stderr;
        :class:`subprocess.TimeoutExpired` after ``timeout`` s (the run killed)."""
        with (
            tempfile.TemporaryFile() as in_, tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
        ):  # fmt: skip
            in_.write(stdin.encode())
            in_.seek(0)
            forked = self.spawn(argv, stdio=(in_.fileno(), out.fileno(), err.fileno()), env=env,
                                cwd=cwd)  # fmt: skip
            with contextlib.closing(forked):
                try:
                    code = forked.wait(timeout)
                except subprocess.TimeoutExpired:
                    forked.kill()
                    forked.wait(10)  # the monitor saw it end: its descriptors are closed
                    raise subprocess.TimeoutExpired(list(argv), timeout, _read(out),
                                                    _read(err)) from None  # fmt: skip
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


class Forked:
    """One run of a :class:`ForkServer`: its pid, and its exit code once it has ended and been
    reaped (``-N`` for signal N). Closing it kills a run that has not ended."""

    def __init__(self, conn: socket.socket, argv: Sequence[str]) -> None:
        self.lines = Lines(conn)
        self.argv = list(argv)
        self.pid = 0
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        """The exit code; :class:`subprocess.TimeoutExpired` after ``timeout`` s."""
        if self.returncode is None:
            self.lines.conn.settimeout(timeout)
            try:
                self.returncode = self.lines.line()
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.argv, timeout or 0) from None
        return self.returncode

    async def wait_async(self) -> int:
        if self.returncode is None:
            self.returncode = await self.lines.line_async()
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it has ended; its code is on its way
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        self.lines.conn.close()


class AsyncRun:
    """A run started from an event loop with pipes for its stdout (:attr:`stdout`, a
    :class:`asyncio.StreamReader`) and, if asked, its stdin (:meth:`close_stdin` ends it): the
    part of :class:`asyncio.subprocess.Process` the tests use (``pid``, ``returncode``,
    ``wait()``, ``send_signal()``). Its stderr is the test's, unless ``stderr`` names another
    descriptor. Use it as an ``async with`` block: at its end a run that is still running is
    killed."""

    def __init__(self, forked: Forked, stdout: asyncio.StreamReader,
                 transport: asyncio.ReadTransport, stdin: int | None) -> None:  # fmt: skip
        self.forked = forked
        self.stdout = stdout
        self._transport = transport
        self._stdin = stdin

    @classmethod
    async def start(cls, server: ForkServer, argv: Sequence[str], *, env: dict[str, str],
                    cwd: Path, stdin: bool = False, stderr: int = 2,
                    session: bool = False) -> AsyncRun:  # fmt: skip
        import asyncio  # noqa: PLC0415 - see the import of TYPE_CHECKING

        out_r, out_w = os.pipe()
        in_r, in_w = os.pipe() if stdin else (os.open(os.devnull, os.O_RDONLY), -1)
        try:
            forked = await server.spawn_async(argv, stdio=(in_r, out_w, stderr), env=env,
                                              cwd=cwd, session=session)  # fmt: skip
        except BaseException:
            for fd in (out_r, in_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:  # the run has its own copies now: its stdout ends when the run's copies do
            os.close(out_w)
            os.close(in_r)
        reader = asyncio.StreamReader(limit=1 << 20)
        pipe = open(out_r, "rb", buffering=0)  # noqa: ASYNC230, SIM115 - a descriptor: no wait
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe)  # fmt: skip
        return cls(forked, reader, transport, in_w if stdin else None)

    @property
    def pid(self) -> int:
        return self.forked.pid

    @property
    def returncode(self) -> int | None:
        return self.forked.returncode

    def send_signal(self, signum: int) -> None:
        self.forked.send_signal(signum)

    def close_stdin(self) -> None:
        if self._stdin is not None:
            os.close(self._stdin)
            self._stdin = None

    async def wait(self) -> int:
        return await self.forked.wait_async()

    async def __aenter__(self) -> AsyncRun:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close_stdin()
        self.forked.close()  # the monitor kills the run if it has not ended
        self._transport.close()


def _read(file: IO[bytes]) -> str:
    """What ``subprocess.run(text=True)`` returns: decoded, universal newlines."""
    file.seek(0)
    text = file.read().decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2:])
