"""The person's clock set back (an NTP step, a clock corrected after it ran ahead): what waits
in the outbox is not held back by the same amount (§12 durability; the outbox's schedule).

An item's next attempt is a time on the agent's clock (it outlives the process), at most the
schedule's cap or a vendor's ``Retry-After`` ahead. Before: a clock set back by a day held every
waiting message a day longer — `vrm outbox run`, `vrm agent serve` and the UI's retries all
skipped it as "not due"; a clock that had run a year ahead and was corrected held them a year.
Now an item due further ahead than anything the agent could have scheduled is due at once.
"""

from __future__ import annotations

import os
import time

from vrmproto import Identity
from vrmproto.client import DEFAULT_TERMS, Agent
from vrmproto.client._schedule import longest_wait_ms
from vrmproto.client._transport import RetryPolicy
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport

URL = "http://hotel.test"
DAY_MS = 86_400_000


class Clock:
    def __init__(self) -> None:
        self.ms = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        return self.ms


async def test_a_clock_set_back_does_not_hold_the_outbox_back() -> None:
    clock = Clock()
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name="Hotel",
                      policy=ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS],
                                             name="Hotel"))  # fmt: skip
    transport = MemoryTransport({URL: vendor})
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport, clock=clock)
    try:
        assert (await agent.connect(URL)).status == "accepted"
        transport.remove(URL)  # the hotel is down
        d = await agent.share(URL, {"email": "zoe@example.org"}, purposes=["delivery"],
                              categories=["contact"],
                              expires_ms=clock.ms + 30 * DAY_MS)  # fmt: skip
        assert d.status == "queued"
        (item,) = await agent.store.outbox_all()
        assert item.attempts == 1
        transport.add(URL, vendor)  # back up
        clock.ms -= 3 * DAY_MS  # and the person's clock set back three days
        ran = await agent.run_outbox()
        assert [x.status for x in ran.deliveries] == ["confirmed"]
        assert await agent.store.outbox_all() == []
    finally:
        await agent.close()
        await vendor.drain()


async def test_a_wait_the_schedule_set_is_still_kept() -> None:
    """Within what the schedule may set, an item waits its turn as before."""
    clock = Clock()
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name="Hotel",
                      policy=ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS],
                                             name="Hotel"))  # fmt: skip
    transport = MemoryTransport({URL: vendor})
    schedule = RetryPolicy(attempts=1_000_000, base_s=7200.0, cap_s=7200.0)
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport, clock=clock,
                             schedule=schedule)  # fmt: skip
    try:
        assert (await agent.connect(URL)).status == "accepted"
        transport.remove(URL)
        await agent.share(URL, {"email": "zoe@example.org"}, purposes=["delivery"],
                          categories=["contact"], expires_ms=clock.ms + 30 * DAY_MS)  # fmt: skip
        (item,) = await agent.store.outbox_all()
        transport.add(URL, vendor)
        if item.next_attempt_ms > clock.ms:  # (full jitter may have drawn 0)
            assert (await agent.run_outbox()).deliveries == ()
            assert len(await agent.store.outbox_all()) == 1
        clock.ms = item.next_attempt_ms
        assert [x.status for x in (await agent.run_outbox()).deliveries] == ["confirmed"]
    finally:
        await agent.close()
        await vendor.drain()


def test_the_longest_wait_covers_the_cap_and_retry_after() -> None:
    assert longest_wait_ms(RetryPolicy(attempts=3, base_s=2.0, cap_s=3600.0)) == DAY_MS
    assert longest_wait_ms(RetryPolicy(attempts=3, base_s=2.0, cap_s=7 * 86_400.0)) == 7 * DAY_MS
