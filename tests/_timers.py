"""A stand-in for the event loop's clock and timers, for tests of what arms timers
(``vrmproto/_deadline.py`` and the connections that use it): the test moves the clock and fires
the timers itself, so no test waits for a deadline to pass."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Handle:
    def __init__(self, loop: TimerLoop, when: float) -> None:
        self.loop, self.when = loop, when
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerLoop:
    """``time``, ``call_at`` and ``create_future`` of a loop: timers are kept (``armed``, the
    live ones), not run, until :meth:`fire`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.now = 0.0
        self._timers: list[tuple[Handle, Callable[..., None], tuple[object, ...]]] = []

    def time(self) -> float:
        return self.now

    def create_future(self) -> asyncio.Future[int]:
        return self.loop.create_future()

    def call_at(self, when: float, callback: Callable[..., None], *args: object) -> Handle:
        handle = Handle(self, when)
        self._timers.append((handle, callback, args))
        return handle

    @property
    def armed(self) -> list[float]:
        """When each live timer fires, earliest first."""
        return sorted(h.when for h, _, _ in self._timers if not h.cancelled)

    @property
    def made(self) -> int:
        """Timers made so far, cancelled ones included."""
        return len(self._timers)

    def fire(self) -> None:
        """Run the earliest live timer, the clock moved to it."""
        live = [t for t in self._timers if not t[0].cancelled]
        handle, callback, args = min(live, key=lambda t: t[0].when)
        self._timers.remove((handle, callback, args))
        self.now = max(self.now, handle.when)
        callback(*args)
