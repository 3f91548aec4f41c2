"""``/metrics`` of a vendor with many customers, scraped often (session 16's hunt).

Each scrape read every relationship from the store to count them by state: ~0.6 s of CPU per
100,000 relationships (on the 2-core machine), for every ``GET /metrics`` — and ``/metrics`` on
the vendor's own port is not rate limited (it is an operator's route). Two Prometheus servers
scraping, a dashboard refreshing, or anyone sending a few requests a second kept a large
vendor reading its store instead of answering customers. Now the store's gauges are read at
most once per 5 s (and no sooner than ten times the last read's duration); scrapes meanwhile,
and scrapes at once, are answered from the last read. (A ``[metrics] port`` of its own, the
operator's, reads at every scrape as before.)
"""

from __future__ import annotations

import asyncio

import aiohttp
from _broken_vendor import make_endpoint
from prometheus_client.parser import text_string_to_metric_families

from vrmproto.server import serve
from vrmproto.server._metrics import STORE_READ_MIN_S, Metrics
from vrmproto.store import Commit, MemoryStore
from vrmproto.store._base import StoreCounts
from vrmproto.testing.store_contract import T1, T2, rel


class CountingStore(MemoryStore):
    """A MemoryStore that counts how often the relationships are counted (session 17: the
    store counts them, :meth:`~vrmproto.store.Store.counts`, where a scrape read every one)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def counts(self) -> StoreCounts:
        self.reads += 1
        await asyncio.sleep(0)  # a read takes a while: scrapes arriving meanwhile wait for it
        return await super().counts()


def agreed(text: str) -> float:
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "vrm_relationships" and s.labels == {"state": "agreed"})  # fmt: skip


async def test_scrapes_share_one_read_of_the_store_every_few_seconds() -> None:
    store = CountingStore()
    await store.commit(Commit(relationships=(rel(T1, state="agreed"),)))
    now = [1000.0]
    metrics = Metrics(clock=lambda: now[0])
    server = await serve(make_endpoint(store), metrics=metrics)
    try:
        async with aiohttp.ClientSession() as http:

            async def scrape() -> str:
                async with http.get(f"{server.url}/metrics") as r:
                    assert r.status == 200
                    return await r.text()

            texts = await asyncio.gather(*(scrape() for _ in range(20)))
            assert store.reads == 1  # before: 20, one per scrape
            assert {agreed(t) for t in texts} == {1}
            await store.commit(Commit(relationships=(rel(T2, state="agreed"),)))
            assert agreed(await scrape()) == 1  # the last read's values, no read
            assert store.reads == 1
            now[0] += STORE_READ_MIN_S
            assert agreed(await scrape()) == 2  # read again, once it is old enough
            assert store.reads == 2
    finally:
        await server.close()
