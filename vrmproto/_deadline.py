"""One timer for the successive deadlines of a connection.

Our HTTP/1.1 clients (the agent's, :mod:`vrmproto.client._http_conn`, and the vendor's webhook
client, :mod:`vrmproto.server._webhook_http`) bound each request by a deadline, and the server
bounds each connection's wait for a request head and between requests
(:mod:`vrmproto.server._connections`, spec §10.1). A timer made and cancelled per request cost
more than the rest of the webhook client's own work on a small POST under uvloop
(``bench/events.py --delivery``: 61 → 44 µs of CPU per event once it moved to this), so a
connection keeps ONE timer: a new deadline only moves a number, and the timer, when it fires
before the deadline then in force, re-arms itself for it. A connection thus arms about one
timer per timeout period, however many requests it carries.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

__all__ = ["Deadline"]


class Deadline:
    """The deadline in force on a connection: :meth:`set` it, :meth:`clear` it once what it
    bounded is done, :meth:`cancel` it when the connection closes. ``expire`` is called once
    the loop's time reaches a deadline still set.

    ``horizon``: the timer is armed at most this far ahead (seconds). With the shortest
    timeout the owner sets as its horizon, a later deadline is never earlier than the time the
    timer is armed for, so a new deadline never re-arms it; without one (inf), a deadline
    earlier than the timer's re-arms it (cancelled, made again)."""

    __slots__ = ("_at", "_expire", "_handle", "_horizon", "_when")

    def __init__(self, expire: Callable[[], None], *, horizon: float = math.inf) -> None:
        self._expire = expire
        self._horizon = horizon
        self._at = math.inf  # the deadline in force: none
        self._handle: asyncio.TimerHandle | None = None
        self._when = math.inf  # when the armed timer fires

    @property
    def at(self) -> float:
        """The deadline in force (loop time); inf when none."""
        return self._at

    def set(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        """The deadline is now the loop time ``at``."""
        self._at = at
        if self._handle is not None:
            if self._when <= at:
                return  # the armed timer fires first, and moves on
            self._handle.cancel()
        self._arm(loop)

    def clear(self) -> None:
        """No deadline (the timer, if armed, finds nothing to do)."""
        self._at = math.inf

    def cancel(self) -> None:
        """No deadline and no timer."""
        self._at = math.inf
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._when = min(self._at, loop.time() + self._horizon)
        self._handle = loop.call_at(self._when, self._due, loop)

    def _due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = None
        if self._at == math.inf:
            return
        if loop.time() < self._at:  # a later deadline than the one it was armed for
            self._arm(loop)
            return
        self._at = math.inf
        self._expire()
