"""spec/vectors/nostr.json holds for the implementation, read as an implementer would (§15)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from vrmproto import Identity, IntentOffer, Money, ProtocolError
from vrmproto.nostr import (
    Event,
    NostrKey,
    conversation_key,
    intentcast_event,
    nip44_decrypt,
    nip44_encrypt,
    open_answer,
    open_intentcast,
    relay_intent_id,
)
from vrmproto.nostr._binding import check_answer_url
from vrmproto.nostr._vendor import RelayVendor

DOC = json.loads((Path(__file__).resolve().parents[1] / "spec" / "vectors" / "nostr.json")
                 .read_text(encoding="utf-8"))  # fmt: skip
BY_ID = {v["id"]: v for v in DOC["vectors"]}


def test_the_intent_ids_of_relayed_intentcasts_come_from_the_seed_and_their_index() -> None:
    v = BY_ID["intent-ids"]
    seed = bytes.fromhex(v["master_seed"])
    by_hand = [hmac.new(seed, b"vrmproto/v1/nostr/intent\x00" + i.to_bytes(4, "big"),
                        hashlib.sha256).digest()[:16].hex() for i in range(3)]  # fmt: skip
    assert [relay_intent_id(seed, i).hex() for i in range(3)] == v["intent_ids"] == by_hand


def test_the_key_is_derived_from_the_master_seed() -> None:
    v = BY_ID["key"]
    key = NostrKey.for_intent(bytes.fromhex(v["master_seed"]), bytes.fromhex(v["intent_id"]))
    assert (key.secret.hex(), key.public.hex()) == (v["secret_key"], v["public_key"])


def test_the_intentcast_event_opens_and_rebuilds_byte_for_byte() -> None:
    v = BY_ID["intentcast"]
    event = Event.from_json(v["event"])
    msg = open_intentcast(event, now_ms=v["now"], min_pow=v["min_pow"])
    assert (msg.envelope.hex(), msg.hash.hex()) == (v["envelope"], v["message_hash"])
    key = NostrKey(bytes.fromhex(BY_ID["key"]["secret_key"]))
    geohash = event.tag_values("g")[-1]
    again = intentcast_event(msg, key, geohash=geohash, pow_difficulty=v["min_pow"],
                             aux=bytes(32))  # fmt: skip
    assert again.to_json() == v["event"]


def test_the_answer_opens_to_its_plaintext_and_seals_again_alike() -> None:
    v = BY_ID["answer"]
    event = Event.from_json(v["event"])
    recipient = NostrKey(bytes.fromhex(v["recipient_secret_key"]))
    answer = open_answer(event, recipient, bytes.fromhex(v["message_hash"]))
    assert answer.url == json.loads(v["plaintext"])["url"]
    conv = conversation_key(bytes.fromhex(v["secret_key"]), recipient.public)
    assert nip44_decrypt(event.content, conv) == v["plaintext"]
    assert nip44_encrypt(v["plaintext"], conv, bytes.fromhex(v["nonce"])) == event.content


@pytest.mark.parametrize("v", [v for v in DOC["vectors"] if v["result"] == "invalid"
                               and "event" in v and "recipient_secret_key" not in v],
                         ids=lambda v: v["id"])  # fmt: skip
def test_an_event_to_drop_is_dropped_with_its_code(v: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        open_intentcast(Event.from_json(v["event"]), now_ms=v["now"], min_pow=v["min_pow"])
    assert (caught.value.code.value, caught.value.clause) == (v["problem"], v["clause"])


class _Offers:
    """A vendor policy that would make an offer for any intentcast."""

    accepts_terms = ()

    async def on_intentcast(self, rel: Any, msg: Any) -> IntentOffer:
        return IntentOffer(intent=msg.hash, description="a 4x4", price=Money(100, "USD"),
                           valid_until=msg.body.reply_by, conditions=(), accepts_terms=())


async def test_a_vendor_answers_each_key_that_carries_an_intentcast_once() -> None:
    """§15.4-5: a copy of the envelope under another key, read first, does not take the
    customer's answer; neither key is answered twice."""
    v = BY_ID["answered-per-key"]
    vendor = RelayVendor(_Offers(), Identity(bytes(32)), "https://hertz.example/vrm",  # type: ignore[arg-type]
                         ["suv"], min_pow=v["min_pow"], clock=lambda: v["now"])  # fmt: skip
    answered = []
    for obj in v["events"]:
        event = Event.from_json(obj)
        assert open_intentcast(event, now_ms=v["now"]).hash.hex() == v["message_hash"]
        answer = await vendor.consider(event)
        answered.append(answer is not None)
        if answer is not None:
            assert answer.tag_values("p") == [event.pubkey]
    assert answered == v["answered"]


@pytest.mark.parametrize("v", [v for v in DOC["vectors"] if v["id"].startswith("answer-url-")],
                         ids=lambda v: v["id"])  # fmt: skip
def test_an_answer_is_followed_only_where_its_relays_are(v: dict[str, Any]) -> None:
    """§15.4-6: an answer naming this machine or a local network is dropped unless one of the
    relays it came through is there too."""
    if v["result"] == "valid":
        check_answer_url(v["url"], v["relays"])
        return
    with pytest.raises(ProtocolError) as caught:
        check_answer_url(v["url"], v["relays"])
    assert (caught.value.code.value, caught.value.clause) == (v["problem"], v["clause"])


@pytest.mark.parametrize("v", [v for v in DOC["vectors"] if v["result"] == "invalid"
                               and "recipient_secret_key" in v], ids=lambda v: v["id"])  # fmt: skip
def test_an_answer_whose_url_is_no_url_is_dropped(v: dict[str, Any]) -> None:
    recipient = NostrKey(bytes.fromhex(v["recipient_secret_key"]))
    with pytest.raises(ProtocolError) as caught:
        open_answer(Event.from_json(v["event"]), recipient, bytes.fromhex(v["message_hash"]))
    assert (caught.value.code.value, caught.value.clause) == (v["problem"], v["clause"])
