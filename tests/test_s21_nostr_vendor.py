"""A vendor listening on relays for months, on a hostile open network (spec §15.3-6, §15.4,
§15.5): what its listener does when relays are slow, go away or lie.

Before:

- the listener published each answer and waited for every relay's OK before it read the next
  event: one relay that took answers and never said OK held each answer for the relay's timeout
  (10 s), so the vendor answered at most one intentcast every 10 s and, meanwhile, the events
  the relays sent piled up and were dropped (PUMP_QUEUE);
- a relay lost (restarted, or ending the subscription) while another stayed up was never
  followed again, nor one down when the vendor started: ``serve`` connected again only once
  every relay was gone, so for months the vendor heard fewer relays than its file named;
- (with the customer's side dropping answers that name this machine or a local network) a
  vendor on public relays with no ``server.public_url`` answered ``http://127.0.0.1:8421`` to
  every intentcast, for nothing, and said nothing of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_s21_nostr_relay import scripted_relay, serving

from tests.test_hunt_s14_nostr import cast as s14_cast
from tests.test_hunt_s14_nostr import hertz
from vrmproto.nostr import Event, RelayPool
from vrmproto.nostr._vendor import warn_unreachable_url


def cast(what: str = "suv rental") -> Event:
    """A relayed intentcast Hertz makes an offer for, from a throw-away identity and key."""
    return s14_cast(what)[0]


async def test_an_answer_a_relay_is_slow_to_take_does_not_hold_the_next_intentcasts() -> None:
    """Three intentcasts come; publishing each answer takes until the test says so (a relay
    that does not say OK). All three are considered and their answers on their way at once."""
    casts = [cast() for _ in range(3)]
    release = asyncio.Event()
    all_three = asyncio.Event()
    publishing: list[Event] = []

    class SlowPool:
        async def follow(self, *args: Any, **kw: Any) -> AsyncIterator[Event]:
            for e in casts:
                yield e

        async def publish(self, event: Event) -> None:
            publishing.append(event)
            if len(publishing) == len(casts):
                all_three.set()
            await release.wait()

    v = hertz()
    run = asyncio.create_task(v.run(SlowPool()))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(all_three.wait(), 5)
    finally:
        release.set()
        await asyncio.wait_for(run, 5)
    assert sorted(e.tag_values("e")[0] for e in publishing) == sorted(c.id for c in casts)


async def test_a_relay_lost_while_another_is_up_is_listened_to_again() -> None:
    first, second = cast(), cast()
    reqs: list[str] = []
    answered = asyncio.Event()

    async def restarts(sock: web.WebSocketResponse, m: list[Any]) -> None:
        if m[0] == "EVENT":
            await sock.send_str(json.dumps(["OK", m[1]["id"], True, ""]))
            if ["e", second.id] in m[1]["tags"]:
                answered.set()
        elif m[0] == "REQ":
            reqs.append(m[1])
            ev = first if len(reqs) == 1 else second
            await sock.send_str(json.dumps(["EVENT", m[1], ev.to_json()]))
            await sock.send_str(json.dumps(["EOSE", m[1]]))
            if len(reqs) == 1:
                await sock.close()  # the relay restarts

    async with scripted_relay(restarts) as flaky, scripted_relay(serving()) as steady:
        task = asyncio.create_task(hertz().serve([flaky, steady], retry_s=0.01))
        try:
            await asyncio.wait_for(answered.wait(), 5)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.parametrize(("url", "relays", "warned"), [
    ("http://127.0.0.1:8421", ["wss://relay.example"], True),
    ("http://192.168.1.5:8421", ["ws://127.0.0.1:7000"], True),
    ("http://127.0.0.1:8421", ["ws://127.0.0.1:7000"], False),
    ("https://hertz.example", ["wss://relay.example", "ws://127.0.0.1:7000"], False),
])  # fmt: skip
def test_a_vendor_answering_with_a_url_customers_would_drop_is_warned(
    url: str, relays: list[str], warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    warn_unreachable_url(url, relays)
    assert ("set server.public_url" in caplog.text) is warned


def test_a_vendor_bounds_the_events_a_relay_may_send() -> None:
    v = hertz()
    assert v.relay_limits.events_per_s is not None  # a relay's flood does not take its CPU


async def test_a_vendor_stopped_while_its_policy_thinks_leaves_no_relay_task_behind() -> None:
    """Cancelled while its policy awaited, the listener left the pool's per-relay tasks
    running until the generator was collected — after the pool and its session were closed,
    when they would connect again (RelayPool.follow). They end with it now."""
    thinking = asyncio.Event()

    class Slow:
        accepts_terms = hertz().policy.accepts_terms

        async def on_intentcast(self, rel: Any, msg: Any) -> Any:
            thinking.set()
            await asyncio.Event().wait()  # for ever

    v = hertz()
    v.policy = Slow()  # type: ignore[assignment]
    async with (scripted_relay(serving(cast())) as url, aiohttp.ClientSession() as session,
                RelayPool([url], session) as pool):  # fmt: skip
        others = asyncio.all_tasks()
        task = asyncio.create_task(v.run(pool))
        await asyncio.wait_for(thinking.wait(), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert [t for t in asyncio.all_tasks() - others if not t.done()] == []
