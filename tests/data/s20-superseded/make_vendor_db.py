"""Make ``vendor.db``: a vendor's SQLite store written by vrmproto as it was before session 20's
8bab3bf (schema 13), when a dropped share took out of the feed its own event's personal data and
the fields held under it, but not the values it had replaced. Run once, with that code first on
the path (its ``vrmproto`` and its ``tests``)::

    git archive 8bab3bf^ vrmproto tests | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old:/tmp/old/tests python tests/data/s20-superseded/make_vendor_db.py \\
        tests/data/s20-superseded

It writes ``vendor.db`` (one customer per scenario, every message at a fixed clock) and
``threads.json``: each scenario's thread id, the clock, and the values the old code left behind.
``tests/test_s21_store_superseded_upgrade.py`` reads both.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from _vendor_proc import DAY_MS, Customer
from test_s18_held_update import Vendor

from vrmproto._messages import DataWithdraw
from vrmproto.store import SQLiteStore

NOW = 1_767_225_600_000  # 2026-01-01
YEAR = NOW + 3650 * DAY_MS  # live shares outlive any reader of the fixture


async def main(out: Path) -> None:
    store = await SQLiteStore.open(out / "vendor.db")
    v = Vendor(store)
    v.now = NOW
    threads: dict[str, str] = {}

    async def customer(name: str) -> None:
        v.c = Customer(v.endpoint.identity)
        await v.agree()
        threads[name] = v.c.thread.hex()

    await customer("withdrawn")  # the update's phone was replaced by a share then withdrawn
    await v.update({"phone": "+1 801 555 0100", "city": "Lyon"})
    share = await v.share({"phone": "+1 801 555 0199"}, expires=YEAR)
    await v.send(DataWithdraw(agreement=v.agreement, shares=(share,)))

    await customer("earlier_share")  # a live share's email, replaced by a share withdrawn
    await v.share({"email": "old@example.org", "city": "Lyon"}, expires=YEAR)
    later = await v.share({"email": "a@example.org"}, expires=YEAR)
    await v.send(DataWithdraw(agreement=v.agreement, shares=(later,)))

    await customer("expired")  # the update's phone, replaced by a share that expired
    await v.update({"phone": "+1 801 555 0101"})
    await v.share({"phone": "+1 801 555 0198"}, expires=NOW + DAY_MS)
    v.now = NOW + DAY_MS
    assert await v.endpoint.expire_shares() == 1
    v.now = NOW

    await customer("held_again")  # replaced by a share withdrawn, then given again
    await v.update({"phone": "+1 801 555 0102"})
    share = await v.share({"phone": "+1 801 555 0197"}, expires=YEAR)
    await v.send(DataWithdraw(agreement=v.agreement, shares=(share,)))
    await v.update({"phone": "+1 801 555 0103"})

    await customer("still_held")  # nothing to take: the old city is replaced, never dropped
    await v.update({"city": "Paris"})
    await v.update({"city": "Lyon"})
    share = await v.share({"phone": "+1 801 555 0196"}, expires=YEAR)
    await v.send(DataWithdraw(agreement=v.agreement, shares=(share,)))

    await store.close()
    left = ["+1 801 555 0100", "old@example.org", "+1 801 555 0101", "+1 801 555 0102"]
    (out / "threads.json").write_text(json.dumps(
        {"now": NOW, "threads": threads, "superseded": left}, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
