"""A first terms offer the vendor refuses opens no relationship (§5.2.1, §8.1-5).

Before: the refused offer left our chain and history, as a refused message does, but its thread
stayed in ``Agent.relationships()`` — and so in ``vrm relationships`` and ``vrm ui`` — in state
``none``, for good, beside the relationship a later connect opened: two rows for one vendor,
one of them nothing at all. Now it is not listed; the refusal was the connect's answer, and the
thread keeps it as ``last_problem``. A first offer that still waits in the outbox is listed.
"""

from __future__ import annotations

import os

import pytest
from test_client import FakeVendor

from vrmproto import PeerProblemError, Problem
from vrmproto.client import Agent, RetryPolicy
from vrmproto.store import MemoryStore


async def test_a_refused_first_offer_is_not_listed_and_a_later_connect_is_the_only_one() -> None:
    v = FakeVendor("Acme")
    await v.start()
    agent = await Agent.open(MemoryStore(), os.urandom(32), retry=RetryPolicy(attempts=1))
    try:
        v.refuse_next = Problem.INVALID_FIELD
        with pytest.raises(PeerProblemError):
            await agent.connect(v.url)
        assert await agent.relationships() == []
        (thread,) = await agent.store.threads()  # kept, with what the vendor said
        assert thread.last_problem.startswith("invalid_field")

        assert (await agent.connect(v.url)).status == "accepted"
        assert [(r.vendor, r.state) for r in await agent.relationships()] == [("Acme", "agreed")]
    finally:
        await agent.close()
        await v.stop()


async def test_a_first_offer_waiting_in_the_outbox_is_listed() -> None:
    v = FakeVendor("Acme")
    await v.start()
    agent = await Agent.open(MemoryStore(), os.urandom(32), retry=RetryPolicy(attempts=1))
    try:
        v.fail_next = [(503, {})]
        assert (await agent.connect(v.url)).status == "queued"
        assert [(r.state, r.pending) for r in await agent.relationships()] == [("offered", 1)]
    finally:
        await agent.close()
        await v.stop()
