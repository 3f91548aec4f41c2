"""One answer applies at most ``MAX_REPLIES`` of the vendor's replies (§12.3-6).

Before: the agent applied every reply of a ``200`` answer, each costing a receipt of ours signed
with a save point of the whole relationship and queued (§5.6.1-2) — quadratic in the replies:
an intentcast answered with 6,000 ``intent.offer`` (well within the 4 MiB answer cap) took 13 s
and 700 MB, and the vendor got 6,000 receipts. Now the replies past ``MAX_REPLIES`` are not
applied, as those after a reply that breaks a rule, and the relationship says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from test_client import FakeVendor

from vrmproto import Money
from vrmproto._messages import Intentcast
from vrmproto._relationship import Relationship
from vrmproto.client import Agent, RetryPolicy
from vrmproto.client._delivery import MAX_REPLIES
from vrmproto.store import MemoryStore

FLOOD = MAX_REPLIES + 40


class FloodingVendor(FakeVendor):
    """Answers an intentcast with ``FLOOD`` offers, each a valid signed reply (§5.4.2)."""

    def _answer(self, rel: Relationship, msg: Any) -> list[Callable[[bytes], Any]]:
        body = msg.body
        if isinstance(body, Intentcast):
            return [lambda _: msg.offer("a bike", Money(100, "EUR"),
                                        valid_until=body.reply_by + 86_400_000)] * FLOOD
        return super()._answer(rel, msg)


async def test_an_intentcast_answered_with_a_flood_of_offers_applies_a_bounded_number() -> None:
    vendor = FloodingVendor("Acme", price=Money(100, "EUR"))
    await vendor.start()
    agent = await Agent.open(MemoryStore(), os.urandom(32), retry=RetryPolicy(attempts=1))
    try:
        result = await agent.intentcast("a bike", vendors=[vendor.url], deadline_ms=20_000)
        assert len(result.offers) == MAX_REPLIES
        # our receipts: for the replies applied only, each delivered (answered 204)
        assert vendor.inbox_posts == 1 + MAX_REPLIES
        assert await agent.pending() == []
        (record,) = await agent.relationships()
        assert f"more than {MAX_REPLIES} replies" in record.last_problem
        # what we stored is what we applied: the intentcast, the receipt, the replies and our
        # receipts for them, no more
        (thread,) = [r.thread for r in await agent.store.relationships(with_data=False)]
        assert len(await agent.store.history(thread)) == 2 + 2 * MAX_REPLIES
    finally:
        await agent.close()
        await vendor.stop()
