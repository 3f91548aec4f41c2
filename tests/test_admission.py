"""Admission control for first contact: what one address can make a vendor keep (spec §11.8-2,
§11.8-3, §10-13 to §10-18; issue 10, item 2).

Each test builds an endpoint with tiny limits, so that a budget is used up in a handful of
messages; an honest customer, agreeing at once, never meets them.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
from _vendor_proc import (
    ACCEPTED,
    VENDOR_SEED,
    Customer,
    Reply,
    craft,
    header_for,
    now_ms,
    post,
    terms,
)

from vrmproto import (
    Identity,
    Intentcast,
    Limits,
    Money,
    TermsOffer,
    encode,
    open_envelope,
)
from vrmproto._binding import DEFAULT_INBOX_PATH
from vrmproto.server import (
    CatalogueItem,
    Endpoint,
    ReferencePolicy,
    Response,
    StorageBudget,
    serve,
)
from vrmproto.server._admission import address_prefix
from vrmproto.store import MemoryStore, StoreUsage

VENDOR = Identity(VENDOR_SEED)
T0 = 1_800_000_000_000
DAY_MS = 86_400_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


#: What the test vendor offers in answer to every intentcast below: an answered intentcast is a
#: negotiation still open (intent_answered), until the customer takes the offer or ends it.
SUV = CatalogueItem("Jeep Grand Cherokee 4x4", ("suv",), Money(28_900, "USD"))


def endpoint(limits: Limits, clock: Clock | None = None) -> Endpoint:
    kw: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return Endpoint(VENDOR, store=MemoryStore(), limits=limits,
                    policy=ReferencePolicy(accepts_terms=ACCEPTED, catalogue=(SUV,)),
                    **kw)  # fmt: skip


def intentcast(c: Customer, now: int) -> bytes:
    """An intentcast opens a relationship that never reaches an agreement by itself; the test
    vendor answers it with an offer, so it stays open (§10-17)."""
    body = Intentcast(what="a 4-wheel-drive SUV", reply_by=now + DAY_MS, constraints=(),
                      memberships=())  # fmt: skip
    return c.rel.send(body, now=now, msg_id=os.urandom(16)).message.envelope


def padded_offer(pad: int, now: int) -> bytes:
    """A valid first-contact terms.offer whose body carries ``pad`` bytes under an unknown key
    (§5.1-3): what a flood of padded offers sends."""
    who = Identity(os.urandom(32))
    good = Customer(VENDOR, identity=who).offer(*ACCEPTED)
    body = open_envelope(good.envelope, now=0, check_time=False).body.to_wire()
    body["x_padding"] = bytes(pad)
    raw = encode(body)
    return craft(who, header_for(who, VENDOR.public_key, raw, created=now,
                                 expires=now + DAY_MS), raw)  # fmt: skip


def problem(response: Response | Reply) -> Any:
    return open_envelope(response.body, now=0, check_time=False).body


def test_addresses_count_by_prefix() -> None:
    assert address_prefix("192.0.2.10") == address_prefix("192.0.2.250") == "192.0.2.0/24"
    assert address_prefix("192.0.3.10") != address_prefix("192.0.2.10")
    assert address_prefix("2001:db8:1:2::1") == address_prefix("2001:db8:1:2:ffff::9")
    assert address_prefix("2001:db8:1:3::1") != address_prefix("2001:db8:1:2::1")
    assert address_prefix("::ffff:192.0.2.7") == "192.0.2.0/24"
    assert address_prefix("fe80::1%eth0") == "fe80::/64"
    assert address_prefix("unix-socket") == "unix-socket"


async def test_open_relationship_budget_per_address_over_http() -> None:
    """A prefix holds at most ``open_relationships_per_address`` relationships without an
    agreement; one more is ``429`` with ``Retry-After`` (§10-17). Agreed ones do not count, a
    replay of an accepted first contact still gets its stored answer, and another prefix is not
    affected."""
    ep = endpoint(Limits(open_relationships_per_address=3))
    server = await serve(ep, host="127.0.0.1")
    inbox = server.url + DEFAULT_INBOX_PATH
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):  # agreed at once: never open
                await Customer(VENDOR, base_url=server.url).agree(session)
            casts = [intentcast(Customer(VENDOR), now_ms()) for _ in range(4)]
            first = [await post(session, inbox, env) for env in casts[:3]]
            assert [r.status for r in first] == [200, 200, 200]
            assert ep.admission.open_count("127.0.0.0/24") == 3
            refused = await post(session, inbox, casts[3])
            assert refused.status == 429, refused.body[:200]
            assert 0 < int(refused.headers["Retry-After"]) <= 86_400
            body = problem(refused)
            assert body.code == "rate_limited"
            assert body.retry_after == int(refused.headers["Retry-After"])
            again = await post(session, inbox, casts[0])  # a replay is no new relationship
            assert (again.status, again.body) == (200, first[0].body)
            offer = Customer(VENDOR, base_url=server.url)  # nor is an agreed one now
            assert (await post(session, inbox, offer.offer(*ACCEPTED).envelope)).status == 429
        # Another address (here: another /24, as the engine sees it) is not affected.
        other = await ep.handle_inbox(intentcast(Customer(VENDOR), now_ms()), client="192.0.2.1")
        assert other.status == 200
    finally:
        await server.close()


async def test_settled_negotiations_do_not_hold_the_open_budget() -> None:
    """§10-17: only negotiations still waiting on someone count against the open budget. A
    rejected offer, a declined intentcast or an ended one frees its place — a conformance run
    leaves hundreds of those and must be able to run again — while a new offer after a
    rejection opens a negotiation again and counts (and the daily budget still counts all)."""
    ep = endpoint(Limits(open_relationships_per_address=1))
    client = "192.0.2.1"
    for _ in range(4):  # rejected: a term the vendor does not accept
        c = Customer(VENDOR)
        sent = c.offer("vrm.purpose-only")
        got = await ep.handle_inbox(sent.envelope, client=client)
        replies = c.absorb(Reply(got.status, got.body, dict(got.headers)), sent)
        assert [r.message.type for r in replies] == ["receipt", "terms.reject"]
    declined = Intentcast(what="a bicycle", reply_by=now_ms() + DAY_MS, constraints=(),
                          memberships=())  # fmt: skip
    for _ in range(4):  # declined: nothing in the catalogue fits
        cast = Customer(VENDOR).rel.send(declined, now=now_ms(), msg_id=os.urandom(16))
        assert (await ep.handle_inbox(cast.message.envelope, client=client)).status == 200
    assert ep.admission.open_count("192.0.2.0/24") == 0
    answered = await ep.handle_inbox(intentcast(Customer(VENDOR), now_ms()), client=client)
    assert answered.status == 200
    assert ep.admission.open_count("192.0.2.0/24") == 1  # answered with an offer: still open
    # The last rejected customer offers again: a negotiation again, and there is no room for a
    # second one.
    again = c.offer("vrm.purpose-only")
    refused = await ep.handle_inbox(again.envelope, client=client)
    assert refused.status == 429
    assert problem(refused).clause == "§10-17"


async def test_padded_first_contacts_are_refused_beyond_a_small_daily_allowance() -> None:
    """A first contact over ``max_first_contact_bytes``, or with more than
    ``max_unknown_body_bytes`` of unknown keys, is *large*: a prefix may send
    ``large_first_contacts_per_address_per_day`` of them, then gets ``too_large`` (§10-13 to
    §10-15). Normal offers are not affected."""
    clock = Clock()
    ep = endpoint(Limits(max_first_contact_bytes=4096, max_unknown_body_bytes=256,
                         large_first_contacts_per_address_per_day=2), clock)  # fmt: skip
    attacker = "203.0.113.9"
    statuses = [await ep.handle_inbox(padded_offer(pad, clock.now), client=attacker)
                for pad in (8000, 20_000, 100_000, 8000)]  # fmt: skip
    assert [r.status for r in statuses] == [200, 200, 413, 413]
    assert problem(statuses[2]).code == "too_large"
    assert problem(statuses[2]).clause == "§10-15"
    # Small envelope, but over the limit for unknown keys: large too.
    small = await ep.handle_inbox(padded_offer(600, clock.now), client=attacker)
    assert small.status == 413
    # An honest offer from the same address, and a padded one from elsewhere, are accepted.
    honest = _offer(Customer(VENDOR), clock.now)
    assert (await ep.handle_inbox(honest, client=attacker)).status == 200
    elsewhere = await ep.handle_inbox(padded_offer(8000, clock.now), client="198.51.100.3")
    assert elsewhere.status == 200
    # Half a day later, one more large one fits again.
    clock.now += DAY_MS // 2
    later = await ep.handle_inbox(padded_offer(8000, clock.now), client=attacker)
    assert later.status == 200


async def test_first_contacts_per_address_per_day() -> None:
    """A prefix opens at most ``first_contacts_per_address_per_day`` relationships a day, agreed
    or not (§10-16): the bound on what one address can make a vendor keep."""
    clock = Clock()
    ep = endpoint(Limits(first_contacts_per_address_per_day=2), clock)
    c1, c2, c3 = (Customer(VENDOR) for _ in range(3))
    ok = [await ep.handle_inbox(_offer(c, clock.now), client="192.0.2.1") for c in (c1, c2)]
    assert [r.status for r in ok] == [200, 200]
    third = _offer(c3, clock.now)
    refused = await ep.handle_inbox(third, client="192.0.2.99")
    assert refused.status == 429
    assert refused.headers["Retry-After"] == str(DAY_MS // 2 // 1000)
    assert problem(refused).clause == "§10-16"
    clock.now += DAY_MS // 2
    assert (await ep.handle_inbox(third, client="192.0.2.99")).status == 200  # same bytes


def _offer(c: Customer, now: int) -> bytes:
    body = TermsOffer(terms=terms(*ACCEPTED), enc_key=c.identity.enc_public_key)
    return c.rel.send(body, now=now, msg_id=os.urandom(16)).message.envelope


async def test_relationships_that_never_agree_expire_with_their_history() -> None:
    """``purge`` deletes a relationship that never reached an agreement once its last message
    is ``open_relationship_ttl_ms`` old, with its history and held data; its replay records stay
    to their window, so a replay of its first message opens nothing (§11.8-3, §10-18)."""
    clock = Clock()
    ttl = 60_000
    ep = endpoint(Limits(open_relationship_ttl_ms=ttl, open_relationships_per_address=2), clock)
    store = ep.store
    cast_customer, agreed = Customer(VENDOR), Customer(VENDOR)
    cast = intentcast(cast_customer, clock.now)
    first = await ep.handle_inbox(cast, client="192.0.2.1")
    assert first.status == 200
    assert (await ep.handle_inbox(_offer(agreed, clock.now), client="192.0.2.1")).status == 200
    assert ep.admission.open_count("192.0.2.0/24") == 1
    thread = cast_customer.thread
    assert await store.get_relationship(thread) is not None

    clock.now += ttl  # not yet: exactly ttl old
    assert await ep.purge() == 0
    clock.now += 1
    assert await ep.purge() == 1
    assert await store.get_relationship(thread) is None
    assert await store.history(thread) == []
    assert await store.held(thread) == []
    assert await store.get_relationship(agreed.thread) is not None  # agreed: kept
    assert ep.admission.open_count("192.0.2.0/24") == 0

    again = await ep.handle_inbox(cast, client="192.0.2.1")  # the replay record answers
    assert (again.status, again.body) == (200, first.body)
    assert await store.get_relationship(thread) is None
    # The budget is free again: two new open relationships fit.
    for _ in range(2):
        cast = intentcast(Customer(VENDOR), clock.now)
        assert (await ep.handle_inbox(cast, client="192.0.2.1")).status == 200


class _Disk(MemoryStore):
    """A memory store that reports a disk with ``free`` bytes left."""

    free = 10 * 2**30

    async def usage(self) -> StoreUsage:
        used = await super().usage()
        return StoreUsage(used.stored_bytes, self.free)


async def test_storage_budget_refuses_first_contacts_then_everything() -> None:
    """Vendor-wide (§11.8-4): under ``min_free_bytes`` free no relationship is opened (429 with
    Retry-After) while agreed customers are still served; under ``reserve_free_bytes`` nothing
    more is stored (507 storage_full with Retry-After), and nothing of the message is kept."""
    disk = _Disk()
    budget = StorageBudget(min_free_bytes=1000, reserve_free_bytes=100, retry_after_s=120,
                           check_every_ms=0)  # fmt: skip
    ep = Endpoint(VENDOR, store=disk, policy=ReferencePolicy(accepts_terms=ACCEPTED),
                  storage=budget)  # fmt: skip
    customer = Customer(VENDOR)
    offer = customer.offer(*ACCEPTED)
    customer.absorb(_reply(await ep.handle_inbox(offer.envelope)), offer)

    disk.free = 999  # low: no new relationships, agreed ones go on
    refused = await ep.handle_inbox(customer_offer(), client="192.0.2.1")
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "120"
    assert problem(refused).clause == "§11.8-4"
    share = customer.share({"email": "ann@example.org"})
    customer.absorb(_reply(await ep.handle_inbox(share.envelope)), share)

    disk.free = 99  # the last reserve: nothing is stored
    before = await disk.history(customer.thread)
    late = customer.share({"phone": "+15550001"})
    full = await ep.handle_inbox(late.envelope)
    assert full.status == 507
    assert problem(full).code == "storage_full"
    assert problem(full).retry_after == 120
    assert full.headers["Retry-After"] == "120"
    assert await disk.history(customer.thread) == before
    assert (await ep.handle_inbox(customer_offer(), client="192.0.2.1")).status == 507

    disk.free = 10 * 2**30  # room again: the same bytes are accepted
    customer.absorb(_reply(await ep.handle_inbox(late.envelope)), late)


def customer_offer() -> bytes:
    return Customer(VENDOR).offer(*ACCEPTED).envelope


def _reply(response: Response) -> Reply:
    return Reply(response.status, response.body, dict(response.headers))
