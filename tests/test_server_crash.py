"""Receipt only after commit (spec §12.7): a vendor process killed with SIGKILL mid-load loses
nothing it acknowledged, and stores nothing twice when the client delivers again (§12.6).

The vendor runs in a subprocess (tests/_vendor_proc.py) on a SQLite file. Several customers
deliver offers and shares concurrently; the test kills the process three times while messages
are in flight and starts it again on the same file; customers deliver every unacknowledged
message again, byte for byte, until it has a verified receipt. After a last kill, the file must
hold every acknowledged message exactly once, and each thread's history must be the customer's.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, post

from vrmproto import Identity, Signed

HERE = Path(__file__).resolve().parent
VENDOR = Identity(VENDOR_SEED)
CUSTOMERS = 8
SHARES = 6
KILL_AFTER = (10, 25, 40)  # receipts seen before each kill


class Vendor:
    """The vendor subprocess: started, killed and started again on one database file."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.generation = 0
        self.interrupted = 0  # deliveries cut off by a kill, delivered again
        self.changed = asyncio.Condition()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "_vendor_proc.py"), str(self.db), VENDOR_SEED.hex(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        assert line, "the vendor process did not start"
        async with self.changed:
            self.url = f"http://127.0.0.1:{int(line)}"
            self.generation += 1
            self.changed.notify_all()

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL

    async def restarted_since(self, generation: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.generation > generation)


async def deliver_until_receipted(
    vendor: Vendor, session: aiohttp.ClientSession, c: Customer, msg: Signed[Any]
) -> None:
    """Deliver the same bytes until a verified receipt comes back (§12.6-5)."""
    while True:
        generation = vendor.generation
        try:
            reply = await post(session, vendor.url + "/vrm/inbox", msg.envelope)
        except (aiohttp.ClientError, ConnectionError):
            vendor.interrupted += 1
            await vendor.restarted_since(generation)  # the process died: wait for the next one
            continue
        c.absorb(reply, msg)  # checks the receipt: addressed to us, acknowledging msg
        return


async def test_acknowledged_messages_survive_sigkill(tmp_path: Path) -> None:
    vendor = Vendor(tmp_path / "vendor.db")
    await vendor.start()
    acknowledged: list[bytes] = []
    receipts = asyncio.Condition()

    async def customer_life(session: aiohttp.ClientSession, c: Customer) -> None:
        for step in range(SHARES + 1):
            msg = c.offer(*ACCEPTED) if step == 0 else c.share({"email": f"c{step}@example.org"})
            await deliver_until_receipted(vendor, session, c, msg)
            async with receipts:
                acknowledged.append(msg.hash)
                receipts.notify_all()

    async def killer() -> None:
        for threshold in KILL_AFTER:
            async with receipts:
                await receipts.wait_for(lambda: len(acknowledged) >= threshold)  # noqa: B023
            await vendor.kill()
            await vendor.start()

    customers = [Customer(VENDOR) for _ in range(CUSTOMERS)]
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(killer(), *(customer_life(session, c) for c in customers))
    await vendor.kill()
    assert vendor.generation == len(KILL_AFTER) + 1
    assert vendor.interrupted > 0  # deliveries were cut off by the kills and delivered again

    db = sqlite3.connect(vendor.db)  # recovers the WAL of the killed process
    try:
        rows = db.execute("SELECT thread, idx, msg_hash, direction FROM history").fetchall()
        stored = {bytes(r[2]) for r in rows}
        assert set(acknowledged) <= stored
        assert len(acknowledged) == CUSTOMERS * (SHARES + 1)
        # Nothing twice: one row per message, one dedupe record per accepted message.
        assert len(rows) == len({(bytes(r[0]), bytes(r[2])) for r in rows})
        incoming = [r for r in rows if r[3] == "in"]
        assert len(incoming) == len(acknowledged)
        (dedupe,) = db.execute("SELECT count(*) FROM dedupe").fetchone()
        assert dedupe == len(acknowledged)
        for c in customers:
            theirs = db.execute(
                "SELECT idx, msg_hash FROM history WHERE thread = ? ORDER BY idx", (c.thread,)
            ).fetchall()
            assert [i for i, _ in theirs] == list(range(len(theirs)))
            assert [bytes(h) for _, h in theirs] == [e.msg_hash for e in c.rel.history.entries()]
            (state,) = db.execute(
                "SELECT state FROM relationships WHERE thread = ?", (c.thread,)
            ).fetchone()
            assert state == "agreed"
    finally:
        db.close()
