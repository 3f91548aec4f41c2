"""Trimming the event feed (docs/events.md, "Retention"): what :meth:`Store.trim_events` deletes,
the same rule on every store.

The feed is trimmed from its oldest end, a prefix at a time: the events after the last one
trimmed (the store's *floor*, :meth:`~vrmproto.store.Store.feed_floor`), in ``pos`` order, up to
``upto`` and while each was recorded before ``recorded_before`` — the first one that is younger
ends the prefix, so the floor says exactly which positions are gone, whatever order the clocks of
several writers gave. The positions in ``keep`` (dead letters waiting for a replay) stay, below
the floor; a later call deletes those of them no longer kept (replayed, or now older than the
hard maximum) by the same age and ``upto``. The newest event always stays: SQLite numbers the
next one after the newest kept (``max(pos) + 1``, :mod:`vrmproto.store._migrate_v8`) and
PostgreSQL's ``feed_head`` is the newest's ``pos``, so without it positions would be handed
out again. A call looks at
:data:`TRIM_BATCH` events at most: one short write transaction (on SQLite the writer's, which
the customers' commits wait for), called again while the floor moves.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["FLOOR_KEY", "TRIM_BATCH", "floor_value", "trim_plan"]

#: Events a call of ``trim_events`` looks at, at most.
TRIM_BATCH = 2_000
#: The ``meta`` key holding the floor (ASCII digits): a store-level setting of the feed.
FLOOR_KEY = "feed.trimmed"


def floor_value(stored: bytes | None) -> int:
    return 0 if stored is None else int(stored.decode("ascii"))


def trim_plan(rows: Sequence[tuple[int, int]], below: Sequence[tuple[int, int]], *, floor: int,
              upto: int, head: int, recorded_before: int,
              keep: Collection[int]) -> tuple[int, list[int]] | None:  # fmt: skip
    """Of ``rows`` (``(pos, recorded_ms)`` after the ``floor``, by pos) and ``below`` (those
    still at or below it, kept before): the new floor and the positions to delete, or None if
    nothing changes (see the module)."""
    kept = set(keep)
    doomed = [pos for pos, recorded in below
              if pos <= upto and recorded < recorded_before and pos not in kept]  # fmt: skip
    last = floor
    for pos, recorded in rows:
        if pos > upto or pos >= head or recorded >= recorded_before:
            break
        last = pos
    doomed += [pos for pos, _ in rows if pos <= last and pos not in kept]
    if last == floor and not doomed:
        return None
    return last, doomed
