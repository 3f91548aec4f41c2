"""A vendor's relay subscription runs for months against relays that send what they like: what
the pool remembers and what waits to be read are bounded (vrmproto/nostr/_relay.py).

Before, :meth:`RelayPool.subscribe` kept every event id it had ever seen in a set, and each
:class:`Relay` subscription queued every event the relay sent, however far behind its reader
was: memory grew with the relay's traffic for as long as ``vrm vendor serve --relay`` ran.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from vrmproto.nostr import _relay
from vrmproto.nostr._relay import PUMP_QUEUE, Relay, _Recent


def test_the_pool_remembers_the_last_ids_only_and_still_drops_a_recent_copy() -> None:
    seen = _Recent(3)
    assert [seen.first(k) for k in "abcd"] == [True] * 4
    assert len(seen) == 3  # "a" forgotten
    assert not seen.first("d")  # a copy from another relay, seconds later: dropped
    assert not seen.first("b")
    assert seen.first("a")  # long gone from the window: new again
    assert len(seen) == 3


def test_the_window_is_what_the_pool_uses() -> None:
    assert _relay.SEEN_WINDOW >= 1024  # copies from several relays come well within it


async def test_a_relay_faster_than_its_reader_has_its_excess_dropped_not_queued() -> None:
    async with aiohttp.ClientSession() as session:  # never connected: nothing leaves
        relay = Relay("ws://127.0.0.1:9", session)
        q: asyncio.Queue[object] = asyncio.Queue()
        relay._subs["s"] = q
        for i in range(PUMP_QUEUE + 10):
            relay._dispatch(json.dumps(["EVENT", "s", {"id": str(i)}]))
        assert q.qsize() == PUMP_QUEUE
        assert relay.dropped == 10
        relay._dispatch(json.dumps(["EOSE", "s"]))  # the relay's markers still get through
        relay._dispatch(json.dumps(["CLOSED", "s", "bye"]))
        items = [q.get_nowait() for _ in range(q.qsize())]
        assert items[-2:] == ["EOSE", None]
        assert [e["id"] for e in items[:3] if isinstance(e, dict)] == ["0", "1", "2"]
