"""``/metrics`` counts in the store, not in the process (session 17, review of session 16).

A scrape read every relationship (and the whole outbox, every draft and every dead letter) into
the process to count them — on SQLite, the relationships on the event loop's own thread: at
100,000 relationships that held the loop for most of a second per scrape. Now the store counts
(:meth:`~vrmproto.store.Store.counts`: ``GROUP BY`` in SQLite on a reader thread, in
PostgreSQL, from the dictionaries in memory), and metrics read only that. The figures are the
same on the three stores, and the same as counting the records.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any, cast

import _postgres
import pytest
from prometheus_client.parser import text_string_to_metric_families

from vrmproto.server._metrics import Metrics
from vrmproto.store import Commit, DeadLetter, SQLiteStore, Store
from vrmproto.store._base import FailingEvent, StoreCounts
from vrmproto.testing.store_contract import draft, event, outbox, rel

postgres_cluster = _postgres.postgres_cluster

STATES = ("offered", "agreed", "agreed", "ended", "agreed", "refused", "offered")


def thread(n: int) -> bytes:
    return n.to_bytes(16, "big")


async def fill(store: Store) -> None:
    """Relationships in four states, outbox items, drafts, events and dead letters of two
    webhooks."""
    rels = tuple(rel(thread(n), state=STATES[n % len(STATES)]) for n in range(40))
    await store.commit(Commit(relationships=rels))
    await store.commit(Commit(outbox_add=tuple(outbox("https://v.example", n, thread(n))
                                               for n in range(5))))  # fmt: skip
    await store.commit(Commit(drafts_add=(draft(thread(1), 0), draft(thread(1), 1),
                                          draft(thread(2), 0))))  # fmt: skip
    await store.commit(Commit(events=tuple(event(thread(n), 0) for n in range(6))))
    dead = [DeadLetter("crm", p, 1, "HTTP 500") for p in (1, 2, 3)]
    dead.append(DeadLetter("mail", 4, 1, "HTTP 503"))
    await store.commit(Commit(dead_letters=tuple(dead)))
    await store.commit(Commit(failing=(FailingEvent("crm", 5, 1, 2, "HTTP 500"),
                                       FailingEvent("crm", 6, 1, 1, "HTTP 410", gone=True),
                                       FailingEvent("mail", 5, 1, 3, "HTTP 503"))))  # fmt: skip


async def counted_by_reading(store: Store) -> StoreCounts:
    """The figures the way metrics used to get them: every record read and counted here."""
    return StoreCounts(
        dict(Counter(r.state for r in await store.relationships(with_data=False))),
        len(await store.outbox_all()), len(await store.drafts()),
        dict(Counter(d.name for d in await store.dead_letters())),
        dict(Counter(f.name for f in await store.failing())),
        dict(Counter(f.name for f in await store.failing() if f.gone)),
    )  # fmt: skip


class NoWholeReads:
    """A store whose reads of every record fail the test; everything else passes through."""

    WHOLE = frozenset({"relationships", "outbox_all", "drafts", "dead_letters",
                       "find_relationship", "threads", "failing"})  # fmt: skip

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name in self.WHOLE:
            raise AssertionError(f"metrics read every record: store.{name}()")
        self.calls.append(name)
        return getattr(self._store, name)


def gauges(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples
            if s.name.startswith(("vrm_relationships", "vrm_outbox", "vrm_webhook",
                                  "vrm_feed"))}  # fmt: skip


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
async def test_the_store_counts_and_metrics_read_no_record(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    """The same figures on the three stores, the same as reading and counting every record;
    a refresh of the metrics calls the store's count and point reads, never a whole read."""
    async with _postgres.opened_store(request, tmp_path, kind) as store:
        await fill(store)
        counts = await store.counts()
        assert counts == await counted_by_reading(store)
        assert counts == StoreCounts({"offered": 11, "agreed": 18, "ended": 6, "refused": 5},
                                     5, 3, {"crm": 3, "mail": 1}, {"crm": 2, "mail": 1},
                                     {"crm": 1})  # fmt: skip
        metrics = Metrics()
        metrics.webhooks = ("crm", "mail", "erp")
        spy = NoWholeReads(store)
        await metrics.refresh(cast(Store, spy))
        assert sorted(set(spy.calls)) == ["counts", "event_cursor", "feed_head"]
        assert spy.calls.count("counts") == 1
        got = gauges(metrics.text())
        assert got[("vrm_relationships", (("state", "agreed"),))] == 18
        assert got[("vrm_relationships", (("state", "refused"),))] == 5
        assert got[("vrm_outbox_depth", ())] == 8
        assert got[("vrm_feed_head", ())] == 6
        assert got[("vrm_webhook_dead_letters", (("webhook", "crm"),))] == 3
        assert got[("vrm_webhook_dead_letters", (("webhook", "erp"),))] == 0
        assert got[("vrm_webhook_behind", (("webhook", "mail"),))] == 6
        assert got[("vrm_webhook_failing", (("webhook", "crm"),))] == 2
        assert got[("vrm_webhook_paused", (("webhook", "crm"),))] == 1
        assert got[("vrm_webhook_paused", (("webhook", "mail"),))] == 0


async def test_an_empty_store_counts_nothing(request: pytest.FixtureRequest,
                                             tmp_path: Path) -> None:  # fmt: skip
    async with _postgres.opened_store(request, tmp_path, "sqlite") as store:
        assert await store.counts() == StoreCounts({}, 0, 0, {}, {}, {})


async def test_sqlite_counts_on_a_reader_thread_not_the_loops(tmp_path: Path) -> None:
    """SQLite's point reads run on the calling thread (the event loop's); the count scans
    every relationship, so it runs on the reader pool like the store's other heavy reads."""
    store = await SQLiteStore.open(tmp_path / "v.db")
    try:
        await fill(store)
        loop_thread = threading.get_ident()
        ran_on: list[int] = []
        here = store._point_now
        pooled = store._with_reader

        def point_now(sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
            ran_on.append(threading.get_ident())
            return here(sql, params)

        def with_reader(read: Any) -> Any:
            ran_on.append(threading.get_ident())
            return pooled(read)

        store._point_now = point_now  # type: ignore[method-assign]
        store._with_reader = with_reader  # type: ignore[method-assign]
        await Metrics().refresh(store)
        assert ran_on
        assert loop_thread not in ran_on
    finally:
        await store.close()
