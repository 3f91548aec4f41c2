"""Long operations the page follows live: the change of address and the intentcast.

A :class:`Job` is started by a form, runs in the background, and changes as each vendor
answers; the job's page renders it as it stands and then follows it over server-sent events
(:func:`stream`): each change sends the job's fragment, rendered afresh on the server, and the
page puts it in place. A queued address update stays followed until the outbox delivers it.

:class:`Jobs` keeps every job that is not finished — one running, or with a row queued — and
of the finished ones the :data:`MAX_JOBS` most recent, each for :data:`FINISHED_KEEP_S` after
it finished: a page left open for days, with one vendor down all along, does not grow.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from vrmproto.client import Offer, ProgressEvent
from vrmproto.client._http import unreachable_words

__all__ = ["Job", "JobKind", "Jobs", "Row", "brief", "stream"]

JobKind = Literal["address", "intent"]

log = logging.getLogger("vrmproto.ui")

#: How many finished jobs are remembered (the oldest are forgotten first).
MAX_JOBS = 64
#: How long a finished job stays, in seconds: its page can be read again, then it is forgotten.
FINISHED_KEEP_S = 3600.0


@dataclass(slots=True)
class Row:
    """One vendor's line in a job: where its message stands."""

    vendor: str
    url: str
    #: waiting, started, confirmed, queued, refused, failed, delivered; "not sent" (stopped),
    #: "not asked" (an intentcast skips a vendor the person ended with, or asked already)
    status: str = "waiting"
    detail: str = ""
    thread: bytes | None = None
    msg: bytes = b""  # the hash of the message this row sent, once known


@dataclass(slots=True)
class Job:
    """One running or finished operation; :meth:`changed` wakes whoever follows it."""

    id: str
    kind: JobKind
    title: str
    rows: list[Row]
    offers: list[Offer] = field(default_factory=list)
    declines: list[tuple[str, str]] = field(default_factory=list)
    intent_id: bytes | None = None
    running: bool = True
    closing: bool = False  # the page server is stopping: followers stop following
    error: str = ""
    version: int = 0
    clock: Callable[[], float] = time.monotonic
    ended_at: float | None = None  # by ``clock``, when it was first seen finished
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def finished(self) -> bool:
        """Nothing more will change: the operation ended and nothing of it waits in the outbox."""
        return not self.running and not any(r.status == "queued" for r in self.rows)

    def changed(self) -> None:
        if self.ended_at is None and self.finished:
            self.ended_at = self.clock()
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, version: int) -> None:
        """Return once the job is past ``version``."""
        while self.version <= version:
            await self._event.wait()

    def ended(self, error: str = "") -> None:
        """The operation is over — failed as a whole with ``error`` (the store could not
        write, say), or not: a vendor it never reported on was sent nothing (it stopped
        first, or skipped that vendor), and says so rather than "waiting" forever."""
        self.error = error
        self.running = False
        for r in self.rows:
            if r.status == "waiting":
                r.status = "not sent"
        self.changed()

    def row(self, url: str, thread: bytes | None = None) -> Row | None:
        for r in self.rows:
            if (thread is not None and r.thread == thread) or r.url == url:
                return r
        return None

    def progress(self, event: ProgressEvent) -> None:
        """A fan-out's progress callback: one vendor started, or ended."""
        r = self.row(event.url, event.thread)
        if r is None:
            r = Row(event.vendor, event.url, thread=event.thread)
            self.rows.append(r)
        r.status, r.detail = event.stage, brief(event.detail)
        if event.thread is not None:
            r.thread = event.thread
        if event.delivery is not None:
            r.msg = event.delivery.msg_hash
        self.changed()

    def delivered(self, thread: bytes, status: str, detail: str = "", msg: bytes = b"") -> None:
        """The outbox delivered (or gave up on) ``msg``: the row of this job that left it
        queued says so — not a row whose own message still waits behind an earlier one of
        the thread that just went (a share queued before the address update)."""
        for r in self.rows:
            if (r.thread == thread and r.status == "queued"
                    and (not r.msg or not msg or r.msg == msg)):  # fmt: skip
                r.status = "delivered" if status == "confirmed" else status
                r.detail = brief(detail)
                self.changed()


def brief(detail: str) -> str:
    """A delivery failure in a few words for a table cell (the full text is in the log)."""
    unreachable = unreachable_words(detail)
    if unreachable is not None:
        return unreachable
    return detail if len(detail) <= 120 else detail[:119] + "…"


class Jobs:
    """The jobs of this launch, by id."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._clock = clock

    def new(self, kind: JobKind, title: str, rows: list[Row]) -> Job:
        job = Job(secrets.token_hex(8), kind, title, rows, clock=self._clock)
        self._jobs[job.id] = job
        self._sweep()
        return job

    def _sweep(self) -> None:
        """Forget finished jobs: those finished longer than :data:`FINISHED_KEEP_S` ago, and
        the oldest beyond :data:`MAX_JOBS`. A job not finished stays, wherever it stands."""
        now = self._clock()
        finished = []
        for job in self._jobs.values():
            if job.finished and job.ended_at is None:  # finished without a change (no rows)
                job.ended_at = now
            if job.finished:
                finished.append(job)
        excess = len(finished) - MAX_JOBS
        for i, job in enumerate(finished):  # oldest first: the dict keeps creation order
            assert job.ended_at is not None
            if i < excess or now - job.ended_at > FINISHED_KEEP_S:
                del self._jobs[job.id]

    def get(self, job_id: str) -> Job | None:
        self._sweep()
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        self._sweep()
        return list(self._jobs.values())

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background until it ends or the page server closes."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("a background step of the page failed: %s", exc, exc_info=exc)

    async def close(self) -> None:
        """Cancel what runs and end every stream that follows a job."""
        for job in self._jobs.values():
            job.closing = True
            job.changed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _event(name: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {name}\n{lines}\n".encode()


async def stream(request: web.Request, job: Job, render: Callable[[Job], str],
                 headers: dict[str, str]) -> web.StreamResponse:  # fmt: skip
    """Follow ``job`` over server-sent events: ``update`` with the fragment at each change,
    ``done`` once it is finished."""
    response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
    await response.prepare(request)
    try:
        while True:
            version = job.version
            await response.write(_event("update", render(job)))
            if job.finished or job.closing:
                await response.write(_event("done", ""))
                return response
            await job.wait(version)
    except ConnectionResetError:  # the page was closed: nobody follows any more
        return response
