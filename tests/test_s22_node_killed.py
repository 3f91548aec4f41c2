"""A delivery cut short the way ``kill -9`` (or a power loss) cuts it (session 22): the vendor
stored the message, the agent never learnt the answer.

An attempt is recorded when it ends (recording it before the POST would cost a write per
message): the restarted agent cannot know whether its last one went out. So it no longer says
"not tried yet" as if it knew, and checks the vendor's history (§8.1-8) before it drops for
expiry a message it did not sign itself in this run, as it does one whose attempt failed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from test_client import FakeVendor, now_ms

from vrmproto import MasterSeed
from vrmproto.client import Agent, RetryPolicy
from vrmproto.store import MemoryStore


@dataclass
class Killed:
    """An agent restarted after its share's delivery was cut short; ``ahead_ms`` moves its
    clock."""

    agent: Agent
    vendor: FakeVendor
    thread: bytes
    ahead_ms: list[int]


@pytest.fixture
async def killed() -> AsyncIterator[Killed]:
    seed, store = MasterSeed(os.urandom(32)), MemoryStore()
    vendor = FakeVendor("Acme")
    await vendor.start()
    ahead = [0]

    def clock() -> int:
        return now_ms() + ahead[0]

    agent = await Agent.open(store, seed, retry=RetryPolicy(attempts=1), clock=clock)
    try:
        thread = (await agent.connect(vendor.url)).thread
        vendor.hold = asyncio.Event()
        arrived, stored = asyncio.Event(), asyncio.Event()
        real_inbox = vendor.inbox

        async def inbox(request: object) -> object:
            arrived.set()  # the POST is at the vendor, which waits for hold
            answer = await real_inbox(request)  # type: ignore[arg-type]
            stored.set()
            return answer

        vendor.inbox = inbox  # type: ignore[method-assign]
        await vendor.stop()
        await vendor.start(vendor.port)
        share = asyncio.create_task(agent.share(
            thread, {"email": "doc@example.org"}, purposes=[1], categories=[1],
            expires_ms=now_ms() + 86_400_000 * 365))  # fmt: skip
        await arrived.wait()
        share.cancel()  # as kill -9: nothing of ours runs after this point
        with pytest.raises(asyncio.CancelledError):
            await share
        await agent.close()
        vendor.hold.set()
        await stored.wait()  # the vendor stored the share, and answered no one
        assert [r.message.type for r in vendor.received][-1] == "data.share"
        agent = await Agent.open(store, seed, retry=RetryPolicy(attempts=1), clock=clock)
        yield Killed(agent, vendor, thread, ahead)
    finally:
        await agent.close()
        await vendor.stop()


async def test_a_delivery_cut_short_is_not_listed_as_not_tried(killed: Killed) -> None:
    """``vrm outbox`` said "not tried yet" (0 attempts) of a share that had reached the
    vendor."""
    (w,) = await killed.agent.waiting()
    assert w.reason.value != "not tried yet", w
    assert "the vendor may hold it" in w.reason.value, w


async def test_an_expired_message_cut_short_is_checked_before_it_is_dropped(
    killed: Killed,
) -> None:
    """§8.1-8: a message delivered before without an answer is dropped for expiry only after
    the vendor's history shows it does not hold it. With 0 attempts recorded the agent
    dropped it unchecked, though the vendor held it, and every later message of the
    relationship was refused ``chain_broken``."""
    killed.ahead_ms[0] = 400 * 86_400_000  # the laptop stayed off past the share's expiry
    run = await killed.agent.retry_waiting()
    assert [d.status for d in run.deliveries] != ["dropped"], run
