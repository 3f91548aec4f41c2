"""Lifetimes shorter than a message's stay in the outbox (found by
``tests/test_hunt_s12_stateful.py``).

A message of ours is valid for the vendor's published ``max_lifetime_ms`` (7 days), so that it
can wait in the outbox through a weekend with the vendor down. Two things of one day spoiled that:

- a ``key.rotate`` was signed by :meth:`Relationship.rotate`, which took no lifetime and signed
  with ``DEFAULT_LIFETIME_MS`` (one day): a rotation queued while the vendor was down for two
  days was dropped as expired, where a share queued beside it went. The draft now passes the
  thread's lifetime;
- the vendor signs its receipts and replies for one day (``DEFAULT_LIFETIME_MS``) and answers a
  repeated delivery with the recorded response byte for byte (§12.6-2). Once that day is over,
  the receipt in it no longer verifies (§4.5-3, §12.3-6), so a message whose first answer was
  lost could not be confirmed until it expired. The agent now asks the vendor's history when
  such an answer cannot be used (§8.1-8), and adopts the message's receipt from it.
"""

from __future__ import annotations

import os
from typing import Any

from _agent_clock import DAY_MS, FIELDS, T0, URL, Clock

from vrmproto import Identity, Money
from vrmproto.client import DEFAULT_TERMS, Agent, Delivery, Unreachable
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport


class Network(MemoryTransport):
    """Down while ``down``; while ``losing``, the vendor stores each message and its answer is
    lost on the way back."""

    down = False
    losing = False

    async def post_envelope(self, inbox_url: str, envelope: bytes, **kw: Any) -> list[bytes]:
        if self.down:
            raise Unreachable(f"{inbox_url}: connection refused")
        out = await super().post_envelope(inbox_url, envelope, **kw)
        if self.losing:
            raise Unreachable(f"{inbox_url}: connection reset by peer")
        return out


async def world() -> tuple[Clock, Network, Agent, bytes]:
    clock = Clock()
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme",
                             catalogue=(CatalogueItem("a bike", ("bike",), Money(100, "USD")),))
    ep = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme",
                  clock=clock)  # fmt: skip
    net = Network(clock=clock)
    net.add(URL, ep)
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=net, clock=clock)
    thread = (await agent.connect(URL)).thread
    return clock, net, agent, thread


async def share(agent: Agent, thread: bytes) -> Delivery:
    return await agent.share(thread, FIELDS, purposes=["delivery"], categories=["contact"],
                             expires_ms=T0 + 365 * DAY_MS)  # fmt: skip


async def test_a_rotation_waits_in_the_outbox_as_long_as_a_share() -> None:
    clock, net, agent, thread = await world()
    try:
        net.down = True  # the vendor is down for the weekend
        assert (await agent.rotate_key(thread)).status == "queued"
        clock.now += 2 * DAY_MS
        net.down = False
        (d,) = (await agent.retry_waiting()).deliveries
        assert (d.type, d.status) == ("key.rotate", "confirmed"), d.error  # actual: dropped
    finally:
        await agent.close()


async def test_a_message_whose_answer_was_lost_is_confirmed_days_later() -> None:
    clock, net, agent, thread = await world()
    try:
        net.losing = True
        lost = await share(agent, thread)
        assert lost.status == "queued"  # the vendor stored it; its answer was lost
        net.losing = False
        clock.now += 2 * DAY_MS  # well within the share's own lifetime (7 days)
        (d,) = (await agent.retry_waiting()).deliveries
        assert d.status == "confirmed", d.error  # actual: queued, "the receipt does not verify"
    finally:
        await agent.close()
