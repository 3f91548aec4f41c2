"""The signed envelope: building, opening and erasing messages (spec §3.4, §4).

An envelope is a canonical msgpack map::

    {"body": <bin: body bytes>, "hdr": <bin: header bytes>, "sig": <bin 64>,
     "to": <bin 32, optional routing copy>, "type": <str, optional routing copy>}

The signature covers ``"vrmproto/v1/message\\0" ‖ hdr`` — the exact header bytes carried, never
a re-encoding (§3.5). The header names the body by its SHA-256, so the body (the personal
content) can later be erased while the header and signature still verify (§4.3, §8.4).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from vrmproto import _codec
from vrmproto._errors import DecodeError, Problem, SignatureError, ValidationError
from vrmproto._fields import dump_record, load_record
from vrmproto._keys import (
    HASH_BYTES,
    ID_BYTES,
    KEY_BYTES,
    SIG_BYTES,
    Context,
    Identity,
    seal,
    sha256,
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
from vrmproto._vocab import TermRef

VERSION = 1
SUPPORTED_VERSIONS = (1,)
_ENVELOPE_KEYS = frozenset({"body", "hdr", "sig", "to", "type"})
_HEADER_KEYS = frozenset(
    {"body", "created", "expires", "from", "id", "prev", "thread", "to", "type", "v"}
)

B = TypeVar("B", bound=Body)
B2 = TypeVar("B2", bound=Body)


@dataclass(frozen=True, slots=True)
class Header:
    """The signed header every message carries (§4.2)."""

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


def _header_from_wire(h: Any, limits: Limits) -> Header:
    """Check a decoded header map (§4.2) — version first, so any future version is named."""
    if type(h) is not dict or not _codec.keys_sorted(h):
        raise DecodeError("the header is a map with keys in canonical order", clause="§4.1-1",
                          path="$.hdr")
    v = h.get("v")
    if type(v) is not int:
        raise _field("$.hdr.v", "missing or not an integer", "§4.2-1")
    if v not in SUPPORTED_VERSIONS:
        raise ValidationError(
            f"protocol version {v} is not supported",
            code=Problem.UNSUPPORTED_VERSION,
            clause="§4.2-1",
            path="$.hdr.v",
        )
    if h.keys() != _HEADER_KEYS:
        missing = sorted(_HEADER_KEYS - h.keys())
        extra = sorted(h.keys() - _HEADER_KEYS)
        what = f"missing {missing}" if missing else f"unknown {extra}"
        raise _field("$.hdr", f"header fields {what}", "§4.2-2")
    mtype = h["type"]
    if type(mtype) is not str:
        raise _field("$.hdr.type", "expected text", "§4.2-3")
    if mtype not in MESSAGE_TYPES:
        raise ValidationError(
            f"unknown message type {mtype!r}",
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


@dataclass(frozen=True, slots=True)
class Signed(Generic[B]):
    """A verified message: the decoded header and body beside the exact bytes that were signed.

    ``body`` is None only for an erased history entry (§8.4). ``hash`` — SHA-256 of the header
    bytes — is the message's identity in receipts, hash links and agreements (§4.4); signature
    bytes are never used as identity.
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

    def receipt(self) -> Receipt:
        """The body of a receipt acknowledging this message (§5.6.1)."""
        return Receipt(ack=self.hash)

    def problem(self, code: Problem, detail: str, *, clause: str = "") -> ProblemReport:
        """The body of a problem report about this message (§5.6.2)."""
        return ProblemReport(code=code.value, detail=detail, clause=clause or None, ref=self.hash)

    def accept(self: Signed[TermsOffer]) -> TermsAccept:
        """Agree to this terms offer (§5.2.2)."""
        return TermsAccept(offer=self.hash, terms=self.body.terms)

    def reject(
        self: Signed[TermsOffer],
        reason: str,
        *,
        refused: tuple[str, ...] = (),
        counter: tuple[TermRef, ...] | None = None,
    ) -> TermsReject:
        """Refuse this terms offer, optionally with a counter-offer (§5.2.3)."""
        return TermsReject(offer=self.hash, reason=reason, refused=refused, counter=counter)

    def offer(
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

    def decline(self: Signed[Intentcast], reason: str) -> IntentDecline:
        """Decline this intentcast (§5.4.3)."""
        return IntentDecline(intent=self.hash, reason=reason)

    def without_body(self) -> Signed[B]:
        """This message with its body erased: header and signature still verify (§8.4)."""
        env = _codec.pack_sorted({"hdr": self.hdr_bytes, "sig": self.signature})
        return replace(self, body_bytes=None, envelope=env)


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
    body_bytes = _codec.pack_sorted(body.to_wire())
    header = Header(
        type=body.TYPE,
        id=msg_id,
        sender=identity.public_key,
        recipient=recipient,
        created=now,
        expires=now + lifetime_ms,
        thread=thread,
        prev=prev,
        body_hash=sha256(body_bytes),
    )
    hdr_bytes = _codec.pack_sorted(header.to_wire())
    sig = identity.sign(Context.MESSAGE, hdr_bytes)
    env: dict[str, Any] = {"body": body_bytes, "hdr": hdr_bytes, "sig": sig}
    if routing:
        env["to"] = recipient
        env["type"] = body.TYPE
    envelope = _codec.pack_sorted(env)
    return Signed(header, body, hdr_bytes, body_bytes, sig, envelope, sha256(hdr_bytes))


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
    env = _codec.decode_form(data)
    if type(env) is not dict or not env.keys() <= _ENVELOPE_KEYS or not _codec.keys_sorted(env):
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
    header = _header_from_wire(_codec.decode_form(hdr_bytes, path="$.hdr"), limits)
    if "to" in env and env["to"] != header.recipient:
        raise ValidationError(
            "routing 'to' differs from the signed header",
            code=Problem.ENVELOPE_MISMATCH,
            clause="§3.4-4",
        )
    if "type" in env and env["type"] != header.type:
        raise ValidationError(
            "routing 'type' differs from the signed header",
            code=Problem.ENVELOPE_MISMATCH,
            clause="§3.4-4",
        )
    if recipients is not None and header.recipient not in recipients and (
        header.recipient is not None or header.type != ProblemReport.TYPE
    ):
        raise ValidationError(
            "this message is addressed to another key",
            code=Problem.WRONG_RECIPIENT,
            clause="§4.5-2",
            path="$.hdr.to",
        )
    if check_time:
        if now > header.expires:
            raise ValidationError(
                "the message has expired", code=Problem.EXPIRED, clause="§4.5-3"
            )
        if header.created > now + limits.max_clock_skew_ms:
            raise ValidationError(
                "created lies in the future beyond the allowed clock skew",
                code=Problem.CLOCK_SKEW,
                clause="§4.5-4",
            )
    verify(Context.MESSAGE, hdr_bytes, sig, header.sender)
    body: Any = None
    if body_bytes is not None:
        if sha256(body_bytes) != header.body_hash:
            raise SignatureError("the body does not match the signed body hash", clause="§3.4-5")
        body_cls = MESSAGE_TYPES[header.type]
        decoded = _codec.decode_form(body_bytes, path="$.body")
        body = body_cls.from_wire(decoded, max_depth=limits.max_depth)
    return Signed(header, body, hdr_bytes, body_bytes, sig, data, sha256(hdr_bytes))


# -- sealed content (§5.5) ------------------------------------------------------------------------


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
    outer = _codec.decode(plain, max_depth=1, path="$.sealed")
    if type(outer) is not dict or outer.keys() != {"payload", "sig"}:
        raise DecodeError("sealed content is a map of payload and sig", clause="§5.5-3")
    payload, sig = outer["payload"], outer["sig"]
    if type(payload) is not bytes or type(sig) is not bytes or len(sig) != SIG_BYTES:
        raise DecodeError("payload is binary and sig 64 bytes", clause="§5.5-3")
    verify(Context.SEALED, payload, sig, message.sender)
    inner = _codec.decode(payload, max_depth=limits.max_depth, path="$.sealed.payload")
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
