"""Front-running a relayed intentcast (spec §15.4-5, §11.14).

The envelope inside a relayed intentcast does not name the Nostr key of the event that carries
it: anyone who reads it from a relay can publish it again in an event of a key of their own,
with a ``created_at`` one second later, so that a relay serving stored events newest first hands
a vendor that (re)subscribes the copy before the customer's event.

Before: the vendor answered one message hash once (§15.4-5 as it stood), whichever event it read
first. The impostor's copy took the answer — sealed to the impostor's key, naming the vendor's
URL — and the customer's own event, read next, got none: one re-signature (and the proof of
work the vendor asks for) silenced every vendor for that customer. The impostor gained nothing
it could not have had by publishing the same words under an identity of its own (which vendors
would offer, their public URLs), but the customer lost every answer.

Now a vendor answers each intentcast once per event key (§15.4-5): the copy is answered to its
key, the customer's event to the customer's, and a second event of the same key is not answered
again.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
from _nostr_relay import relay

from tests.test_hunt_s14_nostr import cast_with_key, hertz, now_ms
from vrmproto import Intentcast, Signed
from vrmproto.nostr import (
    Event,
    NostrKey,
    Relay,
    answer_filter,
    open_answer,
    sign_event,
)
from vrmproto.nostr._vendor import relay_vendor

VENDOR_URL = "https://hertz.example/vrm"


def front_run(event: Event, key: NostrKey) -> Event:
    """``event``'s content and tags, signed by ``key``, one second younger: what anyone can
    publish after reading ``event`` from a relay."""
    tags = [t for t in event.tags if t[0] != "nonce"]
    return sign_event(key, event.created_at + 1, event.kind, tags, event.content,
                      aux=os.urandom(32))  # fmt: skip


def cast(what: str) -> tuple[Event, Signed[Intentcast], NostrKey]:
    """A relayed intentcast Hertz makes an offer for, its message, and the customer's key."""
    event, msg, key = cast_with_key(what)
    return event, msg, key


async def test_a_copy_under_another_key_does_not_take_the_customers_answer() -> None:
    """Sans-IO: the copy is read first and answered to its key; the customer's event is still
    answered, to the customer's key; neither is answered twice."""
    event, _, _ = cast("suv rental")
    mallory = NostrKey(os.urandom(32))
    copy = front_run(event, mallory)
    v = hertz(VENDOR_URL)
    to_mallory = await v.consider(copy)
    to_customer = await v.consider(event)
    assert to_mallory is not None
    assert to_mallory.tag_values("p") == [mallory.public.hex()]
    assert to_customer is not None, "the customer's event went unanswered"
    assert to_customer.tag_values("p") == [event.pubkey]
    assert to_customer.tag_values("e") == [event.id]
    assert await v.consider(event) is None
    assert await v.consider(copy) is None
    # another event of the impostor's key, carrying the same intentcast: answered once already
    assert await v.consider(front_run(event, mallory)) is None


async def test_a_front_run_on_a_real_relay_leaves_the_customer_its_answer(tmp_path: Path) -> None:
    """On a real relay: the customer publishes; an impostor publishes the copy one second
    younger; a vendor then subscribes and reads both stored events, the copy first. The
    customer's own key receives the vendor's answer (before, it never came)."""
    event, message, key = cast("suv rental")
    mallory = NostrKey(os.urandom(32))
    copy = front_run(event, mallory)
    v = hertz(VENDOR_URL)
    with relay(tmp_path) as url:
        async with aiohttp.ClientSession() as session, Relay(url, session) as r:
            await r.publish(event)
            await r.publish(copy)
            stored = [e.id async for e in r.subscribe({"ids": [event.id, copy.id]},
                                                     until_eose=True)]  # fmt: skip
            assert stored == [copy.id, event.id]  # newest first: the copy is read first
            answered: dict[str, Event] = {}
            async with relay_vendor(v, [url]), asyncio.timeout(20):
                async for ans in r.subscribe(answer_filter(bytes.fromhex(event.pubkey), 0),
                                             answer_filter(mallory.public, 0)):  # fmt: skip
                    answered[ans.tag_values("p")[0]] = ans
                    if event.pubkey in answered:
                        break
    got = open_answer(answered[event.pubkey], key, message.hash, now_ms=now_ms())
    assert got.url == VENDOR_URL
