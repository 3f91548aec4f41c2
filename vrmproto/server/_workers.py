"""Several processes serving one port: what ``vrm vendor serve --workers N`` runs.

A supervisor binds the listening socket once (so ``port = 0`` still means one port) and forks N
worker processes that inherit it; each serves it on an event loop and a database pool of its
own, and the kernel hands each new connection to one of them. What must hold across them holds
in the database: one answer per ``(from, id)`` (§12.7-4), the replay records (§12.6), the rate
limits and the first-contact budgets (§12.9-8).

The supervisor waits until every worker says it is serving before it reports the service
listening. On SIGTERM or SIGINT it passes SIGTERM to every worker, waits for them to finish
what they are answering, and returns 0; it sends SIGTERM again every :data:`RESEND_S` seconds
to a worker still running, and kills (SIGKILL) one still running ``stop_timeout_s`` after the
first (``[server] stop_timeout_s``), so the service always stops. A worker that exits on its
own after it was serving is
started again (in its place, on the same socket); one that exits before it was serving — its
database unreachable, say — or more than :data:`MAX_RESTARTS` restarts within
:data:`RESTART_WINDOW_S` seconds stop the whole service, with exit status 1.

POSIX only (``os.fork``): the supervisor forks before any event loop exists; the one thread it
has, the log writer (:mod:`vrmproto.server._logwriter`), waits out each fork and starts afresh
in the child. SIGTERM and SIGINT are blocked around each fork, so one that arrives then reaches
the new worker too (as its default action, before it serves) rather than being lost. The
supervisor waits on a wake-up pipe (:func:`signal.set_wakeup_fd`) and, on Linux, on a pidfd per
worker: a signal wakes it whichever of its threads the kernel gave it to.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from vrmproto.server._admission import SharedAdmission
from vrmproto.server._logwriter import flush_all
from vrmproto.server._ratelimit import SharedRateLimiter

if TYPE_CHECKING:
    from vrmproto.server._endpoint import Endpoint
    from vrmproto.store import Store

__all__ = ["MAX_RESTARTS", "RESEND_S", "RESTART_WINDOW_S", "STOP_TIMEOUT_S", "Supervisor",
           "listening_socket", "share_rate_limits"]  # fmt: skip

#: Most workers started again within :data:`RESTART_WINDOW_S`; one more stops the service.
MAX_RESTARTS = 10
RESTART_WINDOW_S = 60.0
#: Seconds between the SIGTERMs sent to a worker that has not stopped yet.
RESEND_S = 1.0
#: Seconds a stopping worker is given before it is killed (``[server] stop_timeout_s``).
STOP_TIMEOUT_S = 30.0
#: Where ``os.pidfd_open`` is missing (not Linux): how often the supervisor looks for exited
#: workers (it wakes at once on a signal).
_POLL_S = 0.2
_STOP_SIGNALS: set[signal.Signals] = {signal.SIGTERM, signal.SIGINT}

#: ``work(index, sock, ready)``, run in the child: serve ``sock`` until SIGTERM, call
#: ``ready()`` once serving, return the exit status.
Work = Callable[[int, socket.socket, Callable[[], None]], int]
#: ``emit(event, human, fields)``: one log line of the supervisor.
Emit = Callable[[str, str, dict[str, Any]], None]


def share_rate_limits(endpoint: Endpoint, store: Store) -> bool:
    """Keep ``endpoint``'s per-sender and per-address rate limits (§12.9-5) and its
    first-contact budgets per address prefix (§10-15 to §10-17) in ``store``'s database when it
    is a :class:`~vrmproto.store.PostgresStore` (§12.9-8), so that every process serving from
    that database enforces them together; True if it did. (Pass the store itself, not a
    wrapper around it.)"""
    from vrmproto.store import PostgresStore  # noqa: PLC0415 -- asyncpg only where used
    from vrmproto.store._pg_admission import PgOpenNegotiations  # noqa: PLC0415
    from vrmproto.store._pg_rates import PgRateBuckets  # noqa: PLC0415

    if not isinstance(store, PostgresStore):
        return False
    buckets = PgRateBuckets(store)
    limits, clock = endpoint.limits, endpoint.clock
    endpoint.sender_limit = SharedRateLimiter(buckets, "sender", limits.rate_per_sender_per_minute,
                                              clock=clock)  # fmt: skip
    endpoint.address_limit = SharedRateLimiter(
        buckets, "address", limits.rate_per_address_per_minute, clock=clock)  # fmt: skip
    endpoint.admission = SharedAdmission(limits, clock=clock, buckets=buckets,
                                         negotiations=PgOpenNegotiations(store))  # fmt: skip
    return True


def _term_when_orphaned(parent: int) -> bool:
    """Have the kernel send this worker SIGTERM when its supervisor dies (Linux
    ``PR_SET_PDEATHSIG``): a supervisor killed outright (``kill -9``, the OOM killer,
    ``kill -HUP``) passes no SIGTERM on, and its workers went on serving the port as orphans.
    False if the supervisor died before the request took effect."""
    if sys.platform == "linux":
        import ctypes  # noqa: PLC0415 -- Linux only
        import ctypes.util  # noqa: PLC0415

        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    return os.getppid() == parent


def listening_socket(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: any free port) and listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(slots=True)
class Supervisor:
    """Forks ``count`` workers running ``work`` on ``sock``; :meth:`run` until stopped."""

    count: int
    sock: socket.socket
    work: Work
    emit: Emit
    stop_timeout_s: float = STOP_TIMEOUT_S
    children: dict[int, int] = field(default_factory=dict)  # pid -> worker index
    stopping: bool = False
    restarts: list[float] = field(default_factory=list)
    _pidfds: dict[int, int] = field(default_factory=dict)  # pid -> pidfd (Linux)
    _wake: tuple[int, int] | None = None  # the wake-up pipe: read end, write end
    _stop_at: float | None = None  # monotonic: when the workers were first told to stop
    _sent_at: float = 0.0  # monotonic: the last SIGTERM to the workers
    supervisor_pid: int = field(default_factory=os.getpid)

    def run(self, on_listening: Callable[[list[int]], None]) -> int:
        """Start the workers, call ``on_listening(pids)`` once all serve, supervise them until
        SIGTERM/SIGINT; the exit status."""
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        self._wake = (read_end, write_end)
        previous_fd = signal.set_wakeup_fd(write_end)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        try:
            for index in range(self.count):
                if not self._start(index):
                    return self._stop_all(0 if self.stopping else 1)
            on_listening(sorted(self.children))
            return self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            for fd in (read_end, write_end, *self._pidfds.values()):
                os.close(fd)
            self._pidfds.clear()
            self._wake = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self._signal_all()

    def _signal_all(self) -> None:
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        self._sent_at = time.monotonic()
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _start(self, index: int) -> bool:
        """Fork worker ``index``; True once it serves, False if it exited before."""
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = -1
        try:
            pid = os.fork()
            if pid == 0:  # the worker
                os.close(read_end)
                os._exit(self._child(index, write_end, blocked))
            os.close(write_end)
            self.children[pid] = index
            self._watch_pid(pid)
            if self.stopping:  # told while forking, by a thread the mask does not cover
                os.kill(pid, signal.SIGTERM)
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # a SIGTERM held runs here
        try:
            ready = self._ready(read_end)
        finally:
            os.close(read_end)
        if ready:
            self.emit("worker_started", f"  worker {index} serving (pid {pid})",
                      {"worker": index, "pid": pid})  # fmt: skip
        return ready

    def _ready(self, read_end: int) -> bool:
        """Whether the worker writing to ``read_end`` says it serves (False: it exited first).
        Told to stop meanwhile, it is sent SIGTERM again, then killed, as the others are."""
        assert self._wake is not None
        poll = select.poll()
        poll.register(read_end, select.POLLIN)
        poll.register(self._wake[0], select.POLLIN)
        while True:
            timeout = self._stopping_step() if self.stopping else None
            ready = poll.poll(None if timeout is None else _ms(timeout))
            if any(fd == read_end for fd, _ in ready):
                return os.read(read_end, 1) == b"r"
            self._drain_wake()

    def _watch_pid(self, pid: int) -> None:
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            with contextlib.suppress(OSError):  # a kernel before 5.3: polled instead
                self._pidfds[pid] = pidfd_open(pid)

    def _child(self, index: int, ready_fd: int, mask: Iterable[int]) -> int:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        if not _term_when_orphaned(self.supervisor_pid):
            return 0  # the supervisor is already gone: serve nothing
        signal.set_wakeup_fd(-1)  # the supervisor's pipe: the worker's event loop sets its own
        for fd in (*(self._wake or ()), *self._pidfds.values()):
            os.close(fd)
        self._pidfds.clear()
        self._wake = None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # one sent meanwhile ends us here

        def ready() -> None:
            os.write(ready_fd, b"r")
            os.close(ready_fd)

        try:
            return self.work(index, self.sock, ready)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback  # noqa: PLC0415

            traceback.print_exc()
            return 1
        finally:
            flush_all()  # the log lines still queued for the writer thread (os._exit follows)
            sys.stdout.flush()
            sys.stderr.flush()

    def _watch(self) -> int:
        while self.children:
            for pid, status in self._exited():
                index = self.children.pop(pid, None)
                if index is None or self.stopping:
                    continue
                code = os.waitstatus_to_exitcode(status) if status >= 0 else None
                self.emit("worker_exited", f"  worker {index} (pid {pid}) exited with {code}",
                          {"worker": index, "pid": pid, "status": code})  # fmt: skip
                if not self._may_restart() or not self._start(index):
                    return self._stop_all(0 if self.stopping else 1)
        return 0

    def _exited(self) -> list[tuple[int, int]]:
        """The workers that exited (pid, wait status; -1 when unknown), after waiting for one
        to exit or for a signal; while stopping, also SIGTERM again every :data:`RESEND_S`
        seconds and SIGKILL after ``stop_timeout_s``."""
        timeout = self._stopping_step() if self.stopping else None
        if len(self._pidfds) < len(self.children):  # no pidfd for some: look now and then
            timeout = _POLL_S if timeout is None else min(timeout, _POLL_S)
        assert self._wake is not None
        poll = select.poll()
        poll.register(self._wake[0], select.POLLIN)
        for fd in self._pidfds.values():
            poll.register(fd, select.POLLIN)
        poll.poll(None if timeout is None else _ms(timeout))
        self._drain_wake()
        out = []
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else (SIGCHLD ignored): gone
                done, status = pid, -1
            if done == pid:
                with contextlib.suppress(KeyError, OSError):
                    os.close(self._pidfds.pop(pid))
                out.append((pid, status))
        return out

    def _drain_wake(self) -> None:
        """Empty the wake-up pipe (the signal handler ran, or runs at the next bytecode)."""
        assert self._wake is not None
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake[0], 64):
                pass

    def _stopping_step(self) -> float:
        """Seconds until the next step of stopping: SIGTERM again to the workers still
        running, or, past ``stop_timeout_s``, SIGKILL; done now when due."""
        now = time.monotonic()
        stop_at = self._stop_at if self._stop_at is not None else now
        if now - stop_at >= self.stop_timeout_s:
            for pid, index in list(self.children.items()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self.emit("worker_killed", f"  worker {index} (pid {pid}) did not stop within "
                          f"{self.stop_timeout_s:g} s of SIGTERM: killed",
                          {"worker": index, "pid": pid})  # fmt: skip
            self._stop_at = float("inf")  # killed once; now wait for them
            return RESEND_S
        if now - self._sent_at >= RESEND_S:
            self._signal_all()
        return max(0.0, min(self._sent_at + RESEND_S, stop_at + self.stop_timeout_s) - now)

    def _may_restart(self) -> bool:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S]
        self.restarts.append(now)
        return len(self.restarts) <= MAX_RESTARTS

    def _stop_all(self, status: int) -> int:
        """Stop every worker (SIGTERM, again until they exit; SIGKILL after
        ``stop_timeout_s``), wait for them; ``status``."""
        self.stopping = True
        self._signal_all()
        while self.children:
            for pid, _ in self._exited():
                self.children.pop(pid, None)
        self.emit("workers_stopped", "  workers stopped", {"status": status})
        return status


def _ms(seconds: float) -> int:
    """``seconds`` as poll's milliseconds, rounded up (so a due step is not woken early)."""
    return max(0, int(seconds * 1000)) + 1
