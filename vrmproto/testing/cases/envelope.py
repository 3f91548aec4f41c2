"""Discovery, envelope, signature, strict decoding, replay and time-window cases (§3, §4, §13)."""

from __future__ import annotations

import re

import msgpack
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519

from vrmproto import _codec
from vrmproto._binding import CONTENT_TYPE, SIGNATURE_HEADER, WELL_KNOWN_PATH, verify_discovery
from vrmproto._errors import ProtocolError
from vrmproto._keys import Context, is_valid_key
from vrmproto._limits import Limits
from vrmproto._messages import MESSAGE_TYPES, TermsOffer
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    envelope_bytes,
    expect_problem,
    expect_receipt,
    forged,
    header_of,
    identity,
    now_ms,
    offer_body,
    post,
    raw_map,
    resign_header,
    sign,
    signed_offer,
    target,
)

M, S, INFO = Level.MUST, Level.SHOULD, Level.INFO
L = 2**252 + 27742317777372353535851937790883648493  # the order of the Ed25519 base point
_TERM_ID = re.compile(r"[a-z][a-z0-9-]*(\.[A-Za-z0-9][A-Za-z0-9-]*)+")  # §6.1-1

# -- discovery (§13.1) ----------------------------------------------------------------------------


@case(id="DISC-001", clause="§13.1-1", level=M, tags=("discovery",),
      requirement="An endpoint MUST serve its discovery document as JSON at /.well-known/vrm.",
      accepts="HTTP 200, application/json, a JSON object")
async def discovery_served(ctx: CaseContext) -> None:
    ex = await ctx.get(WELL_KNOWN_PATH)
    ok = ex.status == 200 and ex.response_content_type == "application/json"
    try:
        ok = ok and isinstance(ex.json(), dict)
    except ValueError:
        ok = False
    ctx.expect(ok, expected="HTTP 200 with a JSON object", actual=ex.describe())


@case(id="DISC-002", clause="§13.1-2", level=M, tags=("discovery", "signature"),
      requirement="The discovery document MUST be signed by the endpoint's key over its exact "
      "bytes, in the Vrm-Signature header.",
      accepts="a Vrm-Signature that verifies under the document's own key")
async def discovery_signed(ctx: CaseContext) -> None:
    ex = await ctx.get(WELL_KNOWN_PATH)
    try:
        verify_discovery(ex.response_body, ex.header(SIGNATURE_HEADER), now=now_ms())
        ok, why = True, "verifies"
    except ProtocolError as exc:
        ok, why = False, str(exc)
    ctx.expect(ok, expected="a valid Vrm-Signature", actual=why)


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "vrm": int, "name": str, "role": str, "key": str, "enc_key": str, "inbox": str,
    "versions": list, "types": list, "limits": dict, "accepts_terms": list, "issued": int,
    "expires": int,
}


@case(id="DISC-003", clause="§13.1-3", level=M, tags=("discovery", "limits"),
      covers=("§10-9", "§10-10", "§12.9-1"),
      requirement="The discovery document MUST contain vrm, name, role, key, enc_key, inbox, "
      "versions, types, limits, accepts_terms (a vendor's), issued and expires, each of its "
      "type; limits MUST publish every limit of Table 10-1 as a positive integer.",
      accepts="every field present with its JSON type, vrm = 1, role = vendor, versions ∋ 1, "
      "types ∋ terms.offer, inbox an http(s) URL, the eight limits positive integers")
async def discovery_fields(ctx: CaseContext) -> None:
    d = ctx.discovery
    wrong = [k for k, kind in _FIELDS.items()
             if k not in d or not isinstance(d[k], kind) or isinstance(d[k], bool)]
    ctx.expect(not wrong, expected="every required field with its JSON type",
               actual=f"missing or mistyped: {wrong}")
    ctx.expect(d["vrm"] == 1 and d["role"] == "vendor" and 1 in d["versions"]
               and "terms.offer" in d["types"],
               expected="vrm 1, role vendor, versions ∋ 1, types ∋ terms.offer",
               actual=f"vrm {d['vrm']}, role {d['role']}, versions {d['versions']}")
    inbox = target(ctx).inbox
    ctx.expect(inbox.startswith(("http://", "https://")), expected="inbox resolves to http(s)",
               actual=inbox)
    limits = d["limits"]
    bad = [name for name in Limits.__dataclass_fields__
           if type(limits.get(name)) is not int or limits[name] <= 0]
    ctx.expect(not bad, expected=f"limits {sorted(Limits.__dataclass_fields__)} positive ints",
               actual=f"missing or not positive: {bad}")


@case(id="DISC-008", clause="§13.1-3", level=M, tags=("discovery", "state"), covers=("§7-2",),
      requirement="types lists the message types the endpoint receives: a vendor never receives "
      "a type that only a vendor sends (Table 5-1: terms.accept, terms.reject, data.erased, "
      "data.return, intent.offer, intent.decline), so it MUST NOT list one.",
      accepts="types without any type that only a vendor sends")
async def discovery_types_received(ctx: CaseContext) -> None:
    types = ctx.discovery.get("types")
    listed = [str(t) for t in types] if isinstance(types, list) else []
    vendors_own = sorted(t for t in listed
                         if t in MESSAGE_TYPES and MESSAGE_TYPES[t].SENT_BY == "vendor")
    ctx.expect(not vendors_own, expected="no type only a vendor sends",
               actual=f"types lists {', '.join(vendors_own)}")


@case(id="DISC-004", clause="§2.1-3", level=M, tags=("discovery", "keys"),
      covers=("§2.1-4", "§2.1-1"),
      requirement="A party MUST NOT publish a signing key that is not valid, and MUST NOT "
      "reuse or convert one key as the other: the X25519 enc_key is its own key, not the "
      "Ed25519 key converted.",
      accepts="key a valid Ed25519 point; enc_key a 32-byte X25519 key that is not the "
      "birational image of key")
async def discovery_keys(ctx: CaseContext) -> None:
    t = target(ctx)
    ctx.expect(is_valid_key(t.key), expected="a valid Ed25519 key (§2.1-2)",
               actual=f"key {t.key.hex()} is not a valid point")
    converted = crypto_sign_ed25519_pk_to_curve25519(t.key)
    ctx.expect(t.enc_key not in (converted, t.key),
               expected="an enc_key of its own", actual="enc_key is the signing key converted")


@case(id="DISC-005", clause="§6.5-1", level=M, tags=("discovery", "terms"), covers=("§6.1-1",),
      requirement="A vendor's discovery document MUST carry accepts_terms: an array of term "
      "ids (str), each listed at most once.",
      accepts="accepts_terms an array of distinct term ids of the form of §6.1-1")
async def discovery_accepts_terms(ctx: CaseContext) -> None:
    listed = ctx.discovery.get("accepts_terms")
    ok = isinstance(listed, list) and all(isinstance(t, str) for t in listed)
    ctx.expect(ok, expected="an array of str", actual=repr(listed))
    assert isinstance(listed, list)
    ctx.expect(len(set(listed)) == len(listed), expected="each id once", actual=repr(listed))
    bad = [t for t in listed if not _TERM_ID.fullmatch(t) or len(t) > 64]
    ctx.expect(not bad, expected="term ids (§6.1-1)", actual=f"not term ids: {bad}")


@case(id="DISC-006", clause="§13.1-6", level=M, tags=("discovery", "time"),
      covers=("§13.1-5",),
      requirement="A discovery document's expires MUST be later than its issued, and the "
      "document MUST NOT be larger than 65,536 bytes.",
      accepts="issued < expires, now within [issued − 2 min, expires], at most 65,536 bytes")
async def discovery_window(ctx: CaseContext) -> None:
    ex = await ctx.get(WELL_KNOWN_PATH)
    ctx.expect(len(ex.response_body) <= 65_536, expected="at most 65,536 bytes",
               actual=f"{len(ex.response_body)} bytes")
    try:
        doc = ex.json()
        issued, expires = int(doc["issued"]), int(doc["expires"])
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        ctx.fail(expected="issued and expires", actual=f"{type(exc).__name__}: {exc}")
    now = now_ms()
    ctx.expect(issued < expires and issued - 120_000 <= now <= expires,
               expected="issued < expires and the document valid now",
               actual=f"issued {issued}, expires {expires}, now {now}")


# -- the envelope and its signature (§3.4, §3.5) ---------------------------------------------------


@case(id="ENV-001", clause="§5.6.1-2", level=M, tags=("envelope", "receipt"),
      covers=("§12.3-1", "§3.6-2", "§3.5-1", "§3.3-9", "§2.1-1", "§3.5-4"),
      requirement="A receiver MUST answer an accepted message with a signed receipt naming the "
      "hash of the message's header bytes, first in a 200 response of the protocol's media "
      "type.",
      accepts="HTTP 200, application/vnd.vrmproto+msgpack, an array of envelopes that are "
      "canonical and signed by the endpoint; first a receipt with ack = SHA-256(hdr)")
async def valid_offer_gets_receipt(ctx: CaseContext) -> None:
    who, msg = signed_offer(ctx)
    answer = await post(ctx, msg.envelope, recipient_key=who.public_key)
    expect_receipt(ctx, answer, msg)
    kind = answer.exchange.response_content_type
    ctx.expect(kind == CONTENT_TYPE, expected=f"Content-Type {CONTENT_TYPE}", actual=str(kind))


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


@case(id="ENV-002", clause="§3.5-3", level=M, tags=("envelope", "signature"),
      requirement="A receiver MUST refuse a message whose signature does not verify.",
      accepts="problem bad_signature")
async def flipped_signature_bit(ctx: CaseContext) -> None:
    _, msg = signed_offer(ctx)
    sig = _flip(msg.signature, ctx.rng.randrange(64), ctx.rng.randrange(8))
    answer = await post(ctx, envelope_bytes(msg.hdr_bytes, sig, msg.body_bytes))
    expect_problem(ctx, answer, ["bad_signature"])


@case(id="ENV-003", clause="§3.5-2", level=M, tags=("envelope", "signature"),
      requirement="A signature MUST cover the context string 'vrmproto/v1/message\\0' followed "
      "by the header bytes; one over the bare header is invalid.",
      accepts="problem bad_signature")
async def signature_without_context(ctx: CaseContext) -> None:
    who, msg = signed_offer(ctx)
    hdr, sig = resign_header({}, who, context=b"", raw=msg.hdr_bytes)
    expect_problem(ctx, await post(ctx, envelope_bytes(hdr, sig, msg.body_bytes)),
                   ["bad_signature"])


@case(id="ENV-004", clause="§3.5-2", level=M, tags=("envelope", "signature"),
      requirement="Signatures are domain-separated: a signature made for another purpose (the "
      "discovery context) MUST NOT verify as a message signature.",
      accepts="problem bad_signature")
async def signature_with_wrong_context(ctx: CaseContext) -> None:
    who, msg = signed_offer(ctx)
    hdr, sig = resign_header({}, who, context=Context.DISCOVERY, raw=msg.hdr_bytes)
    expect_problem(ctx, await post(ctx, envelope_bytes(hdr, sig, msg.body_bytes)),
                   ["bad_signature"])


@case(id="ENV-005", clause="§3.5-3", level=M, tags=("envelope", "signature", "malleability"),
      requirement="A receiver MUST apply the strict verification rule: a signature whose S is "
      "not below the group order L (S+L malleation) is invalid.",
      accepts="problem bad_signature")
async def malleated_signature(ctx: CaseContext) -> None:
    _, msg = signed_offer(ctx)
    s = int.from_bytes(msg.signature[32:], "little") + L
    sig = msg.signature[:32] + s.to_bytes(32, "little")
    expect_problem(ctx, await post(ctx, envelope_bytes(msg.hdr_bytes, sig, msg.body_bytes)),
                   ["bad_signature"])


# A point of order 8 (from the ed25519-speccheck set): libsodium refuses it as a public key.
SMALL_ORDER_KEY = bytes.fromhex(
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
)


@case(id="ENV-006", clause="§2.1-2", level=M, tags=("envelope", "keys"),
      requirement="A receiver MUST refuse a message from a small-order or non-canonical key "
      "with bad_key.",
      accepts="problem bad_key")
async def small_order_sender(ctx: CaseContext) -> None:
    env = forged(ctx, identity(ctx), header={"from": SMALL_ORDER_KEY})
    expect_problem(ctx, await post(ctx, env), ["bad_key"])


@case(id="ENV-007", clause="§3.4-3", level=M, tags=("envelope", "signature"),
      requirement="A signature MUST be exactly 64 bytes; 63- or 65-byte signatures are malformed.",
      accepts="problem malformed, for both lengths")
async def bad_signature_lengths(ctx: CaseContext) -> None:
    _, msg = signed_offer(ctx)
    for sig in (msg.signature[:63], msg.signature + b"\x00"):
        answer = await post(ctx, envelope_bytes(msg.hdr_bytes, sig, msg.body_bytes))
        expect_problem(ctx, answer, ["malformed"])


@case(id="ENV-008", clause="§3.4-4", level=M, tags=("envelope", "routing"),
      requirement="Unsigned routing copies of 'to' and 'type' MUST equal the signed header.",
      accepts="problem envelope_mismatch for a wrong 'to' and for a wrong 'type'")
async def routing_copies_disagree(ctx: CaseContext) -> None:
    _, msg = signed_offer(ctx)
    other = identity(ctx).public_key
    for routing in ({"to": other, "type": "terms.offer"},
                    {"to": target(ctx).key, "type": "data.share"}):
        env = envelope_bytes(msg.hdr_bytes, msg.signature, msg.body_bytes, **routing)
        expect_problem(ctx, await post(ctx, env), ["envelope_mismatch"])


@case(id="ENV-009", clause="§3.4-5", level=M, tags=("envelope",),
      requirement="The body MUST hash to the header's body hash.",
      accepts="problem bad_signature")
async def body_swapped(ctx: CaseContext) -> None:
    who, msg = signed_offer(ctx)
    other = sign(ctx, TermsOffer(terms=offer_body(ctx, who).terms, enc_key=bytes(32)), who)
    env = envelope_bytes(msg.hdr_bytes, msg.signature, other.body_bytes)
    expect_problem(ctx, await post(ctx, env), ["bad_signature"])


@case(id="ENV-010", clause="§4.2-1", level=M, tags=("envelope", "version"), covers=("§9.1-5",),
      requirement="A receiver MUST refuse a protocol version it does not support with "
      "unsupported_version, whose problem MUST carry supported_versions.",
      accepts="problem unsupported_version with supported_versions ∋ 1")
async def unknown_version(ctx: CaseContext) -> None:
    answer = await post(ctx, forged(ctx, identity(ctx), header={"v": 99}))
    expect_problem(ctx, answer, ["unsupported_version"])
    assert answer.problem is not None
    versions = answer.problem.body.supported_versions
    ctx.expect(versions is not None and 1 in versions, expected="supported_versions ∋ 1",
               actual=f"supported_versions {versions}")


@case(id="ENV-011", clause="§4.2-3", level=M, tags=("envelope",),
      requirement="A receiver MUST refuse a message type it does not know.",
      accepts="problem unknown_type")
async def unknown_type(ctx: CaseContext) -> None:
    env = forged(ctx, identity(ctx), header={"type": "terms.haggle"})
    expect_problem(ctx, await post(ctx, env), ["unknown_type"])


@case(id="ENV-012", clause="§4.2-2", level=M, tags=("envelope",), covers=("§4.2-10",),
      requirement="A header missing a field, or with a field of the wrong type, MUST be refused.",
      accepts="problem invalid_field (or malformed) for both")
async def header_fields(ctx: CaseContext) -> None:
    who = identity(ctx)
    for env in (forged(ctx, who, drop=("thread",)),
                forged(ctx, who, header={"created": "yesterday"})):
        expect_problem(ctx, await post(ctx, env), ["invalid_field", "malformed"])


@case(id="ENV-013", clause="§5.1-1", level=M, tags=("envelope", "body"), covers=("§5.1-2",),
      requirement="A body missing a required field, or with a field of the wrong type, MUST be "
      "refused.",
      accepts="problem invalid_field for both")
async def body_fields(ctx: CaseContext) -> None:
    who = identity(ctx)
    good = offer_body(ctx, who)
    for body in ({"terms": [t.to_wire() for t in good.terms]},
                 {"enc_key": "not bytes", "terms": [t.to_wire() for t in good.terms]}):
        env = forged(ctx, who, body=good, raw_body=_codec.encode(body))
        expect_problem(ctx, await post(ctx, env), ["invalid_field"])


@case(id="ENV-014", clause="§3.4-1", level=M, tags=("envelope",),
      requirement="A receiver MUST refuse with malformed an envelope that is not a map, that "
      "has any other key than body, hdr, sig, to and type, or whose keys are out of order.",
      accepts="problem malformed for an array, for an extra key and for unsorted keys")
async def envelope_shape(ctx: CaseContext) -> None:
    _, msg = signed_offer(ctx)
    parts = [("body", msg.body_bytes), ("hdr", msg.hdr_bytes), ("sig", msg.signature)]
    as_array = b"\x93" + b"".join(msgpack.packb(v, use_bin_type=True) for _, v in parts)
    for raw in (as_array, raw_map([*parts, ("x", 1)]), raw_map(list(reversed(parts)))):
        expect_problem(ctx, await post(ctx, raw), ["malformed"])


@case(id="ENV-015", clause="§3.4-2", level=M, tags=("envelope", "erasure"),
      covers=("§3.4-6",),
      requirement="hdr, sig and body MUST be present and bin; a receiver MUST refuse an "
      "envelope breaking this, and an erased form (no body) sent as a message, with malformed.",
      accepts="problem malformed for a missing hdr, a str hdr, the erased form and a nil body")
async def envelope_parts(ctx: CaseContext) -> None:
    _, msg = signed_offer(ctx)
    hdr, sig, body = msg.hdr_bytes, msg.signature, msg.body_bytes
    for raw in (raw_map([("body", body), ("sig", sig)]),
                raw_map([("body", body), ("hdr", hdr.hex()), ("sig", sig)]),
                msg.without_body().envelope,
                raw_map([("body", None), ("hdr", hdr), ("sig", sig)])):
        expect_problem(ctx, await post(ctx, raw), ["malformed"])


@case(id="ENV-016", clause="§3.4-4", level=M, tags=("envelope", "routing"),
      requirement="A routing to MUST be a bin or nil and a routing type a str, or the "
      "receiver MUST refuse the envelope with malformed.",
      accepts="problem malformed for a str 'to' and for an int 'type'")
async def routing_copy_types(ctx: CaseContext) -> None:
    _, msg = signed_offer(ctx)
    for routing in ({"to": target(ctx).key.hex()}, {"type": 1}):
        env = envelope_bytes(msg.hdr_bytes, msg.signature, msg.body_bytes, **routing)
        expect_problem(ctx, await post(ctx, env), ["malformed"])


# The identity point: [k]A is the identity for every k, so R = identity and S = 0 satisfy the
# cofactorless equation for any message. Only the small-order check stops this forgery.
IDENTITY_POINT = b"\x01" + bytes(31)


@case(id="ENV-017", clause="§2.1-2", level=M, tags=("envelope", "signature", "keys"),
      covers=("§3.5-3",),
      requirement="A receiver MUST refuse with bad_key a message signed under a small-order "
      "key: with the identity point as key, R = identity and S = 0 'verify' any message under "
      "a verifier that skips the small-order checks of §3.5-3.",
      accepts="problem bad_key")
async def identity_key_forgery(ctx: CaseContext) -> None:
    who, msg = signed_offer(ctx)
    h = header_of(msg)
    h["from"] = IDENTITY_POINT
    hdr, _ = resign_header(h, who)
    env = envelope_bytes(hdr, IDENTITY_POINT + bytes(32), msg.body_bytes)
    expect_problem(ctx, await post(ctx, env), ["bad_key"])


@case(id="ENV-018", clause="§3.4-4", level=S, tags=("envelope", "routing"),
      requirement="A sender SHOULD include both routing copies (to and type) in its envelopes.",
      accepts="every envelope of the response to a terms.offer carries to and type")
async def replies_carry_routing(ctx: CaseContext) -> None:
    who, msg = signed_offer(ctx)
    answer = await post(ctx, msg.envelope, recipient_key=who.public_key)
    expect_receipt(ctx, answer, msg)
    bare = [r.type for r in answer.replies
            if not {"to", "type"} <= _codec.decode(r.envelope).keys()]
    ctx.expect(not bare, expected="routing copies on every reply", actual=f"none on {bare}")


@case(id="DISC-007", clause="§13.1-6", level=S, tags=("discovery", "time"),
      requirement="An endpoint SHOULD give its discovery documents a lifetime of at most one day.",
      accepts="expires − issued ≤ 86,400,000 ms")
async def discovery_lifetime(ctx: CaseContext) -> None:
    issued, expires = ctx.discovery.get("issued"), ctx.discovery.get("expires")
    ok = isinstance(issued, int) and isinstance(expires, int) and expires - issued <= 86_400_000
    ctx.expect(ok, expected="a lifetime of at most a day", actual=f"{issued} to {expires}")
