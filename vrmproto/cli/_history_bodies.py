"""A history entry as a person reads it: the decoded body, a one-line summary, sealed content.

``vrm history`` used to show types and hashes only, so the signed reason of a rejection, a
counter-offer's terms or an offer's price could not be read. :func:`decode_entry` opens each
stored envelope again (its signature and body hash were checked when the history was loaded,
§8.2-1), turns the body into JSON and a sentence, and opens sealed content (§5.5) where we hold
the key: a ``data.return`` is sealed to us. What we sealed to the vendor (a ``data.share``, an
``address.update``) only it can open; for a share our own note of the values is shown instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from vrmproto._envelope import Signed, open_envelope, open_sealed
from vrmproto._errors import ProtocolError
from vrmproto._history import Entry
from vrmproto._keys import Identity, fingerprint
from vrmproto._messages import (
    AddressUpdate,
    DataErased,
    DataRequest,
    DataReturn,
    DataShare,
    DataWithdraw,
    Intentcast,
    IntentDecline,
    IntentOffer,
    KeyRotate,
    Money,
    ProblemReport,
    Receipt,
    RecordsContent,
    RelationshipEnd,
    TermsAccept,
    TermsOffer,
    TermsReject,
)
from vrmproto._vocab import DataRecord, TermRef
from vrmproto.cli._output import money_json, record_json, term_json, terms_short
from vrmproto.cli._parse import format_date
from vrmproto.store import ShareNote

__all__ = ["body_json", "decode_entry", "summary"]

#: Our identity whose public key is given, if we hold it (the ledger's look-up).
IdentityOf = Callable[[bytes], Identity | None]


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, TermRef):
        return term_json(value)
    if isinstance(value, Money):
        return money_json(value)
    if isinstance(value, DataRecord):
        return record_json(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def body_json(body: Any) -> dict[str, Any] | None:
    """Every field of a message body, bytes as hex, terms and prices as the CLI shows them."""
    if body is None or not dataclasses.is_dataclass(body):
        return None
    return {f.name: _jsonable(getattr(body, f.name)) for f in dataclasses.fields(body)}


def _terms(refs: Any) -> str:
    return terms_short(refs) if refs else "—"


def _data_summary(body: Any, fields: Mapping[str, str] | None) -> str | None:
    if isinstance(body, DataShare):
        what = ", ".join(f"{k}={v}" for k, v in fields.items()) if fields else "sealed data"
        return f"shared {what} (until {format_date(body.expires)})"
    if isinstance(body, DataWithdraw):
        which = f"{len(body.shares)} share(s)" if body.shares else "everything shared"
        return f"withdrew {which}" + (f": {body.reason}" if body.reason else "")
    if isinstance(body, DataErased):
        return f"deleted {len(body.shares)} share(s), as asked"
    if isinstance(body, DataRequest):
        return f"asked for your data ({body.format})"
    if isinstance(body, DataReturn):
        if fields is None:
            return f"returned your data ({body.format}), sealed"
        return f"returned {len(fields)} record(s): " + ", ".join(
            f"{k}={v}" for k, v in fields.items())  # fmt: skip
    return None


def summary(body: Any, fields: Mapping[str, str] | None = None) -> str:
    """One line a person reads: the reason of a rejection, the counter terms, the price, …"""
    data = _data_summary(body, fields)
    if data is not None:
        return data
    if isinstance(body, TermsOffer):
        taking = f", taking up offer {body.in_reply_to.hex()[:8]}" if body.in_reply_to else ""
        return f"your terms: {_terms(body.terms)}{taking}"
    if isinstance(body, TermsAccept):
        return f"accepted: {_terms(body.terms)}"
    if isinstance(body, TermsReject):
        refused = f" (refused: {', '.join(body.refused)})" if body.refused else ""
        counter = f"; counter-offer: {_terms(body.counter)}" if body.counter else ""
        return f"rejected: “{body.reason}”{refused}{counter}"
    if isinstance(body, Intentcast):
        return f"intentcast: {body.what}" + (f" in {body.where}" if body.where else "")
    if isinstance(body, IntentOffer):
        return (f"offer: {body.description} — {body.price}, valid until "
                f"{format_date(body.valid_until)}")  # fmt: skip
    if isinstance(body, IntentDecline):
        return f"declined: “{body.reason}”"
    if isinstance(body, Receipt):
        return f"receipt for {body.ack.hex()[:12]}"
    if isinstance(body, ProblemReport):
        return f"problem {body.code}: {body.detail}"
    if isinstance(body, KeyRotate):
        return f"moved to key {fingerprint(body.new_key)} ({body.reason})"
    if isinstance(body, RelationshipEnd):
        return "ended the relationship" + (f": {body.reason}" if body.reason else "")
    if isinstance(body, AddressUpdate):  # its fields are sealed to the vendor (§5.3.6, §5.5)
        return f"new contact details, under agreement {body.agreement.hex()[:12]} (sealed)"
    return "(erased, §8.4)" if body is None else type(body).__name__


def _opened(msg: Signed[Any], identity_of: IdentityOf,
            notes: Mapping[bytes, ShareNote]) -> tuple[dict[str, str] | None, str]:  # fmt: skip
    """The sealed content's fields where we can read them, and how we read them."""
    body = msg.body
    if isinstance(body, DataShare):
        note = notes.get(msg.hash)
        if note is None:
            return None, "sealed to the vendor"
        return dict(note.fields), "your note of what you shared (sealed to the vendor)"
    if isinstance(body, DataReturn) and msg.recipient is not None:
        identity = identity_of(msg.recipient)
        if identity is None:
            return None, "sealed to a key of yours no longer held"
        try:
            content = open_sealed(msg, identity=identity, content_type=RecordsContent)
        except (ProtocolError, ValueError) as exc:
            return None, f"sealed to you, but it does not open: {exc}"
        return {r.field: r.value for r in content.records}, "opened with your key"
    if hasattr(body, "sealed"):
        return None, "sealed to the vendor"
    return None, ""


def decode_entry(e: Entry, identity_of: IdentityOf,
                 notes: Mapping[bytes, ShareNote]) -> dict[str, Any]:  # fmt: skip
    """The JSON row of one history entry, with its decoded body and summary."""
    row: dict[str, Any] = {"index": e.index, "hash": e.msg_hash.hex(), "link": e.link.hex(),
                           "direction": "out" if e.outgoing else "in"}  # fmt: skip
    msg = open_envelope(e.envelope, now=0, check_time=False, allow_erased=True)
    fields, how = _opened(msg, identity_of, notes)
    row.update(
        type=msg.type, created=msg.header.created, erased=msg.body is None,
        signed_by=fingerprint(msg.sender), body=body_json(msg.body),
        summary=summary(msg.body, fields), sealed=how or None, content=fields,
    )  # fmt: skip
    return row
