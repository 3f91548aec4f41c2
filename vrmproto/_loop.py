"""The event loop the runners use: uvloop's where it is installed (``vrmproto[speed]``), else
asyncio's own.

uvloop (libuv under the asyncio API) makes the same code take less CPU per message: about 5% on
the vendor and 2% on the agent in ``bench/e2e.py`` (#12). It is an optional extra, not a
dependency: it has no wheels for some platforms, and nothing here depends on it. The library
never picks a loop for code that runs its own (``asyncio.run``, pytest, an application): only
the runners that own their process do — the ``vrm`` commands (the agent node and the vendor
server among them) and the benches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run"]

T = TypeVar("T")


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
    :func:`asyncio.run` does."""
    with asyncio.Runner(loop_factory=loop_factory(fast)) as runner:
        return runner.run(coro)
