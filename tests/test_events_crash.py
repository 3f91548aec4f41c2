"""Webhook delivery survives SIGKILL (issue 14): ``vrm vendor serve`` with a ``[[webhooks]]``
receiver, killed three times while customers keep sending and the feed is being delivered, and
started again on the same data directory. Afterwards the receiver has every event of the feed
(none lost), each relationship's in order, and a duplicate only of an event the killed process
had not recorded as delivered (its position after the webhook's cursor at the kill).
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, post
from aiohttp import web
from standardwebhooks import Webhook as ReferenceWebhook

from vrmproto import Identity, Signed

VENDOR = Identity(VENDOR_SEED)
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
CUSTOMERS = 10
KILL_AFTER = (30, 70, 110)  # distinct events received before each kill
SHARES = 14  # per customer: 15 messages each, 150 in all, 160 events with the terms.accepts

pytestmark = pytest.mark.slow


class Receiver:
    """Records every delivery: (webhook-id, feed position, relationship, seq), in arrival order."""

    def __init__(self) -> None:
        self.got: list[tuple[str, int, str, int]] = []
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        self.changed = asyncio.Condition()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            data = json.loads(body)["data"]
            async with self.changed:
                self.bodies.append((dict(request.headers), body))
                self.got.append((data["id"], data["pos"], data["relationship"], data["seq"]))
                self.changed.notify_all()
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"

    def distinct(self) -> int:
        return len({g[0] for g in self.got})

    async def until(self, count: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.distinct() >= count)


class Vendor:
    """``vrm vendor serve`` in a subprocess on one data directory, killed and started again."""

    def __init__(self, config: Path, data: Path) -> None:
        self.config, self.data = config, data
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.generation = 0
        self.changed = asyncio.Condition()
        self.drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vrmproto.cli", "vendor", "serve", "--config", str(self.config),
            "--data-dir", str(self.data), "--json", "--port", "0",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            assert line, "the vendor process did not start"
            record = json.loads(line)
            if record.get("event") == "listening":
                break
        self.drain = asyncio.create_task(self._drain(self.proc.stdout))
        async with self.changed:
            self.url = f"http://127.0.0.1:{record['port']}"
            self.generation += 1
            self.changed.notify_all()

    @staticmethod
    async def _drain(stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    async def kill(self) -> int:
        """SIGKILL; the webhook's durable cursor as the killed process left it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL
        if self.drain is not None:
            await self.drain
        return cursor(self.data / "vendor.db")

    async def restarted_since(self, generation: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.generation > generation)


def cursor(db: Path) -> int:
    conn = sqlite3.connect(db)  # recovers the WAL of a killed process
    try:
        row = conn.execute("SELECT pos FROM event_cursors WHERE name = 'crm'").fetchone()
        return 0 if row is None else int(row[0])
    finally:
        conn.close()


def feed(db: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(db)
    try:
        return [(r[0], r[1]) for r in conn.execute("SELECT id, pos FROM events ORDER BY pos")]
    finally:
        conn.close()


async def deliver(vendor: Vendor, session: aiohttp.ClientSession, c: Customer,
                  msg: Signed[Any]) -> None:  # fmt: skip
    """The same bytes until a receipt comes back (§12.6-5)."""
    while True:
        generation = vendor.generation
        try:
            reply = await post(session, vendor.url + "/vrm/inbox", msg.envelope)
        except (aiohttp.ClientError, ConnectionError):
            await vendor.restarted_since(generation)
            continue
        c.absorb(reply, msg)
        return


async def test_webhook_delivery_survives_sigkill_without_loss(tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    config = tmp_path / "vendor.toml"
    config.write_text(
        f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\n'
        f"accepts_terms = {json.dumps(list(ACCEPTED))}\n"
        f'[[webhooks]]\nname = "crm"\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n'
    )
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    vendor = Vendor(config, data)
    await vendor.start()
    # (deliveries received when the next process had started, the webhook's cursor at the kill)
    kills: list[tuple[int, int]] = []

    async def customer_life(session: aiohttp.ClientSession, c: Customer) -> None:
        for step in range(SHARES + 1):
            msg = c.offer(*ACCEPTED) if step == 0 else c.share({"n": str(step)})
            await deliver(vendor, session, c, msg)

    async def killer() -> None:
        for threshold in KILL_AFTER:
            await receiver.until(threshold)
            at_kill = await vendor.kill()
            await vendor.start()
            kills.append((len(receiver.got), at_kill))

    customers = [Customer(VENDOR) for _ in range(CUSTOMERS)]
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(killer(), *(customer_life(session, c) for c in customers))
    events = feed(data / "vendor.db")
    assert len(events) == CUSTOMERS * (SHARES + 2)
    await asyncio.wait_for(receiver.until(len(events)), 60)
    await vendor.kill()
    await receiver.runner.cleanup() if receiver.runner else None

    # none lost, every one signed as Standard Webhooks says
    assert {g[0] for g in receiver.got} == {i for i, _ in events}
    ref = ReferenceWebhook(SECRET)
    for headers, body in receiver.bodies:
        ref.verify(body, headers)
    # A process started after a kill re-delivers only what the killed one had not recorded as
    # acknowledged: events after the cursor it left. (A request the killed process had sent
    # may still reach the receiver after the kill: it was never acknowledged to the vendor.)
    seen: dict[str, int] = {}
    for n, (event_id, pos, _, _) in enumerate(receiver.got):
        if event_id not in seen:
            seen[event_id] = n
            continue
        starts = [(start, c) for start, c in kills if start <= n]
        if starts and seen[event_id] < starts[-1][0]:  # first sent by an earlier process
            assert pos > starts[-1][1], f"{event_id} re-sent though recorded as delivered"
    # each relationship's events first arrived in order
    firsts = sorted(seen.items(), key=lambda item: item[1])
    by_id = {g[0]: g for g in receiver.got}
    for c in customers:
        seqs = [by_id[i][3] for i, _ in firsts if by_id[i][2] == c.thread.hex()]
        assert seqs == sorted(seqs)
        assert len(seqs) == SHARES + 2
    assert len(kills) == 3
