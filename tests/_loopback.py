"""An aiohttp application served on 127.0.0.1 for one test: the hostile peer, relay or
receiver a test stands up (no traffic leaves loopback)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

__all__ = ["serving_app"]


@contextlib.asynccontextmanager
async def serving_app(app: web.Application, scheme: str = "http") -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1, a free port; yields ``scheme://127.0.0.1:PORT``."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
