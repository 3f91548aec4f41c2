"""Several processes serving one port: what ``vrm vendor serve --workers N`` runs.

A supervisor binds the listening socket once (so ``port = 0`` still means one port) and forks N
worker processes that inherit it; each serves it on an event loop and a database pool of its
own, and the kernel hands each new connection to one of them. What must hold across them holds
in the database: one answer per ``(from, id)`` (§12.7-4), the replay records (§12.6), the rate
limits and the first-contact budgets (§12.9-8).

The supervisor waits until every worker says it is serving before it reports the service
listening. On SIGTERM or SIGINT it passes SIGTERM to every worker, waits for them to finish
what they are answering, and returns 0. A worker that exits on its own after it was serving is
started again (in its place, on the same socket); one that exits before it was serving — its
database unreachable, say — or more than :data:`MAX_RESTARTS` restarts within
:data:`RESTART_WINDOW_S` seconds stop the whole service, with exit status 1.

POSIX only (``os.fork``): the supervisor forks before any event loop exists; the one thread it
has, the log writer (:mod:`vrmproto.server._logwriter`), waits out each fork and starts afresh
in the child.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from vrmproto.server._admission import SharedAdmission
from vrmproto.server._logwriter import flush_all
from vrmproto.server._ratelimit import SharedRateLimiter

if TYPE_CHECKING:
    from vrmproto.server._endpoint import Endpoint
    from vrmproto.store import Store

__all__ = ["MAX_RESTARTS", "RESTART_WINDOW_S", "Supervisor", "listening_socket",
           "share_rate_limits"]  # fmt: skip

#: Most workers started again within :data:`RESTART_WINDOW_S`; one more stops the service.
MAX_RESTARTS = 10
RESTART_WINDOW_S = 60.0

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
    children: dict[int, int] = field(default_factory=dict)  # pid -> worker index
    stopping: bool = False
    restarts: list[float] = field(default_factory=list)

    def run(self, on_listening: Callable[[list[int]], None]) -> int:
        """Start the workers, call ``on_listening(pids)`` once all serve, supervise them until
        SIGTERM/SIGINT; the exit status."""
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}  # fmt: skip
        try:
            for index in range(self.count):
                if not self._start(index):
                    return self._stop_all(0 if self.stopping else 1)
            on_listening(sorted(self.children))
            return self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self._signal_all()

    def _signal_all(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _start(self, index: int) -> bool:
        """Fork worker ``index``; True once it serves, False if it exited before."""
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_end)
            os._exit(self._child(index, write_end))
        os.close(write_end)
        self.children[pid] = index
        try:
            ready = os.read(read_end, 1) == b"r"
        finally:
            os.close(read_end)
        if ready:
            self.emit("worker_started", f"  worker {index} serving (pid {pid})",
                      {"worker": index, "pid": pid})  # fmt: skip
        return ready

    def _child(self, index: int, ready_fd: int) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)

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
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index = self.children.pop(pid, None)
            if index is None or self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            self.emit("worker_exited", f"  worker {index} (pid {pid}) exited with {code}",
                      {"worker": index, "pid": pid, "status": code})  # fmt: skip
            if not self._may_restart() or not self._start(index):
                return self._stop_all(0 if self.stopping else 1)
        return 0

    def _may_restart(self) -> bool:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S]
        self.restarts.append(now)
        return len(self.restarts) <= MAX_RESTARTS

    def _stop_all(self, status: int) -> int:
        """Stop every worker (SIGTERM), wait for them; ``status``."""
        self.stopping = True
        self._signal_all()
        while self.children:
            try:
                pid, _ = os.wait()
            except ChildProcessError:
                break
            self.children.pop(pid, None)
        self.emit("workers_stopped", "  workers stopped", {"status": status})
        return status
