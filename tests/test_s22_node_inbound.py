"""The agent's inbound endpoint (§12.11) while the person's own messages are on their way
(session 22)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from test_client import FakeVendor, now_ms

from vrmproto import MasterSeed, RelationshipEnd, open_envelope
from vrmproto.client import CustomerNode, EndpointClient, RetryPolicy
from vrmproto.client._paths import endpoint_path
from vrmproto.store import MemoryStore


@dataclass
class Setup:
    seed: MasterSeed
    vendor: FakeVendor
    node: CustomerNode
    client: EndpointClient
    thread: bytes
    inbox: str


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    seed = MasterSeed(os.urandom(32))
    vendor = FakeVendor("Acme")
    await vendor.start()
    node = await CustomerNode.open(MemoryStore(), seed, retry=RetryPolicy(attempts=1))
    client = EndpointClient(retry=RetryPolicy(attempts=1))
    try:
        thread = (await node.agent.connect(vendor.url)).thread
        server = await node.listen()
        doc = await client.fetch_discovery(server.url + endpoint_path(seed, thread),
                                           role="customer")  # fmt: skip
        yield Setup(seed, vendor, node, client, thread, doc.inbox)
    finally:
        await client.close()
        await node.close()
        await vendor.stop()


async def test_a_vendor_ending_the_relationship_while_a_share_waits_is_not_forgotten(
    setup: Setup,
) -> None:
    """The vendor ends the relationship through the agent endpoint while the person's share
    waits in the outbox (the vendor was busy); the share, delivered next, is refused. The
    agent took the share back out of its history with everything logged after it — the
    vendor's signed ``relationship.end`` and our receipt for it, which the vendor holds — and
    the relationship read ``agreed`` again. A refusal drops a message only while nothing of
    the peer follows it (§8.1-6): the end and its receipt stay, the relationship is ended."""
    s = setup
    s.vendor.fail_next = [(503, {})]
    shared = await s.node.agent.share(s.thread, {"email": "doc@example.org"}, purposes=[1],
                                      categories=[1], expires_ms=now_ms() + 86_400_000)  # fmt: skip
    assert shared.status == "queued"
    end = s.vendor.threads[s.thread].send(RelationshipEnd(reason="closing"), now=now_ms(),
                                          msg_id=os.urandom(16))  # fmt: skip
    answer = await s.client.post_envelope(s.inbox, end.message.envelope)
    assert open_envelope(answer[0], now=now_ms()).type == "receipt"

    run = await s.node.agent.retry_waiting()
    assert [d.status for d in run.deliveries] == ["refused"]  # not allowed once ended

    hashes = [e.msg_hash for e in await s.node.agent.history(s.thread)]
    assert end.message.hash in hashes  # was taken out
    (view,) = await s.node.agent.relationships()
    assert view.state == "ended"  # was "agreed"
    assert await s.node.agent.waiting() == []
