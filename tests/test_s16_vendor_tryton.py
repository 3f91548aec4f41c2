"""The Tryton bridge after the vendor's own staff changed the CRM (session 16's hunt).

A CRM is worked in by people: they delete a party (a customer's erasure request handled in
Tryton, a duplicate cleaned up), archive one, delete an opportunity. Before, the bridge kept
pointing at what was gone: the next share, withdrawal or expiry of that relationship wrote to or
deleted a record that no longer existed, Tryton refused the transaction ("You are trying to read
records … that don't exist"), and ``vrm vendor tryton`` stopped at that event — again on every
restart, and after every other event too, since the expiry sweep that follows each one failed
the same way. An archived party was not found by its code (Tryton hides inactive records), and
a new one could not take the code (unique): the same dead stop. Now the fields whose record is
gone are forgotten, an archived party is still its relationship's, and a take-up of a deleted
lead becomes a note.

Slow: Tryton (its database is the session's, tests/_tryton.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, Reply
from click.testing import CliRunner

pytest.importorskip("trytond", reason="trytond is not installed: pip install 'vrmproto[tryton]'")
pytest.importorskip("trytond.modules.sale_opportunity",
                    reason="trytond-sale-opportunity is not installed: pip install "
                           "'vrmproto[tryton]'")  # fmt: skip

from trytond.pool import Pool
from trytond.transaction import Transaction

from tests._tryton import tryton_database
from vrmproto._keys import Identity
from vrmproto.cli._app import cli as main
from vrmproto.crm.tryton import FeedRewound, TrytonBridge, TrytonCRM
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.server._events import follow
from vrmproto.store import SQLiteStore

pytestmark = pytest.mark.slow

NOW = 1_800_000_000_000
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def tryton_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with two Tryton databases, ``crm`` and ``spare`` (for a test that needs an
    empty one), each a copy of the session's (``tests/_tryton.py``)."""
    path = tmp_path_factory.mktemp("tryton")
    for name in ("crm", "spare"):
        tryton_database(tmp_path_factory, path, name)
    return path


@pytest.fixture(scope="module")
def crm(tryton_dir: Path) -> TrytonCRM:
    return TrytonCRM.open("crm", path=tryton_dir)


def event(pos: int, rel: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"evt_{pos:032x}", "pos": pos, "relationship": rel, "kind": kind,
            "created": NOW, "from": "customer", "body": {}, "personal": None,
            **extra}  # fmt: skip


def shared(pos: int, rel: str, fields: dict[str, str], expires: int = NOW + DAY_MS
           ) -> dict[str, Any]:  # fmt: skip
    return event(pos, rel, "data.shared", personal={"fields": fields, "expires": expires})


def withdrawn(pos: int, rel: str, *shares: int) -> dict[str, Any]:
    return event(pos, rel, "data.withdrawn", erase=[f"evt_{s:032x}" for s in shares])


def held(rel: str) -> dict[str, Any]:
    """The parties with the relationship's code (archived too): their contacts and streets."""
    with Transaction().start("crm", 0, readonly=True, context={"active_test": False}):
        return {
            p.id: {
                "active": p.active,
                "contacts": sorted((c.name or c.type, c.value) for c in p.contact_mechanisms),
                "streets": [a.street_unstructured for a in p.addresses],
            }
            for p in Pool().get("party.party").search([("code", "=", "vrm-" + rel)])
        }


def staff(rel: str, what: str) -> None:
    """What the vendor's staff do to the relationship's party in Tryton's client."""
    with Transaction().start("crm", 0):
        parties = Pool().get("party.party")
        (party,) = parties.search([("code", "=", "vrm-" + rel)])
        if what == "delete":
            parties.delete([party])
        else:
            party.active = False
            party.save()


def test_a_party_the_staff_deleted_is_made_again_and_the_feed_goes_on(crm: TrytonCRM) -> None:
    rel = "d1" * 16
    first = {"email": "ada@example.org", "street": "1 Old Road", "nick": "ada"}
    assert crm.apply(shared(101, rel, first, expires=NOW + 1000), NOW)
    staff(rel, "delete")
    assert held(rel) == {}
    # the sweep after each event, and every minute: the expired share's records are gone
    assert crm.expire(NOW + 2000) == 0
    again = {"email": "ada@example.net", "street": "2 New Road", "nick": "ada2"}
    assert crm.apply(shared(102, rel, again), NOW)  # before: AccessError, at every restart
    ((_, now),) = held(rel).items()
    assert now == {"active": True, "streets": ["2 New Road"],
                   "contacts": [("email", "ada@example.net"), ("nick", "ada2")]}  # fmt: skip
    staff(rel, "delete")
    assert crm.apply(withdrawn(103, rel, 102), NOW)  # nothing left to erase: no error
    assert crm.apply(shared(104, rel, {"phone": "+1 801 555 0100"}), NOW)
    assert crm.apply(withdrawn(105, rel, 104), NOW)
    ((_, last),) = held(rel).items()
    assert last["contacts"] == []  # the withdrawal still erases
    assert last["streets"] == []


def test_a_party_the_staff_archived_keeps_its_relationship(crm: TrytonCRM) -> None:
    rel = "a1" * 16
    assert crm.apply(shared(201, rel, {"email": "bo@example.org", "street": "1 Main"}), NOW)
    staff(rel, "archive")
    assert crm.apply(shared(202, rel, {"email": "bo@example.net"}), NOW)  # before: code unique
    ((_, party),) = held(rel).items()
    assert party == {"active": False, "streets": ["1 Main"],
                     "contacts": [("email", "bo@example.net")]}  # fmt: skip
    assert crm.apply(withdrawn(203, rel, 201, 202), NOW)
    ((_, party),) = held(rel).items()
    assert party["contacts"] == []
    assert party["streets"] == []


def test_taking_up_an_offer_whose_lead_the_staff_deleted_is_a_note(crm: TrytonCRM) -> None:
    intent, taker = "b1" * 16, "b2" * 16
    offer = event(301, intent, "offer.sent", body={
        "description": "SUV", "price": {"amount": 12000, "currency": "USD"},
        "valid_until": NOW + DAY_MS})  # fmt: skip
    assert crm.apply(offer, NOW)
    with Transaction().start("crm", 0):
        leads = Pool().get("sale.opportunity")
        found = leads.search([("reference", "=", "vrm-" + intent)])
        leads.write(found, {"state": "cancelled"})  # Tryton deletes only cancelled ones
        leads.delete(found)
    opened = event(302, taker, "relationship.opened", body={"in_reply_to": f"{301:032x}"})
    assert crm.apply(opened, NOW)  # before: AccessError on the deleted opportunity
    with Transaction().start("crm", 0, readonly=True):
        (party,) = Pool().get("party.party").search([("code", "=", "vrm-" + taker)])
        notes = [n.message for n in Pool().get("ir.note").search([("resource", "=", str(party))])]
    assert any("which this CRM has no lead for" in n for n in notes)


def test_a_share_delivered_late_does_not_put_back_an_older_address(crm: TrytonCRM) -> None:
    """A webhook receiver refused the share (a dead letter), the customer then moved (an
    address update, delivered), and the operator replays the dead letter: the share comes after
    the update it precedes in the feed. Before, its old street replaced the new one in Tryton;
    now a field held from a later event stays, and the share's other fields are held."""
    rel = "c1" * 16
    moved = event(402, rel, "address.updated", personal={"fields": {"street": "2 New Road"}})
    assert crm.apply(moved, NOW)
    late = shared(401, rel, {"street": "1 Old Road", "email": "cy@example.org"})
    assert crm.apply(late, NOW)
    ((_, party),) = held(rel).items()
    assert party["streets"] == ["2 New Road"]
    assert party["contacts"] == [("email", "cy@example.org")]
    assert crm.apply(withdrawn(403, rel, 401), NOW)  # the share's own fields go, the move stays
    ((_, party),) = held(rel).items()
    assert party == {"active": True, "streets": ["2 New Road"], "contacts": []}


@pytest.mark.parametrize(
    "query",
    [
        # the sweep of expired shares, before every event and every minute
        "SELECT relationship, field FROM vrmproto_crm_field "
        "WHERE expires IS NOT NULL AND expires <= 1800000000000",
        # the other fields of an address, when one of them goes
        "SELECT field FROM vrmproto_crm_field WHERE model = 'party.address' AND record = 7 LIMIT 1",
        # the cursor, at every start
        "SELECT max(pos) FROM vrmproto_crm_event",
    ],
)
def test_the_bridges_own_queries_read_no_whole_table(crm: TrytonCRM, query: str) -> None:
    """Before, the sweep that follows every event read every field the bridge holds (no index
    on ``expires``): with 300,000 held (100,000 customers) an event and its sweep took ~38 ms
    instead of ~7 (the commit message has the measurement), and it grows with every customer."""
    with Transaction().start("crm", 0, readonly=True) as transaction:
        cursor = transaction.connection.cursor()
        cursor.execute("EXPLAIN QUERY PLAN " + query)
        plan = " / ".join(str(row[-1]) for row in cursor.fetchall())
    assert "SCAN" not in plan, plan  # not every row of the table
    assert "USING" in plan, plan  # but an index


async def _vendor(db: Path, *fields: dict[str, str]) -> None:
    """Customers of the vendor whose store is ``db``: one per ``fields``, agreed and shared."""
    async with await SQLiteStore.open(db) as store:
        endpoint = Endpoint(Identity(VENDOR_SEED), store=store,
                            policy=ReferencePolicy(accepts_terms=ACCEPTED))  # fmt: skip
        for shared_fields in fields:
            c = Customer(Identity(VENDOR_SEED))
            await _send(endpoint, c, c.offer(*ACCEPTED))
            await _send(endpoint, c, c.share(shared_fields))  # once the offer is agreed


async def _send(endpoint: Endpoint, c: Customer, msg: Any) -> None:
    r = await endpoint.handle_inbox(msg.envelope)
    assert r.status == 200, r.body
    c.absorb(Reply(r.status, r.body, dict(r.headers)), msg)


def _emails(name: str) -> set[str]:
    with Transaction().start(name, 0, readonly=True):
        return {c.value for c in Pool().get("party.contact_mechanism").search([])}


async def test_a_vendor_store_restored_from_a_backup_is_not_followed_blindly(
    tryton_dir: Path, tmp_path: Path
) -> None:
    """The vendor restores its store from last night's backup; Tryton, which keeps its own
    cursor, had applied events the backup does not hold. The store numbers its new events from
    the backup's last position, so they take positions Tryton has passed: before, the bridge
    resumed after its cursor and skipped every one of them, silently (the customer's new share
    never reached the CRM). Now it stops and says so, and ``--resync`` goes through the feed
    again: what Tryton holds is recognised by its id, the new events are applied."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    db = data / "vendor.db"
    await _vendor(db, {"email": "one@example.org"})
    shutil.copyfile(db, tmp_path / "backup.db")  # the store is closed: one file, checkpointed
    await _vendor(db, {"email": "two@example.org"})
    async with await SQLiteStore.open(db) as store, \
            await TrytonBridge.open("spare", path=tryton_dir) as bridge:  # fmt: skip
        await bridge.run(lambda after: follow(store, None, after))
        assert bridge.position == 6  # two customers: opened, accepted, shared each
    assert _emails("spare") == {"one@example.org", "two@example.org"}
    shutil.copyfile(tmp_path / "backup.db", db)  # the restore: positions 4 to 6 are free again
    await _vendor(db, {"email": "three@example.org"}, {"email": "four@example.org"})
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\n', "utf-8")
    args = ["vendor", "tryton", "--config", str(config), "--data-dir", str(data), "--once",
            "--json", "--database", "spare", "--tryton-path", str(tryton_dir)]  # fmt: skip
    out = await asyncio.to_thread(CliRunner().invoke, main, args, env=dict(os.environ))
    assert out.exit_code != 0
    assert "restored from a backup" in str(out.exception) + out.output
    assert "three@example.org" not in _emails("spare")  # nothing applied past the mismatch
    async with await SQLiteStore.open(db) as store, \
            await TrytonBridge.open("spare", path=tryton_dir) as bridge:  # fmt: skip
        with pytest.raises(FeedRewound):  # in code too, at the first event it reads
            await bridge.run(lambda after: follow(store, None, after))
    out = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--resync"],
                                  env=dict(os.environ))  # fmt: skip
    assert out.exit_code == 0, out.output
    assert _emails("spare") >= {"one@example.org", "three@example.org", "four@example.org"}
