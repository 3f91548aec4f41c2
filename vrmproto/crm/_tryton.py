"""A Tryton database kept in step with the vendor's event feed (issue 14; docs/events.md).

The only module that imports ``trytond`` (which has no type information): everything it
returns is checked here and handed on typed. Tryton's models used are those of the ``party``
and ``sale_opportunity`` modules and the core ``ir.note``:

- one ``party.party`` per relationship, its ``code`` ``vrm-`` and the thread id in hex: the
  customer is a key until it shares something;
- ``ir.note`` on that party for the terms proffered, agreed (with the agreement id), refused or
  countered, for an intentcast's request, a withdrawal, an end; when the vendor deletes a
  relationship that never reached an agreement (§11.8-3), the notes made of it go and its open
  lead is lost (:func:`_forget`);
- held fields (§12.10-1): ``email`` and ``phone`` as ``party.contact_mechanism``; ``street``,
  ``city``, ``postcode``, and ``country`` / ``region`` when Tryton knows them, as one
  ``party.address``; any other field as a contact mechanism of type ``other`` named after it.
  A field given again replaces the value held under its name, in place (an empty value removes it),
  unless that value came from a later event (one delivered late: a replayed dead letter);
- on data.withdrawn, the fields still held from the withdrawn shares are deleted (§5.3.2-2),
  and at a share's ``expires`` by :meth:`TrytonCRM.expire` (§5.3.1-4) — with them the values an
  address update gave those fields, held under the same share (§5.3.6-2);
- one ``sale.opportunity`` in the state ``lead`` per intentcast answered with an offer
  (``reference`` ``vrm-`` and the intent thread), its amount the offer's price; when the customer
  takes the offer up (§5.4.5), the lead moves to the party of the new relationship.

Two tables of the bridge's own sit beside Tryton's in the same database, written in the same
transaction as the records: ``vrmproto_crm_event`` (each event applied: the idempotency key,
the durable cursor — the highest ``pos`` — and its relationship, whose notes a
``relationship.expired`` deletes: :func:`_forget`) and ``vrmproto_crm_field`` (which event
each held field came from, the share it is held under when that is another event's, and which
Tryton record holds it; never the value). A field held from an address.updated event that names no
``field_shares`` (a vendor before session 19) is held as the value it replaces
(:func:`_inherited`), or under :data:`LEGACY` when that is not known (see :func:`_apply`).
An event is applied at most once
however often it is delivered, and a restart resumes after the last one applied.

The vendor's staff work in the same database: a party they archived is still its
relationship's, one they deleted is made again, one they replaced by another is followed to it
(:func:`_party`), and a held field whose record they deleted is forgotten (:func:`_prune`), so
that no change of theirs stops the bridge.

Tryton's configuration is global to the process: open one database per process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import warnings
from collections.abc import Collection, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from sql import Table
from sql.aggregate import Max
from trytond import backend
from trytond import config as tryton_config
from trytond.exceptions import UserError
from trytond.pool import Pool
from trytond.tools import escape_wildcard
from trytond.transaction import Transaction

from vrmproto._messages import Money
from vrmproto.crm._changes import (
    Change,
    Erase,
    Forget,
    Hold,
    Lead,
    Note,
    TakeUp,
    changes_of,
    when,
)

__all__ = ["LEGACY", "MODULES", "TrytonCRM"]

#: The Tryton modules the bridge writes to (activated with their dependencies).
MODULES = ("party", "sale_opportunity")

_CONTACT = {"email": "email", "phone": "phone"}  # field → contact mechanism type
_ADDRESS = {"street": "street_unstructured", "city": "city", "postcode": "postal_code"}
_EVENTS = Table("vrmproto_crm_event")
_FIELDS = Table("vrmproto_crm_field")
_DDL = (
    "CREATE TABLE IF NOT EXISTS vrmproto_crm_event (id VARCHAR(100) PRIMARY KEY, "
    "pos BIGINT NOT NULL, model VARCHAR(100), record INTEGER)",
    "CREATE TABLE IF NOT EXISTS vrmproto_crm_field (relationship VARCHAR(100) NOT NULL, "
    "field VARCHAR(100) NOT NULL, source VARCHAR(100) NOT NULL, expires BIGINT, "
    "model VARCHAR(100) NOT NULL, record INTEGER NOT NULL, attr VARCHAR(100), "
    "share VARCHAR(100), PRIMARY KEY (relationship, field))",
    # the sweep of expired shares runs before every event: it must not read every held field
    "CREATE INDEX IF NOT EXISTS vrmproto_crm_field_expires ON vrmproto_crm_field (expires)",
    # which fields an address holds, when one of them goes
    "CREATE INDEX IF NOT EXISTS vrmproto_crm_field_record ON vrmproto_crm_field (model, record)",
    # the cursor, the highest pos, read at every start
    "CREATE INDEX IF NOT EXISTS vrmproto_crm_event_pos ON vrmproto_crm_event (pos)",
)
#: ``share`` of a field whose share is not known: held from an address update that did not say
#: it (no ``field_shares``: a vendor before session 19) replacing a value held so, or, in a
#: ``vrmproto_crm_field`` made before the column, from an event that gave no expiry (an
#: update's: a share's always has one).
LEGACY = "legacy"
_CM = "party.contact_mechanism"
_ADDR = "party.address"


def _add_relationship_column(cursor: Any) -> None:
    """Give a ``vrmproto_crm_event`` made before it had one its ``relationship`` column (what
    :func:`_forget` deletes the notes of; NULL for the events applied before: their notes are
    found by their stamp on the relationship's own party)."""
    cursor.execute("SELECT * FROM vrmproto_crm_event WHERE 1 = 0")
    if "relationship" not in {str(column[0]).lower() for column in cursor.description}:
        cursor.execute("ALTER TABLE vrmproto_crm_event ADD COLUMN relationship VARCHAR(100)")


def _add_share_column(cursor: Any) -> None:
    """Give a ``vrmproto_crm_field`` made before it had one its ``share`` column (the share an
    updated value is held under, §5.3.6-2; NULL: its ``source``). Its rows held without an
    expiry came from address updates, which did not say their share: :data:`LEGACY`."""
    cursor.execute("SELECT * FROM vrmproto_crm_field WHERE 1 = 0")
    if "share" not in {str(column[0]).lower() for column in cursor.description}:
        cursor.execute("ALTER TABLE vrmproto_crm_field ADD COLUMN share VARCHAR(100)")
        cursor.execute(*_FIELDS.update([_FIELDS.share], [LEGACY],
                                       where=_FIELDS.expires == None))  # noqa: E711  # fmt: skip


def _configure(uri: str, path: Path | None) -> None:
    tryton_config.set("database", "uri", uri)
    if path is not None:
        tryton_config.set("database", "path", str(path))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # trytond 8.2 imports its own deprecated `trytond.config.config` while it registers its
    # classes; the warning is about trytond's code, not ours.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "trytond.config.config is deprecated",
                                DeprecationWarning)  # fmt: skip
        yield


class TrytonCRM:
    """A Tryton database (``party`` and ``sale_opportunity`` activated) that feed events are
    applied to, one Tryton transaction per event. Blocking: call it from one thread."""

    def __init__(self, name: str, company: int) -> None:
        self.name = name
        self.company = company

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def create(
        cls, name: str, *, uri: str = "sqlite://", path: Path | None = None,
        company: str = "Vendor", currency: str = "USD",
    ) -> TrytonCRM:  # fmt: skip
        """Create database ``name`` (what ``trytond-admin -u party sale_opportunity
        --activate-dependencies`` does), with a company to own the opportunities, and open it.
        ``path``: the directory of SQLite databases (Tryton's ``[database] path``)."""
        _configure(uri, path)
        database = backend.Database()
        database.connect()
        connection = database.get_connection(autocommit=True)
        try:
            database.create(connection, name)
        finally:
            database.put_connection(connection)
            database.close()
        database = backend.Database(name)
        connection = database.get_connection()
        try:
            with connection.cursor() as cursor:
                database.init()
                configuration = Table("ir_configuration")
                cursor.execute(*configuration.insert([configuration.language], [["en"]]))
            connection.commit()
        finally:
            database.put_connection(connection)
        with _quiet():
            Pool(name).init(update=list(MODULES), activatedeps=True, lang=["en"])
        with Transaction().start(name, 0):
            pool = Pool()
            party = pool.get("party.party")(name=company)
            party.save()
            owner = pool.get("company.company")(party=party, currency=_currency(currency))
            owner.save()
        return cls.open(name, uri=uri, path=path)

    @classmethod
    def open(
        cls, name: str, *, uri: str = "sqlite://", path: Path | None = None,
        company: int | None = None,
    ) -> TrytonCRM:  # fmt: skip
        """Open database ``name``; ``company``: the id of the company that owns the
        opportunities (default: the only one)."""
        _configure(uri, path)
        with _quiet():
            Pool(name).init()
        with Transaction().start(name, 0) as transaction:
            cursor = transaction.connection.cursor()
            for ddl in _DDL:
                cursor.execute(ddl)
            _add_share_column(cursor)
            _add_relationship_column(cursor)
            if company is None:
                found = Pool().get("company.company").search([])
                if len(found) != 1:
                    raise ValueError(f"{name}: {len(found)} companies; say which owns the leads")
                company = int(found[0].id)
        return cls(name, company)

    # -- the feed ------------------------------------------------------------------------

    def cursor(self) -> int:
        """The ``pos`` of the last event applied (0 if none): where the feed resumes."""
        with Transaction().start(self.name, 0, readonly=True) as transaction:
            cursor = transaction.connection.cursor()
            cursor.execute(*_EVENTS.select(Max(_EVENTS.pos)))
            (last,) = cursor.fetchone()
        return max(int(last or 0), 0)  # every one set aside (:meth:`set_aside`): the start

    def set_aside(self, head: int) -> None:
        """Before a full resync of a feed whose newest position is ``head``: every event
        applied at a position past it takes a position before the feed's (its own, negated).
        The feed never held such an event (retention never trims the newest one): it was
        applied from another, a store since restored from a backup. So a value held from it
        is older than every event of this feed (:func:`_held_since` lets the resync's events
        replace it), and its position is never the cursor again. (One of the lost timeline at a
        position the feed holds again cannot be told from this feed's own at that position:
        docs/events.md.)"""
        with Transaction().start(self.name, 0) as transaction:
            cursor = transaction.connection.cursor()
            cursor.execute(*_EVENTS.update([_EVENTS.pos], [-_EVENTS.pos],
                                           where=_EVENTS.pos > head))  # fmt: skip

    def later_sources(self, relationship: str, names: Collection[str], pos: int
                      ) -> list[tuple[str, int]]:  # fmt: skip
        """The events, ``(id, pos)``, after ``pos`` that fields ``names`` of ``relationship``
        are held from: those that keep an event at ``pos`` from replacing their values
        (:func:`_held_since`)."""
        joined = _FIELDS.join(_EVENTS, condition=_FIELDS.source == _EVENTS.id)
        with Transaction().start(self.name, 0, readonly=True) as transaction:
            cursor = transaction.connection.cursor()
            cursor.execute(*joined.select(_EVENTS.id, _EVENTS.pos, where=(
                (_FIELDS.relationship == relationship) & _FIELDS.field.in_(list(names) or [""])
                & (_EVENTS.pos > pos))))  # fmt: skip
            return sorted({(str(event_id), int(at)) for event_id, at in cursor.fetchall()})

    def set_aside_event(self, event_id: str) -> None:
        """Event ``event_id``, which the feed does not hold at its recorded position (a store
        restored from a backup lost it), takes a position before the feed's (its own,
        negated): older than every event of the feed."""
        with Transaction().start(self.name, 0) as transaction:
            cursor = transaction.connection.cursor()
            cursor.execute(*_EVENTS.update([_EVENTS.pos], [-_EVENTS.pos], where=(
                (_EVENTS.id == event_id) & (_EVENTS.pos > 0))))  # fmt: skip

    def applied_at(self, pos: int) -> str | None:
        """The id of the event applied at feed position ``pos``, or None."""
        with Transaction().start(self.name, 0, readonly=True) as transaction:
            cursor = transaction.connection.cursor()
            cursor.execute(*_EVENTS.select(_EVENTS.id, where=_EVENTS.pos == pos, limit=1))
            row = cursor.fetchone()
        return None if row is None else str(row[0])

    def apply(self, event: Mapping[str, Any], now_ms: int | None = None) -> bool:
        """Apply one event (the JSON of docs/events.md) in one transaction; False if it was
        applied before (events come at least once: a second delivery changes nothing).
        ``now_ms``: a share whose ``expires`` is past by then is not held (§5.3.1-4)."""
        context = {"company": self.company}
        with Transaction().start(self.name, 0, context=context) as transaction:
            cursor = transaction.connection.cursor()
            cursor.execute(*_EVENTS.select(_EVENTS.id, where=_EVENTS.id == str(event["id"])))
            if cursor.fetchone() is not None:
                return False
            made: tuple[str, int] | None = None
            personal = event.get("personal")
            legacy = (event.get("kind") == "address.updated" and isinstance(personal, Mapping)
                      and "field_shares" not in personal)  # fmt: skip
            for change in changes_of(event):
                if isinstance(change, Hold) and _expired(change.expires_ms, now_ms):
                    continue
                marked = (dataclasses.replace(change, share=LEGACY)
                          if isinstance(change, Hold) and legacy else change)  # fmt: skip
                made = _apply(cursor, marked, int(event["pos"])) or made
            model, record = made if made is not None else (None, None)
            # one event per position: another one recorded at it came from a feed since lost
            cursor.execute(*_EVENTS.update([_EVENTS.pos], [-_EVENTS.pos], where=(
                (_EVENTS.pos == int(event["pos"])) & (_EVENTS.id != str(event["id"]))
                & (_EVENTS.pos > 0))))  # fmt: skip
            cursor.execute(*_EVENTS.insert(
                [_EVENTS.id, _EVENTS.pos, _EVENTS.model, _EVENTS.record, _EVENTS.relationship],
                [[str(event["id"]), int(event["pos"]), model, record,
                  str(event["relationship"])[:100]]],
            ))  # fmt: skip
        return True

    def expire(self, now_ms: int) -> int:
        """Delete the fields held from shares whose ``expires`` is past (§5.3.1-4); how many."""
        with Transaction().start(self.name, 0) as transaction:
            cursor = transaction.connection.cursor()
            cursor.execute(*_FIELDS.select(
                _FIELDS.relationship, _FIELDS.field,
                where=(_FIELDS.expires != None) & (_FIELDS.expires <= now_ms),  # noqa: E711
            ))  # fmt: skip
            gone = [(str(r), str(f)) for r, f in cursor.fetchall()]
            for rel in {rel for rel, _ in gone}:
                _prune(cursor, rel)
            return sum(_drop_field(cursor, rel, name) for rel, name in gone)


    def legacy(self) -> dict[str, list[str]]:
        """The fields held under :data:`LEGACY` (whose share, so whose expiry, this database
        never recorded), by relationship."""
        with Transaction().start(self.name, 0, readonly=True) as transaction:
            cursor = transaction.connection.cursor()
            cursor.execute(*_FIELDS.select(
                _FIELDS.relationship, _FIELDS.field, where=_FIELDS.share == LEGACY,
                order_by=[_FIELDS.relationship, _FIELDS.field]))  # fmt: skip
            found: dict[str, list[str]] = {}
            for rel, name in cursor.fetchall():
                found.setdefault(str(rel), []).append(str(name))
        return found

    def forget_legacy(self, relationship: str, names: Collection[str]) -> int:
        """Delete the values of fields ``names`` of ``relationship`` that are still held
        under :data:`LEGACY` (the vendor no longer holds them: :meth:`TrytonBridge.run`);
        how many."""
        with Transaction().start(self.name, 0) as transaction:
            cursor = transaction.connection.cursor()
            _prune(cursor, relationship)
            cursor.execute(*_FIELDS.select(_FIELDS.field, where=(
                (_FIELDS.relationship == relationship) & (_FIELDS.share == LEGACY))))  # fmt: skip
            still = {str(name) for (name,) in cursor.fetchall()}
            return sum(_drop_field(cursor, relationship, name)
                       for name in sorted(still.intersection(names)))  # fmt: skip


def _expired(expires_ms: int | None, now_ms: int | None) -> bool:
    return expires_ms is not None and now_ms is not None and expires_ms <= now_ms


# -- one change each (inside the event's transaction) ------------------------------------------


def _apply(cursor: Any, change: Change, pos: int) -> tuple[str, int] | None:
    """Apply ``change``, of the event at ``pos``; the record it made when other events refer
    to it (a lead)."""
    if isinstance(change, Note | Forget) and (isinstance(change, Forget) or change.if_known):
        known = _party(change.relationship, make=False)
        if known is None:  # nothing was made of the relationship: none is made for it
            return None
        if isinstance(change, Forget):
            _forget(cursor, change.relationship, known)
            return None
    party = _party(change.relationship)
    if isinstance(change, Hold | Erase):
        _prune(cursor, change.relationship)
    if isinstance(change, Note):
        _note(party, change.text)
    elif isinstance(change, Hold):
        # the country first: a region is looked up in it
        for name, value in sorted(change.fields.items(), key=lambda kv: kv[0] != "country"):
            if not _held_since(cursor, change.relationship, name, pos):
                held = _inherited(cursor, change, name) if change.share == LEGACY else change
                _hold(cursor, party, held, name, value)
    elif isinstance(change, Erase):
        erased = list(change.sources) or [""]
        cursor.execute(*_FIELDS.select(_FIELDS.field, where=(
            (_FIELDS.relationship == change.relationship)
            & (_FIELDS.source.in_(erased) | _FIELDS.share.in_(erased)))))  # fmt: skip
        gone = {str(name) for (name,) in cursor.fetchall()}
        if change.sources:
            gone |= _legacy_after(cursor, change.relationship, erased)
        for name in sorted(gone):
            _drop_field(cursor, change.relationship, name)
    elif isinstance(change, Lead):
        return "sale.opportunity", _lead(party, change)
    elif isinstance(change, TakeUp):
        _take_up(cursor, party, change)
    return None


#: How every note the bridge writes from an event starts: the event's time and id
#: (``changes_of``'s stamp).
_STAMPED = re.compile(r"^-?\d{4,}-\d\d-\d\d \d\d:\d\d UTC \[(evt_[0-9a-f]+)\] ")


def _forget(cursor: Any, relationship: str, party: Any) -> None:
    """The vendor deleted ``relationship`` (§11.8-3, :class:`Forget`), and so does the CRM
    what it made of it: the notes written from its events (by their stamp's event id, on its
    own party and on the one it is followed to, :func:`_party`, when the staff replaced it;
    applied before the bridge recorded an event's relationship, a stamped note on its own
    party), every field still held from it; and its
    leads still open — that of its intentcast, or of the offer it took up — are lost. What the
    staff wrote themselves stays, and so does the party (it keeps the lost lead)."""
    pool = Pool()
    parties, notes = pool.get("party.party"), pool.get("ir.note")
    with Transaction().set_context(active_test=False):
        own = parties.search([("code", "=", "vrm-" + relationship)], limit=1)
    on = {str(p): p for p in [*own, party]}
    stamped = {n: m.group(1) for n in notes.search([("resource", "in", list(on))])
               if (m := _STAMPED.match(n.message or "")) is not None}  # fmt: skip
    cursor.execute(*_EVENTS.select(_EVENTS.id, _EVENTS.relationship,
                                   where=_EVENTS.id.in_(sorted(set(stamped.values())) or [""])))
    whose = {str(event_id): rel for event_id, rel in cursor.fetchall()}
    own_resources = {str(p) for p in own}
    notes.delete([n for n, event_id in stamped.items() if whose.get(event_id) == relationship
                  or (str(n.resource) in own_resources and whose.get(event_id, "") is None)])
    _prune(cursor, relationship)
    cursor.execute(*_FIELDS.select(_FIELDS.field, where=_FIELDS.relationship == relationship))
    for (name,) in sorted(cursor.fetchall()):
        _drop_field(cursor, relationship, str(name))
    opportunities = pool.get("sale.opportunity")
    open_leads = opportunities.search([
        ("state", "in", ["lead", "opportunity"]),
        ["OR", [("reference", "=", "vrm-" + relationship), ("party", "=", party.id)],
         ("party", "in", [p.id for p in own])],
    ])  # fmt: skip
    if open_leads:
        opportunities.write(open_leads, {"lost_reason": "The relationship expired without an "
                                         "agreement: the vendor deleted it (§11.8-3)"})
        opportunities.lost(open_leads)


def _inherited(cursor: Any, change: Hold, name: str) -> Hold:
    """``change`` (of an address update that did not say its shares) for field ``name``, held
    as the value it replaces is (§5.3.6-2): under the share of a value held with an expiry
    (its ``share``, else its ``source``), until then; under :data:`LEGACY` when that value's
    share is unknown too; under none when no value was held."""
    cursor.execute(*_FIELDS.select(_FIELDS.source, _FIELDS.share, _FIELDS.expires, where=(
        (_FIELDS.relationship == change.relationship) & (_FIELDS.field == name))))  # fmt: skip
    row = cursor.fetchone()
    if row is None:
        return dataclasses.replace(change, share=None)
    source, share, expires = row
    if expires is not None:
        return dataclasses.replace(change, share=str(share or source), expires_ms=int(expires))
    return change if share == LEGACY else dataclasses.replace(change, share=None)


def _legacy_after(cursor: Any, relationship: str, erased: list[str]) -> set[str]:
    """The fields held under :data:`LEGACY` from an event later in the feed than the first of
    the ``erased`` shares' events (every such field when one of them was not applied here):
    such an update did not say which share each value was held under, so any may have been one
    of theirs (§5.3.6-2). May erase a value no erased share held; never keeps one it did."""
    cursor.execute(*_EVENTS.select(_EVENTS.id, _EVENTS.pos, where=_EVENTS.id.in_(erased)))
    known = {str(event_id): int(pos) for event_id, pos in cursor.fetchall()}
    since = min(known.values()) if len(known) == len(set(erased)) else -1
    joined = _FIELDS.join(_EVENTS, type_="LEFT", condition=_FIELDS.source == _EVENTS.id)
    cursor.execute(*joined.select(_FIELDS.field, _EVENTS.pos, where=(
        (_FIELDS.relationship == relationship) & (_FIELDS.share == LEGACY))))  # fmt: skip
    return {str(name) for name, pos in cursor.fetchall() if pos is None or int(pos) > since}


#: How many Replace steps :func:`_party` follows (a party replaced by one replaced in turn…).
MAX_REPLACED = 16


def _party(relationship: str, *, make: bool = True) -> Any:
    """The relationship's party, made on first use (None when not ``make``). An archived one
    (``active`` unset by the vendor's staff) is still the relationship's: a new one could not
    take its code, which Tryton keeps unique. One the staff replaced by another (Tryton's
    Replace wizard: the customer was a party they had) is that other one's, and so on down the
    line."""
    parties = Pool().get("party.party")
    with Transaction().set_context(active_test=False):
        found = parties.search([("code", "=", "vrm-" + relationship)], limit=1)
    if not found and not make:
        return None
    if not found:
        party = parties(name=f"VRM customer {relationship[:12]}", code="vrm-" + relationship)
        party.save()
        return party
    party = found[0]
    for _ in range(MAX_REPLACED):
        if getattr(party, "replaced_by", None) is None:
            break
        party = party.replaced_by
    return party


def _moved_back(record: Any, relationship: str) -> None:
    """``record``, a contact mechanism or address the bridge holds a field in and writes again,
    made active if the Replace wizard archived it when it moved it from the relationship's
    party to the one replacing it: there the staff look for the customer's current values. One
    archived on the relationship's own party stays as the staff left it."""
    if record.active or getattr(record.party, "code", None) == "vrm-" + relationship:
        return
    record.active = True


def _prune(cursor: Any, relationship: str) -> None:
    """Forget the held fields whose Tryton record is gone: the vendor's staff deleted the party
    (its contact mechanisms and addresses go with it) or the record itself. Written to or
    deleted again, such a record would make Tryton refuse the event, and the bridge would stop
    at it on every restart."""
    cursor.execute(*_FIELDS.select(_FIELDS.field, _FIELDS.model, _FIELDS.record,
                                   where=_FIELDS.relationship == relationship))  # fmt: skip
    rows = [(str(name), str(model), int(record)) for name, model, record in cursor.fetchall()]
    alive = {model: _exists(model, [r for _, m, r in rows if m == model])
             for model in {model for _, model, _ in rows}}  # fmt: skip
    for name, model, record in rows:
        if record not in alive[model]:
            _forget_row(cursor, relationship, name)


def _exists(model: str, ids: list[int]) -> set[int]:
    """Which of ``ids`` are records of ``model`` (archived ones too)."""
    with Transaction().set_context(active_test=False):
        return {int(r.id) for r in Pool().get(model).search([("id", "in", ids)])}


def _note(resource: Any, text: str) -> None:
    Pool().get("ir.note")(resource=str(resource), message=text).save()


def _held_since(cursor: Any, relationship: str, name: str, pos: int) -> bool:
    """Whether the value held under ``name`` came from an event after ``pos`` in the feed: this
    one comes late (a dead letter replayed, a webhook's retry outlasting the relationship's
    next events), and the customer's later value stays."""
    joined = _FIELDS.join(_EVENTS, condition=_FIELDS.source == _EVENTS.id)
    cursor.execute(*joined.select(_EVENTS.pos, where=(
        (_FIELDS.relationship == relationship) & (_FIELDS.field == name))))  # fmt: skip
    row = cursor.fetchone()
    return row is not None and int(row[0]) > pos


def _hold(cursor: Any, party: Any, change: Hold, name: str, value: str) -> None:
    """Hold ``value`` under ``name``: it replaces what was held under that name (§12.10-1).
    An empty value replaces it with nothing: what was held goes (Tryton requires a contact
    mechanism's value, and would refuse the event for good)."""
    if not value.strip():
        _drop_field(cursor, change.relationship, name)
        return
    model, record, attr = _place(cursor, party, change, name, value)
    _forget_row(cursor, change.relationship, name)
    cursor.execute(*_FIELDS.insert(
        [_FIELDS.relationship, _FIELDS.field, _FIELDS.source, _FIELDS.expires, _FIELDS.model,
         _FIELDS.record, _FIELDS.attr, _FIELDS.share],
        [[change.relationship, name, change.source, change.expires_ms, model, record, attr,
          change.share]],
    ))  # fmt: skip


def _place(cursor: Any, party: Any, change: Hold, name: str, value: str) -> tuple[str, int, str]:
    """Write ``value`` into the Tryton record for field ``name``: (model, id, attribute)."""
    pool = Pool()
    held = _row(cursor, change.relationship, name)
    target = _address_target(pool, name, value, _held_country(cursor, change.relationship))
    if name == "country":  # Tryton keeps an address's subdivision in its country
        _region_out_of_country(cursor, party, change.relationship,
                               target[1] if target is not None else None)  # fmt: skip
    if held is not None and held[0] == _ADDR and (target is None or target[0] != held[2]):
        _drop_field(cursor, change.relationship, name)  # it moves to another record
        held = None
    if target is not None:
        attr, stored = target
        address = _held_address(cursor, party, change.relationship)
        setattr(address, attr, stored)
        address.save()
        return _ADDR, int(address.id), attr
    return _mechanism(party, change, name, value, held[1] if held is not None and
                      held[0] == _CM else None)  # fmt: skip


def _mechanism(party: Any, change: Hold, name: str, value: str, record: int | None
               ) -> tuple[str, int, str]:  # fmt: skip
    """Hold ``value`` as the party's contact mechanism ``record`` (or a new one)."""
    mechanisms = Pool().get(_CM)
    provenance = f"vrmproto: {name}, from {change.source}" + (
        f", under {change.share}" if change.share not in (None, LEGACY) else ""
    ) + (f", until {when(change.expires_ms)}" if change.expires_ms is not None else "")
    mechanism = mechanisms(record) if record is not None else mechanisms(party=party)
    if record is not None:
        _moved_back(mechanism, change.relationship)
    mechanism.type = _CONTACT.get(name, "other")
    mechanism.value, mechanism.comment = value, provenance
    if mechanism.type != "other" and not _tryton_accepts(mechanisms, mechanism):
        mechanism.type = "other"  # Tryton would refuse to save it as that: keep it all the same
    mechanism.name = name if mechanism.type == "other" else None
    mechanism.save()
    return _CM, int(mechanism.id), ""


def _tryton_accepts(mechanisms: Any, mechanism: Any) -> bool:
    """Whether Tryton's own checks take ``mechanism`` as its type: an email address (with
    ``email_validator`` installed, one whose domain has no mail server is refused) or a phone
    number (with ``phonenumbers`` installed, one it cannot parse is). A customer's value that
    one refuses must not stop the bridge at that event on every restart."""
    try:
        mechanisms.check_valid_email([mechanism])
        mechanisms.check_valid_phonenumber([mechanism])
    except UserError:
        return False
    return True


def _address_target(pool: Any, name: str, value: str, country: Any
                    ) -> tuple[str, Any] | None:  # fmt: skip
    """The address attribute and value for field ``name``, or None for a contact mechanism.

    A country or region is taken only when exactly one matches, the customer's words matched
    as written (``%`` and ``_`` are not wildcards), and a region only within the address's
    ``country`` (Tryton refuses a subdivision of another country): "UT" is Utah, Utrecht
    (NL-UT) and Uttarakhand (IN-UT) — without a country it stays the customer's words."""
    if name in _ADDRESS:
        return _ADDRESS[name], value
    literal = escape_wildcard(value.strip())
    if name == "country":
        found = pool.get("country.country").search(
            ["OR", ("code", "=", value.strip().upper()), ("name", "ilike", literal)], limit=2
        )
        return ("country", found[0]) if len(found) == 1 else None
    if name == "region" and country is not None:  # a subdivision needs the address's country
        domain: list[Any] = [
            ("country", "=", country.id),
            ["OR", ("code", "=", f"{country.code}-{value.strip().upper()}"),
             ("name", "ilike", literal)],
        ]  # fmt: skip
        types = pool.get("party.address.subdivision_type").get_types(country)
        if types:
            domain.append(("type", "in", types))
        found = pool.get("country.subdivision").search(domain, limit=2)
        return ("subdivision", found[0]) if len(found) == 1 else None
    return None


def _region_out_of_country(cursor: Any, party: Any, relationship: str, country: Any) -> None:
    """The held region leaves the address when the address's country becomes another (or
    none): Tryton refuses an address whose subdivision is not in its country. It is kept, as
    the subdivision's name, in a contact mechanism, from the same share as before."""
    cursor.execute(*_FIELDS.select(_FIELDS.model, _FIELDS.record, _FIELDS.source,
                                   _FIELDS.expires, _FIELDS.share, where=(
        (_FIELDS.relationship == relationship) & (_FIELDS.field == "region"))))  # fmt: skip
    row = cursor.fetchone()
    if row is None or row[0] != _ADDR:
        return
    address = Pool().get(_ADDR)(int(row[1]))
    region = address.subdivision
    if region is None or (country is not None and region.country.id == country.id):
        return
    address.subdivision = None
    address.save()
    _forget_row(cursor, relationship, "region")
    source, expires = str(row[2]), None if row[3] is None else int(row[3])
    share = None if row[4] is None else str(row[4])
    model, record, attr = _mechanism(party, Hold(relationship, source, {}, expires, share),
                                     "region", str(region.name), None)  # fmt: skip
    cursor.execute(*_FIELDS.insert(
        [_FIELDS.relationship, _FIELDS.field, _FIELDS.source, _FIELDS.expires, _FIELDS.model,
         _FIELDS.record, _FIELDS.attr, _FIELDS.share],
        [[relationship, "region", source, expires, model, record, attr, share]],
    ))  # fmt: skip


def _held_country(cursor: Any, relationship: str) -> Any:
    """The country of the address held for ``relationship``, or None."""
    held = _row(cursor, relationship, "country")
    if held is None or held[0] != _ADDR:
        return None
    return Pool().get(_ADDR)(held[1]).country


def _held_address(cursor: Any, party: Any, relationship: str) -> Any:
    """The party's address that held fields go to (made on first use)."""
    addresses = Pool().get(_ADDR)
    cursor.execute(*_FIELDS.select(_FIELDS.record, where=(
        (_FIELDS.relationship == relationship) & (_FIELDS.model == _ADDR)), limit=1))  # fmt: skip
    row = cursor.fetchone()
    if row is not None:
        held = addresses(int(row[0]))
        _moved_back(held, relationship)
        return held
    address = addresses(party=party)
    address.save()
    return address


def _row(cursor: Any, relationship: str, name: str) -> tuple[str, int, str] | None:
    cursor.execute(*_FIELDS.select(_FIELDS.model, _FIELDS.record, _FIELDS.attr, where=(
        (_FIELDS.relationship == relationship) & (_FIELDS.field == name))))  # fmt: skip
    row = cursor.fetchone()
    return None if row is None else (str(row[0]), int(row[1]), str(row[2] or ""))


def _forget_row(cursor: Any, relationship: str, name: str) -> None:
    cursor.execute(*_FIELDS.delete(where=(
        (_FIELDS.relationship == relationship) & (_FIELDS.field == name))))  # fmt: skip


def _drop_field(cursor: Any, relationship: str, name: str) -> bool:
    """Delete the value held under ``name`` from Tryton, and the address once it is empty;
    False if none was held."""
    held = _row(cursor, relationship, name)
    if held is None:
        return False
    if name == "country":
        _region_out_of_country(cursor, _party(relationship), relationship, None)
    model, record, attr = held
    _forget_row(cursor, relationship, name)
    records = Pool().get(model)
    if model == _CM:
        records.delete([records(record)])
        return True
    address = records(record)
    setattr(address, attr, None)
    address.save()
    cursor.execute(*_FIELDS.select(_FIELDS.field, where=(
        (_FIELDS.model == _ADDR) & (_FIELDS.record == record)), limit=1))  # fmt: skip
    if cursor.fetchone() is None:
        records.delete([address])
    return True


def _lead(party: Any, change: Lead) -> int:
    """The intent thread's opportunity, made or brought up to date with this offer."""
    pool = Pool()
    opportunities = pool.get("sale.opportunity")
    reference = "vrm-" + change.relationship
    found = opportunities.search([("reference", "=", reference)], limit=1)
    lead = found[0] if found else opportunities(reference=reference, party=party,
                                                company=_company())  # fmt: skip
    price: Money = change.price
    lead.currency = _currency(price.currency)
    lead.amount = Decimal(price.amount).scaleb(-price.exponent)
    lead.description = change.description[:250]
    conditions = "; ".join(change.conditions) or "none"
    lead.comment = (
        f"Offer {change.offer}: {change.description}\nPrice: {price}\n"
        f"Conditions: {conditions}\nValid until: {when(change.valid_until_ms)}"
    )
    lead.save()
    return int(lead.id)


def _company() -> Any:
    return Pool().get("company.company")(Transaction().context["company"])


def _take_up(cursor: Any, party: Any, change: TakeUp) -> None:
    """The offer's lead now belongs to the relationship that took it up (§5.4.5-2)."""
    cursor.execute(*_EVENTS.select(_EVENTS.model, _EVENTS.record,
                                   where=_EVENTS.id == change.offer))  # fmt: skip
    row = cursor.fetchone()
    if row is None or row[0] != "sale.opportunity" or not _exists(row[0], [int(row[1])]):
        _note(party, f"Takes up offer {change.offer}, which this CRM has no lead for")
        return
    lead = Pool().get("sale.opportunity")(int(row[1]))
    lead.party = party
    lead.save()
    _note(lead, f"Taken up by relationship {change.relationship} (offer {change.offer})")
    _note(party, f"Took up offer {change.offer} (opportunity {lead.number})")


def _currency(code: str) -> Any:
    """Tryton's currency ``code``, made with its ISO 4217 minor unit when it has none."""
    currencies = Pool().get("currency.currency")
    found = currencies.search([("code", "=", code)], limit=1)
    if found:
        return found[0]
    exponent = Money(0, code).exponent
    currency = currencies(name=code, code=code, symbol=code, digits=exponent,
                          rounding=Decimal(1).scaleb(-exponent))  # fmt: skip
    currency.save()
    return currency
