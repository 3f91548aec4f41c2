"""A receipt of ours that expires in the outbox leaves our chain, and a fresh one is owed.

A receipt for a vendor's reply is signed in the Commit that stores the reply, with the next
draft signed right behind it (receipts hold no draft back), and with a save point before each
receipt (§8.1-5). If a receipt outlives its lifetime (§4.5-3) before the vendor takes it, it is
dropped as the vendor would refuse it (``expired``, final): our chain and history return to
where they stood before it, every message of ours logged after it is dropped with it (each
reported), and a fresh receipt for the same reply is signed in its place, since the receipt is
still owed (§5.6.1-2). Our history then agrees with the vendor's, entry for entry. A receipt
the vendor refuses with a final problem leaves our chain too, and is not signed again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest
from _agent_clock import DAY_MS, FIELDS, T0, URL, Clock, ReceiptsLost

from vrmproto import Identity, Money, PeerProblemError
from vrmproto._envelope import Signed
from vrmproto._messages import Intentcast
from vrmproto.client import DEFAULT_TERMS, Agent, Delivery
from vrmproto.client._own import own_header
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy, _replies
from vrmproto.server._accept import Step
from vrmproto.store import MemoryStore


@dataclass
class World:
    clock: Clock
    transport: ReceiptsLost
    vendor: Endpoint
    store: MemoryStore
    seed: bytes

    async def agent(self) -> Agent:
        return await Agent.open(self.store, self.seed, client=self.transport, clock=self.clock)

    async def same_history(self, agent: Agent, thread: bytes) -> list[bytes]:
        """Our history of ``thread``, checked to be the vendor's, message for message."""
        ours = [e.msg_hash for e in await agent.history(thread)]
        assert ours == [h.msg_hash for h in await self.vendor.store.history(thread)]
        return ours


@pytest.fixture
def world() -> World:
    clock = Clock()
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme",
                             catalogue=(CatalogueItem("a bike", ("bike",), Money(100, "USD")),))
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme",
                      clock=clock)  # fmt: skip
    transport = ReceiptsLost(clock=clock)
    transport.add(URL, vendor)
    return World(clock, transport, vendor, MemoryStore(), os.urandom(32))


async def share(agent: Agent, thread: bytes, n: str) -> Delivery:
    return await agent.share(thread, {**FIELDS, "n": n}, purposes=["delivery"],
                             categories=["contact"], expires_ms=T0 + 365 * DAY_MS)  # fmt: skip


async def notes(agent: Agent) -> dict[str, str]:
    return {dict(n.fields)["n"]: n.status for n in await agent.share_notes()}


async def test_the_draft_signed_behind_an_expired_receipt_leaves_with_it(world: World) -> None:
    """[receipt, data.share] in the outbox, signed in one Commit; the receipt expires, and a
    restart (a second agent on the same store) comes in between."""
    agent = await world.agent()
    try:
        thread = (await agent.connect(URL)).thread
        assert (await share(agent, thread, "1")).confirmed
        world.transport.down = True
        assert (await agent.withdraw(thread)).status == "queued"
        assert (await share(agent, thread, "2")).status == "queued"  # a draft behind it
        world.transport.down, world.transport.losing = False, True
        run = await agent.retry_waiting()  # the withdrawal goes, answered with data.erased
        assert [(d.type, d.status) for d in run.deliveries] == [
            ("data.withdraw", "confirmed"), ("receipt", "queued")]
        owed, behind = await agent.waiting()
        assert (owed.type, behind.type, behind.signed) == ("receipt", "data.share", True)
    finally:
        await agent.close()
    world.transport.losing = False
    world.clock.now += 8 * DAY_MS  # past both messages' lifetime, 7 days (§4.5-3)
    again = await world.agent()
    try:
        run = await again.retry_waiting()
        dropped, gone, fresh = run.deliveries
        assert (dropped.msg_id, dropped.type, dropped.status) == (owed.msg_id, "receipt",
                                                                 "dropped")
        assert "expired" in str(dropped.error)
        assert (gone.msg_id, gone.type, gone.status) == (behind.msg_id, "data.share", "dropped")
        assert "left our chain with it (§8.1-5)" in str(gone.error)
        assert (fresh.type, fresh.status) == ("receipt", "confirmed")
        assert fresh.msg_id != owed.msg_id
        assert await again.waiting() == []
        assert await notes(again) == {"1": "confirmed", "2": "dropped"}
        assert (await share(again, thread, "3")).confirmed
        ours = await world.same_history(again, thread)
        assert owed.msg_hash not in ours
        assert behind.msg_hash not in ours
        assert fresh.msg_hash in ours
        assert not await world.store.save_points(thread)  # each closed with its item
    finally:
        await again.close()


async def answered_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vendor answers an intentcast with two offers in one response: two receipts owed."""
    once = _replies.REPLIES[Intentcast]

    async def twice(ep: Endpoint, step: Step, msg: Signed[Any], now: int) -> None:
        await once(ep, step, msg, now)
        await once(ep, step, msg, now)

    monkeypatch.setitem(_replies.REPLIES, Intentcast, twice)


@pytest.mark.parametrize("through", [0, 1])
async def test_several_expired_receipts_are_signed_afresh(
    world: World, monkeypatch: pytest.MonkeyPatch, through: int
) -> None:
    """Two receipts signed in one Commit, each with its save point: with ``through=1`` the
    first was delivered and only the second expires, and only the second is signed again."""
    await answered_twice(monkeypatch)
    agent = await world.agent()
    try:
        world.transport.losing, world.transport.through = True, through
        result = await agent.intentcast("a bike", vendors=[URL], deadline_ms=60_000)
        assert len(result.offers) == 2
        owed = await agent.waiting()
        assert [w.type for w in owed] == ["receipt"] * (2 - through)
        thread = owed[0].thread
    finally:
        await agent.close()
    world.transport.losing = False
    world.clock.now += 8 * DAY_MS
    again = await world.agent()
    try:
        run = await again.retry_waiting()
        assert [(d.type, d.status) for d in run.deliveries] == (
            [("receipt", "dropped")] * len(owed) + [("receipt", "confirmed")] * len(owed))
        assert [d.msg_id for d in run.deliveries[: len(owed)]] == [w.msg_id for w in owed]
        assert await again.waiting() == []
        ours = await world.same_history(again, thread)
        assert not {w.msg_hash for w in owed} & set(ours)
        assert len(ours) == 6  # the intentcast, its receipt, two offers, our two receipts
        assert not await world.store.save_points(thread)
    finally:
        await again.close()


class ReceiptsRefused(ReceiptsLost):
    """Refuses every receipt of ours with a final problem while ``refusing``."""

    refusing = False

    async def post_envelope(self, inbox_url: str, envelope: bytes, **kw: Any) -> list[bytes]:
        header = own_header(envelope)
        if self.refusing and header is not None and header.type == "receipt":
            raise PeerProblemError("invalid_field", "no such message to acknowledge")
        return await super().post_envelope(inbox_url, envelope, **kw)


async def test_a_refused_receipt_leaves_the_chain_and_is_not_signed_again() -> None:
    """A final refusal takes the receipt back out (§8.1-5) and is the vendor's last word: no
    fresh receipt goes after it (it could be refused again, and again)."""
    clock = Clock()
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme",
                      clock=clock)  # fmt: skip
    transport = ReceiptsRefused(clock=clock)
    transport.add(URL, vendor)
    world = World(clock, transport, vendor, MemoryStore(), os.urandom(32))
    agent = await world.agent()
    try:
        thread = (await agent.connect(URL)).thread
        assert (await share(agent, thread, "1")).confirmed
        transport.refusing = True
        assert (await agent.withdraw(thread)).confirmed
        assert await agent.waiting() == []
        transport.refusing = False
        assert (await share(agent, thread, "2")).confirmed
        await world.same_history(agent, thread)
        sent = [own_header(e.envelope) for e in await agent.history(thread) if e.outgoing]
        assert [h.type if h is not None else "" for h in sent] == [
            "terms.offer", "receipt", "data.share", "data.withdraw", "data.share"]
    finally:
        await agent.close()
