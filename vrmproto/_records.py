"""Between the relationship engine and the store's records: the layer both nodes share (sans-IO).

A node keeps a relationship as a :class:`~vrmproto.store.RelationshipRecord` (the engine's
``to_state()`` plus indexed columns) and its history as
:class:`~vrmproto.store.HistoryEntry` rows. This module maps one to the other, in both
directions, so that the vendor's endpoint and the customer's agent load and store a
relationship the same way:

- :func:`load` — a :class:`~vrmproto.Relationship` from its record and its newest history row
  (the history is resumed, not read whole: §8.2 chains each entry to the one before).
- :func:`to_record` and :func:`history_rows` — what to put in the step's
  :class:`~vrmproto.store.Commit`; :func:`to_entry` and :func:`to_row` map single entries.
- :func:`capture`, :func:`guard`, :func:`restore`, :func:`still_applies` — the save point a
  node keeps before a message of its own, to return to if the peer finally refuses it
  (§8.1-5): one typed record, :class:`~vrmproto.store.SavePoint`, on both sides.
- :func:`held_row`, :func:`data_record`, :func:`is_live` — a vendor's held customer data
  (§12.10) between the ``vrm-data/1`` :class:`~vrmproto.DataRecord` and its store row.

No I/O, clock or randomness here: time comes in as ``now`` (milliseconds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vrmproto._history import Entry, History
from vrmproto._keys import Identity
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._quick import quick_init, quick_new
from vrmproto._relationship import Relationship
from vrmproto._state import Role, State
from vrmproto._vocab import DataRecord
from vrmproto.store._base import HistoryEntry, RelationshipRecord
from vrmproto.store._rows import HeldRecord, SavePoint

__all__ = [
    "Point",
    "capture",
    "data_record",
    "guard",
    "held_row",
    "history_rows",
    "is_live",
    "load",
    "restore",
    "still_applies",
    "to_entry",
    "to_record",
    "to_row",
]

_OUT, _IN = "out", "in"
# The rows every message of a step makes, built as their positional calls below would
_new_row = quick_new(HistoryEntry)
_new_save_point = quick_new(SavePoint)
_new_record = quick_new(RelationshipRecord)
_ROLE_VALUE = {r: r.value for r in Role}  # Enum.value is a property: a look-up is cheaper
_STATE_VALUE = {s: s.value for s in State}


def load(
    record: RelationshipRecord,
    head: HistoryEntry | None,
    *,
    identity: Identity,
    limits: Limits = DEFAULT_LIMITS,
) -> Relationship:
    """The relationship ``record`` holds, continuing a history whose newest row is ``head``
    (None: no history yet). ``identity`` is ours in the thread; the caller derives it."""
    history = History.resume(head.index + 1, head.entry_hash) if head is not None else History()
    return Relationship.from_state(record.data, identity=identity, history=history, limits=limits)


def to_record(
    rel: Relationship,
    *,
    label: str,
    peer_url: str,
    now: int,
    state: bytes | None = None,
) -> RelationshipRecord:
    """The record of ``rel`` as it stands (``state``: its ``to_state()`` if already made)."""
    if rel.peer_key is None:
        raise ValueError("a relationship is stored once its peer's key is known")
    # RelationshipRecord(thread=, role=, local_key=, peer_key=, state=, data=, label=,
    # peer_url=, updated_ms=), in that order (tests/test_core_s12_quick.py holds the two equal)
    role, st = _ROLE_VALUE.get(rel.role), _STATE_VALUE.get(rel.state)
    return _new_record(rel.thread, role if role is not None else rel.role.value,
                       rel.identity.public_key, rel.peer_key,
                       st if st is not None else rel.state.value,
                       rel.to_state() if state is None else state, label, peer_url,
                       now)  # fmt: skip


def to_entry(h: HistoryEntry) -> Entry:
    """A stored history row as the engine's :class:`~vrmproto._history.Entry`."""
    return Entry(h.index, h.msg_hash, h.entry_hash, h.envelope, h.direction == _OUT)


def to_row(thread: bytes, e: Entry, now: int) -> HistoryEntry:
    """An engine entry as the history row to store, recorded at ``now``."""
    return _new_row(thread, e.index, e.msg_hash, e.link, e.envelope, _OUT if e.outgoing else _IN,
                    now)  # fmt: skip


def history_rows(rel: Relationship, now: int) -> tuple[HistoryEntry, ...]:
    """The rows of every entry ``rel`` logged since it was loaded (or made)."""
    thread = rel.thread
    return tuple([to_row(thread, e, now) for e in rel.history])  # (held in memory: since made)


# -- save points (§8.1-5) ------------------------------------------------------------------------


@quick_init
@dataclass(frozen=True, slots=True)
class Point:
    """Where a relationship stood before a message of ours: captured before signing it, and
    turned into :class:`~vrmproto.store.SavePoint` rows by :func:`guard` once the message (and
    its hash) exists."""

    thread: bytes
    length: int  # history length
    head: bytes  # link of the last entry
    state: bytes  # Relationship.to_state()


_new_point = quick_new(Point)


def capture(rel: Relationship, *, state: bytes | None = None) -> Point:
    """The point ``rel`` stands at now (``state``: its ``to_state()`` if already made)."""
    return _new_point(rel.thread, len(rel.history), rel.history.head,
                      rel.to_state() if state is None else state)  # fmt: skip


def guard(point: Point, msg_hashes: Iterable[bytes], *, after: int) -> tuple[SavePoint, ...]:
    """Save points returning to ``point`` if the peer refuses any of ``msg_hashes`` — the
    messages sent from ``point`` on — with ``after`` the history length once they were logged
    (a customer sends one message per point: ``point.length + 1``)."""
    return tuple(
        _new_save_point(point.thread, h, point.length, point.head, point.state, after)
        for h in msg_hashes
    )


def restore(
    point: SavePoint | Point, *, identity: Identity, limits: Limits = DEFAULT_LIMITS
) -> Relationship:
    """The relationship as it was at ``point``; the caller truncates the stored history from
    index ``point.length`` in the same Commit that stores it (§8.1-5)."""
    history = History.resume(point.length, point.head)
    return Relationship.from_state(point.state, identity=identity, history=history, limits=limits)


def still_applies(point: SavePoint, history_length: int) -> bool:
    """Whether a refusal may still return to ``point``: nothing was logged in the thread since
    the guarded messages (its history is ``point.after`` entries long)."""
    return history_length == point.after


# -- held customer data (§12.10) ----------------------------------------------------------------


def held_row(thread: bytes, share: bytes, record: DataRecord, expires_ms: int | None) -> HeldRecord:
    """The store row of ``record``, held in ``thread`` from the message ``share`` (a data.share,
    whose ``expires`` is ``expires_ms``; or an address.update of a field not held before: None,
    it does not expire). An update of a held field keeps that row's ``share`` and ``expires_ms``
    (§5.3.6-2)."""
    return HeldRecord(thread, record.field, record.value, record.category, record.source,
                      record.collected, tuple(record.purposes), share, expires_ms)  # fmt: skip


def data_record(h: HeldRecord) -> DataRecord:
    """The ``vrm-data/1`` record a held row stands for (§6.8)."""
    return DataRecord(h.field, h.value, h.category, h.source, h.collected_ms, h.purposes)


def is_live(h: HeldRecord, now: int) -> bool:
    """Whether ``h`` may still be held and returned: its share has not expired (§5.3.1-4,
    §12.10-4; a share expires at its ``expires``, as :meth:`Store.held_expired` counts)."""
    return h.expires_ms is None or h.expires_ms > now
