"""A message of ours the vendor accepted, whose answer we lost, outlives its lifetime in our
outbox (a laptop closed for a week right after the network dropped the receipt).

The agent cannot tell "never arrived" from "arrived, answer lost": both look the same from the
outbox. §8.1-7 lets it drop a message that expired *before the peer accepted it*; this one the
vendor had accepted. Dropping it takes it out of our chain while the vendor's chain holds it,
so the next message links to the message before it and the vendor refuses it — and every one
after it — with ``chain_broken`` (final), the relationship bricked as in session 11's bug, until
the person happens to run ``vrm history VENDOR --reconcile``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from _agent_clock import DAY_MS, FIELDS, T0, URL, Clock

from vrmproto import Identity, Money
from vrmproto.client import DEFAULT_TERMS, Agent, Unreachable
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport


class AnswersLost(MemoryTransport):
    """While ``losing``, the vendor gets and stores each message, and its answer is lost."""

    losing = False
    down = False

    async def post_envelope(self, inbox_url: str, envelope: bytes, **kw: Any) -> list[bytes]:
        if self.down:
            raise Unreachable(f"{inbox_url}: connection refused")
        out = await super().post_envelope(inbox_url, envelope, **kw)
        if self.losing:
            raise Unreachable(f"{inbox_url}: connection reset by peer")
        return out


def vendor(clock: Clock) -> Endpoint:
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme",
                             catalogue=(CatalogueItem("a bike", ("bike",), Money(100, "USD")),))
    return Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme",
                    clock=clock)  # fmt: skip


async def share(agent: Agent, thread: bytes, n: str) -> Any:
    return await agent.share(thread, {**FIELDS, "n": n}, purposes=["delivery"],
                             categories=["contact"], expires_ms=T0 + 365 * DAY_MS)  # fmt: skip


@pytest.mark.xfail(strict=True, reason="an expired outbox message the vendor had accepted (its "
                   "answer lost) is dropped from our chain: every later message chain_broken")
async def test_a_message_the_vendor_holds_is_not_dropped_when_it_expires() -> None:
    clock = Clock()
    ep = vendor(clock)
    transport = AnswersLost(clock=clock)
    transport.add(URL, ep)
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport, clock=clock)
    try:
        thread = (await agent.connect(URL)).thread
        assert (await share(agent, thread, "1")).confirmed
        transport.losing = True
        lost = await share(agent, thread, "2")
        assert lost.status == "queued"  # the vendor holds it; we never heard back
        assert lost.msg_hash in [h.msg_hash for h in await ep.store.history(thread)]
        transport.losing = False
        clock.now += 8 * DAY_MS  # the laptop stayed closed past the lifetime (7 days, §4.5-3)
        await agent.retry_waiting()
        third = await share(agent, thread, "3")
        assert third.confirmed, third.error  # actual: refused, chain_broken
        ours = [e.msg_hash for e in await agent.history(thread)]
        assert ours == [h.msg_hash for h in await ep.store.history(thread)]
    finally:
        await agent.close()
