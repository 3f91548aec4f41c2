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
  connection, and the intentcast failed once mined ("the relay closed the connection").
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from typing import Any

import pytest
from aiohttp import web
from test_s21_nostr_relay import scripted_relay

from vrmproto import MasterSeed
from vrmproto.client import Agent
from vrmproto.nostr import RelayError, _customer
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
