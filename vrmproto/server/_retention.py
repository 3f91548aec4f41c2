"""Retention of the vendor's event feed (docs/events.md, "Retention"; ``[feed]`` in the vendor
file): the feed is trimmed from its oldest end, so that it does not grow without bound, and
never of an event a consumer still needs — unless that event is older than a hard maximum.

An event may go once

- it is older than ``keep_s`` (30 days by default), and
- every consumer has passed it: each ``[[webhooks]]`` receiver (its cursor; and the events it
  set aside as dead letters stay until they are replayed), each name in ``[feed] consumers``
  (an in-process consumer's cursor, ``Commit(event_cursors=…)``), and each Tryton bridge (its
  cursor ``tryton:<database>``, which :class:`~vrmproto.crm.tryton.TrytonBridge` records in the
  vendor's store as it goes). The event AT a cursor is kept too: the bridge reads it again to
  check that the feed is the one it applied.

Or once it is older than ``max_s`` (365 days by default; None: never), whoever has not had it:
a receiver down for a year, or a bridge no longer run, does not keep the feed for ever. A
consumer whose cursor falls below what was trimmed is told, never skipped silently: a webhook
logs an error naming the events it lost and goes on from the oldest event kept; a reader of
:func:`~vrmproto.server._events.follow` (``vrm vendor events``, the Tryton bridge) gets
:class:`~vrmproto.server._events.FeedTrimmed`. The newest event is always kept (positions are
never handed out again, :mod:`vrmproto.store._trim`).

One process trims (the one that delivers the webhooks), at start and every ``every_s``, in
steps of :data:`~vrmproto.store._trim.TRIM_BATCH` events, each one short transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from vrmproto.store import Store

__all__ = ["BRIDGE_PREFIX", "DAY_S", "Retention", "trim_feed", "trimming"]

log = logging.getLogger("vrmproto.server.feed")

DAY_S = 86_400.0
#: The cursors of Tryton bridges: ``tryton:<database>`` (:mod:`vrmproto.crm._bridge`).
BRIDGE_PREFIX = "tryton:"


@dataclass(frozen=True, slots=True)
class Retention:
    """How long the feed keeps its events (see the module)."""

    keep_s: float = 30 * DAY_S  # kept at least this long, and until every consumer passed it
    max_s: float | None = 365 * DAY_S  # trimmed past this age whoever has not had it (None: never)
    every_s: float = 3_600.0  # how often the feed is trimmed (and once at start)
    consumers: tuple[str, ...] = ()  # cursors kept for besides the webhooks' and the bridges'

    def __post_init__(self) -> None:
        if self.keep_s < 0 or self.every_s <= 0:
            raise ValueError("keep_s must be at least 0 and every_s above 0")
        if self.max_s is not None and self.max_s < self.keep_s:
            raise ValueError("max_s (the hard maximum) must be at least keep_s")


async def _until_still(store: Store, step: Callable[[], Awaitable[int]]) -> int:
    """Run the trimming ``step`` until the floor stops moving; how many events it deleted."""
    deleted = 0
    floor = await store.feed_floor()
    while True:
        deleted += await step()
        moved = await store.feed_floor()
        if moved == floor:
            return deleted
        floor = moved


async def trim_feed(store: Store, retention: Retention, webhooks: Sequence[str],
                    now_ms: int) -> int:  # fmt: skip
    """One pass of trimming at ``now_ms`` for the webhooks named ``webhooks`` (and the
    consumers ``retention`` names, and every Tryton bridge's cursor); how many events went."""
    cursors = await store.event_cursors()
    names = {*webhooks, *retention.consumers,
             *(name for name in cursors if name.startswith(BRIDGE_PREFIX))}  # fmt: skip
    head = await store.feed_head()
    if not head:
        return 0
    # the event at each cursor stays (the bridge reads it again), and every one after it
    upto = min((cursors.get(name, 0) for name in names), default=head) - 1
    dead = frozenset(d.pos for d in await store.dead_letters() if d.name in names)
    keep_before = now_ms - int(retention.keep_s * 1000)
    deleted = await _until_still(store, lambda: store.trim_events(
        upto, recorded_before=keep_before, keep=dead))  # fmt: skip
    if retention.max_s is not None:
        floor = await store.feed_floor()
        max_before = now_ms - int(retention.max_s * 1000)
        forced = await _until_still(store, lambda: store.trim_events(
            head, recorded_before=max_before))  # fmt: skip
        deleted += forced
        trimmed = await store.feed_floor()
        behind = sorted(name for name in names if cursors.get(name, 0) < trimmed)
        if forced and trimmed > floor and behind:
            log.warning("feed: %d event(s) older than [feed] max_days trimmed (up to position "
                        "%d) though %s had not had them all: they will not get them",
                        forced, trimmed, ", ".join(_shown(n) for n in behind))  # fmt: skip
    if deleted:
        log.info("feed: %d event(s) trimmed, up to position %d", deleted,
                 await store.feed_floor())  # fmt: skip
    return deleted


def _shown(name: str) -> str:
    from vrmproto.server._webhooks import shown  # noqa: PLC0415 -- it imports this module

    return shown(name)


async def trimming(store: Store, retention: Retention, webhooks: Sequence[str],
                   clock: Callable[[], int]) -> None:  # fmt: skip
    """Trim the feed at once and every ``retention.every_s`` until cancelled (``clock``:
    wall-clock ms). A pass that fails is logged and tried again at the next."""
    while True:
        try:
            await trim_feed(store, retention, webhooks, clock())
        except Exception:
            log.exception("feed: trimming failed; trying again in %.0f s", retention.every_s)
        await asyncio.sleep(retention.every_s)
