"""One timer for the successive requests of a kept-alive connection.

Both of our HTTP/1.1 clients (the agent's, :mod:`vrmproto.client._http_conn`, and the vendor's
webhook client, :mod:`vrmproto.server._webhook_http`) bound each request by a deadline. A
timer made and cancelled per request cost more than the rest of the client's own work on a
small POST under uvloop (bench/events.py ``--delivery``: 61 → 44 µs of CPU per event once the
webhook client moved to this), so a connection keeps ONE timer: a request moves the deadline
forward, and the timer, when it fires before the deadline then in force, re-arms itself for it.
A connection thus arms at most one timer per timeout period, however many requests it carries.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

__all__ = ["Deadline"]


class Deadline:
    """The deadline of a connection's awaited answer: :meth:`set` when a request is written,
    :meth:`clear` when its answer (or failure) came, :meth:`cancel` when the connection closes.
    ``expire`` is called once the loop's time reaches a deadline still set."""

    __slots__ = ("_at", "_expire", "_handle")

    def __init__(self, expire: Callable[[], None]) -> None:
        self._expire = expire
        self._at = math.inf  # no answer awaited
        self._handle: asyncio.TimerHandle | None = None

    def set(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        """An answer is awaited until the loop time ``at``."""
        self._at = at
        if self._handle is None:
            self._handle = loop.call_at(at, self._due, loop)

    def clear(self) -> None:
        """No answer is awaited (the timer, if armed, finds nothing to do)."""
        self._at = math.inf

    def cancel(self) -> None:
        self._at = math.inf
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = None
        if self._at == math.inf:
            return
        if loop.time() < self._at:  # a later request's deadline: wait for it
            self._handle = loop.call_at(self._at, self._due, loop)
            return
        self._at = math.inf
        self._expire()
