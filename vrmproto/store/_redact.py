"""The event feed forgets a share's fields wherever they are (§12.10-2, §12.10-4; docs/events.md,
"Personal data"): what every store's ``held_drop`` (part 15 of a
:class:`~vrmproto.store.Commit`) does to the feed's events besides dropping the share's own
``personal``.

An address update keeps how the value it replaces is held (§5.3.6-2): its event's ``personal``
names, per field, the event the field is held under (``field_shares``: a data.shared event, or
an address.updated one for a field no share held) and, for a share's, when it expires
(``field_expires``). When a share is withdrawn or expires, the fields held under it go from
every address.updated event of its thread; an event left without fields keeps no ``personal``.
A store finds those events by the share's event id, quoted, in their ``personal``
(:func:`needle`: a value that happens to hold it only costs a look), and rewrites each with
:func:`redacted`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

__all__ = ["UPDATED", "needle", "redacted", "share_id", "without"]

#: The kind of the events whose ``personal`` holds fields under other events' shares.
UPDATED = "address.updated"


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
    if not out.get("field_expires", True):
        del out["field_expires"]
    if "field_purposes" in personal:
        out["purposes"] = sorted({p for ps in out["field_purposes"].values() for p in ps})
    return out


def redacted(personal: bytes, shares: Collection[str]) -> bytes | None:
    """The stored ``personal`` of an address.updated event once the shares whose event ids
    are ``shares`` are gone: the same bytes if none of its fields was held under one of them,
    else the JSON without those fields (compact, sorted keys, ASCII: as the feed writes it),
    or None when no field is left."""
    found: dict[str, Any] = json.loads(personal)
    held_under = found.get("field_shares") or {}
    gone = {name for name, share in held_under.items() if share in shares}
    if not gone:
        return personal
    rest = without(found, gone)
    if rest is None:
        return None
    return json.dumps(rest, separators=(",", ":"), sort_keys=True).encode()
