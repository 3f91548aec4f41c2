"""The Nostr binding's cryptography and event rules, sans-IO (spec §15.1, §15.2, §15.6):
NIP-44 v2 against its published vectors, BIP-340 event ids and signatures, NIP-13 work,
the per-intentcast key, and the checks a vendor makes before its policy sees an intentcast."""

from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vrmproto import MasterSeed, Money
from vrmproto._envelope import Signed, sign_message
from vrmproto._messages import Intentcast
from vrmproto.nostr import (
    Event,
    EventError,
    Nip44Error,
    NostrKey,
    answer_event,
    conversation_key,
    intentcast_event,
    keywords,
    leading_zero_bits,
    nip44_decrypt,
    nip44_encrypt,
    open_answer,
    open_intentcast,
    padded_len,
    relay_intent_id,
    sign_event,
)

ONE, TWO = NostrKey((1).to_bytes(32, "big")), NostrKey((2).to_bytes(32, "big"))
#: From NIP-44's published vectors (nip44.vectors.json, v2.valid): sec1 = 1, sec2 = 2.
CONV = "c41c775356fd92eadc63ff5a0dc1da211b268cbea22316767095b2871ea1412d"
VECTORS = [
    ("0000000000000000000000000000000000000000000000000000000000000001", "a",
     "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABee0G5VSK0/9YypIObAtDKfYEAjD35uVkHyB0F4DwrcNaCX"
     "lCWZKaArsGrY6M9wnuTMxWfp1RTN9Xga8no+kF5Vsb"),
    ("f00000000000000000000000000000f00000000000000000000000000000000f", "🍕🫃",
     "AvAAAAAAAAAAAAAAAAAAAPAAAAAAAAAAAAAAAAAAAAAPSKSK6is9ngkX2+cSq85Th16oRTISAOfhStnixqZziKMDvB0Q"
     "QzgFZdjLTPicCJaV8nDITO+QfaQ61+KbWQIOO2Yj"),
]  # fmt: skip
SEED = MasterSeed(bytes(range(32)))


def test_nip44_conversation_key_is_the_published_one_both_ways() -> None:
    assert conversation_key(ONE.secret, TWO.public).hex() == CONV
    assert conversation_key(TWO.secret, ONE.public).hex() == CONV


@pytest.mark.parametrize(("nonce", "plain", "payload"), VECTORS)
def test_nip44_payloads_are_the_published_ones(nonce: str, plain: str, payload: str) -> None:
    conv = bytes.fromhex(CONV)
    assert nip44_encrypt(plain, conv, bytes.fromhex(nonce)) == payload
    assert nip44_decrypt(payload, conv) == plain


def test_nip44_padding_and_refusals() -> None:
    assert [padded_len(n) for n in (1, 32, 33, 37, 257, 320, 383, 65535)] == [
        32, 32, 64, 64, 320, 320, 384, 65536]  # fmt: skip
    conv = bytes.fromhex(CONV)
    good = nip44_encrypt("hello", conv, os.urandom(32))
    flipped = good[:-5] + ("A" if good[-5] != "A" else "B") + good[-4:]
    for bad in (flipped, "#" + good[1:], good[:100]):
        with pytest.raises(Nip44Error):
            nip44_decrypt(bad, conv)
    with pytest.raises(Nip44Error):
        nip44_encrypt("", conv, os.urandom(32))


def test_events_verify_and_a_changed_byte_fails() -> None:
    ev = sign_event(ONE, 1_700_000_000, 1, [["t", "x"]], 'hi "there"\n', aux=bytes(32))
    assert Event.from_json(ev.to_json()) == ev
    for field, value in (("content", "hi"), ("created_at", 1), ("tags", [["t", "y"]])):
        with pytest.raises(EventError, match="id is not the hash"):
            Event.from_json({**ev.to_json(), field: value})
    other = sign_event(TWO, 1_700_000_000, 1, [["t", "x"]], 'hi "there"\n', aux=bytes(32))
    with pytest.raises(EventError, match="signature"):
        Event.from_json({**ev.to_json(), "sig": other.sig})
    with pytest.raises(EventError, match="not a Nostr event"):
        Event.from_json({"id": ev.id})


def test_proof_of_work_counts_bits_up_to_the_committed_target() -> None:
    assert leading_zero_bits(bytes.fromhex("000f" + "ff" * 30)) == 12
    ev = sign_event(ONE, 1_700_000_000, 1, [], "x", aux=bytes(32), pow_difficulty=10)
    assert leading_zero_bits(bytes.fromhex(ev.id)) >= 10
    assert ev.difficulty == 10  # at least 10 bits, but it committed to 10 (NIP-13)
    assert Event.from_json(ev.to_json()).difficulty == 10


def test_the_nostr_key_of_an_intentcast_is_per_intent_and_from_the_seed() -> None:
    a = NostrKey.for_intent(SEED.seed, bytes(16))
    assert a == NostrKey.for_intent(SEED.seed, bytes(16))  # a restored backup finds it again
    assert a != NostrKey.for_intent(SEED.seed, b"\x01" * 16)
    assert a != NostrKey.for_intent(bytes(32), bytes(16))
    assert a.public != SEED.for_intent(bytes(16)).public_key


def test_a_relayed_intentcast_id_comes_from_the_seed_and_its_index() -> None:
    ids = [relay_intent_id(SEED.seed, i) for i in (0, 1, 2**32 - 1)]
    assert len(set(ids)) == 3
    assert all(len(i) == 16 for i in ids)
    assert ids[0] == relay_intent_id(SEED.seed, 0)  # the seed alone finds it again (§15.2-1)
    assert ids[0] != relay_intent_id(bytes(32), 0)
    for bad in (-1, 2**32):
        with pytest.raises(ValueError, match="u32"):
            relay_intent_id(SEED.seed, bad)


def _relayed(what: str, *, geohash: str | None = None, pow_difficulty: int = 0
             ) -> tuple[Event, Intentcast, Signed[Intentcast]]:  # fmt: skip
    now = time.time_ns() // 1_000_000
    identity = SEED.for_intent(bytes(16))
    body = Intentcast(what=what, reply_by=now + 60_000, constraints=("no prepaid gas",),
                      memberships=(), max_price=Money(30000, "USD"))  # fmt: skip
    msg = sign_message(body, identity=identity, recipient=identity.public_key,
                       thread=bytes(16), prev=None, now=now, msg_id=os.urandom(16),
                       lifetime_ms=60_000)  # fmt: skip
    key = NostrKey.for_intent(SEED.seed, bytes(16))
    ev = intentcast_event(msg, key, aux=bytes(32), geohash=geohash, pow_difficulty=pow_difficulty)
    return ev, body, msg


def test_the_intentcast_event_carries_the_envelope_and_its_tags() -> None:
    ev, body, msg = _relayed("4-wheel-drive SUV rental", geohash="9x0n", pow_difficulty=4)
    assert ev.kind == 7390
    assert ev.tag_values("t") == ["wheel", "drive", "suv", "rental", "no", "prepaid", "gas"]
    assert ev.tag_values("g") == ["9", "9x", "9x0", "9x0n"]
    assert ev.tag("price") == ("price", "30000", "USD")
    assert ev.expiration == -(-body.reply_by // 1000)
    opened = open_intentcast(ev, now_ms=time.time_ns() // 1_000_000, min_pow=4)
    assert opened.envelope == msg.envelope
    assert keywords(["A b, c-d!"]) == []  # words of one letter are no keywords


def test_a_changed_expiration_or_another_kind_is_refused() -> None:
    ev, _, _ = _relayed("suv")
    now = time.time_ns() // 1_000_000
    moved = tuple(("expiration", str(ev.expiration + 60)) if t[0] == "expiration" else t
                  for t in ev.tags)  # fmt: skip
    resigned = sign_event(NostrKey.for_intent(SEED.seed, bytes(16)), ev.created_at, ev.kind,
                          moved, ev.content, aux=bytes(32))  # fmt: skip
    with pytest.raises(EventError, match="reply_by"):
        open_intentcast(resigned, now_ms=now)
    other = sign_event(ONE, ev.created_at, 1, ev.tags, ev.content, aux=bytes(32))
    with pytest.raises(EventError, match="not an intentcast"):
        open_intentcast(other, now_ms=now)


def test_an_answer_opens_only_with_the_intentcast_key() -> None:
    ev, _, msg = _relayed("suv")
    vendor_key = NostrKey(os.urandom(32))
    now = time.time_ns() // 1_000_000
    ans = answer_event(ev, msg, "https://hertz.example/vrm", key=vendor_key, now_ms=now,
                       nonce=os.urandom(32), aux=bytes(32))  # fmt: skip
    key = NostrKey.for_intent(SEED.seed, bytes(16))
    got = open_answer(Event.from_json(ans.to_json()), key, msg.hash)
    assert got.url == "https://hertz.example/vrm"
    assert ans.pubkey != key.public.hex()
    with pytest.raises(EventError):
        open_answer(ans, ONE, msg.hash)
    with pytest.raises(EventError, match="another intentcast"):
        open_answer(ans, key, bytes(32))


@given(st.text(min_size=1, max_size=3000).filter(lambda t: len(t.encode()) <= 65535),
       st.binary(min_size=32, max_size=32))  # fmt: skip
def test_nip44_opens_what_it_seals(plain: str, nonce: bytes) -> None:
    conv = bytes.fromhex(CONV)
    assert nip44_decrypt(nip44_encrypt(plain, conv, nonce), conv) == plain


@settings(max_examples=50)
@given(st.text(max_size=200), st.lists(st.lists(st.text(max_size=20), min_size=1, max_size=3),
                                       max_size=4))  # fmt: skip
def test_any_content_and_tags_verify_after_a_round_trip_through_json(
    content: str, tags: list[list[str]]
) -> None:
    """NIP-01's escaping: whatever the text, the id a reader computes is the one signed."""
    ev = sign_event(ONE, 1_700_000_000, 1, tags, content, aux=bytes(32))
    assert Event.from_json(json.loads(json.dumps(ev.to_json()))) == ev
