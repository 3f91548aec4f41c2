"""Regenerate the spec's tables from the code, so that the two cannot drift apart.

Every table in ``spec/*.md`` that mirrors a declaration in ``vrmproto`` sits between two markers::

    <!-- BEGIN GENERATED: fields:terms.offer -->
    …replaced on every run…
    <!-- END GENERATED: fields:terms.offer -->

This script rewrites the text between each pair from the code: the message field tables and the
who-sends-what overview (§5, from ``_messages.py``), a worked example produced by the real
signing code (§5.7), the processing order of §4.5-1 (from ``_steps.py``, step 30 from the rules
of ``_rules.py``), the states, the transition table and its diagram (§7, from ``_state.py``),
the problem-code registry (§9, from ``_errors.Problem``) and the limits tables (§10, from
``_limits.Limits`` and ``server._connections.ConnectionLimits`` and their ``#:`` comments).
Running it twice changes nothing.

    python scripts/gen_spec.py           rewrite stale blocks in place
    python scripts/gen_spec.py --check   change nothing; print a diff and exit 1 if any block is
                                         stale, unknown or missing

``tests/test_spec_generated.py`` calls :func:`problems` so that ``make test`` fails on drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import difflib
import inspect
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from vrmproto import _codec
from vrmproto._envelope import sign_message
from vrmproto._errors import Problem
from vrmproto._fields import Bin, Choice, Custom, Int, Kind, List, Record, Str, StrMap
from vrmproto._keys import Context, Identity, MasterSeed
from vrmproto._limits import Limits
from vrmproto._messages import MESSAGE_TYPES, FieldsContent, Money, RecordsContent, TermsOffer
from vrmproto._relationship import Relationship
from vrmproto._state import Role, State, mermaid, table_markdown
from vrmproto._steps import table_markdown as processing_order_table
from vrmproto._vocab import TermRef, latest
from vrmproto.server._connections import ConnectionLimits

ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = ROOT / "spec"

_MARKER = re.compile(
    r"(?P<begin><!-- BEGIN GENERATED: (?P<name>\S+) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<end><!-- END GENERATED: (?P=name) -->)",
    re.S,
)
_BEGIN = re.compile(r"<!-- BEGIN GENERATED: (\S+) -->")


class SpecError(Exception):
    """A marker the generator cannot handle: an unknown block name or an unclosed block."""


# -- words the code does not carry ---------------------------------------------------------------
#
# Each dict below must name exactly the members of its enum; the generator refuses to run when
# one is missing or extra, so a new problem code or state cannot reach the code without a line
# of spec text.


class ProblemText(NamedTuple):
    """What the spec says about one problem code (§9.2). Whether it may be retried is the
    registry's (:attr:`Problem.retryable`), not the text's."""

    when: str


PROBLEM_TEXT: Mapping[Problem, ProblemText] = {
    Problem.MALFORMED: ProblemText(
        "the bytes are not a well-formed, canonical encoding of an envelope, header, body or "
        "sealed content (§3.3, §3.4, §5.5-3), or a body nests deeper than `max_depth` (§10-2)"
    ),
    Problem.TOO_LARGE: ProblemText(
        "the envelope is larger than the receiver's `max_envelope_bytes` (§10-1), or a first "
        "contact is larger than the first-contact limits allow (§10-15)"
    ),
    Problem.INVALID_FIELD: ProblemText(
        "a header or body field is missing, nil, of the wrong type or out of bounds (§4.2, "
        "§5.1), or breaks a rule of its message type (§5.2 to §5.6), or a term reference or "
        "data record is ill-formed (§6)"
    ),
    Problem.UNSUPPORTED_VERSION: ProblemText(
        "the header's protocol version `v` is not one the receiver speaks (§4.2-1); the problem "
        "carries `supported_versions`"
    ),
    Problem.UNKNOWN_TYPE: ProblemText("the header's `type` is not a message type of §5 (§4.2-3)"),
    Problem.ENVELOPE_MISMATCH: ProblemText(
        "an unsigned routing copy (`to`, `type`) differs from the signed header (§3.4-4), or "
        "sealed content names another message (§5.5-6)"
    ),
    Problem.BAD_SIGNATURE: ProblemText(
        "a signature does not verify: the envelope's (§3.5), a sealed content's (§5.5), a key "
        "rotation proof (§5.6.3) or a discovery document's (§13)"
    ),
    Problem.BAD_KEY: ProblemText(
        "a public key is not a valid Ed25519 key: not canonical, or of small order (§2.1-2)"
    ),
    Problem.EXPIRED: ProblemText(
        "the message's `expires` has passed at the receiver (§4.5-3), or a signed request or "
        "document is outside its validity window (§12.5, §13)"
    ),
    Problem.CLOCK_SKEW: ProblemText(
        "the message's `created` lies further in the future than `max_clock_skew_ms` (§4.5-4); "
        "the problem carries `server_time`"
    ),
    Problem.WRONG_RECIPIENT: ProblemText(
        "the message (§4.5-2) or its sealed content (§5.5-5) is addressed to another key"
    ),
    Problem.ID_CONFLICT: ProblemText(
        "the sender already used this message id for another message, or the message is "
        "already in the history (§4.5-7, §12)"
    ),
    Problem.UNKNOWN_TERM: ProblemText(
        "a term reference names a term the receiver does not know, or its text hash differs "
        "(§6.2-3)"
    ),
    Problem.NO_AGREEMENT: ProblemText(
        "a message names an agreement that is not this relationship's agreement (§5.3-1)"
    ),
    Problem.NO_RELATIONSHIP: ProblemText(
        "the message's thread is not a relationship the receiver holds, and the message does "
        "not open one (§4.5-5, §12.5)"
    ),
    Problem.NOT_A_PARTY: ProblemText(
        "the sender's key is not the peer's key in this relationship (§4.5-5, §12.5)"
    ),
    Problem.ILLEGAL_TRANSITION: ProblemText(
        "the relationship's state does not allow this message from this sender (§7-1, §7-2)"
    ),
    Problem.CHAIN_BROKEN: ProblemText(
        "the header's `prev` is not the hash of the last message the receiver holds from the "
        "sender in this thread (§4.5-6)"
    ),
    Problem.CANNOT_DECRYPT: ProblemText(
        "sealed content cannot be opened with the receiver's X25519 key (§5.5-4)"
    ),
    Problem.KEY_ROTATED: ProblemText(
        "the message is signed by a key the sender has rotated away from in this relationship "
        "(§2.6-3)"
    ),
    Problem.KEY_REVOKED: ProblemText(
        "the message is signed by a key the sender revoked as compromised (§2.6-4)"
    ),
    Problem.RATE_LIMITED: ProblemText(
        "the sender or the client address sent more than the receiver's rate limits allow "
        "(§10-6, §10-7), or a first contact is over an admission budget (§10-16, §10-17, "
        "§11.8-4); the problem carries `retry_after`"
    ),
    Problem.UNSUPPORTED_MEDIA_TYPE: ProblemText(
        "an HTTP request body is not of the protocol's media type (§12)"
    ),
    Problem.METHOD_NOT_ALLOWED: ProblemText("an HTTP route was called with another method (§12)"),
    Problem.NOT_FOUND: ProblemText(
        "an HTTP request names a route the receiver does not serve (§12)"
    ),
    Problem.REQUEST_TIMEOUT: ProblemText(
        "the request body did not arrive within `body_read_timeout_ms` (§10-8)"
    ),
    Problem.UNAUTHORIZED: ProblemText(
        "an HTTP request that must be signed carries no usable signature (§12)"
    ),
    Problem.INTERNAL: ProblemText(
        "the receiver failed for a reason of its own, not because of the message; it stored "
        "nothing (§12)"
    ),
    Problem.STORAGE_FULL: ProblemText(
        "the receiver has no room to store the message now (§11.8-4); nothing was stored; the "
        "problem carries `retry_after`"
    ),
}

STATE_TEXT: Mapping[State, str] = {
    State.NONE: "no message has been exchanged in the thread yet",
    State.OFFERED: "the customer has offered terms; the vendor has not answered",
    State.AGREED: "the vendor accepted the open offer: the parties hold an agreement (§5.2.2)",
    State.REJECTED: "the vendor refused the offer without a counter-offer",
    State.COUNTERED: "the vendor refused the offer and proposed other terms",
    State.INTENT_OPEN: "the customer sent an intentcast; the vendor has not answered",
    State.INTENT_ANSWERED: "the vendor answered the intentcast with one or more offers",
    State.INTENT_DECLINED: "the vendor declined the intentcast",
    State.ENDED: "either party ended the relationship; only receipts may follow",
}

#: Where each named record type is defined, for the field tables.
TYPE_REFS: Mapping[str, str] = {
    "TermRef": "term reference, §6.2-2",
    "DataRecord": "data record, §6.8-1",
    "Money": "Money, 5.4.4",
}


def _check_covers(name: str, text: Mapping[Any, Any], members: Iterable[Any]) -> None:
    want = set(members)
    if set(text) != want:
        missing = sorted(str(m) for m in want - set(text))
        extra = sorted(str(m) for m in set(text) - want)
        raise SpecError(f"{name} does not match the code: missing {missing}, extra {extra}")


# -- helpers -------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _rst_to_md(text: str) -> str:
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split())
    match = re.match(r"(.+?\.)(\s|$)", text)
    return match.group(1) if match else text


def _docstring_section(cls: type[Any]) -> str:
    """The §5 subsection a class's docstring cites first, e.g. ``5.2.1``."""
    match = re.search(r"§(5\.\d+(?:\.\d+)?)", cls.__doc__ or "")
    if match is None:
        raise SpecError(f"{cls.__name__}'s docstring cites no §5 subsection")
    return match.group(1)


def _kind_text(kind: Kind) -> str:
    """The wire type of a field: ``Kind.describe()``, with the bounds it leaves out."""
    described = kind.describe()
    text = f"`{_cell(described)}`"
    refs = [ref for name, ref in TYPE_REFS.items() if re.search(rf"\b{name}\b", described)]
    if refs:
        text += f" ({'; '.join(refs)})"
    extras: list[str] = []
    if isinstance(kind, List):
        extras.append(f"{kind.min_len}–{kind.max_len} items")
    if isinstance(kind, Bin) and kind.size is None and kind.max_size is not None:
        extras.append(f"at most {kind.max_size} bytes")
    if isinstance(kind, Str):
        if kind.empty:
            extras.append("may be empty")
        if kind.pattern is not None:
            extras.append(f"matching `{_cell(kind.pattern.pattern)}`")
    if isinstance(kind, StrMap):
        extras.append(
            f"{kind.min_items}–{kind.max_items} entries, names of 1–64 characters, values of at "
            f"most {kind.max_value} characters"
        )
    return text + "".join(f", {e}" for e in extras)


def _field_rows(cls: type[Any]) -> list[str]:
    rows = ["| field | type | presence | meaning |", "|---|---|---|---|"]
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name):
        meta = f.metadata
        if "kind" not in meta:
            continue
        presence = "optional" if meta["optional"] else "required"
        rows.append(
            f"| `{f.name}` | {_kind_text(meta['kind'])} | {presence} | {_cell(meta['doc'])} |"
        )
    return rows


_SENDERS = {"customer": "the customer", "vendor": "the vendor", "either": "either party"}


# -- the blocks ----------------------------------------------------------------------------------


def _message_types() -> str:
    rows = ["| type | sent by | defined in | what it does |", "|---|---|---|---|"]
    for name, cls in MESSAGE_TYPES.items():
        what = _rst_to_md(re.sub(r"\s*\(§[^)]*\)", "", _first_sentence(cls.__doc__)))
        rows.append(
            f"| `{name}` | {_SENDERS[cls.SENT_BY]} | {_docstring_section(cls)} | {_cell(what)} |"
        )
    return "\n".join(rows) + "\n"


def _fields(msg_type: str) -> str:
    cls = MESSAGE_TYPES[msg_type]
    lines = [f"Sent by: {_SENDERS[cls.SENT_BY]}. Body fields, in canonical order:", ""]
    return "\n".join([*lines, *_field_rows(cls)]) + "\n"


_RECORDS: Mapping[str, type[Any]] = {
    "Money": Money,
    "FieldsContent": FieldsContent,
    "RecordsContent": RecordsContent,
}


def _record(name: str) -> str:
    return "\n".join(_field_rows(_RECORDS[name])) + "\n"


def _states() -> str:
    _check_covers("STATE_TEXT", STATE_TEXT, State)
    rows = ["| state | meaning |", "|---|---|"]
    rows += [f"| `{s.value}` | {_cell(STATE_TEXT[s])} |" for s in State]
    return "\n".join(rows) + "\n"


def _transitions() -> str:
    return table_markdown()


def _diagram() -> str:
    return "```mermaid\n" + mermaid() + "```\n"


def _problem_codes() -> str:
    _check_covers("PROBLEM_TEXT", PROBLEM_TEXT, Problem)
    rows = ["| code | HTTP status | retry | when it is used |", "|---|---|---|---|"]
    for p in Problem:
        text = PROBLEM_TEXT[p]
        retry = "yes" if p.retryable else "no"
        rows.append(f"| `{p.value}` | {p.status} | {retry} | {_cell(text.when)} |")
    return "\n".join(rows) + "\n"


def _field_comments(cls: type[Any], clause: str) -> dict[str, tuple[str, str]]:
    """Each field's clause and meaning, from the ``#: §n-k: …`` comments above it in ``cls``;
    ``clause`` is the regular expression the clause must match."""
    out: dict[str, tuple[str, str]] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        field = re.match(r"(\w+)\s*:\s*int\s*=", stripped)
        if field is not None:
            text = " ".join(pending)
            match = re.match(rf"({clause}):\s*(.*)", text)
            if match is None:
                raise SpecError(f"{cls.__name__}.{field.group(1)} has no '#: §n-k: …' comment")
            out[field.group(1)] = (match.group(1), _rst_to_md(match.group(2)))
        pending = []
    return out


def limit_comments() -> dict[str, tuple[str, str]]:
    """Each limit's clause and meaning, read from the ``#:`` comments above it in ``Limits``."""
    return _field_comments(Limits, r"§10-\d+")


def connection_limit_comments() -> dict[str, tuple[str, str]]:
    """The same for ``ConnectionLimits`` (Table 10-2): clauses of §10.1, or §12.4."""
    return _field_comments(ConnectionLimits, r"§(?:10\.1|12\.4)-\d+")


def _human(name: str, value: int) -> str:
    if name.endswith("_bytes") and value % 1024 == 0:
        return f"{value // 1024} KiB" if value < 1024 * 1024 else f"{value // 2**20} MiB"
    if name.endswith("_ms"):
        parts = []
        for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
            if value >= size:
                parts.append(f"{value // size} {unit}")
                value %= size
        if value:
            parts.append(f"{value} ms")
        return " ".join(parts)
    return ""


def _limit_table(cls: type[Any], comments: Mapping[str, tuple[str, str]]) -> str:
    rows = ["| limit | default | clause | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        clause, meaning = comments[f.name]
        default = f.default
        assert isinstance(default, int)
        human = _human(f.name, default)
        shown = f"{default}" + (f" ({human})" if human else "")
        rows.append(f"| `{f.name}` | {shown} | {clause} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def _limits() -> str:
    return _limit_table(Limits, limit_comments())


def _connection_limits() -> str:
    return _limit_table(ConnectionLimits, connection_limit_comments())


# -- the worked example (§5.7) -------------------------------------------------------------------

EXAMPLE_MASTER_SEED = bytes(range(32))  # the customer of §2.3
EXAMPLE_VENDOR_SEED = bytes(32)  # the vendor of §2.2
EXAMPLE_ID = bytes(range(32, 48))  # §4.6 uses the bytes 0 to 15 and 16 to 31
EXAMPLE_THREAD = bytes(range(48, 64))
EXAMPLE_REPLY_IDS = (bytes(range(64, 80)), bytes(range(80, 96)))
EXAMPLE_NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EXAMPLE_LIFETIME = 86_400_000
EXAMPLE_ENDPOINT = "https://alice.example/vrm"


def _hex(data: bytes, width: int = 32) -> str:
    return "\n".join(data[i : i + width].hex() for i in range(0, len(data), width))


def _diag(value: Any, indent: int = 0) -> str:
    """msgpack diagnostic notation: maps, arrays, ``h'…'`` binaries, quoted strings."""
    pad = "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f'{pad}"{k}": {_diag(v, indent + 1)}' for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [pad + _diag(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    if isinstance(value, bytes):
        return f"h'{value.hex()}'"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "nil"
    return str(value)


def _utc(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _example_parties() -> tuple[Identity, Identity]:
    vendor = Identity(EXAMPLE_VENDOR_SEED)
    return MasterSeed(EXAMPLE_MASTER_SEED).pairwise(vendor.public_key, 0), vendor


def _example_offer_body(customer: Identity) -> TermsOffer:
    return TermsOffer(
        terms=(
            TermRef.of(latest("vrm.no-tracking")),
            TermRef.of(latest("vrm.delete-after"), days=90),
        ),
        enc_key=customer.enc_public_key,
        endpoint=EXAMPLE_ENDPOINT,
    )


def _example_terms_offer() -> str:
    customer, vendor = _example_parties()
    msg = sign_message(
        _example_offer_body(customer),
        identity=customer,
        recipient=vendor.public_key,
        thread=EXAMPLE_THREAD,
        prev=None,
        now=EXAMPLE_NOW,
        msg_id=EXAMPLE_ID,
        lifetime_ms=EXAMPLE_LIFETIME,
    )
    assert msg.body_bytes is not None
    envelope_map = _codec.decode(msg.envelope, max_depth=1)
    shown_envelope = {
        k: (
            f"<the {len(v)} {'body' if k == 'body' else 'header'} bytes above>"
            if k in ("body", "hdr")
            else v
        )
        for k, v in envelope_map.items()
    }
    expires = EXAMPLE_NOW + EXAMPLE_LIFETIME
    out = [
        "Inputs:",
        "",
        "```text",
        f"master seed              {EXAMPLE_MASTER_SEED.hex()}",
        f"vendor seed              {EXAMPLE_VENDOR_SEED.hex()}",
        f"vendor key (Ed25519)     {vendor.public_key.hex()}",
        f"customer key (Ed25519)   {customer.public_key.hex()}  (pairwise, generation 0)",
        f"customer key (X25519)    {customer.enc_public_key.hex()}",
        f"thread                   {EXAMPLE_THREAD.hex()}",
        f"id                       {EXAMPLE_ID.hex()}",
        f"created                  {EXAMPLE_NOW} ({_utc(EXAMPLE_NOW)})",
        f"expires                  {expires} ({_utc(expires)})",
        "```",
        "",
        f"The body ({len(msg.body_bytes)} bytes):",
        "",
        "```text",
        _diag(_codec.decode(msg.body_bytes)),
        "```",
        "",
        "```text",
        _hex(msg.body_bytes),
        "```",
        "",
        f"The header ({len(msg.hdr_bytes)} bytes); `body` is the SHA-256 of the body bytes:",
        "",
        "```text",
        _diag(_codec.decode(msg.hdr_bytes)),
        "```",
        "",
        "```text",
        _hex(msg.hdr_bytes),
        "```",
        "",
        "The signature: Ed25519 by the customer's key over the context "
        f"`{Context.MESSAGE.hex()}` (`vrmproto/v1/message` and a zero byte) followed by the "
        "header bytes:",
        "",
        "```text",
        _hex(msg.signature),
        "```",
        "",
        f"The envelope ({len(msg.envelope)} bytes), with the routing copies `to` and `type`:",
        "",
        "```text",
        _diag(shown_envelope).replace('"<', "<").replace('>"', ">"),
        "```",
        "",
        "```text",
        _hex(msg.envelope),
        "```",
        "",
        "The message hash, SHA-256 of the header bytes; if the vendor accepts the offer, this is "
        "the agreement id (§5.2.2-3):",
        "",
        "```text",
        msg.hash.hex(),
        "```",
    ]
    return "\n".join(out) + "\n"


def _example_history() -> str:
    customer, vendor = _example_parties()
    ours = Relationship(
        role=Role.CUSTOMER,
        identity=customer,
        thread=EXAMPLE_THREAD,
        peer_key=vendor.public_key,
        peer_enc_key=vendor.enc_public_key,
    )
    theirs = Relationship(role=Role.VENDOR, identity=vendor, thread=EXAMPLE_THREAD)
    offer = ours.send(_example_offer_body(customer), now=EXAMPLE_NOW, msg_id=EXAMPLE_ID)
    received = theirs.receive(offer.message.envelope, now=EXAMPLE_NOW)
    replies = [
        (received.message.receipt(), EXAMPLE_NOW + 1000, EXAMPLE_REPLY_IDS[0]),
        (received.message.accept(), EXAMPLE_NOW + 2000, EXAMPLE_REPLY_IDS[1]),
    ]
    for body, now, msg_id in replies:
        sent = theirs.send(body, now=now, msg_id=msg_id)
        ours.receive(sent.message.envelope, now=now)
    if [e.link for e in ours.history] != [e.link for e in theirs.history]:
        raise SpecError("the example histories differ")
    out = ["```text"]
    for entry in ours.history:
        envelope = _codec.decode(entry.envelope, max_depth=1)
        header = _codec.decode(envelope["hdr"], max_depth=1)
        out += [
            f"entry {entry.index}: {header['type']}, id {header['id'].hex()}",
            f"  msg_hash {entry.msg_hash.hex()}",
            f"  link     {entry.link.hex()}",
        ]
    out.append("```")
    return "\n".join(out) + "\n"


# -- the body tables as JSON (spec/message-bodies.json) -------------------------------------------

#: The message body tables of section 5 (Tables 5-2 to 5-19) and the record tables, as data.
BODIES_JSON = SPEC_DIR / "message-bodies.json"
BODIES_FORMAT = "vrmproto-bodies/1"


def _kind_json(kind: Kind) -> dict[str, Any]:
    """One field kind as data: its wire type and every bound the decoder enforces (§5.1)."""
    out: dict[str, Any] = {"type": kind.name, "text": kind.describe()}
    if isinstance(kind, Bin):
        out.update({"size": kind.size, "max_size": kind.max_size})
    elif isinstance(kind, Str):
        out.update({"max_chars": kind.max_len, "may_be_empty": kind.empty,
                    "pattern": kind.pattern.pattern if kind.pattern else None})
    elif isinstance(kind, Int):
        out.update({"min": kind.lo, "max": kind.hi})
    elif isinstance(kind, Choice):
        out.update({"type": "str", "values": list(kind.values)})
    elif isinstance(kind, List):
        out.update({"type": "array", "min_items": kind.min_len, "max_items": kind.max_len,
                    "items": _kind_json(kind.item)})
    elif isinstance(kind, StrMap):
        out.update({"min_entries": kind.min_items, "max_entries": kind.max_items,
                    "key_chars": [1, 64], "max_value_chars": kind.max_value})
    elif isinstance(kind, Record | Custom):
        name = kind.cls.__name__
        out.update({"type": "map", "record": name})
        if name in TYPE_REFS:
            out["defined_in"] = TYPE_REFS[name]
    return out


def _fields_json(cls: type[Any]) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "required": not f.metadata["optional"], "meaning": f.metadata["doc"],
         **_kind_json(f.metadata["kind"])}
        for f in sorted(dataclasses.fields(cls), key=lambda f: f.name)
        if "kind" in f.metadata
    ]


def bodies_json() -> str:
    """spec/message-bodies.json: every message type's body fields, and the records they hold,
    from the same declarations as the Markdown tables of section 5."""
    types = {
        name: {"sent_by": cls.SENT_BY, "section": _docstring_section(cls),
               "summary": _rst_to_md(re.sub(r"\s*\(§[^)]*\)", "", _first_sentence(cls.__doc__))),
               "fields": _fields_json(cls)}
        for name, cls in MESSAGE_TYPES.items()
    }
    records = {name: {"fields": _fields_json(cls)} for name, cls in _RECORDS.items()}
    doc = {
        "format": BODIES_FORMAT,
        "description": "The body field tables of spec section 5 as data, generated by "
        "scripts/gen_spec.py from vrmproto/_messages.py (do not edit). A body is a msgpack map "
        "whose keys are the field names, in canonical (bytewise) order; a required field is "
        "present, an optional one absent when it has no value, and no field is ever nil (§5.1-4); "
        "keys not listed are ignored (§5.1-3). Bounds: `size` is an exact "
        "length in bytes, `max_size` a largest one; `max_chars` counts Unicode code points; "
        "`min`/`max` are inclusive; `record` names a nested map, its fields under `records` or "
        "in the clause `defined_in`.",
        "types": types,
        "records": records,
    }
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def json_problems() -> list[str]:
    """What is stale among the generated JSON files (today: spec/message-bodies.json)."""
    new = bodies_json()
    old = BODIES_JSON.read_text(encoding="utf-8") if BODIES_JSON.exists() else ""
    return [] if new == old else [_diff(BODIES_JSON, old, new)]


def write_json() -> list[Path]:
    if not json_problems():
        return []
    BODIES_JSON.write_text(bodies_json(), encoding="utf-8")
    return [BODIES_JSON]


# -- the registry of blocks ----------------------------------------------------------------------


def blocks() -> dict[str, Callable[[], str]]:
    """Every block name the spec must contain, and the function that generates it."""
    out: dict[str, Callable[[], str]] = {
        "message-types": _message_types,
        "states": _states,
        "transitions": _transitions,
        "state-diagram": _diagram,
        "processing-order": processing_order_table,
        "problem-codes": _problem_codes,
        "limits": _limits,
        "connection-limits": _connection_limits,
        "example:terms.offer": _example_terms_offer,
        "example:history": _example_history,
    }
    for msg_type in MESSAGE_TYPES:
        out[f"fields:{msg_type}"] = lambda t=msg_type: _fields(t)  # type: ignore[misc]
    for name in _RECORDS:
        out[f"record:{name}"] = lambda n=name: _record(n)  # type: ignore[misc]
    return out


def spec_files() -> list[Path]:
    return sorted(SPEC_DIR.glob("*.md"))


#: Generated blocks kept by someone else: the conformance suite's case table (§14) is written
#: and checked by tests/test_conformance_coverage.py from the case registry.
EXTERNAL_BLOCKS = frozenset({"conformance-cases"})


def render(text: str, generators: Mapping[str, Callable[[], str]], where: str = "") -> str:
    """``text`` with the body of every generated block replaced; SpecError on a bad marker."""
    opened = _BEGIN.findall(text)
    closed = [m.group("name") for m in _MARKER.finditer(text)]
    if opened != closed:
        unclosed = sorted(set(opened) - set(closed)) or opened
        raise SpecError(f"{where}: a generated block is not closed properly: {unclosed}")
    cache: dict[str, str] = {}

    def replace(m: re.Match[str]) -> str:
        name = m.group("name")
        if name in EXTERNAL_BLOCKS:
            return m.group(0)
        if name not in generators:
            raise SpecError(f"{where}: unknown generated block {name!r}")
        if name not in cache:
            cache[name] = generators[name]()
        return m.group("begin") + cache[name] + m.group("end")

    return _MARKER.sub(replace, text)


def found_blocks(paths: Iterable[Path]) -> dict[str, list[Path]]:
    """Which files hold each generated block."""
    out: dict[str, list[Path]] = {}
    for path in paths:
        for name in _BEGIN.findall(path.read_text(encoding="utf-8")):
            out.setdefault(name, []).append(path)
    return out


def _diff(path: Path, old: str, new: str) -> str:
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{rel} (in the tree)",
            tofile=f"{rel} (generated)",
        )
    )


def problems(paths: Iterable[Path] | None = None, *, require_all: bool = True) -> list[str]:
    """Everything ``--check`` complains about: stale files (as diffs), missing blocks, errors.

    An empty list means the spec is current. ``require_all`` also demands that every block of
    :func:`blocks` appears in one of ``paths``, exactly once.
    """
    out: list[str] = json_problems() if paths is None else []
    paths = list(spec_files() if paths is None else paths)
    generators = blocks()
    for path in paths:
        old = path.read_text(encoding="utf-8")
        try:
            new = render(old, generators, str(path.name))
        except SpecError as exc:
            out.append(str(exc))
            continue
        if new != old:
            out.append(_diff(path, old, new))
    if not require_all:
        return out
    found = found_blocks(paths)
    missing = sorted(set(generators) - set(found))
    if missing:
        out.append(f"no spec file holds the generated blocks {missing}")
    twice = sorted(name for name, where in found.items() if len(where) > 1)
    if twice:
        out.append(f"generated blocks appear in more than one file: {twice}")
    return out


def write(paths: Iterable[Path] | None = None) -> list[Path]:
    """Rewrite stale blocks in place; return the files changed."""
    generators = blocks()
    changed = write_json() if paths is None else []
    for path in spec_files() if paths is None else paths:
        old = path.read_text(encoding="utf-8")
        new = render(old, generators, str(path.name))
        if new != old:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report drift, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        found = problems()
        for text in found:
            print(text)
        return 1 if found else 0
    try:
        changed = write()
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 1
    for path in changed:
        print(f"rewrote {path.relative_to(ROOT)}")
    leftover = [p for p in problems() if not p.startswith("---")]
    for text in leftover:
        print(text, file=sys.stderr)
    return 1 if leftover else 0


if __name__ == "__main__":
    sys.exit(main())
