"""A relay client on a hostile open network (spec §15.5): relays that send what they like, stall,
refuse or go away. Every relay here is an aiohttp server on 127.0.0.1 scripted by the test.

Before:

- a relay that sent deeply nested JSON (``[[[[…]]]]``, 100 kB) crashed the client's reader with
  ``RecursionError``: the subscription ended without its events, and closing the pool raised it,
  so ``vrm vendor serve --relay`` lost its relay listener for good (it retries on RelayError
  only) and ``vrm relay intent`` ended in a traceback;
- a relay that never sent EOSE for a REQ made every ``until_eose`` read wait for ever: ``vrm
  intent new --relay`` and ``vrm relay answers`` hung on one such relay among good ones;
- a relay that took the TCP connection and never answered the websocket handshake held the
  pool's connect for aiohttp's default 5 minutes (the relay's ``timeout_s`` was not applied).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._loopback import serving_app
from vrmproto import Intentcast, MasterSeed, sign_message
from vrmproto.nostr import (
    DEFAULT_RELAY_LIMITS,
    KIND_INTENTCAST,
    Event,
    EventError,
    NostrKey,
    Relay,
    RelayError,
    RelayLimits,
    RelayPool,
    _relay,
    intentcast_event,
)

Handler = Callable[[web.WebSocketResponse, list[Any]], Awaitable[None]]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def cast(what: str = "suv rental") -> Event:
    """A relayed intentcast from a throw-away identity and key."""
    seed = MasterSeed(os.urandom(32))
    intent_id = os.urandom(16)
    identity = seed.for_intent(intent_id)
    now = now_ms()
    body = Intentcast(what=what, reply_by=now + 60_000, constraints=(), memberships=())
    msg = sign_message(body, identity=identity, recipient=identity.public_key,
                       thread=os.urandom(16), prev=None, now=now, msg_id=os.urandom(16),
                       lifetime_ms=60_000)  # fmt: skip
    return intentcast_event(msg, NostrKey.for_intent(seed.seed, intent_id), aux=os.urandom(32))


@contextlib.asynccontextmanager
async def scripted_relay(handle: Handler) -> AsyncIterator[str]:
    """A relay on 127.0.0.1 that calls ``handle(socket, message)`` for each message a client
    sends; yields its ``ws://`` URL."""

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            await handle(sock, json.loads(msg.data))
        return sock

    app = web.Application()
    app.router.add_get("/", ws)
    async with serving_app(app, "ws") as url:
        yield url + "/"


def serving(*events: Event, before: Sequence[str] = (), eose: bool = True) -> Handler:
    """A handler that answers each REQ with the raw texts ``before``, then ``events``, then EOSE
    (unless ``eose`` is False), and each EVENT with OK true."""

    async def handle(sock: web.WebSocketResponse, m: list[Any]) -> None:
        if m[0] == "REQ":
            for text in before:
                await sock.send_str(text)
            for e in events:
                await sock.send_str(json.dumps(["EVENT", m[1], e.to_json()]))
            if eose:
                await sock.send_str(json.dumps(["EOSE", m[1]]))
        elif m[0] == "EVENT":
            await sock.send_str(json.dumps(["OK", m[1]["id"], True, ""]))

    return handle


NESTED = "[" * 50_000 + "]" * 50_000


async def test_deeply_nested_json_from_a_relay_is_dropped_and_the_subscription_goes_on() -> None:
    good = cast()
    junk = [NESTED, '{"a":' * 30_000 + "1" + "}" * 30_000]
    async with (scripted_relay(serving(good, before=junk)) as url,
                aiohttp.ClientSession() as session, RelayPool([url], session) as pool):  # fmt: skip
        got = [e.id async for e in pool.subscribe({"kinds": [KIND_INTENTCAST]},
                                                  until_eose=True)]  # fmt: skip
        ws = pool.relays[0]._ws  # still up after the junk: the relay is still usable
        assert ws is not None
        assert not ws.closed
    assert got == [good.id]


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda kids: st.lists(kids, max_size=5)
                    | st.dictionaries(st.text(max_size=5), kids, max_size=5), max_leaves=20),
       st.sampled_from(["OK", "EVENT", "EOSE", "CLOSED", "NOTICE", "AUTH", "COUNT", 7]))
def test_no_message_from_a_relay_makes_the_reader_raise(value: Any, kind: Any) -> None:
    """Whatever JSON a relay sends — for a pending OK, a live subscription or nothing of ours —
    the reader drops it or takes it; it never raises (the reader would end with it)."""
    relay = Relay("ws://127.0.0.1:9", None)  # type: ignore[arg-type]  # never connected
    relay._subs["s"] = asyncio.Queue()
    loop = asyncio.new_event_loop()
    try:
        relay._oks["e"] = loop.create_future()
        for msg in ([kind, "s", value], [kind, "e", value, value], [kind, value], value,
                    [kind, value, value, value]):  # fmt: skip
            relay._dispatch(json.dumps(msg))
    finally:
        loop.close()


async def test_a_relay_that_never_ends_its_stored_events_does_not_hang_the_read() -> None:
    """One relay answers REQ with an event and then nothing, for ever (no EOSE); the other is
    fine. A read of the stored events ends after the relays' timeout with the good relay's
    events and the silent relay's, not never."""
    a, b = cast(), cast()
    async with (scripted_relay(serving(a, eose=False)) as stalled,
                scripted_relay(serving(b)) as fine,
                aiohttp.ClientSession() as session,
                RelayPool([stalled, fine], session, timeout_s=0.5) as pool):  # fmt: skip
        async with asyncio.timeout(10):
            got = {e.id async for e in pool.subscribe({"kinds": [KIND_INTENTCAST]},
                                                      until_eose=True)}  # fmt: skip
    assert got == {a.id, b.id}


async def test_a_single_relay_with_no_eose_is_a_relay_error() -> None:
    async with (scripted_relay(serving(eose=False)) as stalled, aiohttp.ClientSession() as s,
                Relay(stalled, s, timeout_s=0.3) as relay):  # fmt: skip
        async def read() -> list[Event]:
            async with asyncio.timeout(10):
                return [e async for e in relay.subscribe({"kinds": [1]}, until_eose=True)]

        with pytest.raises(RelayError, match="EOSE"):
            await read()


async def test_a_relay_that_never_answers_the_handshake_is_down_after_the_timeout() -> None:
    """The port accepts TCP connections (the kernel does, into the backlog) and never says a
    word: the relay is down after ``timeout_s``, and the pool goes on with the other relays."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        url = f"ws://127.0.0.1:{mute.getsockname()[1]}"
        good = cast()
        async with scripted_relay(serving(good)) as fine, aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with asyncio.timeout(20), RelayPool([url, fine], session,
                                                      timeout_s=0.5) as pool:  # fmt: skip
                took = time.monotonic() - started
                assert [r.url for r in pool.relays] == [fine]
                assert "no answer within 0.5 s" in pool.down[url]
    assert took < 5


async def test_what_a_refusing_relay_says_is_cut_short() -> None:
    """A relay's OK false carries its own words, shown to the person (``vrm relay intent``'s
    error): a relay may send a megabyte of them; at most MAX_RELAY_WORDS are kept."""

    async def refuse(sock: web.WebSocketResponse, m: list[Any]) -> None:
        if m[0] == "EVENT":
            await sock.send_str(json.dumps(["OK", m[1]["id"], False, "blocked: " + "x" * 500_000]))

    async with (scripted_relay(refuse) as url, aiohttp.ClientSession() as s,
                Relay(url, s) as relay):  # fmt: skip
        with pytest.raises(RelayError, match="blocked: x") as caught:
            await relay.publish(cast())
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("goodbye", ["close", "CLOSED"])
async def test_a_relay_lost_while_others_are_up_is_followed_again(
    goodbye: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A relay restarts (drops the connection) or ends the subscription (CLOSED) after its
    first intentcast, while another relay stays up. Before, the pool followed the ones left and
    never that relay again (the vendor reconnected only once every relay was gone): its second
    intentcast never came."""
    first, second = cast(), cast()
    reqs: list[str] = []

    async def once_then_goodbye(sock: web.WebSocketResponse, m: list[Any]) -> None:
        if m[0] != "REQ":
            return
        reqs.append(m[1])
        ev = first if len(reqs) == 1 else second
        await sock.send_str(json.dumps(["EVENT", m[1], ev.to_json()]))
        await sock.send_str(json.dumps(["EOSE", m[1]]))
        if len(reqs) == 1:
            if goodbye == "close":
                await sock.close()
            else:
                await sock.send_str(json.dumps(["CLOSED", m[1], "error: shutting down"]))

    async with (scripted_relay(once_then_goodbye) as flaky, scripted_relay(serving()) as steady,
                aiohttp.ClientSession() as session,
                RelayPool([flaky, steady], session) as pool):  # fmt: skip
        got: list[str] = []
        async with asyncio.timeout(5):
            async for ev in pool.follow(lambda: [{"kinds": [KIND_INTENTCAST]}], retry_s=0.01):
                got.append(ev.id)
                if len(got) == 2:
                    break
        assert sorted(r.url for r in pool.relays) == sorted([flaky, steady])
    assert got == [first.id, second.id]
    said = [r.getMessage() for r in caplog.records if "relay lost" in r.getMessage()]
    assert said
    assert ("shutting down" in said[0]) is (goodbye == "CLOSED")  # the relay's own reason


async def test_a_relay_down_at_first_is_followed_once_it_is_up() -> None:
    good = cast()
    with socket.socket() as probe:  # a free loopback port, nobody listening yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    later = f"ws://127.0.0.1:{port}/"
    runner: web.AppRunner | None = None

    async def start_later() -> None:
        nonlocal runner
        app = web.Application()

        async def ws(request: web.Request) -> web.WebSocketResponse:
            sock = web.WebSocketResponse()
            await sock.prepare(request)
            async for msg in sock:
                await serving(good)(sock, json.loads(msg.data))
            return sock

        app.router.add_get("/", ws)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    try:
        async with (scripted_relay(serving()) as steady, aiohttp.ClientSession() as session,
                    RelayPool([later, steady], session) as pool):  # fmt: skip
            assert list(pool.down) == [later]
            await start_later()
            async with asyncio.timeout(5):
                async for ev in pool.follow(lambda: [{"kinds": [KIND_INTENTCAST]}],
                                            retry_s=0.01):  # fmt: skip
                    assert ev.id == good.id
                    break
            assert pool.down == {}
    finally:
        if runner is not None:
            await runner.cleanup()


@pytest.mark.parametrize("field", ["id", "pubkey", "sig"])
@pytest.mark.parametrize("spoil", [str.upper, lambda h: h[:2] + " " + h[2:], lambda h: h + "00"])
def test_an_event_whose_hex_is_not_lower_case_hex_of_its_length_is_malformed(
    field: str, spoil: Callable[[str], str]
) -> None:
    """§15.1-1: id, pubkey and sig are lower-case hex (of 32, 32 and 64 bytes). Before,
    ``bytes.fromhex`` took upper case and spaces: one event with its id spelt two ways by two
    relays was two events to the pool (§15.5-2), considered twice."""
    obj = cast().to_json()
    obj[field] = spoil(obj[field])
    with pytest.raises(EventError) as caught:
        Event.from_json(obj)
    assert caught.value.code.value == "malformed"


async def test_a_flood_of_eose_or_closed_takes_no_memory() -> None:
    """Only EVENTs were bounded (PUMP_QUEUE): a relay that repeats ``["EOSE", sub]`` while the
    subscriber is busy grew the subscription's queue by one item per message, without end."""
    async with aiohttp.ClientSession() as session:  # never connected: nothing leaves
        relay = Relay("ws://127.0.0.1:9", session)
        q: asyncio.Queue[object] = asyncio.Queue()
        relay._subs["s"] = q
        for _ in range(10_000):
            relay._dispatch(json.dumps(["EOSE", "s"]))
        relay._dispatch(json.dumps(["EVENT", "s", {"id": "x"}]))
        for _ in range(10_000):
            relay._dispatch(json.dumps(["CLOSED", "s", "bye"]))
        assert [q.get_nowait() for _ in range(q.qsize())] == ["EOSE", {"id": "x"}, None]


@pytest.mark.parametrize("payload", [[], [None], ["EOSE"], [7], [[]]])
async def test_an_event_message_with_no_event_in_it_ends_nothing(payload: list[Any]) -> None:
    """``["EVENT", sub, null]`` was the subscription's end marker, ``["EVENT", sub, "EOSE"]``
    its stored events' end, and ``["EVENT", sub]`` an EOSE: a relay ended reads with them."""
    good = cast()
    junk = [json.dumps(["EVENT", "*", *payload])]

    async def handle(sock: web.WebSocketResponse, m: list[Any]) -> None:
        if m[0] == "REQ":
            await sock.send_str(junk[0].replace('"*"', json.dumps(m[1])))
            await serving(good)(sock, m)

    async with (scripted_relay(handle) as url, aiohttp.ClientSession() as s,
                Relay(url, s) as relay):  # fmt: skip
        got = [e.id async for e in relay.subscribe({"kinds": [1]}, until_eose=True)]
    assert got == [good.id]


async def test_the_relay_limits_are_one_object_the_client_uses() -> None:
    """Every limit of the relay client is a field of RelayLimits, its default the module's
    constant (spec §15.6), checked when made, and used where it applies."""
    assert RelayLimits() == DEFAULT_RELAY_LIMITS
    assert (DEFAULT_RELAY_LIMITS.max_message, DEFAULT_RELAY_LIMITS.pump_queue,
            DEFAULT_RELAY_LIMITS.seen_window) == (_relay.MAX_RELAY_MESSAGE, _relay.PUMP_QUEUE,
                                                  _relay.SEEN_WINDOW)  # fmt: skip
    for bad in ({"timeout_s": 0}, {"pump_queue": 0}, {"retry_s": 5, "max_retry_s": 1}):
        with pytest.raises(ValueError, match="relay limits"):
            RelayLimits(**bad)  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as session:  # never connected: nothing leaves
        relay = Relay("ws://127.0.0.1:9", session, limits=RelayLimits(pump_queue=3, max_words=5))
        assert Relay("ws://127.0.0.1:9", session, timeout_s=2).limits.timeout_s == 2
        q: asyncio.Queue[object] = asyncio.Queue()
        relay._subs["s"] = q
        for i in range(5):
            relay._dispatch(json.dumps(["EVENT", "s", {"id": str(i)}]))
        assert (q.qsize(), relay.dropped) == (3, 2)
        fut = asyncio.get_running_loop().create_future()
        relay._oks["e"] = fut
        relay._dispatch(json.dumps(["OK", "e", False, "blocked: no"]))
        assert await fut == (False, "block…")
    async with (scripted_relay(serving(before=["[" + "1," * 40 + "1]"])) as url,
                aiohttp.ClientSession() as session,
                Relay(url, session, limits=RelayLimits(max_message=64)) as small):  # fmt: skip
        with pytest.raises(RelayError, match="before EOSE"):  # too large: the connection ends
            await anext(small.subscribe({"kinds": [1]}, until_eose=True))
        assert small.closed


async def test_a_relay_flooding_events_has_the_excess_dropped_before_any_check() -> None:
    """3000 junk events (right form, wrong signature) at once: each cost a signature check
    (~0.15 ms; a vendor's HTTP endpoint runs on the same loop). With ``events_per_s`` at most
    the burst and the rate's share of the time reach a check; the rest are counted."""
    junk = cast().to_json() | {"sig": "00" * 64}
    flood = [json.dumps(["EVENT", "*", junk])] * 3000

    async def handle(sock: web.WebSocketResponse, m: list[Any]) -> None:
        if m[0] == "REQ":
            for text in flood:
                await sock.send_str(text.replace('"*"', json.dumps(m[1]), 1))
            await sock.send_str(json.dumps(["EOSE", m[1]]))

    limits = RelayLimits(events_per_s=10, events_burst=20)
    async with (scripted_relay(handle) as url, aiohttp.ClientSession() as session,
                Relay(url, session, limits=limits) as relay):  # fmt: skip
        started = time.monotonic()
        got = [e async for e in relay.subscribe({"kinds": [1]}, until_eose=True)]
        took = time.monotonic() - started
    reached = 3000 - relay.limited - relay.dropped
    assert got == []
    assert reached <= 20 + 10 * took + 1
    assert relay.limited >= 3000 - 20 - 10 * took - 1 - relay.dropped


async def test_a_read_the_relay_ends_before_eose_is_a_relay_error_not_an_empty_answer() -> None:
    """A relay that closes a REQ (``CLOSED``, "rate-limited: …") or the connection before
    EOSE has said nothing of what it holds. Before, the read ended as if it held nothing: an
    agent asking whether its next key was taken, or restored from its seed and searching for
    its intentcasts, took a relay's refusal for "none"."""

    async def refuse_reads(sock: web.WebSocketResponse, m: list[Any]) -> None:
        if m[0] == "REQ":
            await sock.send_str(json.dumps(["CLOSED", m[1], "rate-limited: slow down"]))

    good = cast()
    async with (scripted_relay(refuse_reads) as closing, scripted_relay(serving(good)) as fine,
                aiohttp.ClientSession() as session):  # fmt: skip
        async with Relay(closing, session) as relay:
            with pytest.raises(RelayError, match="rate-limited: slow down"):
                await anext(relay.subscribe({"kinds": [1]}, until_eose=True))
        async with RelayPool([closing, fine], session) as pool:  # one answered: its events
            got = [e.id async for e in pool.subscribe({"kinds": [1]}, until_eose=True)]
            assert got == [good.id]
        async with RelayPool([closing], session) as pool:  # none answered: an error
            with pytest.raises(RelayError, match="no relay sent its stored events"):
                await anext(pool.subscribe({"kinds": [1]}, until_eose=True))


async def test_a_relay_that_redirects_is_not_followed() -> None:
    """A relay's handshake answers 302 to another URL (here another server on 127.0.0.1; on
    the open network, a host on the person's own network, or ws:// for wss://). Before, the
    client followed up to 10 redirections to wherever the relay said and used what answered."""
    hits: list[str] = []

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for _ in sock:
            pass
        return sock

    target = web.Application()
    target.router.add_get("/", elsewhere)
    runner = web.AppRunner(target)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    there = f"http://127.0.0.1:{runner.addresses[0][1]}/"

    async def bounce(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(there)

    app = web.Application()
    app.router.add_get("/", bounce)
    bouncer = web.AppRunner(app)
    await bouncer.setup()
    await web.TCPSite(bouncer, "127.0.0.1", 0).start()
    try:
        async with _relay.relay_session() as session:
            with pytest.raises(RelayError, match=r"redirected to .* not followed"):
                await Relay(f"ws://127.0.0.1:{bouncer.addresses[0][1]}/", session).connect()
    finally:
        await bouncer.cleanup()
        await runner.cleanup()
    assert hits == []
