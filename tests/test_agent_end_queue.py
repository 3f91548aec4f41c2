"""Nothing is queued behind a ``relationship.end`` (§5.6.4-1).

After an end, the only message either party may send in the thread is a receipt, so a draft
queued behind a queued end could never go: it was dropped when the end went, after the person
had been told it waits (found by the stateful test: vendor down, address update, end, address
update, vendor up). It is refused when asked for instead, and an address update's fan-out
names that relationship as failed.
"""

from __future__ import annotations

import os

import pytest

from vrmproto import Identity, StateError
from vrmproto.client import DEFAULT_TERMS, Agent
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport

URL = "http://acme.test"
FIELDS = {"email": "ada@example.org"}


async def test_a_draft_behind_a_queued_end_is_refused_and_nothing_told_queued_is_lost() -> None:
    transport = MemoryTransport()
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme")
    transport.add(URL, vendor)
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport)
    try:
        thread = (await agent.connect(URL)).thread
        transport.remove(URL)  # the vendor is down
        report = await agent.update_address({"city": "Paris"})
        (first,) = report.results
        assert first.delivery is not None
        assert first.delivery.status == "queued"
        ended = await agent.end(thread)  # a draft behind the address update
        assert ended.status == "queued"
        with pytest.raises(StateError, match=r"relationship\.end"):
            await agent.share(thread, FIELDS, purposes=["delivery"], categories=["contact"],
                              expires_ms=4_000_000_000_000)
        report = await agent.update_address({"city": "Lyon"})
        (second,) = report.results
        assert second.delivery is None
        assert second.error is not None
        told = {w.msg_id for w in await agent.waiting()}
        assert len(told) == 2  # the first address update and the end

        transport.add(URL, vendor)
        run = await agent.retry_waiting()
        assert {d.msg_id for d in run.deliveries if d.status == "confirmed"} == told
        assert [d for d in run.deliveries if d.status not in ("confirmed",)] == []
        assert await agent.waiting() == []
    finally:
        await agent.close()
