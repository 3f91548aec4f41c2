"""Make the schema-v2 store files the migration test opens (``tests/data/v2/``).

They must be written by the code that wrote schema v2 — vrmproto at commit 25ceebf, the last
release before schema 3 — through its real public API: an :class:`~vrmproto.client.Agent` on
one SQLite file and a reference vendor (:class:`~vrmproto.server.Endpoint` with
:class:`~vrmproto.server.ReferencePolicy`) on another, talking HTTP on 127.0.0.1. Run it against
that tree::

    git archive 25ceebf | tar -x -C /tmp/vrm-v2
    PYTHONPATH=/tmp/vrm-v2 .venv/bin/python scripts/make_v2_fixtures.py tests/data/v2

It refuses to run on a tree whose store is not at schema 2. What it leaves:

- ``agent.db`` — the customer: a relationship agreed with "Acme" (with shares, a withdraw and
  an address update in its history), one countered by "Budget", an intentcast thread with
  "Acme", and one agreed with "Closed", a vendor that then went away: a data.share waits in the
  outbox (with its rollback point) and a second one waits behind it as a draft.
- ``vendor.db`` — the vendor "Acme": the customer data it holds from the shares and the
  address update (``held:``), and the point before its last replies (``rollback:``).
- ``intents.json`` and ``shares.json`` — the notes ``vrm intent`` and ``vrm share`` /
  ``vrm withdraw`` kept beside ``agent.db``, written by that release's ``Home`` in the shape
  its commands gave them (the intentcast with its offers; each share, one withdrawn, one
  still a draft).

The keys are fixed, so that a test can open the files with the identities that wrote them:
the customer's master seed is :func:`fixture_seed` ``("customer")``, a vendor's identity seed
:func:`fixture_seed` ``("vendor " + name)``. Message ids, threads and times are not.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from vrmproto import Identity, Money, TermRef, latest
from vrmproto._vocab import parse_category, parse_purpose
from vrmproto.cli._cmd_intent import offer_json, rank_offers
from vrmproto.cli._home import Home
from vrmproto.cli._output import money_json
from vrmproto.client import Agent, Delivery, IntentcastResult, RetryPolicy
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy, make_app
from vrmproto.store import SQLiteStore, Store
from vrmproto.store._sqlite import SCHEMA_VERSION

YEAR_MS = 365 * 24 * 3600 * 1000
NO_TRACKING = TermRef.of(latest("vrm.no-tracking"))


def fixture_seed(label: str) -> bytes:
    """The 32-byte seed of a fixture key: SHA-256 of ``"vrmproto v2 fixture: " + label``."""
    return hashlib.sha256(b"vrmproto v2 fixture: " + label.encode()).digest()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Vendor:
    """A reference vendor on 127.0.0.1, on its own store."""

    def __init__(self, name: str, store: Store, **policy: Any) -> None:
        self.store = store
        self.endpoint = Endpoint(Identity(fixture_seed("vendor " + name)), store=store, name=name,
                                 policy=ReferencePolicy(name=name, **policy))  # fmt: skip
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        self.runner = web.AppRunner(make_app(self.endpoint), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def make(work: Path) -> None:
    """Write ``agent.db`` and ``vendor.db`` (with their WAL files) in ``work``."""
    vendor_store = await SQLiteStore.open(work / "vendor.db")
    agent_store = await SQLiteStore.open(work / "agent.db")
    acme = Vendor(
        "Acme",
        vendor_store,
        accepts_terms=("vrm.no-tracking", "vrm.no-third-party"),
        catalogue=[CatalogueItem("Acme compact car", ("car",), Money(4_200, "USD"))],
    )
    budget = Vendor(
        "Budget",
        await SQLiteStore.open(work / "budget.db"),
        accepts_terms=("vrm.no-tracking",),
        counter=(NO_TRACKING,),
    )
    closed = Vendor(
        "Closed",
        await SQLiteStore.open(work / "closed.db"),
        accepts_terms=("vrm.no-tracking", "vrm.no-third-party"),
    )
    for v in (acme, budget, closed):
        await v.start()
    once = RetryPolicy(attempts=1)
    agent = await Agent.open(agent_store, fixture_seed("customer"), retry=once, fanout_retry=once)
    notes: list[dict[str, Any]] = []

    async def share(name: str, fields: dict[str, str]) -> Delivery:
        """``vrm share``: the share, and its note as the command kept it."""
        purposes, categories = [parse_purpose("delivery")], [parse_category("contact")]
        until = now_ms() + YEAR_MS
        d = await agent.share(name, fields, purposes=purposes, categories=categories,
                              expires_ms=until)  # fmt: skip
        notes.append({
            "hash": d.msg_hash.hex(), "thread": (await agent.resolve(name)).hex(),
            "vendor": name, "fields": fields, "purposes": purposes, "categories": categories,
            "expires": until, "shared": now_ms(), "status": d.status, "withdrawn": None,
        })  # fmt: skip
        return d

    try:
        assert (await agent.connect(acme.url)).status == "accepted"
        first = await share("Acme", {"email": "ada@example.org", "name": "Ada"})
        second = await share("Acme", {"phone": "+1 555 0100"})
        assert first.confirmed
        assert second.confirmed
        assert (await agent.withdraw("Acme", [first.msg_hash])).confirmed
        notes[0]["withdrawn"] = now_ms()
        assert (await share("Acme", {"name": "Ada L."})).confirmed
        assert (await agent.connect(budget.url)).status == "countered"
        cast = await agent.intentcast(
            "compact car",
            vendors=[acme.url],
            where="Boston",
            max_price=Money(5_000, "USD"),
            deadline_ms=5_000,
        )
        assert cast.offers, "the intentcast got no offer"
        intent_note = _intent_note(cast, agent, [acme.url], "Boston", Money(5_000, "USD"))
        assert (await agent.connect(closed.url)).status == "accepted"
        report = await agent.update_address({"city": "London"})
        assert report.counts()["confirmed"] == 2, report.counts()
        await closed.stop()  # gone: what follows waits in the outbox
        waiting = await share("Closed", {"email": "ada@example.org"})
        behind = await share("Closed", {"name": "Ada"})
        assert (waiting.status, behind.status) == ("queued", "queued")
        assert behind.msg_hash == b""  # a draft, behind the undelivered share
        home = Home(work)
        home.write_intents([intent_note])
        home.write_shares(notes)
    finally:
        await agent.close()
        for v in (acme, budget):
            await v.stop()
        for s in (vendor_store, agent_store, budget.store, closed.store):
            await s.close()


def _intent_note(cast: IntentcastResult, agent: Agent, urls: list[str], where: str,
                 price: Money) -> dict[str, Any]:  # fmt: skip
    """The note ``vrm intent`` kept of an intentcast (``cli/_cmd_intent.py``, 25ceebf)."""
    ranked = rank_offers(cast.offers, agent.terms)
    return {
        "intent": cast.intent_id.hex(), "what": "compact car", "where": where, "from": None,
        "to": None, "max_price": money_json(price), "reply_by": cast.reply_by,
        "sent": now_ms(), "vendors": urls,
        "offers": [offer_json(o, agent.terms, i + 1) for i, o in enumerate(ranked)],
        "declines": [{"vendor": v, "reason": r} for v, r in cast.declines],
    }  # fmt: skip


def _compact(src: Path, dst: Path) -> None:
    """Copy a closed database into one small file (no WAL), keeping its user_version."""
    dst.unlink(missing_ok=True)
    conn = sqlite3.connect(src)
    try:
        conn.execute("VACUUM INTO ?", (str(dst),))
    finally:
        conn.close()
    check = sqlite3.connect(dst)
    try:
        assert check.execute("PRAGMA user_version").fetchone() == (2,)
        assert check.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    finally:
        check.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("tests/data/v2"))
    args = parser.parse_args()
    if SCHEMA_VERSION != 2:
        sys.exit(
            f"this tree's store is at schema {SCHEMA_VERSION}; run the script against "
            "vrmproto 25ceebf (see its docstring)"
        )
    work = Path(tempfile.mkdtemp(prefix="vrm-v2-"))
    asyncio.run(make(work))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("agent.db", "vendor.db"):
        _compact(work / name, args.out / name)
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size} bytes)")
    for name in ("intents.json", "shares.json"):
        shutil.copyfile(work / name, args.out / name)
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
