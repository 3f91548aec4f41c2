"""Fan-out to many vendors at once, and the outbox that catches what could not be sent (§12).

The acceptance line of the transport issue: an address update to 200 vendor endpoints, each
answering 50 ms late, goes to them in parallel; one vendor that is down is queued durably and
gets its update from the outbox run once it is back. How long the fan-out takes is measured by
``bench/inbox.py`` (``fanout_parallel_s`` against ``fanout_serial_s``), not asserted here: a
test asserts that the requests overlapped, which holds on a loaded machine too.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from test_client import FakeVendor, Gauge, ServerVendor

from vrmproto import AddressUpdate, FieldsContent
from vrmproto.client import Agent, ProgressEvent, RetryPolicy, fan_out
from vrmproto.client._fanout import Target
from vrmproto.client._outbox import Delivery
from vrmproto.store import MemoryStore, SQLiteStore

NEW_ADDRESS = {"street": "1 Main St", "city": "Springfield", "postcode": "12345"}


def clock() -> int:
    return time.time_ns() // 1_000_000


async def test_address_update_to_200_vendors_in_parallel(tmp_path: Path) -> None:
    """Against 200 reference vendor endpoints (vrmproto.server), each 50 ms late."""
    vendors = [ServerVendor(f"Vendor {i:03d}", delay_s=0.05) for i in range(200)]
    gauge = Gauge()
    await asyncio.gather(*(v.start() for v in vendors))
    store = await SQLiteStore.open(tmp_path / "agent.db")
    agent = await Agent.open(store, os.urandom(32))
    try:
        connected = await asyncio.gather(*(agent.connect(v.url) for v in vendors))
        assert {c.status for c in connected} == {"accepted"}
        by_url = {c.url: (c.thread, v) for c, v in zip(connected, vendors, strict=True)}

        down = vendors[117]
        await down.stop()
        events: list[ProgressEvent] = []
        for v in vendors:
            v.gauge = gauge

        t0 = time.perf_counter()
        report = await agent.update_address(NEW_ADDRESS, progress=events.append)
        wall = time.perf_counter() - t0

        assert gauge.peak >= 16, f"at most {gauge.peak} vendors were sent to at once"
        assert report.elapsed_s <= wall
        assert report.counts() == {"confirmed": 199, "queued": 1, "refused": 0, "failed": 0}
        assert [r.url for r in report.queued] == [down.url]
        for r in report.confirmed:
            thread, vendor = by_url[r.url]
            d = r.delivery
            assert d is not None
            assert d.receipt is not None
            assert d.receipt.body.ack == d.msg_hash  # a verified receipt for exactly this
            assert d.receipt.sender == vendor.key
            assert r.thread == thread
        assert sum(e.stage == "started" for e in events) == 200
        assert sum(e.stage == "confirmed" for e in events) == 199
        assert [e.url for e in events if e.stage == "queued"] == [down.url]

        waiting = await agent.pending()
        assert [w.thread for w in waiting] == [by_url[down.url][0]]

        await down.start(port=down.port)  # back up, same address
        run = await agent.run_outbox(now=clock() + 3_600_000)
        assert run.counts() == {"confirmed": 1, "queued": 0, "refused": 0, "dropped": 0}
        (d,) = run.deliveries
        assert d.receipt is not None
        assert d.receipt.body.ack == d.msg_hash
        assert d.receipt.sender == down.key
        assert await agent.pending() == []

        for thread, vendor in by_url.values():
            updates = await vendor.heard("address.update")
            assert len(updates) == 1, vendor.name
            assert updates[0].content == FieldsContent(fields=NEW_ADDRESS)
            assert (await vendor.types(thread)).count("address.update") == 1
        (view,) = [v for v in await agent.relationships() if v.url == down.url]
        assert view.pending == 0
        assert await agent.compare_history(by_url[down.url][0]) is None
    finally:
        await agent.close()
        await store.close()
        await asyncio.gather(*(v.stop() for v in vendors))


async def test_concurrency_is_bounded() -> None:
    gauge = Gauge()
    vendors = [FakeVendor(f"V{i}", delay_s=0.01) for i in range(24)]
    for v in vendors:
        v.gauge = gauge
    await asyncio.gather(*(v.start() for v in vendors))
    agent = await Agent.open(MemoryStore(), os.urandom(32))
    try:
        await asyncio.gather(*(agent.connect(v.url) for v in vendors))
        gauge.peak = 0
        report = await agent.update_address(NEW_ADDRESS, concurrency=5)
        assert len(report.confirmed) == 24
        assert 1 < gauge.peak <= 5
    finally:
        await agent.close()
        await asyncio.gather(*(v.stop() for v in vendors))


async def test_queued_messages_of_a_thread_are_delivered_in_order() -> None:
    vendor = FakeVendor("Acme")
    await vendor.start()
    agent = await Agent.open(MemoryStore(), os.urandom(32),
                             fanout_retry=RetryPolicy(attempts=1))
    try:
        c = await agent.connect(vendor.url)
        await vendor.stop()
        first = await agent.update_address({"city": "Paris"})
        second = await agent.update_address({"city": "Lyon"})
        assert [r.status for r in (*first.results, *second.results)] == ["queued", "queued"]
        # one message in flight per thread: the second waits as a draft, not yet signed, so
        # both sides will log message, receipt, message, receipt (§8.2)
        assert len(await agent.pending()) == 1
        (view,) = await agent.relationships()
        assert view.pending == 2
        await vendor.start(port=vendor.port)
        run = await agent.run_outbox(now=clock() + 3_600_000)
        assert [d.status for d in run.deliveries] == ["confirmed", "confirmed"]
        got = [r.content for r in vendor.received if isinstance(r.message.body, AddressUpdate)]
        assert got == [FieldsContent(fields={"city": "Paris"}),
                       FieldsContent(fields={"city": "Lyon"})]
        assert vendor.types(c.thread) == ["terms.offer", "receipt", "terms.accept", "receipt",
                                          "address.update", "receipt",
                                          "address.update", "receipt"]
        assert await agent.compare_history(c.thread) is None
    finally:
        await agent.close()
        await vendor.stop()


async def test_a_new_message_queues_behind_undelivered_ones() -> None:
    vendor = FakeVendor("Acme")
    await vendor.start()
    agent = await Agent.open(MemoryStore(), os.urandom(32),
                             fanout_retry=RetryPolicy(attempts=1))
    try:
        c = await agent.connect(vendor.url)
        await vendor.stop()
        assert (await agent.update_address({"city": "Paris"})).queued
        await vendor.start(port=vendor.port)
        # the vendor is back: a new message first flushes the thread's queue, in order
        report = await agent.update_address({"city": "Lyon"})
        assert len(report.confirmed) == 1
        assert await agent.pending() == []
        got = [r.content for r in vendor.received if isinstance(r.message.body, AddressUpdate)]
        assert got == [FieldsContent(fields={"city": "Paris"}),
                       FieldsContent(fields={"city": "Lyon"})]
        assert await agent.compare_history(c.thread) is None
    finally:
        await agent.close()
        await vendor.stop()


async def test_fan_out_reports_local_failures_per_vendor() -> None:
    async def job(n: int) -> Delivery:
        if n == 2:
            raise LookupError("no such vendor")
        return Delivery(bytes(16), bytes(16), bytes(32), "confirmed")

    targets = [(Target(f"v{n}", f"http://v{n}"), n) for n in range(4)]
    report = await fan_out(targets, job, concurrency=2)
    assert [r.status for r in report.results] == ["confirmed", "confirmed", "failed",
                                                  "confirmed"]
    assert "no such vendor" in report.results[2].detail

