"""EndpointClient against real aiohttp servers on 127.0.0.1 (spec §12, §13).

``FakeVendor`` is a minimal vendor endpoint built from the core alone — one vendor-side
:class:`~vrmproto.Relationship` per thread, answering every message with a receipt and the
reply the flow calls for — so the client is tested against the HTTP contract, not against the
reference server. ``test_fanout`` and ``test_agent`` use it too.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import pytest
from aiohttp import web

from vrmproto import (
    DATA_FORMAT,
    DEFAULT_LIMITS,
    MESSAGE_TYPES,
    DataErased,
    DataRecord,
    DataRequest,
    DataReturn,
    DataWithdraw,
    Identity,
    Intentcast,
    MasterSeed,
    Money,
    Problem,
    ProtocolError,
    Received,
    RecordsContent,
    Relationship,
    Role,
    TermRef,
    TermsOffer,
    latest,
    open_envelope,
    problem_for,
    sha256,
    sign_problem,
)
from vrmproto._history import Entry
from vrmproto.binding import (
    CONTENT_TYPE,
    SIGNATURE_HEADER,
    build_discovery,
    encode_history,
    encode_replies,
    open_history_request,
)
from vrmproto.client import (
    EndpointClient,
    InvalidResponse,
    PeerProblemError,
    RetryPolicy,
    Transient,
    Unreachable,
)
from vrmproto.server import Endpoint, ReferencePolicy, make_app
from vrmproto.store import MemoryStore


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def rid() -> bytes:
    return os.urandom(16)


def header_hash(data: bytes) -> bytes | None:
    """The hash of an envelope's header bytes, when they can be found: a problem's ``ref``
    (§9.1-4), as a receiver that refuses the envelope before verifying it sends it."""
    try:
        env = msgpack.unpackb(data, raw=False)
    except Exception:  # anything undecodable has no header to name
        return None
    hdr = env.get("hdr") if type(env) is dict else None
    return sha256(hdr) if type(hdr) is bytes else None


NO_TRACKING = TermRef.of(latest("vrm.no-tracking"))
NO_THIRD_PARTY = TermRef.of(latest("vrm.no-third-party"))
DELETE_90 = TermRef.of(latest("vrm.delete-after"), days=90)


class FakeVendor:
    """A vendor endpoint from the core: discovery, inbox (receipt + reply), history export."""

    def __init__(
        self,
        name: str = "Vendor",
        *,
        accepts: Sequence[str] = ("vrm.no-tracking", "vrm.no-third-party"),
        counter: tuple[TermRef, ...] | None = None,
        price: Money | None = None,
        records: Sequence[DataRecord] = (),
        delay_s: float = 0.0,
    ) -> None:
        self.name = name
        self.identity = Identity(os.urandom(32))
        self.accepts = tuple(accepts)
        self.counter = counter
        self.price = price
        self.records = tuple(records)
        self.delay_s = delay_s
        self.threads: dict[bytes, Relationship] = {}
        self.dedupe: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}
        self.inbox_posts = 0
        self.received: list[Received] = []  # every message accepted, in order
        self.gauge: Gauge | None = None
        self.fail_next: list[tuple[int, dict[str, str]]] = []  # (status, headers) to answer first
        self.refuse_next: Problem | None = None
        self.tamper_discovery = False
        self.lower_case_headers = False  # as a proxy speaking HTTP/2 sends them
        self.page = 0  # most history entries per export answer (0: all)
        self.hold: asyncio.Event | None = None  # inbox requests wait for it when set
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def key(self) -> bytes:
        return self.identity.public_key

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle --

    def app(self) -> web.Application:
        @web.middleware
        async def latency(request: web.Request, handler: Any) -> web.StreamResponse:
            if self.gauge is not None:
                self.gauge.enter()
            try:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)  # simulated network/server latency
                return await handler(request)
            finally:
                if self.gauge is not None:
                    self.gauge.leave()

        app = web.Application(middlewares=[latency])
        app.router.add_get("/.well-known/vrm", self.discovery)
        app.router.add_post("/vrm/inbox", self.inbox)
        app.router.add_post("/vrm/history", self.history)
        return app

    async def start(self, port: int = 0) -> str:
        self.runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # -- routes --

    async def discovery(self, request: web.Request) -> web.Response:
        body, sig = build_discovery(
            self.identity, name=self.name, role="vendor", now=now_ms(), limits=DEFAULT_LIMITS,
            types=list(MESSAGE_TYPES), accepts_terms=self.accepts,
        )
        if self.tamper_discovery:
            body = body.replace(self.name.encode(), b"Evil Corp")
        name = SIGNATURE_HEADER.lower() if self.lower_case_headers else SIGNATURE_HEADER
        return web.Response(body=body, content_type="application/json", headers={name: sig})

    def _problem(self, exc: ProtocolError, msg: Any = None, *, data: bytes = b"") -> web.Response:
        p = problem_for(
            exc, identity=self.identity, now=now_ms(), msg_id=rid(),
            to=msg.sender if msg is not None else None,
            thread=msg.thread if msg is not None else bytes(16),
            ref=msg.hash if msg is not None else header_hash(data),
        )
        return web.Response(status=exc.code.status, body=p.envelope, content_type=CONTENT_TYPE)

    async def inbox(self, request: web.Request) -> web.Response:
        self.inbox_posts += 1
        data = await request.read()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_next:
            status, headers = self.fail_next.pop(0)
            return web.Response(status=status, headers=headers, body=b"busy")
        now = now_ms()
        try:
            msg = open_envelope(data, now=now, recipients=(self.key,))
        except ProtocolError as exc:
            return self._problem(exc, data=data)
        stored = self.dedupe.get((msg.sender, msg.id))
        if stored is not None:
            if stored[0] != msg.hash:
                return self._problem(ProtocolError("id reused", code=Problem.ID_CONFLICT), msg)
            if not stored[1]:
                return web.Response(status=204)
            return web.Response(body=stored[1], content_type=CONTENT_TYPE)
        if msg.type == "receipt":  # owed no receipt: 204 (§12.3-3)
            rel = self.threads.get(msg.thread)
            if rel is None:
                return self._problem(ProtocolError("no such thread",
                                                   code=Problem.NO_RELATIONSHIP), msg)
            try:
                self.received.append(rel.receive(msg, now=now))
            except ProtocolError as exc:
                return self._problem(exc, msg)
            self.dedupe[msg.sender, msg.id] = (msg.hash, b"")
            return web.Response(status=204)
        if self.refuse_next is not None:
            code, self.refuse_next = self.refuse_next, None
            return self._problem(ProtocolError("refused by the test", code=code), msg)
        rel = self.threads.get(msg.thread)
        if rel is None:
            rel = Relationship(role=Role.VENDOR, identity=self.identity, thread=msg.thread)
        try:
            self.received.append(rel.receive(msg, now=now))
        except ProtocolError as exc:
            return self._problem(exc, msg)
        self.threads[msg.thread] = rel
        replies = [rel.send(msg.receipt(), now=now, msg_id=rid()).message.envelope]
        for make in self._answer(rel, msg):
            mid = rid()
            replies.append(rel.send(make(mid), now=now, msg_id=mid).message.envelope)
        response = encode_replies(replies)
        self.dedupe[msg.sender, msg.id] = (msg.hash, response)
        return web.Response(body=response, content_type=CONTENT_TYPE)

    def _answer(self, rel: Relationship, msg: Any) -> list[Callable[[bytes], Any]]:
        """The replies to ``msg``, each built from its message id."""
        body = msg.body
        if isinstance(body, TermsOffer):
            ids = [t.id for t in body.terms]
            if all(i in self.accepts for i in ids):
                return [lambda _: msg.accept()]
            refused = tuple(i for i in ids if i not in self.accepts)
            return [lambda _: msg.reject("we cannot agree to every term", refused=refused,
                                         counter=self.counter)]
        if isinstance(body, Intentcast):
            if self.price is None:
                return [lambda _: msg.decline("nothing available")]
            price = self.price
            return [lambda _: msg.offer(f"{self.name}: {body.what}", price,
                                        valid_until=body.reply_by + 86_400_000)]
        if isinstance(body, DataWithdraw):
            return [lambda _: DataErased(withdraw=msg.hash,
                                         shares=rel.pending_withdraws[msg.hash])]
        if isinstance(body, DataRequest):
            return [lambda mid: DataReturn(
                request=msg.hash, format=DATA_FORMAT,
                sealed=rel.seal(RecordsContent(records=self.records), msg_id=mid),
            )]
        return []

    async def history(self, request: web.Request) -> web.Response:
        data = await request.read()
        try:
            req = open_history_request(data, now=now_ms(), recipient=self.key,
                                       limits=DEFAULT_LIMITS)
        except ProtocolError as exc:
            return self._problem(exc)
        rel = self.threads.get(req.thread)
        if rel is None:
            return self._problem(ProtocolError("no such thread", code=Problem.NO_RELATIONSHIP))
        if req.sender != rel.peer_key:
            return self._problem(ProtocolError("not a party", code=Problem.NOT_A_PARTY))
        entries = list(rel.history.entries())[req.start:]
        if self.page:
            entries = entries[: self.page]
        return web.Response(body=encode_history(entries), content_type=CONTENT_TYPE)

    # -- what the vendor holds --

    def entries(self, thread: bytes) -> list[Entry]:
        return list(self.threads[thread].history.entries())

    def types(self, thread: bytes) -> list[str]:
        return [open_envelope(e.envelope, now=0, check_time=False).type
                for e in self.entries(thread)]


class ServerVendor:
    """The reference vendor endpoint (:mod:`vrmproto.server`) on 127.0.0.1, for end-to-end tests:
    its own MemoryStore, ``events`` heard through its hooks, optional simulated latency."""

    def __init__(
        self,
        name: str = "Vendor",
        *,
        delay_s: float = 0.0,
        accepts: Sequence[str] = ("vrm.no-tracking", "vrm.no-third-party"),
        counter: Sequence[TermRef] = (),
        catalogue: Sequence[Any] = (),
        observed: Sequence[DataRecord] = (),
    ) -> None:
        self.name = name
        self.identity = Identity(os.urandom(32))
        self.store = MemoryStore()
        self.endpoint = Endpoint(
            self.identity, store=self.store, name=name,
            policy=ReferencePolicy(accepts_terms=accepts, counter=counter, catalogue=catalogue,
                                   name=name, observed=observed),
        )
        self.events: list[Any] = []
        self.endpoint.subscribe(self._hear)
        self.delay_s = delay_s
        self.gauge: Gauge | None = None  # requests in flight across vendors, if set
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _hear(self, event: Any) -> None:
        self.events.append(event)

    @property
    def key(self) -> bytes:
        return self.identity.public_key

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> str:
        @web.middleware
        async def latency(request: web.Request, handler: Any) -> web.StreamResponse:
            if self.gauge is not None:
                self.gauge.enter()
            try:
                await asyncio.sleep(self.delay_s)  # simulated network/server latency
                return await handler(request)
            finally:
                if self.gauge is not None:
                    self.gauge.leave()

        app = make_app(self.endpoint)
        if self.delay_s:
            app.middlewares.insert(0, latency)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.port = self.runner.addresses[0][1]
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def heard(self, kind: str) -> list[Any]:
        """The accepted messages of one type, once every hook has run."""
        await self.endpoint.drain()
        return [e for e in self.events if e.kind == kind]

    async def types(self, thread: bytes) -> list[str]:
        return [open_envelope(h.envelope, now=0, check_time=False, allow_erased=True).type
                for h in await self.store.history(thread)]


class Gauge:
    """Counts requests in flight across vendors, and the most seen at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


class Sleeps:
    """An injected sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def vendor() -> Any:
    v = FakeVendor("Acme")
    await v.start()
    yield v
    await v.stop()


@pytest.fixture
async def client() -> Any:
    sleeps = Sleeps()
    c = EndpointClient(sleep=sleeps, rand=lambda: 0.5, retry=RetryPolicy(attempts=3))
    c.sleeps = sleeps  # type: ignore[attr-defined]
    yield c
    await c.close()


def customer_rel(vendor: FakeVendor) -> Relationship:
    me = MasterSeed(os.urandom(32)).pairwise(vendor.key)
    return Relationship(role=Role.CUSTOMER, identity=me, thread=rid(), peer_key=vendor.key,
                        peer_enc_key=vendor.identity.enc_public_key)


def offer(rel: Relationship, *terms: TermRef) -> Any:
    body = TermsOffer(terms=terms or (NO_TRACKING,), enc_key=rel.identity.enc_public_key)
    return rel.send(body, now=now_ms(), msg_id=rid()).message


# -- discovery (§13.1) ------------------------------------------------------------------------


async def test_discovery_is_verified_and_urls_resolved(vendor: FakeVendor, client: Any) -> None:
    doc = await client.fetch_discovery(vendor.url)
    assert doc.name == "Acme"
    assert doc.key == vendor.key
    assert doc.inbox == f"{vendor.url}/vrm/inbox"
    assert doc.history == f"{vendor.url}/vrm/history"
    pinned = await client.fetch_discovery(vendor.url + "/", expected_key=vendor.key)
    assert pinned.key == vendor.key


async def test_discovery_header_names_are_case_insensitive(vendor: FakeVendor, client: Any
                                                            ) -> None:
    """A proxy that lower-cases header names (HTTP/2 does) must not break discovery: field
    names are case-insensitive (RFC 9110 §5.1), ``vrm-signature`` is ``Vrm-Signature``."""
    vendor.lower_case_headers = True
    doc = await client.fetch_discovery(vendor.url, expected_key=vendor.key)
    assert doc.key == vendor.key


async def test_discovery_pinned_to_another_key_is_refused(vendor: FakeVendor, client: Any
                                                          ) -> None:
    with pytest.raises(ProtocolError) as info:
        await client.fetch_discovery(vendor.url, expected_key=Identity(bytes(32)).public_key)
    assert info.value.code is Problem.BAD_KEY


async def test_tampered_discovery_document_is_refused(vendor: FakeVendor, client: Any) -> None:
    vendor.tamper_discovery = True
    with pytest.raises(ProtocolError) as info:
        await client.fetch_discovery(vendor.url)
    assert info.value.code is Problem.BAD_SIGNATURE


async def test_discovery_of_something_else_is_an_invalid_response(client: Any) -> None:
    app = web.Application()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        with pytest.raises(InvalidResponse) as info:
            await client.fetch_discovery(f"http://127.0.0.1:{runner.addresses[0][1]}")
        assert info.value.status == 404
    finally:
        await runner.cleanup()


# -- inbox (§12.3, §12.4) --------------------------------------------------------------------


async def test_post_returns_receipt_first_and_it_verifies(vendor: FakeVendor, client: Any
                                                          ) -> None:
    doc = await client.fetch_discovery(vendor.url)
    rel = customer_rel(vendor)
    msg = offer(rel)
    replies = await client.post_envelope(doc.inbox, msg.envelope, expected_keys={vendor.key})
    assert len(replies) == 2
    receipt = rel.receive(replies[0], now=now_ms())
    assert receipt.message.type == "receipt"
    assert receipt.message.body.ack == msg.hash
    assert receipt.message.sender == vendor.key
    accept = rel.receive(replies[1], now=now_ms())
    assert accept.message.type == "terms.accept"
    assert rel.state.value == "agreed"
    # a replay gets the byte-identical stored answer (§12.3-4)
    assert await client.post_envelope(doc.inbox, msg.envelope) == replies


async def test_refusal_is_a_peer_problem_with_its_code(vendor: FakeVendor, client: Any) -> None:
    doc = await client.fetch_discovery(vendor.url)
    with pytest.raises(PeerProblemError) as info:
        await client.post_envelope(doc.inbox, b"\x81\xa3not\xa3env", expected_keys={vendor.key})
    assert info.value.code == "malformed"
    assert info.value.problem is Problem.MALFORMED
    assert info.value.status == 400

    other = FakeVendor("Other")
    msg = offer(customer_rel(other))  # addressed to another vendor's key
    with pytest.raises(PeerProblemError) as info:
        await client.post_envelope(doc.inbox, msg.envelope, expected_keys={vendor.key},
                                   ref=msg.hash)
    assert info.value.code == "wrong_recipient"
    assert info.value.status == 421
    assert info.value.clause == "§4.5-2"
    assert client.sleeps.calls == []  # refusals are never retried


async def test_problem_signed_by_another_key_is_not_a_refusal(vendor: FakeVendor, client: Any
                                                              ) -> None:
    doc = await client.fetch_discovery(vendor.url)
    with pytest.raises(InvalidResponse) as info:
        await client.post_envelope(doc.inbox, b"junk", expected_keys={os.urandom(32)})
    assert info.value.status == 400


async def test_problem_body_that_does_not_verify_is_an_invalid_response(client: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        p = sign_problem(Problem.NOT_A_PARTY, "no", identity=Identity(bytes(32)), now=now_ms(),
                         msg_id=rid())
        forged = bytearray(p.envelope)
        forged[-1] ^= 1
        return web.Response(status=403, body=bytes(forged), content_type=CONTENT_TYPE)

    app = web.Application()
    app.router.add_post("/vrm/inbox", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        with pytest.raises(InvalidResponse):
            await client.post_envelope(f"http://127.0.0.1:{runner.addresses[0][1]}/vrm/inbox",
                                       b"x")
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("shape", ["declared", "chunked", "gzip"])
async def test_an_answer_is_read_up_to_the_cap_whatever_its_shape(shape: str) -> None:
    """An answer over ``max_response_bytes`` is an InvalidResponse whether its length is
    declared, chunked, or compressed below the cap; one within the cap arrives whole."""
    import gzip  # noqa: PLC0415

    size = {"small": 900, "big": 1100}

    async def handler(request: web.Request) -> web.StreamResponse:
        body = bytes(size[request.match_info["n"]])
        if shape == "declared":
            return web.Response(body=body, content_type=CONTENT_TYPE)
        if shape == "gzip":  # 1100 zeros squeeze into far fewer than 1000 bytes
            return web.Response(body=gzip.compress(body), content_type=CONTENT_TYPE,
                                headers={"Content-Encoding": "gzip"})
        out = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        out.enable_chunked_encoding()
        await out.prepare(request)
        for i in range(0, len(body), 300):
            await out.write(body[i : i + 300])
        await out.write_eof()
        return out

    app = web.Application()
    app.router.add_post("/{n}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    c = EndpointClient(retry=RetryPolicy(attempts=1), max_response_bytes=1000)
    try:
        answer = await c._request("POST", f"{base}/small", b"x", headers={}, timeout_s=None,
                                  retry=None, cap=c.max_response_bytes, channel=rid())
        assert answer.body == bytes(900)
        with pytest.raises(InvalidResponse, match="1000"):
            await c._request("POST", f"{base}/big", b"x", headers={}, timeout_s=None,
                             retry=None, cap=c.max_response_bytes, channel=rid())
    finally:
        await c.close()
        await runner.cleanup()


async def test_503_is_retried_with_jittered_backoff_then_succeeds(vendor: FakeVendor,
                                                                  client: Any) -> None:
    doc = await client.fetch_discovery(vendor.url)
    vendor.fail_next = [(503, {}), (503, {})]
    rel = customer_rel(vendor)
    msg = offer(rel)
    replies = await client.post_envelope(doc.inbox, msg.envelope)
    assert rel.receive(replies[0], now=now_ms()).message.body.ack == msg.hash
    assert vendor.inbox_posts == 3
    # full jitter with rand() = 0.5: 0.5 · 0.1 s, then 0.5 · 0.2 s
    assert client.sleeps.calls == pytest.approx([0.05, 0.1])


async def test_429_retry_after_is_honoured(vendor: FakeVendor, client: Any) -> None:
    doc = await client.fetch_discovery(vendor.url)
    vendor.fail_next = [(429, {"Retry-After": "3"})]
    msg = offer(customer_rel(vendor))
    await client.post_envelope(doc.inbox, msg.envelope)
    assert client.sleeps.calls == [3.0]
    assert vendor.inbox_posts == 2


async def test_long_retry_after_is_left_to_the_caller(vendor: FakeVendor, client: Any) -> None:
    doc = await client.fetch_discovery(vendor.url)
    vendor.fail_next = [(429, {"Retry-After": "120"})]
    with pytest.raises(Transient) as info:
        await client.post_envelope(doc.inbox, offer(customer_rel(vendor)).envelope)
    assert info.value.retry_after == 120
    assert info.value.status == 429
    assert client.sleeps.calls == []
    assert vendor.inbox_posts == 1


async def test_retry_after_holds_back_other_requests_to_that_receiver(
    vendor: FakeVendor, client: Any
) -> None:
    doc = await client.fetch_discovery(vendor.url)
    vendor.fail_next = [(429, {"Retry-After": "120"})]
    with pytest.raises(Transient):
        await client.post_envelope(doc.inbox, offer(customer_rel(vendor)).envelope)
    # §12.9-7: no request to that receiver before Retry-After has passed
    with pytest.raises(Transient) as info:
        await client.post_envelope(doc.inbox, offer(customer_rel(vendor)).envelope)
    assert info.value.retry_after is not None
    assert 100 < info.value.retry_after <= 120
    assert vendor.inbox_posts == 1


async def test_retries_are_bounded(vendor: FakeVendor, client: Any) -> None:
    doc = await client.fetch_discovery(vendor.url)
    vendor.fail_next = [(500, {})] * 5
    with pytest.raises(Transient) as info:
        await client.post_envelope(doc.inbox, offer(customer_rel(vendor)).envelope)
    assert info.value.status == 500
    assert vendor.inbox_posts == 3
    assert len(client.sleeps.calls) == 2


async def test_connection_refused_is_unreachable(vendor: FakeVendor, client: Any) -> None:
    doc = await client.fetch_discovery(vendor.url)
    await vendor.stop()
    with pytest.raises(Unreachable):
        await client.post_envelope(doc.inbox, offer(customer_rel(vendor)).envelope)
    assert len(client.sleeps.calls) == 2


async def test_timeout_is_unreachable(vendor: FakeVendor) -> None:
    vendor.hold = asyncio.Event()
    async with EndpointClient(timeout_s=0.05, retry=RetryPolicy(attempts=1)) as c:
        with pytest.raises(Unreachable):
            await c.post_envelope(f"{vendor.url}/vrm/inbox", b"x")
    vendor.hold.set()


# -- history (§12.5) -------------------------------------------------------------------------


async def test_history_export_matches_ours(vendor: FakeVendor, client: Any) -> None:
    doc = await client.fetch_discovery(vendor.url)
    rel = customer_rel(vendor)
    for env in await client.post_envelope(doc.inbox, offer(rel).envelope):
        rel.receive(env, now=now_ms())
    theirs = await client.fetch_history(doc.history, rel.identity, rel.thread, vendor.key)
    assert [e.link for e in theirs] == [e.link for e in rel.history.entries()]

    vendor.page = 1  # §12.5-5: the export may come in pages; all of them are fetched
    paged = await client.fetch_history(doc.history, rel.identity, rel.thread, vendor.key)
    assert paged == theirs
    vendor.page = 0

    stranger = customer_rel(vendor)
    with pytest.raises(PeerProblemError) as info:
        await client.fetch_history(doc.history, stranger.identity, rel.thread, vendor.key)
    assert info.value.code == "not_a_party"
    with pytest.raises(PeerProblemError) as info:
        await client.fetch_history(doc.history, rel.identity, rid(), vendor.key)
    assert info.value.code == "no_relationship"


# -- the Transport seam: HTTP and in-memory answer alike --------------------------------------


async def test_http_and_memory_transports_answer_alike() -> None:
    """The same reference vendor, reached over HTTP on 127.0.0.1 and in memory: the same
    document, the same agent flow, the same typed refusal (one set of answer readers)."""
    from vrmproto.client import Agent, Transport  # noqa: PLC0415 -- only this test needs them
    from vrmproto.server import serve  # noqa: PLC0415
    from vrmproto.testing import MemoryTransport  # noqa: PLC0415

    vendor = Identity(os.urandom(32))
    endpoint = Endpoint(vendor, store=MemoryStore(), name="Both",
                        policy=ReferencePolicy(accepts_terms=["vrm.no-tracking"]))  # fmt: skip
    seen: list[tuple[object, ...]] = []
    async with await serve(endpoint, "127.0.0.1", 0) as server, EndpointClient() as http:
        memory = MemoryTransport({server.url: endpoint})
        transports: list[Transport] = [http, memory]
        for transport in transports:
            doc = await transport.fetch_discovery(server.url, role="vendor")
            with pytest.raises(PeerProblemError) as refused:
                await transport.post_envelope(doc.inbox, b"\x93junk", expected_keys=(doc.key,))
            with pytest.raises(ProtocolError) as pinned:
                await transport.fetch_discovery(server.url, os.urandom(32))
            async with await Agent.open(MemoryStore(), os.urandom(32), client=transport) as a:
                c = await a.connect(server.url, [NO_TRACKING])
                diverged = await a.compare_history(c.thread)
            seen.append((doc.inbox, doc.history, doc.key, refused.value.code, refused.value.status,
                         pinned.value.code, c.status, diverged))  # fmt: skip
        await endpoint.drain()
    assert seen[0] == seen[1]
    assert seen[0][-2:] == ("accepted", None)


def test_backoff_of_a_late_retry_is_the_cap_not_an_overflow() -> None:
    """``base_s · 2^(n-1)`` overflows a float at retry 1,025: a patient schedule (many attempts)
    waits at most ``cap_s``, never raises."""
    policy = RetryPolicy(attempts=5000, base_s=1.0, cap_s=300.0)
    assert policy.backoff(1025, lambda: 1.0) == 300.0
    assert policy.backoff(4999, lambda: 0.5) == 150.0
    assert RetryPolicy(attempts=5000, base_s=0.0).backoff(4999, lambda: 1.0) == 0.0
