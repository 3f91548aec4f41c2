"""A vendor's relay filter matches the intentcasts its catalogue would answer (spec §15.5-3,
§15.3-3).

Before: the ``#t`` filter held the catalogue's keywords as written. The customer tags its
intentcast with its words — runs of ``a``-``z`` and ``0``-``9`` of 2 to 64 characters — so a
keyword of several words or with a hyphen (``4-wheel-drive``, ``ski rental``) matched no
tag: the relays never sent the vendor an intentcast its policy (which matches such keywords as
phrases, over HTTP too) would have made an offer for, and nothing said so. A keyword with no
word of two characters (``4``) could match no tag at all.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
from _nostr_relay import relay

from tests.test_hunt_s14_nostr import now_ms
from vrmproto import Identity, Intentcast, MasterSeed, Money, sign_message
from vrmproto.nostr import NostrKey, Relay, answer_filter, intentcast_event
from vrmproto.nostr._vendor import RelayVendor, catalogue_keywords, relay_vendor
from vrmproto.server._policy import CatalogueItem, ReferencePolicy


def item(*words: str) -> CatalogueItem:
    return CatalogueItem("a 4x4 for the mountains", tuple(words), Money(20000, "USD"))


def test_the_filter_holds_the_words_customers_tag_with() -> None:
    assert catalogue_keywords([item("4-wheel-drive"), item("Ski Rental")]) == [
        "drive", "rental", "ski", "wheel"]  # fmt: skip


def test_a_keyword_customers_cannot_tag_lifts_the_filter() -> None:
    """An item whose keywords hold no taggable word: only the checks and the policy can tell."""
    assert catalogue_keywords([item("suv"), item("4")]) == []
    assert catalogue_keywords([item("suv", "4")]) == ["suv"]


async def test_a_hyphenated_keyword_reaches_the_vendor_through_a_real_relay(
    tmp_path: Path,
) -> None:
    catalogue = [item("4-wheel-drive")]
    v = RelayVendor(ReferencePolicy(catalogue=catalogue), Identity(os.urandom(32)),
                    "http://127.0.0.1:1", catalogue_keywords(catalogue))  # fmt: skip
    seed, intent_id = MasterSeed(os.urandom(32)), os.urandom(16)
    identity, now = seed.for_intent(intent_id), now_ms()
    body = Intentcast(what="4-wheel-drive SUV rental", reply_by=now + 60_000, constraints=(),
                      memberships=())  # fmt: skip
    msg = sign_message(body, identity=identity, recipient=identity.public_key,
                       thread=os.urandom(16), prev=None, now=now, msg_id=os.urandom(16),
                       lifetime_ms=60_000)  # fmt: skip
    key = NostrKey.for_intent(seed.seed, intent_id)
    event = intentcast_event(msg, key, aux=os.urandom(32))
    with relay(tmp_path) as url:
        async with relay_vendor(v, [url]), aiohttp.ClientSession() as session, \
                Relay(url, session) as r:  # fmt: skip
            await r.publish(event)
            async with asyncio.timeout(20):
                async for answer in r.subscribe(answer_filter(key.public, 0)):
                    assert answer.tag_values("e") == [event.id]
                    break
