"""``follow`` (``Endpoint.events``) from a position past the end of the feed (session 22).

Positions are never handed out again, so a reader whose cursor is past the feed's newest event
holds a position of another feed: a vendor store since restored from a backup, or another
vendor's. ``vrm vendor events --since`` said so; the in-process reader did not: without a
wakeup it returned nothing, as if the feed had no new event, and with one it waited — for ever,
or until the feed grew past the cursor, skipping every event up to it without a word. Now it
raises :class:`FeedAhead` at once, naming the feed's newest position.
"""

from __future__ import annotations

import asyncio

import pytest
from _vendor_proc import ACCEPTED, Customer, terms
from test_s21_store_expired_feed import Vendor

from vrmproto import VrmError
from vrmproto._messages import TermsOffer
from vrmproto.server._events import FeedAhead, follow
from vrmproto.store import MemoryStore


async def opened() -> Vendor:
    v = Vendor(MemoryStore())
    c = Customer(v.endpoint.identity)
    await v.send(c, TermsOffer(terms=terms(*ACCEPTED), enc_key=c.identity.enc_public_key))
    return v


async def test_a_reader_past_the_end_is_told_not_left_silent() -> None:
    v = await opened()
    head = await v.store.feed_head()
    assert head > 0
    with pytest.raises(FeedAhead) as raised:
        [e async for e in follow(v.store, None, head + 5)]
    assert isinstance(raised.value, VrmError)
    assert (raised.value.after, raised.value.head) == (head + 5, head)
    assert f"newest event is at position {head}" in str(raised.value)


async def test_a_follower_past_the_end_does_not_wait_for_ever() -> None:
    v = await opened()
    head = await v.store.feed_head()
    feed = v.endpoint.events(head + 1)  # the endpoint's own wakeup: it would wait
    try:
        with pytest.raises(FeedAhead):
            await asyncio.wait_for(anext(feed), 10)
    finally:
        await feed.aclose()


async def test_a_reader_at_the_end_or_of_an_empty_feed_reads_nothing() -> None:
    v = await opened()
    head = await v.store.feed_head()
    assert [e async for e in follow(v.store, None, head)] == []
    assert [e async for e in follow(MemoryStore(), None, 0)] == []
    first = [e async for e in follow(v.store, None, head - 1)]
    assert [e.pos for e in first] == [head]
