"""What the pages show, in words: terms, dates, data categories, and a history entry decoded.

Everything here turns the agent's values into plain values for the templates (strings, lists,
small dataclasses); the templates never reach into protocol objects themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vrmproto._envelope import Signed, open_envelope, open_sealed
from vrmproto._errors import ProtocolError
from vrmproto._history import Entry
from vrmproto._keys import Identity
from vrmproto._messages import (
    DataReturn,
    FieldsContent,
    Money,
    RecordsContent,
)
from vrmproto._state import State
from vrmproto._vocab import DataRecord, TermRef, VocabError, category_label, get_term, purpose_label
from vrmproto.cli._parse import utc_text
from vrmproto.store import ShareNote

__all__ = [
    "STATE_WORDS",
    "DecodedEntry",
    "TermWords",
    "decode_entry",
    "records_rows",
    "term_words",
    "when",
]

#: A relationship's state as the mark's caption says it (§7.1).
STATE_WORDS: Mapping[State, str] = {
    State.NONE: "not started",
    State.OFFERED: "offered — waiting for the vendor",
    State.AGREED: "agreed",
    State.REJECTED: "refused",
    State.COUNTERED: "countered — your answer is awaited",
    State.INTENT_OPEN: "intentcast open",
    State.INTENT_ANSWERED: "intentcast answered",
    State.INTENT_DECLINED: "intentcast declined",
    State.ENDED: "ended",
}

#: Body fields holding a time (ms since the epoch).
_TIME_FIELDS = frozenset({"expires", "valid_until", "reply_by", "start", "end"})


@dataclass(frozen=True, slots=True)
class TermWords:
    """One term as a person reads it: its title, and the id that names it on the record."""

    id: str
    title: str
    params: str


def term_words(refs: Iterable[TermRef]) -> list[TermWords]:
    out = []
    for ref in refs:
        try:
            title = get_term(ref.id, ref.version).title
        except KeyError:
            title = ref.id
        params = ", ".join(f"{k} = {v}" for k, v in ref.params.items())
        out.append(TermWords(f"{ref.id} v{ref.version}", title, params))
    return out


def when(ms: int | None) -> str:
    """A time in ms since the epoch as a person reads it (UTC)."""
    if not ms:
        return "—"
    return utc_text(ms)  # any time a message can carry, past year 9999 too


def _label(fn: Any, n: int) -> str:
    try:
        return str(fn(n))
    except VocabError:
        return str(n)


def records_rows(records: Iterable[DataRecord]) -> list[dict[str, str]]:
    """The rows of a "my data" table (§6.8)."""
    return [{"field": r.field, "value": r.value, "category": _label(category_label, r.category),
             "source": r.source, "collected": when(r.collected),
             "purposes": ", ".join(_label(purpose_label, p) for p in r.purposes)}
            for r in records]  # fmt: skip


@dataclass(frozen=True, slots=True)
class DecodedEntry:
    """One history entry as the relationship page lists it."""

    index: int
    outgoing: bool
    type: str
    created: str
    hash: str
    lines: tuple[tuple[str, str], ...]


def _value(name: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bytes):
        return value.hex()[:16] + "…" if len(value) > 8 else value.hex()
    if isinstance(value, Money):
        return str(value)
    if name in _TIME_FIELDS and isinstance(value, int):
        return when(value)
    if name == "purposes":
        return ", ".join(_label(purpose_label, p) for p in value)
    if name == "categories":
        return ", ".join(_label(category_label, c) for c in value)
    if isinstance(value, tuple) and value and isinstance(value[0], TermRef):
        return "; ".join(f"{t.title} ({t.id})" for t in term_words(value))
    if isinstance(value, tuple):
        return ", ".join(_value(name, v) for v in value) or "—"
    return str(value)


def _sealed(message: Signed[Any], identity: Identity | None,
            notes: Mapping[bytes, ShareNote]) -> str:  # fmt: skip
    """The sealed content in words: opened where we hold the key (§5.5), else why not."""
    note = notes.get(message.hash)
    if note is not None:  # what we shared: our own note of it (the box is the vendor's)
        return ", ".join(f"{k} = {v}" for k, v in note.fields)
    if identity is None or message.recipient != identity.public_key:
        return "sealed to the vendor: only they can open it"
    content_type = RecordsContent if isinstance(message.body, DataReturn) else FieldsContent
    try:
        content = open_sealed(message, identity=identity, content_type=content_type)
    except ProtocolError as exc:
        return f"sealed; it does not open: {exc}"
    if isinstance(content, RecordsContent):
        return "; ".join(f"{r.field} = {r.value}" for r in content.records) or "no records"
    return ", ".join(f"{k} = {v}" for k, v in sorted(content.fields.items()))


def decode_entry(entry: Entry, identity: Identity | None,
                 notes: Mapping[bytes, ShareNote]) -> DecodedEntry:  # fmt: skip
    """``entry`` with its body in words (the reason of a rejection, counter terms, an offer,
    what was shared); sealed content opened with ``identity`` where it is addressed to it.

    An entry whose envelope breaks a rule (one our agent signed before checking it, waiting in
    the outbox for the vendor to refuse it) is listed as one that does not decode, with why:
    the rest of the history and of the page still show."""
    try:
        message = open_envelope(entry.envelope, now=0, check_time=False, allow_erased=True)
    except ProtocolError as exc:
        why = (("why", f"does not decode: {exc}"),)
        return DecodedEntry(entry.index, entry.outgoing, "(does not decode)", when(None),
                            entry.msg_hash.hex(), why)  # fmt: skip
    lines: list[tuple[str, str]] = []
    body = message.body
    if body is None:
        lines.append(("body", "erased (§8.4): only its hash remains"))
    else:
        for f in dataclasses.fields(body):
            value = getattr(body, f.name)
            if f.name == "sealed":
                lines.append(("content", _sealed(message, identity, notes)))
            elif f.name not in ("enc_key", "proof", "new_enc_key") and value not in (None, ()):
                lines.append((f.name.replace("_", " "), _value(f.name, value)))
    return DecodedEntry(entry.index, entry.outgoing, message.type, when(message.header.created),
                        entry.msg_hash.hex(), tuple(lines))  # fmt: skip
