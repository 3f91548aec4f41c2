"""Discovery, envelope, signature, strict decoding, replay and time-window cases (§3, §4, §13)."""

from __future__ import annotations

from vrmproto import _codec
from vrmproto._binding import SIGNATURE_HEADER, WELL_KNOWN_PATH, verify_discovery
from vrmproto._errors import ProtocolError
from vrmproto._keys import Context, Identity, sha256
from vrmproto._messages import TermsOffer
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    envelope_bytes,
    expect_problem,
    expect_receipt,
    header_of,
    identity,
    now_ms,
    offer_body,
    post,
    resign_header,
    sign,
    target,
)

M, S, INFO = Level.MUST, Level.SHOULD, Level.INFO
L = 2**252 + 27742317777372353535851937790883648493  # the order of the Ed25519 base point

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


@case(id="DISC-003", clause="§13.1-3", level=M, tags=("discovery",),
      requirement="The discovery document MUST name the endpoint's keys, inbox, versions, "
      "message types and limits.",
      accepts="all fields present and well-formed, version 1 listed, limits complete")
async def discovery_fields(ctx: CaseContext) -> None:
    d = ctx.discovery
    missing = [k for k in ("name", "key", "enc_key", "inbox", "versions", "types", "limits")
               if k not in d]
    t = target(ctx)
    ok = not missing and 1 in d.get("versions", []) and "terms.offer" in d.get("types", [])
    ctx.expect(ok and t.limits.max_envelope_bytes > 0,
               expected="name, key, enc_key, inbox, versions ∋ 1, types ∋ terms.offer, limits",
               actual=f"missing {missing}" if missing else f"versions={d.get('versions')}")


# -- the envelope and its signature (§3.4, §3.5) ---------------------------------------------------


@case(id="ENV-001", clause="§5.6.1-1", level=M, tags=("envelope", "receipt"),
      requirement="A receiver MUST answer an accepted message with a signed receipt naming the "
      "hash of the message's header bytes.",
      accepts="HTTP 200; first reply a receipt signed by the endpoint with ack = message hash")
async def valid_offer_gets_receipt(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    expect_receipt(ctx, await post(ctx, msg.envelope, recipient_key=who.public_key), msg)


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


@case(id="ENV-002", clause="§3.5-3", level=M, tags=("envelope", "signature"),
      requirement="A receiver MUST refuse a message whose signature does not verify.",
      accepts="problem bad_signature")
async def flipped_signature_bit(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    sig = _flip(msg.signature, ctx.rng.randrange(64), ctx.rng.randrange(8))
    answer = await post(ctx, envelope_bytes(msg.hdr_bytes, sig, msg.body_bytes))
    expect_problem(ctx, answer, ["bad_signature"])


@case(id="ENV-003", clause="§3.5-1", level=M, tags=("envelope", "signature"),
      requirement="A signature MUST cover the context string 'vrmproto/v1/message\\0' followed "
      "by the header bytes; one over the bare header is invalid.",
      accepts="problem bad_signature")
async def signature_without_context(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    hdr, sig = resign_header({}, who, context=b"", raw=msg.hdr_bytes)
    expect_problem(ctx, await post(ctx, envelope_bytes(hdr, sig, msg.body_bytes)),
                   ["bad_signature"])


@case(id="ENV-004", clause="§3.5-1", level=M, tags=("envelope", "signature"),
      requirement="Signatures are domain-separated: a signature made for another purpose (the "
      "discovery context) MUST NOT verify as a message signature.",
      accepts="problem bad_signature")
async def signature_with_wrong_context(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    hdr, sig = resign_header({}, who, context=Context.DISCOVERY, raw=msg.hdr_bytes)
    expect_problem(ctx, await post(ctx, envelope_bytes(hdr, sig, msg.body_bytes)),
                   ["bad_signature"])


@case(id="ENV-005", clause="§3.5-3", level=M, tags=("envelope", "signature", "malleability"),
      requirement="A receiver MUST apply the strict verification rule: a signature whose S is "
      "not below the group order L (S+L malleation) is invalid.",
      accepts="problem bad_signature")
async def malleated_signature(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    s = int.from_bytes(msg.signature[32:], "little") + L
    sig = msg.signature[:32] + s.to_bytes(32, "little")
    expect_problem(ctx, await post(ctx, envelope_bytes(msg.hdr_bytes, sig, msg.body_bytes)),
                   ["bad_signature"])


# A point of order 8 (from the ed25519-speccheck set): libsodium refuses it as a public key.
SMALL_ORDER_KEY = bytes.fromhex(
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
)


@case(id="ENV-006", clause="§2.1-2", level=M, tags=("envelope", "keys"),
      requirement="A receiver MUST refuse a message from a small-order or non-canonical key.",
      accepts="problem bad_key or bad_signature")
async def small_order_sender(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    h = header_of(msg)
    h["from"] = SMALL_ORDER_KEY
    hdr, sig = resign_header(h, who)
    expect_problem(ctx, await post(ctx, envelope_bytes(hdr, sig, msg.body_bytes)),
                   ["bad_key", "bad_signature"])


@case(id="ENV-007", clause="§3.4-3", level=M, tags=("envelope", "signature"),
      requirement="A signature MUST be exactly 64 bytes; 63- or 65-byte signatures are malformed.",
      accepts="problem malformed, for both lengths")
async def bad_signature_lengths(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    for sig in (msg.signature[:63], msg.signature + b"\x00"):
        answer = await post(ctx, envelope_bytes(msg.hdr_bytes, sig, msg.body_bytes))
        expect_problem(ctx, answer, ["malformed"])


@case(id="ENV-008", clause="§3.4-4", level=M, tags=("envelope", "routing"),
      requirement="Unsigned routing copies of 'to' and 'type' MUST equal the signed header.",
      accepts="problem envelope_mismatch for a wrong 'to' and for a wrong 'type'")
async def routing_copies_disagree(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    other = Identity(ctx.rng.randbytes(32)).public_key
    for routing in ({"to": other, "type": "terms.offer"},
                    {"to": target(ctx).key, "type": "data.share"}):
        env = envelope_bytes(msg.hdr_bytes, msg.signature, msg.body_bytes, **routing)
        expect_problem(ctx, await post(ctx, env), ["envelope_mismatch"])


@case(id="ENV-009", clause="§3.4-5", level=M, tags=("envelope",),
      requirement="The body MUST hash to the header's body hash.",
      accepts="problem bad_signature")
async def body_swapped(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    other = sign(ctx, TermsOffer(terms=offer_body(ctx, who).terms, enc_key=bytes(32)), who)
    env = envelope_bytes(msg.hdr_bytes, msg.signature, other.body_bytes)
    expect_problem(ctx, await post(ctx, env), ["bad_signature"])


@case(id="ENV-010", clause="§4.2-1", level=M, tags=("envelope", "version"),
      requirement="A receiver MUST refuse a protocol version it does not support, naming the "
      "versions it does.",
      accepts="problem unsupported_version")
async def unknown_version(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    h = header_of(msg)
    h["v"] = 99
    hdr, sig = resign_header(h, who)
    answer = await post(ctx, envelope_bytes(hdr, sig, msg.body_bytes))
    expect_problem(ctx, answer, ["unsupported_version"])


@case(id="ENV-011", clause="§4.2-3", level=M, tags=("envelope",),
      requirement="A receiver MUST refuse a message type it does not know.",
      accepts="problem unknown_type")
async def unknown_type(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    h = header_of(msg)
    h["type"] = "terms.haggle"
    hdr, sig = resign_header(h, who)
    expect_problem(ctx, await post(ctx, envelope_bytes(hdr, sig, msg.body_bytes)),
                   ["unknown_type"])


@case(id="ENV-012", clause="§4.2-2", level=M, tags=("envelope",),
      requirement="A header missing a field, or with a field of the wrong type, MUST be refused.",
      accepts="problem invalid_field (or malformed) for both")
async def header_fields(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    missing = header_of(msg)
    del missing["thread"]
    wrong = header_of(msg)
    wrong["created"] = "yesterday"
    for h in (missing, wrong):
        hdr, sig = resign_header(h, who)
        answer = await post(ctx, envelope_bytes(hdr, sig, msg.body_bytes))
        expect_problem(ctx, answer, ["invalid_field", "malformed"])


@case(id="ENV-013", clause="§5.1-1", level=M, tags=("envelope", "body"),
      requirement="A body missing a required field, or with a field of the wrong type, MUST be "
      "refused.",
      accepts="problem invalid_field for both")
async def body_fields(ctx: CaseContext) -> None:
    who = identity(ctx)
    good = offer_body(ctx, who)
    for body in ({"terms": [t.to_wire() for t in good.terms]},
                 {"enc_key": "not bytes", "terms": [t.to_wire() for t in good.terms]}):
        msg = sign(ctx, good, who)
        raw = _codec.encode(body)
        h = header_of(msg)
        h["body"] = sha256(raw)
        hdr, sig = resign_header(h, who)
        expect_problem(ctx, await post(ctx, envelope_bytes(hdr, sig, raw)), ["invalid_field"])
