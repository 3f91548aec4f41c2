"""What became of a message that waited is told to whoever sends it on its way.

A call that delivers a relationship's queue (a share behind an undelivered one, an address
update's fan-out) reports the earlier messages it delivered or gave up as
:attr:`Delivery.earlier`; before, a queued share that expired on the way was reported only in
``last_problem``, and it stayed in our chain, so every later message was refused with
``chain_broken`` (a receipt of ours too: it leaves, and a fresh one is signed in its place,
see ``tests/test_agent_receipt_expiry.py``). And a share's note (§5.3.1) follows its share to
the end: confirmed when the vendor's receipt is in, whichever agent delivered it, dropped when
it was given up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from _agent_clock import DAY_MS, FIELDS, T0, URL, Clock, ReceiptsLost

from vrmproto import Identity
from vrmproto.cli._cmd_data import earlier_json, earlier_lines
from vrmproto.client import DEFAULT_TERMS, Agent, Delivery, Records
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport


@dataclass
class World:
    clock: Clock
    transport: MemoryTransport
    vendor: Endpoint
    store: MemoryStore
    seed: bytes

    async def agent(self) -> Agent:
        return await Agent.open(self.store, self.seed, client=self.transport, clock=self.clock)

    def down(self) -> None:
        self.transport.remove(URL)

    def up(self) -> None:
        self.transport.add(URL, self.vendor)


@pytest.fixture
def world() -> World:
    clock = Clock()
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme",
                      clock=clock)  # fmt: skip
    w = World(clock, MemoryTransport(clock=clock), vendor, MemoryStore(), os.urandom(32))
    w.up()
    return w


async def share(agent: Agent, thread: bytes, n: str) -> Delivery:
    return await agent.share(thread, {**FIELDS, "n": n}, purposes=["delivery"],
                             categories=["contact"], expires_ms=T0 + 365 * DAY_MS)  # fmt: skip


async def notes(agent: Agent) -> dict[str, str]:
    return {dict(n.fields)["n"]: n.status for n in await agent.share_notes()}


async def test_a_queued_share_that_expired_on_the_way_is_reported_with_the_next_one(
    world: World,
) -> None:
    agent = await world.agent()
    try:
        thread = (await agent.connect(URL)).thread
        world.down()
        first = await share(agent, thread, "1")
        assert first.status == "queued"
        assert first.type == "data.share"
        world.clock.now += 8 * DAY_MS  # past the queued share's lifetime, 7 days (§4.5-3)
        world.up()
        second = await share(agent, thread, "2")
        assert second.confirmed
        (gone,) = second.earlier
        assert (gone.msg_id, gone.msg_hash, gone.status, gone.type) == (
            first.msg_id, first.msg_hash, "dropped", "data.share")
        assert "expired" in str(gone.error)
        assert await notes(agent) == {"1": "dropped", "2": "confirmed"}
        # it left our chain as a refused message does (§8.1-5): what follows links and goes
        assert (await share(agent, thread, "3")).confirmed
        ours = [e.msg_hash for e in await agent.history(thread)]
        assert first.msg_hash not in ours
        assert second.msg_hash in ours
        assert earlier_json(second) == [{"type": "data.share", "msg_id": first.msg_id.hex(),
                                         "status": "dropped", "error": str(gone.error)}]
        (line,) = earlier_lines("Acme", second)
        assert "an earlier queued data.share was dropped" in line
    finally:
        await agent.close()


async def test_a_data_request_reports_the_queued_share_dropped_before_it(world: World) -> None:
    """``request_data`` returns records; they carry the request's delivery, whose ``earlier``
    says the queued share was dropped (found by test_agent_stateful's long profile: the
    person was told the share was queued, and never that it was given up)."""
    agent = await world.agent()
    try:
        thread = (await agent.connect(URL)).thread
        world.down()
        first = await share(agent, thread, "1")
        world.clock.now += 8 * DAY_MS
        world.up()
        records = await agent.request_data(thread)
        assert isinstance(records, Records)
        assert records.delivery.confirmed
        assert records.delivery.type == "data.request"
        assert [(d.msg_id, d.status) for d in records.delivery.earlier] == [
            (first.msg_id, "dropped")]
        (line,) = earlier_lines("Acme", records.delivery)
        assert "an earlier queued data.share was dropped" in line
        assert records == ()  # the vendor holds nothing of ours: the share never arrived
    finally:
        await agent.close()


async def test_an_address_update_reports_the_share_that_went_before_it(world: World) -> None:
    agent = await world.agent()
    try:
        thread = (await agent.connect(URL)).thread
        world.down()
        first = await share(agent, thread, "1")
        world.up()
        report = await agent.update_address({"city": "Paris"})
        (result,) = report.results
        assert result.delivery is not None
        assert result.delivery.confirmed
        assert result.delivery.type == "address.update"
        assert [(d.msg_id, d.status) for d in result.delivery.earlier] == [
            (first.msg_id, "confirmed")]
        assert earlier_lines("Acme", result.delivery) == []  # nothing to warn of
        assert await notes(agent) == {"1": "confirmed"}
    finally:
        await agent.close()


async def test_a_share_delivered_by_another_agent_gets_its_note_confirmed(world: World) -> None:
    first_agent = await world.agent()
    try:
        thread = (await first_agent.connect(URL)).thread
        world.down()
        assert (await share(first_agent, thread, "1")).status == "queued"
    finally:
        await first_agent.close()
    world.up()
    second_agent = await world.agent()  # a restart, or `vrm outbox run` beside `vrm agent serve`
    try:
        run = await second_agent.retry_waiting()
        assert run.counts()["confirmed"] == 1
        assert await notes(second_agent) == {"1": "confirmed"}
    finally:
        await second_agent.close()


async def test_a_share_dropped_by_the_person_has_its_note_say_so(world: World) -> None:
    agent = await world.agent()
    try:
        thread = (await agent.connect(URL)).thread
        world.down()
        queued = await share(agent, thread, "1")
        dropped = await agent.drop_waiting(queued.msg_id.hex())
        assert (dropped.status, dropped.type) == ("dropped", "data.share")
        assert await notes(agent) == {"1": "dropped"}
    finally:
        await agent.close()


async def test_a_queued_receipt_of_ours_that_expired_leaves_the_chain_too() -> None:
    clock = Clock()
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme",
                      clock=clock)  # fmt: skip
    transport = ReceiptsLost(clock=clock)
    transport.add(URL, vendor)
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport, clock=clock)
    try:
        thread = (await agent.connect(URL)).thread
        assert (await share(agent, thread, "1")).confirmed
        transport.losing = True
        withdrawn = await agent.withdraw(thread)  # answered with data.erased: we owe a receipt
        assert withdrawn.confirmed
        (owed,) = await agent.waiting()
        assert owed.type == "receipt"
        transport.losing = False
        clock.now += 8 * DAY_MS
        after = await share(agent, thread, "2")
        assert after.confirmed, after.error
        # the receipt is still owed (§5.6.1-2): a fresh one went in its place, before the share
        dropped, fresh = after.earlier
        assert [(e.type, e.status) for e in after.earlier] == [
            ("receipt", "dropped"), ("receipt", "confirmed")]
        assert (dropped.msg_id, dropped.msg_hash) == (owed.msg_id, owed.msg_hash)
        assert fresh.msg_id != owed.msg_id
        assert (await share(agent, thread, "3")).confirmed
        ours = [e.msg_hash for e in await agent.history(thread)]
        assert owed.msg_hash not in ours
        assert ours == [h.msg_hash for h in await vendor.store.history(thread)]
    finally:
        await agent.close()
