"""`vrm agent serve` and a `vrm` command on one data directory take turns on a relationship
(issue 10 item 11, spec §11.11-2): a vendor's message to the agent endpoint waits while another
process holds the relationship's lock, and is handled once it is released."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from test_client import FakeVendor, now_ms

from vrmproto import MasterSeed, RelationshipEnd, open_envelope
from vrmproto.client import CustomerNode, EndpointClient, RetryPolicy
from vrmproto.client._ledger import LOCK_PREFIX
from vrmproto.client._paths import endpoint_path
from vrmproto.server import Server
from vrmproto.store import SQLiteStore


class _Waited(logging.Handler):
    """Sets ``event`` when the agent endpoint says a vendor's message waits for the lock."""

    def __init__(self, event: asyncio.Event) -> None:
        super().__init__(logging.INFO)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if "the vendor's message waits" in record.getMessage():
            self.event.set()


async def test_a_vendor_message_waits_while_another_process_holds_the_relationship(
    tmp_path: Path,
) -> None:
    seed = MasterSeed(os.urandom(32))
    store = await SQLiteStore.open(tmp_path / "agent.db")
    other = await SQLiteStore.open(tmp_path / "agent.db")  # as another vrm process would
    vendor = FakeVendor("Acme")
    await vendor.start()
    server: Server | None = None
    waited = asyncio.Event()
    handler = _Waited(waited)
    logger = logging.getLogger("vrmproto.agent")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    client = EndpointClient(retry=RetryPolicy(attempts=1))
    try:
        node = await CustomerNode.open(store, seed)
        thread = (await node.agent.connect(vendor.url)).thread
        server = await node.listen()  # as vrm agent serve does
        base = server.url
        doc = await client.fetch_discovery(base + endpoint_path(seed, thread), role="customer")
        end = vendor.threads[thread].send(RelationshipEnd(reason="closing"), now=now_ms(),
                                          msg_id=os.urandom(16))  # fmt: skip

        async with other.lock(LOCK_PREFIX + thread):  # a vrm command is sending here
            post = asyncio.create_task(client.post_envelope(doc.inbox, end.message.envelope))
            await asyncio.wait_for(waited.wait(), timeout=10)
            assert not post.done()
        replies = await asyncio.wait_for(post, timeout=10)
        assert open_envelope(replies[0], now=now_ms()).type == "receipt"
        record = next(r for r in await store.relationships() if r.thread == thread)
        assert record.state == "ended"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        await client.close()
        if server is not None:
            await node.close()
        await vendor.stop()
        await other.close()
        await store.close()
