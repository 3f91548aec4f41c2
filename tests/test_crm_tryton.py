"""The Tryton bridge (issue 14): the README's three scenarios against a reference vendor whose
feed drives a real Tryton (``party``, ``sale_opportunity``) on SQLite in a temporary directory.

The vendor is Budget Salt Lake from ``examples/vendors`` (it counters "no third parties" with
"purpose only", rents SUVs), served on 127.0.0.1 from a SQLite store. The customers use the
examples' own terms, address and intentcast. Along the way: Tryton holds a share while it is
live and loses it at the withdrawal; the bridge is stopped, the intentcast goes on, and a bridge
opened again resumes from the cursor Tryton keeps; every event delivered a second time changes
nothing; a share's fields go at its expiry; ``vrm vendor tryton --once`` catches up in a process
of its own. Nothing waits with a sleep: the test awaits the bridge reaching the feed's last
position.

Slow: creating the Tryton database activates ``sale_opportunity`` and its dependencies (about
30 s of one core): the session does it once and each test opens a copy (tests/_tryton.py).
Marked ``slow``, and still part of ``make test``, which ``.ci/run`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner

from tests._cli_helpers import EXAMPLES, VENDOR_FILES
from vrmproto import MasterSeed, Money
from vrmproto._keys import Identity
from vrmproto.cli import cli as vrm
from vrmproto.client import Agent
from vrmproto.server import Endpoint, load_vendor_config, serve
from vrmproto.server._events import follow
from vrmproto.server._events import wall_ms as now_ms
from vrmproto.store import MemoryStore, SQLiteStore

pytest.importorskip("trytond", reason="trytond is not installed: pip install 'vrmproto[tryton]'")
pytest.importorskip("trytond.modules.sale_opportunity",
                    reason="trytond-sale-opportunity is not installed: pip install "
                           "'vrmproto[tryton]'")  # fmt: skip

from trytond.pool import Pool
from trytond.transaction import Transaction

from tests._tryton import tryton_database
from vrmproto.crm.tryton import TrytonBridge

pytestmark = pytest.mark.slow

DAY_MS = 86_400_000
EMAIL, PHONE = "doc@example.org", "+1 801 555 0142"  # what dont_track_me.py shares
SKIER = "skier@example.org"  # shared for a day after the rental is agreed
OLD_ADDRESS = {"street": "12 Old Mill Road", "city": "Salt Lake City", "postcode": "84101"}


@pytest.fixture
def scenarios(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """The example scripts, for their terms, address and intentcast."""
    import importlib  # noqa: PLC0415

    monkeypatch.syspath_prepend(str(EXAMPLES))
    names = ("dont_track_me", "change_of_address", "car_rental_intentcast")
    return {name: importlib.import_module(name) for name in names}


@pytest.fixture
def tryton(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new Tryton database ``crm`` in ``tmp_path``, with its company (tests/_tryton.py)."""
    return tryton_database(tmp_path_factory, tmp_path)


@contextlib.asynccontextmanager
async def budget(store: SQLiteStore) -> AsyncIterator[tuple[Endpoint, str]]:
    config = load_vendor_config(VENDOR_FILES / "budget.toml")
    assert config.seed is not None
    endpoint = config.endpoint(Identity(config.seed), store)
    server = await serve(endpoint, "127.0.0.1", 0)
    try:
        yield endpoint, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def agreed(agent: Agent, url: str) -> bytes:
    r = await agent.connect(url)
    if r.status == "countered":  # Budget will not promise "no third parties"
        r = await agent.accept_counter(r.thread)
    assert r.status == "accepted"
    return r.thread


async def in_step(bridge: TrytonBridge, endpoint: Endpoint) -> None:
    """Wait until Tryton holds every event the vendor has committed."""
    feed = [e async for e in follow(endpoint.store, None)]
    await bridge.reached(feed[-1].pos)


def snapshot(name: str) -> dict[str, Any]:
    """What Tryton holds: parties by code, each with its contacts, addresses and notes; leads."""
    with Transaction().start(name, 0, readonly=True):
        pool = Pool()
        notes = pool.get("ir.note")
        parties = {}
        for p in pool.get("party.party").search([("code", "like", "vrm-%")]):
            parties[p.code] = {
                "contacts": sorted((c.type, c.name or "", c.value) for c in p.contact_mechanisms),
                "addresses": [(a.street_unstructured, a.city, a.postal_code) for a in p.addresses],
                "notes": sorted(n.message for n in notes.search([("resource", "=", str(p))])),
            }
        leads = [
            {"reference": o.reference, "party": o.party.code, "description": o.description,
             "amount": o.amount, "currency": o.currency.code, "state": o.state,
             "notes": [n.message for n in notes.search([("resource", "=", str(o))])]}
            for o in pool.get("sale.opportunity").search([])
        ]  # fmt: skip
        values = {c.value for c in pool.get("party.contact_mechanism").search([])}
        streets = {a.street_unstructured for a in pool.get("party.address").search([])}
    return {"parties": parties, "leads": leads, "values": values, "streets": streets}


async def test_three_scenarios_keep_tryton_in_step(
    tmp_path: Path, tryton: Path, scenarios: dict[str, ModuleType]
) -> None:
    dont_track_me = scenarios["dont_track_me"]
    new_address = scenarios["change_of_address"].NEW_ADDRESS
    car_rental = scenarios["car_rental_intentcast"]
    (tmp_path / "vendor").mkdir()
    store = await SQLiteStore.open(tmp_path / "vendor" / "vendor.db")  # as `vrm vendor serve`
    async with budget(store) as (endpoint, url):
        bridge = await TrytonBridge.open("crm", path=tmp_path)  # as created, nothing applied
        assert bridge.position == 0
        running = asyncio.create_task(bridge.run(endpoint.events))

        # "Don't track me": countered, agreed; email and phone shared, returned, withdrawn.
        a = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)),
                             terms=dont_track_me.MY_TERMS)  # fmt: skip
        async with a:
            a_thread = await agreed(a, url)
            share = await a.share(a_thread, {"email": EMAIL, "phone": PHONE},
                                  purposes=["contracted-service"], categories=["contact"],
                                  expires_ms=a.clock() + 30 * DAY_MS)  # fmt: skip
            await in_step(bridge, endpoint)
            shared = await asyncio.to_thread(snapshot, "crm")
            assert {EMAIL, PHONE} <= shared["values"]
            await a.request_data(a_thread)
            await a.withdraw(a_thread, [share.msg_hash])

        # Change of address: the address shared at sign-up, then the example's new one.
        b = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)),
                             terms=scenarios["change_of_address"].MY_TERMS)  # fmt: skip
        async with b:
            b_thread = await agreed(b, url)
            await b.share(b_thread, OLD_ADDRESS, purposes=["core-function"],
                          categories=["contact"], expires_ms=b.clock() + 365 * DAY_MS)  # fmt: skip
            await in_step(bridge, endpoint)
            assert OLD_ADDRESS["street"] in (await asyncio.to_thread(snapshot, "crm"))["streets"]
            report = await b.update_address(new_address, timeout_s=5.0)
            assert [r.status for r in report.results] == ["confirmed"]
        await in_step(bridge, endpoint)

        # The bridge stops; the Park City intentcast goes on without it.
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        stopped_at = bridge.position
        await bridge.close()
        c = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)), terms=car_rental.MY_TERMS)
        async with c:
            start, end = car_rental.next_march_20_to_25()
            result = await c.intentcast(
                "4-wheel-drive SUV rental", vendors=[url], where="Park City, UT",
                start=start, end=end,
                memberships=["Avis Wizard", "Budget FastBreak", "Hertz 1 Club"],
                constraints=["no prepaid gas", "no insurance"],
                max_price=Money(30000, "USD"), deadline_ms=10_000,
            )  # fmt: skip
            (offer,) = result.offers
            taken = await c.take_offer(offer)
            if taken.status == "countered":
                taken = await c.accept_counter(taken.thread)
            assert taken.status == "accepted"
            await c.share(taken.thread, {"email": SKIER}, purposes=["delivery"],
                          categories=["contact"], expires_ms=c.clock() + DAY_MS)  # fmt: skip

        # A restart resumes from the cursor Tryton keeps, and catches up.
        bridge = await TrytonBridge.open("crm", path=tmp_path)
        assert bridge.position == stopped_at
        running = asyncio.create_task(bridge.run(endpoint.events))
        await in_step(bridge, endpoint)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running

        held = await asyncio.to_thread(snapshot, "crm")
        # At least once: every event delivered again changes nothing.
        feed = [e async for e in follow(store, None)]
        again = [await bridge.apply(e) for e in feed]
        assert feed
        assert not any(again)
        assert await asyncio.to_thread(snapshot, "crm") == held

        # A share's fields go at its expiry, without an event (§5.3.1-4).
        bridge.clock = lambda: now_ms() + 2 * DAY_MS
        assert await bridge.expire() == 1
        expired = await asyncio.to_thread(snapshot, "crm")
        await bridge.close()

        # `vrm vendor tryton`, in a process of its own: a new customer's events, then nothing.
        d = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)),
                             terms=scenarios["change_of_address"].MY_TERMS)  # fmt: skip
        async with d:
            d_thread = await agreed(d, url)
        cli = ["vendor", "tryton", "--config", str(VENDOR_FILES / "budget.toml"), "--data-dir",
               str(tmp_path / "vendor"), "--database", "crm", "--tryton-path", str(tmp_path),
               "--once"]  # fmt: skip
        first = await asyncio.to_thread(CliRunner().invoke, vrm, [*cli, "--json"])
        assert first.exit_code == 0, first.output
        rows = [json.loads(line) for line in first.output.splitlines()]
        assert [r["kind"] for r in rows] == ["relationship.opened", "terms.accepted"]
        assert all(r["applied"] for r in rows)
        second = await asyncio.to_thread(CliRunner().invoke, vrm, cli)
        assert second.exit_code == 0, second.output
        assert second.output.startswith("0 event(s) applied, 0 already applied")
        assert "vrm-" + d_thread.hex() in (await asyncio.to_thread(snapshot, "crm"))["parties"]
    await store.close()

    parties = held["parties"]
    intent_thread, c_thread = offer.thread.hex(), taken.thread.hex()
    assert set(parties) == {"vrm-" + t for t in (a_thread.hex(), b_thread.hex(), intent_thread,
                                                 c_thread)}  # fmt: skip

    # Terms notes: what was proffered, countered and agreed (with the agreement id).
    a_notes = parties["vrm-" + a_thread.hex()]["notes"]
    (countered,) = [n for n in a_notes if "Terms countered with: " in n]
    (agreement,) = [n for n in a_notes if "Terms agreed (agreement " in n]
    assert "vrm.purpose-only v1" in countered
    assert "vrm.purpose-only v1" in agreement
    assert "vrm.no-third-party" not in agreement
    assert sum("Terms proffered: " in n for n in a_notes) == 2  # the first offer, then the counter
    assert any("Consent withdrawn: the data of 1 share(s) erased" in n for n in a_notes)
    for thread in (b_thread.hex(), c_thread):
        assert any("Terms agreed" in n for n in parties["vrm-" + thread]["notes"])

    # The withdrawn share's data is gone from Tryton.
    assert parties["vrm-" + a_thread.hex()]["contacts"] == []
    assert not {EMAIL, PHONE} & held["values"]

    # The changed address replaced the old one; the new phone and region are held too.
    b_party = parties["vrm-" + b_thread.hex()]
    assert b_party["addresses"] == [(new_address["street"], new_address["city"],
                                     new_address["postcode"])]  # fmt: skip
    assert OLD_ADDRESS["street"] not in held["streets"]
    assert ("phone", "", new_address["phone"]) in b_party["contacts"]
    assert ("other", "region", "UT") in b_party["contacts"]

    # One opportunity: the intentcast answered, its price the offer's, taken up by the customer.
    (lead,) = held["leads"]
    assert lead["reference"] == "vrm-" + intent_thread
    assert lead["state"] == "lead"
    assert (lead["amount"], lead["currency"]) == (Decimal("245.00"), "USD")
    assert lead["description"] == offer.description
    assert lead["party"] == "vrm-" + c_thread
    assert any("Taken up by relationship" in n for n in lead["notes"])
    intent_notes = "\n".join(parties["vrm-" + intent_thread]["notes"])
    assert parties["vrm-" + c_thread]["contacts"] == [("email", "", SKIER)]
    assert expired["parties"]["vrm-" + c_thread]["contacts"] == []
    assert SKIER not in expired["values"]
    assert "Intentcast: 4-wheel-drive SUV rental; in Park City, UT" in intent_notes
