"""The server over real HTTP on 127.0.0.1: every message type end to end, discovery, the history
export, idempotency, hooks, the customer agent endpoint and every problem code (spec §12)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _vendor_proc import (
    ACCEPTED,
    DAY_MS,
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
    DEFAULT_LIMITS,
    Context,
    DataRecord,
    Identity,
    Intentcast,
    IntentOffer,
    KeyRotate,
    Limits,
    Money,
    Problem,
    ProtocolError,
    RecordsContent,
    Relationship,
    RelationshipEnd,
    Role,
    State,
    TermRef,
    TermsAccept,
    TermsOffer,
    compare,
    encode,
    open_envelope,
    seal_content,
    sign_message,
    sign_problem,
    verify_entries,
)
from vrmproto._binding import (
    CONTENT_TYPE,
    DEFAULT_HISTORY_PATH,
    DEFAULT_INBOX_PATH,
    SIGNATURE_HEADER,
    WELL_KNOWN_PATH,
    decode_history,
    decode_replies,
    sign_history_request,
    verify_discovery,
)
from vrmproto._messages import DataShare, FieldsContent, ProblemReport, Receipt
from vrmproto.server import (
    CatalogueItem,
    Endpoint,
    Event,
    RateLimiter,
    ReferencePolicy,
    Server,
    StorageBudget,
    serve,
)
from vrmproto.store import (
    Commit,
    HistoryEntry,
    MemoryStore,
    RelationshipRecord,
    SQLiteStore,
    StoreError,
)

SPEC = Path(__file__).resolve().parents[1] / "spec" / "12-http-binding.md"
VENDOR = Identity(VENDOR_SEED)
CATALOGUE = (
    CatalogueItem("Jeep Wrangler 4WD, 5 days", ("suv", "4-wheel-drive"), Money(61_000, "USD"),
                  ("full tank", "no insurance")),
    CatalogueItem("Jeep Grand Cherokee 4WD, 5 days", ("suv", "4-wheel-drive"),
                  Money(75_000, "USD")),
    CatalogueItem("Subaru Forester AWD, 5 days", ("suv", "awd"), Money(48_500, "USD")),
    CatalogueItem("Ski rack", ("ski",), Money(4_000, "USD")),
)  # fmt: skip
OBSERVED = (DataRecord("loyalty.tier", "gold", 9, "observed", 1_700_000_000_000, (2,)),)


class Harness:
    """Servers on 127.0.0.1 and one client session; closed at the end of the test."""

    def __init__(self, session: aiohttp.ClientSession, tmp: Path) -> None:
        self.session = session
        self.tmp = tmp
        self.servers: list[Server] = []
        self.stores: list[Any] = []

    async def start(self, *, sqlite: bool = False, **kw: Any) -> Server:
        if sqlite:
            store: Any = await SQLiteStore.open(self.tmp / f"vendor{len(self.stores)}.db")
        else:
            store = MemoryStore()
        self.stores.append(store)
        kw.setdefault("policy", ReferencePolicy(
            accepts_terms=ACCEPTED, catalogue=CATALOGUE, observed=OBSERVED, name="Avis"))
        kw.setdefault("name", "Avis")
        identity = kw.pop("identity", VENDOR)
        server = await serve(Endpoint(identity, store=store, **kw))
        self.servers.append(server)
        return server

    def customer(self, server: Server, **kw: Any) -> Customer:
        return Customer(server.endpoint.identity, base_url=server.url, **kw)

    async def close(self) -> None:
        for server in self.servers:
            await server.close()
        for store in self.stores:
            await store.close()


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with aiohttp.ClientSession() as session:
        harness = Harness(session, tmp_path)
        try:
            yield harness
        finally:
            await harness.close()


@pytest.fixture
async def vendor(h: Harness) -> Server:
    return await h.start(sqlite=True)


def types(received: list[Any]) -> list[str]:
    return [r.message.type for r in received]


# -- every message type, end to end -------------------------------------------------------------


async def test_offer_accepted_receipt_first_and_stored(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    offer = c.offer(*ACCEPTED)
    got = await c.deliver(h.session, offer)
    assert types(got) == ["receipt", "terms.accept"]
    assert got[0].message.body.ack == offer.hash
    assert isinstance(got[1].message.body, TermsAccept)
    assert c.rel.state is State.AGREED
    assert c.rel.agreement == offer.hash
    store = vendor.endpoint.store
    record = await store.get_relationship(c.thread)
    assert record is not None
    assert record.state == "agreed"
    assert record.role == "vendor"
    assert record.peer_key == c.identity.public_key
    rows = await store.history(c.thread)
    assert [r.direction for r in rows] == ["in", "out", "out"]
    assert [r.msg_hash for r in rows] == [e.msg_hash for e in c.rel.history.entries()]


async def test_offer_rejected_names_refused_terms(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    got = await c.deliver(h.session, c.offer("vrm.no-tracking", "vrm.delete-after"))
    assert types(got) == ["receipt", "terms.reject"]
    body = got[1].message.body
    assert body.refused == ("vrm.delete-after",)
    assert body.counter is None
    assert c.rel.state is State.REJECTED


async def test_offer_countered(h: Harness) -> None:
    counter = terms("vrm.purpose-only")
    server = await h.start(policy=ReferencePolicy(accepts_terms=ACCEPTED, counter=counter))
    c = h.customer(server)
    got = await c.deliver(h.session, c.offer("vrm.no-tracking", "vrm.delete-after"))
    assert types(got) == ["receipt", "terms.reject"]
    body = got[1].message.body
    assert body.refused == ("vrm.delete-after",)
    assert body.counter == (*terms("vrm.no-tracking"), *counter)
    assert c.rel.state is State.COUNTERED
    # The customer takes the counter up with a new offer, which is accepted... if acceptable.
    got = await c.deliver(h.session, c.send(TermsOffer(
        terms=terms("vrm.no-tracking"), enc_key=c.identity.enc_public_key)))  # fmt: skip
    assert types(got) == ["receipt", "terms.accept"]
    assert c.rel.agreement == got[1].message.body.offer


async def test_share_gets_a_receipt_and_becomes_held_data(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    await c.agree(h.session)
    share = c.share({"email": "ann@example.org", "postal_address": "1 Main St"})
    assert types(await c.deliver(h.session, share)) == ["receipt"]
    held = await vendor.endpoint.store.held(c.thread)
    assert {(x.field, x.value, x.source) for x in held} == {
        ("email", "ann@example.org", "provided"),
        ("postal_address", "1 Main St", "provided"),
    }
    assert all(x.share == share.hash and x.purposes == (2,) for x in held)
    assert all(x.expires_ms == share.body.expires for x in held)


async def test_a_share_withdrawn_twice_in_one_message_is_confirmed_once(
    h: Harness, vendor: Server
) -> None:
    """§5.3.3-2: data.erased lists the withdrawn shares, each once, however often the
    data.withdraw named it."""
    c = h.customer(vendor)
    await c.agree(h.session)
    share = c.share({"email": "ann@example.org"})
    await c.deliver(h.session, share)
    got = await c.deliver(h.session, c.withdraw(share.hash, share.hash))
    assert types(got) == ["receipt", "data.erased"]
    assert got[1].message.body.shares == (share.hash,)


async def test_withdraw_erases_exactly_the_withdrawn_share(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    await c.agree(h.session)
    first = c.share({"email": "ann@example.org"})
    await c.deliver(h.session, first)
    second = c.share({"phone": "+1 555 0100"})
    await c.deliver(h.session, second)
    withdraw = c.withdraw(first.hash)
    got = await c.deliver(h.session, withdraw)
    assert types(got) == ["receipt", "data.erased"]
    assert got[1].message.body.withdraw == withdraw.hash
    assert got[1].message.body.shares == (first.hash,)
    assert set(c.rel.shares) == {second.hash}
    store = vendor.endpoint.store
    held = await store.held(c.thread)
    assert [x.field for x in held] == ["phone"]
    erased = await store.history_entry(c.thread, first.hash)
    kept = await store.history_entry(c.thread, second.hash)
    assert erased is not None
    assert kept is not None
    assert open_envelope(erased.envelope, now=0, check_time=False, allow_erased=True).erased
    assert not open_envelope(kept.envelope, now=0, check_time=False).erased
    # The vendor's history still verifies, erased body and all (§8.4).
    reply = await post(h.session, vendor.url + DEFAULT_HISTORY_PATH, c_history_request(c))
    verify_entries(decode_history(reply.body))


async def test_request_returns_held_and_observed_records(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    await c.agree(h.session)
    await c.deliver(h.session, c.share({"email": "ann@example.org"}, purposes=(3, 4)))
    got = await c.deliver(h.session, c.request())
    assert types(got) == ["receipt", "data.return"]
    content = got[1].content
    assert isinstance(content, RecordsContent)
    provided = [r for r in content.records if r.source == "provided"]
    assert [(r.field, r.value, r.category, r.purposes) for r in provided] == [
        ("email", "ann@example.org", 2, (3, 4))
    ]
    assert [r for r in content.records if r.source == "observed"] == list(OBSERVED)


async def test_address_update_replaces_the_held_value(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    await c.agree(h.session)
    share = c.share({"postal_address": "1 Main St"}, purposes=(3,))
    await c.deliver(h.session, share)
    update = c.address({"postal_address": "9 Elm St", "phone": "+1 555 0199"})
    assert types(await c.deliver(h.session, update)) == ["receipt"]
    held = await vendor.endpoint.store.held(c.thread)
    by_field = {x.field: x for x in held}
    assert by_field["postal_address"].value == "9 Elm St"
    assert by_field["postal_address"].purposes == (3,)  # kept from the share
    # held as the value it replaces: withdrawn or expired with its share (§5.3.6-2)
    assert by_field["postal_address"].share == share.hash
    assert by_field["postal_address"].expires_ms == share.body.expires
    assert (by_field["phone"].share, by_field["phone"].expires_ms) == (update.hash, None)
    content = (await c.deliver(h.session, c.request()))[1].content
    assert isinstance(content, RecordsContent)
    assert {r.value for r in content.records if r.source == "provided"} == {
        "9 Elm St", "+1 555 0199"}  # fmt: skip


def intentcast(what: str, *constraints: str, max_price: Money | None = None) -> Intentcast:
    return Intentcast(what=what, reply_by=now_ms() + DAY_MS, constraints=constraints,
                      memberships=("Avis Wizard",), where="Park City", max_price=max_price)


async def test_intentcast_gets_the_cheapest_matching_offer(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)  # a throw-away key on a fresh thread
    cast = c.send(intentcast("A 4-wheel-drive SUV in Park City", "no prepaid gas"))
    got = await c.deliver(h.session, cast)
    assert types(got) == ["receipt", "intent.offer"]
    offer = got[1].message.body
    assert isinstance(offer, IntentOffer)
    assert offer.intent == cast.hash
    assert offer.description.startswith("Jeep")
    assert offer.price == Money(61_000, "USD")
    assert offer.accepts_terms == ACCEPTED
    c2 = h.customer(vendor)
    got = await c2.deliver(h.session, c2.send(intentcast("An SUV for skiing", "AWD please")))
    assert got[1].message.body.description.startswith("Subaru")


async def test_intentcast_declined_when_nothing_fits(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    got = await c.deliver(h.session, c.send(
        intentcast("An SUV", max_price=Money(10_000, "USD"))))  # fmt: skip
    assert types(got) == ["receipt", "intent.decline"]
    assert c.rel.state is State.INTENT_DECLINED


async def test_key_rotation_then_new_key_works_and_old_key_is_refused(
    h: Harness, vendor: Server
) -> None:
    c = h.customer(vendor)
    await c.agree(h.session)
    old = c.identity
    new = Identity(os.urandom(32))
    rotate = c.rel.rotate(new, now=now_ms(), msg_id=os.urandom(16)).message
    assert types(c.absorb(await post(h.session, c.inbox, rotate.envelope), rotate)) == ["receipt"]
    record = await vendor.endpoint.store.get_relationship(c.thread)
    assert record is not None
    assert record.peer_key == new.public_key
    got = await c.deliver(h.session, c.share({"email": "new@example.org"}))
    assert types(got) == ["receipt"]
    stale = sign_message(RelationshipEnd(reason="from the old key"), identity=old,
                         recipient=VENDOR.public_key, thread=c.thread, prev=c.rel.our_head,
                         now=now_ms(), msg_id=os.urandom(16))  # fmt: skip
    reply = await post(h.session, c.inbox, stale.envelope)
    assert reply.status == 403
    assert reply.problem().body.code == "key_rotated"


async def test_relationship_end_then_nothing_more(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    await c.agree(h.session)
    got = await c.deliver(h.session, c.send(RelationshipEnd(reason="moving on")))
    assert types(got) == ["receipt"]
    assert c.rel.state is State.ENDED
    record = await vendor.endpoint.store.get_relationship(c.thread)
    assert record is not None
    assert record.state == "ended"
    late = sign_message(RelationshipEnd(), identity=c.identity, recipient=VENDOR.public_key,
                        thread=c.thread, prev=c.rel.our_head, now=now_ms(),
                        msg_id=os.urandom(16))  # fmt: skip
    reply = await post(h.session, c.inbox, late.envelope)
    assert reply.status == 409
    assert reply.problem().body.code == "illegal_transition"


async def test_a_receipt_for_a_reply_is_stored_and_answered_204(h: Harness, vendor: Server) -> (
    None
):
    c = h.customer(vendor)
    await c.agree(h.session)
    accept_hash = c.rel.peer_head
    assert accept_hash is not None
    receipt = c.send(Receipt(ack=accept_hash))
    for _ in range(2):  # the replay gets the same (empty) answer
        reply = await post(h.session, c.inbox, receipt.envelope)
        assert reply.status == 204
        assert reply.body == b""
    rows = await vendor.endpoint.store.history(c.thread)
    assert rows[-1].msg_hash == receipt.hash
    assert rows[-1].direction == "in"
    assert [r.msg_hash for r in rows] == [e.msg_hash for e in c.rel.history.entries()]


async def test_a_problem_from_the_peer_is_heard_not_stored(h: Harness, vendor: Server) -> None:
    events: list[Event] = []

    async def hook(event: Event) -> None:
        events.append(event)

    vendor.endpoint.subscribe(hook)
    c = h.customer(vendor)
    await c.agree(h.session)
    problem = sign_problem(Problem.INVALID_FIELD, "your accept looked odd", identity=c.identity,
                           now=now_ms(), msg_id=os.urandom(16), to=VENDOR.public_key,
                           thread=c.thread)  # fmt: skip
    reply = await post(h.session, c.inbox, problem.envelope)
    assert reply.status == 204
    await vendor.endpoint.drain()
    assert [e.kind for e in events] == ["terms.offer", "problem"]
    assert len(await vendor.endpoint.store.history(c.thread)) == 3


@pytest.mark.parametrize(("code", "final"), [
    ("invalid_field", True),  # a code that may not be retried
    ("vendor_specific_failure", True),  # a code this version does not know (§9.1-8)
    ("rate_limited", False),  # a code that may be retried: the reply stands
])  # fmt: skip
async def test_a_final_problem_about_our_last_reply_takes_it_back(
    h: Harness, vendor: Server, code: str, final: bool
) -> None:
    """§8.1-5, §9.1-8: a problem naming the vendor's terms.accept, with a code that may not be
    retried — an unknown code among them — drops the accept from the vendor's history."""
    c = h.customer(vendor)
    got = await c.deliver(h.session, c.offer(*ACCEPTED))
    accept = got[1].message
    assert accept.type == "terms.accept"
    body = ProblemReport(code=code, detail="your accept looked odd", ref=accept.hash)
    problem = sign_message(body, identity=c.identity, recipient=VENDOR.public_key,
                           thread=c.thread, prev=None, now=now_ms(),
                           msg_id=os.urandom(16))  # fmt: skip
    reply = await post(h.session, c.inbox, problem.envelope)
    assert reply.status == 204
    kept = await vendor.endpoint.store.history_entry(c.thread, accept.hash)
    assert (kept is None) is final
    record = await vendor.endpoint.store.get_relationship(c.thread)
    assert record is not None
    assert record.state == ("offered" if final else "agreed")
    points = await vendor.endpoint.store.save_points(c.thread)
    assert [p.msg_hash for p in points] == ([] if final else [accept.hash])


# -- receipts, discovery, history export --------------------------------------------------------


async def test_receipt_verifies_and_acknowledges_our_hash(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    offer = c.offer(*ACCEPTED)
    reply = await post(h.session, c.inbox, offer.envelope)
    receipt = open_envelope(decode_replies(reply.body, limits=DEFAULT_LIMITS)[0], now=now_ms(),
                            recipients=(c.identity.public_key,))  # fmt: skip
    assert receipt.sender == VENDOR.public_key
    assert receipt.thread == c.thread
    assert receipt.body.ack == offer.hash
    assert receipt.header.prev is None


async def test_discovery_verifies_and_a_tampered_copy_does_not(h: Harness, vendor: Server) -> (
    None
):
    async with h.session.get(vendor.url + WELL_KNOWN_PATH) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body, sig = await resp.read(), resp.headers[SIGNATURE_HEADER]
    doc = verify_discovery(body, sig, now=now_ms(), expected_key=VENDOR.public_key)
    assert doc.role == "vendor"
    assert doc.name == "Avis"
    assert doc.inbox == DEFAULT_INBOX_PATH
    assert doc.history == DEFAULT_HISTORY_PATH
    assert doc.accepts_terms == ACCEPTED
    assert doc.limits == DEFAULT_LIMITS.to_wire()
    assert "terms.offer" in doc.types
    assert "terms.accept" not in doc.types
    assert "receipt" in doc.types
    assert "data.share" in doc.types
    for i in (0, len(body) // 2, len(body) - 2):
        tampered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
        with pytest.raises(ProtocolError):
            verify_discovery(tampered, sig, now=now_ms())
    # Cached: the same bytes until it is half expired.
    async with h.session.get(vendor.url + WELL_KNOWN_PATH) as resp:
        assert await resp.read() == body


async def test_discovery_is_re_signed_near_expiry(h: Harness) -> None:
    clock = [1_800_000_000_000]
    server = await h.start(clock=lambda: clock[0], discovery_lifetime_ms=60_000)
    first = server.endpoint.discovery()
    clock[0] += 29_000
    assert server.endpoint.discovery() == first
    clock[0] += 2_000
    second = server.endpoint.discovery()
    assert second != first
    doc = verify_discovery(*second, now=clock[0])
    assert doc.expires == clock[0] + 60_000


def c_history_request(c: Customer, start: int = 0, identity: Identity | None = None) -> bytes:
    return sign_history_request(identity or c.identity, thread=c.thread,
                                recipient=VENDOR.public_key, now=now_ms(),
                                nonce=os.urandom(16), start=start)  # fmt: skip


async def test_history_export_matches_the_customers_own(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    await c.agree(h.session)
    await c.deliver(h.session, c.share({"email": "ann@example.org"}))
    reply = await post(h.session, vendor.url + DEFAULT_HISTORY_PATH, c_history_request(c))
    assert reply.status == 200
    assert reply.headers["Content-Type"] == CONTENT_TYPE
    theirs = decode_history(reply.body)
    verify_entries(theirs)
    ours = list(c.rel.history.entries())
    assert compare(ours, theirs) is None
    later = decode_history((await post(h.session, vendor.url + DEFAULT_HISTORY_PATH,
                                       c_history_request(c, start=3))).body)  # fmt: skip
    assert [e.index for e in later] == [3, 4]
    beyond = await post(h.session, vendor.url + DEFAULT_HISTORY_PATH, c_history_request(c, 99))
    assert decode_history(beyond.body) == []


async def test_history_export_refuses_others(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    await c.agree(h.session)
    url = vendor.url + DEFAULT_HISTORY_PATH
    stranger = await post(h.session, url, c_history_request(c, identity=Identity(os.urandom(32))))
    assert stranger.status == 403
    assert stranger.problem().body.code == "not_a_party"
    unknown = h.customer(vendor)
    missing = await post(h.session, url, c_history_request(unknown))
    assert missing.status == 404
    assert missing.problem().body.code == "no_relationship"
    forged = bytearray(c_history_request(c))
    forged[-5] ^= 1
    bad = await post(h.session, url, bytes(forged))
    assert bad.status == 401
    assert bad.problem().body.code == "bad_signature"


# -- idempotency and concurrency (§12.6) --------------------------------------------------------


async def test_ten_concurrent_identical_sends_coalesce(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    offer = c.offer(*ACCEPTED)
    replies = await asyncio.gather(*(post(h.session, c.inbox, offer.envelope) for _ in range(10)))
    assert {r.status for r in replies} == {200}
    assert len({r.body for r in replies}) == 1
    c.absorb(replies[0], offer)
    rows = await vendor.endpoint.store.history(c.thread)
    assert [r.msg_hash for r in rows if r.direction == "in"] == [offer.hash]
    assert len(rows) == 3
    # And later, sequentially: the same stored bytes.
    again = await post(h.session, c.inbox, offer.envelope)
    assert again.status == 200
    assert again.body == replies[0].body


async def test_same_id_other_bytes_is_an_id_conflict(h: Harness, vendor: Server) -> None:
    c = h.customer(vendor)
    offer = c.offer(*ACCEPTED)
    c.absorb(await post(h.session, c.inbox, offer.envelope), offer)
    share = c.share({"email": "a@example.org"})
    clash = sign_message(share.body, identity=c.identity, recipient=VENDOR.public_key,
                         thread=c.thread, prev=share.header.prev, now=now_ms(),
                         msg_id=offer.id)  # fmt: skip
    reply = await post(h.session, c.inbox, clash.envelope)
    assert reply.status == 409
    problem = reply.problem()
    assert problem.body.code == "id_conflict"
    assert problem.body.ref == clash.hash
    assert problem.recipient == c.identity.public_key
    assert problem.thread == c.thread


async def test_concurrent_messages_of_one_thread_are_applied_in_order(
    h: Harness, vendor: Server
) -> None:
    c = h.customer(vendor)
    await c.agree(h.session)
    shares = [c.share({"email": f"ann{i}@example.org"}) for i in range(5)]
    replies = await asyncio.gather(*(post(h.session, c.inbox, s.envelope) for s in shares))
    # Delivered concurrently, out of order: each one either links or is refused, never stored
    # twice or out of order (§12.8).
    assert all(r.status in (200, 409) for r in replies)
    rows = await vendor.endpoint.store.history(c.thread)
    verify_entries(decode_history((await post(h.session, vendor.url + DEFAULT_HISTORY_PATH,
                                              c_history_request(c))).body))  # fmt: skip
    assert len({r.msg_hash for r in rows}) == len(rows)


# -- hooks (§12.12) ---------------------------------------------------------------------------


async def test_hooks_run_after_commit_and_never_delay_or_fail_a_receipt(
    h: Harness, vendor: Server
) -> None:
    release = asyncio.Event()
    seen: list[tuple[str, bool]] = []
    store = vendor.endpoint.store

    async def slow(event: Event) -> None:
        stored = await store.history_entry(event.thread, event.message.hash)
        seen.append((event.kind, stored is not None))
        await release.wait()

    async def failing(event: Event) -> None:
        raise RuntimeError("a broken CRM connector")

    vendor.endpoint.subscribe(slow)
    unsubscribe = vendor.endpoint.subscribe(failing)
    c = h.customer(vendor)
    await c.agree(h.session)  # answered while `slow` still waits
    share = c.share({"email": "ann@example.org"})
    assert types(await c.deliver(h.session, share)) == ["receipt"]
    unsubscribe()
    release.set()
    await vendor.endpoint.drain()
    assert seen == [("terms.offer", True), ("data.share", True)]


async def test_hook_event_carries_the_opened_content(h: Harness, vendor: Server) -> None:
    got: asyncio.Queue[Event] = asyncio.Queue()

    async def hook(event: Event) -> None:
        await got.put(event)

    vendor.endpoint.subscribe(hook)
    c = h.customer(vendor)
    await c.agree(h.session)
    await c.deliver(h.session, c.share({"email": "ann@example.org"}))
    first, second = await got.get(), await got.get()
    assert (first.kind, second.kind) == ("terms.offer", "data.share")
    assert isinstance(second.content, FieldsContent)
    assert dict(second.content.fields) == {"email": "ann@example.org"}


# -- the customer agent endpoint (§12.11) ------------------------------------------------------


async def test_customer_agent_endpoint_takes_vendor_initiated_messages(h: Harness) -> None:
    seed = os.urandom(32)
    me = Identity(seed)
    store = MemoryStore()
    # The customer offered earlier (through their client), the vendor acknowledged it and
    # decides later, posting its accept to the customer's agent endpoint.
    cust = Relationship(role=Role.CUSTOMER, identity=me, thread=os.urandom(16),
                        peer_key=VENDOR.public_key, peer_enc_key=VENDOR.enc_public_key)  # fmt: skip
    vend = Relationship(role=Role.VENDOR, identity=VENDOR, thread=cust.thread)
    offer = cust.send(TermsOffer(terms=terms(*ACCEPTED), enc_key=me.enc_public_key),
                      now=now_ms(), msg_id=os.urandom(16)).message  # fmt: skip
    vend.receive(offer.envelope, now=now_ms())
    receipt = vend.send(offer.receipt(), now=now_ms(), msg_id=os.urandom(16)).message
    cust.receive(receipt.envelope, now=now_ms())
    await store.commit(Commit(
        relationships=(RelationshipRecord(cust.thread, "customer", me.public_key,
                                          VENDOR.public_key, cust.state.value, cust.to_state(),
                                          "Avis", "", now_ms()),),
        history=tuple(HistoryEntry(cust.thread, e.index, e.msg_hash, e.link, e.envelope,
                                   "out" if e.outgoing else "in", now_ms())
                      for e in cust.history.entries()),
    ))  # fmt: skip
    keys = {me.public_key: me}
    agent = Endpoint(Identity(os.urandom(32)), store=store, role=Role.CUSTOMER,
                     identity_for=lambda record: keys[record.local_key], name="Ann's agent")
    server = await serve(agent)
    h.servers.append(server)
    accept = vend.send(offer.accept(), now=now_ms(), msg_id=os.urandom(16)).message
    reply = await post(h.session, server.url + DEFAULT_INBOX_PATH, accept.envelope)
    assert reply.status == 200
    envs = decode_replies(reply.body, limits=DEFAULT_LIMITS)
    assert len(envs) == 1
    got = vend.receive(envs[0], now=now_ms())
    assert got.message.type == "receipt"
    assert got.message.sender == me.public_key
    record = await store.get_relationship(cust.thread)
    assert record is not None
    assert record.state == "agreed"
    # A vendor cannot open a relationship with a customer.
    opened = sign_message(offer.accept(), identity=VENDOR, recipient=me.public_key,
                          thread=os.urandom(16), prev=None, now=now_ms(),
                          msg_id=os.urandom(16))  # fmt: skip
    reply = await post(h.session, server.url + DEFAULT_INBOX_PATH, opened.envelope)
    assert reply.status == 404
    assert reply.problem().body.code == "no_relationship"
    async with h.session.get(server.url + WELL_KNOWN_PATH) as resp:
        doc = verify_discovery(await resp.read(), resp.headers[SIGNATURE_HEADER], now=now_ms())
    assert doc.role == "customer"
    assert "terms.accept" in doc.types
    assert "terms.offer" not in doc.types


# -- every problem code over HTTP, with its status (§12.4) --------------------------------------

Provoke = Callable[["Harness"], Awaitable[Reply]]
PROVOKE: dict[Problem, Provoke] = {}


def provokes(code: Problem) -> Callable[[Provoke], Provoke]:
    def register(fn: Provoke) -> Provoke:
        PROVOKE[code] = fn
        return fn

    return register


async def _agreed(h: Harness, **kw: Any) -> tuple[Server, Customer]:
    server = await h.start(**kw)
    c = h.customer(server)
    await c.agree(h.session)
    return server, c


def _raw_offer(c: Customer, **header: Any) -> bytes:
    body = encode(TermsOffer(terms=terms("vrm.no-tracking"),
                             enc_key=c.identity.enc_public_key).to_wire())  # fmt: skip
    return craft(c.identity, header_for(c.identity, VENDOR.public_key, body, **header), body)


@provokes(Problem.MALFORMED)
async def _malformed(h: Harness) -> Reply:
    server = await h.start()
    return await post(h.session, server.url + DEFAULT_INBOX_PATH, b"\xc1 not msgpack")


@provokes(Problem.TOO_LARGE)
async def _too_large(h: Harness) -> Reply:
    server = await h.start()
    data = bytes(DEFAULT_LIMITS.max_envelope_bytes + 1)
    return await post(h.session, server.url + DEFAULT_INBOX_PATH, data)


@provokes(Problem.INVALID_FIELD)
async def _invalid_field(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    now = now_ms()
    return await post(h.session, c.inbox, _raw_offer(c, created=now, expires=now + 8 * DAY_MS))


@provokes(Problem.UNSUPPORTED_VERSION)
async def _unsupported_version(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    reply = await post(h.session, c.inbox, _raw_offer(c, v=2))
    assert reply.problem().body.supported_versions == (1,)
    return reply


@provokes(Problem.UNKNOWN_TYPE)
async def _unknown_type(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    return await post(h.session, c.inbox, _raw_offer(c, type="terms.haggle"))


@provokes(Problem.ENVELOPE_MISMATCH)
async def _envelope_mismatch(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    body = encode(TermsOffer(terms=terms("vrm.no-tracking"),
                             enc_key=c.identity.enc_public_key).to_wire())  # fmt: skip
    data = craft(c.identity, header_for(c.identity, VENDOR.public_key, body), body,
                 envelope={"to": VENDOR.public_key, "type": "receipt"})  # fmt: skip
    return await post(h.session, c.inbox, data)


@provokes(Problem.BAD_SIGNATURE)
async def _bad_signature(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    body = encode(TermsOffer(terms=terms("vrm.no-tracking"),
                             enc_key=c.identity.enc_public_key).to_wire())  # fmt: skip
    hdr = header_for(c.identity, VENDOR.public_key, body)
    sig = bytearray(c.identity.sign(Context.MESSAGE, encode(hdr)))
    sig[10] ^= 0x40
    return await post(h.session, c.inbox, craft(c.identity, hdr, body, signature=bytes(sig)))


@provokes(Problem.BAD_KEY)
async def _bad_key(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    small_order = bytes([1]) + bytes(31)  # the identity point: small order, never a valid key
    body = b"\x80"
    hdr = header_for(c.identity, VENDOR.public_key, body, **{"from": small_order})
    return await post(h.session, c.inbox, craft(c.identity, hdr, body, signature=bytes(64)))


@provokes(Problem.EXPIRED)
async def _expired(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    then = now_ms() - 3 * DAY_MS
    reply = await post(h.session, c.inbox, _raw_offer(c, created=then, expires=then + DAY_MS))
    assert reply.problem().body.server_time is not None
    return reply


@provokes(Problem.CLOCK_SKEW)
async def _clock_skew(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    later = now_ms() + 3_600_000
    reply = await post(h.session, c.inbox, _raw_offer(c, created=later, expires=later + DAY_MS))
    server_time = reply.problem().body.server_time
    assert server_time is not None
    assert abs(server_time - now_ms()) < 60_000
    return reply


@provokes(Problem.WRONG_RECIPIENT)
async def _wrong_recipient(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    other = Identity(os.urandom(32)).public_key
    return await post(h.session, c.inbox, _raw_offer(c, to=other))


@provokes(Problem.ID_CONFLICT)
async def _id_conflict(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    first = _raw_offer(c)
    assert (await post(h.session, c.inbox, first)).status == 200
    msg_id = open_envelope(first, now=now_ms()).id
    return await post(h.session, c.inbox, _raw_offer(c, id=msg_id))


@provokes(Problem.UNKNOWN_TERM)
async def _unknown_term(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    fake = TermRef("vrm.no-tracking", 1, bytes(32))
    body = encode(TermsOffer(terms=(fake,), enc_key=c.identity.enc_public_key).to_wire())
    return await post(h.session, c.inbox,
                      craft(c.identity, header_for(c.identity, VENDOR.public_key, body), body))


@provokes(Problem.NO_AGREEMENT)
async def _no_agreement(h: Harness) -> Reply:
    _, c = await _agreed(h)
    msg_id = os.urandom(16)
    sealed = c.rel.seal(FieldsContent(fields={"email": "a@example.org"}), msg_id=msg_id)
    share = DataShare(agreement=os.urandom(32), purposes=(2,), categories=(2,),
                      expires=now_ms() + DAY_MS, sealed=sealed)  # fmt: skip
    msg = sign_message(share, identity=c.identity, recipient=VENDOR.public_key, thread=c.thread,
                       prev=c.rel.our_head, now=now_ms(), msg_id=msg_id)  # fmt: skip
    return await post(h.session, c.inbox, msg.envelope)


@provokes(Problem.NO_RELATIONSHIP)
async def _no_relationship(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    msg = sign_message(RelationshipEnd(), identity=c.identity, recipient=VENDOR.public_key,
                       thread=c.thread, prev=None, now=now_ms(), msg_id=os.urandom(16))  # fmt: skip
    return await post(h.session, c.inbox, msg.envelope)


@provokes(Problem.NOT_A_PARTY)
async def _not_a_party(h: Harness) -> Reply:
    server, c = await _agreed(h)
    intruder = h.customer(server, thread=c.thread)
    return await post(h.session, c.inbox, intruder.offer("vrm.no-tracking").envelope)


@provokes(Problem.ILLEGAL_TRANSITION)
async def _illegal_transition(h: Harness) -> Reply:
    _, c = await _agreed(h)
    again = TermsOffer(terms=terms("vrm.no-tracking"), enc_key=c.identity.enc_public_key)
    msg = sign_message(again, identity=c.identity, recipient=VENDOR.public_key, thread=c.thread,
                       prev=c.rel.our_head, now=now_ms(), msg_id=os.urandom(16))  # fmt: skip
    return await post(h.session, c.inbox, msg.envelope)


@provokes(Problem.CHAIN_BROKEN)
async def _chain_broken(h: Harness) -> Reply:
    _, c = await _agreed(h)
    msg = sign_message(RelationshipEnd(), identity=c.identity, recipient=VENDOR.public_key,
                       thread=c.thread, prev=os.urandom(32), now=now_ms(),
                       msg_id=os.urandom(16))  # fmt: skip
    return await post(h.session, c.inbox, msg.envelope)


@provokes(Problem.CANNOT_DECRYPT)
async def _cannot_decrypt(h: Harness) -> Reply:
    _, c = await _agreed(h)
    assert c.rel.agreement is not None
    msg_id = os.urandom(16)
    elsewhere = Identity(os.urandom(32))
    sealed = seal_content(FieldsContent(fields={"email": "a@example.org"}), identity=c.identity,
                          recipient=VENDOR.public_key, recipient_enc_key=elsewhere.enc_public_key,
                          msg_id=msg_id)  # fmt: skip
    share = DataShare(agreement=c.rel.agreement, purposes=(2,), categories=(2,),
                      expires=now_ms() + DAY_MS, sealed=sealed)  # fmt: skip
    return await post(h.session, c.inbox, c.send(share, msg_id=msg_id).envelope)


async def _after_rotation(h: Harness, reason: str) -> Reply:
    _, c = await _agreed(h)
    old = c.identity
    rotate = c.rel.rotate(Identity(os.urandom(32)), now=now_ms(), msg_id=os.urandom(16),
                          reason=reason).message  # fmt: skip
    c.absorb(await post(h.session, c.inbox, rotate.envelope), rotate)
    stale = sign_message(RelationshipEnd(), identity=old, recipient=VENDOR.public_key,
                         thread=c.thread, prev=c.rel.our_head, now=now_ms(),
                         msg_id=os.urandom(16))  # fmt: skip
    return await post(h.session, c.inbox, stale.envelope)


@provokes(Problem.KEY_ROTATED)
async def _key_rotated(h: Harness) -> Reply:
    return await _after_rotation(h, "rotate")


@provokes(Problem.KEY_REVOKED)
async def _key_revoked(h: Harness) -> Reply:
    return await _after_rotation(h, "compromise")


@provokes(Problem.RATE_LIMITED)
async def _rate_limited(h: Harness) -> Reply:
    server = await h.start(limits=Limits(rate_per_sender_per_minute=1))
    c = h.customer(server)
    await c.agree(h.session)
    reply = await post(h.session, c.inbox, c.share({"email": "a@example.org"}).envelope)
    assert reply.headers["Retry-After"] == "60"
    assert reply.problem().body.retry_after == 60
    return reply


@provokes(Problem.STORAGE_FULL)
async def _storage_full(h: Harness) -> Reply:
    no_room = StorageBudget(min_free_bytes=2**62, reserve_free_bytes=2**62)  # any disk is "full"
    server = await h.start(sqlite=True, storage=no_room)
    c = h.customer(server)
    reply = await post(h.session, c.inbox, c.offer(*ACCEPTED).envelope)
    assert reply.headers["Retry-After"] == str(no_room.retry_after_s)
    assert reply.problem().body.retry_after == no_room.retry_after_s
    return reply


@provokes(Problem.UNSUPPORTED_MEDIA_TYPE)
async def _unsupported_media_type(h: Harness) -> Reply:
    server = await h.start()
    c = h.customer(server)
    return await post(h.session, c.inbox, c.offer(*ACCEPTED).envelope, content_type="text/plain")


@provokes(Problem.METHOD_NOT_ALLOWED)
async def _method_not_allowed(h: Harness) -> Reply:
    server = await h.start()
    async with h.session.get(server.url + DEFAULT_INBOX_PATH) as resp:
        assert resp.headers["Allow"] == "POST"
        return Reply(resp.status, await resp.read(), dict(resp.headers))


@provokes(Problem.NOT_FOUND)
async def _not_found(h: Harness) -> Reply:
    server = await h.start()
    return await post(h.session, server.url + "/vrm/nothing-here", b"")


@provokes(Problem.REQUEST_TIMEOUT)
async def _request_timeout(h: Harness) -> Reply:
    server = await h.start(limits=Limits(body_read_timeout_ms=200))
    return await raw_request(server, (
        f"POST {DEFAULT_INBOX_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {CONTENT_TYPE}\r\nContent-Length: 1000\r\n\r\n"
    ).encode() + b"\x83" * 10)  # fmt: skip


@provokes(Problem.UNAUTHORIZED)
async def _unauthorized(h: Harness) -> Reply:
    server, c = await _agreed(h)
    unsigned = encode({"req": encode({"thread": c.thread})})  # no signature at all
    return await post(h.session, server.url + DEFAULT_HISTORY_PATH, unsigned)


async def raw_request(server: Server, request: bytes) -> Reply:
    """Send raw bytes, read one HTTP/1.1 response (the body sized by Content-Length)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        body = await reader.readexactly(int(headers.get("Content-Length", "0")))
        return Reply(status, body, headers)
    finally:
        writer.close()


def test_every_problem_but_internal_error_has_a_provocation() -> None:
    assert set(PROVOKE) == set(Problem) - {Problem.INTERNAL}


CODES = sorted(PROVOKE, key=lambda p: p.value)


@pytest.mark.parametrize("code", CODES, ids=[p.value for p in CODES])
async def test_problem_over_http(h: Harness, code: Problem) -> None:
    reply = await PROVOKE[code](h)
    assert reply.status == code.status, (reply.status, reply.body[:300])
    assert reply.headers["Content-Type"] == CONTENT_TYPE
    problem = open_envelope(reply.body, now=now_ms())
    assert problem.type == "problem"
    assert problem.sender == VENDOR.public_key
    assert problem.body.code == code.value
    assert problem.header.prev is None


async def test_problem_is_addressed_to_the_sender_and_names_the_message(h: Harness) -> None:
    server = await h.start()
    c = h.customer(server)
    data = _raw_offer(c, type="terms.haggle")
    problem = (await post(h.session, c.inbox, data)).problem()
    assert problem.recipient == c.identity.public_key
    assert problem.body.ref is not None
    assert len(problem.body.ref) == 32
    assert problem.body.clause
    assert problem.body.path == "$.hdr.type"


async def test_address_rate_limit_comes_before_the_body(h: Harness) -> None:
    clock = [1_800_000_000_000]
    server = await h.start(limits=Limits(rate_per_address_per_minute=2),
                           clock=lambda: clock[0])  # fmt: skip
    url = server.url + WELL_KNOWN_PATH
    statuses = []
    for _ in range(3):
        async with h.session.get(url) as resp:
            statuses.append(resp.status)
            if resp.status == 429:
                assert resp.headers["Retry-After"] == "30"
                open_envelope(await resp.read(), now=clock[0])
    assert statuses == [200, 200, 429]
    clock[0] += 30_000
    async with h.session.get(url) as resp:
        assert resp.status == 200


async def test_forged_messages_do_not_spend_a_senders_allowance(h: Harness) -> None:
    server = await h.start(limits=Limits(rate_per_sender_per_minute=2))
    c = h.customer(server)
    for _ in range(5):  # claims to come from c, signature does not verify
        forged = bytearray(_raw_offer(c))
        forged[-70] ^= 1
        assert (await post(h.session, c.inbox, bytes(forged))).status in (400, 401)
    await c.agree(h.session)


# -- the spec's status table is the code's (§12.4) ---------------------------------------------


def test_spec_status_table_matches_the_code() -> None:
    text = SPEC.read_text(encoding="utf-8")
    section = text.split("Table 12-1", 1)[1]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", section, flags=re.MULTILINE)
    assert rows, "table 12-1 not found"
    assert {code: int(status) for code, status in rows} == {
        p.value: p.status for p in Problem
    }
    assert len(rows) == len(Problem)


def test_reference_policy_refuses_a_counter_it_could_never_send() -> None:
    with pytest.raises(ProtocolError):
        ReferencePolicy(counter=(TermRef("vrm.no-tracking", 1, bytes(32)),))


def test_a_customer_endpoint_needs_identity_for() -> None:
    with pytest.raises(ValueError, match="identity_for"):
        Endpoint(VENDOR, store=MemoryStore(), role=Role.CUSTOMER)


async def test_endpoint_without_http_answers_the_same(h: Harness) -> None:
    endpoint = Endpoint(VENDOR, store=MemoryStore(), policy=ReferencePolicy(accepts_terms=ACCEPTED))
    c = Customer(VENDOR)
    offer = c.offer(*ACCEPTED)
    response = await endpoint.handle_inbox(offer.envelope, client="test")
    c.absorb(Reply(response.status, response.body, dict(response.headers)), offer)
    assert c.rel.state is State.AGREED
    assert (await endpoint.handle_inbox(b"")).status == 400


async def test_intentcast_after_its_deadline_gets_only_a_receipt(h: Harness, vendor: Server) -> (
    None
):
    c = h.customer(vendor)
    late = Intentcast(what="An SUV", reply_by=now_ms() - 1, constraints=(), memberships=())
    assert types(await c.deliver(h.session, c.send(late))) == ["receipt"]


async def test_a_share_with_a_field_vrm_data_cannot_hold_is_refused(
    h: Harness, vendor: Server
) -> None:
    c = h.customer(vendor)
    await c.agree(h.session)
    share = c.share({"Favourite Colour": "blue"})
    reply = await post(h.session, c.inbox, share.envelope)
    assert reply.status == 400
    problem = reply.problem().body
    assert problem.code == "invalid_field"
    assert problem.clause == "§6.8-2"
    assert problem.path.startswith("$.sealed.content.fields.")
    # Nothing was stored: the customer's chain must be rebuilt; the vendor has 3 entries.
    assert len(await vendor.endpoint.store.history(c.thread)) == 3


async def test_key_rotate_message_changes_the_stored_peer(h: Harness) -> None:
    server, c = await _agreed(h)
    old_identity = c.identity
    new = Identity(os.urandom(32))
    rotate = c.rel.rotate(new, now=now_ms(), msg_id=os.urandom(16)).message
    assert isinstance(rotate.body, KeyRotate)
    c.absorb(await post(h.session, c.inbox, rotate.envelope), rotate)
    history = await post(h.session, server.url + DEFAULT_HISTORY_PATH,
                         c_history_request(c, identity=new))  # fmt: skip
    assert history.status == 200
    old = await post(h.session, server.url + DEFAULT_HISTORY_PATH,
                     c_history_request(c, identity=old_identity))  # fmt: skip
    assert old.status == 403
    assert old.problem().body.code == "not_a_party"


async def test_a_problem_is_never_answered_with_a_problem(h: Harness, vendor: Server) -> None:
    """§12.3-5: a refused problem gets its status and an empty body."""
    c = h.customer(vendor)
    elsewhere = Identity(os.urandom(32)).public_key
    problem = sign_problem(Problem.MALFORMED, "x", identity=c.identity, now=now_ms(),
                           msg_id=os.urandom(16), to=elsewhere)  # fmt: skip
    reply = await post(h.session, c.inbox, problem.envelope)
    assert reply.status == 421
    assert reply.body == b""


async def test_two_processes_on_one_database(h: Harness, tmp_path: Path) -> None:
    """§12.7-4: the store's uniqueness rules make a step happen once across processes."""
    db = tmp_path / "shared.db"
    stores = [await SQLiteStore.open(db), await SQLiteStore.open(db)]
    h.stores.extend(stores)
    servers = []
    for store in stores:
        server = await serve(Endpoint(VENDOR, store=store,
                                      policy=ReferencePolicy(accepts_terms=ACCEPTED)))
        h.servers.append(server)
        servers.append(server)
    urls = [s.url + DEFAULT_INBOX_PATH for s in servers]
    c = Customer(VENDOR)
    offer = c.offer(*ACCEPTED)
    first, second = await asyncio.gather(*(post(h.session, u, offer.envelope) for u in urls))
    assert first.status == second.status == 200
    assert first.body == second.body
    assert sum(s.stats.conflicts for s in stores) == 1  # the loser re-read the stored answer
    c.absorb(first, offer)
    # The next messages alternate between the two processes; each loads what the other stored.
    for i in range(4):
        share = c.share({"email": f"ann{i}@example.org"})
        c.absorb(await post(h.session, urls[i % 2], share.envelope), share)
    rows = await stores[0].history(c.thread)
    assert [r.msg_hash for r in rows] == [e.msg_hash for e in c.rel.history.entries()]


class _FailingPolicy(ReferencePolicy):
    async def on_terms_offer(self, rel: Any, msg: Any) -> Any:
        raise RuntimeError("the policy service is down")


async def test_a_failing_policy_still_gets_the_sender_a_receipt(h: Harness) -> None:
    server = await h.start(policy=_FailingPolicy(accepts_terms=ACCEPTED))
    c = h.customer(server)
    got = await c.deliver(h.session, c.offer(*ACCEPTED))
    assert types(got) == ["receipt"]
    assert c.rel.state is State.OFFERED


class _BrokenStore(MemoryStore):
    async def commit(self, c: Commit) -> None:
        raise StoreError("disk full")


async def test_a_store_failure_is_the_only_500(h: Harness) -> None:
    server = await serve(Endpoint(VENDOR, store=_BrokenStore(),
                                  policy=ReferencePolicy(accepts_terms=ACCEPTED)))  # fmt: skip
    h.servers.append(server)
    c = Customer(VENDOR)
    reply = await post(h.session, server.url + DEFAULT_INBOX_PATH, c.offer(*ACCEPTED).envelope)
    assert reply.status == 500
    assert reply.problem().body.code == "internal_error"


def test_rate_limiter_buckets() -> None:
    now = [0]
    limiter = RateLimiter(6, clock=lambda: now[0], max_keys=2)  # 6 a minute: one per 10 s
    assert [limiter.take("a") for _ in range(7)] == [0, 0, 0, 0, 0, 0, 10]
    now[0] += 5_000
    assert limiter.retry_after("a") == 5
    now[0] += 5_000
    assert limiter.take("a") == 0
    limiter.charge("b")
    limiter.charge("c")  # evicts the least recently used bucket, "a": a full bucket again
    assert len(limiter) == 2
    assert limiter.retry_after("a") == 0
    for _ in range(20):
        limiter.charge("b")  # may dip below zero, but never below -burst
    now[0] += 120_000
    assert limiter.retry_after("b") == 0


async def test_replay_records_are_purged_after_the_window() -> None:
    clock = [now_ms()]
    store = MemoryStore()
    endpoint = Endpoint(VENDOR, store=store, policy=ReferencePolicy(accepts_terms=ACCEPTED),
                        clock=lambda: clock[0])  # fmt: skip
    c = Customer(VENDOR)
    offer = c.offer(*ACCEPTED)
    assert (await endpoint.handle_inbox(offer.envelope)).status == 200
    assert await endpoint.purge() == 0
    clock[0] += DEFAULT_LIMITS.replay_window_ms + 1
    assert await endpoint.purge() == 1
    assert await store.get_dedupe(c.identity.public_key, offer.id) is None
    # The message itself has long expired: it cannot be accepted again.
    assert (await endpoint.handle_inbox(offer.envelope)).status == 400


async def test_expired_shares_are_deleted_and_their_bodies_erased(h: Harness) -> None:
    """§5.3.1-4, §12.10-4: after `expires`, nothing of the share is returned or exported."""
    clock = [now_ms()]
    server = await h.start(clock=lambda: clock[0])
    c = h.customer(server)
    await c.agree(h.session)
    first = c.share({"email": "ann@example.org"})
    await c.deliver(h.session, first)
    assert c.rel.agreement is not None
    msg_id = os.urandom(16)
    sealed = c.rel.seal(FieldsContent(fields={"phone": "+1 555 0100"}), msg_id=msg_id)
    body = DataShare(agreement=c.rel.agreement, purposes=(2,), categories=(2,),
                     expires=clock[0] + 3 * DAY_MS, sealed=sealed)  # fmt: skip
    later = c.send(body, msg_id=msg_id)
    await c.deliver(h.session, later)
    clock[0] += DAY_MS + 60_000  # the first share has expired, the second has not
    store = server.endpoint.store
    assert await server.endpoint.expire_shares() == 1
    assert await server.endpoint.expire_shares() == 0  # done once
    held = await store.held(c.thread)
    assert [x.field for x in held] == ["phone"]
    request = sign_history_request(c.identity, thread=c.thread, recipient=VENDOR.public_key,
                                   now=clock[0], nonce=os.urandom(16))  # fmt: skip
    entries = decode_history((await post(h.session, server.url + DEFAULT_HISTORY_PATH,
                                         request)).body)  # fmt: skip
    verify_entries(entries)
    by_hash = {e.msg_hash: e for e in entries}
    assert open_envelope(by_hash[first.hash].envelope, now=0, check_time=False,
                         allow_erased=True).erased  # fmt: skip
    assert not open_envelope(by_hash[later.hash].envelope, now=0, check_time=False).erased


async def test_the_export_erases_expired_shares_first(h: Harness) -> None:
    clock = [now_ms()]
    server = await h.start(clock=lambda: clock[0])
    c = h.customer(server)
    await c.agree(h.session)
    share = c.share({"email": "ann@example.org"})
    await c.deliver(h.session, share)
    clock[0] += DAY_MS + 60_000
    request = sign_history_request(c.identity, thread=c.thread, recipient=VENDOR.public_key,
                                   now=clock[0], nonce=os.urandom(16))  # fmt: skip
    entries = decode_history((await post(h.session, server.url + DEFAULT_HISTORY_PATH,
                                         request)).body)  # fmt: skip
    erased = next(e for e in entries if e.msg_hash == share.hash)
    assert open_envelope(erased.envelope, now=0, check_time=False, allow_erased=True).erased
