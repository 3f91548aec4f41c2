"""``/readyz`` read the store at every probe (s22 hunt, lead).

The route is the operator's and not rate limited (§12.9-5 bounds customers), and it may be on
the public port: a probe storm — a misconfigured probe at 100/s, or anyone at all — cost the
store one read per request, on PostgreSQL a round trip each, and took the store's connections
from the customers' messages. ``/metrics`` already read the store at most every 5 s. Now
``/readyz`` reads it at most once a second (and no sooner than ten times the last read took):
probes in between answer what the last read found, and probes at once share one read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from _broken_vendor import make_endpoint

from vrmproto.server import Server, serve
from vrmproto.server._observe import READY_READ_MIN_MS
from vrmproto.store import MemoryStore


class Counting(MemoryStore):
    """Counts its reads; ``down`` makes them fail."""

    reads = 0
    down = False

    async def get_meta(self, key: str) -> bytes | None:
        self.reads += 1
        if self.down:
            raise ConnectionRefusedError("db down")
        return await super().get_meta(key)


async def _probe(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/readyz") as r:
        await r.read()
        return r.status


@contextlib.asynccontextmanager
async def serving(store: Counting
                  ) -> AsyncIterator[tuple[Server, list[int], aiohttp.ClientSession]]:
    """An endpoint on ``store`` served on loopback, its clock the list's one value, and a
    client session."""
    endpoint = make_endpoint(store)
    now = [1_000_000]
    endpoint.clock = lambda: now[0]
    server = await serve(endpoint)
    try:
        async with aiohttp.ClientSession() as http:
            yield server, now, http
    finally:
        await server.close()


async def test_a_storm_of_probes_reads_the_store_once_per_interval() -> None:
    store = Counting()
    async with serving(store) as (server, now, http):
        statuses = await asyncio.gather(*(_probe(http, server.url) for _ in range(50)))
        statuses += [await _probe(http, server.url) for _ in range(50)]
        assert statuses == [200] * 100
        assert store.reads == 1
        now[0] += READY_READ_MIN_MS - 1
        assert await _probe(http, server.url) == 200
        assert store.reads == 1
        now[0] += 1  # the interval has passed: read again, and see the store down
        store.down = True
        assert await _probe(http, server.url) == 503
        assert await _probe(http, server.url) == 503
        assert store.reads == 2  # a failing store is not hammered either
        store.down = False
        now[0] += READY_READ_MIN_MS
        assert await _probe(http, server.url) == 200
        assert store.reads == 3


async def test_a_clock_set_back_reads_again() -> None:
    store = Counting()
    async with serving(store) as (server, now, http):
        assert await _probe(http, server.url) == 200
        now[0] -= 60_000
        assert await _probe(http, server.url) == 200
        assert store.reads == 2
