"""What the endpoint checks of its arguments, and how it ends its own tasks.

- :func:`check_discovery`: an :class:`~vrmproto.server.Endpoint` whose discovery document no
  customer could take is refused when it is made (§13.1-3, §13.1-5, §13.1-6);
- :func:`cancelling`: whether a ``CancelledError`` met by the current task is its own
  cancellation, or came from a future cancelled elsewhere (a failure like any other);
- :func:`drain_tasks`: wait for tasks (the hooks, §12.12) at most so long, then cancel them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from vrmproto._binding import MAX_DISCOVERY_BYTES
from vrmproto._codec import MAX_SAFE_INT

if TYPE_CHECKING:
    from vrmproto.server._endpoint import Endpoint

__all__ = ["cancelling", "check_discovery", "drain_tasks"]

log = logging.getLogger("vrmproto.server")


def check_discovery(endpoint: Endpoint) -> None:
    """``ValueError`` for arguments no reader could take a discovery document of: a
    lifetime that is no positive integer (§13.1-6: ``expires`` later than ``issued``;
    §13.1-3: numbers are integers), one path for the inbox and the history export (one
    route would hide the other), or a document over 65,536 bytes (§13.1-5: a reader
    refuses it) — for its name, paths or terms."""
    lifetime = endpoint.discovery_lifetime_ms
    if type(lifetime) is not int or not 0 < lifetime <= MAX_SAFE_INT:
        raise ValueError("discovery_lifetime_ms must be a positive integer, at most "
                         "2^53 - 1 (§13.1-6)")  # fmt: skip
    if urlsplit(endpoint.inbox_path).path == urlsplit(endpoint.history_path).path:
        raise ValueError("inbox_path and history_path must differ: one route would hide "
                         "the other")  # fmt: skip
    size = len(endpoint.discovery()[0])
    endpoint._discovery = None  # signed again when first asked for, with the clock of then
    if size > MAX_DISCOVERY_BYTES:
        raise ValueError(f"the discovery document would be {size} bytes, over "
                         f"{MAX_DISCOVERY_BYTES} bytes (§13.1-5): a shorter name, paths "
                         "or fewer accepted terms")  # fmt: skip


def cancelling() -> bool:
    """Whether this task is being cancelled: else a ``CancelledError`` it meets came from a
    future cancelled elsewhere, and is a failure like any other."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


async def drain_tasks(tasks: set[asyncio.Task[None]], timeout_s: float | None) -> None:
    """Wait until ``tasks`` (a set the tasks leave when done, and new ones may join) is
    empty; with ``timeout_s``, at most that long: the tasks still running then are cancelled
    (and logged), so that a hook stuck on a system that does not answer cannot hold a
    shutdown for ever (§12.12)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    while tasks:
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            break
        await asyncio.wait(set(tasks), timeout=left)
    stuck = set(tasks)
    if not stuck:
        return
    log.warning("%d hook(s) still running after %g s of shutdown: cancelled", len(stuck),
                timeout_s)  # fmt: skip
    for task in stuck:
        task.cancel()
    await asyncio.wait(stuck, timeout=1.0)  # a hook that swallows its cancellation is left
