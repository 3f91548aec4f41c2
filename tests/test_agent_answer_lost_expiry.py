"""A message the vendor accepted, whose answer was lost, and which then expired (§8.1-8).

The laptop shares, the connection breaks after the request went out (the vendor stored it and
answered into the void), then the laptop is closed for a week. On its return the message has
expired in the outbox. Dropping it (§8.1-7) would fork the histories — the vendor holds it — and
the vendor would refuse every later message with ``chain_broken``, for good. The agent asks the
vendor's history first and, finding the message there with its receipt, adopts what follows it
and calls the message delivered. Each test here fails on the code before that check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from unittest.mock import ANY

import pytest
from _agent_clock import DAY_MS, FIELDS, T0, URL, Clock

from vrmproto import Identity
from vrmproto.client import DEFAULT_TERMS, Agent, Delivery, Unreachable
from vrmproto.client._own import own_header
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport


class AnswersLost(MemoryTransport):
    """``lose``: message types whose answer is lost after the vendor took them (the connection
    broke on the way back); ``refused``: none get through at all (connection refused);
    ``history_down``: history requests fail."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.lose: set[str] = set()
        self.refused = False
        self.history_down = False
        self.history_asked = 0

    async def post_envelope(self, inbox_url: str, envelope: bytes, **kw: Any) -> list[bytes]:
        if self.refused:
            raise Unreachable(f"{inbox_url}: connection refused")
        answer = await super().post_envelope(inbox_url, envelope, **kw)
        header = own_header(envelope)
        if header is not None and header.type in self.lose:
            raise Unreachable(f"{inbox_url}: connection reset by peer")
        return answer

    async def fetch_history(self, *a: Any, **kw: Any) -> Any:
        self.history_asked += 1
        if self.history_down:
            raise Unreachable("history: connection refused")
        return await super().fetch_history(*a, **kw)


@dataclass
class World:
    agent_clock: Clock
    vendor_clock: Clock
    transport: AnswersLost
    vendor: Endpoint
    agent: Agent

    async def share(self, thread: bytes, n: str) -> Delivery:
        return await self.agent.share(thread, {**FIELDS, "n": n}, purposes=["delivery"],
                                      categories=["contact"],
                                      expires_ms=T0 + 365 * DAY_MS)  # fmt: skip

    def days_pass(self, days: int) -> None:
        self.agent_clock.now += days * DAY_MS
        self.vendor_clock.now += days * DAY_MS

    async def same_history(self, thread: bytes) -> int:
        ours = [e.msg_hash for e in await self.agent.history(thread)]
        assert ours == [h.msg_hash for h in await self.vendor.store.history(thread)]
        return len(ours)

    async def notes(self) -> dict[str, str]:
        return {dict(n.fields)["n"]: n.status for n in await self.agent.share_notes()}


@pytest.fixture
async def world() -> World:
    agent_clock, vendor_clock = Clock(), Clock()
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme",
                      clock=vendor_clock)  # fmt: skip
    transport = AnswersLost(clock=vendor_clock)
    transport.add(URL, vendor)
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport, clock=agent_clock)
    return World(agent_clock, vendor_clock, transport, vendor, agent)


async def test_an_accepted_share_that_expired_unanswered_is_delivered(world: World) -> None:
    thread = (await world.agent.connect(URL)).thread
    assert (await world.share(thread, "1")).confirmed
    world.transport.lose = {"data.share"}
    lost = await world.share(thread, "2")
    assert (lost.status, lost.attempts) == ("queued", 1)
    world.transport.lose = set()
    world.days_pass(8)  # the laptop was closed for a week: the share has expired
    d3 = await world.share(thread, "3")
    assert d3.confirmed
    assert [(e.msg_hash, e.status) for e in d3.earlier] == [(lost.msg_hash, "confirmed")]
    receipt = d3.earlier[0].receipt
    assert receipt is not None
    assert receipt.body.ack == lost.msg_hash
    assert world.transport.history_asked == 1
    assert await world.notes() == {"1": "confirmed", "2": "confirmed", "3": "confirmed"}
    n = await world.same_history(thread)
    assert (await world.share(thread, "4")).confirmed
    assert await world.same_history(thread) == n + 2


async def test_a_share_that_never_arrived_is_still_dropped(world: World) -> None:
    """The vendor's history lacks it: it is given up as before (§8.1-7)."""
    thread = (await world.agent.connect(URL)).thread
    world.transport.refused = True
    lost = await world.share(thread, "1")
    assert (lost.status, lost.attempts) == ("queued", 1)
    world.transport.refused = False
    world.days_pass(8)
    d2 = await world.share(thread, "2")
    assert d2.confirmed
    assert [(e.msg_hash, e.status) for e in d2.earlier] == [(lost.msg_hash, "dropped")]
    assert world.transport.history_asked == 1
    assert await world.notes() == {"1": "dropped", "2": "confirmed"}
    await world.same_history(thread)


async def test_it_waits_while_the_vendor_cannot_be_asked(world: World) -> None:
    thread = (await world.agent.connect(URL)).thread
    world.transport.lose = {"data.share"}
    lost = await world.share(thread, "1")
    world.transport.lose = set()
    world.transport.history_down = True
    world.days_pass(8)
    d2 = await world.share(thread, "2")
    assert d2.status == "queued"
    assert [(e.msg_hash, e.status) for e in d2.earlier] == [(lost.msg_hash, "queued")]
    assert await world.notes() == {"1": "queued"}  # the second is a draft behind it
    world.transport.history_down = False
    world.days_pass(1)  # past the retry
    run = await world.agent.outbox.run()
    assert [(d.msg_hash, d.type, d.status) for d in run.deliveries] == [
        (lost.msg_hash, "data.share", "confirmed"),
        (ANY, "data.share", "confirmed"),
    ]
    assert await world.notes() == {"1": "confirmed", "2": "confirmed"}
    await world.same_history(thread)


async def test_an_expired_refusal_of_an_accepted_share_is_checked_too(world: World) -> None:
    """The agent's clock is behind the vendor's: it delivers again a share it holds valid, and
    the vendor, which took it before, refuses it ``expired`` (time checks come first, §4.5-1)."""
    thread = (await world.agent.connect(URL)).thread
    world.transport.lose = {"data.share"}
    lost = await world.share(thread, "1")
    world.transport.lose = set()
    world.vendor_clock.now += 8 * DAY_MS
    world.agent_clock.now += 6 * DAY_MS  # 2 days behind: the share is still valid to us
    run = await world.agent.outbox.run()
    assert [(d.msg_hash, d.status) for d in run.deliveries] == [(lost.msg_hash, "confirmed")]
    assert world.transport.history_asked == 1
    await world.same_history(thread)


async def test_the_vendors_replies_after_it_are_adopted_and_acknowledged(world: World) -> None:
    """A withdrawal the vendor answered with ``data.erased`` (§5.3.2): the receipt and the reply
    are adopted, and our receipt for the reply is signed and delivered (§5.6.1-2)."""
    thread = (await world.agent.connect(URL)).thread
    assert (await world.share(thread, "1")).confirmed
    world.transport.lose = {"data.withdraw"}
    lost = await world.agent.withdraw(thread)
    assert lost.status == "queued"
    world.transport.lose = set()
    world.days_pass(8)
    run = await world.agent.outbox.run()
    first = run.deliveries[0]
    assert (first.msg_hash, first.status) == (lost.msg_hash, "confirmed")
    assert [r.message.type for r in first.replies] == ["data.erased"]
    assert all(d.confirmed for d in run.deliveries)
    await world.same_history(thread)
    assert (await world.share(thread, "2")).confirmed
    await world.same_history(thread)


async def test_a_rotation_the_vendor_never_took_is_dropped(world: World) -> None:
    """Our queued ``key.rotate`` expired after tries that never reached the vendor: the
    history request, signed with the new key, is refused (``not_a_party``, the vendor holds
    nothing of it), so it is given up and the old key goes on (found by test_agent_stateful)."""
    thread = (await world.agent.connect(URL)).thread
    old_key = (await world.agent.relationships())[0].local_key
    world.transport.refused = True
    assert (await world.agent.rotate_key(thread)).status == "queued"
    world.transport.refused = False
    world.days_pass(8)
    d = await world.share(thread, "1")
    assert d.confirmed
    assert [(e.type, e.status) for e in d.earlier] == [("key.rotate", "dropped")]
    assert world.transport.history_asked == 1
    assert (await world.agent.relationships())[0].local_key == old_key
    await world.same_history(thread)
