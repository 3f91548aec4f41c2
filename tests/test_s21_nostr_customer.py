"""The customer's side of §15 against relays that refuse, go away or lie (spec §15.2-4, §15.4,
§15.5-1). Relays here are aiohttp servers on 127.0.0.1 scripted by the test.

Before:

- an intentcast no relay stored (every relay refused it, or never said OK) stayed in the store:
  ``vrm relay intent`` said the relays failed and nothing was asked (exit 4), yet ``vrm intent
  list`` showed the intentcast as sent and ``vrm relay answers`` looked for it on every run;
- ``vrm relay answers`` with the relays of an open intentcast down said "No relayed intentcast of
  yours is still open on these relays." and exit 0 (``--json``: ``"intents": []``, done): the
  person, or a script, took a network failure for the intentcast's end;
- the proof of work was mined on the event loop, with the relays' connections open: at
  ``--pow 26`` (a minute or more) nothing answered the relays' pings, the relay closed the
  connection, and the intentcast failed once mined ("the relay closed the connection");
- an answer — which anyone can seal to the intentcast's public key — naming an address on the
  person's own network (``http://192.168.1.1/…``, ``http://169.254.169.254/``, ``http://10.1``,
  ``http://[fe80::1]``, ``http://localhost``) was taken: the agent then sent HTTP requests,
  with a path the answer chose, to the person's router, printer or cloud metadata service;
- an answer with no ``expiration`` tag, or an expired one, was opened and taken (§15.1-3: a
  receiver MUST drop both).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_s21_nostr_relay import scripted_relay

from vrmproto import MasterSeed, sign_message
from vrmproto.client import Agent
from vrmproto.nostr import (
    KIND_ANSWER,
    EventError,
    NostrKey,
    RelayError,
    RelayPool,
    _customer,
    answer_event,
    conversation_key,
    nip44_encrypt,
    open_answer,
    open_intentcast,
    sign_event,
)
from vrmproto.nostr._binding import host_class
from vrmproto.nostr._customer import _stored_next, publish_intentcast, relay_answers
from vrmproto.store import MemoryStore


async def refuse(sock: web.WebSocketResponse, m: list[Any]) -> None:
    """A relay that holds nothing and refuses every event."""
    if m[0] == "REQ":
        await sock.send_str(json.dumps(["EOSE", m[1]]))
    elif m[0] == "EVENT":
        await sock.send_str(json.dumps(["OK", m[1]["id"], False, "blocked: not today"]))


async def test_an_intentcast_no_relay_stored_is_not_kept_but_its_index_is_spent() -> None:
    async with scripted_relay(refuse) as url:
        agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)))
        async with agent:
            with pytest.raises(RelayError, match="not today"):
                await publish_intentcast(agent, "kayak for a day", relays=[url],
                                         pow_difficulty=0, answer_wait_ms=0)  # fmt: skip
            assert await agent.intents() == []
            # the key was shown to the relays: the next intentcast has a key of its own
            assert await _stored_next(agent) == 1


def storing() -> Any:
    """A relay that stores every event and serves those of the authors and kinds asked for."""
    stored: list[dict[str, Any]] = []

    async def handle(sock: web.WebSocketResponse, m: list[Any]) -> None:
        if m[0] == "EVENT":
            stored.append(m[1])
            await sock.send_str(json.dumps(["OK", m[1]["id"], True, ""]))
        elif m[0] == "REQ":
            for e in stored:
                if all(e["kind"] in f.get("kinds", [e["kind"]])
                       and e["pubkey"] in f.get("authors", [e["pubkey"]]) for f in m[2:]):
                    await sock.send_str(json.dumps(["EVENT", m[1], e]))
            await sock.send_str(json.dumps(["EOSE", m[1]]))

    return handle


async def test_answers_read_while_the_relays_are_down_are_a_relay_error_not_none_open() -> None:
    agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)))
    async with agent:
        async with scripted_relay(storing()) as url:
            await publish_intentcast(agent, "kayak for a day", relays=[url], pow_difficulty=0,
                                     answer_wait_ms=0)  # fmt: skip
            assert len(await relay_answers(agent, answer_wait_ms=0)) == 1  # up: read
        with pytest.raises(RelayError, match="no relay could be reached"):
            await relay_answers(agent, answer_wait_ms=0)  # down: not "none open"


async def test_the_loop_runs_while_the_work_is_mined(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mining (here: the event's making, held until the loop answers) must leave the
    event loop free, so the relays' connections stay alive however long it takes."""
    loop = asyncio.get_running_loop()
    mining = loop.create_future()
    loop_ran = threading.Event()
    make = _customer.intentcast_event

    def slow_mining(*args: Any, **kw: Any) -> Any:
        loop.call_soon_threadsafe(mining.set_result, None)
        assert loop_ran.wait(5), "the event loop was held while mining"
        return make(*args, **kw)

    async def answer_the_pings() -> None:
        await mining
        loop_ran.set()

    monkeypatch.setattr(_customer, "intentcast_event", slow_mining)
    pinger = asyncio.create_task(answer_the_pings())
    async with scripted_relay(storing()) as url:
        agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)))
        async with agent:
            out = await publish_intentcast(agent, "kayak for a day", relays=[url],
                                           pow_difficulty=8, answer_wait_ms=0)  # fmt: skip
    await pinger
    assert out.event.difficulty >= 8


HERE = ["http://2130706433", "http://0x7f.1", "http://[::1]:9", "http://localhost:9",
        "http://127.0.0.1:9/v"]  # fmt: skip


@pytest.mark.parametrize(("relay", "taken"), [
    ("ws://127.0.0.1", [*HERE, "http://vendor.example"]),
    ("ws://localhost", [*HERE, "http://vendor.example"]),
    ("wss://relay.example", ["http://vendor.example"]),
])  # fmt: skip
async def test_an_answer_naming_the_persons_own_network_is_dropped(
    relay: str, taken: list[str]
) -> None:
    """Answers through a relay on this machine may name this machine (tests, a relay of one's
    own); none may name the local network, nor this machine when the relays are elsewhere
    (the last case: the pool's relay is the test's, its URL said to be a public one)."""
    named = ["http://192.168.1.1/cgi-bin/reboot?x=", "http://10.1", "http://169.254.169.254",
             "http://[fe80::1]:80", "http://2130706433", "http://0x7f.1", "http://[::1]:9",
             "http://localhost:9", "http://printer.local", "http://127.0.0.1:9/v",
             "http://vendor.example", "https://[::ffff:192.168.0.1]/"]  # fmt: skip
    seed = MasterSeed(os.urandom(32))
    key = _customer.relay_key(seed.seed, 0)[1]
    agent = await Agent.open(MemoryStore(), seed)
    async with agent:
        message = _customer._relay_message(agent, _customer.Intentcast(
            what="kayak", reply_by=agent.clock() + 60_000, constraints=(), memberships=()),
            _customer.relay_key(seed.seed, 0)[0])  # fmt: skip
    ours = _customer.intentcast_event(message, key, aux=os.urandom(32))
    now = time.time_ns() // 1_000_000

    async def answers(sock: web.WebSocketResponse, m: list[Any]) -> None:
        if m[0] == "REQ" and m[2].get("kinds") == [KIND_ANSWER]:
            for url in named:
                ev = answer_event(ours, open_intentcast(ours, now_ms=now), url,
                                  key=NostrKey(os.urandom(32)), now_ms=now,
                                  nonce=os.urandom(32), aux=os.urandom(32))  # fmt: skip
                await sock.send_str(json.dumps(["EVENT", m[1], ev.to_json()]))

    async with scripted_relay(answers) as url, aiohttp.ClientSession() as session:
        elsewhere = relay.startswith("wss://")  # connected here, said to be elsewhere
        async with RelayPool([url if elsewhere else url.replace("ws://127.0.0.1", relay)],
                             session) as pool:  # fmt: skip
            if elsewhere:
                pool.urls = [relay]
            got = await _customer._answers(pool, key, message, ours.created_at, wait_s=5,
                                           expect=len(taken), clock=agent.clock)  # fmt: skip
    assert [a.url for a in got] == taken


def test_the_address_classes() -> None:
    cls = host_class
    assert [cls(h) for h in ("127.0.0.1", "127.1", "::1", "localhost", "a.localhost",
                             "0.0.0.0")] == ["loopback"] * 6  # fmt: skip  (0/8: this machine)
    assert [cls(h) for h in ("10.0.0.1", "192.168.1.1", "fe80::1", "169.254.169.254",
                             "printer.local", "fc00::1")] == ["local"] * 6  # fmt: skip
    assert [cls(h) for h in ("8.8.8.8", "relay.example", "2001:4860::8888")] == ["public"] * 3


@pytest.mark.parametrize(("expiration", "code"), [
    (None, "invalid_field"), ("1000", "expired"), ("²", "invalid_field")])  # fmt: skip
def test_an_answer_with_no_expiration_or_an_expired_one_is_dropped(
    expiration: str | None, code: str
) -> None:
    seed = MasterSeed(os.urandom(32))
    intent_id, key = _customer.relay_key(seed.seed, 0)
    identity = seed.for_intent(intent_id)
    now = time.time_ns() // 1_000_000
    body = _customer.Intentcast(what="kayak", reply_by=now + 60_000, constraints=(),
                                memberships=())  # fmt: skip
    message = sign_message(body, identity=identity, recipient=identity.public_key,
                           thread=os.urandom(16), prev=None, now=now, msg_id=os.urandom(16),
                           lifetime_ms=60_000)  # fmt: skip
    ours = _customer.intentcast_event(message, key, aux=os.urandom(32))
    fine = answer_event(ours, message, "http://vendor.example", key=NostrKey(os.urandom(32)),
                        now_ms=now, nonce=os.urandom(32), aux=os.urandom(32))  # fmt: skip
    assert open_answer(fine, key, message.hash, now_ms=now).url == "http://vendor.example"
    answer_key = NostrKey(os.urandom(32))
    plain = json.dumps({"intent": message.hash.hex(), "url": "http://vendor.example"})
    tags = [["p", ours.pubkey], ["e", ours.id],
            *([["expiration", expiration]] if expiration else [])]  # fmt: skip
    sealed = nip44_encrypt(plain, conversation_key(answer_key.secret, key.public), os.urandom(32))
    bad = sign_event(answer_key, now // 1000, KIND_ANSWER, tags, sealed, aux=os.urandom(32))
    with pytest.raises(EventError) as caught:
        open_answer(bad, key, message.hash, now_ms=now)
    assert caught.value.code.value == code


async def close_reads(sock: web.WebSocketResponse, m: list[Any]) -> None:
    """A relay that takes every event and closes every REQ before EOSE (rate-limited)."""
    if m[0] == "REQ":
        await sock.send_str(json.dumps(["CLOSED", m[1], "rate-limited: slow down"]))
    elif m[0] == "EVENT":
        await sock.send_str(json.dumps(["OK", m[1]["id"], True, ""]))


async def test_relays_that_close_every_read_are_not_none_open_nor_a_free_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)))
    async with agent, scripted_relay(close_reads) as url:
        await publish_intentcast(agent, "kayak for a day", relays=[url], pow_difficulty=0,
                                 answer_wait_ms=0)  # fmt: skip
        assert "could not check with the relays that intentcast key 0 is unused" in caplog.text
        with pytest.raises(RelayError, match="rate-limited"):  # before: [], "none open"
            await relay_answers(agent, answer_wait_ms=0)
        with pytest.raises(RelayError, match="rate-limited"):  # a search of the seed's
            await relay_answers(agent, [url], answer_wait_ms=0)


async def test_an_intentcast_is_not_published_where_a_relay_redirects() -> None:
    """The relay URL the person named answers its handshake with 302 to another server (one
    that would take the event). Before, the agent followed and published there."""
    taken: list[str] = []

    async def takes(sock: web.WebSocketResponse, m: list[Any]) -> None:
        if m[0] == "EVENT":
            taken.append(m[1]["id"])
        await storing()(sock, m)

    async def bounce(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(there.replace("ws://", "http://"))  # as aiohttp follows it

    app = web.Application()
    app.router.add_get("/", bounce)
    bouncer = web.AppRunner(app)
    await bouncer.setup()
    await web.TCPSite(bouncer, "127.0.0.1", 0).start()
    try:
        async with scripted_relay(takes) as there:
            agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)))
            async with agent:
                named = f"ws://127.0.0.1:{bouncer.addresses[0][1]}/"
                with pytest.raises(RelayError, match="redirected"):
                    await publish_intentcast(agent, "kayak for a day", relays=[named],
                                             pow_difficulty=0, answer_wait_ms=0)  # fmt: skip
    finally:
        await bouncer.cleanup()
    assert taken == []


async def test_an_intentcast_cancelled_while_mining_stops_the_miner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C at ``--pow 28`` cancels the publishing while the work is mined in a worker
    thread, which cannot be cancelled: unless told to stop, it mined on for minutes and the
    interpreter waited for it before it exited."""
    loop = asyncio.get_running_loop()
    mining = loop.create_future()
    finished = threading.Event()
    make = _customer.intentcast_event

    def watched(*args: Any, **kw: Any) -> Any:
        loop.call_soon_threadsafe(mining.set_result, None)
        try:
            return make(*args, **kw)
        finally:
            finished.set()

    monkeypatch.setattr(_customer, "intentcast_event", watched)
    async with scripted_relay(storing()) as url:
        agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)))
        async with agent:
            task = asyncio.create_task(publish_intentcast(
                agent, "kayak for a day", relays=[url], pow_difficulty=32, answer_wait_ms=0))
            await mining
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert await asyncio.to_thread(finished.wait, 5)
