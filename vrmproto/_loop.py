"""The event loop the runners use: uvloop's where it is installed (``vrmproto[speed]``), else
asyncio's own.

uvloop (libuv under the asyncio API) makes the same code take less CPU per message: about 5% on
the vendor and 2% on the agent in ``bench/e2e.py`` (#12). It is an optional extra, not a
dependency: it has no wheels for some platforms, and nothing here depends on it. The library
never picks a loop for code that runs its own (``asyncio.run``, pytest, an application): only
the runners that own their process do — the ``vrm`` commands (the agent node and the vendor
server among them) and the benches.

The same runners collect cyclic garbage less often (:data:`GC_THRESHOLDS`): a message
allocates a few hundred container objects, so at Python's default (a young collection every
700) each message paid for a collection and every hundredth one for a walk of the whole heap
(every relationship held warm). ``bench/e2e.py --no-growth``, four pairs: vendor 510 -> 500 us
and agent 398 -> 389 us of CPU per message, p99 26-31 -> 22-26 ms (#12). Garbage without cycles
is freed as before; a cycle waits for at most 10,000 allocations.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["GC_THRESHOLDS", "loop_factory", "run"]

T = TypeVar("T")

#: The collector's thresholds in a runner's process, where Python's default is still set.
GC_THRESHOLDS = (10_000, 10, 10)
_PYTHON_DEFAULT = (700, 10, 10)


def loop_factory(fast: bool | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory if ``fast`` (None: if uvloop is installed); None for asyncio's own.
    ImportError if ``fast`` is True and uvloop is not installed."""
    if fast is False:
        return None
    try:
        import uvloop  # noqa: PLC0415 -- optional (vrmproto[speed]), looked for when asked
    except ImportError:
        if fast:
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(coro: Coroutine[Any, Any, T], *, fast: bool | None = None) -> T:
    """Run ``coro`` on a fresh event loop (:func:`loop_factory` says which kind), as
    :func:`asyncio.run` does, with the collector at :data:`GC_THRESHOLDS` unless the process
    set its own."""
    if gc.get_threshold() == _PYTHON_DEFAULT:
        gc.set_threshold(*GC_THRESHOLDS)
    with asyncio.Runner(loop_factory=loop_factory(fast)) as runner:
        return runner.run(coro)
