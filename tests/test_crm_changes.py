"""What a feed event asks of a CRM (vrmproto.crm.changes_of, issue 14): the sans-IO half of the
Tryton bridge, on the events a real vendor's feed holds. No Tryton here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, Reply, now_ms

from vrmproto import Intentcast, Money, RelationshipEnd
from vrmproto._keys import Identity
from vrmproto.crm import Erase, Hold, Lead, Note, TakeUp, changes_of
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.server._events import follow
from vrmproto.server._policy import CatalogueItem
from vrmproto.store import SQLiteStore

VENDOR = Identity(VENDOR_SEED)


@pytest.fixture
async def endpoint(tmp_path: Path) -> Any:
    store = await SQLiteStore.open(tmp_path / "vendor.db")
    catalogue = (CatalogueItem("Jeep Wrangler 4x4", ("suv",), Money(28900, "USD"),
                               ("full to full",)),)  # fmt: skip
    yield Endpoint(VENDOR, store=store, clock=now_ms,
                   policy=ReferencePolicy(accepts_terms=ACCEPTED, catalogue=catalogue))  # fmt: skip
    await store.close()


async def deliver(ep: Endpoint, customer: Customer, msg: Any) -> None:
    response = await ep.handle_inbox(msg.envelope)
    customer.absorb(Reply(response.status, response.body, dict(response.headers)), msg)


async def test_a_relationship_maps_to_notes_holds_and_an_erasure(endpoint: Endpoint) -> None:
    c = Customer(VENDOR)
    await deliver(endpoint, c, c.offer(*ACCEPTED))
    share = c.share({"email": "ada@example.org", "street": "1 Old Road"}, purposes=(2,))
    await deliver(endpoint, c, share)
    await deliver(endpoint, c, c.address({"street": "1 Main St", "phone": "+1 555 0100"}))
    await deliver(endpoint, c, c.withdraw(share.hash))
    await deliver(endpoint, c, c.send(RelationshipEnd(reason="moving")))
    feed = [e.as_json() async for e in follow(endpoint.store, None)]
    rel = feed[0]["relationship"]
    changes = {e["kind"]: changes_of(e) for e in feed}

    (opened,) = changes["relationship.opened"]
    assert isinstance(opened, Note)
    assert opened.text.endswith("Terms proffered: " + ", ".join(f"{t} v1" for t in ACCEPTED)
                                + " (format=vrm-data/1)")  # each term with its parameters
    (agreed,) = changes["terms.accepted"]
    assert isinstance(agreed, Note)
    assert f"Terms agreed (agreement {feed[0]['id'][4:]})" in agreed.text
    # The share's fields were dropped from the feed at the withdrawal: nothing to hold now,
    # nor the street the update gave, which was held as the share's (§5.3.6-2).
    assert changes["data.shared"] == ()
    shared_id = next(e["id"] for e in feed if e["kind"] == "data.shared")
    (moved,) = changes["address.updated"]
    assert moved == Hold(rel, next(e["id"] for e in feed if e["kind"] == "address.updated"),
                         {"phone": "+1 555 0100"}, None)  # fmt: skip
    erase, said = changes["data.withdrawn"]
    assert erase == Erase(rel, (shared_id,))
    assert isinstance(said, Note)
    assert "1 share(s) erased" in said.text
    (ended,) = changes["relationship.ended"]
    assert isinstance(ended, Note)
    assert ended.text.endswith("Relationship ended by the customer: moving")
    for kind in ("data.erased", "data.requested", "data.returned"):
        assert changes.get(kind, ()) == ()


async def test_a_live_share_is_held_with_its_expiry(endpoint: Endpoint) -> None:
    c = Customer(VENDOR)
    await deliver(endpoint, c, c.offer(*ACCEPTED))
    share = c.share({"email": "ada@example.org"}, purposes=(2,))
    await deliver(endpoint, c, share)
    event = [e.as_json() async for e in follow(endpoint.store, None)][-1]
    (held,) = changes_of(event)
    assert held == Hold(event["relationship"], "evt_" + share.hash.hex(),
                        {"email": "ada@example.org"}, share.body.expires)  # fmt: skip


async def test_an_answered_intentcast_is_a_lead_and_taking_it_up_moves_it(
    endpoint: Endpoint,
) -> None:
    c = Customer(VENDOR)
    cast = c.send(Intentcast(what="4-wheel-drive SUV rental", where="Park City, UT",
                             constraints=("no prepaid gas",), memberships=(),
                             max_price=Money(30000, "USD"),
                             reply_by=now_ms() + 60_000))  # fmt: skip
    await deliver(endpoint, c, cast)
    feed = [e.as_json() async for e in follow(endpoint.store, None)]
    assert [e["kind"] for e in feed] == ["intentcast.received", "offer.sent"]
    (request,) = changes_of(feed[0])
    assert isinstance(request, Note)
    assert "Intentcast: 4-wheel-drive SUV rental; in Park City, UT" in request.text
    assert "at most 300.00 USD; conditions: no prepaid gas" in request.text
    (lead,) = changes_of(feed[1])
    assert isinstance(lead, Lead)
    assert (lead.relationship, lead.offer) == (feed[1]["relationship"], feed[1]["id"])
    assert (lead.description, lead.price) == ("Jeep Wrangler 4x4", Money(28900, "USD"))
    taking = {**feed[1], "kind": "relationship.opened", "id": "evt_00", "relationship": "ab",
              "body": {"terms": [], "in_reply_to": feed[1]["id"][4:]}}  # fmt: skip
    assert changes_of(taking)[1] == TakeUp("ab", feed[1]["id"])
