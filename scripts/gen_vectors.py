#!/usr/bin/env python3
"""Generate the machine-readable test vectors in ``spec/vectors/`` (see its README.md).

Every value comes from fixed seeds, fixed ids and fixed times, and Ed25519 signatures are
deterministic, so the output is byte-identical on every run. The one random step of the
protocol, the ephemeral key of a sealed box (§5.5-2), is made deterministic here by deriving
the ephemeral key pair from a fixed seed and building the box by hand exactly as libsodium's
``crypto_box_seal`` does; any sealed-box opener opens it.

Usage::

    python scripts/gen_vectors.py           # (re)write spec/vectors/*.json
    python scripts/gen_vectors.py --check   # exit 1 if a committed file differs

``build()`` returns every file's text without writing, for the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import re
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings as sodium
from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from vrmproto import (
    DATA_FORMAT,
    DEFAULT_LIMITS,
    MESSAGE_TYPES,
    AddressUpdate,
    Context,
    DataErased,
    DataRecord,
    DataRequest,
    DataReturn,
    DataShare,
    DataWithdraw,
    Entry,
    FieldsContent,
    Identity,
    Intentcast,
    KeyRotate,
    MasterSeed,
    Money,
    Problem,
    ProblemReport,
    ProtocolError,
    Receipt,
    RecordsContent,
    Relationship,
    RelationshipEnd,
    Role,
    Signed,
    TermsAccept,
    TermsOffer,
    TermsReject,
    _codec,
    compare,
    fingerprint,
    key_to_text,
    latest,
    open_envelope,
    sha256,
    sign_message,
    sign_problem,
    verify_entries,
)
from vrmproto._binding import (
    build_discovery,
    decode_history,
    sign_history_request,
    verify_discovery,
)
from vrmproto._fields import dump_record
from vrmproto._history import link
from vrmproto._relationship import rotation_proof_bytes
from vrmproto._vocab import TermRef
from vrmproto.nostr import (
    Event,
    NostrKey,
    answer_event,
    intentcast_event,
    open_answer,
    open_intentcast,
    relay_intent_id,
    sign_event,
)
from vrmproto.nostr._binding import check_answer_url

SCHEMA = "vrmproto-vectors/1"
VECTORS_DIR = Path(__file__).resolve().parent.parent / "spec" / "vectors"

#: 2026-01-01T00:00:00Z in ms: the clock every vector starts from.
NOW = 1_767_225_600_000
MINUTE = 60_000
DAY = 86_400_000
#: The Ed25519 group order L (RFC 8032 §5.1).
ED25519_L = 2**252 + 27742317777372353535851937790883648493

SEED_RULE = ('the vendor seed is 32 zero bytes and the customer master seed the bytes 0 to 31 '
             '(spec §2.2, §2.3); every other seed is SHA-256("vrmproto vectors: " ‖ label), '
             'label in UTF-8')
ID_RULE = ('every other message id and thread id is the first 16 bytes of '
           'SHA-256("vrmproto vectors id: " ‖ label)')


def _seed(label: str) -> bytes:
    return sha256(f"vrmproto vectors: {label}".encode())


def _id(label: str) -> bytes:
    return sha256(f"vrmproto vectors id: {label}".encode())[:16]


# -- JSON ----------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A decoded msgpack value as JSON: bytes as lowercase hex, nil as null (README §content)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def dumps(doc: Mapping[str, Any]) -> str:
    """The one JSON form of every vector file: sorted keys, indent 1, trailing newline."""
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _vector(
    vid: str,
    description: str,
    *,
    clause: str,
    flags: Sequence[str],
    problem: Problem | None = None,
    **inputs: Any,
) -> dict[str, Any]:
    return {
        "id": vid,
        "description": description,
        "result": "valid" if problem is None else "invalid",
        "problem": None if problem is None else problem.value,
        "clause": clause,
        "flags": list(flags),
        **{k: jsonable(v) for k, v in inputs.items()},
    }


def _file(kind: str, description: str, source: str, vectors: list[dict[str, Any]],
          notes: Mapping[str, str], **extra: Any) -> dict[str, Any]:
    ids = [v["id"] for v in vectors]
    assert len(ids) == len(set(ids)), f"duplicate vector id in {kind}"
    return {
        "schema": SCHEMA,
        "kind": kind,
        "description": description,
        "source": source,
        "notes": dict(notes),
        "vectors": vectors,
        **extra,
    }


# -- deterministic sealed boxes (§5.5) -------------------------------------------------------------


def seal_deterministic(plaintext: bytes, recipient_enc_key: bytes, ephemeral_seed: bytes) -> bytes:
    """libsodium ``crypto_box_seal`` with an ephemeral key pair from ``ephemeral_seed``.

    sealed = epk ‖ crypto_box(plaintext, nonce = BLAKE2b-192(epk ‖ rpk), rpk, esk).
    """
    epk, esk = sodium.crypto_box_seed_keypair(ephemeral_seed)
    nonce = blake2b(epk + recipient_enc_key, digest_size=24, encoder=RawEncoder)
    box: bytes = sodium.crypto_box(plaintext, nonce, recipient_enc_key, esk)
    return bytes(epk) + box


def sealed_content(
    content: FieldsContent | RecordsContent,
    *,
    sender: Identity,
    recipient: Identity,
    msg_id: bytes,
    ephemeral_label: str,
) -> tuple[bytes, dict[str, Any]]:
    """The sealed field of a message (same construction as ``seal_content``) and its details."""
    content_wire = dump_record(content)
    payload = _codec.encode({"content": content_wire, "msg": msg_id, "to": recipient.public_key})
    sig = sender.sign(Context.SEALED, payload)
    plaintext = _codec.pack_sorted({"payload": payload, "sig": sig})
    eph_seed = _seed(ephemeral_label)
    box = seal_deterministic(plaintext, recipient.enc_public_key, eph_seed)
    epk, _ = sodium.crypto_box_seed_keypair(eph_seed)
    details = {
        "recipient_seed": recipient.seed,
        "recipient_enc_public_key": recipient.enc_public_key,
        "ephemeral_seed": eph_seed,
        "ephemeral_public_key": bytes(epk),
        "nonce": blake2b(bytes(epk) + recipient.enc_public_key, digest_size=24,
                         encoder=RawEncoder),
        "plaintext": plaintext,
        "payload": payload,
        "payload_signature": sig,
        "decrypted": {"content": content_wire, "msg": msg_id, "to": recipient.public_key},
    }
    return box, details


# -- the parties ---------------------------------------------------------------------------------

#: The example parties of spec §2.2-§2.4: the vendor's seed is 32 zero bytes, the customer's
#: master seed the bytes 0 to 31, the example intent id the bytes 16 to 31.
MASTER = MasterSeed(bytes(range(32)))
VENDOR = Identity(bytes(32))
VENDOR2 = Identity(_seed("second vendor"))
STRANGER = Identity(_seed("stranger"))
CUSTOMER = MASTER.pairwise(VENDOR.public_key, 0)
CUSTOMER_NEXT = MASTER.pairwise(VENDOR.public_key, 1)
INTENT_ID = bytes(range(16, 32))
INTENT = MASTER.for_intent(INTENT_ID)

NO_TRACKING = latest("vrm.no-tracking").ref()
DELETE_AFTER = latest("vrm.delete-after").ref(days=30)
RETURN_ON_REQUEST = latest("vrm.return-on-request").ref(format=DATA_FORMAT)
NO_THIRD_PARTY = latest("vrm.no-third-party").ref()
TERMS = (NO_TRACKING, DELETE_AFTER, RETURN_ON_REQUEST)


@dataclass
class Step:
    """One message of a flow: who sent it, the signed message, and when the peer got it."""

    sender: Role
    message: Signed[Any]
    received_at: int
    label: str
    sealed: dict[str, Any] | None = None


@dataclass
class Flow:
    """A customer and a vendor Relationship exchanging messages; every one is checked by both."""

    name: str
    customer: Identity
    vendor: Identity
    thread: bytes
    now: int = NOW
    steps: list[Step] = field(default_factory=list)
    customer_seeds: list[bytes] = field(default_factory=list)
    c: Relationship = field(init=False)
    v: Relationship = field(init=False)

    def __post_init__(self) -> None:
        self.c = Relationship(role=Role.CUSTOMER, identity=self.customer, thread=self.thread,
                              peer_key=self.vendor.public_key,
                              peer_enc_key=self.vendor.enc_public_key)
        self.v = Relationship(role=Role.VENDOR, identity=self.vendor, thread=self.thread,
                              peer_key=self.customer.public_key)
        self.customer_seeds = [self.customer.seed]

    def _sides(self, role: Role) -> tuple[Relationship, Relationship]:
        return (self.c, self.v) if role is Role.CUSTOMER else (self.v, self.c)

    def label(self, n: int, mtype: str) -> str:
        return f"{self.name}-{n:02d}-{mtype}"

    def next_label(self, mtype: str) -> str:
        return self.label(len(self.steps) + 1, mtype)

    def send(self, role: Role, body: Any, sealed: dict[str, Any] | None = None) -> Signed[Any]:
        sender, receiver = self._sides(role)
        self.now += MINUTE
        label = self.next_label(body.TYPE)
        sent = sender.send(body, now=self.now, msg_id=_id(label))
        receiver.receive(sent.message.envelope, now=self.now + 1_000)
        self.steps.append(Step(role, sent.message, self.now + 1_000, label, sealed))
        return sent.message

    def rotate(self, role: Role, new_identity: Identity, reason: str = "rotate") -> Signed[Any]:
        sender, receiver = self._sides(role)
        self.now += MINUTE
        label = self.next_label("key.rotate")
        sent = sender.rotate(new_identity, now=self.now, msg_id=_id(label), reason=reason)
        receiver.receive(sent.message.envelope, now=self.now + 1_000)
        self.steps.append(Step(role, sent.message, self.now + 1_000, label))
        if role is Role.CUSTOMER:
            self.customer_seeds.append(new_identity.seed)
        return sent.message

    def seal(self, role: Role, content: FieldsContent | RecordsContent, mtype: str,
             ) -> tuple[bytes, dict[str, Any]]:
        """Seal for the next message, whose id is fixed by its label."""
        sender, receiver = self._sides(role)
        label = self.next_label(mtype)
        return sealed_content(content, sender=sender.identity, recipient=receiver.identity,
                              msg_id=_id(label), ephemeral_label=f"ephemeral {label}")

    def offer(self, terms: tuple[Any, ...] = TERMS, **kw: Any) -> Signed[Any]:
        return self.send(Role.CUSTOMER, TermsOffer(terms=terms,
                                                   enc_key=self.c.identity.enc_public_key, **kw))

    def share(self, agreement: bytes, fields: Mapping[str, str]) -> Signed[Any]:
        sealed, details = self.seal(Role.CUSTOMER, FieldsContent(fields=fields), DataShare.TYPE)
        body = DataShare(agreement=agreement, purposes=(1, 2), categories=(1, 2),
                         expires=NOW + 30 * DAY, sealed=sealed)
        return self.send(Role.CUSTOMER, body, details)


def main_flow() -> Flow:
    """Every relationship message type, in one thread: the flow messages.json is cut from."""
    f = Flow("main", CUSTOMER, VENDOR, _id("thread main"))
    offer = f.offer(note="Here are my terms.", endpoint="https://alice.example/vrm")
    f.send(Role.VENDOR, Receipt(ack=offer.hash))
    f.send(Role.VENDOR, TermsAccept(offer=offer.hash, terms=offer.body.terms))
    share = f.share(offer.hash, {"email": "alice@example.org", "name": "Alice Example"})
    sealed, details = f.seal(
        Role.CUSTOMER,
        FieldsContent(fields={"address.locality": "Park City", "address.region": "UT",
                              "phone": "+1 435 555 0100"}),
        AddressUpdate.TYPE,
    )
    f.send(Role.CUSTOMER, AddressUpdate(agreement=offer.hash, sealed=sealed), details)
    request = f.send(Role.CUSTOMER, DataRequest(agreement=offer.hash, format=DATA_FORMAT))
    records = RecordsContent(records=(
        DataRecord("email", "alice@example.org", 1, "provided", NOW + 3 * MINUTE, (1, 2)),
        DataRecord("purchases.count", "3", 7, "observed", NOW + 5 * MINUTE, (1,)),
    ))
    sealed, details = f.seal(Role.VENDOR, records, DataReturn.TYPE)
    f.send(Role.VENDOR, DataReturn(request=request.hash, format=DATA_FORMAT, sealed=sealed),
           details)
    withdraw = f.send(Role.CUSTOMER, DataWithdraw(agreement=offer.hash, shares=(share.hash,),
                                                  reason="I no longer use this service."))
    erased = f.send(Role.VENDOR, DataErased(withdraw=withdraw.hash, shares=(share.hash,)))
    f.send(Role.CUSTOMER, Receipt(ack=erased.hash))
    f.rotate(Role.CUSTOMER, CUSTOMER_NEXT)
    f.send(Role.VENDOR, RelationshipEnd(reason="Account closed at the customer's request."))
    return f


def counter_flow() -> Flow:
    """A refusal with a counter-offer, a new offer from the customer, and an agreement."""
    f = Flow("counter", CUSTOMER, VENDOR, _id("thread counter"))
    offer = f.offer(terms=(NO_TRACKING, NO_THIRD_PARTY))
    f.send(Role.VENDOR, TermsReject(offer=offer.hash, reason="We work with a payment processor.",
                                    refused=("vrm.no-third-party",), counter=(NO_TRACKING,)))
    second = f.offer(terms=(NO_TRACKING,))
    f.send(Role.VENDOR, TermsAccept(offer=second.hash, terms=second.body.terms))
    return f


def intent_flows() -> tuple[Flow, Flow]:
    """One intentcast, sent to two vendors: one answers with offers, the other declines."""
    cast = Intentcast(
        what="A 4-wheel-drive SUV for five days",
        reply_by=NOW + 2 * DAY,
        constraints=("no prepaid gas", "no insurance"),
        memberships=("Avis Wizard", "Budget FastBreak", "Hertz 1 Club"),
        where="Park City, UT",
        start=NOW + 78 * DAY,
        end=NOW + 83 * DAY,
        max_price=Money(60_000, "USD"),
        terms=(NO_TRACKING,),
    )
    answered = Flow("intent", INTENT, VENDOR, INTENT_ID)
    c1 = answered.send(Role.CUSTOMER, cast)
    price = Money(54_500, "USD")
    answered.send(Role.VENDOR, Signed.offer(c1, "Jeep Grand Cherokee, unlimited miles", price,
                                            valid_until=NOW + 2 * DAY,
                                            conditions=("return with a full tank",),
                                            accepts_terms=("vrm.no-tracking",)))
    answered.send(Role.VENDOR, Signed.offer(c1, "Subaru Outback, unlimited miles",
                                            Money(49_900, "USD"), valid_until=NOW + 2 * DAY))
    answered.send(Role.CUSTOMER, RelationshipEnd(reason="I took another offer."))
    declined = Flow("intent2", INTENT, VENDOR2, INTENT_ID)
    c2 = declined.send(Role.CUSTOMER, cast)
    declined.send(Role.VENDOR, Signed.decline(c2, "No 4-wheel-drive cars free on those dates."))
    return answered, declined


# -- keys.json -----------------------------------------------------------------------------------


def _identity_fields(ident: Identity) -> dict[str, Any]:
    return {
        "public_key": ident.public_key,
        "enc_public_key": ident.enc_public_key,
        "public_key_text": key_to_text(ident.public_key),
        "enc_public_key_text": key_to_text(ident.enc_public_key, "x25519"),
        "fingerprint": fingerprint(ident.public_key),
    }


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def keys_file() -> dict[str, Any]:
    vectors: list[dict[str, Any]] = []
    seeds = [bytes(32), bytes(range(32)), _seed("second vendor"), _seed("stranger")]
    for i, seed in enumerate(seeds):
        ident = Identity(seed)
        vectors.append(_vector(
            f"identity-{i + 1}",
            "An identity from a 32-byte seed: sign_secret (the RFC 8032 private key) = "
            "HMAC-SHA-256(seed, "
            '"vrmproto/v1/identity/sign\\0"), X25519 secret = HMAC-SHA-256(seed, '
            '"vrmproto/v1/identity/enc\\0"); text forms and fingerprint of the keys.',
            clause="§2.2", flags=["Identity"], kind="identity", seed=seed,
            sign_secret=_hmac(seed, b"vrmproto/v1/identity/sign\x00"),
            enc_secret=_hmac(seed, b"vrmproto/v1/identity/enc\x00"),
            **_identity_fields(ident),
        ))
    for gen in (0, 1, 2):
        ident = MASTER.pairwise(VENDOR.public_key, gen)
        vectors.append(_vector(
            f"pairwise-{gen}",
            'The identity a customer uses with one vendor: seed = HMAC-SHA-256(master, '
            '"vrmproto/v1/pairwise\\0" ‖ vendor_key ‖ u32be(generation)).',
            clause="§2.3-1", flags=["Pairwise"], kind="pairwise", master_seed=MASTER.seed,
            vendor_key=VENDOR.public_key, generation=gen, seed=ident.seed,
            **_identity_fields(ident),
        ))
    other = MASTER.pairwise(VENDOR2.public_key, 0)
    vectors.append(_vector(
        "pairwise-other-vendor",
        "The same master seed with another vendor gives an unrelated identity (§2.3).",
        clause="§2.3-1", flags=["Pairwise"], kind="pairwise", master_seed=MASTER.seed,
        vendor_key=VENDOR2.public_key, generation=0, seed=other.seed,
        **_identity_fields(other),
    ))
    for n, intent_id in enumerate((INTENT_ID, bytes(16)), start=1):
        ident = MASTER.for_intent(intent_id)
        vectors.append(_vector(
            f"intent-{n}",
            'The throw-away identity of one intentcast: seed = HMAC-SHA-256(master, '
            '"vrmproto/v1/intent\\0" ‖ intent_id).',
            clause="§2.4-1", flags=["Intent"], kind="intent", master_seed=MASTER.seed,
            intent_id=intent_id, seed=ident.seed, **_identity_fields(ident),
        ))
    contexts = [("message", Context.MESSAGE), ("discovery", Context.DISCOVERY),
                ("key-rotation", Context.KEY_ROTATION), ("sealed", Context.SEALED),
                ("request", Context.REQUEST)]
    data = b"vrmproto test vector data"
    for name, ctx in contexts:
        vectors.append(_vector(
            f"signature-{name}",
            f"A signature for the {name} purpose: Ed25519 over context ‖ data, context = "
            f"{ctx.decode('ascii')!r}.",
            clause="§3.5-1", flags=["Signature", "Context"], kind="signature",
            seed=VENDOR.seed, public_key=VENDOR.public_key, context=ctx, data=data,
            signature=VENDOR.sign(ctx, data),
        ))
    return _file(
        "keys",
        "Key derivation (identities, pairwise and intentcast identities), key text forms, "
        "fingerprints and context-prefixed signatures.",
        f"vrmproto reference implementation (scripts/gen_vectors.py); {SEED_RULE}",
        vectors,
        {
            "Identity": "identity derivation from a 32-byte seed (§2.2)",
            "Pairwise": "per-vendor identity derived from a master seed (§2.3)",
            "Intent": "per-intentcast identity derived from a master seed (§2.4)",
            "Signature": "Ed25519 signature (RFC 8032, deterministic)",
            "Context": "the signed bytes are the purpose's context string ‖ the data (§3.5)",
        },
    )


# -- messages.json -------------------------------------------------------------------------------

_SECTION = re.compile(r"§[0-9]+(?:\.[0-9]+)*")


def _section(body_cls: type[Any]) -> str:
    match = _SECTION.search(body_cls.__doc__ or "")
    assert match, body_cls
    return match.group(0)


def _content(msg: Signed[Any]) -> dict[str, Any]:
    assert msg.body_bytes is not None
    return {"header": jsonable(_codec.decode(msg.hdr_bytes)),
            "body": jsonable(_codec.decode(msg.body_bytes))}


def message_vector(step: Step, signer: Identity, description: str) -> dict[str, Any]:
    msg = step.message
    flags = ["Valid"]
    extra: dict[str, Any] = {}
    if step.sealed is not None:
        flags.append("Sealed")
        extra["sealed"] = step.sealed
    if msg.header.prev is None:
        flags.append("FirstInChain")
    return _vector(
        step.label,
        description,
        clause=_section(MESSAGE_TYPES[msg.type]),
        flags=flags,
        type=msg.type,
        signer_seed=signer.seed,
        sender=msg.sender,
        recipient=msg.recipient,
        now=step.received_at,
        header=msg.hdr_bytes,
        body=msg.body_bytes,
        signature=msg.signature,
        envelope=msg.envelope,
        hash=msg.hash,
        content=_content(msg),
        **extra,
    )


_DESCRIBE = {
    "terms.offer": "The customer proffers terms from the roster, with its X25519 key.",
    "terms.accept": "The vendor accepts the offer: the offer's hash is the agreement id.",
    "terms.reject": "The vendor refuses one term and counters with the rest.",
    "data.share": "Personal data fields sealed to the vendor under the agreement.",
    "address.update": "New contact details, sealed to the vendor.",
    "data.request": "The customer asks for the data the vendor holds, in vrm-data/1.",
    "data.return": "The vendor's records about the customer, sealed to the customer.",
    "data.withdraw": "The customer withdraws consent for one share.",
    "data.erased": "The vendor confirms it deleted the withdrawn share.",
    "receipt": "A signed receipt acknowledging one message by its hash.",
    "key.rotate": "The customer moves to its generation-1 pairwise key, with the new key's "
                  "proof over old ‖ new ‖ thread.",
    "relationship.end": "One side ends the relationship.",
    "intentcast": "An intentcast from the customer's throw-away intent identity.",
    "intent.offer": "A vendor's offer answering the intentcast.",
    "intent.decline": "A vendor declines the intentcast.",
    "problem": "A signed problem report.",
}


def _signer(flow: Flow, step: Step) -> Identity:
    if step.sender is Role.VENDOR:
        return flow.vendor
    for seed in flow.customer_seeds:
        ident = Identity(seed)
        if ident.public_key == step.message.sender:
            return ident
    raise AssertionError(step.label)


def spec_example_receipt() -> Signed[Any]:
    """The receipt of spec §3.7, byte for byte (the spec prints its hash and envelope)."""
    msg = sign_message(
        Receipt(ack=bytes.fromhex(
            "854e4990ed9f3b3fcf961d3d198b947160838038748d50c8e7ce8f29c4da1904")),
        identity=VENDOR, recipient=CUSTOMER.public_key, thread=bytes(range(16, 32)),
        prev=None, now=NOW + 1_000, msg_id=bytes(range(32, 48)),
    )
    assert msg.hash.hex() == "e24cc6856253c77576b60431e5ae3a29d2f02b2d13914defc36dfc11ef54592d"
    assert msg.envelope.hex().endswith("a474797065a772656365697074")
    assert len(msg.envelope) == 391
    return msg


def messages_file(flows: Sequence[Flow]) -> dict[str, Any]:
    vectors = []
    for flow in flows:
        for step in flow.steps:
            desc = _DESCRIBE[step.message.type]
            if step.message.type == "receipt":
                desc += " Receipts are chained like every other relationship message."
            vectors.append(message_vector(step, _signer(flow, step), desc))
    main = flows[0]
    offer = main.steps[0].message
    problems = [
        sign_problem(Problem.CLOCK_SKEW, "created lies in the future beyond the allowed clock "
                     "skew", identity=VENDOR, now=NOW + 30 * MINUTE, msg_id=_id("problem-1"),
                     to=CUSTOMER.public_key, thread=main.thread, ref=offer.hash,
                     clause="§4.5-4", server_time=NOW + 30 * MINUTE),
        sign_problem(Problem.UNSUPPORTED_VERSION, "protocol version 2 is not supported",
                     identity=VENDOR, now=NOW + 31 * MINUTE, msg_id=_id("problem-2"),
                     clause="§4.2-1", path="$.hdr.v", supported_versions=(1,)),
    ]
    for n, p in enumerate(problems, start=1):
        desc = ("A signed problem report answering a message, outside the chain (prev nil)."
                if p.recipient else
                "A problem report with no recipient (to nil) and the all-zero thread: sent "
                "when the offending message could not be read; any recipient accepts it.")
        vectors.append(message_vector(Step(Role.VENDOR, p, p.header.created + 1_000,
                                           f"problem-{n}"), VENDOR, desc))
    example = spec_example_receipt()
    vectors.append(message_vector(Step(Role.VENDOR, example, example.header.created + 1_000,
                                       "spec-3.7-receipt"), VENDOR,
                                  "The worked example of spec §3.7: the vendor of §2.2 "
                                  "acknowledges the customer's terms.offer."))
    covered = {v["type"] for v in vectors}
    assert covered == set(MESSAGE_TYPES), set(MESSAGE_TYPES) - covered
    return _file(
        "messages",
        "Valid messages of every type: the signer's seed, the exact header, body, signature and "
        "envelope bytes, the message hash, and the content they decode to. Open each envelope "
        "at `now` with the recipient as the only local key: it must open and decode to exactly "
        "`content`; signing `content` again with the signer's seed must give the same bytes.",
        f"vrmproto reference implementation (scripts/gen_vectors.py); {SEED_RULE}; {ID_RULE}",
        vectors,
        {
            "Valid": "must open and decode to `content`",
            "Sealed": "carries a sealed box (§5.5); `sealed` gives the recipient's seed, the "
                      "ephemeral key (fixed here so the vector is reproducible; senders draw "
                      "a fresh one) and the decrypted content",
            "FirstInChain": "the sender's first message in the thread (prev is nil)",
        },
    )


# -- invalid.json --------------------------------------------------------------------------------


def _pk(value: Any) -> bytes:
    out: bytes = msgpack.packb(value, use_bin_type=True)
    return out


def _raw_map(pairs: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A msgpack map of already-encoded keys and values, in the order given (fixmap only)."""
    assert len(pairs) < 16
    return bytes([0x80 | len(pairs)]) + b"".join(k + v for k, v in pairs)


def _pairs(wire: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    return [(_pk(k), _pk(v)) for k, v in wire.items()]


@dataclass
class Mutant:
    """The base message's parts, to be altered one at a time."""

    header: dict[str, Any]
    body: bytes

    @staticmethod
    def base() -> Mutant:
        msg = _base_message()
        assert msg.body_bytes is not None
        return Mutant(dict(_codec.decode(msg.hdr_bytes)), msg.body_bytes)

    def with_body(self, body_wire: Any, *, raw: bytes | None = None) -> Mutant:
        body = raw if raw is not None else _codec.encode(body_wire)
        self.body = body
        self.header["body"] = sha256(body)
        return self

    def hdr_bytes(self) -> bytes:
        return _codec.encode(self.header)

    def envelope(self, hdr: bytes | None = None, sig: bytes | None = None,
                 **env: Any) -> bytes:
        hdr = self.hdr_bytes() if hdr is None else hdr
        sig = VENDOR.sign(Context.MESSAGE, hdr) if sig is None else sig
        out: dict[str, Any] = {"body": self.body, "hdr": hdr, "sig": sig,
                               "to": self.header.get("to"), "type": self.header.get("type")}
        out.update(env)
        return _codec.encode({k: v for k, v in out.items() if v is not _DROP})


_DROP: Any = object()


def _base_message() -> Signed[Any]:
    """A vendor's receipt to the customer: the message every invalid vector is cut from."""
    return sign_message(Receipt(ack=sha256(b"vrmproto vectors: acknowledged message")),
                        identity=VENDOR, recipient=CUSTOMER.public_key,
                        thread=_id("thread main"), prev=None, now=NOW, msg_id=_id("base"))


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def _padded_to(size: int) -> bytes:
    """A correctly signed envelope of exactly ``size`` bytes (an ignored body key pads it)."""
    pad = size
    for _ in range(4):
        m = Mutant.base().with_body({"ack": sha256(b"pad"), "pad": bytes(pad)})
        env = m.envelope()
        pad += size - len(env)
        if len(env) == size:
            return env
    raise AssertionError("could not pad")


def invalid_file() -> dict[str, Any]:
    base = _base_message()
    assert base.body_bytes is not None
    now = NOW + 1_000
    me = [CUSTOMER.public_key]
    vectors: list[dict[str, Any]] = []
    header = dict(_codec.decode(base.hdr_bytes))

    def add(vid: str, description: str, envelope: bytes, problem: Problem | None, clause: str,
            *, flags: Sequence[str], at: int = now, recipients: Sequence[bytes] = me,
            review: dict[str, str] | None = None) -> None:
        """Record a vector after checking what the reference implementation answers."""
        got = _open_result(envelope, at, recipients)
        _expect(f"invalid/{vid}", got, problem, clause, review)
        extra = {"reference_result": review} if review is not None else {}
        if review is not None:
            flags = [*flags, "UnderReview"]
        vectors.append(_vector(vid, description, clause=clause, flags=flags, problem=problem,
                               envelope=envelope, now=at, recipients=list(recipients), **extra))

    hdr, sig, body = base.hdr_bytes, base.signature, base.body_bytes

    def env(**kw: Any) -> bytes:
        fields = {"body": body, "hdr": hdr, "sig": sig, "to": base.recipient, "type": base.type}
        fields.update(kw)
        return _codec.encode({k: v for k, v in fields.items() if v is not _DROP})

    add("base", "The unaltered message every other vector here is cut from: a vendor's receipt "
        "to the customer.", base.envelope, None, "§4.5", flags=["Valid"])

    # -- signatures (§3.5) --
    add("sig-flip-r", "One bit of the signature's R half flipped.",
        env(sig=_flip(sig, 0)), Problem.BAD_SIGNATURE, "§3.5-3", flags=["InvalidSignature"])
    add("sig-flip-s", "One bit of the signature's S half flipped.",
        env(sig=_flip(sig, 40, 3)), Problem.BAD_SIGNATURE, "§3.5-3", flags=["InvalidSignature"])
    add("body-flip", "One bit of the body flipped: the body no longer matches the signed "
        "body hash.", env(body=_flip(body, len(body) - 1)), Problem.BAD_SIGNATURE, "§3.4-5",
        flags=["BodyHash"])
    id_at = hdr.index(header["id"])
    add("hdr-flip", "One bit of the header's id flipped: still a well-formed header, but not "
        "the signed one.", env(hdr=_flip(hdr, id_at + 3)), Problem.BAD_SIGNATURE, "§3.5-3",
        flags=["InvalidSignature"])
    add("sig-no-context", "Signed over the header bytes alone, without the "
        '"vrmproto/v1/message\\0" context.', env(sig=VENDOR.sign(b"", hdr)),
        Problem.BAD_SIGNATURE, "§3.5-3", flags=["Context"])
    add("sig-discovery-context", "Signed with the discovery context "
        '"vrmproto/v1/discovery\\0" instead of the message context.',
        env(sig=VENDOR.sign(Context.DISCOVERY, hdr)), Problem.BAD_SIGNATURE, "§3.5-3",
        flags=["Context"])
    add("sig-key-rotation-context", "Signed with the key-rotation context.",
        env(sig=VENDOR.sign(Context.KEY_ROTATION, hdr)), Problem.BAD_SIGNATURE, "§3.5-3",
        flags=["Context"])
    s = int.from_bytes(sig[32:], "little")
    add("sig-s-plus-l", "S replaced by S + L (little-endian 256-bit scalar): the same "
        "signature to a verifier that reduces S, refused by the strict rule (RFC 8032 "
        "§5.1.7).", env(sig=sig[:32] + (s + ED25519_L).to_bytes(32, "little")),
        Problem.BAD_SIGNATURE, "§3.5-3", flags=["SignatureMalleability"])
    identity_point = bytes([1]) + bytes(31)
    add("sig-small-order-r", "R is the identity point (small order) and S = 0, from a valid "
        "sender key.", env(sig=identity_point + bytes(32)), Problem.BAD_SIGNATURE, "§3.5-3",
        flags=["SmallOrderR"])

    # -- sender keys (§2.1-2): small-order and non-canonical points --
    small = [
        ("identity", identity_point, "the identity point (order 1); with R = identity and "
         "S = 0 this signature verifies for every message under cofactorless and cofactored "
         "lax verifiers"),
        ("order-2", bytes.fromhex("ec" + "ff" * 30 + "7f"), "the point (0, -1), order 2"),
        ("order-4", bytes(32), "the point (sqrt(-1), 0), order 4"),
        ("order-8", bytes.fromhex(
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
         "a point of order 8"),
        ("noncanonical-identity", bytes.fromhex("ee" + "ff" * 30 + "7f"),
         "y = p + 1: a non-canonical encoding of the identity point"),
    ]
    for name, key, what in small:
        assert not sodium.crypto_core_ed25519_is_valid_point(key), name
        m = Mutant.base()
        m.header["from"] = key
        add(f"key-{name}", f"The sender key is {what}; signature R = identity, S = 0.",
            m.envelope(sig=identity_point + bytes(32)), Problem.BAD_KEY, "§2.1-2",
            flags=["SmallOrderKey" if name != "noncanonical-identity" else "NonCanonicalKey"])

    # -- envelope shape (§3.4) --
    add("sig-63", "A 63-byte signature.", env(sig=sig[:63]), Problem.MALFORMED, "§3.4-3",
        flags=["TruncatedSignature"])
    add("sig-65", "A 65-byte signature (one extra byte).", env(sig=sig + b"\x00"),
        Problem.MALFORMED, "§3.4-3", flags=["SignatureWithGarbage"])
    add("body-missing", "No body: the erased form of a history entry is not a message.",
        env(body=_DROP), Problem.MALFORMED, "§3.4-2", flags=["Envelope"])
    add("envelope-unknown-key", "An envelope key other than body, hdr, sig, to, type.",
        env(zz=b"\x00"), Problem.MALFORMED, "§3.4-1", flags=["Envelope"])
    add("envelope-not-map", "An envelope that is an array, not a map.",
        _codec.encode([body, hdr, sig]), Problem.MALFORMED, "§3.4-1", flags=["Envelope"])
    add("hdr-not-map", "A header that is an array, not a map.",
        env(hdr=_codec.encode([1]), to=_DROP, type=_DROP), Problem.MALFORMED, "§4.1-1",
        flags=["Envelope"])
    add("routing-to-mismatch", "The unsigned routing copy of 'to' names another key than the "
        "signed header.", env(to=STRANGER.public_key), Problem.ENVELOPE_MISMATCH, "§3.4-4",
        flags=["Routing"])
    add("routing-type-mismatch", "The unsigned routing copy of 'type' differs from the signed "
        "header.", env(type="terms.accept"), Problem.ENVELOPE_MISMATCH, "§3.4-4", flags=["Routing"])
    add("routing-absent", "No routing copies at all: they are optional.",
        env(to=_DROP, type=_DROP), None, "§3.4-4", flags=["Valid", "Routing"])
    other_body = _codec.encode(Receipt(ack=sha256(b"another message")).to_wire())
    add("body-swapped", "A well-formed body, but not the one whose hash the header signs.",
        env(body=other_body), Problem.BAD_SIGNATURE, "§3.4-5", flags=["BodyHash"])

    # -- canonical encoding (§3.3) --
    add("trailing-bytes", "One byte after the envelope map.", base.envelope + b"\x00",
        Problem.MALFORMED, "§3.3-2", flags=["Canonical"])
    add("truncated", "The envelope cut short by one byte.", base.envelope[:-1],
        Problem.MALFORMED, "§3.3-1", flags=["Canonical"],
        review={"problem": "malformed", "clause": "",
                "note": "the reference implementation answers malformed but cites no clause "
                        "for bytes msgpack cannot parse; proposed: §3.3-1"})
    env_pairs = _pairs({"body": body, "hdr": hdr, "sig": sig, "to": base.recipient,
                        "type": base.type})
    add("envelope-duplicate-key", "The envelope map carries 'sig' twice (same value).",
        _raw_map([*env_pairs[:3], env_pairs[2], *env_pairs[3:]]), Problem.MALFORMED, "§3.3-7",
        flags=["DuplicateKey", "Canonical"])
    add("envelope-unsorted", "Envelope keys not in ascending bytewise order (hdr before body).",
        _raw_map([env_pairs[1], env_pairs[0], *env_pairs[2:]]), Problem.MALFORMED, "§3.4-1",
        flags=["Canonical"])
    add("envelope-str8-key", "The envelope key 'sig' written as str8 (d9 03) where fixstr is "
        "shortest.", _raw_map([*env_pairs[:2], (b"\xd9\x03sig", env_pairs[2][1]),
                               *env_pairs[3:]]),
        Problem.MALFORMED, "§3.3-7", flags=["NonMinimal", "Canonical"])
    add("envelope-bin32-sig", "The 64-byte signature written as bin32 where bin8 is shortest.",
        _raw_map([*env_pairs[:2], (env_pairs[2][0], b"\xc6" + struct.pack(">I", 64) + sig),
                  *env_pairs[3:]]), Problem.MALFORMED, "§3.3-7", flags=["NonMinimal", "Canonical"])

    hp = _pairs(header)
    names = [k for k, _ in header.items()]

    def raw_header(pairs: Sequence[tuple[bytes, bytes]]) -> bytes:
        h = _raw_map(pairs)
        return env(hdr=h, sig=VENDOR.sign(Context.MESSAGE, h))

    v_at = names.index("v")
    type_at = names.index("type")
    add("hdr-duplicate-key", "The header carries 'v' twice (re-signed).",
        raw_header([*hp, hp[v_at]]), Problem.MALFORMED, "§3.3-7",
        flags=["DuplicateKey", "Canonical"])
    add("hdr-unsorted", "Header keys out of order: 'v' before 'type' (re-signed).",
        raw_header([*hp[:type_at], hp[v_at], hp[type_at]]), Problem.MALFORMED, "§4.1-1",
        flags=["Canonical"])
    add("hdr-nonminimal-int", "The header's v = 1 written as uint8 (cc 01) instead of a "
        "positive fixint (re-signed).",
        raw_header([*hp[:v_at], (hp[v_at][0], b"\xcc\x01")]), Problem.MALFORMED, "§3.3-7",
        flags=["NonMinimal", "Canonical"])
    add("hdr-int64-created", "The header's created time written as int64 (d3): a "
        "non-negative integer's canonical form is the shortest uint (here uint64, cf) "
        "(re-signed).",
        raw_header([(k, (b"\xd3" + struct.pack(">q", header["created"])
                         if k == _pk("created") else v)) for k, v in hp]),
        Problem.MALFORMED, "§3.3-7", flags=["Canonical"])
    add("hdr-str8", "The header's type 'receipt' written as str8 (d9 07) where fixstr is "
        "shortest (re-signed).",
        raw_header([*hp[:type_at], (hp[type_at][0], b"\xd9\x07receipt"), hp[v_at]]),
        Problem.MALFORMED, "§3.3-7", flags=["NonMinimal", "Canonical"])
    add("hdr-float", "The header's created time written as a float64 (re-signed): a "
        "declared header field of the wrong type is invalid_field (§3.3-8).",
        raw_header([(k, (_pk(float(header["created"])) if k == _pk("created") else v))
                    for k, v in hp]), Problem.INVALID_FIELD, "§4.2-10",
        flags=["Float", "WrongType"])
    add("hdr-invalid-utf8", "The header's type is a str holding bytes that are not UTF-8 "
        "(re-signed).", raw_header([*hp[:type_at], (hp[type_at][0], b"\xa3\xff\xfe\xfd"),
                                    hp[v_at]]),
        Problem.MALFORMED, "§3.3-5", flags=["InvalidUtf8"])

    def mutant_body(vid: str, description: str, body_wire: Any, problem: Problem | None,
                    clause: str, *, flags: Sequence[str], raw: bytes | None = None,
                    review: dict[str, str] | None = None) -> None:
        m = Mutant.base().with_body(body_wire, raw=raw)
        add(vid, description + " The header names this body's hash and is correctly signed.",
            m.envelope(), problem, clause, flags=flags, review=review)

    ack = sha256(b"vrmproto vectors: acknowledged message")
    mutant_body("body-float", "A float64 in the body (an extra, otherwise ignored key).",
                None, Problem.MALFORMED, "§3.3-5", flags=["Float", "Canonical"],
                raw=_pk({"ack": ack, "x": 1.5}))
    mutant_body("body-int-range", "An integer of 2^53 in the body, outside ±(2^53 − 1).",
                None, Problem.MALFORMED, "§3.3-4", flags=["IntRange"], raw=_pk({"ack": ack,
                                                                          "x": 2**53}))
    mutant_body("body-ext-type", "A msgpack extension type in the body.", None,
                Problem.MALFORMED, "§3.3-5", flags=["Canonical"],
                raw=_pk({"ack": ack, "x": msgpack.ExtType(1, b"\x00")}))
    mutant_body("body-int-key", "A map key that is an integer, not text.", None,
                Problem.MALFORMED, "§3.3-3", flags=["Canonical"],
                raw=bytes([0x82]) + _pk("ack") + _pk(ack) + _pk(1) + _pk(0),
                review={"problem": "malformed", "clause": "",
                        "note": "msgpack's strict_map_key refuses the key before the "
                                "decoder's own §3.3-3 check runs, so no clause is cited"})
    nested: Any = 0
    for _ in range(15):
        nested = [nested]
    mutant_body("body-depth-16", "Nesting exactly at the limit of 16: the body map and 15 "
                "arrays inside it (in an extra key, which receivers ignore, §5.1-3).",
                {"ack": ack, "x": nested}, None, "§3.3-6", flags=["Valid", "Depth"])
    mutant_body("body-depth-17", "Nesting one deeper than the limit: the body map and 16 "
                "arrays.", {"ack": ack, "x": [nested]}, Problem.MALFORMED, "§3.3-6",
                flags=["Depth"])
    mutant_body("body-unknown-key", "An extra body key this version does not define: "
                "ignored (§5.1-3).", {"ack": ack, "note": "hello"}, None, "§5.1-3",
                flags=["Valid", "Extension"])
    mutant_body("body-missing-field", "The receipt body without its required 'ack' field.",
                {}, Problem.INVALID_FIELD, "§5.1-1", flags=["MissingField"])
    mutant_body("body-wrong-type", "The receipt's 'ack' is text, not 32 bytes of binary.",
                {"ack": ack.hex()}, Problem.INVALID_FIELD, "§5.1-2", flags=["WrongType"])
    mutant_body("body-wrong-size", "The receipt's 'ack' is 31 bytes, not 32.",
                {"ack": ack[:31]}, Problem.INVALID_FIELD, "§5.1-2", flags=["WrongType"])
    mutant_body("body-nil-field", "The receipt's 'ack' is nil: an absent value is omitted, "
                "never nil.", {"ack": None}, Problem.INVALID_FIELD, "§5.1-4", flags=["WrongType"])
    mutant_body("body-not-map", "The body is an array.", [ack], Problem.INVALID_FIELD,
                "§5.1-2", flags=["WrongType"])

    # -- header fields (§4.2) --
    def mutant_header(vid: str, description: str, changes: Mapping[str, Any],
                      problem: Problem | None, clause: str, *, flags: Sequence[str],
                      **kw: Any) -> None:
        m = Mutant.base()
        for k, val in changes.items():
            if val is _DROP:
                del m.header[k]
            else:
                m.header[k] = val
        add(vid, description + " (re-signed)", m.envelope(), problem, clause, flags=flags,
            **kw)

    mutant_header("hdr-version-2", "Protocol version 2 in the header.", {"v": 2},
                  Problem.UNSUPPORTED_VERSION, "§4.2-1", flags=["Version"])
    mutant_header("hdr-version-0", "Protocol version 0 in the header.", {"v": 0},
                  Problem.UNSUPPORTED_VERSION, "§4.2-1", flags=["Version"])
    mutant_header("hdr-version-text", "The header's v is text.", {"v": "1"},
                  Problem.INVALID_FIELD, "§4.2-1", flags=["WrongType"])
    mutant_header("hdr-unknown-type", "A message type no version defines.",
                  {"type": "terms.haggle"}, Problem.UNKNOWN_TYPE, "§4.2-3", flags=["UnknownType"])
    mutant_header("hdr-missing-expires", "The header has no 'expires' field.",
                  {"expires": _DROP}, Problem.INVALID_FIELD, "§4.2-2", flags=["MissingField"])
    mutant_header("hdr-missing-thread", "The header has no 'thread' field.",
                  {"thread": _DROP}, Problem.INVALID_FIELD, "§4.2-2", flags=["MissingField"])
    mutant_header("hdr-unknown-field", "The header has a field this version does not define.",
                  {"zz": 1}, Problem.INVALID_FIELD, "§4.2-2", flags=["Extension"])
    mutant_header("hdr-id-text", "The header's id is 32 hex characters of text, not 16 bytes.",
                  {"id": header["id"].hex()}, Problem.INVALID_FIELD, "§4.2-4", flags=["WrongType"])
    mutant_header("hdr-id-short", "The header's id is 15 bytes.", {"id": header["id"][:15]},
                  Problem.INVALID_FIELD, "§4.2-4", flags=["WrongType"])
    mutant_header("hdr-from-short", "The sender key is 31 bytes.",
                  {"from": VENDOR.public_key[:31]}, Problem.INVALID_FIELD, "§4.2-5",
                  flags=["WrongType"])
    mutant_header("hdr-to-nil", "No recipient on a message that is not a problem.",
                  {"to": None}, Problem.INVALID_FIELD, "§4.2-6", flags=["WrongType"])
    mutant_header("hdr-prev-short", "prev is 31 bytes.", {"prev": bytes(31)},
                  Problem.INVALID_FIELD, "§4.2-8", flags=["WrongType"])
    mutant_header("hdr-body-hash-text", "The body hash is text.",
                  {"body": header["body"].hex()}, Problem.INVALID_FIELD, "§4.2-9",
                  flags=["WrongType"])
    mutant_header("hdr-created-text", "created is text.", {"created": str(NOW)},
                  Problem.INVALID_FIELD, "§4.2-10", flags=["WrongType"])
    mutant_header("hdr-created-negative", "created is negative.",
                  {"created": -1, "expires": DAY}, Problem.INVALID_FIELD, "§4.2-10",
                  flags=["WrongType"])
    mutant_header("hdr-expires-before-created", "expires equals created.",
                  {"expires": NOW}, Problem.INVALID_FIELD, "§4.2-11", flags=["Lifetime"])
    max_life = DEFAULT_LIMITS.max_lifetime_ms
    mutant_header("hdr-lifetime-over-limit", "expires − created is one ms over the 7-day "
                  "maximum lifetime.", {"expires": NOW + max_life + 1}, Problem.INVALID_FIELD,
                  "§4.2-11", flags=["Lifetime"])
    mutant_header("hdr-lifetime-at-limit", "expires − created is exactly the 7-day maximum "
                  "lifetime.", {"expires": NOW + max_life}, None, "§4.2-11",
                  flags=["Valid", "Lifetime"])

    # -- recipient and time window (§4.5) --
    add("wrong-recipient", "Addressed to the customer, opened by a receiver holding only "
        "another key.", base.envelope, Problem.WRONG_RECIPIENT, "§4.5-2", flags=["Recipient"],
        recipients=[STRANGER.public_key])
    add("several-recipients", "Opened by a receiver holding several keys, one of them the "
        "recipient.", base.envelope, None, "§4.5-2", flags=["Valid", "Recipient"],
        recipients=[STRANGER.public_key, CUSTOMER.public_key])
    expires = header["expires"]
    add("expired", "Opened one ms after its expiry time.", base.envelope, Problem.EXPIRED,
        "§4.5-3", flags=["Time"], at=expires + 1)
    add("at-expiry", "Opened exactly at its expiry time: still valid.", base.envelope, None,
        "§4.5-3", flags=["Valid", "Time"], at=expires)
    skew = DEFAULT_LIMITS.max_clock_skew_ms
    add("future-beyond-skew", "Opened when created lies max_clock_skew_ms (120 s) + 1 ms in "
        "the future.", base.envelope, Problem.CLOCK_SKEW, "§4.5-4", flags=["Time"],
        at=NOW - skew - 1)
    add("future-within-skew", "Opened when created lies exactly max_clock_skew_ms (120 s) in "
        "the future: still valid.", base.envelope, None, "§4.5-4", flags=["Valid", "Time"],
        at=NOW - skew)

    # -- a problem needs no recipient (§4.2-6) --
    p = sign_problem(Problem.MALFORMED, "not valid msgpack", identity=VENDOR, now=NOW,
                     msg_id=_id("problem-anyone"))
    add("problem-no-recipient", "A problem report with to = nil is accepted by any receiver.",
        p.envelope, None, "§4.2-6", flags=["Valid", "Recipient"], recipients=[STRANGER.public_key])

    # -- size (§10-1) --
    limit = DEFAULT_LIMITS.max_envelope_bytes
    add("size-over-limit", "A correctly signed envelope of 256 KiB + 1 byte (a padded body): "
        "refused before any other check.", _padded_to(limit + 1), Problem.TOO_LARGE, "§10-1",
        flags=["Size"])

    return _file(
        "invalid",
        "Envelopes to open with open_envelope(envelope, now=now, recipients=recipients) and the "
        "default limits. An `invalid` vector must be refused with exactly `problem`; a `valid` "
        "one (the boundaries) must open. Each vector changes one thing in the base message; "
        "where the change is inside the header, the header is signed again with the sender's "
        "key so that the intended rule, not the signature, is what fails.",
        f"vrmproto reference implementation (scripts/gen_vectors.py); {SEED_RULE}; "
        "small-order points from ed25519-speccheck and RFC 8032 §5.1.3",
        vectors,
        {
            "Valid": "a boundary case that must be accepted",
            "InvalidSignature": "the signature does not verify",
            "SignatureMalleability": "S is not reduced modulo L (RFC 8032 §5.1.7, §8.4)",
            "SmallOrderR": "R is a small-order point",
            "SmallOrderKey": "the sender key is a small-order point: libsodium's strict rule "
                             "refuses it, lax verifiers may not",
            "NonCanonicalKey": "the sender key is a non-canonical point encoding",
            "Context": "the signature is over another or no domain-separation context",
            "TruncatedSignature": "the signature is shorter than 64 bytes",
            "SignatureWithGarbage": "the signature is longer than 64 bytes",
            "BodyHash": "the body does not match the header's body hash",
            "Envelope": "the envelope's own shape is wrong",
            "Routing": "the unsigned routing copies (to, type) of the envelope",
            "Canonical": "not the one canonical msgpack encoding (§3.3)",
            "DuplicateKey": "a map key appears twice",
            "NonMinimal": "a shorter encoding of the same value exists",
            "Float": "a floating-point number",
            "IntRange": "an integer outside ±(2^53 − 1)",
            "InvalidUtf8": "a str whose bytes are not UTF-8",
            "Depth": "nesting of arrays and maps against max_depth (16)",
            "Extension": "a field this version does not define",
            "MissingField": "a required field is absent",
            "WrongType": "a field of the wrong type or size",
            "Version": "the protocol version",
            "UnknownType": "an unknown message type",
            "Lifetime": "expires − created against max_lifetime_ms",
            "Recipient": "the recipient check",
            "Time": "the validity window at `now`",
            "Size": "max_envelope_bytes",
            "UnderReview": "the reference implementation answers differently today (see "
                           "reference_result); the expectation here is the proposed one",
        },
        limits=DEFAULT_LIMITS.to_wire(),
    )


#: Vectors whose expectation differs from what the reference implementation answers.
MISMATCHES: list[str] = []


def _expect(vid: str, got: tuple[str | None, str], problem: Problem | None, clause: str,
            review: Mapping[str, str] | None) -> None:
    """Check the reference implementation's answer: the vector's, or the one under review."""
    want: tuple[str | None, str]
    if review is not None:
        want = (review["problem"], review["clause"])
    else:
        want = (problem.value if problem else None, clause if problem else "")
    if got != want:
        MISMATCHES.append(f"{vid}: reference implementation answers {got}, expected {want}")


def _open_result(envelope: bytes, now: int, recipients: Sequence[bytes]) -> tuple[str | None,
                                                                                   str]:
    try:
        open_envelope(envelope, now=now, recipients=recipients)
    except ProtocolError as exc:
        return exc.code.value, exc.clause
    return None, ""


# -- state.json ----------------------------------------------------------------------------------


def _sequence_vector(vid: str, description: str, flow: Flow, *,
                     final: Signed[Any] | RawMessage | None = None,
                     final_sender: Role | None = None, final_now: int = 0,
                     problem: Problem | None = None, clause: str, flags: Sequence[str],
                     review: dict[str, str] | None = None) -> dict[str, Any]:
    messages = [{"from": s.sender.value, "envelope": s.message.envelope, "now": s.received_at}
                for s in flow.steps]
    receiver = None
    if final is not None:
        assert final_sender is not None
        messages.append({"from": final_sender.value, "envelope": final.envelope,
                         "now": final_now})
        receiver = final_sender.other
        side = flow.v if receiver is Role.VENDOR else flow.c
        try:
            side.receive(final.envelope, now=final_now)
        except ProtocolError as exc:
            got: tuple[str | None, str] = (exc.code.value, exc.clause)
        else:
            got = (None, "")
        _expect(f"state/{vid}", got, problem, clause, review)
    extra = {"reference_result": review} if review is not None else {}
    return _vector(
        vid, description, clause=clause, flags=flags, problem=problem,
        receiver=receiver.value if receiver else None,
        thread=flow.thread,
        customer_seeds=flow.customer_seeds,
        vendor_seed=flow.vendor.seed,
        messages=messages,
        **extra,
    )


def _forge(flow: Flow, sender: Identity, body: Any, *, prev: bytes | None,
           label: str) -> tuple[Signed[Any], int]:
    """A message signed outside any Relationship (so no local rule stops it)."""
    now = flow.now + MINUTE
    recipient = flow.vendor.public_key if sender is not flow.vendor else flow.c.identity.public_key
    msg = sign_message(body, identity=sender, recipient=recipient, thread=flow.thread,
                       prev=prev, now=now, msg_id=_id(label), lifetime_ms=DAY)
    return msg, now + 1_000


def state_file() -> dict[str, Any]:
    vectors: list[dict[str, Any]] = []

    # -- valid sequences, accepted in full by both sides --
    f = Flow("state-share", CUSTOMER, VENDOR, _id("thread state-share"))
    offer = f.offer()
    f.send(Role.VENDOR, TermsAccept(offer=offer.hash, terms=offer.body.terms))
    share = f.share(offer.hash, {"email": "alice@example.org"})
    withdraw = f.send(Role.CUSTOMER, DataWithdraw(agreement=offer.hash, shares=(share.hash,)))
    f.send(Role.VENDOR, DataErased(withdraw=withdraw.hash, shares=(share.hash,)))
    vectors.append(_sequence_vector(
        "share-withdraw-erased", "terms.offer → terms.accept → data.share → data.withdraw → "
        "data.erased: every message accepted.", f, clause="§7-1", flags=["Valid"]))
    counter = counter_flow()
    vectors.append(_sequence_vector(
        "counter-then-agree", "terms.offer → terms.reject with a counter-offer → a new "
        "terms.offer → terms.accept.", counter, clause="§7-1", flags=["Valid"]))
    answered, declined = intent_flows()
    vectors.append(_sequence_vector(
        "intent-offers-end", "intentcast → intent.offer → intent.offer → relationship.end, "
        "from the customer's throw-away intent identity.", answered, clause="§7-1",
        flags=["Valid", "Intent"]))
    vectors.append(_sequence_vector(
        "intent-decline", "intentcast → intent.decline.", declined, clause="§7-1",
        flags=["Valid", "Intent"]))
    main = main_flow()
    vectors.append(_sequence_vector(
        "all-types", "Every relationship message type in one thread, ending with a key "
        "rotation and relationship.end (the flow messages.json is cut from).", main,
        clause="§7-1", flags=["Valid", "Rotation"]))

    # -- the last message must be refused by its receiver --
    f = Flow("state-early-share", CUSTOMER, VENDOR, _id("thread state-early-share"))
    offer = f.offer()
    label = f.next_label("data.share")
    sealed, _ = sealed_content(FieldsContent(fields={"email": "alice@example.org"}),
                               sender=CUSTOMER, recipient=VENDOR, msg_id=_id(label),
                               ephemeral_label=f"ephemeral {label}")
    msg, at = _forge(f, CUSTOMER, DataShare(agreement=offer.hash, purposes=(1,),
                                            categories=(1,), expires=NOW + 30 * DAY,
                                            sealed=sealed), prev=offer.hash, label=label)
    vectors.append(_sequence_vector(
        "share-before-agreement", "A data.share while the offer is still open (no agreement "
        "yet).", f, final=msg, final_sender=Role.CUSTOMER, final_now=at,
        problem=Problem.NO_AGREEMENT, clause="§5.3-1", flags=["State"]))

    f = Flow("state-wrong-agreement", CUSTOMER, VENDOR, _id("thread state-wrong-agreement"))
    offer = f.offer()
    f.send(Role.VENDOR, TermsAccept(offer=offer.hash, terms=offer.body.terms))
    label = f.next_label("data.share")
    sealed, _ = sealed_content(FieldsContent(fields={"email": "alice@example.org"}),
                               sender=CUSTOMER, recipient=VENDOR, msg_id=_id(label),
                               ephemeral_label=f"ephemeral {label}")
    msg, at = _forge(f, CUSTOMER, DataShare(agreement=sha256(b"no such offer"), purposes=(1,),
                                            categories=(1,), expires=NOW + 30 * DAY,
                                            sealed=sealed), prev=offer.hash, label=label)
    vectors.append(_sequence_vector(
        "share-unknown-agreement", "A data.share citing an agreement id that is not this "
        "relationship's agreement.", f, final=msg, final_sender=Role.CUSTOMER, final_now=at,
        problem=Problem.NO_AGREEMENT, clause="§5.3-1", flags=["State"]))

    f = Flow("state-customer-accept", CUSTOMER, VENDOR, _id("thread state-customer-accept"))
    offer = f.offer()
    msg, at = _forge(f, CUSTOMER, TermsAccept(offer=offer.hash, terms=offer.body.terms),
                     prev=offer.hash, label=f.next_label("terms.accept"))
    vectors.append(_sequence_vector(
        "accept-from-customer", "A terms.accept sent by the customer: only a vendor accepts.",
        f, final=msg, final_sender=Role.CUSTOMER, final_now=at,
        problem=Problem.ILLEGAL_TRANSITION, clause="§7-2", flags=["State", "Role"]))

    f = Flow("state-second-accept", CUSTOMER, VENDOR, _id("thread state-second-accept"))
    offer = f.offer()
    accept = f.send(Role.VENDOR, TermsAccept(offer=offer.hash, terms=offer.body.terms))
    msg, at = _forge(f, VENDOR, TermsAccept(offer=offer.hash, terms=offer.body.terms),
                     prev=accept.hash, label=f.next_label("terms.accept"))
    vectors.append(_sequence_vector(
        "second-accept", "A second terms.accept of the same offer, correctly chained.",
        f, final=msg, final_sender=Role.VENDOR, final_now=at,
        problem=Problem.ILLEGAL_TRANSITION, clause="§7-1", flags=["State"]))

    f = Flow("state-accept-changed", CUSTOMER, VENDOR, _id("thread state-accept-changed"))
    offer = f.offer()
    msg, at = _forge(f, VENDOR, TermsAccept(offer=offer.hash, terms=offer.body.terms[:1]),
                     prev=None, label=f.next_label("terms.accept"))
    vectors.append(_sequence_vector(
        "accept-other-terms", "A terms.accept whose terms differ from the offer's.",
        f, final=msg, final_sender=Role.VENDOR, final_now=at,
        problem=Problem.INVALID_FIELD, clause="§5.2.2-2", flags=["State"]))

    f = Flow("state-chain", CUSTOMER, VENDOR, _id("thread state-chain"))
    offer = f.offer()
    f.send(Role.VENDOR, TermsAccept(offer=offer.hash, terms=offer.body.terms))
    msg, at = _forge(f, CUSTOMER, DataRequest(agreement=offer.hash, format=DATA_FORMAT),
                     prev=None, label=f.next_label("data.request"))
    vectors.append(_sequence_vector(
        "chain-broken", "The customer's second message has prev = nil instead of the hash of "
        "its terms.offer.", f, final=msg, final_sender=Role.CUSTOMER, final_now=at,
        problem=Problem.CHAIN_BROKEN, clause="§4.5-6", flags=["Chain"]))

    f = Flow("state-receipt", CUSTOMER, VENDOR, _id("thread state-receipt"))
    offer = f.offer()
    msg, at = _forge(f, VENDOR, Receipt(ack=sha256(b"never sent")), prev=None,
                     label=f.next_label("receipt"))
    vectors.append(_sequence_vector(
        "receipt-unknown", "A receipt acknowledging a message the customer never sent.",
        f, final=msg, final_sender=Role.VENDOR, final_now=at,
        problem=Problem.INVALID_FIELD, clause="§5.6.1-1", flags=["State"]))

    for reason, problem, clause, vid in (
        ("rotate", Problem.KEY_ROTATED, "§2.6-3", "rotated-key"),
        ("compromise", Problem.KEY_REVOKED, "§2.6-4", "revoked-key"),
    ):
        f = Flow(f"state-{vid}", CUSTOMER, VENDOR, _id(f"thread state-{vid}"))
        offer = f.offer()
        f.send(Role.VENDOR, TermsAccept(offer=offer.hash, terms=offer.body.terms))
        rotate = f.rotate(Role.CUSTOMER, CUSTOMER_NEXT, reason=reason)
        msg, at = _forge(f, CUSTOMER, DataRequest(agreement=offer.hash, format=DATA_FORMAT),
                         prev=rotate.hash, label=f.next_label("data.request"))
        vectors.append(_sequence_vector(
            vid, f"After a key.rotate with reason {reason!r}, a message signed by the old key.",
            f, final=msg, final_sender=Role.CUSTOMER, final_now=at, problem=problem,
            clause=clause, flags=["Rotation"]))

    f = Flow("state-rotate-bad-proof", CUSTOMER, VENDOR, _id("thread state-rotate-bad-proof"))
    offer = f.offer()
    bad_proof = CUSTOMER_NEXT.sign(Context.MESSAGE, rotation_proof_bytes(
        CUSTOMER.public_key, CUSTOMER_NEXT.public_key, f.thread))
    msg, at = _forge(f, CUSTOMER, KeyRotate(new_key=CUSTOMER_NEXT.public_key,
                                            new_enc_key=CUSTOMER_NEXT.enc_public_key,
                                            proof=bad_proof, reason="rotate"),
                     prev=offer.hash, label=f.next_label("key.rotate"))
    vectors.append(_sequence_vector(
        "rotate-proof-wrong-context", "A key.rotate whose proof was signed with the message "
        "context instead of the key-rotation context.", f, final=msg,
        final_sender=Role.CUSTOMER, final_now=at, problem=Problem.BAD_SIGNATURE,
        clause="§3.5-3", flags=["Rotation", "Context"]))

    f = Flow("state-stranger", CUSTOMER, VENDOR, _id("thread state-stranger"))
    offer = f.offer()
    msg, at = _forge(f, STRANGER, DataRequest(agreement=offer.hash, format=DATA_FORMAT),
                     prev=offer.hash, label=f.next_label("data.request"))
    vectors.append(_sequence_vector(
        "not-a-party", "A message in the thread signed by a key that is neither party's.",
        f, final=msg, final_sender=Role.CUSTOMER, final_now=at, problem=Problem.NOT_A_PARTY,
        clause="§4.5-5", flags=["Sender"]))

    f = Flow("state-ended", CUSTOMER, VENDOR, _id("thread state-ended"))
    offer = f.offer()
    end = f.send(Role.VENDOR, RelationshipEnd())
    msg, at = _forge(f, CUSTOMER, RelationshipEnd(reason="me too"), prev=offer.hash,
                     label=f.next_label("relationship.end"))
    del end
    vectors.append(_sequence_vector(
        "after-end", "A message after the relationship ended.", f, final=msg,
        final_sender=Role.CUSTOMER, final_now=at, problem=Problem.ILLEGAL_TRANSITION,
        clause="§7-1", flags=["State"]))

    vectors.extend(_expired_share_vectors())
    return _file(
        "state",
        "Sequences of messages between one customer and one vendor in one thread. Replay them "
        "in order: the receiver of each message (the side it is not `from`) must accept it, "
        "and its sender records it as sent. In an `invalid` vector the last message must be "
        "refused by its receiver (`receiver`) with exactly `problem`, and leave that side "
        "unchanged.",
        f"vrmproto reference implementation (scripts/gen_vectors.py); {SEED_RULE}; {ID_RULE}",
        vectors,
        {
            "Valid": "the whole sequence is accepted by both sides",
            "State": "the state machine (§7) or a rule of the message type (§5) refuses it",
            "Role": "the message type is never sent by that side (§7-2)",
            "Chain": "the prev hash link (§4.2-8)",
            "Rotation": "key rotation and revocation (§2.6)",
            "Context": "the signature is over another domain-separation context",
            "Sender": "the sender is not a party",
            "Intent": "an intentcast thread",
            "UnderReview": "the reference implementation answers differently today (see "
                           "reference_result); the expectation here is the proposed one",
        },
    )


def _expired_share_vectors() -> list[dict[str, Any]]:
    """A share whose `expires` has passed is still live until a data.erased (§5.3)."""
    f = Flow("state-expired-share", CUSTOMER, VENDOR, _id("thread state-expired-share"))
    offer = f.offer()
    f.send(Role.VENDOR, TermsAccept(offer=offer.hash, terms=offer.body.terms))
    sealed, details = f.seal(Role.CUSTOMER, FieldsContent(fields={"email": "alice@example.org"}),
                             DataShare.TYPE)
    share = f.send(Role.CUSTOMER, DataShare(agreement=offer.hash, purposes=(1,), categories=(2,),
                                            expires=f.now + MINUTE + 30_000, sealed=sealed),
                   details)
    withdraw = f.send(Role.CUSTOMER, DataWithdraw(agreement=offer.hash, shares=()))
    assert withdraw.header.created > share.body.expires
    f.send(Role.VENDOR, DataErased(withdraw=withdraw.hash, shares=(share.hash,)))
    return [_sequence_vector(
        "withdraw-expired-share", "A data.share valid for 30 seconds after it is sent, then, "
        "after its `expires`, a data.withdraw of every share (empty `shares`) and the "
        "data.erased that lists it: a share whose `expires` has passed is still live until a "
        "data.erased confirms its deletion (§5.3, §5.3.2-1, §5.3.3-2).", f, clause="§5.3.3-2",
        flags=["Valid"])]


# -- history.json --------------------------------------------------------------------------------


def _entries_json(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    return [{"index": e.index, "msg_hash": e.msg_hash.hex(), "link": e.link.hex(),
             "envelope": e.envelope.hex(), "outgoing": e.outgoing} for e in entries]


def _relink(entries: Sequence[Entry], start: int) -> list[Entry]:
    out = list(entries[:start])
    prev = out[-1].link if out else bytes(32)
    for e in entries[start:]:
        new = Entry(e.index, e.msg_hash, link(prev, e.msg_hash), e.envelope, e.outgoing)
        out.append(new)
        prev = new.link
    return out


def history_file() -> dict[str, Any]:
    flow = main_flow()
    ours = list(flow.c.history.entries())
    theirs = list(flow.v.history.entries())
    verify_entries(ours)
    assert compare(ours, theirs) is None
    vectors = [
        _vector("customer-log", "The customer's history of the main flow (messages.json): "
                "link_i = SHA-256(\"vrmproto/v1/history\\0\" ‖ link_(i−1) ‖ msg_hash_i), "
                "link_(−1) = 32 zero bytes; head is the last link.", clause="§8.2-1",
                flags=["Valid"], perspective="customer", entries=_entries_json(ours),
                head=ours[-1].link, compare_with=None, divergence=None),
        _vector("vendor-log", "The vendor's history of the same relationship: the same links "
                "and head, only `outgoing` differs; compare finds no divergence.",
                clause="§8.3-1", flags=["Valid"], perspective="vendor",
                entries=_entries_json(theirs), head=theirs[-1].link,
                compare_with="customer-log", divergence=None),
    ]
    k = 3
    env = _codec.decode(ours[k].envelope)
    hdr = dict(_codec.decode(env["hdr"]))
    hdr["expires"] += 1
    env["hdr"] = _codec.encode(hdr)
    tampered_entry = Entry(k, sha256(env["hdr"]), b"", _codec.encode(env), ours[k].outgoing)
    tampered = _relink([*ours[:k], tampered_entry, *ours[k + 1:]], k)
    d = compare(tampered, ours)
    assert d is not None
    assert (d.index, d.kind) == (k, "fork")
    try:
        verify_entries(tampered)
    except ProtocolError as exc:
        refused: tuple[Problem, str] | None = (exc.code, exc.clause)
    else:
        refused = None
    assert refused == (Problem.BAD_SIGNATURE, "§3.5-3")
    vectors.append(_vector(
        "tampered", f"The customer's log with entry {k}'s header altered (expires + 1, the "
        "signature kept) and every later link recomputed: verify_entries refuses entry "
        f"{k}; compare against customer-log reports a fork at index {k}.", clause="§8.3-1",
        flags=["Tampered"], problem=Problem.BAD_SIGNATURE, perspective="customer",
        entries=_entries_json(tampered), head=tampered[-1].link, compare_with="customer-log",
        divergence={"index": k, "kind": "fork", "ours": tampered[k].link.hex(),
                    "theirs": ours[k].link.hex()}))
    n = 6
    d = compare(ours[:n], ours)
    assert d is not None
    assert (d.index, d.kind) == (n, "behind")
    vectors.append(_vector(
        "prefix", f"The first {n} entries of customer-log (a side that missed the rest): "
        f"compare against customer-log reports 'behind' at index {n}.", clause="§8.3-1",
        flags=["Valid", "Prefix"], perspective="customer", entries=_entries_json(ours[:n]),
        head=ours[n - 1].link, compare_with="customer-log",
        divergence={"index": n, "kind": "behind", "ours": None, "theirs": ours[n].link.hex()}))
    return _file(
        "history",
        "Hash-linked histories (§8). Check each log (indexes from 0 without gaps, every link, "
        "every envelope's signature with no time check and erased bodies allowed) and compare "
        "it with the log named in `compare_with` (this log as ours, that one as theirs): the "
        "first index whose links differ, and whether ours is behind, ahead or forked.",
        f"vrmproto reference implementation (scripts/gen_vectors.py); {SEED_RULE}",
        vectors,
        {
            "Valid": "every entry verifies",
            "Tampered": "an entry was altered and the later links recomputed to hide it",
            "Prefix": "a log that is a prefix of another",
        },
    )


# -- raw messages (for sealed.json and terms.json) -------------------------------------------------


@dataclass(frozen=True)
class RawMessage:
    """Envelope bytes that no Signed can hold: a body the decoder refuses."""

    envelope: bytes


def _raw_message(flow: Flow, sender: Identity, mtype: str, body: bytes, *, prev: bytes | None,
                 label: str) -> tuple[RawMessage, int]:
    """A message of ``mtype`` whose body is exactly ``body`` (any bytes), signed by ``sender``
    outside any Relationship."""
    now = flow.now + MINUTE
    recipient = flow.vendor.public_key if sender is not flow.vendor else flow.c.identity.public_key
    hdr = _codec.encode({"body": sha256(body), "created": now, "expires": now + DAY,
                         "from": sender.public_key, "id": _id(label), "prev": prev,
                         "thread": flow.thread, "to": recipient, "type": mtype, "v": 1})
    envelope = _codec.encode({"body": body, "hdr": hdr, "sig": sender.sign(Context.MESSAGE, hdr),
                              "to": recipient, "type": mtype})
    return RawMessage(envelope), now + 1_000


# -- sealed.json ---------------------------------------------------------------------------------


@dataclass
class Seal:
    """The parts of one sealed content (§5.5), each of which a vector may break."""

    content: Any
    msg: bytes
    to: bytes
    enc_key: bytes
    sign_context: bytes = Context.SEALED
    extra_payload: Mapping[str, Any] = field(default_factory=dict)
    plaintext: bytes | None = None
    sig_bytes: int = 64

    def seal(self, signer: Identity, label: str) -> bytes:
        payload = _codec.encode({"content": self.content, "msg": self.msg, "to": self.to,
                                 **self.extra_payload})
        sig = signer.sign(self.sign_context, payload)[: self.sig_bytes]
        plaintext = self.plaintext
        if plaintext is None:
            plaintext = _codec.pack_sorted({"payload": payload, "sig": sig})
        return seal_deterministic(plaintext, self.enc_key, _seed(f"ephemeral {label}"))


def _agreed(name: str) -> tuple[Flow, Signed[Any]]:
    f = Flow(name, CUSTOMER, VENDOR, _id(f"thread {name}"))
    offer = f.offer()
    f.send(Role.VENDOR, TermsAccept(offer=offer.hash, terms=offer.body.terms))
    return f, offer


_FIELDS = {"fields": {"email": "alice@example.org"}}

#: (id, what is wrong, how to break the seal, problem, clause) for a data.share; every vector
#: breaks the rule of its code and, where there is one, a rule checked after it (§5.5-9).
_SEALED_CASES: tuple[tuple[str, str, dict[str, Any], Problem, str], ...] = (
    ("other-enc-key", "sealed to another X25519 key, and naming another recipient in `to`",
     {"enc_key": STRANGER.enc_public_key, "to": STRANGER.public_key},
     Problem.CANNOT_DECRYPT, "§5.5-4"),
    ("plaintext-array", "the plaintext is an array [payload, sig], not a map, and the payload "
     "names another recipient", {"plaintext": "array", "to": STRANGER.public_key},
     Problem.MALFORMED, "§5.5-3"),
    ("sig-63-bytes", "`sig` is 63 bytes, and the payload names another message",
     {"sig_bytes": 63, "msg": _id("another message")}, Problem.MALFORMED, "§5.5-3"),
    ("sig-message-context", "`sig` is made with the message context instead of the sealed "
     "one, the payload has an unknown key and names another recipient",
     {"sign_context": Context.MESSAGE, "extra_payload": {"x": 1}, "to": STRANGER.public_key},
     Problem.BAD_SIGNATURE, "§3.5-3"),
    ("payload-extra-key", "the payload map has a fourth key `x`, and names another recipient",
     {"extra_payload": {"x": 1}, "to": STRANGER.public_key}, Problem.MALFORMED, "§5.5-3"),
    ("to-other", "the payload names another recipient in `to` and another message in `msg`",
     {"to": STRANGER.public_key, "msg": _id("another message")},
     Problem.WRONG_RECIPIENT, "§5.5-5"),
    ("msg-other", "the payload names another message in `msg`, and its content is empty",
     {"msg": _id("another message"), "content": {"fields": {}}},
     Problem.ENVELOPE_MISMATCH, "§5.5-6"),
    ("content-empty", "the content's `fields` map is empty (Table 5-15: 1–64 entries)",
     {"content": {"fields": {}}}, Problem.INVALID_FIELD, "§5.1-2"),
)


def _broken_share(f: Flow, offer: Signed[Any], change: Mapping[str, Any], *,
                  agreement: bytes | None = None, expires: int = NOW + 30 * DAY,
                  ) -> tuple[Signed[Any], int]:
    label = f.next_label("data.share")
    parts = Seal(_FIELDS, _id(label), VENDOR.public_key, VENDOR.enc_public_key)
    for key, value in change.items():
        if key != "plaintext":
            setattr(parts, key, value)
    if change.get("plaintext") == "array":
        payload = _codec.encode({"content": parts.content, "msg": parts.msg, "to": parts.to})
        parts.plaintext = _codec.encode([payload, CUSTOMER.sign(Context.SEALED, payload)])
    body = DataShare(agreement=agreement or offer.hash, purposes=(1,), categories=(1,),
                     expires=expires, sealed=parts.seal(CUSTOMER, label))
    return _forge(f, CUSTOMER, body, prev=offer.hash, label=label)


def sealed_file() -> dict[str, Any]:
    """Sealed content refused in the order of §5.5-9, after every other check of the message."""
    vectors: list[dict[str, Any]] = []
    f, offer = _agreed("sealed-valid")
    msg, at = _broken_share(f, offer, {})
    f.steps.append(Step(Role.CUSTOMER, msg, at, "sealed-valid-03-data.share"))
    f.v.receive(msg.envelope, now=at)
    vectors.append(_sequence_vector(
        "valid", "A data.share whose sealed content is built by hand as §5.5 says: accepted.",
        f, clause="§5.5-1", flags=["Valid"]))
    for vid, what, change, problem, clause in _SEALED_CASES:
        f, offer = _agreed(f"sealed-{vid}")
        msg, at = _broken_share(f, offer, change)
        vectors.append(_sequence_vector(
            vid, f"A data.share whose sealed content is wrong: {what}. §5.5-9 checks in order: "
            "open, the map of payload and sig, the signature, the payload map, to, msg, "
            "content; the first that fails decides.", f, final=msg,
            final_sender=Role.CUSTOMER, final_now=at, problem=problem, clause=clause,
            flags=["Sealed", "Order"]))
    f, offer = _agreed("sealed-after-agreement")
    msg, at = _broken_share(f, offer, {"enc_key": STRANGER.enc_public_key},
                            agreement=sha256(b"no such offer"))
    vectors.append(_sequence_vector(
        "agreement-before-seal", "A data.share that names another agreement and is sealed to "
        "another key: the message's own checks come before the seal is opened (§5.5-9).", f,
        final=msg, final_sender=Role.CUSTOMER, final_now=at, problem=Problem.NO_AGREEMENT,
        clause="§5.3-1", flags=["Sealed", "Order"]))
    f, offer = _agreed("sealed-after-expiry")
    msg, at = _broken_share(f, offer, {"enc_key": STRANGER.enc_public_key},
                            expires=f.now + MINUTE)
    vectors.append(_sequence_vector(
        "expiry-before-seal", "A data.share whose `expires` has passed when it is received and "
        "which is sealed to another key: the body's rule (§5.3.1-3) comes before the seal is "
        "opened (§5.5-9).", f, final=msg, final_sender=Role.CUSTOMER, final_now=at,
        problem=Problem.INVALID_FIELD, clause="§5.3.1-3", flags=["Sealed", "Order"]))
    return _file(
        "sealed",
        "Sealed content (§5.5) refused in the order of §5.5-9. Each vector is a sequence in the "
        "form of state.json: an agreed relationship, then a data.share whose sealed content "
        "breaks one rule and, where one exists, a rule checked after it, so that only the order "
        "of §5.5-9 gives the expected code. Boxes are built as messages.json's are, from a "
        "fixed ephemeral seed.",
        f"vrmproto reference implementation (scripts/gen_vectors.py); {SEED_RULE}; {ID_RULE}; "
        'ephemeral seeds are SHA-256("vrmproto vectors: ephemeral " ‖ message label)',
        vectors,
        {
            "Valid": "the whole sequence is accepted by both sides",
            "Sealed": "the last message's sealed content (§5.5) is wrong",
            "Order": "two rules are broken; the order of §5.5-9 decides the code",
        },
    )


# -- terms.json ----------------------------------------------------------------------------------


def _ref(term: Any, **change: Any) -> dict[str, Any]:
    wire = dict(term.to_wire())
    for key, value in change.items():
        if value is _DROP:
            wire.pop(key, None)
        else:
            wire[key] = value
    return wire


_NT, _DA = NO_TRACKING, DELETE_AFTER

#: (id, description, the offer's `terms` as wire maps, problem, clause, flags).
_TERM_CASES: tuple[tuple[str, str, list[Any], Problem, str, tuple[str, ...]], ...] = (
    ("unknown-id", "a term id no receiver knows", [_ref(_NT, id="vrm.no-such-term")],
     Problem.UNKNOWN_TERM, "§6.2-3", ("Unknown",)),
    ("unknown-version", "a known id at a version that does not exist",
     [_ref(_NT, version=99)], Problem.UNKNOWN_TERM, "§6.2-3", ("Unknown",)),
    ("hash-mismatch", "a known id and version whose hash is not the term's text hash",
     [_ref(_NT, hash=sha256(b"another text"))], Problem.UNKNOWN_TERM, "§6.2-3", ("Unknown",)),
    ("hash-hex-string", "`hash` as a 64-character hex string instead of a bin",
     [_ref(_NT, hash=_NT.hash.hex())], Problem.INVALID_FIELD, "§6.2-4", ("Form",)),
    ("hash-31-bytes", "`hash` of 31 bytes", [_ref(_NT, hash=_NT.hash[:31])],
     Problem.INVALID_FIELD, "§6.2-4", ("Form",)),
    ("version-missing", "no `version`", [_ref(_NT, version=_DROP)], Problem.INVALID_FIELD,
     "§6.2-4", ("Form",)),
    ("version-bool", "`version` true instead of an int", [_ref(_NT, version=True)],
     Problem.INVALID_FIELD, "§6.2-4", ("Form",)),
    ("extra-key", "a fifth key `url`", [_ref(_NT, url="https://example.org")],
     Problem.INVALID_FIELD, "§6.2-4", ("Form",)),
    ("not-a-map", "a reference that is the term id as a str", ["vrm.no-tracking"],
     Problem.INVALID_FIELD, "§6.2-2", ("Form",)),
    ("params-empty", "an empty `params` map", [_ref(_NT, params={})],
     Problem.INVALID_FIELD, "§6.2-5", ("Form", "Params")),
    ("same-id-twice", "the same id cited twice", [_ref(_NT), _ref(_NT)],
     Problem.INVALID_FIELD, "§6.2-6", ("Form",)),
    ("param-missing", "vrm.delete-after without its required `days`",
     [_ref(_DA, params=_DROP)], Problem.INVALID_FIELD, "§6.3-3", ("Params",)),
    ("param-unknown", "a parameter the term does not declare",
     [_ref(_DA, params={"days": 30, "weeks": 4})], Problem.INVALID_FIELD, "§6.3-3",
     ("Params",)),
    ("param-str-not-int", "`days` as the str \"30\"", [_ref(_DA, params={"days": "30"})],
     Problem.INVALID_FIELD, "§6.3-3", ("Params",)),
    ("param-out-of-range", "`days` 0, below the declared range 1–3650",
     [_ref(_DA, params={"days": 0})], Problem.INVALID_FIELD, "§6.3-3", ("Params",)),
    ("param-name-form", "a parameter name with an upper-case letter",
     [_ref(_DA, params={"Days": 30})], Problem.INVALID_FIELD, "§6.3-4", ("Params", "Form")),
    ("param-str-too-long", "a str parameter value of 257 bytes",
     [_ref(_DA, params={"days": "x" * 257})], Problem.INVALID_FIELD, "§6.3-4",
     ("Params", "Form")),
)


def terms_file() -> dict[str, Any]:
    """Term references refused (§6.2, §6.3): in a first terms.offer, and in a counter-offer."""
    vectors: list[dict[str, Any]] = []
    for vid, what, terms, problem, clause, flags in _TERM_CASES:
        f = Flow(f"terms-{vid}", CUSTOMER, VENDOR, _id(f"thread terms-{vid}"))
        body = _codec.encode({"enc_key": CUSTOMER.enc_public_key, "terms": terms})
        msg, at = _raw_message(f, CUSTOMER, TermsOffer.TYPE, body, prev=None,
                               label=f.next_label("terms.offer"))
        vectors.append(_sequence_vector(
            vid, f"A first terms.offer citing {what}.", f, final=msg,
            final_sender=Role.CUSTOMER, final_now=at, problem=problem, clause=clause,
            flags=["Offer", *flags]))
    f = Flow("terms-counter-unknown", CUSTOMER, VENDOR, _id("thread terms-counter-unknown"))
    offer = f.offer(terms=(NO_TRACKING, NO_THIRD_PARTY))
    body = _codec.encode({"counter": [_ref(_NT, hash=sha256(b"another text"))],
                          "offer": offer.hash, "reason": "We work with a payment processor.",
                          "refused": ["vrm.no-third-party"]})
    msg, at = _raw_message(f, VENDOR, TermsReject.TYPE, body, prev=None,
                           label=f.next_label("terms.reject"))
    vectors.append(_sequence_vector(
        "counter-hash-mismatch", "A terms.reject whose counter-offer cites a term by a hash "
        "that is not its text hash: the customer refuses it.", f, final=msg,
        final_sender=Role.VENDOR, final_now=at, problem=Problem.UNKNOWN_TERM, clause="§6.2-3",
        flags=["Counter", "Unknown"]))
    return _file(
        "terms",
        "Term references refused (§6.2, §6.3). Each vector is a sequence in the form of "
        "state.json whose last message cites terms wrongly: a first terms.offer to the "
        "vendor, or a counter-offer to the customer. The roster the receiver knows is the one "
        "of spec §6.4 (Table 6-1).",
        f"vrmproto reference implementation (scripts/gen_vectors.py); {SEED_RULE}; {ID_RULE}",
        vectors,
        {
            "Offer": "the last message is a customer's first terms.offer",
            "Counter": "the last message is a vendor's terms.reject with a counter-offer",
            "Unknown": "the reference is well-formed but names no term the receiver knows "
                       "(§6.2-3)",
            "Form": "the reference is ill-formed (§6.2-4 to §6.2-6, §6.3-4)",
            "Params": "the parameter values break the term's declaration (§6.3)",
        },
    )


# -- http.json ----------------------------------------------------------------------------------

#: The reference vendor of http.json: the example vendor identity, agreeing to the example terms.
HTTP_ACCEPTS = tuple(ref.id for ref in TERMS)


class HttpSession:
    """One reference vendor Endpoint (sans HTTP: ``handle_inbox``/``handle_history``) with a
    fixed clock and fixed reply ids, and the exchanges recorded as vectors, in order."""

    def __init__(self) -> None:
        from vrmproto.server import Endpoint, ReferencePolicy  # noqa: PLC0415 - only here
        from vrmproto.store import MemoryStore  # noqa: PLC0415

        self.now = NOW
        self.ids = 0
        self.endpoint = Endpoint(
            VENDOR, store=MemoryStore(), name="Example Rentals",
            policy=ReferencePolicy(accepts_terms=HTTP_ACCEPTS, name="Example Rentals"),
            clock=lambda: self.now, random_id=self._next_id,
        )
        self.vectors: list[dict[str, Any]] = []

    def _next_id(self) -> bytes:
        self.ids += 1
        return _id(f"http vendor {self.ids}")

    def exchange(self, vid: str, description: str, route: str, request: bytes, *,
                 clause: str, flags: Sequence[str], **extra: Any) -> tuple[int, bytes]:
        """Hand ``request`` to the endpoint at the session's clock; record the answer."""
        self.now += MINUTE
        handle = (self.endpoint.handle_inbox if route == "inbox"
                  else self.endpoint.handle_history)
        answer = asyncio.run(handle(request))
        problem: Problem | None = None
        if answer.status >= 400:
            code = (_codec.decode(_problem_body(answer.body))["code"] if answer.body
                    else extra.pop("empty_problem"))
            problem = Problem(code)
            assert problem.status == answer.status, (vid, problem, answer.status)
        if route == "inbox" and answer.status == 200:
            extra["envelopes"] = _codec.decode(answer.body)
        self.vectors.append(_vector(
            vid, description, clause=clause, flags=flags, problem=problem,
            vendor_seed=VENDOR.seed, accepts_terms=list(HTTP_ACCEPTS), route=route,
            now=self.now, request=request, status=answer.status,
            headers=dict(sorted(answer.headers.items())), response=answer.body, **extra))
        return answer.status, answer.body


def _problem_body(envelope: bytes) -> bytes:
    body: bytes = _codec.decode(envelope)["body"]
    return body


def http_file() -> dict[str, Any]:
    """The inbox's and the history export's answers, byte for byte (§12.3, §12.5, Table 12-1)."""
    s = HttpSession()
    thread = _id("thread http")
    c = Relationship(role=Role.CUSTOMER, identity=CUSTOMER, thread=thread,
                     peer_key=VENDOR.public_key, peer_enc_key=VENDOR.enc_public_key)
    offer = c.send(TermsOffer(terms=TERMS, enc_key=CUSTOMER.enc_public_key), now=s.now,
                   msg_id=_id("http offer")).message
    _, body = s.exchange(
        "inbox-offer-accepted", "A first terms.offer: 200 with an array of envelopes, a "
        "receipt for the offer first, then the vendor's reply, a terms.accept (§12.3-1).",
        "inbox", offer.envelope, clause="§12.3-1", flags=["Inbox", "Replies"])
    replies = _codec.decode(body)
    for env in replies:
        c.receive(env, now=s.now)
    accept = open_envelope(replies[1], now=s.now, recipients=[CUSTOMER.public_key])
    ack = c.send(accept.receipt(), now=s.now, msg_id=_id("http receipt")).message
    s.exchange("inbox-receipt-204", "The customer's receipt for the terms.accept: a receipt "
               "is acknowledged by no receipt, so the answer is 204 with no body (§12.3-3).",
               "inbox", ack.envelope, clause="§12.3-3", flags=["Inbox", "NoContent"])
    s.exchange("inbox-replay", "The terms.offer delivered again: the stored response, byte "
               "for byte, and nothing applied twice (§12.6-2).", "inbox", offer.envelope,
               clause="§12.6-2", flags=["Inbox", "Replay"])
    share_id = _id("http share")
    sealed, _ = sealed_content(FieldsContent(fields={"email": "alice@example.org"}),
                               sender=CUSTOMER, recipient=VENDOR, msg_id=share_id,
                               ephemeral_label="ephemeral http share")
    share = c.send(DataShare(agreement=offer.hash, purposes=(1,), categories=(2,),
                             expires=NOW + 30 * DAY, sealed=sealed),
                   now=s.now, msg_id=share_id).message
    _, body = s.exchange(
        "inbox-share-receipt", "A data.share: 200 with an array of one envelope, the receipt.",
        "inbox", share.envelope, clause="§12.3-1", flags=["Inbox"])
    c.receive(_codec.decode(body)[0], now=s.now)
    note = sign_problem(Problem.INVALID_FIELD, "the customer refuses nothing in particular",
                        identity=CUSTOMER, now=s.now, msg_id=_id("http problem"),
                        to=VENDOR.public_key, thread=thread)
    s.exchange("inbox-problem-204", "A problem report from the peer: 204 with no body; a "
               "problem is never acknowledged (§12.3-3, §5.6.2-1).", "inbox", note.envelope,
               clause="§12.3-3", flags=["Inbox", "NoContent"])
    linked = sign_message(
        ProblemReport(code=Problem.INVALID_FIELD.value, detail="a problem with prev set"),
        identity=CUSTOMER, recipient=VENDOR.public_key, thread=thread, prev=share.hash,
        now=s.now + MINUTE, msg_id=_id("http problem prev"))
    s.exchange("inbox-problem-prev-204", "A problem report from the peer whose `prev` is a "
               "hash (its last message's) instead of nil: read like any problem, 204 with no "
               "body (§5.6.2-1).", "inbox", linked.envelope, clause="§5.6.2-1",
               flags=["Inbox", "NoContent"])
    _http_refusals(s, c, thread, offer)
    _http_history(s, c, thread)
    return _file(
        "http",
        "The HTTP binding's answers (§12.3 to §12.6), byte for byte: one session with the "
        "reference vendor, in file order. Hand each `request` to the `route` (the body of a "
        "POST to the inbox or history URL) at time `now`; the answer is `status`, `headers` "
        "and the body `response` (empty for 204). A 200 inbox answer is the canonical array "
        "of `envelopes`; an error answer is a signed problem whose code is `problem` with the "
        "status of Table 12-1; a history answer holds `entries`. The vendor is the identity "
        "of `vendor_seed`, agreeing to the terms `accepts_terms`.",
        f"vrmproto reference implementation (scripts/gen_vectors.py, vrmproto.server."
        f"Endpoint with a fixed clock); {SEED_RULE}; {ID_RULE}; the vendor's n-th random id "
        'is the ID rule with label "http vendor n"',
        s.vectors,
        {
            "Inbox": "a POST to the inbox (§12.2, §12.3)",
            "History": "a POST to the history export (§12.5)",
            "Replies": "a 200 whose array holds replies after the receipt",
            "NoContent": "a 204 with an empty body",
            "Replay": "a delivery already answered (§12.6-2)",
            "Problem": "an error answer: a signed problem, the status of Table 12-1 (§12.3-4)",
            "Empty": "an error answer with no body: a problem is never answered with a problem "
                     "(§12.3-5)",
        },
    )


def _http_refusals(s: HttpSession, c: Relationship, thread: bytes, offer: Signed[Any]) -> None:
    s.exchange("problem-malformed", "Bytes that are not an envelope: 400 and a signed problem "
               "malformed with `to` nil and the zero thread, since nothing could be read "
               "(§12.3-4, §5.6.2-2).", "inbox", b"\x92\x01\x02", clause="§3.3-1",
               flags=["Inbox", "Problem"])
    lost = sign_message(DataRequest(agreement=offer.hash, format=DATA_FORMAT),
                        identity=CUSTOMER, recipient=VENDOR.public_key,
                        thread=_id("thread http unknown"), prev=offer.hash,
                        now=s.now + MINUTE, msg_id=_id("http unknown thread"))
    s.exchange("problem-no-relationship", "A data.request in a thread the vendor does not "
               "hold: 404, no_relationship, `ref` the message's hash (§12.2-6).", "inbox",
               lost.envelope, clause="§12.2-6", flags=["Inbox", "Problem"])
    broken = sign_message(DataRequest(agreement=offer.hash, format=DATA_FORMAT),
                          identity=CUSTOMER, recipient=VENDOR.public_key, thread=thread,
                          prev=offer.hash, now=s.now + MINUTE, msg_id=_id("http chain"))
    s.exchange("problem-chain-broken", "A data.request whose `prev` is the customer's "
               "terms.offer, though the customer has sent two messages since: 409, "
               "chain_broken.",
               "inbox", broken.envelope, clause="§4.5-6", flags=["Inbox", "Problem"])
    other = sign_message(DataRequest(agreement=offer.hash, format=DATA_FORMAT),
                         identity=CUSTOMER, recipient=VENDOR2.public_key, thread=thread,
                         prev=c.our_head, now=s.now + MINUTE, msg_id=_id("http recipient"))
    s.exchange("problem-wrong-recipient", "A message addressed to another vendor's key: 421, "
               "wrong_recipient (§4.5-2).", "inbox", other.envelope, clause="§4.5-2",
               flags=["Inbox", "Problem"])
    early = sign_message(DataRequest(agreement=offer.hash, format=DATA_FORMAT),
                         identity=CUSTOMER, recipient=VENDOR.public_key, thread=thread,
                         prev=c.our_head, now=s.now + MINUTE + 10 * MINUTE,
                         msg_id=_id("http skew"))
    s.exchange("problem-clock-skew", "A message created ten minutes ahead of the vendor's "
               "clock: 400, clock_skew, carrying `server_time` (§4.5-4).", "inbox",
               early.envelope, clause="§4.5-4", flags=["Inbox", "Problem"])
    bad = sign_problem(Problem.INVALID_FIELD, "addressed to another vendor",
                       identity=CUSTOMER, now=s.now + MINUTE, msg_id=_id("http bad problem"),
                       to=VENDOR2.public_key, thread=thread)
    s.exchange("problem-not-answered", "A problem report addressed to another vendor's key: "
               "refused with the status of wrong_recipient (421) and an empty body, since a "
               "problem is never answered with a problem (§12.3-5).", "inbox", bad.envelope,
               clause="§12.3-5", flags=["Inbox", "Empty"], empty_problem="wrong_recipient")


def _http_history(s: HttpSession, c: Relationship, thread: bytes) -> None:
    request = sign_history_request(CUSTOMER, thread=thread, recipient=VENDOR.public_key,
                                   now=s.now + MINUTE, nonce=_id("http history nonce"))
    status, body = s.exchange(
        "history-export", "A signed history request from the customer, `start` 0: 200 with "
        "the vendor's entries from index 0, each [index, msg_hash, link, envelope] (§12.5-3); "
        "they are the customer's own history, link for link.", "history", request,
        clause="§12.5-3", flags=["History"],
        entries=[[e.index, e.msg_hash.hex(), e.link.hex(), e.envelope.hex()]
                 for e in c.history.entries()])
    assert status == 200
    assert [(e.link, e.envelope) for e in decode_history(body)] == [
        (e.link, e.envelope) for e in c.history.entries()]
    stranger = sign_history_request(STRANGER, thread=thread, recipient=VENDOR.public_key,
                                    now=s.now + MINUTE, nonce=_id("http history stranger"))
    s.exchange("history-not-a-party", "A history request for the thread signed by a key that "
               "is not the customer's: 403, not_a_party (§12.5-4).", "history", stranger,
               clause="§12.5-4", flags=["History", "Problem"])
    unsigned = _codec.encode({"req": b"", "sig": b""})
    s.exchange("history-unsigned", "A history request whose `sig` is not 64 bytes: 401, "
               "unauthorized (§12.5-1).", "history", unsigned, clause="§12.5-1",
               flags=["History", "Problem"])


# -- discovery.json -----------------------------------------------------------------------------

_DOC_NOW = NOW + MINUTE


def _doc(**change: Any) -> dict[str, Any]:
    """The example vendor's document as a dict (§13.1-3), with fields changed or dropped."""
    body, _ = build_discovery(VENDOR, name="Example Rentals", role="vendor", now=NOW,
                              limits=DEFAULT_LIMITS, types=("terms.offer", "intentcast"),
                              accepts_terms=("vrm.no-tracking", "vrm.delete-after"))
    doc: dict[str, Any] = json.loads(body)
    for key, value in change.items():
        if value is _DROP:
            doc.pop(key)
        else:
            doc[key] = value
    return doc


def _doc_bytes(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")


def _signed(body: bytes, signer: Identity = VENDOR) -> str:
    sig = signer.sign(Context.DISCOVERY, body)
    return "ed25519=" + base64.urlsafe_b64encode(sig).rstrip(b"=").decode("ascii")


def _small_order_key_text() -> str:
    """A signing key of small order (the point of order 4), as text (§2.5-1)."""
    key = bytes([0] * 31 + [0x80])  # y = 0 with the sign bit set: a point of order 4
    assert not sodium.crypto_core_ed25519_is_valid_point(key)
    return key_to_text(key)


def _discovery_cases() -> list[tuple[str, str, bytes, str | None, dict[str, Any],
                                      Problem | None, str, list[str]]]:
    """(id, description, body, Vrm-Signature, reader's inputs, problem, clause, flags)."""
    base = _doc_bytes(_doc())
    good = _signed(base)
    cases: list[tuple[str, str, bytes, str | None, dict[str, Any], Problem | None, str,
                      list[str]]] = [
        ("valid", "The example vendor's document, signed by its key.", base, good, {}, None,
         "§13.1-2", ["Valid"]),
        ("valid-pinned", "The same document read by an agent that pinned the vendor's key.",
         base, good, {"expected_key": VENDOR.public_key.hex(), "role": "vendor"}, None,
         "§13.1-4", ["Valid"]),
    ]

    def signed(vid: str, what: str, body: bytes, problem: Problem | None, clause: str, *,
               flags: list[str], **reader: Any) -> None:
        cases.append((vid, what, body, _signed(body), reader, problem, clause, flags))

    signed("valid-unknown-field", "A document with a field this version does not define: it "
           "is ignored (§13.1-3).", _doc_bytes(_doc(x_vendor_note="hello")), None, "§13.1-3",
           flags=["Valid"])
    cases += [
        ("no-signature", "The document without its Vrm-Signature header.", base, None, {},
         Problem.BAD_SIGNATURE, "§13.1-2", ["Signature"]),
        ("signature-prefix", "The header's prefix in upper case (`Ed25519=`).", base,
         "E" + good[1:], {}, Problem.BAD_SIGNATURE, "§13.1-2", ["Signature"]),
        ("signature-63-bytes", "A signature of 63 bytes.", base,
         "ed25519=" + base64.urlsafe_b64encode(
             VENDOR.sign(Context.DISCOVERY, base)[:63]).rstrip(b"=").decode(), {},
         Problem.BAD_SIGNATURE, "§13.1-2", ["Signature"]),
        ("body-changed", "One byte of the body changed after signing (a space added before "
         "the closing brace).", base[:-1] + b" }", good, {}, Problem.BAD_SIGNATURE, "§3.5-3",
         ["Signature"]),
    ]
    msg_ctx = VENDOR.sign(Context.MESSAGE, base)
    cases.append(("message-context", "Signed with the message context instead of the "
                  "discovery one.", base, "ed25519=" + base64.urlsafe_b64encode(msg_ctx)
                  .rstrip(b"=").decode(), {}, Problem.BAD_SIGNATURE, "§3.5-3",
                  ["Signature", "Context"]))
    signed("not-json", "A body that is not JSON.", b"{\"vrm\": 1,", Problem.MALFORMED,
           "§13.1-1", flags=["Json"])
    signed("not-utf8", "A body with a byte that is not UTF-8 in a string.",
           base.replace(b"Example Rentals", b"Example \xff Rentals"), Problem.MALFORMED,
           "§13.1-1", flags=["Json"])
    signed("not-an-object", "A JSON array instead of an object.", b"[1]",
           Problem.INVALID_FIELD, "§13.1-1", flags=["Json"])
    signed("repeated-key", "The top-level object names `inbox` twice, with two different "
           "URLs: parsers disagree on which wins (§11.3-1).",
           base.replace(b'  "inbox": "/vrm/inbox",',
                        b'  "inbox": "/vrm/inbox",\n  "inbox": "https://evil.example/in",'),
           Problem.MALFORMED, "§13.1-1", flags=["Json", "Repeated"])
    signed("repeated-key-nested", "The `limits` object names `max_depth` twice (§11.3-1).",
           base.replace(b'    "max_depth": 16,', b'    "max_depth": 16,\n    "max_depth": 64,'),
           Problem.MALFORMED, "§13.1-1", flags=["Json", "Repeated"])
    signed("repeated-key-escaped", "The top-level object names `name` twice, once written "
           "with a JSON escape (`\\u006eame`): the same key (§11.3-1).",
           base.replace(b'  "name": "Example Rentals",',
                        b'  "name": "Example Rentals",\n  "\\u006eame": "Other",'),
           Problem.MALFORMED, "§13.1-1", flags=["Json", "Repeated"])
    for vid, value, what in (("vrm-2", 2, "the format 2"), ("vrm-str", "1", "the str \"1\""),
                             ("vrm-float", 1.5, "the number 1.5"),
                             ("vrm-missing", _DROP, "no `vrm`")):
        signed(vid, f"A document whose `vrm` is {what}: this version reads format 1 only "
               "(§13.1-3).", _doc_bytes(_doc(vrm=value)), Problem.INVALID_FIELD, "§13.1-3",
               flags=["Field", "Format"])
    signed("inbox-missing", "A document without `inbox`.", _doc_bytes(_doc(inbox=_DROP)),
           Problem.INVALID_FIELD, "§13.1-3", flags=["Field"])
    signed("key-x25519-text", "`key` written as an encryption key (`x25519:…`).",
           _doc_bytes(_doc(key=key_to_text(VENDOR.enc_public_key, "x25519"))),
           Problem.INVALID_FIELD, "§13.1-3", flags=["Field", "Key"])
    signed("key-small-order", "`key` a point of small order (it cannot sign; the key is "
           "refused before the signature is checked).",
           _doc_bytes(_doc(key=_small_order_key_text())), Problem.BAD_KEY, "§2.1-2",
           flags=["Key"])
    signed("enc-key-small-order", "`enc_key` the X25519 point 1, of small order, in a "
           "document the vendor's key signs (§13.1-9).",
           _doc_bytes(_doc(enc_key=key_to_text(bytes([1] + [0] * 31), "x25519"))),
           Problem.BAD_KEY, "§2.1-5", flags=["Key"])
    cases.append(("other-key", "A valid document read by an agent that pinned another key "
                  "(§13.1-4).", base, good, {"expected_key": VENDOR2.public_key.hex()},
                  Problem.BAD_KEY, "§13.1-4", ["Key"]))
    signed("versions-2", "A document whose `versions` is [2]: no version the reader speaks.",
           _doc_bytes(_doc(versions=[2])), Problem.UNSUPPORTED_VERSION, "§13.1-10",
           flags=["Field"])
    signed("role-customer", "A customer agent's document read by an agent looking for a "
           "vendor.", _doc_bytes(_doc(role="customer")), Problem.INVALID_FIELD, "§13.1-10",
           flags=["Field"], role="vendor")
    cases.append(("expired", "The document read one ms after its `expires`.", base, good,
                  {"now": NOW + DAY + 1}, Problem.EXPIRED, "§13.1-6", ["Time"]))
    cases.append(("valid-at-expires", "The document read at its `expires` exactly.", base,
                  good, {"now": NOW + DAY}, None, "§13.1-6", ["Valid", "Time"]))
    cases.append(("issued-ahead", "The document read 120 001 ms before its `issued`.", base,
                  good, {"now": NOW - 120_001}, Problem.EXPIRED, "§13.1-6", ["Time"]))
    cases.append(("valid-skew", "The document read 120 000 ms before its `issued` (the "
                  "clock skew allowed).", base, good, {"now": NOW - 120_000}, None, "§13.1-6",
                  ["Valid", "Time"]))
    big = _doc_bytes(_doc(x_pad=""))
    big = _doc_bytes(_doc(x_pad="x" * (65_537 - len(big))))
    assert len(big) == 65_537
    signed("too-large", "A document of 65 537 bytes, one more than §13.1-5 allows.", big,
           Problem.TOO_LARGE, "§13.1-5", flags=["Size"])
    return cases


def discovery_file() -> dict[str, Any]:
    """Discovery documents a reader must refuse (§13.1), and the ones it must accept."""
    vectors: list[dict[str, Any]] = []
    for vid, what, body, header, reader, problem, clause, flags in _discovery_cases():
        inputs = {"now": _DOC_NOW, "expected_key": None, "role": None, **reader}
        try:
            verify_discovery(body, header, now=inputs["now"],
                             expected_key=bytes.fromhex(inputs["expected_key"])
                             if inputs["expected_key"] else None, role=inputs["role"])
        except ProtocolError as exc:
            got: tuple[str | None, str] = (exc.code.value, exc.clause)
        else:
            got = (None, "")
        _expect(f"discovery/{vid}", got, problem, clause, None)
        vectors.append(_vector(vid, what, clause=clause, flags=flags, problem=problem,
                               document=body, signature_header=header, **inputs))
    return _file(
        "discovery",
        "Discovery documents (§13.1) as a reader receives them: the body bytes (`document`) "
        "and the `Vrm-Signature` header (`signature_header`, null when absent), read at `now`, "
        "by a reader that pinned `expected_key` (null: none) and looks for an endpoint of "
        "`role` (null: any). A valid one must be accepted; an invalid one refused with "
        "`problem`.",
        f"vrmproto reference implementation (scripts/gen_vectors.py, verify_discovery); "
        f"{SEED_RULE}",
        vectors,
        {
            "Valid": "the reader accepts the document",
            "Signature": "the Vrm-Signature header is missing, malformed or does not verify",
            "Context": "the signature is over another domain-separation context",
            "Json": "the body is not a UTF-8 JSON object read one way only",
            "Repeated": "an object holds a key twice (§11.3-1)",
            "Field": "a field is missing or has the wrong type or value (§13.1-3, §13.1-10)",
            "Format": "the document format `vrm` is not 1",
            "Key": "a key is of the wrong form, not valid, or not the pinned one",
            "Time": "the validity window, with two minutes of clock skew (§13.1-6)",
            "Size": "the document is larger than 65 536 bytes",
        },
    )


# -- rfc8032.json --------------------------------------------------------------------------------

_RFC8032_1024 = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f"
    "77b1e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b27"
    "0b20329d658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1"
    "998bd177e93a7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa6"
    "2100ab5d1a36553e06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96"
    "bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b"
    "74ef5c53f1d8ac70bdcb7ed185ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17b"
    "a70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bd"
    "e1a9187ebb6092cf67bf2b13fd65f27088d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63b"
    "cbcc2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d2"
    "38f5555a7a569d80c3414a8d0859dc65a46128bab27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d"
    "83d1255dc51addd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9"
    "af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb751fb73e666c6c655ade8297297d07ad1ba5e43f1bca3"
    "2301651339e22904cc8c42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8ca61783a"
    "acec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34dff7310fdc82aebfd904b01e1dc54b2927094b"
    "2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649"
    "de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e488acba6b965610b5480109c8b17b"
    "80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac0943bf6686b64b257937650"
    "4ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5fb93246f6b1116398a"
    "346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f1610e4eafe595f6d"
    "9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380db2eaaa707"
    "b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8cac60c9"
    "05c15fc910840b94c00a0b9d0"
)

#: RFC 8032 §7.1, Ed25519: (name, secret key, public key, message, signature), in hex.
RFC8032: tuple[tuple[str, str, str, str, str], ...] = (
    ("TEST 1",
     "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
     "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
     "1cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("TEST 2",
     "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
     "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
     "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("TEST 3",
     "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
     "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760"
     "984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("TEST 1024",
     "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
     "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
     _RFC8032_1024,
     "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23"
     "c436d94b5e8fcd4f681e30a6ac00a9704a188a03"),
    ("TEST SHA(abc)",
     "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23"
     "a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c6"
     "6431e0303dca179c138ac17ad9bef1177331a704"),
)


def rfc8032_file() -> dict[str, Any]:
    vectors = []
    for name, sk, pk, msg, sig in RFC8032:
        pub, secret = sodium.crypto_sign_seed_keypair(bytes.fromhex(sk))
        assert pub.hex() == pk
        assert sodium.crypto_sign(bytes.fromhex(msg), secret)[:64].hex() == sig
        vectors.append(_vector(
            "rfc8032-" + name.lower().replace(" ", "-").replace("(", "-").replace(")", ""),
            f"RFC 8032 §7.1 {name}: plain Ed25519 (no context), a positive control for the "
            "signature primitive under every vrmproto signature.", clause="§3.5-1",
            flags=["Ktv"], secret_key=bytes.fromhex(sk), public_key=bytes.fromhex(pk),
            message=bytes.fromhex(msg), signature=bytes.fromhex(sig)))
    return _file(
        "rfc8032",
        "The Ed25519 test vectors of RFC 8032 §7.1: the 32-byte secret key (seed) gives the "
        "public key, signing the message gives the signature, and the signature verifies.",
        "RFC 8032, Edwards-Curve Digital Signature Algorithm (EdDSA), §7.1 "
        "(https://www.rfc-editor.org/rfc/rfc8032#section-7.1)",
        vectors,
        {"Ktv": "known test vector from the RFC"},
    )


# -- schema.json ---------------------------------------------------------------------------------

_HEX = {"type": "string", "pattern": "^([0-9a-f]{2})*$"}
_HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_HEX16 = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
_MS = {"type": "integer", "minimum": 0}


def _kind_rule(kind: str, required: Sequence[str], props: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "if": {"properties": {"kind": {"const": kind}}},
        "then": {"properties": {"vectors": {"items": {
            "required": list(required), "properties": dict(props)}}}},
    }


def schema_file() -> dict[str, Any]:
    entry = {
        "type": "object",
        "required": ["index", "msg_hash", "link", "envelope", "outgoing"],
        "additionalProperties": False,
        "properties": {"index": {"type": "integer", "minimum": 0}, "msg_hash": _HEX32,
                       "link": _HEX32, "envelope": _HEX, "outgoing": {"type": "boolean"}},
    }
    review = {
        "type": "object", "required": ["problem", "clause", "note"],
        "additionalProperties": False,
        "properties": {"problem": {"type": ["string", "null"]}, "clause": {"type": "string"},
                       "note": {"type": "string"}},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://vrmproto.org/spec/vectors/schema.json",
        "title": "vrmproto test vector file",
        "description": "Every file in spec/vectors/*.json validates against this schema.",
        "type": "object",
        "required": ["schema", "kind", "description", "source", "notes", "vectors"],
        "additionalProperties": False,
        "properties": {
            "schema": {"const": SCHEMA},
            "kind": {"enum": ["keys", "messages", "invalid", "state", "rfc8032", "history",
                              "steps",
                              *(name.removesuffix(".json") for name in issue9_files()),
                              "nostr"]},
            "description": {"type": "string", "minLength": 1},
            "source": {"type": "string", "minLength": 1},
            "notes": {"type": "object", "additionalProperties": {"type": "string"}},
            "limits": {"type": "object", "additionalProperties": {"type": "integer"}},
            "vectors": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["id", "description", "result", "problem", "clause", "flags"],
                    "properties": {
                        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9.()-]*$"},
                        "description": {"type": "string", "minLength": 1},
                        "result": {"enum": ["valid", "invalid"]},
                        "problem": {"enum": [None, *(p.value for p in Problem)]},
                        "clause": {"type": "string",
                                   "pattern": "^§[0-9]+(\\.[0-9]+)*(-[0-9]+)?$"},
                        "flags": {"type": "array", "items": {"type": "string"}},
                        "reference_result": review,
                    },
                    "if": {"properties": {"result": {"const": "valid"}}},
                    "then": {"properties": {"problem": {"const": None}}},
                    "else": {"properties": {"problem": {"type": "string"}}},
                },
            },
        },
        "allOf": [
            _kind_rule("keys", ["kind", "seed", "public_key"], {
                "kind": {"enum": ["identity", "pairwise", "intent", "signature"]},
                "seed": _HEX32, "public_key": _HEX32, "enc_public_key": _HEX32,
                "sign_secret": _HEX32, "enc_secret": _HEX32, "master_seed": _HEX32,
                "vendor_key": _HEX32, "generation": {"type": "integer", "minimum": 0},
                "intent_id": _HEX16, "public_key_text": {"type": "string"},
                "enc_public_key_text": {"type": "string"},
                "fingerprint": {"type": "string", "pattern": "^[a-z2-7]{4}(-[a-z2-7]{4}){3}$"},
                "context": _HEX, "data": _HEX, "signature": _HEX,
            }),
            _kind_rule("messages", ["type", "signer_seed", "sender", "recipient", "now",
                                    "header", "body", "signature", "envelope", "hash",
                                    "content"], {
                "type": {"type": "string"}, "signer_seed": _HEX32, "sender": _HEX32,
                "recipient": {"oneOf": [_HEX32, {"type": "null"}]}, "now": _MS,
                "header": _HEX, "body": _HEX, "signature": _HEX, "envelope": _HEX,
                "hash": _HEX32,
                "content": {"type": "object", "required": ["header", "body"],
                            "additionalProperties": False,
                            "properties": {"header": {"type": "object"},
                                           "body": {"type": "object"}}},
                "sealed": {"type": "object", "required": [
                    "recipient_seed", "recipient_enc_public_key", "ephemeral_seed",
                    "ephemeral_public_key", "nonce", "plaintext", "payload",
                    "payload_signature", "decrypted"]},
            }),
            _kind_rule("invalid", ["envelope", "now", "recipients"], {
                "envelope": _HEX, "now": {"type": "integer"},
                "recipients": {"type": "array", "items": _HEX32},
            }),
            _kind_rule("state", ["receiver", "thread", "customer_seeds", "vendor_seed",
                                 "messages"], {
                "receiver": {"enum": ["customer", "vendor", None]}, "thread": _HEX16,
                "customer_seeds": {"type": "array", "minItems": 1, "items": _HEX32},
                "vendor_seed": _HEX32,
                "messages": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["from", "envelope", "now"],
                    "additionalProperties": False,
                    "properties": {"from": {"enum": ["customer", "vendor"]},
                                   "envelope": _HEX, "now": _MS}}},
            }),
            _kind_rule("steps", ["receiver", "thread", "customer_seeds", "vendor_seed",
                                 "messages", "step"], {
                "receiver": {"enum": ["customer", "vendor"]}, "thread": _HEX16,
                "customer_seeds": {"type": "array", "minItems": 1, "items": _HEX32},
                "vendor_seed": _HEX32, "messages": {"type": "array", "minItems": 1},
                "step": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)*$"},
            }),
            _kind_rule("rfc8032", ["secret_key", "public_key", "message", "signature"], {
                "secret_key": _HEX32, "public_key": _HEX32, "message": _HEX,
                "signature": {"type": "string", "pattern": "^[0-9a-f]{128}$"},
            }),
            _kind_rule("history", ["perspective", "entries", "head", "compare_with",
                                   "divergence"], {
                "perspective": {"enum": ["customer", "vendor"]},
                "entries": {"type": "array", "items": entry}, "head": _HEX32,
                "compare_with": {"type": ["string", "null"]},
                "divergence": {"oneOf": [{"type": "null"}, {
                    "type": "object", "required": ["index", "kind", "ours", "theirs"],
                    "properties": {"index": {"type": "integer", "minimum": 0},
                                   "kind": {"enum": ["behind", "ahead", "fork"]},
                                   "ours": {"oneOf": [_HEX32, {"type": "null"}]},
                                   "theirs": {"oneOf": [_HEX32, {"type": "null"}]}}}]},
            }),
            *_issue9_schema_rules(),
        ],
    }


# -- steps.json: steps 22 to 31 of §4.5-1 ---------------------------------------------------------
#
# Each vector is a state.json sequence whose last message breaks the rule of one step of §4.5-1
# and, where the sequence allows, a rule of a later step too: the code of the earlier step wins.
# ``step`` names it (a number of the generated list in §4.5-1).

#: A term reference no receiver knows (§6.2-3): its id is well formed, its text hash zero.
UNKNOWN_TERM = TermRef("x.vectors-unknown", 1, bytes(32))
#: An X25519 key of small order (§2.1-5), and an Ed25519 key that is not a valid point (§2.1-2).
SMALL_ORDER_X25519 = bytes(32)
INVALID_ED25519 = bytes([1]) + bytes(31)


def _step_vector(step: str, vid: str, description: str, flow: Flow, final: Signed[Any], *,
                 at: int, problem: Problem | None, clause: str,
                 flags: Sequence[str]) -> dict[str, Any]:
    """A state.json sequence whose last message, from the customer, tests ``step``."""
    v = _sequence_vector(vid, description, flow, final=final, final_sender=Role.CUSTOMER,
                         final_now=at, problem=problem, clause=clause, flags=flags)
    return {**v, "step": step}


def _sealed_to(content: FieldsContent, *, to: bytes, msg_id: bytes, label: str) -> bytes:
    """Sealed content for the vendor (its X25519 key) whose signed payload names ``to`` and
    ``msg_id``: the construction of §5.5, with the payload's fields chosen freely."""
    payload = _codec.encode({"content": dump_record(content), "msg": msg_id, "to": to})
    plaintext = _codec.pack_sorted({"payload": payload,
                                    "sig": CUSTOMER.sign(Context.SEALED, payload)})
    return seal_deterministic(plaintext, VENDOR.enc_public_key, _seed(f"ephemeral {label}"))


def _agreed(name: str) -> tuple[Flow, Signed[Any]]:
    f = Flow(f"steps-{name}", CUSTOMER, VENDOR, _id(f"thread steps-{name}"))
    offer = f.offer()
    f.send(Role.VENDOR, TermsAccept(offer=offer.hash, terms=offer.body.terms))
    return f, offer


def _steps_relationship() -> list[dict[str, Any]]:
    """Steps 22 to 29: the relationship before the type's rules."""
    out = []
    f, offer = _agreed("22")
    other = Flow("steps-22-other", STRANGER, VENDOR, _id("thread steps-22-other"))
    problem = sign_problem(Problem.INVALID_FIELD, "a problem in a thread nobody holds",
                           identity=STRANGER, now=f.now + MINUTE, msg_id=_id("steps-22-problem"),
                           to=VENDOR.public_key, thread=other.thread)  # fmt: skip
    out.append(_step_vector(
        "22", "steps-22-problem-anywhere", "A problem from a stranger, in a thread the vendor "
        "does not hold: accepted at step 22, outside every relationship, and nothing changes.",
        f, problem,
        at=f.now + MINUTE + 1_000, problem=None, clause="§4.5-9", flags=["Valid"]))
    f, offer = _agreed("23")
    at = f.now + MINUTE
    msg = sign_message(DataRequest(agreement=offer.hash, format=DATA_FORMAT), identity=STRANGER,
                       recipient=VENDOR.public_key, thread=_id("thread steps-23-elsewhere"),
                       prev=offer.hash, now=at, msg_id=_id("steps-23-elsewhere"),
                       lifetime_ms=DAY)  # fmt: skip
    at += 1_000
    out.append(_step_vector(
        "23", "steps-23-before-24", "A data.request in another thread, from a key that is no "
        "party: the thread (step 23) is checked before the sender (step 24).", f, msg,
        at=at, problem=Problem.NO_RELATIONSHIP, clause="§4.5-5", flags=["Sender"]))
    f, offer = _agreed("24")
    msg, at = _forge(f, STRANGER, TermsOffer(terms=(UNKNOWN_TERM,),
                                             enc_key=SMALL_ORDER_X25519),
                     prev=None, label="steps-24-stranger-offer")
    out.append(_step_vector(
        "24", "steps-24-before-30", "A stranger's terms.offer with prev nil in an agreed thread, "
        "citing an unknown term with an unusable enc_key: not_a_party (step 24) before the "
        "offer's rules (step 30; §12.2-7).", f, msg,
        at=at, problem=Problem.NOT_A_PARTY, clause="§4.5-5", flags=["Sender"]))
    f, offer = _agreed("24-rotated")
    rotate = f.rotate(Role.CUSTOMER, CUSTOMER_NEXT)
    msg, at = _forge(f, CUSTOMER, TermsAccept(offer=offer.hash, terms=offer.body.terms),
                     prev=rotate.hash, label="steps-24-rotated-accept")
    out.append(_step_vector(
        "24", "steps-24-before-25", "A terms.accept signed by the customer's key rotated away: "
        "key_rotated (step 24) before the role (step 25).", f, msg,
        at=at, problem=Problem.KEY_ROTATED, clause="§2.6-3", flags=["Rotation"]))
    f, offer = _agreed("25")
    msg, at = _forge(f, CUSTOMER, TermsAccept(offer=offer.hash, terms=offer.body.terms),
                     prev=None, label="steps-25-accept")
    out.append(_step_vector(
        "25", "steps-25-before-26", "A terms.accept from the customer with prev nil: the role "
        "(step 25) before the chain (step 26).", f, msg,
        at=at, problem=Problem.ILLEGAL_TRANSITION, clause="§7-2", flags=["Role"]))
    f, offer = _agreed("26")
    msg, at = _forge(f, CUSTOMER, TermsOffer(terms=(UNKNOWN_TERM,),
                                             enc_key=CUSTOMER.enc_public_key),
                     prev=None, label="steps-26-offer-again")
    out.append(_step_vector(
        "26", "steps-26-before-29", "The customer's terms.offer with prev nil after its first "
        "message, in an agreed thread, citing an unknown term: chain_broken (step 26) before "
        "the state (29) and the terms (30).", f, msg,
        at=at, problem=Problem.CHAIN_BROKEN, clause="§4.5-6", flags=["Chain"]))
    return out


def _steps_state() -> list[dict[str, Any]]:
    out = []
    f = Flow("steps-28", CUSTOMER, VENDOR, _id("thread steps-28"))
    offer = f.offer()
    msg, at = _forge(f, CUSTOMER, DataRequest(agreement=offer.hash, format=DATA_FORMAT),
                     prev=offer.hash, label="steps-28-request")
    out.append(_step_vector(
        "28", "steps-28-before-29", "A data.request while the offer is open (no agreement, and "
        "no such row in state offered): no_agreement (step 28) before the state (step 29).",
        f, msg,
        at=at, problem=Problem.NO_AGREEMENT, clause="§5.3-1", flags=["State"]))
    f, offer = _agreed("29")
    msg, at = _forge(f, CUSTOMER, TermsOffer(terms=(UNKNOWN_TERM,),
                                             enc_key=CUSTOMER.enc_public_key),
                     prev=offer.hash, label="steps-29-offer-again")
    out.append(_step_vector(
        "29", "steps-29-before-30", "A second terms.offer, correctly chained, in state agreed "
        "and citing an unknown term: the state (step 29) before the terms (step 30).", f, msg,
        at=at, problem=Problem.ILLEGAL_TRANSITION, clause="§7-1", flags=["State"]))
    return out


def _steps_rules() -> list[dict[str, Any]]:
    """Step 30's sub-steps, in order, and step 30 before step 31."""
    out = []
    known = TERMS[0]
    for vid, terms, problem, clause, step, what in (
        ("steps-30-unknown-before-twice", (UNKNOWN_TERM, known, known), Problem.UNKNOWN_TERM,
         "§6.2-3", "30.1.2", "an unknown first term, then one id twice: the first reference "
         "decides"),
        ("steps-30-twice-before-unknown", (known, known, UNKNOWN_TERM), Problem.INVALID_FIELD,
         "§6.2-6", "30.1.1", "one id twice, then an unknown term: the second reference "
         "decides"),
    ):
        f = Flow(vid, CUSTOMER, VENDOR, _id(f"thread {vid}"))
        msg, at = _forge(f, CUSTOMER, TermsOffer(terms=terms, enc_key=SMALL_ORDER_X25519),
                         prev=None, label=vid)
        out.append(_step_vector(
            step, vid, f"A first terms.offer citing {what}, with an unusable enc_key (30.1.4).",
            f, msg, at=at, problem=problem, clause=clause, flags=["State"]))
    f, offer = _agreed("30-rotate")
    proof = CUSTOMER.sign(Context.MESSAGE, b"not a proof")
    msg, at = _forge(f, CUSTOMER, KeyRotate(new_key=INVALID_ED25519,
                                            new_enc_key=SMALL_ORDER_X25519, proof=proof,
                                            reason="rotate"),
                     prev=offer.hash, label="steps-30-rotate")
    out.append(_step_vector(
        "30.14.1", "steps-30-rotate-new-key-first", "A key.rotate whose new_key is not a valid "
        "Ed25519 key, whose new_enc_key is of small order and whose proof does not verify: "
        "bad_key for new_key first (§2.6-2).", f, msg,
        at=at, problem=Problem.BAD_KEY, clause="§2.1-2", flags=["Rotation"]))
    f, offer = _agreed("30-share")
    label = f.next_label("data.share")
    sealed = _sealed_to(FieldsContent(fields={"email": "alice@example.org"}),
                        to=STRANGER.public_key, msg_id=_id("another message"), label=label)
    msg, at = _forge(f, CUSTOMER, DataShare(agreement=sha256(b"another agreement"),
                                            purposes=(1,), categories=(1,), expires=NOW,
                                            sealed=sealed),
                     prev=offer.hash, label=label)
    out.append(_step_vector(
        "30.4.1", "steps-30-before-31", "A data.share naming another agreement, already "
        "expired, whose sealed content names another recipient: the agreement (30.4.1) before "
        "the expiry (30.4.2) and the sealed content (31).", f, msg,
        at=at, problem=Problem.NO_AGREEMENT, clause="§5.3-1", flags=["State"]))
    f, offer = _agreed("31")
    label = f.next_label("data.share")
    sealed = _sealed_to(FieldsContent(fields={"email": "alice@example.org"}),
                        to=STRANGER.public_key, msg_id=_id("another message"), label=label)
    msg, at = _forge(f, CUSTOMER, DataShare(agreement=offer.hash, purposes=(1,),
                                            categories=(1,), expires=NOW + 30 * DAY,
                                            sealed=sealed),
                     prev=offer.hash, label=label)
    out.append(_step_vector(
        "31.5", "steps-31-recipient-before-message", "A data.share whose sealed content names "
        "another recipient and another message: wrong_recipient (31.5) before envelope_mismatch "
        "(31.6).", f, msg,
        at=at, problem=Problem.WRONG_RECIPIENT, clause="§5.5-5", flags=["Sealed"]))
    return out


def steps_file() -> dict[str, Any]:
    vectors = [*_steps_relationship(), *_steps_state(), *_steps_rules()]
    return _file(
        "steps",
        "Steps 22 to 31 of the processing order (§4.5-1), one sequence each, replayed as in "
        "state.json. The last message breaks the rule of the step named in `step` and, where "
        "a sequence allows, the rule of a later step as well: the earlier step decides the "
        "problem code. A `valid` vector's last message is accepted by its receiver and changes "
        "nothing there (a problem, step 22). Step 27 has no vector: a message already in the "
        "history no longer links (step 26) and is a replay (step R) before it could reach 27.",
        f"vrmproto reference implementation (scripts/gen_vectors.py); {SEED_RULE}; {ID_RULE}",
        vectors,
        {
            "Valid": "the last message is accepted (a problem, outside the relationship)",
            "State": "the state machine (§7) or a rule of the message type (§5) refuses it",
            "Role": "the message type is never sent by that side (§7-2)",
            "Chain": "the prev hash link (§4.2-8)",
            "Rotation": "key rotation (§2.6)",
            "Sender": "the sender or the thread is not this relationship's",
            "Sealed": "the sealed content (§5.5)",
        },
    )


def _issue9_schema_rules() -> list[dict[str, Any]]:
    """The vector fields of sealed.json and terms.json (those of state.json), http.json and
    discovery.json."""
    sequence = {
        "receiver": {"enum": ["customer", "vendor", None]}, "thread": _HEX16,
        "customer_seeds": {"type": "array", "minItems": 1, "items": _HEX32},
        "vendor_seed": _HEX32,
        "messages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["from", "envelope", "now"],
            "additionalProperties": False,
            "properties": {"from": {"enum": ["customer", "vendor"]},
                           "envelope": _HEX, "now": _MS}}},
    }
    required = ["receiver", "thread", "customer_seeds", "vendor_seed", "messages"]
    return [
        _kind_rule("sealed", required, sequence),
        _kind_rule("terms", required, sequence),
        _kind_rule("http", ["vendor_seed", "accepts_terms", "route", "now", "request",
                            "status", "headers", "response"], {
            "vendor_seed": _HEX32, "accepts_terms": {"type": "array", "items": {"type": "string"}},
            "route": {"enum": ["inbox", "history"]}, "now": _MS, "request": _HEX,
            "status": {"type": "integer", "minimum": 200, "maximum": 599},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "response": _HEX, "envelopes": {"type": "array", "items": _HEX},
            "entries": {"type": "array", "items": {
                "type": "array", "prefixItems": [{"type": "integer", "minimum": 0}, _HEX32,
                                                 _HEX32, _HEX], "items": False}},
        }),
        _kind_rule("discovery", ["document", "signature_header", "now", "expected_key",
                                 "role"], {
            "document": _HEX, "signature_header": {"type": ["string", "null"]},
            "now": {"type": "integer"}, "expected_key": {"oneOf": [_HEX32, {"type": "null"}]},
            "role": {"enum": ["vendor", "customer", None]},
        }),
    ]


# -- output --------------------------------------------------------------------------------------


# -- nostr.json: intentcasts through Nostr relays (§15) -------------------------------------------

_NOSTR_INTENT = bytes(range(16, 32))
_NOSTR_URL = "https://hertz.example/vrm"


def _nostr_cast(*, to_self: bool = True, pow_difficulty: int = 8) -> tuple[Any, Any, Any]:
    """The relayed Park City intentcast of the vectors: its message, its event and its key."""
    identity = MASTER.for_intent(_NOSTR_INTENT)
    body = Intentcast(what="4-wheel-drive SUV rental", reply_by=NOW + DAY,
                      constraints=("no prepaid gas",), memberships=(), where="Park City, UT",
                      max_price=Money(30000, "USD"))  # fmt: skip
    msg = sign_message(body, identity=identity,
                       recipient=identity.public_key if to_self else VENDOR.public_key,
                       thread=_id("nostr thread"), prev=None, now=NOW, msg_id=_id("nostr msg"),
                       lifetime_ms=DAY)  # fmt: skip
    key = NostrKey.for_intent(MASTER.seed, _NOSTR_INTENT)
    if to_self:
        event = intentcast_event(msg, key, geohash="9x0n8", pow_difficulty=pow_difficulty,
                                 aux=bytes(32))  # fmt: skip
    else:  # what intentcast_event refuses to build: the same tags around another envelope
        good = intentcast_event(_nostr_cast()[0], key, geohash="9x0n8", aux=bytes(32))
        event = _resign(key, good, content=base64.b64encode(msg.envelope).decode())
    return msg, event, key


def _resign(key: Any, event: Any, **change: Any) -> Any:
    parts = {"created_at": event.created_at, "kind": event.kind,
             "tags": [t for t in event.tags if t[0] != "nonce"], "content": event.content,
             **change}  # fmt: skip
    return sign_event(key, parts["created_at"], parts["kind"], parts["tags"], parts["content"],
                      aux=bytes(32))  # fmt: skip


def _nostr_refusals() -> list[tuple[str, str, Any, int, int, Problem, str, str]]:
    """(id, description, event, now, min_pow, problem, clause, flag) of events to drop."""
    _, event, key = _nostr_cast()
    later = (event.expiration + 1) * 1000
    tampered = {**event.to_json(), "content": event.content[:-4] + "AAA="}
    moved = [("expiration", str(event.expiration + 3600)) if t[0] == "expiration" else t
             for t in event.tags]  # fmt: skip
    spelt = {**_resign(key, event, tags=[("e", "x")]).to_json(), "tags": ["ex"]}
    return [
        ("tampered", "the content changed after signing: the id is not its hash", tampered,
         NOW, 0, Problem.BAD_SIGNATURE, "§15.1-2", "Event"),
        ("tags-spelt", "tags [\"ex\"], signed as [[\"e\", \"x\"]]: a tag must be an array of "
         "strings", spelt, NOW, 0, Problem.MALFORMED, "§15.1-2", "Binding"),
        ("other-kind", "a kind-1 note around the same envelope", _resign(key, event, kind=1),
         NOW, 0, Problem.UNKNOWN_TYPE, "§15.3-1", "Binding"),
        ("expired", "read one second after its expiration", event, later, 0, Problem.EXPIRED,
         "§15.1-3", "Time"),
        ("low-work", "8 bits of work where the vendor requires 12", event, NOW, 12,
         Problem.RATE_LIMITED, "§15.1-4", "Work"),
        ("addressed", "the envelope inside is addressed to a vendor, not to itself",
         _nostr_cast(to_self=False)[1], NOW, 0, Problem.INVALID_FIELD, "§15.3-2", "Binding"),
        ("stretched", "the expiration tag is an hour after reply_by",
         _resign(key, event, tags=moved), NOW, 0, Problem.INVALID_FIELD, "§15.3-4", "Time"),
    ]  # fmt: skip


def _nostr_valid() -> list[dict[str, Any]]:
    msg, event, key = _nostr_cast()
    opened = open_intentcast(event, now_ms=NOW, min_pow=8)
    assert opened.envelope == msg.envelope
    answer_key = NostrKey(_seed("nostr answer key"))
    answer = answer_event(event, msg, _NOSTR_URL, key=answer_key, now_ms=NOW + MINUTE,
                          nonce=_seed("nostr answer nonce"), aux=bytes(32))  # fmt: skip
    assert open_answer(answer, key, msg.hash).url == _NOSTR_URL
    # answers whose url is no URL (§15.4-2): a line break, a port out of range
    bad_urls = [("answer-form-line-break", "an answer whose url holds a line break",
                 "https://hertz.example/vrm\r\nX-Evil: 1"),
                ("answer-form-port", "an answer whose url's port is out of range",
                 "https://hertz.example:99999/vrm")]  # fmt: skip
    bad_answers = [
        _vector(vid, what, clause="§15.4-2", flags=["Answer"], problem=Problem.INVALID_FIELD,
                event=answer_event(event, msg, url, key=answer_key, now_ms=NOW + MINUTE,
                                   nonce=_seed("nostr answer nonce"), aux=bytes(32)).to_json(),
                recipient_secret_key=key.secret, message_hash=msg.hash)
        for vid, what, url in bad_urls]  # fmt: skip
    for v in bad_answers:
        try:
            open_answer(Event.from_json(v["event"]), key, msg.hash)
        except ProtocolError as exc:
            got: tuple[str | None, str] = (exc.code.value, exc.clause)
        else:
            got = (None, "")
        _expect(f"nostr/{v['id']}", got, Problem.INVALID_FIELD, "§15.4-2", None)
    # the same envelope in an event of another key, one second younger (§15.4-5), and again in
    # another event of the customer's own key (other tags): what a vendor reads, in this order
    copy = _resign(NostrKey(_seed("nostr copy key")), event, created_at=event.created_at + 1)
    again = _resign(key, event, tags=[t for t in event.tags if t[0] != "g"])
    return [
        _vector("intent-ids", "the intent_id of relayed intentcasts 0, 1 and 2 from the master "
                "seed 00…1f", clause="§15.2-1", flags=["Valid", "Key"], master_seed=MASTER.seed,
                intent_ids=[relay_intent_id(MASTER.seed, i).hex() for i in range(3)]),
        _vector("key", "the Nostr key of intent_id 10…1f from the master seed 00…1f",
                clause="§15.2-1", flags=["Valid", "Key"], master_seed=MASTER.seed,
                intent_id=_NOSTR_INTENT, secret_key=key.secret, public_key=key.public),
        _vector("intentcast", "the relayed Park City intentcast, 8 bits of work, aux = 32 zero "
                "bytes", clause="§15.3-1", flags=["Valid", "Binding"], event=event.to_json(),
                now=NOW, min_pow=8, envelope=msg.envelope, message_hash=msg.hash),
        _vector("answer", "Hertz's sealed answer from a key of its own, nonce and aux fixed",
                clause="§15.4-1", flags=["Valid", "Answer"], event=answer.to_json(),
                secret_key=answer_key.secret, nonce=_seed("nostr answer nonce"),
                recipient_secret_key=key.secret, message_hash=msg.hash,
                plaintext=json.dumps({"intent": msg.hash.hex(), "url": _NOSTR_URL},
                                     sort_keys=True)),
        _vector("answered-per-key", "the Park City intentcast read by a vendor that would make "
                "an offer: first a copy of its envelope under another key, then the customer's "
                "event, the customer's event again, and the same envelope in another event of "
                "the customer's key; `answered`: whether each is answered", clause="§15.4-5",
                flags=["Valid", "Once"], now=NOW, min_pow=0, message_hash=msg.hash,
                events=[copy.to_json(), event.to_json(), event.to_json(), again.to_json()],
                answered=[True, True, False, False]),
        *bad_answers,
    ]  # fmt: skip


#: (id, description, answer url, relays it came through, problem) for §15.4-6.
_ANSWER_URLS: list[tuple[str, str, str, list[str], Problem | None]] = [
    ("answer-url-public", "a public name through a public relay", _NOSTR_URL,
     ["wss://relay.example"], None),
    ("answer-url-own-relay", "this machine, through a relay on this machine too",
     "http://127.0.0.1:8421", ["ws://127.0.0.1:7447", "wss://relay.example"], None),
    ("answer-url-loopback", "this machine, through a public relay", "http://127.0.0.1:8421",
     ["wss://relay.example"], Problem.INVALID_FIELD),
    ("answer-url-localhost", "localhost, through a public relay", "http://localhost:8421/vrm",
     ["wss://relay.example"], Problem.INVALID_FIELD),
    ("answer-url-decimal", "127.0.0.1 written as one decimal number", "http://2130706433:8421",
     ["wss://relay.example"], Problem.INVALID_FIELD),
    ("answer-url-mapped", "127.0.0.1 as an IPv4-mapped IPv6 address",
     "http://[::ffff:7f00:1]:8421", ["wss://relay.example"], Problem.INVALID_FIELD),
    ("answer-url-unspecified", "0.0.0.0, which a connection reaches this machine through, "
     "through a relay on a local network", "http://0.0.0.0:8421", ["ws://192.168.1.5:7447"],
     Problem.INVALID_FIELD),
    ("answer-url-private", "a router's address, through a public relay",
     "http://192.168.1.1/admin", ["wss://relay.example"], Problem.INVALID_FIELD),
    ("answer-url-metadata", "a cloud's metadata service (link-local)",
     "http://169.254.169.254/latest", ["wss://relay.example"], Problem.INVALID_FIELD),
    ("answer-url-mdns", "a .local name, through a public relay", "http://printer.local/",
     ["wss://relay.example"], Problem.INVALID_FIELD),
    ("answer-url-unique-local", "an IPv6 unique-local address", "http://[fd00::1]/",
     ["wss://relay.example"], Problem.INVALID_FIELD),
]  # fmt: skip


def _answer_url_vectors() -> list[dict[str, Any]]:
    vectors = []
    for vid, what, url, relays, problem in _ANSWER_URLS:
        try:
            check_answer_url(url, relays)
        except ProtocolError as exc:
            got: tuple[str | None, str] = (exc.code.value, exc.clause)
        else:
            got = (None, "")
        _expect(f"nostr/{vid}", got, problem, "§15.4-6", None)
        vectors.append(_vector(vid, what, clause="§15.4-6", flags=["Where"], problem=problem,
                               url=url, relays=relays))  # fmt: skip
    return vectors


def nostr_file() -> dict[str, Any]:
    """The Nostr binding (§15): the key, an intentcast event, an answer, and events to drop."""
    vectors = _nostr_valid() + _answer_url_vectors()
    for vid, what, event, now, min_pow, problem, clause, flag in _nostr_refusals():
        obj = event if isinstance(event, dict) else event.to_json()
        try:
            open_intentcast(Event.from_json(obj), now_ms=now, min_pow=min_pow)
        except ProtocolError as exc:
            got: tuple[str | None, str] = (exc.code.value, exc.clause)
        else:
            got = (None, "")
        _expect(f"nostr/{vid}", got, problem, clause, None)
        vectors.append(_vector(vid, what, clause=clause, flags=[flag], problem=problem,
                               event=obj, now=now, min_pow=min_pow))  # fmt: skip
    return _file(
        "nostr",
        "Intentcasts through Nostr relays (§15). `intent-ids`: derive the `intent_id` of the "
        "relayed intentcasts of index 0, 1, 2 from `master_seed`; `key`: derive the Nostr key "
        "from `master_seed` and `intent_id` (§15.2-1). `intentcast`: the event must verify "
        "(§15.1-2) and open at `now` with `min_pow` to the message whose envelope and hash are "
        "given; rebuilding it with the BIP-340 auxiliary bytes all zero gives the same event. "
        "`answer`: the recipient opens `plaintext` (NIP-44 v2, `nonce`). `answered-per-key`: "
        "every event opens to `message_hash`; a vendor that would make an offer, reading them "
        "in order, answers those `answered` marks (§15.4-5). `answer-url-*`: a customer "
        "whose answer names `url` and came through `relays` sends its intentcast there, or "
        "drops the answer with `problem` (§15.4-6). Invalid vectors with "
        "`recipient_secret_key`: the recipient drops the answer `event` with `problem` "
        "(§15.4-2). The other invalid vectors "
        "are events a vendor reading at `now` and requiring `min_pow` bits must drop with "
        "`problem`.",
        f"vrmproto reference implementation (scripts/gen_vectors.py, vrmproto.nostr); "
        f"{SEED_RULE}; {ID_RULE}",
        vectors,
        {"Valid": "must be accepted", "Key": "key derivation", "Binding": "the event's form",
         "Answer": "a sealed answer", "Event": "the NIP-01 id or signature",
         "Time": "NIP-40 expiration", "Work": "NIP-13 proof of work",
         "Once": "which events of one intentcast a vendor answers",
         "Where": "where an answer may send the customer"},
    )  # fmt: skip


def issue9_files() -> dict[str, Callable[[], dict[str, Any]]]:
    """The families added for issue 9: sealed-content order, term references, the HTTP binding
    and discovery refusals."""
    return {"sealed.json": sealed_file, "terms.json": terms_file, "http.json": http_file,
            "discovery.json": discovery_file}


def build() -> dict[str, str]:
    """Every generated file's name and exact text."""
    main = main_flow()
    counter = counter_flow()
    answered, declined = intent_flows()
    docs: dict[str, Callable[[], dict[str, Any]]] = {
        "keys.json": keys_file,
        "messages.json": lambda: messages_file([main, counter, answered, declined]),
        "invalid.json": invalid_file,
        "state.json": state_file,
        "steps.json": steps_file,
        "history.json": history_file,
        "rfc8032.json": rfc8032_file,
        "schema.json": schema_file,
    }
    docs.update(issue9_files())
    docs["nostr.json"] = nostr_file
    MISMATCHES.clear()
    files = {name: dumps(make()) for name, make in docs.items()}
    if MISMATCHES:
        raise AssertionError("\n".join(MISMATCHES))
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a committed file differs from what would be generated")
    parser.add_argument("--out", type=Path, default=VECTORS_DIR, help="output directory")
    args = parser.parse_args(argv)
    files = build()
    if args.check:
        stale = [name for name, text in files.items()
                 if not (args.out / name).is_file()
                 or (args.out / name).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"{args.out / name}: differs from the generator's output", file=sys.stderr)
        if stale:
            print("run: python scripts/gen_vectors.py", file=sys.stderr)
            return 1
        print(f"{len(files)} vector files up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
