"""The transport seam (issue #9 item 5): an Agent over the in-memory transport, no sockets.

The vendor is the reference :class:`~vrmproto.server.Endpoint` on a MemoryStore; the customer an
:class:`~vrmproto.client.Agent` whose only way out is a
:class:`~vrmproto.testing.MemoryTransport`. A fixture makes every socket connect or bind fail,
so nothing here can reach a network, loopback included.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from vrmproto import (
    DEFAULT_LIMITS,
    DataErased,
    DataShare,
    FieldsContent,
    Identity,
    Limits,
    Money,
    Problem,
    TermRef,
    latest,
)
from vrmproto.binding import build_discovery, encode_replies
from vrmproto.client import (
    Agent,
    Answer,
    EndpointClient,
    InvalidResponse,
    PeerProblemError,
    Queued,
    Transient,
    Transport,
    Unreachable,
    discovery_from_answer,
    replies_from_answer,
    transient_from_answer,
)
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy, Response
from vrmproto.store import Commit, MemoryStore
from vrmproto.testing import MemoryTransport
from vrmproto.testing.transport import Route

DAY_MS = 86_400_000
ACME = "http://acme.test"
NO_TRACKING = TermRef.of(latest("vrm.no-tracking"))
ACCEPTS = ("vrm.no-tracking", "vrm.no-third-party")  # the agent's default terms


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to connect or bind a socket fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a test of the in-memory transport opened a socket")

    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refuse)


class Vendor:
    """The reference vendor endpoint, with what its hooks heard."""

    def __init__(self, name: str = "Acme", catalogue: tuple[CatalogueItem, ...] = (),
                 limits: Limits = DEFAULT_LIMITS) -> None:  # fmt: skip
        self.identity = Identity(os.urandom(32))
        self.store = MemoryStore()
        self.endpoint = Endpoint(
            self.identity, store=self.store, name=name, limits=limits,
            policy=ReferencePolicy(accepts_terms=ACCEPTS, name=name, catalogue=catalogue),
        )  # fmt: skip
        self.heard: list[Any] = []
        self.endpoint.subscribe(self._hear)

    async def _hear(self, event: Any) -> None:
        self.heard.append(event)


@pytest.fixture
def vendor() -> Vendor:
    return Vendor()


@pytest.fixture
async def agent(vendor: Vendor) -> AsyncIterator[tuple[Agent, MemoryTransport]]:
    transport = MemoryTransport({ACME: vendor.endpoint})
    a = await Agent.open(MemoryStore(), os.urandom(32), client=transport)
    yield a, transport
    await a.close()
    await vendor.endpoint.drain()


def test_both_transports_implement_the_protocol() -> None:
    assert isinstance(MemoryTransport(), Transport)
    assert isinstance(EndpointClient(), Transport)  # no session is made before a request


async def test_connect_share_withdraw_and_compare_history_in_memory(
    agent: tuple[Agent, MemoryTransport], vendor: Vendor
) -> None:
    a, transport = agent
    c = await a.connect(ACME, [NO_TRACKING])
    assert c.status == "accepted"
    shared = await a.share(c.thread, {"email": "ada@example.org"}, purposes=["delivery"],
                           categories=["contact"], expires_ms=now_ms() + 365 * DAY_MS)
    assert shared.confirmed
    await vendor.endpoint.drain()
    (share,) = [e for e in vendor.heard if isinstance(e.message.body, DataShare)]
    assert share.content == FieldsContent(fields={"email": "ada@example.org"})

    withdrawn = await a.withdraw(c.thread, [shared.msg_hash], reason="changed my mind")
    (erased,) = withdrawn.reply_bodies()
    assert isinstance(erased, DataErased)
    assert erased.shares == (shared.msg_hash,)
    assert await a.compare_history(c.thread) is None

    routes = [r.route for r in transport.requests]
    assert routes[0] is Route.DISCOVERY
    assert routes.count(Route.INBOX) >= 3  # the offer, the share, the withdraw (+ receipts)
    assert routes[-1] is Route.HISTORY
    # the messages of one relationship name it as their channel (§11.6-3)
    assert {r.channel for r in transport.requests if r.route is not Route.DISCOVERY} == {
        c.thread}


async def test_history_compare_sees_what_the_vendor_lost(
    agent: tuple[Agent, MemoryTransport], vendor: Vendor
) -> None:
    a, _ = agent
    c = await a.connect(ACME, [NO_TRACKING])
    await a.share(c.thread, {"email": "a@b.c"}, purposes=[3], categories=[2],
                  expires_ms=now_ms() + DAY_MS)
    ours = await a.history(c.thread)
    assert await a.compare_history(c.thread) is None
    # the vendor lost its last entry
    await vendor.store.commit(Commit(truncate=((c.thread, len(ours) - 1),)))
    div = await a.compare_history(c.thread)
    assert div is not None
    assert (div.index, div.kind) == (len(ours) - 1, "ahead")


async def test_an_unreachable_vendor_queues_and_the_outbox_delivers_later(
    agent: tuple[Agent, MemoryTransport], vendor: Vendor
) -> None:
    a, transport = agent
    c = await a.connect(ACME, [NO_TRACKING])
    transport.remove(ACME)
    d = await a.share(c.thread, {"email": "a@b.c"}, purposes=[3], categories=[2],
                      expires_ms=now_ms() + 2 * DAY_MS)
    assert d.status == "queued"
    assert isinstance(d.error, Unreachable)
    with pytest.raises(Queued):
        await a.request_data(c.thread)
    assert await a.pending()  # the share; the request waits behind it as a draft

    transport.add(ACME, vendor.endpoint)
    run = await a.run_outbox(now=now_ms() + DAY_MS)  # past every backoff
    assert run.confirmed == 3  # the share, the request, our receipt for the data.return
    assert await a.pending() == []
    assert await a.compare_history(c.thread) is None


async def test_an_intentcast_fans_out_over_the_transport() -> None:
    """§5.4: one throw-away key, a thread per vendor, offers ranked by price — no socket."""
    shops = {name: Vendor(name, (CatalogueItem(f"{name} SUV", ("suv",), Money(price, "USD")),))
             for name, price in (("Avis", 61_000), ("Budget", 45_000))}  # fmt: skip
    transport = MemoryTransport({f"http://{n.lower()}.test": v.endpoint for n, v in shops.items()})
    async with await Agent.open(MemoryStore(), os.urandom(32), client=transport) as a:
        result = await a.intentcast("an suv", vendors=["http://avis.test", "http://budget.test",
                                                       "http://closed.test"])  # fmt: skip
        assert [o.vendor for o in result.offers] == ["Budget", "Avis"]
        assert result.report.counts()["failed"] == 1  # closed.test: nothing there
        taken = await a.take_offer(result.offers[0])
        assert taken.status == "accepted"


async def test_the_address_limit_is_a_transient_failure_with_retry_after() -> None:
    """§12.9-5: the endpoint's per-address limit is checked before the body, as over HTTP."""
    vendor = Vendor(limits=Limits(rate_per_address_per_minute=1))
    transport = MemoryTransport({ACME: vendor.endpoint})
    await transport.fetch_discovery(ACME)
    with pytest.raises(Transient) as busy:
        await transport.fetch_discovery(ACME)
    assert busy.value.status == 429
    assert busy.value.retry_after is not None
    assert busy.value.retry_after > 0


async def test_a_refusal_is_the_same_typed_error_as_over_http(vendor: Vendor) -> None:
    transport = MemoryTransport({ACME: vendor.endpoint})
    doc = await transport.fetch_discovery(ACME, role="vendor")
    assert (doc.inbox, doc.key) == (ACME + "/vrm/inbox", vendor.identity.public_key)
    with pytest.raises(PeerProblemError) as refused:
        await transport.post_envelope(doc.inbox, b"\x93not an envelope",
                                      expected_keys=(doc.key,))  # fmt: skip
    assert refused.value.problem is Problem.MALFORMED
    # a URL of the vendor's that is no route, or not an inbox: its signed 404 / 405, as over
    # HTTP (§12.2-5, §12.2-4); a host with no endpoint is unreachable
    with pytest.raises(PeerProblemError) as nowhere:
        await transport.post_envelope(ACME + "/elsewhere", b"")
    assert nowhere.value.problem is Problem.NOT_FOUND
    with pytest.raises(PeerProblemError) as not_inbox:
        await transport.post_envelope(ACME + "/.well-known/vrm", b"")
    assert not_inbox.value.problem is Problem.METHOD_NOT_ALLOWED
    with pytest.raises(Unreachable):
        await transport.post_envelope("http://elsewhere.test/vrm/inbox", b"")


async def test_a_caller_that_gives_up_does_not_stop_the_endpoint(vendor: Vendor) -> None:
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    class Slow(Endpoint):
        async def handle_inbox(self, data: bytes, *, client: str = "") -> Response:
            started.set()
            await release.wait()
            finished.set()
            return Response(204, b"")

    transport = MemoryTransport({ACME: Slow(vendor.identity, store=MemoryStore())})
    with pytest.raises(Unreachable):
        await transport.post_envelope(ACME + "/vrm/inbox", b"x", timeout_s=0.01)
    assert transport.requests[-1].status is None  # nothing answered the caller
    await started.wait()
    release.set()
    await transport.drain()
    assert finished.is_set()  # the step ran to its end, as a server's would


# -- the answer readers every transport shares ------------------------------------------------


def test_discovery_reads_the_signature_field_in_any_case() -> None:
    """Field names are case-insensitive (RFC 9110 §5.1): a proxy (or HTTP/2) lower-cases them."""
    who = Identity(os.urandom(32))
    body, sig = build_discovery(who, name="x", role="vendor", now=now_ms(),
                                limits=DEFAULT_LIMITS, types=("terms.offer",))  # fmt: skip
    for name in ("Vrm-Signature", "vrm-signature", "VRM-SIGNATURE"):
        doc = discovery_from_answer(Answer(200, {name: sig}, body, "http://x.test/.well-known/vrm"),
                                    now=now_ms())  # fmt: skip
        assert doc.inbox == "http://x.test/vrm/inbox"  # relative, resolved (§13.1-7)


def test_replies_reader_outcomes() -> None:
    limits = DEFAULT_LIMITS
    url = "http://x.test/vrm/inbox"
    assert replies_from_answer(Answer(204, {}, b"", url), now=0, limits=limits) == []
    ok = Answer(200, {"content-type": "application/vnd.vrmproto+msgpack"},
                encode_replies([b"r", b"s"]), url)  # fmt: skip
    assert replies_from_answer(ok, now=0, limits=limits) == [b"r", b"s"]
    with pytest.raises(InvalidResponse):
        replies_from_answer(Answer(200, {"Content-Type": "text/html"}, b"<p>", url), now=0,
                            limits=limits)  # fmt: skip
    with pytest.raises(InvalidResponse):  # a 4xx that is not a signed problem refuses nothing
        replies_from_answer(Answer(400, {}, b"bad", url), now=0, limits=limits)


def test_transient_statuses_and_retry_after() -> None:
    url = "http://x.test/vrm/inbox"
    assert transient_from_answer(Answer(200, {}, b"", url)) is None
    assert transient_from_answer(Answer(404, {}, b"", url)) is None
    busy = transient_from_answer(Answer(429, {"retry-after": "3"}, b"", url))
    assert isinstance(busy, Transient)
    assert (busy.status, busy.retry_after) == (429, 3.0)
    down = transient_from_answer(Answer(503, {"Retry-After": "Wed, 21 Oct 2015"}, b"", url))
    assert isinstance(down, Transient)
    assert down.retry_after is None
