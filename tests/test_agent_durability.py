"""The customer's agent keeps every message when several agents share one store, and when it
crashes in the middle of a fan-out (§11.11-2, §12.7-5; issue 10, items 11 and 12).

Several agents on one SQLite file are what two ``vrm`` processes on one data directory are: each
its own store object, its own cache, its own per-process locks. What keeps them apart is the
store's lock per relationship, and re-reading the relationship once it is held.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_client import FakeVendor, ServerVendor

from vrmproto import AddressUpdate, FieldsContent
from vrmproto.client import Agent, RetryPolicy, _outbox
from vrmproto.store import MemoryStore, SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
BUSY = "another vrm is working on this relationship"


def clock() -> int:
    return time.time_ns() // 1_000_000


class FirstPostHeld(FakeVendor):
    """A vendor that holds its first inbox request (once armed) until ``release`` is set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.armed = False
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def inbox(self, request: web.Request) -> web.Response:
        if self.armed:
            self.armed = False
            self.holding.set()
            await self.release.wait()
        return await super().inbox(request)


class Heard(logging.Handler):
    """Keeps the warnings logged under ``vrmproto``; sets ``event`` on one carrying ``words``."""

    def __init__(self, words: str) -> None:
        super().__init__(logging.WARNING)
        self.words = words
        self.event = asyncio.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if self.words in record.getMessage():
            self.event.set()


@pytest.fixture
def busy_log() -> Iterator[Heard]:
    heard = Heard(BUSY)
    logger = logging.getLogger("vrmproto")
    logger.addHandler(heard)
    try:
        yield heard
    finally:
        logger.removeHandler(heard)


def addresses(vendor: FakeVendor) -> list[dict[str, str]]:
    return [dict(r.content.fields) for r in vendor.received
            if isinstance(r.message.body, AddressUpdate) and isinstance(r.content, FieldsContent)]


@pytest.fixture(params=[False, True], ids=["writer", "inline"])
def inline(request: pytest.FixtureRequest) -> bool:
    """Commits on the store's writer thread, or on the event loop's thread (``inline=True``,
    as ``vrm`` opens an agent's store) and fsynced together."""
    return bool(request.param)


async def test_two_agents_on_one_store_take_turns_and_lose_nothing(
    tmp_path: Path, busy_log: Heard, inline: bool
) -> None:
    """Agent A delivers an address update and the vendor holds the request; agent B, on the same
    database file, updates the address too. B waits until A's step is over (and says so), then
    sends its own from what A stored: no raw "history index … is taken", no lost update."""
    vendor = FirstPostHeld("Acme")
    await vendor.start()
    seed = os.urandom(32)
    stores = [await SQLiteStore.open(tmp_path / "agent.db", inline=inline) for _ in range(3)]
    agents = [await Agent.open(s, seed, fanout_retry=RetryPolicy(attempts=1)) for s in stores]
    first, a, b = agents
    try:
        c = await first.connect(vendor.url)
        assert c.status == "accepted"

        vendor.armed = True
        task_a = asyncio.create_task(a.update_address({"city": "Paris"}))
        await vendor.holding.wait()  # A has stored its message and is delivering it
        task_b = asyncio.create_task(b.update_address({"city": "Lyon"}))
        # B waits for A's step and says so — or, where nothing makes it wait, runs to its end
        said_so = asyncio.create_task(busy_log.event.wait())
        await asyncio.wait([said_so, task_b], return_when=asyncio.FIRST_COMPLETED)
        said_so.cancel()
        vendor.release.set()
        report_a, report_b = await asyncio.wait_for(asyncio.gather(task_a, task_b), 10)

        for report in (report_a, report_b):
            assert report.failed == (), [r.detail for r in report.failed]
        assert report_a.counts()["confirmed"] == 1
        assert report_b.counts()["confirmed"] == 1
        assert any(BUSY in m for m in busy_log.messages)
        await first.run_outbox(now=clock() + 3_600_000)  # nothing should be left, but try
        assert await first.pending() == []
        assert addresses(vendor) == [{"city": "Paris"}, {"city": "Lyon"}]
        assert await first.compare_history(c.thread) is None
    finally:
        for agent in agents:
            await agent.close()
        for s in stores:
            await s.close()
        await vendor.stop()


async def test_four_agents_on_one_store_at_once_lose_no_update(
    tmp_path: Path, inline: bool
) -> None:
    """Four agents on one database file, each updating the address with three vendors at once,
    five times over: every update reaches every vendor, in one order that both sides logged,
    and none fails or is lost (as four concurrent `vrm address set` did, issue 10 item 11)."""
    vendors = [FakeVendor(f"V{i}") for i in range(3)]
    await asyncio.gather(*(v.start() for v in vendors))
    seed = os.urandom(32)
    stores = [await SQLiteStore.open(tmp_path / "agent.db", inline=inline) for _ in range(4)]
    agents = [await Agent.open(s, seed) for s in stores]
    try:
        connected = [await agents[0].connect(v.url) for v in vendors]
        sent: set[str] = set()
        for round_ in range(5):
            cities = [f"city {round_}.{n}" for n in range(len(agents))]
            reports = await asyncio.wait_for(asyncio.gather(*(
                agent.update_address({"city": city}) for agent, city in zip(agents, cities,
                                                                           strict=True)
            )), 20)
            sent.update(cities)
            for report in reports:
                assert report.failed == (), [r.detail for r in report.failed]
        await agents[0].run_outbox(now=clock() + 3_600_000)
        assert await agents[0].pending() == []
        for vendor, c in zip(vendors, connected, strict=True):
            got = [a["city"] for a in addresses(vendor)]
            assert sorted(got) == sorted(sent), vendor.name
            assert await agents[0].compare_history(c.thread) is None
    finally:
        for agent in agents:
            await agent.close()
        for s in stores:
            await s.close()
        await asyncio.gather(*(v.stop() for v in vendors))


# -- a crash in the middle of a fan-out (item 12) ---------------------------------------------

_CRASHING_FANOUT = textwrap.dedent("""
    import asyncio, os, signal, sys
    from vrmproto.client import Agent, EndpointClient
    from vrmproto.store import SQLiteStore

    class DiesAfterTheFirstSend(EndpointClient):
        async def post_envelope(self, *args, **kwargs):
            answer = await super().post_envelope(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)  # a crash, right after the first delivery
            return answer

    async def main() -> None:
        store = await SQLiteStore.open(sys.argv[1], inline=sys.argv[3] == "inline")
        client = DiesAfterTheFirstSend()
        agent = await Agent.open(store, bytes.fromhex(sys.argv[2]), client=client)
        await agent.update_address({"city": "Paris"}, concurrency=1)

    asyncio.run(main())
""")


async def test_a_crash_after_the_first_send_of_a_fan_out_leaves_the_rest_in_the_outbox(
    tmp_path: Path, inline: bool
) -> None:
    """A `vrm address set` process killed right after its first vendor got the update: the
    other five were queued before that first send, and the outbox delivers them."""
    vendors = [ServerVendor(f"Vendor {i}") for i in range(6)]
    await asyncio.gather(*(v.start() for v in vendors))
    seed = os.urandom(32)
    db = tmp_path / "agent.db"
    try:
        async with await SQLiteStore.open(db) as store:
            agent = await Agent.open(store, seed)
            threads = [(await agent.connect(v.url)).thread for v in vendors]
            await agent.close()

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CRASHING_FANOUT, str(db), seed.hex(),
            "inline" if inline else "writer", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == -signal.SIGKILL, err.decode()
        heard = [len(await v.heard("address.update")) for v in vendors]
        assert sorted(heard) == [0, 0, 0, 0, 0, 1]  # it died after exactly one delivery

        async with await SQLiteStore.open(db) as store:
            agent = await Agent.open(store, seed)
            assert {i.thread for i in await agent.pending()} >= {
                t for t, n in zip(threads, heard, strict=True) if n == 0}
            run = await agent.run_outbox(now=clock() + 3_600_000)
            assert run.counts()["confirmed"] >= 5
            assert await agent.pending() == []
            for vendor, thread in zip(vendors, threads, strict=True):
                (update,) = await vendor.heard("address.update")
                assert update.content == FieldsContent(fields={"city": "Paris"})
                assert await agent.compare_history(thread) is None
            await agent.close()
    finally:
        await asyncio.gather(*(v.stop() for v in vendors))


async def test_a_fan_out_larger_than_one_chunk_is_queued_whole_and_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The threads of a fan-out are locked and written a chunk at a time (each lock holds a
    file open); every chunk is stored before the first send, and every vendor gets its copy."""
    monkeypatch.setattr(_outbox, "ENQUEUE_CHUNK", 2)
    vendors = [FakeVendor(f"V{i}") for i in range(5)]
    await asyncio.gather(*(v.start() for v in vendors))
    agent = await Agent.open(MemoryStore(), os.urandom(32))
    try:
        for v in vendors:
            await agent.connect(v.url)
        posts_before = sum(v.inbox_posts for v in vendors)
        stored_before_first_send: list[int] = []
        deliver = agent.outbox.deliver

        async def first_look(*args: Any, **kwargs: Any) -> Any:
            if not stored_before_first_send:
                stored_before_first_send.append(len(await agent.pending()))
                assert sum(v.inbox_posts for v in vendors) == posts_before
            return await deliver(*args, **kwargs)

        monkeypatch.setattr(agent.outbox, "deliver", first_look)
        report = await agent.update_address({"city": "Paris"})
        assert report.counts()["confirmed"] == 5
        assert stored_before_first_send == [5]
        assert [addresses(v) for v in vendors] == [[{"city": "Paris"}]] * 5
    finally:
        await agent.close()
        await asyncio.gather(*(v.stop() for v in vendors))
