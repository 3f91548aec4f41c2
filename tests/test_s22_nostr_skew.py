"""Answers from a vendor whose clock is a little behind the customer's (spec §15.4-1, §10-3).

Before: the vendor dated its answer by its own clock and the customer asked its relays for
answers ``since`` the intentcast event's ``created_at``. A vendor whose clock was a second or
more behind the customer's — well within the two minutes §10-3 allows — answered at once, and
its answer was older than the intentcast: the relays kept it from the customer's subscription,
so the customer never heard of the vendor (``vrm relay answers`` later did not either).

Now the vendor dates an answer no earlier than the intentcast event it answers, and the customer
asks for answers from ``max_clock_skew_ms`` before the intentcast, so that either side alone
meets a peer of the earlier revision.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from _nostr_relay import relay

from tests.test_hunt_s14_nostr import cast, hertz
from vrmproto import MasterSeed
from vrmproto.client import Agent
from vrmproto.nostr import Event, NostrKey, answer_event
from vrmproto.nostr._customer import publish_intentcast
from vrmproto.nostr._vendor import relay_vendor
from vrmproto.store import MemoryStore


def test_an_answer_is_never_dated_before_the_intentcast_it_answers() -> None:
    event, message = cast("suv rental")
    behind_ms = (event.created_at - 5) * 1000
    answer = answer_event(event, message, "https://hertz.example/vrm",
                          key=NostrKey(os.urandom(32)), now_ms=behind_ms, nonce=os.urandom(32),
                          aux=os.urandom(32))  # fmt: skip
    assert answer.created_at == event.created_at
    later = answer_event(event, message, "https://hertz.example/vrm",
                         key=NostrKey(os.urandom(32)), now_ms=(event.created_at + 7) * 1000,
                         nonce=os.urandom(32), aux=os.urandom(32))  # fmt: skip
    assert later.created_at == event.created_at + 7


async def test_a_vendor_whose_clock_is_behind_is_heard(tmp_path: Path) -> None:
    """Real relay; the vendor's clock is 3 s behind the customer's, its answers name a loopback
    URL (the relay is on loopback too)."""
    v = hertz("http://127.0.0.1:1")
    v.clock = lambda: time.time_ns() // 1_000_000 - 3_000
    with relay(tmp_path) as url:
        async with relay_vendor(v, [url]):
            agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)))
            async with agent:
                out = await publish_intentcast(agent, "suv rental", relays=[url],
                                               pow_difficulty=0, answer_wait_ms=10_000,
                                               expect_answers=1, deadline_ms=60_000)  # fmt: skip
    assert [a.url for a in out.answers] == ["http://127.0.0.1:1"]
    assert isinstance(out.event, Event)


def test_an_answer_is_not_dated_by_a_created_at_the_intentcast_did_not_sign() -> None:
    """A copy dated a year ahead (anyone may wrap the envelope) does not date the answer so:
    relays would refuse it, and §10-3 bounds only the signed ``created``."""
    event, message = cast("suv rental")
    ahead = Event(event.id, event.pubkey, event.created_at + 365 * 86_400, event.kind,
                  event.tags, event.content, event.sig)  # fmt: skip
    now_ms = event.created_at * 1000 + 2_000
    answer = answer_event(ahead, message, "https://hertz.example/vrm",
                          key=NostrKey(os.urandom(32)), now_ms=now_ms, nonce=os.urandom(32),
                          aux=os.urandom(32))  # fmt: skip
    assert answer.created_at == now_ms // 1000
