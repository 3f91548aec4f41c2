"""Log lines written by a thread of their own, never by the event loop.

A vendor logs a line per request. Written on the event loop, one stream that stops reading — a
paused pager, journald under load, a full pipe — stalls every request of the process. Here a
record is handed to a bounded queue (:class:`QueuedLines`, a :class:`logging.Handler`) and a
writer thread formats and writes what is queued, one flush per batch. When the queue is full
the record is dropped and counted (:func:`dropped_records`, ``vrm_log_records_dropped_total`` on
``/metrics``); once the stream reads again, a line says how many were dropped. Nothing here
ever waits on the stream but the writer thread, and :meth:`QueuedLines.flush` (and ``close``),
which wait at most :data:`FLUSH_TIMEOUT_S`.

``--workers`` forks after logging is configured: threads do not survive ``fork()``, so the
child gets a fresh queue and writer thread of its own (:func:`os.register_at_fork`), and the
parent waits, before forking, until its writer is not in the middle of a write (the child then
never inherits the stream's lock held). A worker drains its writer before it exits
(:func:`flush_all`).

The writer thread blocks SIGTERM and SIGINT (:func:`_stop_signals_blocked`): they stop the
process, and are its main thread's to take. The kernel gives a process-directed signal to any
thread that does not block it, and Python then runs the handler in the main thread at its next
bytecode; so while this thread could take them, a main thread that blocked them for a while —
the supervisor, around each ``fork()``, so that one sent meanwhile reaches the new worker — had
the handler run inside that window all the same, before the new worker was counted (which was
told to stop only by the SIGTERM sent again a second later).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import TextIO

__all__ = ["DEFAULT_QUEUE_SIZE", "FLUSH_TIMEOUT_S", "QueuedLines", "dropped_records", "flush_all"]

#: Records held for the writer at most, by default (``[logging] queue_size``): with a few KB
#: each, a few tens of MB at most for a stream that stops reading.
DEFAULT_QUEUE_SIZE = 8192
#: How long ``flush()`` / ``close()`` wait for the writer (the stream may never read again).
FLUSH_TIMEOUT_S = 5.0
#: Records formatted per write of the stream, at most: the writer holds the GIL while it formats
#: and lets go of it at each write, so a long batch would keep the event loop waiting (up to
#: the interpreter's switch interval, 5 ms); 64 lines take well under a millisecond.
_BATCH = 64

_dropped = 0  # records dropped by this process (every handler), since it started
_live: weakref.WeakSet[QueuedLines] = weakref.WeakSet()


def dropped_records() -> int:
    """Log records this process dropped because its log stream was not reading."""
    return _dropped


def flush_all(timeout: float = FLUSH_TIMEOUT_S) -> None:
    """Wait (at most ``timeout`` seconds each) until every queued record is written."""
    for handler in list(_live):
        handler.flush(timeout)


class _Stop:
    """Queued by ``close()``: the writer writes what came before it, then ends."""


class QueuedLines(logging.Handler):
    """Formats records with its formatter and writes them to ``stream``, one line each, from a
    writer thread; ``emit`` never waits (a full queue drops the record and counts it)."""

    def __init__(self, stream: TextIO | None = None, queue_size: int = DEFAULT_QUEUE_SIZE
                 ) -> None:  # fmt: skip
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        super().__init__()
        self.stream = stream if stream is not None else sys.stdout
        self.queue_size = queue_size
        self.dropped = 0  # by this handler, in this process
        self._told = 0  # drops the stream has been told about
        self._closed = False
        self._stuck = False  # a flush that timed out: the stream is not reading
        self._held = False  # the stream's lock, taken before a fork
        self._start()
        _live.add(self)

    def _start(self) -> None:
        self._queue: queue.Queue[logging.LogRecord | threading.Event | _Stop] = queue.Queue(
            self.queue_size)  # fmt: skip
        self._io = threading.Lock()  # held while the writer touches the stream
        self._thread = threading.Thread(target=self._write, name="vrm-log-writer", daemon=True)
        with _stop_signals_blocked():  # the new thread starts with this thread's mask
            self._thread.start()

    # -- the caller's side (the event loop): never waits ------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        global _dropped  # noqa: PLW0603 - a process-wide counter, read by /metrics
        if record.args:  # the message as it is now: its arguments may change after
            record.msg = record.getMessage()
            record.args = None
        if record.exc_info:  # the traceback's frames live on: its text, now
            record.exc_text = (self.formatter or _PLAIN).formatException(record.exc_info)
            record.exc_info = None
        try:
            self._queue.put_nowait(record)
        except queue.Full:  # (emit runs under the handler's lock: the counts are exact)
            self.dropped += 1
            _dropped += 1

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Wait, at most ``timeout`` seconds, until what was queued before is written."""
        if self._closed or not self._thread.is_alive():
            return
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            self._stuck = True
            return
        self._stuck = not done.wait(timeout)

    def close(self) -> None:
        """Write what is queued (waiting at most :data:`FLUSH_TIMEOUT_S`) and stop the
        writer; the stream is left open (it is stdout, or the caller's)."""
        if not self._closed:
            self._closed = True
            _live.discard(self)
            wait = 0.0 if self._stuck else FLUSH_TIMEOUT_S  # waited once already
            try:
                self._queue.put(_Stop(), timeout=wait)
            except queue.Full:
                pass
            else:
                self._thread.join(wait)
        super().close()

    # -- the writer thread --------------------------------------------------------------------

    def _write(self) -> None:
        q, io_lock = self._queue, self._io
        while True:
            batch = [q.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            lines: list[str] = []
            waiting: list[threading.Event] = []
            stop = False
            for item in batch:
                if isinstance(item, logging.LogRecord):
                    lines.append(self._line(item))
                elif isinstance(item, threading.Event):
                    waiting.append(item)
                else:
                    stop = True
            if self.dropped > self._told:  # read once the stream reads again
                lines.append(self._line(self._dropped_note()))
            if lines:
                with io_lock, contextlib.suppress(Exception):  # a closed or broken stream:
                    self.stream.write("\n".join(lines) + "\n")  # nothing to tell it with
                    self.stream.flush()
            for event in waiting:
                event.set()
            if stop:
                return

    def _line(self, record: logging.LogRecord) -> str:
        try:
            return self.format(record)
        except Exception:
            return f"(a log record that did not format: {record.msg!r})"

    def _dropped_note(self) -> logging.LogRecord:
        dropped, self._told = self.dropped - self._told, self.dropped
        note = logging.LogRecord(
            "vrmproto.server.logging", logging.WARNING, __file__, 0,
            f"{dropped} log records dropped: the log stream was not reading "
            f"(queue of {self.queue_size})", None, None, "_dropped_note",
        )  # fmt: skip
        note.event = "log_dropped"
        note.fields = {"dropped": dropped, "queue_size": self.queue_size}
        return note

    # -- fork ---------------------------------------------------------------------------------

    def _before_fork(self) -> None:
        self._held = self._io.acquire(timeout=FLUSH_TIMEOUT_S)

    def _after_fork_in_parent(self) -> None:
        if self._held:
            self._io.release()

    def _after_fork_in_child(self) -> None:
        self.dropped = self._told = 0
        if not self._closed:
            self._start()  # what the parent had queued is the parent's to write


_PLAIN = logging.Formatter()


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """SIGTERM and SIGINT blocked in this thread while the block runs (one that arrives
    meanwhile is held, and taken once they are unblocked); nothing where there are no signal
    masks (Windows)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _before_fork() -> None:
    for handler in list(_live):
        handler._before_fork()


def _after_fork_in_parent() -> None:
    for handler in list(_live):
        handler._after_fork_in_parent()


def _after_fork_in_child() -> None:
    global _dropped  # noqa: PLW0603 - the child counts its own
    _dropped = 0
    for handler in list(_live):
        handler._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)  # fmt: skip
