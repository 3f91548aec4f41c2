"""Relays and the events on them are a hostile open network (§15): anyone signs an event with a
key of their own, and a relay sends whatever it likes, whatever was asked for.

Before:

- an intentcast whose ``expiration`` tag (or ``nonce`` target) held ``²`` (``str.isdigit`` is
  true, ``int`` refuses it) or thousands of digits made ``RelayVendor.consider`` raise
  ``ValueError``: ``vrm vendor serve --relay`` lost its relay listener for good, silently, at the
  first such event (``serve`` retries only on ``RelayError``);
- an event with a lone surrogate (JSON ``"\\ud800"``) made ``Event.from_json`` raise
  ``UnicodeEncodeError``: the subscription to that relay ended there;
- ``vrm relay answers`` took whatever intentcast event the relay sent back for its own key, signed
  by anyone: a relay could put its own words in the person's intentcast, which the agent then
  signed with the intentcast's identity and sent over HTTP to the URL the relay's forged answer
  named.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests._loopback import serving_app
from vrmproto import Identity, Intentcast, MasterSeed, Money, sign_message
from vrmproto.client import Agent
from vrmproto.nostr import (
    KIND_ANSWER,
    KIND_INTENTCAST,
    Event,
    EventError,
    NostrKey,
    Relay,
    _customer,
    answer_event,
    intentcast_event,
    open_intentcast,
    sign_event,
)
from vrmproto.nostr._customer import publish_intentcast, relay_answers
from vrmproto.nostr._vendor import RelayVendor, catalogue_keywords
from vrmproto.server import LocalVendor, load_vendor_config
from vrmproto.store import MemoryStore

VENDORS = Path(__file__).resolve().parent.parent / "examples" / "vendors"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def hertz(url: str = "http://127.0.0.1:1") -> RelayVendor:
    config = load_vendor_config(VENDORS / "hertz.toml")
    assert config.seed is not None
    return RelayVendor(config.policy(), Identity(config.seed), url,
                       catalogue_keywords(config.catalogue))  # fmt: skip


def cast(what: str, seed: MasterSeed | None = None) -> tuple[Event, Any]:
    """A relayed intentcast for ``what`` from a throw-away identity, and its message."""
    event, msg, _ = cast_with_key(what, seed)
    return event, msg


def cast_with_key(what: str, seed: MasterSeed | None = None) -> tuple[Event, Any, NostrKey]:
    """:func:`cast`, and the customer's Nostr key that signed the event."""
    seed = seed or MasterSeed(os.urandom(32))
    intent_id = os.urandom(16)
    identity = seed.for_intent(intent_id)
    now = now_ms()
    body = Intentcast(what=what, reply_by=now + 60_000, constraints=(), memberships=(),
                      max_price=Money(30000, "USD"))  # fmt: skip
    msg = sign_message(body, identity=identity, recipient=identity.public_key,
                       thread=os.urandom(16), prev=None, now=now, msg_id=os.urandom(16),
                       lifetime_ms=60_000)  # fmt: skip
    key = NostrKey.for_intent(seed.seed, intent_id)
    return intentcast_event(msg, key, aux=os.urandom(32)), msg, key


def resigned(event: Event, tags: Any) -> Event:
    """``event`` with other tags, signed by a key of anyone's: as valid as any event."""
    return sign_event(NostrKey(os.urandom(32)), event.created_at, event.kind, tags,
                      event.content, aux=os.urandom(32))  # fmt: skip


@pytest.mark.parametrize("bad", ["²", "١٢", "9" * 5000, "-5", ""])
async def test_a_signed_intentcast_with_a_tag_that_is_no_number_is_dropped(bad: str) -> None:
    event, _ = cast("suv rental")
    expiring = resigned(event, [t if t[0] != "expiration" else ("expiration", bad)
                                for t in event.tags])  # fmt: skip
    v = hertz()
    assert await v.consider(expiring) is None
    assert v.dropped == {"invalid_field": 1}
    # a nonce tag whose target is no number carries no work; the intentcast is still answered
    worked = resigned(event, [*event.tags, ("nonce", "7", bad)])
    assert worked.difficulty == 0
    assert await hertz().consider(worked) is not None


def test_an_event_with_a_lone_surrogate_is_an_event_error() -> None:
    event, _ = cast("suv rental")
    for field in ("content", "tags"):
        obj = event.to_json()
        obj[field] = "\ud800" if field == "content" else [["t", "\udfff"]]
        with pytest.raises(EventError):
            Event.from_json(obj)


# -- a hostile relay ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def hostile_relay(send: Any) -> AsyncIterator[str]:
    """A relay on 127.0.0.1 that stores what is published and answers every REQ with
    ``send(sub, filter, stored)``: a list of events (as JSON objects, or raw text), then EOSE."""
    stored: list[dict[str, Any]] = []

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            m = json.loads(msg.data)
            if m[0] == "EVENT":
                stored.append(m[1])
                await sock.send_str(json.dumps(["OK", m[1]["id"], True, ""]))
            elif m[0] == "REQ":
                for item in send(m[1], m[2], list(stored)):
                    await sock.send_str(item if isinstance(item, str) else
                                        json.dumps(["EVENT", m[1], item]))  # fmt: skip
                await sock.send_str(json.dumps(["EOSE", m[1]]))
        return sock

    app = web.Application()
    app.router.add_get("/", ws)
    async with serving_app(app, "ws") as url:
        yield url + "/"


async def test_an_event_a_relay_cannot_encode_leaves_the_subscription_open() -> None:
    good, _ = cast("suv rental")

    def send(sub: str, flt: dict[str, Any], stored: list[Any]) -> list[Any]:
        raw = json.dumps(["EVENT", sub, good.to_json()])
        return [raw.replace('"content": "', '"content": "\\ud800'), good.to_json()]

    async with (hostile_relay(send) as url, aiohttp.ClientSession() as session,
                Relay(url, session) as relay):  # fmt: skip
        got = [e.id async for e in relay.subscribe({"kinds": [KIND_INTENTCAST]},
                                                  until_eose=True)]  # fmt: skip
    assert got == [good.id]


async def test_relay_answers_reads_only_the_intentcast_its_own_key_signed() -> None:
    """The relay answers ``{"authors": [our key]}`` with our event and then one of its own,
    carrying other words, and seals an answer to our key for that one, naming a vendor. Our
    agent must read its own intentcast only: the forged one is not ours to sign and send."""
    forged, forged_msg = cast("suv rental, and tell Hertz I pay double")
    vendor = LocalVendor.of(load_vendor_config(VENDORS / "hertz.toml"))
    await vendor.start()

    def send(sub: str, flt: dict[str, Any], stored: list[Any]) -> list[Any]:
        if flt.get("kinds") == [KIND_INTENTCAST]:
            return [*(e for e in stored if e["pubkey"] in flt.get("authors", ())),
                    *([forged.to_json()] if stored else [])]  # fmt: skip
        if flt.get("kinds") == [KIND_ANSWER]:
            to_us = dataclasses.replace(forged, pubkey=flt["#p"][0])
            return [answer_event(to_us, forged_msg, vendor.url, key=NostrKey(os.urandom(32)),
                                 now_ms=now_ms(), nonce=os.urandom(32),
                                 aux=os.urandom(32)).to_json()]  # fmt: skip
        return []

    try:
        async with hostile_relay(send) as url:
            agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)))
            async with agent:
                out = await publish_intentcast(agent, "kayak for a day", relays=[url],
                                               pow_difficulty=0, answer_wait_ms=0)  # fmt: skip
                read = await asyncio.wait_for(
                    relay_answers(agent, answer_wait_ms=300, expect_answers=1), 30)
                [record] = await agent.intents()
                offers = await agent.offers(record.intent_id)
    finally:
        await vendor.stop()
    assert [r.event.id for r in read] == [out.event.id]
    assert read[0].answers == ()
    assert (record.what, record.vendors, offers) == ("kayak for a day", (), [])


async def test_a_flood_of_answers_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers are sealed to the intentcast's public key: anyone can send thousands, each naming
    a URL the agent then contacts over HTTP. Only the first MAX_ANSWERS vendors are taken."""
    monkeypatch.setattr(_customer, "MAX_ANSWERS", 5, raising=False)

    def send(sub: str, flt: dict[str, Any], stored: list[Any]) -> list[Any]:
        if flt.get("kinds") != [KIND_ANSWER] or not stored:
            return []
        ours = Event.from_json(stored[-1])
        message = open_intentcast(ours, now_ms=now_ms())
        return [answer_event(ours, message, f"http://127.0.0.1:9/v{i}",
                             key=NostrKey(os.urandom(32)), now_ms=now_ms(),
                             nonce=os.urandom(32), aux=os.urandom(32)).to_json()
                for i in range(12)]  # fmt: skip

    async with hostile_relay(send) as url:
        agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)))
        async with agent:
            out = await publish_intentcast(agent, "kayak for a day", relays=[url],
                                           pow_difficulty=0, answer_wait_ms=2_000)  # fmt: skip
    assert len(out.answers) == 5
    assert len(out.record.vendors) == 5


async def test_an_event_the_vendor_fails_on_does_not_end_its_listening(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, any exception while considering one event (the ValueError of a tag above, a bug
    in a policy) ended ``RelayVendor.run``: ``vrm vendor serve --relay`` stopped answering
    relayed intentcasts, silently, and the same event stopped it again after a reconnection."""
    first, _ = cast("suv rental")
    second, _ = cast("suv rental")
    v = hertz()
    policy = v.policy
    calls: list[bytes] = []

    class Flaky:
        accepts_terms = policy.accepts_terms

        async def on_intentcast(self, rel: Any, msg: Any) -> Any:
            calls.append(msg.hash)
            if len(calls) == 1:
                raise RuntimeError("a bug in the policy")
            return await policy.on_intentcast(rel, msg)

    v.policy = Flaky()  # type: ignore[assignment]
    published: list[Event] = []

    class Pool:
        async def follow(self, *args: Any, **kw: Any) -> AsyncIterator[Event]:
            for e in (first, second):
                yield e

        async def publish(self, event: Event) -> None:
            published.append(event)

    await v.run(Pool())  # type: ignore[arg-type]
    assert len(calls) == 2
    assert [e.tag_values("e") for e in published] == [[second.id]]
    assert v.dropped == {"error": 1}
    assert "not considered" in caplog.text
