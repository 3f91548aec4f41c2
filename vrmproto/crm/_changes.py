"""What one feed event asks of a CRM, as typed changes (issue 14, docs/events.md "Mapping").

Sans-IO: an event's JSON (``FeedEvent.as_json()``, or a webhook's CloudEvent ``data``) in, a
tuple of changes out; no CRM is touched here. A CRM adapter applies them (``_tryton``); a vendor
writing one for another CRM maps the same changes to its own objects.

- :class:`Note` — something to keep on the relationship's record: the terms proffered, agreed,
  refused or countered (§5.2), an intentcast's request (§5.4.1), a decline, an end.
- :class:`Hold` — fields to hold from a data.share or address.update (§12.10-1): each replaces
  the value held under its name; the event's id is its source. An address update's values are
  held as those they replace (§5.3.6-2): under the share they came from, until its expiry.
- :class:`Erase` — the fields whose source, or the share they are held under, is one of these
  data.shared events must go (data.withdrawn's ``erase``, §5.3.2-2).
- :class:`Forget` — the vendor deleted a relationship that never reached an agreement
  (§11.8-3, ``relationship.expired``): what was made of the customer's messages in it goes,
  and its open lead is lost.
- :class:`Lead` — an intentcast answered with an offer (§5.4.2): one opportunity per intent thread.
- :class:`TakeUp` — a relationship opened by taking up an offer (§5.4.5-1).

Every change names the relationship (the thread id in hex): the CRM keeps one party for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vrmproto._messages import Money

__all__ = ["Change", "Erase", "Forget", "Hold", "Lead", "Note", "TakeUp", "changes_of"]


@dataclass(frozen=True, slots=True)
class Note:
    """Something to keep on the relationship's record, in words a person reads. ``if_known``:
    only on a relationship the CRM has a record of already (one of its events was applied):
    the note of its deletion, which a CRM that never had it has nothing to note on."""

    relationship: str
    text: str
    if_known: bool = False


@dataclass(frozen=True, slots=True)
class Hold:
    """Hold these fields (each replacing the value held under its name, §12.10-1)."""

    relationship: str
    source: str  # the event id the values come from
    fields: Mapping[str, str]
    expires_ms: int | None  # the share's expiry (§5.3.1-4); None: held without one
    #: the data.shared event these values are held under when it is not ``source``: of an
    #: address update, the share whose withdrawal or expiry takes them (§5.3.6-2,
    #: ``personal.field_shares``)
    share: str | None = None


@dataclass(frozen=True, slots=True)
class Erase:
    """Delete the fields still held from, or under, these data.shared events (§5.3.2-2)."""

    relationship: str
    sources: tuple[str, ...]  # ids of the data.shared events whose fields go


@dataclass(frozen=True, slots=True)
class Forget:
    """The vendor deleted the relationship, which never reached an agreement (§11.8-3): delete
    what was made of the customer's messages in it — the notes of the terms proffered and the
    intentcast's text, any field still held — and close its open lead (no one can take its
    offer up any more). Nothing, on a relationship the CRM never had."""

    relationship: str


@dataclass(frozen=True, slots=True)
class Lead:
    """An offer answering the relationship's intentcast (§5.4.2): its opportunity."""

    relationship: str  # the intent thread: one lead per intentcast answered
    offer: str  # the offer.sent event id
    description: str
    price: Money
    conditions: tuple[str, ...]
    valid_until_ms: int


@dataclass(frozen=True, slots=True)
class TakeUp:
    """This relationship took up that offer (§5.4.5-1): the lead is now its."""

    relationship: str  # the new relationship
    offer: str  # the offer.sent event id it takes up


#: One change a feed event asks of a CRM.
Change = Note | Hold | Erase | Forget | Lead | TakeUp


#: 400 Gregorian years, in ms: the calendar repeats after them (see :func:`when`).
_CYCLE_MS = 146_097 * 86_400_000
#: 10000-01-01T00:00:00Z in ms, the first moment :mod:`datetime` cannot hold.
_DATETIME_END_MS = 253_402_300_800_000


def when(ms: int) -> str:
    """A time of the feed (ms since the epoch) as an ISO 8601 UTC minute.

    Any time a message can carry: a customer may share data until 2^53 - 1 ms, or ask in an
    intentcast for dates that far (year 287,396), beyond the years 1 to 9999 :mod:`datetime`
    holds; such an event must not stop the bridge. The calendar repeats every 400 years, so
    the time is moved into that range by whole cycles, which are added back to the year."""
    cycles = 0
    if not 0 <= ms < _DATETIME_END_MS:
        cycles, ms = divmod(ms, _CYCLE_MS)
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return f"{moment.year + 400 * cycles:04d}" + moment.strftime("-%m-%d %H:%M UTC")


def _day(ms: int) -> str:
    """The date of :func:`when` (its year may have more than four digits)."""
    return when(ms).partition(" ")[0]


def _terms(refs: Any) -> str:
    """``vrm.delete-after v1 (days=30), vrm.no-tracking v1``: each term with what it was
    proffered or agreed with."""
    return ", ".join(f"{t['id']} v{t['version']}" + _params(t.get("params")) for t in refs or ())


def _params(params: Any) -> str:
    if not params:
        return ""
    return " (" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"


def _money(value: Mapping[str, Any]) -> Money:
    return Money(int(value["amount"]), str(value["currency"]))


def changes_of(event: Mapping[str, Any]) -> tuple[Change, ...]:
    """The changes ``event`` (the JSON of docs/events.md) asks of a CRM, in order: none for
    an event whose relationship the vendor deleted (``"forgotten": true``, its body gone:
    §11.8-3), which a CRM reading the feed later — resynchronised, or newly connected — must
    not learn from."""
    if event.get("forgotten") is True:
        return ()
    rel, kind, body = str(event["relationship"]), str(event["kind"]), event.get("body", {})
    stamp = f"{when(int(event['created']))} [{event['id']}]"
    personal = event.get("personal")
    if kind in ("relationship.opened", "terms.offered"):
        said = f"; note: {body['note']}" if body.get("note") else ""
        out: list[Change] = [Note(rel, f"{stamp} Terms proffered: {_terms(body.get('terms'))}"
                                       f"{said}")]  # fmt: skip
        if body.get("in_reply_to"):
            out.append(TakeUp(rel, "evt_" + str(body["in_reply_to"])))
        return tuple(out)
    if kind == "terms.accepted":
        return (Note(rel, f"{stamp} Terms agreed (agreement {body['offer']}): "
                          f"{_terms(body.get('terms'))}"),)  # fmt: skip
    if kind == "terms.rejected":
        return (Note(rel, f"{stamp} Terms refused ({', '.join(body.get('refused', ()))}): "
                          f"{body.get('reason', '')}"),)  # fmt: skip
    if kind == "terms.countered":
        return (Note(rel, f"{stamp} Terms countered with: {_terms(body.get('counter'))}; "
                          f"{body.get('reason', '')}"),)  # fmt: skip
    if kind == "data.shared" and personal:
        return (Hold(rel, str(event["id"]), dict(personal["fields"]), personal.get("expires")),)
    if kind == "address.updated" and personal:
        return _updated(rel, str(event["id"]), personal)
    if kind == "data.withdrawn":
        erase = tuple(str(e) for e in event.get("erase", ()))
        return (Erase(rel, erase), Note(rel, f"{stamp} Consent withdrawn: the data of "
                                             f"{len(erase)} share(s) erased"))  # fmt: skip
    if kind == "intentcast.received":
        return (Note(rel, f"{stamp} Intentcast: {_intent(body)}"),)
    if kind == "offer.sent":
        return (Lead(rel, str(event["id"]), str(body["description"]), _money(body["price"]),
                     tuple(body.get("conditions", ())), int(body["valid_until"])),)  # fmt: skip
    if kind == "offer.declined":
        return (Note(rel, f"{stamp} Intentcast declined: {body.get('reason', '')}"),)
    if kind == "relationship.expired":  # §11.8-3: its earlier events are forgotten now
        return (Forget(rel), Note(rel, f"{stamp} Relationship expired without an agreement: "
                                       "the vendor deleted it, with what the customer said in "
                                       "it (§11.8-3), and the notes and fields made of it here "
                                       "were deleted; its open lead is lost",
                                  if_known=True))  # fmt: skip
    if kind == "relationship.ended":
        said = f": {body['reason']}" if body.get("reason") else ""
        return (Note(rel, f"{stamp} Relationship ended by the {event['from']}{said}"),)
    return ()


def _updated(rel: str, source: str, personal: Mapping[str, Any]) -> tuple[Hold, ...]:
    """An address update's fields, held as the values they replace (§5.3.6-2): one
    :class:`Hold` per share they are held under and its expiry (``field_shares``,
    ``field_expires``; a field no share holds, without ``share`` or expiry), the one with
    ``country`` first (a region is looked up in it)."""
    under = personal.get("field_shares") or {}
    until = personal.get("field_expires") or {}
    groups: dict[tuple[str | None, int | None], dict[str, str]] = {}
    for name, value in personal["fields"].items():
        share = under.get(name)
        expires = until.get(name)
        key = (None if share is None else str(share), None if expires is None else int(expires))
        groups.setdefault(key, {})[name] = value
    holds = [Hold(rel, source, fields, expires, share)
             for (share, expires), fields in groups.items()]  # fmt: skip
    return tuple(sorted(holds, key=lambda h: "country" not in h.fields))


def _intent(body: Mapping[str, Any]) -> str:
    parts = [str(body["what"])]
    if body.get("where"):
        parts.append(f"in {body['where']}")
    if body.get("start") is not None and body.get("end") is not None:
        parts.append(f"from {_day(int(body['start']))} to {_day(int(body['end']))}")
    if body.get("max_price"):
        parts.append(f"at most {_money(body['max_price'])}")
    for label, key in (("member of", "memberships"), ("conditions", "constraints")):
        if body.get(key):
            parts.append(f"{label}: {', '.join(body[key])}")
    parts.append(f"answer by {when(int(body['reply_by']))}")
    return "; ".join(parts)
