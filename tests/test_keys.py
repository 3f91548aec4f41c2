"""Keys, identities, signatures and sealing (spec §2, §3.5, §5.5; vrmproto/_keys.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import identities, ids, keys32, master_seeds, seeds

from vrmproto import (
    Context,
    Identity,
    MasterSeed,
    Problem,
    SignatureError,
    ValidationError,
    fingerprint,
    is_valid_key,
    key_from_text,
    key_to_text,
    seal,
    verify,
)
from vrmproto._keys import check_enc_key, check_key

CONTEXTS = [
    Context.MESSAGE,
    Context.DISCOVERY,
    Context.KEY_ROTATION,
    Context.SEALED,
    Context.REQUEST,
]

# The eight small-order points in their canonical encodings, and non-canonical encodings of
# small-order points (y ≥ p, or the sign bit set on x = 0) — all refused by the strict rule
# (§2.1-2). Sources: libsodium's blocklist and RFC 8032 §5.1.3.
SMALL_ORDER = [
    bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000080"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
]
NON_CANONICAL = [
    bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000080"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
]

ALICE = Identity(bytes(range(32)))
BOB = Identity(bytes(range(1, 33)))


# -- text forms (§2.5) ------------------------------------------------------------------------


@given(keys32)
def test_text_form_round_trips(key: bytes) -> None:
    """§2.5-1: ``ed25519:`` + 43 characters of unpadded base64url."""
    text = key_to_text(key)
    assert re.fullmatch(r"ed25519:[A-Za-z0-9_-]{43}", text)
    assert key_from_text(text) == key
    assert key_from_text(key_to_text(key, "x25519"), "x25519") == key


@given(st.text(max_size=60))
def test_text_form_accepts_only_its_own_output(text: str) -> None:
    """§2.5-2: any text either parses to a key that prints back identically, or ValueError."""
    try:
        key = key_from_text(text)
    except ValueError:
        return
    assert key_to_text(key) == text


@given(keys32)
def test_text_form_of_prefixed_junk(key: bytes) -> None:
    good = key_to_text(key)
    body = good.removeprefix("ed25519:")
    junk = [
        body,  # no prefix
        "x25519:" + body,  # another kind
        "ED25519:" + body,
        good + "=",  # padding
        good[:-1],  # short
        good + "A",  # long
        good[:10] + " " + good[10:],  # whitespace
        good + "\n",
        "ed25519:" + body.replace("-", "+").replace("_", "/")
        if ("-" in body or "_" in body) else "ed25519:" + body + "+",  # standard alphabet
        "ed25519:",
        "",
    ]
    for text in junk:
        with pytest.raises(ValueError, match=r"."):
            key_from_text(text)


def test_text_form_refuses_non_canonical_trailing_bits() -> None:
    """§2.5-2: 43 characters carry 258 bits; the 2 spare bits must be zero."""
    good = key_to_text(bytes(32))
    assert good.endswith("A")
    for last in "BCD":
        with pytest.raises(ValueError, match="canonical"):
            key_from_text(good[:-1] + last)


def test_fingerprint() -> None:
    """§2.5-3: four groups of four base32 characters, a function of the key alone."""
    fp = fingerprint(ALICE.public_key)
    assert re.fullmatch(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}", fp)
    assert fp == ALICE.fingerprint == fingerprint(bytes(ALICE.public_key))
    assert fp != BOB.fingerprint


@given(st.binary(min_size=32, max_size=32))
def test_fingerprint_is_rfc4648_base32_of_the_hash(key: bytes) -> None:
    """§2.5-3 spelled out: the first 10 bytes of SHA-256(key) in RFC 4648 base32, lower case,
    in groups of four (the table-driven encoder against the standard library's)."""
    text = base64.b32encode(hashlib.sha256(key).digest()[:10]).decode("ascii").lower()
    assert fingerprint(key) == "-".join(text[i : i + 4] for i in range(0, 16, 4))


# -- identities (§2.2–§2.4) ---------------------------------------------------------------------


@given(seeds)
def test_identity_is_a_function_of_its_seed(seed: bytes) -> None:
    """§2.2: both keys derive from the seed; the seed never shows in repr."""
    a, b = Identity(seed), Identity(seed)
    assert a.public_key == b.public_key
    assert a.enc_public_key == b.enc_public_key
    assert len(a.public_key) == len(a.enc_public_key) == 32
    assert is_valid_key(a.public_key)
    assert seed.hex() not in repr(a)
    assert repr(a) == f"Identity({key_to_text(a.public_key)})"


@pytest.mark.parametrize("n", [0, 16, 31, 33, 64])
def test_seeds_must_be_32_bytes(n: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Identity(bytes(n))
    with pytest.raises(ValueError, match="32 bytes"):
        MasterSeed(bytes(n))


def test_master_seed_repr_hides_it() -> None:
    assert repr(MasterSeed(bytes(range(32)))) == "MasterSeed(…)"


@given(master_seeds, identities, identities)
def test_pairwise_keys(master: MasterSeed, vendor_a: Identity, vendor_b: Identity) -> None:
    """§2.3-1: one key per vendor and per generation, deterministic, unlike the master's own."""
    a0 = master.pairwise(vendor_a.public_key)
    assert a0.public_key == master.pairwise(vendor_a.public_key, 0).public_key
    assert a0.public_key == MasterSeed(master.seed).pairwise(vendor_a.public_key).public_key
    a1 = master.pairwise(vendor_a.public_key, 1)
    a2 = master.pairwise(vendor_a.public_key, 2)
    keys = {a0.public_key, a1.public_key, a2.public_key, Identity(master.seed).public_key}
    if vendor_a.public_key != vendor_b.public_key:
        keys.add(master.pairwise(vendor_b.public_key).public_key)
        assert len(keys) == 5
    else:
        assert len(keys) == 4
    assert a0.enc_public_key != a1.enc_public_key


@given(seeds, seeds, keys32)
def test_pairwise_keys_differ_between_customers(s1: bytes, s2: bytes, vendor: bytes) -> None:
    if s1 != s2:
        assert MasterSeed(s1).pairwise(vendor).public_key != MasterSeed(s2).pairwise(
            vendor
        ).public_key


@given(master_seeds, ids, ids, keys32)
def test_intent_identities(master: MasterSeed, i1: bytes, i2: bytes, vendor: bytes) -> None:
    """§2.4-1: a throw-away key per intentcast, unlinkable to the pairwise keys."""
    k1 = master.for_intent(i1)
    assert k1.public_key == master.for_intent(i1).public_key
    assert k1.public_key != master.pairwise(vendor).public_key
    assert k1.public_key != Identity(master.seed).public_key
    if i1 != i2:
        assert k1.public_key != master.for_intent(i2).public_key


def test_derivation_input_lengths() -> None:
    master = MasterSeed(bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        master.pairwise(bytes(31))
    with pytest.raises(ValueError, match="16 bytes"):
        master.for_intent(bytes(32))


def test_pairwise_derivation_vector() -> None:
    """§2.3-1: seed = HMAC-SHA-256(master, "vrmproto/v1/pairwise\\0" ‖ vendor ‖ u32be(gen))."""
    master = bytes(range(32))
    vendor = BOB.public_key
    seed = hmac.new(
        master, b"vrmproto/v1/pairwise\x00" + vendor + (3).to_bytes(4, "big"), hashlib.sha256
    ).digest()
    assert MasterSeed(master).pairwise(vendor, 3).public_key == Identity(seed).public_key
    intent = bytes(range(16))
    seed = hmac.new(master, b"vrmproto/v1/intent\x00" + intent, hashlib.sha256).digest()
    assert MasterSeed(master).for_intent(intent).public_key == Identity(seed).public_key


# -- signatures (§3.5) --------------------------------------------------------------------------


@given(identities, st.binary(max_size=100), st.sampled_from(CONTEXTS), st.sampled_from(CONTEXTS))
def test_signatures_are_bound_to_their_context(
    who: Identity, data: bytes, signed_in: bytes, checked_in: bytes
) -> None:
    """§3.5-1: a signature made under one context never verifies under another."""
    sig = who.sign(signed_in, data)
    assert len(sig) == 64
    if signed_in == checked_in:
        verify(checked_in, data, sig, who.public_key)
    else:
        with pytest.raises(SignatureError) as info:
            verify(checked_in, data, sig, who.public_key)
        assert info.value.code is Problem.BAD_SIGNATURE


def test_signature_checks() -> None:
    """§3.5-3: wrong data, wrong key, altered signature: bad_signature; wrong size: malformed."""
    sig = ALICE.sign(Context.MESSAGE, b"hello")
    verify(Context.MESSAGE, b"hello", sig, ALICE.public_key)
    cases = [
        (b"hellO", sig, ALICE.public_key),
        (b"hello", sig, BOB.public_key),
        (b"hello", bytes([sig[0] ^ 1]) + sig[1:], ALICE.public_key),
        (b"hello", sig[:63] + bytes([sig[63] ^ 0x80]), ALICE.public_key),  # S made non-canonical
    ]
    for data, s, key in cases:
        with pytest.raises(SignatureError) as info:
            verify(Context.MESSAGE, data, s, key)
        assert info.value.code is Problem.BAD_SIGNATURE
    with pytest.raises(SignatureError) as info:
        verify(Context.MESSAGE, b"hello", sig[:63], ALICE.public_key)
    assert info.value.code is Problem.MALFORMED


def test_context_strings() -> None:
    """§3.5 table 2: each context is versioned and NUL-terminated, and no two share a prefix."""
    for ctx in CONTEXTS:
        assert ctx.startswith(b"vrmproto/v1/")
        assert ctx.endswith(b"\x00")
        assert ctx.count(b"\x00") == 1
    assert len(set(CONTEXTS)) == len(CONTEXTS)


@pytest.mark.parametrize("key", SMALL_ORDER + NON_CANONICAL, ids=lambda k: k.hex()[:8] + "…")
def test_small_order_and_non_canonical_keys_are_refused(key: bytes) -> None:
    """§2.1-2: ``bad_key`` from check_key and from verify, whatever the signature."""
    assert not is_valid_key(key)
    with pytest.raises(ValidationError) as info:
        check_key(key, path="$.body.new_key")
    assert info.value.code is Problem.BAD_KEY
    assert info.value.path == "$.body.new_key"
    # The classic small-order forgery: R = identity point, S = 0 "verifies" for weak verifiers.
    forged = SMALL_ORDER[0] + bytes(32)
    for sig in (forged, ALICE.sign(Context.MESSAGE, b"x")):
        with pytest.raises(SignatureError) as sinfo:
            verify(Context.MESSAGE, b"x", sig, key)
        assert sinfo.value.code is Problem.BAD_KEY


@pytest.mark.parametrize("n", [0, 31, 33])
def test_keys_of_the_wrong_length_are_bad_keys(n: int) -> None:
    assert not is_valid_key(bytes(n))
    with pytest.raises(ValidationError) as info:
        check_key(bytes(n))
    assert info.value.code is Problem.BAD_KEY
    with pytest.raises(SignatureError) as sinfo:
        verify(Context.MESSAGE, b"x", bytes(64), b"\x01" * n)
    assert sinfo.value.code is Problem.BAD_KEY


def test_small_order_r_is_refused() -> None:
    """§3.5-3: a signature whose R is a small-order point never verifies."""
    sig = ALICE.sign(Context.MESSAGE, b"x")
    for r in SMALL_ORDER:
        with pytest.raises(SignatureError):
            verify(Context.MESSAGE, b"x", r + sig[32:], ALICE.public_key)


# -- sealing (§5.5) -----------------------------------------------------------------------------


@given(st.binary(max_size=300), identities, identities)
def test_seal_and_unseal(plain: bytes, to: Identity, other: Identity) -> None:
    """§5.5-2, §5.5-4: only the recipient's X25519 key opens a sealed box."""
    box = seal(plain, to.enc_public_key)
    assert len(box) == len(plain) + 48  # ephemeral key and MAC: nothing else leaks
    assert to.unseal(box) == plain
    if other.enc_public_key != to.enc_public_key:
        with pytest.raises(ValidationError) as info:
            other.unseal(box)
        assert info.value.code is Problem.CANNOT_DECRYPT


@given(st.data())
def test_altered_or_short_boxes_cannot_be_opened(data: st.DataObject) -> None:
    box = bytearray(seal(b"personal data", ALICE.enc_public_key))
    i = data.draw(st.integers(0, len(box) - 1))
    box[i] ^= data.draw(st.integers(1, 255))
    for bad in (bytes(box), bytes(box[: data.draw(st.integers(0, 47))])):
        with pytest.raises(ValidationError) as info:
            ALICE.unseal(bad)
        assert info.value.code is Problem.CANNOT_DECRYPT


@pytest.mark.parametrize("key_hex", [
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f",
    "ed" + "ff" * 30 + "ff",  # p, with the top bit set: still refused
])
def test_small_order_encryption_keys_are_refused(key_hex: str) -> None:
    """§2.1-5: an X25519 key of small order is bad_key; derived keys never are."""
    with pytest.raises(ValidationError) as info:
        check_enc_key(bytes.fromhex(key_hex))
    assert info.value.code is Problem.BAD_KEY
    check_enc_key(Identity(bytes(32)).enc_public_key)
