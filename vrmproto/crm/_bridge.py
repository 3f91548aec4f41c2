"""The pump between the vendor's event feed and a Tryton database (issue 14, docs/events.md).

It reads the feed in-process, after the cursor the Tryton database itself keeps (the highest
``pos`` applied, written in the same Tryton transaction as the records), and applies each event
on one worker thread: Tryton is blocking, and its transactions belong to a thread. Events come
at least once; applying one twice changes nothing, so a crash anywhere costs no event and makes
no duplicate.

Retention (docs/events.md, "Retention"): the vendor's feed is trimmed of what every consumer
has had. Reading the feed through :func:`~vrmproto.server._events.follow` (``endpoint.events``,
``vrm vendor tryton``), the bridge records its position in the vendor's store as the cursor
``tryton:<database>`` (at start, at most every :data:`RECORD_S` while it applies events, and
when it stops), so that the feed keeps every event it has not applied — unless older than
``[feed] max_days``: then it stops with :class:`FeedRewound` saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from vrmproto._errors import VrmError
from vrmproto.crm._tryton import TrytonCRM
from vrmproto.server._events import Feed, FeedEvent, FeedTrimmed, wall_ms
from vrmproto.server._retention import BRIDGE_PREFIX
from vrmproto.store import Commit, Store

__all__ = ["FeedRewound", "TrytonBridge"]

log = logging.getLogger("vrmproto.crm.bridge")

P = ParamSpec("P")
T = TypeVar("T")

#: How often a running bridge deletes the fields of expired shares when no event comes (§5.3.1-4).
SWEEP_S = 60.0
#: While applying events, the bridge records its position in the vendor's store at most this
#: often (and when it stops): a cursor behind by that much only keeps a few events longer.
RECORD_S = 5.0


class FeedRewound(VrmError):  # noqa: N818 -- what happened, as the operator reads it
    """The feed no longer holds, at the bridge's cursor, the event Tryton applied there: the
    vendor's store was restored from a backup (or is another vendor's), and its new events take
    positions the bridge has passed. Following on would skip them; :meth:`TrytonBridge.run`
    with ``after=0`` goes through the whole feed again (what Tryton holds already is
    recognised by its id and skipped)."""

    def __init__(self, pos: int, applied: str, found: str | None, *,
                 trimmed: FeedTrimmed | None = None) -> None:  # fmt: skip
        here = f"holds {found}" if found is not None else "ends before it"
        if trimmed is not None:
            super().__init__(f"the vendor's feed was trimmed up to position {trimmed.floor}, "
                             f"past Tryton's cursor ({pos}): those events were older than "
                             "[feed] max_days and Tryton will not get them. Go on from the "
                             "oldest event the feed keeps (vrm vendor tryton --resync): what "
                             "Tryton holds is skipped, the rest applied.")  # fmt: skip
        else:
            super().__init__(f"Tryton applied {applied} at feed position {pos}, but the feed "
                             f"{here}: was the vendor's store restored from a backup? Resume "
                             "from the start of the feed (vrm vendor tryton --resync): what "
                             "Tryton holds is skipped, the rest applied.")  # fmt: skip
        self.pos = pos


class TrytonBridge:
    """Keeps a Tryton database in step with a vendor's feed.

    In the vendor's process, beside its :class:`~vrmproto.server.Endpoint`::

        bridge = await TrytonBridge.open("crm", path=Path("/var/lib/tryton"))
        await bridge.run(endpoint.events)       # until cancelled

    In a process of its own, on the vendor's store (events other processes commit are picked
    up at once on PostgreSQL, by its notifications, and within a second on SQLite)::

        await bridge.run(lambda after: follow(store, Wakeup().watch(store), after))

    From webhooks: ``await bridge.apply(cloudevent["data"])`` for each verified delivery.
    """

    def __init__(self, crm: TrytonCRM, executor: ThreadPoolExecutor,
                 clock: Callable[[], int] = wall_ms) -> None:  # fmt: skip
        self.crm = crm
        self.clock = clock
        self.position = 0  # the pos of the last event applied
        self._executor = executor
        self._moved = asyncio.Condition()
        # whether Tryton may hold fields under LEGACY (forget_unheld reads them): once a run
        # found none, only an address.updated event without field_shares can make one
        self._legacy = True

    @classmethod
    async def open(cls, name: str, *, uri: str = "sqlite://", path: Path | None = None,
                   company: int | None = None, clock: Callable[[], int] = wall_ms,
                   ) -> TrytonBridge:  # fmt: skip
        """Open Tryton database ``name`` (see :meth:`TrytonCRM.open`)."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="vrm-tryton")
        loop = asyncio.get_running_loop()
        crm = await loop.run_in_executor(
            executor, lambda: TrytonCRM.open(name, uri=uri, path=path, company=company)
        )
        bridge = cls(crm, executor, clock)
        bridge.position = await bridge._call(crm.cursor)
        return bridge

    @classmethod
    async def create(cls, name: str, *, uri: str = "sqlite://", path: Path | None = None,
                     company: str = "Vendor", currency: str = "USD",
                     clock: Callable[[], int] = wall_ms) -> TrytonBridge:  # fmt: skip
        """Create Tryton database ``name`` with the modules and a company, and open it (see
        :meth:`TrytonCRM.create`)."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="vrm-tryton")
        loop = asyncio.get_running_loop()
        crm = await loop.run_in_executor(executor, lambda: TrytonCRM.create(
            name, uri=uri, path=path, company=company, currency=currency))  # fmt: skip
        return cls(crm, executor, clock)

    async def close(self) -> None:
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> TrytonBridge:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def cursor(self) -> int:
        """The ``pos`` of the last event the Tryton database holds."""
        return await self._call(self.crm.cursor)

    async def applied_at(self, pos: int) -> str | None:
        """The id of the event Tryton applied at feed position ``pos``, or None."""
        return await self._call(self.crm.applied_at, pos)

    async def apply(self, event: FeedEvent | Mapping[str, Any]) -> bool:
        """Apply one event (a feed event, or its JSON); False if it was applied before."""
        data = event.as_json() if isinstance(event, FeedEvent) else event
        personal = data.get("personal")
        if (data.get("kind") == "address.updated" and isinstance(personal, Mapping)
                and "field_shares" not in personal):  # fmt: skip
            self._legacy = True  # an update of a vendor before session 19: may make one
        now = self.clock()
        applied = await self._call(self.crm.apply, data, now)
        await self._call(self.crm.expire, now)
        async with self._moved:
            self.position = max(self.position, int(data["pos"]))
            self._moved.notify_all()
        return applied

    async def run(
        self,
        events: Callable[[int], AsyncIterator[FeedEvent]],
        *,
        after: int | None = None,
        sweep_s: float = SWEEP_S,
        report: Callable[[FeedEvent, bool], None] | None = None,
    ) -> None:
        """Apply every event after the database's cursor (or ``after``), then each new one as
        ``events`` (``endpoint.events``, or a ``follow`` of the store) yields it; until
        cancelled or the feed ends. ``report`` hears of each event and whether it changed
        Tryton. From the cursor, the feed is read from the event at it, which must be the one
        applied there: else :class:`FeedRewound` (positions are the store's, and a store
        restored from a backup gives its new events positions the bridge has passed); at once
        when the feed's newest event is before the cursor (retention never trims the newest
        one, so such a feed is not the one applied: a follower would wait for ever)."""
        await self.expire()
        start = await self.cursor() if after is None else after
        applied_there = await self.applied_at(start) if after is None else None
        checked = applied_there is None
        feed = events(start - 1 if not checked else start)
        store = feed.store if isinstance(feed, Feed) else None
        sweeper = asyncio.create_task(self._sweep(sweep_s, store))
        recorded = time.monotonic()
        try:
            if store is not None:  # the feed keeps what this bridge has not applied
                await self.forget_unheld(store)
                if after == 0:  # a full resync: what this feed never held goes before it
                    await self._call(self.crm.set_aside, await store.feed_head())
                    async with self._moved:
                        self.position = 0
                if not checked and (floor := await store.feed_floor()) >= start:
                    raise FeedTrimmed(start - 1, floor)  # the event at its cursor is gone
                if not checked and await store.feed_head() < start:  # never trimmed: another
                    raise FeedRewound(start, str(applied_there), None)  # feed (a backup's)
                await self._record(store)
            async for event in feed:
                if not checked:
                    if event.pos != start or event.id != applied_there:
                        raise FeedRewound(start, str(applied_there),
                                          event.id if event.pos == start else None)  # fmt: skip
                    checked = True
                    continue
                if after == 0 and store is not None and event.personal:
                    await self._behind(store, event)
                applied = await self.apply(event)
                if report is not None:
                    report(event, applied)
                if store is not None and time.monotonic() - recorded >= RECORD_S:
                    await self._record(store)
                    recorded = time.monotonic()
            if not checked:  # the feed ended before the bridge's cursor
                raise FeedRewound(start, str(applied_there), None)
        except FeedTrimmed as exc:
            raise FeedRewound(start, str(applied_there), None, trimmed=exc) from None
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if store is not None:
                with contextlib.suppress(Exception):  # stopping: the next start records it
                    await self._record(store)

    async def _behind(self, store: Store, event: FeedEvent) -> None:
        """Before a resync applies ``event``: the events later in the feed that hold its
        fields' values (which keep it from replacing them, as a late event) must be this
        feed's. One that is not where Tryton recorded it was lost with a store restored from a
        backup: it is set aside, older than the whole feed, and ``event`` replaces its value."""
        names = list((event.personal or {}).get("fields", {}))
        for source, pos in await self._call(self.crm.later_sources, event.thread.hex(), names,
                                            event.pos):  # fmt: skip
            found = await store.events(pos - 1, 1)
            if not found or found[0].pos != pos or found[0].id != source:
                await self._call(self.crm.set_aside_event, source)

    @property
    def cursor_name(self) -> str:
        """The bridge's cursor in the vendor's store: ``tryton:<database>``."""
        return BRIDGE_PREFIX + self.crm.name

    async def _record(self, store: Store) -> None:
        """Record the position in the vendor's store (retention keeps what is after it)."""
        await store.commit(Commit(event_cursors=((self.cursor_name, self.position),)))

    async def reached(self, pos: int) -> None:
        """Wait until the event at ``pos`` (and every one before it) is applied."""
        async with self._moved:
            await self._moved.wait_for(lambda: self.position >= pos)

    async def expire(self) -> int:
        """Delete the fields of shares expired by now (§5.3.1-4); how many."""
        return await self._call(self.crm.expire, self.clock())

    async def forget_unheld(self, store: Store) -> int:
        """Delete the fields held under :data:`~vrmproto.crm._tryton.LEGACY` that the vendor
        (``store``) no longer holds, or holds only past their expiry; how many.

        Such a row (in a ``vrmproto_crm_field`` made before its ``share`` column) holds a value
        an address update gave, under a share this database never recorded, so neither its
        withdrawal's positional rule nor the expiry sweep can tell when it goes
        (docs/events.md). The vendor's ``held`` rows can: when the share that value was held
        under expires (§5.3.1-4, §5.3.6-2) or is withdrawn (§12.10-2), the vendor deletes the
        field, and so does this. A field the vendor holds from an event not applied here yet
        stays until that event replaces it."""
        if not self._legacy:
            return 0
        legacy = await self._call(self.crm.legacy)
        self._legacy = bool(legacy)  # none left: not read again unless an event makes one
        now = self.clock()
        forgotten = 0
        for rel, names in legacy.items():
            try:
                thread = bytes.fromhex(rel)
            except ValueError:  # not a relationship of a vendor's feed
                continue
            held = {h.field for h in await store.held(thread)
                    if h.expires_ms is None or h.expires_ms > now}  # fmt: skip
            gone = [name for name in names if name not in held]
            if gone:
                forgotten += await self._call(self.crm.forget_legacy, rel, gone)
        return forgotten

    async def _sweep(self, every_s: float, store: Store | None) -> None:
        """Every ``every_s``: delete the fields of shares expired by now (§5.3.1-4) and, with
        ``store``, those the vendor no longer holds. A sweep that fails (Tryton's database
        locked a moment, the vendor's store restarting) is logged, and the next one runs: one
        failure does not leave expired fields in the CRM until the next event comes."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.expire()
                if store is not None:
                    await self.forget_unheld(store)
            except Exception:
                log.exception("Tryton %s: the sweep of expired shares failed; the next one "
                              "runs in %.0f s", self.crm.name, every_s)  # fmt: skip
