"""The signed envelope: building, opening and erasing messages (spec §3.4, §4).

An envelope is a canonical msgpack map::

    {"body": <bin: body bytes>, "hdr": <bin: header bytes>, "sig": <bin 64>,
     "to": <bin 32, optional routing copy>, "type": <str, optional routing copy>}

The signature covers ``"vrmproto/v1/message\\0" ‖ hdr`` — the exact header bytes carried, never
a re-encoding (§3.5). The header names the body by its SHA-256, so the body (the personal
content) can later be erased while the header and signature still verify (§4.3, §8.4).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from types import MappingProxyType
from typing import Any, Generic, NamedTuple, TypeVar

from vrmproto import _codec
from vrmproto._errors import DecodeError, Problem, SignatureError, ValidationError, excerpt
from vrmproto._fields import (
    MISS,
    StrMap,
    dump_record,
    load_record,
    record_loader,
    record_writer,
    specs,
)
from vrmproto._keys import (
    HASH_BYTES,
    ID_BYTES,
    KEY_BYTES,
    SIG_BYTES,
    Context,
    Identity,
    seal,
    verify,
)
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._messages import (
    MESSAGE_TYPES,
    Body,
    DataShare,
    FieldsContent,
    Intentcast,
    IntentDecline,
    IntentOffer,
    Money,
    ProblemReport,
    Receipt,
    TermsAccept,
    TermsOffer,
    TermsReject,
)
from vrmproto._quick import quick_new
from vrmproto._vocab import TermRef

VERSION = 1
SUPPORTED_VERSIONS = (1,)
_ENVELOPE_KEYS = frozenset({"body", "hdr", "sig", "to", "type"})
_HEADER_KEYS = frozenset(
    {"body", "created", "expires", "from", "id", "prev", "thread", "to", "type", "v"}
)
#: The header's keys in canonical order: a decoded header whose key list equals this one has
#: every field, no other, each once, in order (§3.3-3, §4.2-2) — one comparison.
_HEADER_ORDER = sorted(_HEADER_KEYS)
#: Every key order an envelope may have: the subsets of its keys, in canonical order (§3.4-1).
_ENVELOPE_ORDERS = frozenset(
    tuple(k for i, k in enumerate(sorted(_ENVELOPE_KEYS)) if mask >> i & 1)
    for mask in range(1 << len(_ENVELOPE_KEYS))
)

_pack = _codec.pack_sorted  # the hot paths' values are canonical by construction (§3.3)
_sha256 = hashlib.sha256  # SHA-256 (§3.6), inline on the hot paths

B = TypeVar("B", bound=Body)
B2 = TypeVar("B2", bound=Body)


class Header(NamedTuple):
    """The signed header every message carries (§4.2). Immutable (a named tuple: cheap to build
    for every message signed or opened)."""

    type: str
    id: bytes
    sender: bytes
    recipient: bytes | None
    created: int
    expires: int
    thread: bytes
    prev: bytes | None
    body_hash: bytes
    version: int = VERSION

    def to_wire(self) -> dict[str, Any]:
        # Keys in canonical order: body created expires from id prev thread to type v.
        return {
            "body": self.body_hash,
            "created": self.created,
            "expires": self.expires,
            "from": self.sender,
            "id": self.id,
            "prev": self.prev,
            "thread": self.thread,
            "to": self.recipient,
            "type": self.type,
            "v": self.version,
        }


def _field(path: str, detail: str, clause: str) -> ValidationError:
    return ValidationError(detail, code=Problem.INVALID_FIELD, clause=clause, path=path)


def _header_shape(h: Any) -> None:
    """The header's shape rules in their order (§4.1-1, §4.2-1, §4.2-2): raises for any map
    whose keys are not exactly the header fields in canonical order — version first, so any
    future version is named."""
    if type(h) is not dict or not _codec.keys_sorted(h):
        raise DecodeError("the header is a map with keys in canonical order", clause="§4.1-1",
                          path="$.hdr")
    _header_version(h.get("v"))
    if h.keys() != _HEADER_KEYS:
        missing = sorted(_HEADER_KEYS - h.keys())
        extra = sorted(h.keys() - _HEADER_KEYS)
        what = f"missing {missing}" if missing else f"{len(extra)} unknown: {excerpt(extra[0])}"
        raise _field("$.hdr", f"header fields {what}", "§4.2-2")


def _header_version(v: Any) -> None:
    if type(v) is not int:
        raise _field("$.hdr.v", "missing or not an integer", "§4.2-1")
    if v not in SUPPORTED_VERSIONS:
        raise ValidationError(
            f"protocol version {v} is not supported",
            code=Problem.UNSUPPORTED_VERSION,
            clause="§4.2-1",
            path="$.hdr.v",
        )


def _header_from_wire(h: Any, limits: Limits) -> Header:
    """Check a decoded header map (§4.2) — version first, so any future version is named."""
    if type(h) is not dict or list(h) != _HEADER_ORDER:
        _header_shape(h)  # raises: sorted, unique and exactly the header's keys is that order
        raise AssertionError("unreachable")  # pragma: no cover
    v = h["v"]
    if type(v) is not int or v not in SUPPORTED_VERSIONS:
        _header_version(v)
    mtype = h["type"]
    if type(mtype) is not str:
        raise _field("$.hdr.type", "expected text", "§4.2-3")
    if mtype not in MESSAGE_TYPES:
        raise ValidationError(
            f"unknown message type {excerpt(mtype)}",
            code=Problem.UNKNOWN_TYPE,
            clause="§4.2-3",
            path="$.hdr.type",
        )
    sender, recipient, thread, msg_id = h["from"], h["to"], h["thread"], h["id"]
    prev, body_hash, created, expires = h["prev"], h["body"], h["created"], h["expires"]
    if type(msg_id) is not bytes or len(msg_id) != ID_BYTES:
        raise _field("$.hdr.id", "expected 16 bytes", "§4.2-4")
    if type(sender) is not bytes or len(sender) != KEY_BYTES:
        raise _field("$.hdr.from", "expected a 32-byte key", "§4.2-5")
    if recipient is None:
        if mtype != ProblemReport.TYPE:
            raise _field("$.hdr.to", "only a problem may have no recipient", "§4.2-6")
    elif type(recipient) is not bytes or len(recipient) != KEY_BYTES:
        raise _field("$.hdr.to", "expected a 32-byte key", "§4.2-6")
    if type(thread) is not bytes or len(thread) != ID_BYTES:
        raise _field("$.hdr.thread", "expected 16 bytes", "§4.2-7")
    if prev is not None and (type(prev) is not bytes or len(prev) != HASH_BYTES):
        raise _field("$.hdr.prev", "expected nil or a 32-byte hash", "§4.2-8")
    if type(body_hash) is not bytes or len(body_hash) != HASH_BYTES:
        raise _field("$.hdr.body", "expected a 32-byte hash", "§4.2-9")
    if type(created) is not int or not 0 <= created <= _codec.MAX_SAFE_INT:
        raise _field("$.hdr.created", "expected ms since the epoch", "§4.2-10")
    if type(expires) is not int or not created < expires <= created + limits.max_lifetime_ms:
        raise _field(
            "$.hdr.expires",
            f"must be after created and at most {limits.max_lifetime_ms} ms later",
            "§4.2-11",
        )
    return Header(mtype, msg_id, sender, recipient, created, expires, thread, prev, body_hash, v)


# -- the usual layouts, read in one pass (hot path of open_envelope) ---------------------------
#
# A canonical header of well-typed fields has one byte layout (§3.3, §4.2): a map of its ten
# keys in order; 32-byte keys and hashes and 16-byte ids as bin 8; prev and to nil or 32 bytes;
# created and expires non-negative integers (whether in their shortest form is checked after);
# a known type name; a supported version. The usual envelopes — {body, hdr, sig, to, type}, as
# sign_message writes them, and {body, hdr, sig} — add a prefix and a suffix of fixed shapes
# around the body (read by its length) and the header (§3.4). What matches decodes, by msgpack
# and the reference readers (_envelope_parts, _header_from_wire) alike, to exactly what is read
# here from the groups; anything else — and anything that breaks a rule beyond the layout —
# takes the reference path, which decides the error.


def _bytes_re(data: bytes) -> bytes:
    return re.escape(data)


def _alternatives(values: Any) -> bytes:
    return b"(" + b"|".join(_bytes_re(_codec.encode(v)) for v in values) + b")"


def _key(name: str) -> bytes:
    return _bytes_re(_codec.encode(name))


_BIN32, _BIN16, _NIL = _codec.encode(bytes(32))[:2], _codec.encode(bytes(16))[:2], b"\xc0"
_UINT = rb"([\x00-\x7f]|\xcc.|\xcd.{2}|\xce.{4}|\xcf.{8})"
_KEY_OR_NIL = b"(" + _bytes_re(_NIL) + b"|" + _bytes_re(_BIN32) + b".{32})"
_HEADER_FIELDS = (  # ten groups, one per field in key order
    _codec.encode(dict.fromkeys(_HEADER_ORDER))[:1]
    + _key("body") + _bytes_re(_BIN32) + b"(.{32})"
    + _key("created") + _UINT
    + _key("expires") + _UINT
    + _key("from") + _bytes_re(_BIN32) + b"(.{32})"
    + _key("id") + _bytes_re(_BIN16) + b"(.{16})"
    + _key("prev") + _KEY_OR_NIL
    + _key("thread") + _bytes_re(_BIN16) + b"(.{16})"
    + _key("to") + _KEY_OR_NIL
    + _key("type") + _alternatives(MESSAGE_TYPES)
    + _key("v") + _alternatives(SUPPORTED_VERSIONS)
)
_HEADER_LAYOUT = re.compile(_HEADER_FIELDS, re.DOTALL)
_TYPE_BY_WIRE = {_codec.encode(name): name for name in MESSAGE_TYPES}
_VERSION_BY_WIRE = {_codec.encode(v): v for v in SUPPORTED_VERSIONS}
# By length of a matched unsigned integer's form: the mask that drops its type byte, and the
# least value that form may carry (anything less has a shorter form, which is the only valid one).
_UINT_MASK = {1: 0x7F, 2: 0xFF, 3: 0xFFFF, 5: 0xFFFF_FFFF, 9: 0xFFFF_FFFF_FFFF_FFFF}
_UINT_MIN = {1: 0, 2: 0x80, 3: 0x100, 5: 0x1_0000, 9: 0x1_0000_0000}
_new_header = tuple.__new__  # Header(...) without the keyword-capable __new__ (hot paths)


def _header_of(fields: tuple[bytes, ...], limits: Limits) -> Header | None:
    """The header whose layout match gave these ten groups, or None if it breaks a rule the
    layout does not express: the shortest integer forms, created and expires (§4.2-10, -11),
    and that only a problem may have no recipient (§4.2-6)."""
    body_hash, created_b, expires_b, sender, msg_id, prev, thread, to, mtype_b, v_b = fields
    n = len(created_b)
    created = int.from_bytes(created_b, "big") & _UINT_MASK[n]
    if created < _UINT_MIN[n] or created > _codec.MAX_SAFE_INT:
        return None
    n = len(expires_b)
    expires = int.from_bytes(expires_b, "big") & _UINT_MASK[n]
    if expires < _UINT_MIN[n] or not created < expires <= created + limits.max_lifetime_ms:
        return None
    mtype = _TYPE_BY_WIRE[mtype_b]
    if len(to) == 1 and mtype != ProblemReport.TYPE:
        return None
    return _new_header(
        Header,
        (
            mtype,
            msg_id,
            sender,
            to[2:] if len(to) != 1 else None,
            created,
            expires,
            thread,
            prev[2:] if len(prev) != 1 else None,
            body_hash,
            _VERSION_BY_WIRE[v_b],
        ),
    )


def _read_header(hdr_bytes: bytes, limits: Limits) -> Header:
    """``_header_from_wire(decode_form(hdr_bytes))``: the header, or the first rule it breaks."""
    m = _HEADER_LAYOUT.fullmatch(hdr_bytes)
    if m is not None:
        header = _header_of(m.groups(), limits)
        if header is not None:
            return header
    return _header_from_wire(_codec.decode_form(hdr_bytes, path="$.hdr"), limits)


_ENVELOPE_BODY_FULL = _codec.encode(dict.fromkeys(_ENVELOPE_KEYS))[:1] + _codec.encode("body")
_ENVELOPE_BODY_BARE = (
    _codec.encode(dict.fromkeys(("body", "hdr", "sig")))[:1] + _codec.encode("body")
)
# After the body: the header as bin 8 or bin 16 (its length is checked after), its fields, the
# signature, and in the full layout the routing copies. Groups: bin head, header, its ten
# fields, sig[, to, type].
_ENVELOPE_REST = (
    _key("hdr") + b"(\xc4.|\xc5..)(" + _HEADER_FIELDS + b")"
    + _key("sig") + _bytes_re(_codec.encode(bytes(SIG_BYTES))[:2]) + b"(.{64})"
)
_ENVELOPE_REST_FULL = re.compile(
    _ENVELOPE_REST + _key("to") + _KEY_OR_NIL + _key("type") + _alternatives(MESSAGE_TYPES),
    re.DOTALL,
)
_ENVELOPE_REST_BARE = re.compile(_ENVELOPE_REST, re.DOTALL)


_Usual = tuple[bytes, bytes, bytes, Header, Any, Any]
#: The last envelope :func:`_read_envelope` read — ``(data, limits, result)`` — for a receiver
#: that looked at a header before verifying it (:func:`peek_header`, for its rate limit): the
#: open that follows takes the same reading instead of reading the bytes again.
_last_read: tuple[bytes, Limits, _Usual | None] | None = None


def peek_header(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[Header, bytes] | None:
    """The header and header bytes of an envelope in a usual layout, UNVERIFIED — for a look
    before verifying, such as a sender's rate limit (§12.9-6) — or None when the envelope is
    not in one (ask a lenient decoder). Never trust it: :func:`open_envelope` decides."""
    global _last_read  # noqa: PLW0603 - a memo of one pure reading, see _last_read
    usual = _read_envelope(data, limits) if type(data) is bytes else None
    _last_read = (data, limits, usual)
    return None if usual is None else (usual[3], usual[1])


def _read_envelope(
    data: bytes, limits: Limits
) -> tuple[bytes, bytes, bytes, Header, Any, Any] | None:
    """``(body, hdr, sig, header, to, type)`` of an envelope in a usual layout — the routing
    copies ``...`` when absent — or None: then the reference path reads it."""
    if data.startswith(_ENVELOPE_BODY_FULL):
        rest = _ENVELOPE_REST_FULL
    elif data.startswith(_ENVELOPE_BODY_BARE):
        rest = _ENVELOPE_REST_BARE
    else:
        return None
    at = len(_ENVELOPE_BODY_FULL)  # the body's bin head: 8, 16 or 32, in its shortest form
    if len(data) < at + 5:
        return None
    found = _bin_at(data, at)
    if found is None:
        return None
    start, size = found
    m = rest.fullmatch(data, start + size)
    if m is None:
        return None
    g = m.groups()
    hdr_head, hdr = g[0], g[1]
    if hdr_head[0] == 0xC4:
        if hdr_head[1] != len(hdr):
            return None
    elif int.from_bytes(hdr_head[1:], "big") != len(hdr) or len(hdr) < 0x100:
        return None
    header = _header_of(g[2:12], limits)
    if header is None:
        return None
    if rest is _ENVELOPE_REST_BARE:
        return data[start : start + size], hdr, g[12], header, ..., ...
    to = g[13]
    return (
        data[start : start + size],
        hdr,
        g[12],
        header,
        to[2:] if len(to) != 1 else None,
        _TYPE_BY_WIRE[g[14]],
    )


class Signed(NamedTuple, Generic[B]):
    """A verified message: the decoded header and body beside the exact bytes that were signed.

    ``body`` is None only for an erased history entry (§8.4). ``hash`` — SHA-256 of the header
    bytes — is the message's identity in receipts, hash links and agreements (§4.4); signature
    bytes are never used as identity. Immutable (a named tuple: cheap to build for every message
    signed or opened).
    """

    header: Header
    body: B
    hdr_bytes: bytes
    body_bytes: bytes | None
    signature: bytes
    envelope: bytes
    hash: bytes

    @property
    def type(self) -> str:
        return self.header.type

    @property
    def id(self) -> bytes:
        return self.header.id

    @property
    def sender(self) -> bytes:
        return self.header.sender

    @property
    def recipient(self) -> bytes | None:
        return self.header.recipient

    @property
    def thread(self) -> bytes:
        return self.header.thread

    @property
    def erased(self) -> bool:
        return self.body_bytes is None

    # -- reply helpers: each returns the body of the correct answer -------------------------
    # (*) mypy refuses a self type narrower than a generic named tuple's own on the definition,
    # yet checks every call against it: msg.accept() type-checks only on a Signed[TermsOffer].

    def receipt(self) -> Receipt:
        """The body of a receipt acknowledging this message (§5.6.1)."""
        return _new_receipt(self.hash)  # Receipt(ack=...): a receiver makes one per message

    def problem(self, code: Problem, detail: str, *, clause: str = "") -> ProblemReport:
        """The body of a problem report about this message (§5.6.2)."""
        return ProblemReport(code=code.value, detail=detail, clause=clause or None, ref=self.hash)

    def accept(self: Signed[TermsOffer]) -> TermsAccept:  # type: ignore[misc]  # (*)
        """Agree to this terms offer (§5.2.2)."""
        return TermsAccept(offer=self.hash, terms=self.body.terms)

    def reject(  # type: ignore[misc]  # (*)
        self: Signed[TermsOffer],
        reason: str,
        *,
        refused: tuple[str, ...] = (),
        counter: tuple[TermRef, ...] | None = None,
    ) -> TermsReject:
        """Refuse this terms offer, optionally with a counter-offer (§5.2.3)."""
        return TermsReject(offer=self.hash, reason=reason, refused=refused, counter=counter)

    def offer(  # type: ignore[misc]  # (*)
        self: Signed[Intentcast],
        description: str,
        price: Money,
        *,
        valid_until: int,
        conditions: tuple[str, ...] = (),
        accepts_terms: tuple[str, ...] = (),
    ) -> IntentOffer:
        """Answer this intentcast with an offer (§5.4.2)."""
        return IntentOffer(
            intent=self.hash,
            description=description,
            price=price,
            valid_until=valid_until,
            conditions=conditions,
            accepts_terms=accepts_terms,
        )

    def decline(self: Signed[Intentcast], reason: str) -> IntentDecline:  # type: ignore[misc]  # (*)
        """Decline this intentcast (§5.4.3)."""
        return IntentDecline(intent=self.hash, reason=reason)

    def without_body(self) -> Signed[B]:
        """This message with its body erased: header and signature still verify (§8.4)."""
        env = _codec.pack_sorted({"hdr": self.hdr_bytes, "sig": self.signature})
        return self._replace(body_bytes=None, envelope=env)


_new_signed = tuple.__new__  # Signed(...) without the keyword-capable __new__ (hot paths)
_new_receipt = quick_new(Receipt)
_new_fields = quick_new(FieldsContent)


def sign_message(
    body: B,
    *,
    identity: Identity,
    recipient: bytes | None,
    thread: bytes,
    prev: bytes | None,
    now: int,
    msg_id: bytes,
    lifetime_ms: int = 86_400_000,
    routing: bool = True,
) -> Signed[B]:
    """Encode and sign ``body`` into an envelope (§3.4). ``now`` in ms; ``msg_id`` 16 random bytes.

    Time and randomness are arguments: the core never reads a clock or draws random bytes.
    """
    # Bodies and headers are canonical by construction (fields validated, keys emitted in
    # sorted order), so they are packed directly rather than re-canonicalised (§3.3).
    # A body's to_wire() is what is signed; for the declared types that is dump_record, whose
    # bytes their generated writer produces in one pass (_fields.record_writer).
    write = _BODY_WRITERS.get(type(body))
    body_bytes = write(body) if write is not None else None
    if body_bytes is None:  # another type, or not the happy path: the reference writer
        body_bytes = _pack(body.to_wire())
    mtype = body.TYPE
    sender = identity.public_key
    expires = now + lifetime_ms
    body_hash = _sha256(body_bytes).digest()
    header: Header = _new_header(
        Header, (mtype, msg_id, sender, recipient, now, expires, thread, prev, body_hash, VERSION)
    )
    # Header.to_wire, inline (keys in canonical order).
    hdr_bytes = _pack(
        {
            "body": body_hash,
            "created": now,
            "expires": expires,
            "from": sender,
            "id": msg_id,
            "prev": prev,
            "thread": thread,
            "to": recipient,
            "type": mtype,
            "v": VERSION,
        }
    )
    sig = identity.sign(Context.MESSAGE, hdr_bytes)
    if routing:
        env: dict[str, Any] = {
            "body": body_bytes, "hdr": hdr_bytes, "sig": sig, "to": recipient, "type": mtype
        }
    else:
        env = {"body": body_bytes, "hdr": hdr_bytes, "sig": sig}
    envelope = _pack(env)
    signed: Signed[B] = _new_signed(
        Signed, (header, body, hdr_bytes, body_bytes, sig, envelope, _sha256(hdr_bytes).digest())
    )
    return signed


def unknown_body_bytes(message: Signed[Any]) -> int:
    """About how many bytes of ``message``'s body are keys this version does not define
    (§5.1-3), at any depth: the body's length less that of its known fields, encoded. 0 for an
    erased body."""
    body = message.body
    if message.body_bytes is None or body is None:
        return 0
    write = _BODY_WRITERS.get(type(body))
    known = write(body) if write is not None else None
    if known is None:
        known = _pack(body.to_wire())
    return max(0, len(message.body_bytes) - len(known))


def _envelope_parts(data: bytes, allow_erased: bool) -> tuple[Any, bytes, bytes, Any, Any]:
    """Decode and check an envelope's map (§3.4): ``(body, hdr, sig, to, type)``, the routing
    copies ``...`` when absent. The reference for :func:`_read_envelope`."""
    env = _codec.decode_form(data)
    # (keys a subset of the envelope's, in canonical order: one lookup of the key tuple)
    if type(env) is not dict or tuple(env) not in _ENVELOPE_ORDERS:
        raise DecodeError("an envelope is a map of body, hdr, sig[, to, type]", clause="§3.4-1")
    hdr_bytes, sig, body_bytes = env.get("hdr"), env.get("sig"), env.get("body")
    if type(hdr_bytes) is not bytes or type(sig) is not bytes:
        raise DecodeError("hdr and sig must be binary", clause="§3.4-2")
    routed_to = env.get("to", b"")
    if (routed_to is not None and type(routed_to) is not bytes) or type(
        env.get("type", "")
    ) is not str:
        raise DecodeError("routing copies are a key (or nil) and a type name", clause="§3.4-4")
    if len(sig) != SIG_BYTES:
        raise DecodeError(f"a signature is 64 bytes, not {len(sig)}", clause="§3.4-3")
    if body_bytes is None:
        if not allow_erased:
            raise DecodeError("the body is missing", clause="§3.4-2", path="$.body")
    elif type(body_bytes) is not bytes:
        raise DecodeError("body must be binary", clause="§3.4-2", path="$.body")
    return body_bytes, hdr_bytes, sig, env.get("to", ...), env.get("type", ...)


def _check_routing(header: Header, routed_to: Any, routed_type: Any) -> None:
    """Step 14 of §4.5-1: the routing copies, when present, equal the header's (§3.4-4)."""
    if routed_to is not ... and routed_to != header.recipient:
        raise ValidationError(
            "routing 'to' differs from the signed header",
            code=Problem.ENVELOPE_MISMATCH,
            clause="§3.4-4",
        )
    if routed_type is not ... and routed_type != header.type:
        raise ValidationError(
            "routing 'type' differs from the signed header",
            code=Problem.ENVELOPE_MISMATCH,
            clause="§3.4-4",
        )


def _check_recipient(header: Header, recipients: Collection[bytes]) -> None:
    """Step 15: the header's ``to`` is one of the receiver's keys, or nil in a problem (§4.5-2)."""
    if header.recipient not in recipients and (
        header.recipient is not None or header.type != ProblemReport.TYPE
    ):
        raise ValidationError(
            "this message is addressed to another key",
            code=Problem.WRONG_RECIPIENT,
            clause="§4.5-2",
            path="$.hdr.to",
        )


def _check_time(header: Header, now: int, limits: Limits) -> None:
    """Steps 16 and 17: not expired (§4.5-3), not created too far ahead (§4.5-4)."""
    if now > header.expires:
        raise ValidationError("the message has expired", code=Problem.EXPIRED, clause="§4.5-3")
    if header.created > now + limits.max_clock_skew_ms:
        raise ValidationError(
            "created lies in the future beyond the allowed clock skew",
            code=Problem.CLOCK_SKEW,
            clause="§4.5-4",
        )


def open_envelope(
    data: bytes,
    *,
    now: int,
    recipients: Collection[bytes] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    check_time: bool = True,
    allow_erased: bool = False,
) -> Signed[Any]:
    """Decode and verify envelope bytes; return the message only if every rule holds (§3, §4).

    Checks, in the order of §4.5 (the first failure decides the problem code): size, envelope
    encoding, header encoding, version, type, header fields, routing copies, recipient (when
    ``recipients`` is given), time window at ``now`` (unless ``check_time`` is False, as when
    re-verifying stored history), signature, body hash, body fields. Raises only
    :class:`~vrmproto.ProtocolError` subclasses.
    """
    if len(data) > limits.max_envelope_bytes:
        raise DecodeError(
            f"envelope is {len(data)} bytes; the limit is {limits.max_envelope_bytes}",
            code=Problem.TOO_LARGE,
            clause="§10-1",
        )
    last = _last_read
    if last is not None and last[0] is data and last[1] is limits:  # just read by peek_header
        usual = last[2]
    else:
        usual = _read_envelope(data, limits) if type(data) is bytes else None
    if usual is not None:
        body_bytes, hdr_bytes, sig, header, routed_to, routed_type = usual
    else:
        body_bytes, hdr_bytes, sig, routed_to, routed_type = _envelope_parts(data, allow_erased)
        header = _read_header(hdr_bytes, limits)
    # steps 14 to 17, each function called only when its check fails (it raises; the usual
    # message passes every one)
    if (routed_to is not ... and routed_to != header.recipient) or (
        routed_type is not ... and routed_type != header.type
    ):
        _check_routing(header, routed_to, routed_type)
    if recipients is not None and header.recipient not in recipients:
        _check_recipient(header, recipients)
    if check_time and (now > header.expires or header.created > now + limits.max_clock_skew_ms):
        _check_time(header, now, limits)
    verify(Context.MESSAGE, hdr_bytes, sig, header.sender)
    body: Any = None
    if body_bytes is not None:
        if _sha256(body_bytes).digest() != header.body_hash:
            raise SignatureError("the body does not match the signed body hash", clause="§3.4-5")
        decoded = _codec.decode_form(body_bytes, path="$.body")
        read = _BODY_READERS.get(header.type)
        body = read(decoded) if read is not None else MISS
        if body is MISS:  # not the happy path: the reference reader, for the error
            body = MESSAGE_TYPES[header.type].from_wire(decoded, max_depth=limits.max_depth)
    opened: Signed[Any] = _new_signed(
        Signed, (header, body, hdr_bytes, body_bytes, sig, data, _sha256(hdr_bytes).digest())
    )
    return opened


#: Happy-path body readers by type name, for the types read by Body.from_wire (§5.1).
_BODY_READERS = {
    name: record_loader(cls).fast
    for name, cls in MESSAGE_TYPES.items()
    if getattr(cls.from_wire, "__func__", None) is getattr(Body.from_wire, "__func__", False)
}
#: Body writers by type, for the types written by Body.to_wire (§5.1).
_BODY_WRITERS = {
    cls: record_writer(cls) for cls in MESSAGE_TYPES.values() if cls.to_wire is Body.to_wire
}


# -- sealed content (§5.5) ------------------------------------------------------------------------

_SEALED_KEYS = ["payload", "sig"]
_PAYLOAD_KEYS = ["content", "msg", "to"]
_FIELDS_KEYS = ["fields"]


def _fields_kind() -> StrMap:
    ((name, kind, _),) = specs(FieldsContent)  # one field, a StrMap, as declared
    assert name == "fields"
    assert isinstance(kind, StrMap)
    return kind


_FIELDS_KIND = _fields_kind()
_FIELDS_NAME_MAX = 64  # StrMap's field names: 1..64 characters
_ONLY_STR = {str}


def _fields_payload(content: Any, msg_id: Any, recipient: Any) -> bytes | None:
    """``_codec.encode({"content": dump_record(content), "msg": msg_id, "to": recipient})`` for
    a :class:`FieldsContent` of text names and values and binary ``msg_id`` and ``recipient``
    (hot path of sharing); None for anything else — the caller then runs that."""
    if type(content) is not FieldsContent or type(msg_id) is not bytes or type(
        recipient
    ) is not bytes:
        return None
    fields = content.fields
    if type(fields) is not dict and type(fields) is not MappingProxyType:
        return None
    try:
        names = sorted(fields)
    except TypeError:
        return None
    ordered = {}
    for name in names:
        value = fields[name]
        if type(name) is not str or type(value) is not str:
            return None
        ordered[name] = value
    return _pack({"content": {"fields": ordered}, "msg": msg_id, "to": recipient})


def _read_fields_payload(inner: Any, content_type: type[Any], limits: Limits) -> Any:
    """The :class:`FieldsContent` a decoded sealed payload carries when it is the usual one —
    ``{content: {fields: {name: text, ...}}, msg: bin, to: bin}``, every map's keys in order,
    every rule of §3.3 and of the declared kinds met, nesting within ``max_depth`` — else
    :data:`MISS`: then the reference steps of :func:`open_sealed` decide."""
    if content_type is not FieldsContent or limits.max_depth < 3:  # the fields map's depth: 2
        return MISS
    if type(inner) is not dict or list(inner) != _PAYLOAD_KEYS:
        return MISS
    content, msg_id, to = inner["content"], inner["msg"], inner["to"]
    if type(msg_id) is not bytes or type(to) is not bytes:
        return MISS
    if type(content) is not dict or list(content) != _FIELDS_KEYS:
        return MISS
    fields = content["fields"]
    kind = _FIELDS_KIND
    if type(fields) is not dict or not 1 <= kind.min_items <= len(fields) <= kind.max_items:
        return MISS
    # every name and value text, names ascending (unique: a dict) and 1..64 characters long,
    # values at most max_value: in C loops, as a share carries many fields
    names, values = list(fields), list(fields.values())
    if set(map(type, names)) != _ONLY_STR or set(map(type, values)) != _ONLY_STR:
        return MISS
    if names != sorted(names) or not names[0] or max(map(len, names)) > _FIELDS_NAME_MAX:
        return MISS
    if max(map(len, values)) > kind.max_value:
        return MISS
    return _new_fields(MappingProxyType(fields))


_SEALED_START = _codec.map_header(2) + _codec.pack_sorted("payload")
_SEALED_SIG = _codec.pack_sorted("sig") + _codec.pack_sorted(bytes(SIG_BYTES))[:2]
_SEALED_MIN = len(_SEALED_START) + 2 + len(_SEALED_SIG) + SIG_BYTES


def _bin_at(data: bytes, at: int) -> tuple[int, int] | None:
    """Where the bytes of the msgpack bin whose head is at ``data[at]`` start, and how many:
    bin 8, 16 or 32, each only where no shorter form holds the length (§3.3); else None."""
    head = data[at]
    if head == 0xC4:
        return at + 2, data[at + 1]
    if head == 0xC5:
        size = int.from_bytes(data[at + 1 : at + 3], "big")
        return (at + 3, size) if size >= 0x100 else None
    if head == 0xC6:
        size = int.from_bytes(data[at + 1 : at + 5], "big")
        return (at + 5, size) if size >= 0x1_0000 else None
    return None


def _sealed_parts(plain: bytes) -> tuple[bytes, bytes] | None:
    """``(payload, sig)`` when ``plain`` is exactly the canonical encoding of ``{payload:
    bin, sig: bin of 64 bytes}`` (§3.3, §5.5-3) — what :func:`_codec.decode_form` and the
    checks after it accept, read in place — else None: then they decide."""
    if len(plain) < _SEALED_MIN or not plain.startswith(_SEALED_START):
        return None
    at = len(_SEALED_START)
    found = _bin_at(plain, at)
    if found is None:
        return None
    start, size = found
    end = start + size
    if len(plain) != end + len(_SEALED_SIG) + SIG_BYTES or not plain.startswith(
        _SEALED_SIG, end
    ):
        return None
    return plain[start:end], plain[end + len(_SEALED_SIG) :]


def seal_content(
    content: Any,
    *,
    identity: Identity,
    recipient: bytes,
    recipient_enc_key: bytes,
    msg_id: bytes,
) -> bytes:
    """Sign ``content`` naming the recipient and the outer message id, then seal it (§5.5-1).

    Naming the recipient inside the signed content stops a recipient from re-sealing it to
    someone else as if the sender had sent it to them (surreptitious forwarding, §11.5).
    """
    payload = _fields_payload(content, msg_id, recipient)
    if payload is None:  # not the usual field set: the reference encoder (and its errors)
        payload = _codec.encode({"content": dump_record(content), "msg": msg_id, "to": recipient})
    sig = identity.sign(Context.SEALED, payload)
    return seal(_codec.pack_sorted({"payload": payload, "sig": sig}), recipient_enc_key)


def open_sealed(
    message: Signed[Any],
    *,
    identity: Identity,
    content_type: type[Any],
    limits: Limits = DEFAULT_LIMITS,
) -> Any:
    """Open the sealed content of a verified message addressed to ``identity`` (§5.5-3..6)."""
    plain = identity.unseal(message.body.sealed)
    parts = _sealed_parts(plain)
    if parts is not None:
        payload, sig = parts
    else:
        outer = _codec.decode_form(plain, path="$.sealed")
        # {payload: bin, sig: bin}, in that order, passes §3.3's walk: only anything else is
        # walked
        if type(outer) is not dict or list(outer) != _SEALED_KEYS or type(
            outer["payload"]
        ) is not bytes or type(outer["sig"]) is not bytes:
            _codec.check_value(outer, depth=0, max_depth=1, path="$.sealed")
            if type(outer) is not dict or outer.keys() != {"payload", "sig"}:
                raise DecodeError("sealed content is a map of payload and sig", clause="§5.5-3")
        payload, sig = outer["payload"], outer["sig"]
    if type(payload) is not bytes or type(sig) is not bytes or len(sig) != SIG_BYTES:
        raise DecodeError("payload is binary and sig 64 bytes", clause="§5.5-3")
    verify(Context.SEALED, payload, sig, message.sender)
    inner = _codec.decode_form(payload, path="$.sealed.payload")
    content = _read_fields_payload(inner, content_type, limits)
    if content is not MISS and inner["to"] == identity.public_key and inner["msg"] == message.id:
        return content  # the usual field set, read whole: what the steps below conclude
    _codec.check_value(inner, depth=0, max_depth=limits.max_depth, path="$.sealed.payload")
    if type(inner) is not dict or inner.keys() != {"content", "msg", "to"}:
        raise DecodeError("sealed payload is a map of content, msg, to", clause="§5.5-3")
    if inner["to"] != identity.public_key:
        raise ValidationError(
            "the sealed content names another recipient",
            code=Problem.WRONG_RECIPIENT,
            clause="§5.5-5",
            path="$.sealed.to",
        )
    if inner["msg"] != message.id:
        raise ValidationError(
            "the sealed content belongs to another message",
            code=Problem.ENVELOPE_MISMATCH,
            clause="§5.5-6",
            path="$.sealed.msg",
        )
    return load_record(content_type, inner["content"], "$.sealed.content")


def share_fields(message: Signed[DataShare], identity: Identity) -> FieldsContent:
    """The personal data fields of a data share or address update addressed to ``identity``."""
    content: FieldsContent = open_sealed(message, identity=identity, content_type=FieldsContent)
    return content
