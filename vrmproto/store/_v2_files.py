"""The customer's notes that vrmproto up to 25ceebf kept in JSON files beside ``agent.db``, as
typed records (schema v3) — for the node that imports them once into its store.

- ``intents.json`` (written by ``vrm intent``): a list of intentcasts, each with the offers that
  had arrived when the command ended → :class:`IntentRecord` and :class:`OfferRecord` rows.
  The file did not keep when an offer arrived: its ``received_ms`` is the intentcast's ``sent``.
  It did not keep the intentcast's constraints or memberships either: they are empty.
- ``shares.json`` (written by ``vrm share`` and ``vrm withdraw``): a list of notes of what was
  shared → :class:`ShareNote` rows. A note whose ``hash`` is empty (its share was still a draft
  when noted; its hash was never known) has no share to be keyed by and is returned apart.

The readers take a file's decoded JSON (``{"format": 1, "items": [...]}``) and raise
``ValueError`` naming the entry that does not have the shape those releases wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vrmproto.store._rows import IntentRecord, OfferRecord, ShareNote

__all__ = ["intents_from_v2", "share_notes_from_v2"]


def _items(doc: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    items = doc.get("items")
    if doc.get("format") != 1 or not isinstance(items, list):
        raise ValueError(f"{name} is not a format-1 notes file")
    return [i for i in items if isinstance(i, Mapping)]  # as vrm read them: maps only


def _price(m: Mapping[str, Any] | None) -> tuple[int, str] | None:
    return None if m is None else (int(m["amount"]), str(m["currency"]))


def _offer(d: Mapping[str, Any], received_ms: int) -> OfferRecord:
    price = _price(d["price"])
    if price is None:
        raise ValueError("an offer without a price")
    return OfferRecord(
        intent_id=bytes.fromhex(d["intent"]), hash=bytes.fromhex(d["hash"]),
        thread=bytes.fromhex(d["thread"]), vendor=str(d["vendor"]), url=str(d["url"]),
        vendor_key=bytes.fromhex(d["vendor_key"]), description=str(d["description"]),
        price=price, valid_until_ms=int(d["valid_until"]),
        conditions=tuple(str(c) for c in d["conditions"]),
        accepts_terms=tuple(str(t) for t in d["accepts_terms"]), received_ms=received_ms,
    )  # fmt: skip


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def intents_from_v2(
    doc: Mapping[str, Any],
) -> tuple[tuple[IntentRecord, ...], tuple[OfferRecord, ...]]:
    """The intentcasts of an ``intents.json`` and their offers."""
    intents: list[IntentRecord] = []
    offers: list[OfferRecord] = []
    for n, d in enumerate(_items(doc, "intents.json")):
        try:
            sent = int(d["sent"])
            intents.append(IntentRecord(
                intent_id=bytes.fromhex(d["intent"]), what=str(d["what"]),
                where=None if d.get("where") is None else str(d["where"]),
                start_ms=_opt_int(d.get("from")), end_ms=_opt_int(d.get("to")),
                max_price=_price(d.get("max_price")), reply_by_ms=int(d["reply_by"]),
                sent_ms=sent, vendors=tuple(str(v) for v in d.get("vendors", ())),
                declines=tuple((str(x["vendor"]), str(x["reason"]))
                               for x in d.get("declines", ())),
            ))  # fmt: skip
            offers.extend(_offer(o, sent) for o in d.get("offers", ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"intents.json entry {n} is not an intentcast: {exc!r}") from exc
    return tuple(intents), tuple(offers)


def share_notes_from_v2(
    doc: Mapping[str, Any],
) -> tuple[tuple[ShareNote, ...], tuple[Mapping[str, Any], ...]]:
    """The notes of a ``shares.json``, and apart the entries with no share hash."""
    notes: list[ShareNote] = []
    unkeyed: list[Mapping[str, Any]] = []
    for n, d in enumerate(_items(doc, "shares.json")):
        try:
            if not d["hash"]:
                unkeyed.append(d)
                continue
            fields = d.get("fields") or {}
            notes.append(ShareNote(
                share=bytes.fromhex(d["hash"]), thread=bytes.fromhex(d["thread"]),
                vendor=str(d["vendor"]),
                fields=tuple(sorted((str(k), str(v)) for k, v in fields.items())),
                purposes=tuple(int(p) for p in d.get("purposes", ())),
                categories=tuple(int(c) for c in d.get("categories") or ()),
                expires_ms=int(d["expires"]), shared_ms=int(d["shared"]),
                status=str(d["status"]), withdrawn_ms=_opt_int(d.get("withdrawn")),
            ))  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"shares.json entry {n} is not a share note: {exc!r}") from exc
    return tuple(notes), tuple(unkeyed)
