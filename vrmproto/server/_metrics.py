"""Prometheus metrics of a running vendor (``GET /metrics``, off unless asked for).

The families, each on its own registry so two endpoints in one process never mix:

- ``vrm_requests_total{route, type, status}`` and ``vrm_request_seconds{route}`` (histogram):
  every discovery, inbox and history request, by claimed message type and HTTP status (a
  type the protocol does not define counts as ``other``: a sender chooses what it claims, so
  its claims must not add series without bound);
- ``vrm_problems_total{code}``: the refusals we answered, by problem code (§9);
- ``vrm_store_commit_seconds`` and ``vrm_store_commit_records`` (histograms): how long a store
  commit takes to become durable, and how many records one commit writes;
- ``vrm_relationships{state}``: relationships held, by state (counted by the store at a scrape,
  :meth:`~vrmproto.store.Store.counts`: in the database, off the event loop;
  on the vendor's own port at most every 5 s, :data:`STORE_READ_MIN_S`);
- ``vrm_outbox_depth``: messages waiting in the store's outbox, signed or queued as drafts
  behind one in flight — what ``vrm outbox`` lists (the agent's; a vendor's is 0);
- ``vrm_feed_head``: the newest event's position in the vendor's feed (docs/events.md), and per
  ``[[webhooks]]`` receiver ``vrm_webhook_behind{webhook}`` (events after its cursor: not yet
  delivered or set aside — a number that keeps growing is a receiver down, or one event it
  fails holding the feed back), ``vrm_webhook_dead_letters{webhook}`` (set aside, waiting
  for ``vrm vendor events --replay``), ``vrm_webhook_failing{webhook}`` (events being retried
  now) and ``vrm_webhook_paused{webhook}`` (1 once the receiver answered 410 Gone: nothing is
  delivered to it until the server starts again; docs/events.md). Read from the store (as the
  relationships), so any worker's ``/metrics`` tells the one deliverer's progress;
- ``vrm_log_records_dropped_total``: log records this process dropped because its log stream
  was not reading (``[logging] queue_size`` of them were waiting; :mod:`._logwriter`).

A customer's agent (``vrm agent serve --metrics-port``) exposes the store's families — its
relationships by state and its outbox depth — on a listener of their own (:func:`metrics_site`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from vrmproto._messages import MESSAGE_TYPES
from vrmproto.server._logwriter import dropped_records
from vrmproto.server._webhooks import shown
from vrmproto.store import Commit, RelationshipRecord, Store

if TYPE_CHECKING:
    from vrmproto.server._warm import ExpectingStore

__all__ = ["MeteredStore", "Metrics", "metrics_handler", "metrics_site"]

Handler = Callable[[web.Request], Awaitable[web.Response]]
_RECORD_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: A scrape reads the store's gauges again only this long after the last read ended, and no
#: sooner than ten times that read's duration: ``/metrics`` on the vendor's own port is not
#: rate limited, and even counted in the database (:meth:`Store.counts`) a read scans every
#: relationship, so a flood of scrapes would otherwise keep the store reading. Scrapes in
#: between answer with the values read last; scrapes at once share one read.
STORE_READ_MIN_S = 5.0
STORE_READ_FACTOR = 10.0


class _LogDrops(Collector):
    """``vrm_log_records_dropped_total``: read from the log writer per scrape."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("vrm_log_records_dropped", "Log records dropped because the "
                                  "log stream was not reading.", value=dropped_records())


class Metrics:
    """The metric families of one endpoint, on a registry of their own."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._next_read = -float("inf")  # when a scrape reads the store again (clock's time)
        self._reading = asyncio.Lock()
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("vrm_requests", "Requests answered, by route, claimed message "
                                "type and HTTP status.", ["route", "type", "status"],
                                registry=r)  # fmt: skip
        self.latency = Histogram("vrm_request_seconds", "Time to answer a request.", ["route"],
                                 registry=r)  # fmt: skip
        self.problems = Counter("vrm_problems", "Problems answered, by problem code (§9).",
                                ["code"], registry=r)  # fmt: skip
        self.commit_seconds = Histogram("vrm_store_commit_seconds",
                                        "Time for a store commit to become durable.",
                                        registry=r)  # fmt: skip
        self.commit_records = Histogram("vrm_store_commit_records",
                                        "Records written by one store commit.",
                                        buckets=_RECORD_BUCKETS, registry=r)  # fmt: skip
        self.relationships = Gauge("vrm_relationships", "Relationships held, by state.",
                                   ["state"], registry=r)  # fmt: skip
        self.outbox_depth = Gauge("vrm_outbox_depth", "Messages waiting in the outbox.",
                                  registry=r)  # fmt: skip
        #: The webhooks whose progress the feed gauges tell (by name), set by the runner.
        self.webhooks: tuple[str, ...] = ()
        self.feed_head = Gauge("vrm_feed_head", "The newest event's position in the feed.",
                               registry=r)  # fmt: skip
        self.webhook_behind = Gauge("vrm_webhook_behind", "Events after a webhook's cursor: "
                                    "not yet delivered or set aside.", ["webhook"],
                                    registry=r)  # fmt: skip
        self.webhook_dead = Gauge("vrm_webhook_dead_letters", "Events set aside as dead "
                                  "letters, waiting for a replay.", ["webhook"],
                                  registry=r)  # fmt: skip
        self.webhook_failing = Gauge("vrm_webhook_failing", "Events being retried.",
                                     ["webhook"], registry=r)  # fmt: skip
        self.webhook_paused = Gauge("vrm_webhook_paused", "1 if the receiver answered 410 "
                                    "Gone: delivery to it is paused until the server starts "
                                    "again.", ["webhook"], registry=r)  # fmt: skip
        r.register(_LogDrops())

    def observe(self, route: str, kind: str | None, status: int, seconds: float,
                problem: str | None) -> None:  # fmt: skip
        label = "" if not kind else kind if kind in MESSAGE_TYPES else "other"
        self.requests.labels(route, label, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if problem is not None:
            self.problems.labels(problem).inc()

    async def scrape(self, store: Store, *, every_s: float = STORE_READ_MIN_S,
                     factor: float = STORE_READ_FACTOR) -> bytes:  # fmt: skip
        """The text of a scrape: the store's gauges read again (:meth:`refresh`) when the last
        read ended at least ``every_s`` ago, and ``factor`` times its duration."""
        if self.clock() >= self._next_read:
            async with self._reading:  # the scrapes that came meanwhile: one read for all
                if self.clock() >= self._next_read:
                    started = self.clock()
                    await self.refresh(store)
                    ended = self.clock()
                    self._next_read = ended + max(every_s, factor * (ended - started))
        return self.text()

    async def refresh(self, store: Store) -> None:
        """Read the gauges that live in the store: relationships by state, outbox depth, the
        feed's head and each webhook's progress. Counted by the store (:meth:`Store.counts`:
        ``GROUP BY`` in the database, off the event loop), never by reading every record."""
        counts = await store.counts()
        self.relationships.clear()
        for state, n in counts.relationships.items():
            self.relationships.labels(state).set(n)
        # what `vrm outbox` lists: signed messages and the drafts queued behind them
        self.outbox_depth.set(counts.outbox + counts.drafts)
        if self.webhooks:
            head = await store.feed_head()
            self.feed_head.set(head)
            for name in self.webhooks:  # labelled without the password a url may hold
                label = shown(name)
                self.webhook_behind.labels(label).set(head - await store.event_cursor(name))
                self.webhook_dead.labels(label).set(counts.dead_letters.get(name, 0))
                self.webhook_failing.labels(label).set(counts.failing.get(name, 0))
                self.webhook_paused.labels(label).set(1 if counts.gone.get(name) else 0)

    def text(self) -> bytes:
        return generate_latest(self.registry)


def metrics_handler(metrics: Metrics, store: Store, *, every_s: float = STORE_READ_MIN_S,
                    factor: float = STORE_READ_FACTOR) -> Handler:  # fmt: skip
    """``GET /metrics``: the Prometheus text format, the store read as :meth:`Metrics.scrape`
    says (0 and 0: at every scrape)."""

    async def handle(request: web.Request) -> web.Response:
        out = web.Response(body=await metrics.scrape(store, every_s=every_s, factor=factor))
        out.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return out

    return handle


@contextlib.asynccontextmanager
async def metrics_site(metrics: Metrics, store: Store, host: str, port: int
                       ) -> AsyncIterator[str]:  # fmt: skip
    """A listener of its own serving only ``GET /metrics`` on ``host:port`` (0: any free
    port) while the context lasts; yields its URL. The operator's own port: the store is read
    at every scrape (as on the vendor's port it is at most every :data:`STORE_READ_MIN_S`)."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(metrics, store, every_s=0, factor=0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0][1]
        yield f"http://{f'[{host}]' if ':' in host else host}:{bound}/metrics"
    finally:
        await runner.cleanup()


def _records(c: Commit) -> int:
    return (len(c.relationships) + len(c.history) + len(c.dedupe) + len(c.outbox_add)
            + len(c.outbox_done) + len(c.erase) + len(c.meta) + len(c.truncate) + len(c.drop)
            + len(c.unset))  # fmt: skip


class MeteredStore:
    """A store that times its commits into ``metrics``; everything else passes through,
    ``expect=`` included (see ``vrmproto/server/_warm.py``): a vendor with metrics on keeps the
    warm relationships of the store it wraps."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    @property
    def inner(self) -> Store:
        """The store it wraps."""
        return self._store

    @classmethod
    def wrap(cls, store: Store, metrics: Metrics) -> Store:
        return cast(Store, cls(store, metrics))

    async def commit(self, c: Commit, *, expect: RelationshipRecord | None = None) -> None:
        """``c`` committed by the wrapped store, timed. ``expect`` is passed on; it is given
        only when the wrapped store takes it (``_warm.checks_expect``)."""
        started = time.perf_counter()
        if expect is None:
            await self._store.commit(c)
        else:
            await cast("ExpectingStore", self._store).commit(c, expect=expect)
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        self._metrics.commit_records.observe(_records(c))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
