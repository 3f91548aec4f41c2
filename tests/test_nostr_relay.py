"""Intentcasts through real Nostr relays on 127.0.0.1 (spec §15): publish and receive, a relay
down, an event delivered twice, an expired event, a vendor that requires proof of work, and the
Park City intentcast reaching vendors the customer never heard of."""

from __future__ import annotations

import base64
import contextlib
import importlib
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _nostr_relay import relay

from tests._world import VENDORS, serving
from vrmproto import Identity, Intentcast, MasterSeed, Money, TermRef, latest, sign_message
from vrmproto.client import Agent
from vrmproto.nostr import (
    Event,
    NostrKey,
    Relay,
    RelayError,
    RelayPool,
    answer_filter,
    intentcast_event,
    intentcast_filter,
    open_intentcast,
    sign_event,
)
from vrmproto.nostr._customer import INDEX_GAP, publish_intentcast, relay_answers
from vrmproto.nostr._vendor import RelayVendor, catalogue_keywords, relay_vendor
from vrmproto.server import LocalVendor, load_vendor_config
from vrmproto.store import MemoryStore, SQLiteStore

SEED = MasterSeed(bytes(range(32)))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Two relays, each with a database of its own, for the whole module."""
    tmp = tmp_path_factory.mktemp("relays")
    with relay(tmp) as one, relay(tmp) as two:
        yield one, two


def dead_url() -> str:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{s.getsockname()[1]}"


def cast(what: str, *, deadline_ms: int = 60_000, created: int | None = None,
         intent_id: bytes | None = None, pow_difficulty: int = 0, geohash: str = "9x0n8"
         ) -> tuple[Event, bytes]:  # fmt: skip
    """A relayed intentcast for ``what`` and the hash of the message inside."""
    intent_id = intent_id or os.urandom(16)
    identity = SEED.for_intent(intent_id)
    now = created if created is not None else now_ms()
    body = Intentcast(what=what, reply_by=now + deadline_ms, constraints=(), memberships=(),
                      max_price=Money(30000, "USD"))  # fmt: skip
    msg = sign_message(body, identity=identity, recipient=identity.public_key,
                       thread=os.urandom(16), prev=None, now=now, msg_id=os.urandom(16),
                       lifetime_ms=deadline_ms)  # fmt: skip
    key = NostrKey.for_intent(SEED.seed, intent_id)
    return intentcast_event(msg, key, geohash=geohash, aux=os.urandom(32),
                            pow_difficulty=pow_difficulty), msg.hash


def vendor(name: str, url: str, **kw: object) -> RelayVendor:
    config = load_vendor_config(VENDORS / f"{name}.toml")
    assert config.seed is not None
    return RelayVendor(config.policy(), Identity(config.seed), url,
                       catalogue_keywords(config.catalogue), **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_an_intentcast_published_is_received_by_its_keyword_and_area(
    relays: tuple[str, str], session: aiohttp.ClientSession
) -> None:
    event, digest = cast("kayak rental")
    async with Relay(relays[0], session) as r:
        await r.publish(event)
        got = [e async for e in r.subscribe(intentcast_filter(["kayak"], ["9x0"], 0),
                                            until_eose=True)]  # fmt: skip
        missed = [e async for e in r.subscribe(intentcast_filter(["kayak"], ["dr5"], 0),
                                               until_eose=True)]  # fmt: skip
    assert [e.id for e in got] == [event.id]
    assert missed == []
    assert open_intentcast(got[0], now_ms=now_ms()).hash == digest


async def test_a_relay_down_leaves_the_others_working(
    relays: tuple[str, str], session: aiohttp.ClientSession
) -> None:
    down = dead_url()
    event, _ = cast("canoe rental")
    async with RelayPool([down, relays[0]], session) as pool:
        result = await pool.publish(event)
        assert result.accepted == [relays[0]]
        assert down in pool.down
        async for e in pool.subscribe(intentcast_filter(["canoe"], [], 0)):
            assert e.id == event.id
            break
    with pytest.raises(RelayError, match="no relay"):
        async with RelayPool([down], session):
            pass


async def test_an_event_on_two_relays_is_answered_once(
    relays: tuple[str, str], session: aiohttp.ClientSession
) -> None:
    """The pool drops the second copy (§15.5-2); the same event read again is not answered again
    (§15.4-5; a copy under another key is: tests/test_s22_nostr_frontrun.py)."""
    intent_id = os.urandom(16)
    event, _ = cast("suv rental", intent_id=intent_id)
    async with RelayPool(relays, session) as pool:
        result = await pool.publish(event)
        assert sorted(result.accepted) == sorted(relays)
        seen = [e.id async for e in pool.subscribe({"ids": [event.id]}, until_eose=True)]
    assert seen == [event.id]
    v = vendor("hertz", "http://127.0.0.1:1")
    assert await v.consider(event) is not None
    assert await v.consider(event) is None


async def _between_two_answered(relay_url: str, v: RelayVendor, bad: Event, *,
                                created: int, **kw: Any) -> list[str]:  # fmt: skip
    """Publish an intentcast ``v`` answers, then ``bad``, then another it answers (each a
    second younger than the one before), while ``v`` listens on the relay; return the ids of
    the events answered once both good ones were. However the relay orders them (live as
    published, stored ones newest first), ``v`` has considered ``bad`` by then. ``v`` listens
    only to the area of ``bad`` (``kw["geohash"]``), where the other tests publish nothing."""
    ids = [os.urandom(16), os.urandom(16)]
    first, _ = cast("suv rental", created=created - 2_000, intent_id=ids[0], **kw)
    last, _ = cast("suv rental", created=created, intent_id=ids[1], **kw)
    keys = [NostrKey.for_intent(SEED.seed, i).public.hex() for i in ids]
    answered: set[str] = set()
    async with relay_vendor(v, [relay_url]), aiohttp.ClientSession() as session, \
            Relay(relay_url, session) as r:  # fmt: skip
        for ev in (first, bad, last):
            await r.publish(ev)
        async for answer in r.subscribe(answer_filter(bytes.fromhex(keys[0]), 0),
                                        answer_filter(bytes.fromhex(keys[1]), 0)):  # fmt: skip
            answered.update(answer.tag_values("e"))
            if {first.id, last.id} <= answered:
                break
    return sorted(answered)


async def test_an_expired_intentcast_through_a_relay_is_ignored(
    relays: tuple[str, str],
) -> None:
    """The relay still serves it (its expiry is not yet past by the relay's clock); the vendor,
    whose clock is ten minutes ahead, drops it as expired (§15.1-3) and answers the others."""
    now = now_ms()
    ahead = vendor("hertz", "http://127.0.0.1:1", clock=lambda: now_ms() + 600_000,
                   geohashes=("dr5ru",))  # fmt: skip
    expired, _ = cast("suv rental", created=now - 1_000, deadline_ms=300_000, geohash="dr5ru")
    answered = await _between_two_answered(relays[0], ahead, expired, created=now,
                                           deadline_ms=3_600_000, geohash="dr5ru")  # fmt: skip
    assert expired.id not in answered
    assert ahead.dropped == {"expired": 1}


async def test_a_vendor_that_requires_work_ignores_an_intentcast_through_a_relay_without_it(
    relays: tuple[str, str],
) -> None:
    now = now_ms()
    picky = vendor("hertz", "http://127.0.0.1:1", min_pow=8, geohashes=("u4pru",))
    lazy, _ = cast("suv rental", created=now - 1_000, geohash="u4pru")
    assert lazy.difficulty < 8
    answered = await _between_two_answered(relays[1], picky, lazy, created=now,
                                           pow_difficulty=8, geohash="u4pru")  # fmt: skip
    assert lazy.id not in answered
    assert picky.dropped == {"rate_limited": 1}


async def test_an_expired_intentcast_is_ignored() -> None:
    event, _ = cast("suv rental", deadline_ms=1_000)
    later = now_ms() + 5_000
    v = vendor("hertz", "http://127.0.0.1:1", clock=lambda: later)
    assert await v.consider(event) is None
    assert v.dropped == {"expired": 1}


async def test_a_vendor_that_requires_work_ignores_an_intentcast_without_it() -> None:
    event, _ = cast("suv rental")
    v = vendor("hertz", "http://127.0.0.1:1", min_pow=8)
    assert event.difficulty == 0
    assert await v.consider(event) is None
    assert v.dropped == {"rate_limited": 1}


async def test_park_city_through_two_relays_reaches_vendors_the_customer_never_knew(
    relays: tuple[str, str],
) -> None:
    """Avis and Hertz are in no store and on no zeroconf: they listen on two relays. The
    customer publishes the Park City intentcast to both, both vendors answer (each once), their
    offers come back over HTTP ranked and stored, and taking one opens a relationship on the
    customer's terms."""
    async with serving("avis", "hertz") as running:
        listeners = [vendor(n, v.url) for n, v in zip(("avis", "hertz"), running, strict=True)]
        async with relay_vendor(listeners[0], relays), relay_vendor(listeners[1], relays):
            mine = (TermRef.of(latest("vrm.no-tracking")), TermRef.of(latest("vrm.no-third-party")))
            agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)), terms=mine)
            async with agent:
                out = await publish_intentcast(
                    agent, "4-wheel-drive SUV rental", relays=relays, geohash="9x0n8",
                    where="Park City, UT", constraints=["no prepaid gas", "no insurance"],
                    memberships=["Hertz 1 Club"], max_price=Money(30000, "USD"),
                    pow_difficulty=8, answer_wait_ms=30_000, expect_answers=2,
                    deadline_ms=60_000, vendors=[running[0].url + "/"])  # fmt: skip
                assert sorted(out.published.accepted) == sorted(relays)
                assert sorted(a.url for a in out.answers) == sorted(v.url for v in running)
                # Avis, given by URL and answering through both relays, is asked once
                assert len(out.result.report.results) == 2
                offers = out.result.offers
                assert [o.vendor for o in offers] == ["Hertz Wasatch", "Avis Park City"]
                assert offers[0].price.amount <= offers[1].price.amount
                stored = await agent.offers(out.result.intent_id)
                assert {o.hash for o in stored} == {o.hash for o in offers}
                taken = await agent.take_offer(offers[0])
                assert taken.status == "accepted"
                assert [t.id for t in taken.terms] == [t.id for t in mine]


def test_the_park_city_relay_example_ranks_hertz_with_the_rest(relays: tuple[str, str]) -> None:
    """examples/car_rental_relay.py: Hertz, reached only through the relay, is ranked with the
    vendors given by URL (the README's relay walkthrough)."""
    examples = str(VENDORS.parent)
    sys.path.insert(0, examples)
    try:
        out: Any = importlib.import_module("car_rental_relay").main(relays[0])
    finally:
        sys.path.remove(examples)
    assert [v for v, _ in out.offers] == ["Avis Park City", "Budget Salt Lake", "Hertz Wasatch"]
    assert out.declined == ["Wasatch Outfitters"]
    assert (out.taken, out.status) == ("Avis Park City", "accepted")


async def test_a_vendor_that_would_decline_stays_silent() -> None:
    """Wasatch Outfitters rents skis, not cars: its policy declines, and it does not answer."""
    event, _ = cast("suv rental")
    v = vendor("outfitters", "http://127.0.0.1:1")
    assert await v.consider(event) is None
    assert v.dropped == {}


async def test_the_policy_sees_nothing_before_the_work_and_the_envelope_check() -> None:
    """§15.3-6: the checks come first; only a verified intentcast reaches the policy."""
    asked: list[bytes] = []
    policy = vendor("hertz", "http://127.0.0.1:1").policy

    class Spy:
        accepts_terms = policy.accepts_terms

        async def on_intentcast(self, rel: Any, msg: Any) -> Any:
            asked.append(msg.hash)
            return await policy.on_intentcast(rel, msg)

    picky = vendor("hertz", "http://127.0.0.1:1", min_pow=8)
    easy = vendor("hertz", "http://127.0.0.1:1")
    picky.policy = easy.policy = Spy()  # type: ignore[assignment]
    event, digest = cast("suv rental", intent_id=bytes(16))
    assert await picky.consider(event) is None  # no work: dropped before the envelope
    envelope = bytearray(base64.b64decode(event.content))
    envelope[-70] ^= 1  # a byte of the envelope's signature
    content = base64.b64encode(bytes(envelope)).decode()
    forged = sign_event(NostrKey.for_intent(SEED.seed, bytes(16)), event.created_at, event.kind,
                        event.tags, content, aux=bytes(32))  # fmt: skip
    assert await easy.consider(forged) is None
    assert easy.dropped == {"bad_signature": 1}
    assert asked == []
    assert await easy.consider(event) is not None
    assert asked == [digest]


def _park_city(agent: Agent, relays: tuple[str, str], **kw: Any) -> Any:
    return publish_intentcast(
        agent, "4-wheel-drive SUV rental", relays=relays, geohash="9x0n8",
        where="Park City, UT", constraints=["no prepaid gas", "no insurance"],
        memberships=["Hertz 1 Club"], max_price=Money(30000, "USD"), pow_difficulty=8,
        deadline_ms=120_000, **kw)  # fmt: skip


@contextlib.asynccontextmanager
async def _avis_and_hertz() -> AsyncIterator[list[LocalVendor]]:
    async with serving("avis", "hertz") as running:
        yield running


async def test_an_agent_restored_from_its_seed_alone_reads_the_answers_and_takes_an_offer(
    relays: tuple[str, str],
) -> None:
    """§15.2-1, §15.2-4: the customer publishes, then is lost with its store before any vendor
    answers. Avis and Hertz (in no store, on no zeroconf) start listening afterwards and answer.
    An agent restored from the master seed alone, into an empty store, finds the intentcast on
    the relays, reads the answers, gets the offers over HTTP, lists them with the intentcast,
    and takes one up on its terms. A later intentcast never reuses the restored one's key, nor
    one the search asked the relays about."""
    seed = os.urandom(32)
    mine = (TermRef.of(latest("vrm.no-tracking")), TermRef.of(latest("vrm.no-third-party")))
    async with _avis_and_hertz() as running:
        lost = await Agent.open(MemoryStore(), MasterSeed(seed), terms=mine)
        async with lost:
            out = await _park_city(lost, relays, answer_wait_ms=0)
        assert (out.answers, out.result.offers, out.record.relay_index) == ((), (), 0)
        assert out.published is not None
        assert sorted(out.published.accepted) == sorted(relays)
        listeners = [vendor(n, v.url) for n, v in zip(("avis", "hertz"), running, strict=True)]
        async with relay_vendor(listeners[0], relays), relay_vendor(listeners[1], relays):
            restored = await Agent.open(MemoryStore(), MasterSeed(seed), terms=mine)
            async with restored:
                assert await restored.intents() == []
                [read] = await relay_answers(restored, relays, answer_wait_ms=60_000,
                                             expect_answers=2)  # fmt: skip
                assert read.event.id == out.event.id
                assert read.relay_intent_id == out.relay_intent_id
                assert sorted(a.url for a in read.answers) == sorted(v.url for v in running)
                [record] = await restored.intents()
                assert (record.relay_index, record.relays) == (0, relays)
                assert (record.what, record.where, record.reply_by_ms) == (
                    out.record.what, out.record.where, out.record.reply_by_ms)  # fmt: skip
                assert sorted(record.vendors) == sorted(v.url for v in running)
                offers = await restored.offers(record.intent_id)
                assert sorted(o.vendor for o in offers) == ["Avis Park City", "Hertz Wasatch"]
                taken = await restored.take_offer(min(offers, key=lambda o: o.price.amount))
                assert taken.status == "accepted"
                assert [t.id for t in taken.terms] == [t.id for t in mine]
                # the keys the search asked the relays about are never published from
                later = await _park_city(restored, relays, answer_wait_ms=0)
                assert later.record.relay_index == INDEX_GAP + 1
        elsewhere = await Agent.open(MemoryStore(), MasterSeed(seed), terms=mine)
        async with elsewhere:  # another fresh store: the relays say which indices are taken
            again = await _park_city(elsewhere, relays, answer_wait_ms=0)
        assert again.record.relay_index == 1  # 0 is on the relays; 1 is free there
        assert again.event.pubkey != out.event.pubkey


async def test_answers_that_come_after_a_restart_are_read_from_the_store(
    relays: tuple[str, str], tmp_path: Path
) -> None:
    """The relayed intentcast is stored, with its index and relays, before it is published: an
    agent restarted on the same store reads the answers that came after it stopped waiting, and
    the offers join the intentcast's record, beside those of the vendors it was sent to."""
    seed = MasterSeed(os.urandom(32))
    async with _avis_and_hertz() as (avis, hertz):
        agent = await Agent.open(await SQLiteStore.open(tmp_path / "agent.db"), seed)
        async with agent:
            out = await _park_city(agent, relays[:1], answer_wait_ms=0, vendors=[avis.url])
        assert [o.vendor for o in out.result.offers] == ["Avis Park City"]
        async with relay_vendor(vendor("hertz", hertz.url), relays[:1]):
            agent = await Agent.open(await SQLiteStore.open(tmp_path / "agent.db"), seed)
            async with agent:
                [read] = await relay_answers(agent, answer_wait_ms=60_000, expect_answers=1)
                assert [a.url for a in read.answers] == [hertz.url]
                [record] = await agent.intents()
                assert record.intent_id == out.record.intent_id
                assert record.vendors == (avis.url, hertz.url)
                offers = await agent.offers(record.intent_id)
                assert sorted(o.vendor for o in offers) == ["Avis Park City", "Hertz Wasatch"]
