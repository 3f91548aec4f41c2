"""The strict signature rule, one step at a time (§3.5-3, §2.1-2).

Each case signs by hand, with the equations of RFC 8032, under a key the case makes itself, so
that exactly one step of §3.5-3 is what refuses the signature: a verifier that skips that step
alone, or does it in part, accepts the message. SIG-001 checks the hand-made signature itself:
with every step kept, the endpoint accepts it.

A ``Raw`` key is a scalar ``a`` and its point ``A = [a]B``; ``signed_by`` builds a valid
``terms.offer`` whose header names ``A`` and carries the signature ``R ‖ S`` a case chooses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_scalarmult_ed25519_base_noclamp,
)

from vrmproto import _codec
from vrmproto._keys import Context
from vrmproto._messages import KeyRotate
from vrmproto._relationship import rotation_proof_bytes
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    Customer,
    _fresh,
    envelope_bytes,
    expect_problem,
    header_of,
    identity,
    new_id,
    note_requests,
    now_ms,
    offer_body,
    post,
    read_answer,
    sign,
    target,
)

M = Level.MUST

#: The group order (RFC 8032 §5.1) and the field prime.
L = 2**252 + 27742317777372353535851937790883648493
P = 2**255 - 19
_D = (-121665 * pow(121666, P - 2, P)) % P

#: The seven encodings of points of small order that §3.5-3 steps 2 and 3 list (bit 255 clear).
SMALL_ORDER: tuple[tuple[str, bytes], ...] = (
    ("0", (0).to_bytes(32, "little")),
    ("1 (the identity)", (1).to_bytes(32, "little")),
    ("p - 1 (order 2)", (P - 1).to_bytes(32, "little")),
    ("p (0, non-canonical)", P.to_bytes(32, "little")),
    ("p + 1 (the identity, non-canonical)", (P + 1).to_bytes(32, "little")),
    ("26e8…fc05 (order 8)", bytes.fromhex(
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")),
    ("c717…037a (order 8)", bytes.fromhex(
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")),
)
IDENTITY = SMALL_ORDER[1][1]
ORDER_8 = SMALL_ORDER[6][1]
ORDER_2 = SMALL_ORDER[2][1]


def _with_sign_bit(encoding: bytes) -> bytes:
    return encoding[:31] + bytes([encoding[31] | 0x80])


def _x_squared(y: int) -> int | None:
    """x² for the curve point with this y, or None when there is no such point."""
    x2 = (y * y - 1) * pow(_D * y * y + 1, P - 2, P) % P
    if x2 == 0 or pow(x2, (P - 1) // 2, P) == 1:
        return x2
    return None


def non_canonical_keys() -> list[bytes]:
    """Encodings ``y + p`` (y < 19) of curve points that are not of small order (step 3)."""
    return [(y + P).to_bytes(32, "little") for y in range(2, 19) if _x_squared(y) is not None]


def off_curve_key() -> bytes:
    """The smallest canonical y that is no point of the curve (step 4)."""
    y = next(y for y in range(2, 100) if _x_squared(y) is None)
    return y.to_bytes(32, "little")


@dataclass(frozen=True)
class Raw:
    """A signing key made by hand: ``a`` and ``A = [a]B`` (or another point, for a bad key)."""

    a: int
    key: bytes


def raw_key(ctx: CaseContext) -> Raw:
    a = int.from_bytes(_fresh(ctx, 32), "little") % L or 1
    return Raw(a, crypto_scalarmult_ed25519_base_noclamp(a.to_bytes(32, "little")))


def scalar(ctx: CaseContext) -> int:
    return int.from_bytes(_fresh(ctx, 32), "little") % L or 1


def k_of(r_bytes: bytes, key: bytes, message: bytes) -> int:
    """``k = SHA-512(R ‖ A ‖ M) mod L`` (§3.5-3 step 5)."""
    return int.from_bytes(hashlib.sha512(r_bytes + key + message).digest(), "little") % L


def s_bytes(s: int) -> bytes:
    return s.to_bytes(32, "little")


Signer = Callable[[bytes], bytes]
"""Given the signed bytes ``M``, the 64-byte signature a case wants."""


def signed_by(ctx: CaseContext, key: bytes, signer: Signer) -> tuple[bytes, bytes]:
    """A valid terms.offer whose header names ``key``, signed by ``signer``: (envelope, hdr)."""
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    h = header_of(msg)
    h["from"] = key
    hdr = _codec.encode(h)
    return envelope_bytes(hdr, signer(Context.MESSAGE + hdr), msg.body_bytes), hdr


def rfc8032(raw: Raw, r: int, *, r_point: bytes | None = None, s_add: int = 0) -> Signer:
    """The RFC 8032 signature with nonce ``r`` — R = [r]B unless ``r_point`` says otherwise,
    S = r + k·a (+ ``s_add``, not reduced)."""

    def signer(message: bytes) -> bytes:
        r_bytes = r_point if r_point is not None else crypto_scalarmult_ed25519_base_noclamp(
            r.to_bytes(32, "little"))
        k = k_of(r_bytes, raw.key, message)
        return r_bytes + s_bytes((r + k * raw.a) % L + s_add)

    return signer


@case(id="SIG-001", clause="§3.5-3", level=M, tags=("signature",), covers=("§3.5-1",),
      requirement="A signature that passes every step of the strict rule MUST verify: the suite's "
      "hand-made RFC 8032 signatures (the base of SIG-002 to SIG-008) are valid.",
      accepts="a receipt for a terms.offer signed by hand under a fresh valid key")
async def hand_made_signature(ctx: CaseContext) -> None:
    raw = raw_key(ctx)
    env, _ = signed_by(ctx, raw.key, rfc8032(raw, scalar(ctx)))
    answer = await post(ctx, env, recipient_key=raw.key)
    ctx.expect(answer.status == 200 and answer.receipt is not None,
               expected="HTTP 200 with a receipt", actual=answer.describe())


@case(id="SIG-002", clause="§3.5-3", level=M, tags=("signature", "malleability"),
      requirement="Step 1: S MUST be below the group order L. A signature whose S is S + L, "
      "S + 2L or S + 15L (every one 'verifies' once S is reduced mod L, and S + L passes a check "
      "of the top three bits only) is invalid.",
      accepts="problem bad_signature for each")
async def s_not_reduced(ctx: CaseContext) -> None:
    raw = raw_key(ctx)
    for n in (1, 2, 15):
        env, _ = signed_by(ctx, raw.key, rfc8032(raw, scalar(ctx), s_add=n * L))
        expect_problem(ctx, await post(ctx, env), ["bad_signature"])


def _identity_r(raw: Raw, r_bytes: bytes) -> Signer:
    """R given as an encoding of the identity point, S = k·a: then [S]B − [k]A is the
    identity, and only the small-order check on R (or the byte comparison) refuses it."""

    def signer(message: bytes) -> bytes:
        return r_bytes + s_bytes(k_of(r_bytes, raw.key, message) * raw.a % L)

    return signer


@case(id="SIG-003", clause="§3.5-3", level=M, tags=("signature", "small-order"),
      requirement="Step 2: R MUST NOT be a point of small order. R = the identity with S = k·a "
      "satisfies the cofactorless equation under any valid key; only the small-order check on R "
      "refuses it.",
      accepts="problem bad_signature")
async def small_order_r(ctx: CaseContext) -> None:
    raw = raw_key(ctx)
    env, _ = signed_by(ctx, raw.key, _identity_r(raw, IDENTITY))
    expect_problem(ctx, await post(ctx, env), ["bad_signature"])


@case(id="SIG-004", clause="§3.5-3", level=M, tags=("signature", "small-order", "canonical"),
      requirement="Steps 2 and 6: R is compared as the 32 bytes received, and its small-order "
      "check clears bit 255 first: the identity written with the sign bit set, or as p + 1, "
      "never verifies (a verifier that decodes R and compares points would accept both).",
      accepts="problem bad_signature for each")
async def non_canonical_r(ctx: CaseContext) -> None:
    raw = raw_key(ctx)
    for r_bytes in (_with_sign_bit(IDENTITY), SMALL_ORDER[4][1]):
        env, _ = signed_by(ctx, raw.key, _identity_r(raw, r_bytes))
        expect_problem(ctx, await post(ctx, env), ["bad_signature"])


@case(id="SIG-005", clause="§2.1-2", level=M, tags=("signature", "small-order", "keys"),
      covers=("§3.5-3",),
      requirement="Step 3: a key A that encodes a point of small order — each of the seven "
      "encodings of §3.5-3, with bit 255 clear and set — never verifies, and the message is "
      "refused with bad_key.",
      accepts="problem bad_key for all fourteen keys")
async def small_order_keys(ctx: CaseContext) -> None:
    for _, enc in SMALL_ORDER:
        for key in (enc, _with_sign_bit(enc)):
            env, _ = signed_by(ctx, key, lambda _m: IDENTITY + bytes(32))
            expect_problem(ctx, await post(ctx, env), ["bad_key"])


@case(id="SIG-006", clause="§2.1-2", level=M, tags=("signature", "canonical", "keys"),
      covers=("§3.5-3",),
      requirement="Step 3: a key A whose y coordinate is not below p (y + p for a small y of a "
      "point that is not of small order) is not canonical; the message is refused with "
      "bad_key.",
      accepts="problem bad_key for each such key")
async def non_canonical_keys_refused(ctx: CaseContext) -> None:
    keys = non_canonical_keys()
    ctx.expect(bool(keys), expected="non-canonical curve points", actual="none found")
    for key in keys:
        env, _ = signed_by(ctx, key, lambda _m: IDENTITY + bytes(32))
        expect_problem(ctx, await post(ctx, env), ["bad_key"])


@case(id="SIG-007", clause="§2.1-2", level=M, tags=("signature", "keys"), covers=("§3.5-3",),
      requirement="Step 4: a key A that is no point of the curve is refused with bad_key.",
      accepts="problem bad_key")
async def off_curve_key_refused(ctx: CaseContext) -> None:
    raw = raw_key(ctx)
    env, _ = signed_by(ctx, off_curve_key(), rfc8032(raw, scalar(ctx)))
    expect_problem(ctx, await post(ctx, env), ["bad_key"])


@case(id="SIG-008", clause="§3.5-3", level=M, tags=("signature", "small-order"),
      requirement="Step 6: the equation is cofactorless, R' = [S]B − [k]A compared byte for "
      "byte with R. R = [r]B + T for a T of small order (order 8, order 2) with S = r + k·a "
      "passes the cofactored equation [8][S]B = [8]R + [8][k]A, and MUST NOT verify.",
      accepts="problem bad_signature for each")
async def mixed_order_r(ctx: CaseContext) -> None:
    raw = raw_key(ctx)
    for torsion in (ORDER_8, ORDER_2):
        r = scalar(ctx)
        r_point = crypto_core_ed25519_add(
            crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little")), torsion)
        env, _ = signed_by(ctx, raw.key, rfc8032(raw, r, r_point=r_point))
        expect_problem(ctx, await post(ctx, env), ["bad_signature"])


@case(id="SIG-009", clause="§2.1-2", level=M, tags=("signature", "keys"),
      requirement="Rule 2: the first message of a relationship MUST be refused with bad_key when "
      "its key is not valid even if its signature verifies: A = [a]B + T (T of order 8) with a "
      "signature that passes §3.5-3 (k a multiple of 8) is outside the prime-order subgroup.",
      accepts="problem bad_key")
async def mixed_order_key(ctx: CaseContext) -> None:
    raw = raw_key(ctx)
    key = crypto_core_ed25519_add(raw.key, ORDER_8)
    r = scalar(ctx)
    r_bytes = crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little"))
    for _ in range(256):  # k ≡ 0 (mod 8) one time in eight: then [k]T is the identity
        env, hdr = signed_by(ctx, key, lambda m: r_bytes + s_bytes(
            (r + k_of(r_bytes, key, m) * raw.a) % L))
        if k_of(r_bytes, key, Context.MESSAGE + hdr) % 8 == 0:
            break
    else:  # pragma: no cover - (7/8)^256
        ctx.fail(expected="a signature with k ≡ 0 mod 8", actual="none in 256 tries")
    expect_problem(ctx, await post(ctx, env), ["bad_key"])



@case(id="SIG-010", clause="§2.1-2", level=M, tags=("signature", "small-order", "history"),
      covers=("§3.5-3", "§12.5-2"),
      requirement="Step 3 holds wherever a signature is verified, not only at a relationship's "
      "first message: a history request from the identity point, signed R = B, S = 1 (which "
      "satisfies [S]B − [k]A = R for every message), is refused with bad_key.",
      accepts="problem bad_key for such a request, for a thread the suite holds and for one "
      "the endpoint never saw")
async def small_order_key_in_history_request(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    base = crypto_scalarmult_ed25519_base_noclamp((1).to_bytes(32, "little"))
    t = target(ctx)
    for thread in (c.rel.thread, new_id(ctx)):
        req = _codec.encode({"created": now_ms(), "from": IDENTITY, "nonce": new_id(ctx),
                             "start": 0, "thread": thread, "to": t.key})
        body = _codec.encode({"req": req, "sig": base + s_bytes(1)})
        note_requests(ctx)
        answer = read_answer(await ctx.post(t.history, body), t)
        expect_problem(ctx, answer, ["bad_key"])


def mixed_order_signer(raw: Raw, key: bytes, ctx: CaseContext) -> Signer:
    """Signatures under ``key`` = [a]B + T (T of order 8) that pass §3.5-3: the nonce is drawn
    again until k ≡ 0 (mod 8), so that [k]T is the identity (one time in eight)."""

    def signer(message: bytes) -> bytes:
        for _ in range(256):
            r = scalar(ctx)
            r_bytes = crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little"))
            k = k_of(r_bytes, key, message)
            if k % 8 == 0:
                return r_bytes + s_bytes((r + k * raw.a) % L)
        raise AssertionError("no nonce with k ≡ 0 mod 8 in 256 tries")  # (7/8)^256

    return signer


@case(id="SIG-011", clause="§2.6-2", level=M, tags=("signature", "keys", "rotation"),
      covers=("§2.1-2", "§5.6.3-1"),
      requirement="A key.rotate's new_key MUST be a valid key — in the prime-order subgroup — "
      "even when the rotation proof verifies under it: [a]B + T (T of order 8), with a proof "
      "that passes §3.5-3, is refused with bad_key.",
      accepts="problem bad_key")
async def rotate_to_mixed_order_key(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    raw = raw_key(ctx)
    new_key = crypto_core_ed25519_add(raw.key, ORDER_8)
    proof = mixed_order_signer(raw, new_key, ctx)(Context.KEY_ROTATION + rotation_proof_bytes(
        c.identity.public_key, new_key, c.rel.thread))
    body = KeyRotate(new_key=new_key, new_enc_key=identity(ctx).enc_public_key, proof=proof,
                     reason="rotate")
    expect_problem(ctx, await post(ctx, c.unchecked(body).envelope), ["bad_key"])
