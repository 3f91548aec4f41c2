"""The event feed forgets a share's fields wherever they are (§12.10-2, §12.10-4; docs/events.md,
"Personal data"): what every store's ``held_drop`` (part 15 of a
:class:`~vrmproto.store.Commit`) does to the feed's events besides dropping the share's own
``personal``.

An address update keeps how the value it replaces is held (§5.3.6-2): its event's ``personal``
names the data.shared event of each field held under a share (``field_shares``) and when that
share expires (``field_expires``); a field it does not name, no share held. Both keys are in
every address.updated event written since they exist, empty or not. When a share is withdrawn
or expires, the fields held under it go from every address.updated event of its thread; an
event left without fields keeps no ``personal``.
A store finds those events by the share's event id, quoted, in their ``personal``
(:func:`needle`: a value that happens to hold it only costs a look), and rewrites each with
:func:`redacted` (:class:`Redaction` gathers what one Commit takes out of which event).

An address.updated event written before the feed named ``field_shares`` (vrmproto before
session 19) cannot say which share each of its fields was held under. Of such an event, later
in the feed than a dropped share's own event, the fields that share carried go: the values it
may have replaced. That may take a field a share no longer held (a field shared again, or
updated after the share expired) out of the event too — never leave one it held.

A share dropped before the upgrade (its data.shared event's ``personal`` already gone) reached
no such event: :func:`dropped_before` is the one-time pass the schema step that upgrades a
store runs (SQLite's 13, PostgreSQL's 9). What the share carried is no longer known, so of each
such event, later in its thread's feed than the thread's first data.shared event without
``personal``, every field goes but those the vendor holds today from a message (``held.share``:
a data.share, or the address update that gave the field) at or before the event: a row is
replaced when its field is shared again and deleted when its share goes, so such a field was
held from that message, still held, since then, and the event's value of it was not a dropped
share's.

A field given again replaces the value held under its name (§12.10-1), so the feed also holds
values the vendor no longer holds: those a later event replaced. A reader going through the
feed in order ends with the later value. But once the value that replaced them goes with its
share, the vendor holds no value of that field at all, and a reader of the feed from its start
(a consumer added later, a CRM resynchronised from scratch, a replay) would end with one of the
values it replaced: an older phone the customer gave, then replaced by a share it withdrew. So
of each field a dropped share governed (:func:`governed`: its own, and those held under it by
the updates) that the vendor holds no more after the drop, every value goes from every event of
the thread, a data.shared event's too (:func:`stripped`): a reader of the whole feed ends with
what the vendor holds.

The stores do that since session 20 (schema 14, PostgreSQL's 10). A share dropped before left
the values it had replaced in the earlier events, and its own event no longer says which fields
it carried: :func:`superseded_before` is the one-time pass the schema step that upgrades a
store runs (SQLite's 15, PostgreSQL's 11). Of each event of a thread that has a dropped share
(a data.shared event without ``personal``), a field goes when the vendor holds no value of it,
or when the message it holds the field from came later in the feed than a dropped share that
itself came after the event: a value the dropped share may have replaced, before the field was
given again. The value the vendor holds is never taken (its message is not earlier than that
share), nor a value of a field given again with no share dropped between (a reader in order
replaces it anyway); one no dropped share replaced may go too, as with :func:`dropped_before`.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["LEGACY", "NEVER", "UNAGREED", "UNAGREED_SQL", "UPDATED", "Redaction", "carried",
           "dropped_before", "forgotten", "governed", "needle", "redacted", "share_id", "stripped",
           "superseded_before", "without"]  # fmt: skip

#: The kind of the events whose ``personal`` holds fields under other events' shares.
UPDATED = "address.updated"
#: In the ``personal`` of every address.updated event but those written before it was.
LEGACY = b'"field_shares":'
#: A feed position after every event: the legacy bound of a share whose event kept no fields.
NEVER = 2**62

#: The kinds of the events a relationship can have before it reaches an agreement (§7.2): all a
#: relationship that expires without one (§11.8-3, ``Commit.drop``) ever has.
UNAGREED = ("intentcast.received", "key.rotated", "offer.declined", "offer.sent",
            "relationship.ended", "relationship.opened", "terms.countered", "terms.offered",
            "terms.rejected")  # fmt: skip
#: The SQL condition on them, the same text in the partial index (``events_unagreed``) and in
#: the statements that use it (SQLite uses a partial index only for a condition it repeats).
UNAGREED_SQL = "kind IN (" + ", ".join(f"'{kind}'" for kind in UNAGREED) + ")"


def forgotten(data: bytes) -> bytes:
    """An event's ``data`` once its relationship is deleted (§11.8-3): what the message said
    (``body``) goes, the rest stays (its type, sender and time), with ``"forgotten": true``.
    The same bytes when it is forgotten already."""
    found: dict[str, Any] = json.loads(data)
    if found.get("forgotten") is True:
        return data
    return json.dumps({**found, "body": {}, "forgotten": True}, separators=(",", ":"),
                      sort_keys=True).encode()  # fmt: skip


def share_id(share: bytes) -> str:
    """The id of a share's data.shared event (its message hash, ``evt_`` and hex)."""
    return "evt_" + share.hex()


def needle(share: bytes) -> bytes:
    """What the ``personal`` of an event holding a field under ``share`` contains: its event
    id as a JSON string."""
    return b'"' + share_id(share).encode("ascii") + b'"'


def without(personal: Mapping[str, Any], gone: Collection[str]) -> dict[str, Any] | None:
    """``personal`` (an address.updated event's, as JSON) without the fields named in ``gone``
    (and their entries in ``field_purposes``, ``field_shares``, ``field_expires``), its
    ``purposes`` those of the fields left; None when no field is left."""
    fields = {k: v for k, v in personal["fields"].items() if k not in gone}
    if not fields:
        return None
    out = {**personal, "fields": fields}
    for key in ("field_purposes", "field_shares", "field_expires"):
        if key in personal:
            out[key] = {k: v for k, v in personal[key].items() if k in fields}
    if "field_purposes" in personal:
        out["purposes"] = sorted({p for ps in out["field_purposes"].values() for p in ps})
    return out


def redacted(personal: bytes, shares: Collection[str], legacy: Collection[str] = ()
             ) -> bytes | None:  # fmt: skip
    """The stored ``personal`` of an address.updated event once the shares whose event ids
    are ``shares`` are gone: the same bytes if none of its fields was held under one of them,
    else the JSON without those fields (compact, sorted keys, ASCII: as the feed writes it),
    or None when no field is left. ``legacy``: the fields to take out of an event that names
    no ``field_shares`` (one written before it did)."""
    found: dict[str, Any] = json.loads(personal)
    return _rest(personal, found, _under(found, shares, legacy))


def _under(found: Mapping[str, Any], shares: Collection[str], legacy: Collection[str]
           ) -> set[str]:  # fmt: skip
    """The fields of an address.updated event's ``personal`` (``found``) held under one of
    ``shares`` (or, of one that names no ``field_shares``, those in ``legacy``)."""
    held_under = found.get("field_shares")
    if held_under is None:
        return set(legacy).intersection(found["fields"])
    return {name for name, share in held_under.items() if share in shares}


def _rest(personal: bytes, found: dict[str, Any], gone: Collection[str]) -> bytes | None:
    """``personal`` (``found`` decoded) without the fields ``gone``: the same bytes when it
    has none of them, else compact JSON with sorted keys (ASCII, as the feed writes it), or
    None when no field is left."""
    if not gone or not any(name in found["fields"] for name in gone):
        return personal
    rest = without(found, gone)
    if rest is None:
        return None
    return json.dumps(rest, separators=(",", ":"), sort_keys=True).encode()


def governed(personal: bytes, share: bytes, legacy: Collection[str] = ()) -> set[str]:
    """The fields of an address.updated event's ``personal`` that dropped ``share`` governed:
    those held under it (``field_shares``), or of an event that names none, those in
    ``legacy`` (the fields the share carried, when the event is later than its own)."""
    return _under(json.loads(personal), (share_id(share),), legacy)


def stripped(personal: bytes, gone: Collection[str]) -> bytes | None:
    """The stored ``personal`` of an event (a data.shared or address.updated one) without the
    fields named in ``gone``: fields the vendor holds no value of after a drop (see the
    module). The same bytes when it has none of them; None when no field is left."""
    return _rest(personal, json.loads(personal), gone)


def carried(shared: bytes | None) -> frozenset[str]:
    """The field names of a data.shared event's ``personal`` (none when it keeps none)."""
    return frozenset() if shared is None else frozenset(json.loads(shared).get("fields", ()))


class Redaction:
    """What one Commit's ``held_drop`` takes out of the address.updated events it found: each
    event's ``personal`` as read, and per event the dropped shares it may hold fields under."""

    def __init__(self) -> None:
        self._read: dict[int, bytes] = {}
        self._shares: dict[int, set[str]] = {}
        self._legacy: dict[int, set[str]] = {}

    def found(self, pos: int, personal: bytes, share: bytes, since: int,
              fields: Collection[str]) -> None:  # fmt: skip
        """The event at ``pos`` (its ``personal``) was found for dropped ``share``, whose own
        event is at ``since`` and carried ``fields`` (:func:`carried`)."""
        self._read[pos] = personal
        self._shares.setdefault(pos, set()).add(share_id(share))
        if pos > since:
            self._legacy.setdefault(pos, set()).update(fields)

    def changes(self) -> list[tuple[int, bytes | None]]:
        """``(pos, personal)`` of every event whose ``personal`` changes."""
        out = []
        for pos, personal in self._read.items():
            after = redacted(personal, self._shares[pos], self._legacy.get(pos, ()))
            if after != personal:
                out.append((pos, after))
        return out


def dropped_before(first: Mapping[bytes, int], sources: Mapping[tuple[bytes, bytes], int],
                   holds: Mapping[tuple[bytes, str], bytes],
                   legacy: Iterable[tuple[int, bytes, bytes]]
                   ) -> list[tuple[int, bytes | None]]:  # fmt: skip
    """The one-time pass over shares dropped before the feed named ``field_shares`` (see the
    module): ``(pos, personal)`` of every event whose ``personal`` changes.

    ``first``: per thread, the position of its first data.shared event without ``personal``;
    ``sources``: the position of each data.shared and address.updated event, by ``(thread,
    msg_hash)``; ``holds``: of each field held, by ``(thread, field)``, the message it is held
    from (``held.share``); ``legacy``: ``(pos, thread, personal)`` of the address.updated
    events that name no ``field_shares``. A message with no event (trimmed from the feed's
    oldest end, or from before the feed) is older than every event."""
    out = []
    for pos, thread, personal in legacy:
        if pos <= first.get(thread, NEVER):
            continue
        fields = json.loads(personal)["fields"]
        gone = {name for name in fields
                if (source := holds.get((thread, name))) is None
                or sources.get((thread, source), -1) > pos}  # fmt: skip
        after = redacted(personal, (), gone)
        if after != personal:
            out.append((pos, after))
    return out


def superseded_before(dropped: Mapping[bytes, Sequence[int]],
                      sources: Mapping[tuple[bytes, bytes], int],
                      holds: Mapping[tuple[bytes, str], bytes],
                      found: Iterable[tuple[int, bytes, bytes]]
                      ) -> list[tuple[int, bytes | None]]:  # fmt: skip
    """The one-time pass over the values that shares dropped before session 20 had replaced
    (see the module): ``(pos, personal)`` of every event whose ``personal`` changes.

    ``dropped``: per thread, the positions of its data.shared events without ``personal``, in
    ascending order; ``sources``: the position of each data.shared and address.updated event,
    by ``(thread, msg_hash)``; ``holds``: of each field held, by ``(thread, field)``, the message
    it is held from (``held.share``); ``found``: ``(pos, thread, personal)`` of the events of
    those threads that carry personal data. A message with no event (trimmed from the feed's
    oldest end) is older than every event."""
    out = []
    for pos, thread, personal in found:
        drops = dropped.get(thread, ())
        after = bisect.bisect_right(drops, pos)  # the first dropped share later than the event
        if after == len(drops):
            continue
        fields = json.loads(personal)["fields"]
        gone = {name for name in fields
                if (source := holds.get((thread, name))) is None
                or sources.get((thread, source), -1) > drops[after]}  # fmt: skip
        rest = stripped(personal, gone)
        if rest != personal:
            out.append((pos, rest))
    return out
