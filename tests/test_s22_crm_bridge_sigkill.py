"""``vrm vendor tryton`` killed with SIGKILL mid-feed, then started again, applies every event
exactly once (session 22, a probe of docs/events.md "The cursor lives in Tryton").

Each event is applied in one Tryton transaction with its id and position, so a kill anywhere
costs no event and makes no duplicate: after the restart Tryton holds each of the feed's events
once — one party per relationship, each terms note once, each email once — and the bridge's
cursor in the vendor's store (``tryton:crm``, what retention keeps the feed for) reaches the
feed's newest event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer
from _vendor_proc import InProcessVendor as Vendor

from tests._tryton import skip_without_tryton, tryton_database
from vrmproto import Identity
from vrmproto.store import SQLiteStore

CUSTOMERS = 40  # three events each: opened, accepted, shared
KILL_AFTER = 25  # events the first run reported applied


async def feed(data: Path) -> list[str]:
    async with await SQLiteStore.open(data / "vendor.db") as store:
        v = Vendor(store)
        for i in range(CUSTOMERS):
            c = Customer(Identity(VENDOR_SEED))
            await v.deliver(c, c.offer(*ACCEPTED))
            await v.deliver(c, c.share({"email": f"c{i}@example.org"}))
        return [e.id for e in await store.events(0, 10 * CUSTOMERS)]


def tryton_rows(path: Path) -> tuple[list[str], list[str], list[str], int]:
    """The ids Tryton's bridge table holds, the notes' messages, the emails, the parties."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        ids = [r[0] for r in db.execute("SELECT id FROM vrmproto_crm_event")]
        notes = [r[0] for r in db.execute("SELECT message FROM ir_note")]
        emails = [r[0] for r in db.execute(
            "SELECT value FROM party_contact_mechanism WHERE type = 'email'")]  # fmt: skip
        (parties,) = db.execute(
            "SELECT count(*) FROM party_party WHERE code LIKE 'vrm-%'").fetchone()  # fmt: skip
    return ids, notes, emails, int(parties)


@pytest.fixture
def tryton(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with Tryton database ``crm``, a copy of the session's."""
    skip_without_tryton()
    tryton_database(tmp_path_factory, tmp_path / "tryton", "crm")
    return tmp_path / "tryton"


@pytest.mark.slow
async def test_a_bridge_killed_mid_feed_applies_each_event_once(
    tmp_path: Path, tryton: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    ids = await feed(data)
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\n[server]\n'
                      "feed_poll_s = 0.05\n", "utf-8")  # fmt: skip
    args = [sys.executable, "-m", "vrmproto.cli", "vendor", "tryton", "--config", str(config),
            "--data-dir", str(data), "--database", "crm", "--tryton-path", str(tryton),
            "--json"]  # fmt: skip
    first = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL,
                                                 stdout=asyncio.subprocess.PIPE)  # fmt: skip
    assert first.stdout is not None
    reported: list[str] = []
    while len(reported) < KILL_AFTER:
        line = await first.stdout.readline()
        assert line, "the bridge stopped before the kill"
        row = json.loads(line)
        assert row["applied"]
        reported.append(row["id"])
    first.send_signal(signal.SIGKILL)  # applying the next events
    assert await first.wait() == -signal.SIGKILL
    second = await asyncio.create_subprocess_exec(*args, "--once",
                                                  stdin=asyncio.subprocess.DEVNULL,
                                                  stdout=asyncio.subprocess.PIPE)  # fmt: skip
    out, _ = await second.communicate()
    assert second.returncode == 0, out
    rows = [json.loads(line) for line in out.splitlines()[:-1] if line.strip()]
    again = [r["id"] for r in rows if r["applied"]]
    assert not set(again) & set(reported)  # nothing reported applied is applied twice
    assert [r for r in rows if not r["applied"]] == []  # it resumed after its own cursor
    assert len(ids) == 3 * CUSTOMERS
    held, notes, emails, parties = tryton_rows(tryton / "crm.sqlite")
    assert sorted(held) == sorted(ids)  # every event, once (the id is the table's key)
    assert parties == CUSTOMERS
    assert len(notes) == len(set(notes)) == 2 * CUSTOMERS  # terms proffered, terms agreed
    assert sorted(emails) == sorted(f"c{i}@example.org" for i in range(CUSTOMERS))
    async with await SQLiteStore.open(data / "vendor.db") as store:
        assert await store.event_cursor("tryton:crm") == await store.feed_head()
