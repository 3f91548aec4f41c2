"""The customer agent against hostile vendors on 127.0.0.1 (spec §9.1-10, §11.10, §13.1).

What a vendor — or someone on the path to it — controls is its discovery document and its
answers. None of that may make the agent trust another key at a URL it knows, drop a message on
a problem that does not name it, seal to an unusable key, break the other vendors of a fan-out,
or talk to an endpoint that is not a vendor speaking our version.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack
import nacl.bindings as sodium
import pytest
from aiohttp import web
from test_client import CONTENT_TYPE, FakeVendor, now_ms

from vrmproto import (
    DEFAULT_LIMITS,
    MESSAGE_TYPES,
    MasterSeed,
    Money,
    Problem,
    ProtocolError,
    RelationshipEnd,
    fingerprint,
    key_to_text,
    open_envelope,
)
from vrmproto._binding import SIGNATURE_HEADER, build_discovery
from vrmproto._keys import Context, _b64
from vrmproto.client import (
    Agent,
    CustomerNode,
    EndpointClient,
    InvalidResponse,
    PeerProblemError,
    RetryPolicy,
)
from vrmproto.client._agent import KeyChangedError
from vrmproto.client._fanout import Target, fan_out
from vrmproto.client._inbound import AGENT_NAME
from vrmproto.client._paths import endpoint_path
from vrmproto.store import MemoryStore

YEAR_MS = 365 * 86_400_000


class HostileVendor(FakeVendor):
    """A FakeVendor whose discovery document says what the test wants, and which can answer
    every inbox request with bytes of the test's choosing."""

    def __init__(self, name: str = "Vendor", **kw: Any) -> None:
        super().__init__(name, **kw)
        self.doc_extra: dict[str, Any] = {}
        self.signer: Any = None  # (body) -> (signature header, key text) for a forged key
        self.inject: tuple[int, bytes] | None = None

    async def discovery(self, request: web.Request) -> web.Response:
        extra = dict(self.doc_extra)
        if self.signer is not None:
            extra["key"] = self.signer.key_text
        body, sig = build_discovery(
            self.identity, name=self.name, role="vendor", now=now_ms(), limits=DEFAULT_LIMITS,
            types=list(MESSAGE_TYPES), accepts_terms=self.accepts, extra=extra,
        )
        if self.signer is not None:
            sig = self.signer.sign(body)
        return web.Response(body=body, content_type="application/json",
                            headers={SIGNATURE_HEADER: sig})

    async def inbox(self, request: web.Request) -> web.Response:
        if self.inject is not None:
            await request.read()
            status, body = self.inject
            return web.Response(status=status, body=body, content_type=CONTENT_TYPE)
        return await super().inbox(request)


class MixedOrderSigner:
    """An Ed25519 key of mixed order (a prime-order point plus one of order 8) and signatures
    that pass the cofactorless check under it: the nonce is ground until the challenge is a
    multiple of 8, so the small-order part drops out (§2.1-2, §11.7)."""

    ORDER_8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")

    def __init__(self) -> None:
        self.a = sodium.crypto_core_ed25519_scalar_reduce(os.urandom(64))
        big_a = sodium.crypto_scalarmult_ed25519_base_noclamp(self.a)
        self.key = sodium.crypto_core_ed25519_add(big_a, self.ORDER_8)
        assert not sodium.crypto_core_ed25519_is_valid_point(self.key)
        self.key_text = key_to_text(self.key)

    def sign(self, body: bytes) -> str:
        message = Context.DISCOVERY + body
        while True:
            r = sodium.crypto_core_ed25519_scalar_reduce(os.urandom(64))
            big_r = sodium.crypto_scalarmult_ed25519_base_noclamp(r)
            k = sodium.crypto_core_ed25519_scalar_reduce(
                hashlib.sha512(big_r + self.key + message).digest())
            if int.from_bytes(k, "little") % 8 == 0:
                s = sodium.crypto_core_ed25519_scalar_add(
                    r, sodium.crypto_core_ed25519_scalar_mul(k, self.a))
                return "ed25519=" + _b64(big_r + s)


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    a = await Agent.open(MemoryStore(), os.urandom(32), fanout_retry=RetryPolicy(attempts=1),
                         retry=RetryPolicy(attempts=1))
    yield a
    await a.close()


@pytest.fixture
async def hostile() -> AsyncIterator[HostileVendor]:
    v = HostileVendor("Acme")
    await v.start()
    yield v
    await v.stop()


async def share(agent: Agent, ref: Any) -> Any:
    return await agent.share(ref, {"email": "ada@example.org"}, purposes=["delivery"],
                             categories=["contact"], expires_ms=now_ms() + YEAR_MS)


# -- item 6: a known vendor's key is pinned by URL and by name (§11.10-1, §13.1-4) ---------------


async def test_another_key_at_a_known_url_is_refused_until_the_person_accepts_it(
    agent: Agent,
) -> None:
    first = FakeVendor("Acme")
    url = await first.start()
    port = first.port
    assert (await agent.connect(url)).status == "accepted"
    await first.stop()

    impostor = HostileVendor("Acme")  # a new key at the same URL
    await impostor.start(port)
    try:
        with pytest.raises(KeyChangedError) as info:
            await agent.connect(url)
        assert info.value.code is Problem.BAD_KEY
        assert info.value.by == "url"
        assert fingerprint(impostor.key) in str(info.value)
        assert fingerprint(first.key) in str(info.value)
        assert impostor.inbox_posts == 0

        # the intentcast is not sent there either
        result = await agent.intentcast("a car", vendors=[url], deadline_ms=5_000)
        assert [r.status for r in result.report.results] == ["failed"]
        assert "bad_key" in repr(result.report.results[0].error) or isinstance(
            result.report.results[0].error, KeyChangedError)
        assert impostor.inbox_posts == 0

        # a wrong fingerprint changes nothing; the right one is the person's decision
        with pytest.raises(KeyChangedError):
            await agent.connect(url, accept_new_key=fingerprint(first.key))
        accepted = await agent.connect(url, accept_new_key=fingerprint(impostor.key))
        assert accepted.status == "accepted"
        assert impostor.received[0].message.type == "terms.offer"
    finally:
        await impostor.stop()


async def test_a_new_url_claiming_a_known_vendors_name_with_another_key_is_refused(
    agent: Agent,
) -> None:
    real, fake = FakeVendor("Acme"), HostileVendor("ACME")
    await asyncio.gather(real.start(), fake.start())
    try:
        await agent.connect(real.url)
        with pytest.raises(KeyChangedError) as info:
            await agent.connect(fake.url)
        assert info.value.by == "name"
        assert fake.inbox_posts == 0
        assert len(await agent.relationships()) == 1
        # the full key in its text form is an explicit decision too
        await agent.connect(fake.url, accept_new_key=key_to_text(fake.key))
        assert len(await agent.relationships()) == 2
    finally:
        await asyncio.gather(real.stop(), fake.stop())


# -- item 7: a problem refuses a message only if it names it (§9.1-10) --------------------------


async def test_an_injected_problem_without_ref_does_not_drop_the_share(
    agent: Agent, hostile: HostileVendor
) -> None:
    await agent.connect(hostile.url)
    # anyone can get a problem signed by the vendor's key that names no message: post garbage
    async with aiohttp.ClientSession() as anyone, anyone.post(
        hostile.url + "/vrm/inbox", data=b"junk", headers={"Content-Type": CONTENT_TYPE}
    ) as resp:
        assert resp.status == 400
        refless = await resp.read()
    hostile.inject = (400, refless)  # ...and inject it into the answer to the share

    d = await share(agent, hostile.url)
    assert d.status == "queued"  # not refused: the problem does not name the share
    assert len(await agent.pending()) == 1

    hostile.inject = None
    run = await agent.run_outbox(now_ms() + 3_600_000)
    assert [x.status for x in run.deliveries] == ["confirmed"]
    assert any(r.message.type == "data.share" for r in hostile.received)


# -- item 8: unusable keys in discovery; one vendor never breaks a fan-out (§13.1-9) -------------


async def test_an_all_zero_enc_key_in_discovery_is_refused(
    agent: Agent, hostile: HostileVendor
) -> None:
    hostile.doc_extra = {"enc_key": key_to_text(bytes(32), "x25519")}
    with pytest.raises(ProtocolError) as info:
        await agent.connect(hostile.url)
    assert info.value.code is Problem.BAD_KEY
    assert info.value.clause == "§2.1-5"
    assert hostile.inbox_posts == 0
    assert await agent.relationships() == []


async def test_a_mixed_order_signing_key_in_discovery_is_refused(
    agent: Agent, hostile: HostileVendor
) -> None:
    hostile.signer = MixedOrderSigner()
    with pytest.raises(ProtocolError) as info:
        await agent.connect(hostile.url)
    assert info.value.code is Problem.BAD_KEY
    assert info.value.clause == "§2.1-2"
    assert hostile.inbox_posts == 0
    assert await agent.relationships() == []


async def test_a_vendor_with_an_unusable_key_fails_alone_in_an_address_update(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest, hostile = FakeVendor("Honest"), HostileVendor("Hostile")
    await asyncio.gather(honest.start(), hostile.start())
    try:
        await agent.connect(honest.url)
        # A relationship agreed before enc_key was checked (an older agent): let it through once.
        hostile.doc_extra = {"enc_key": key_to_text(bytes(32), "x25519")}
        monkeypatch.setattr("vrmproto._binding.check_enc_key", lambda *a, **k: None,
                            raising=False)
        assert (await agent.connect(hostile.url)).status == "accepted"
        monkeypatch.undo()

        report = await agent.update_address({"city": "Park City"})
        by_vendor = {r.vendor: r for r in report.results}
        assert by_vendor["Honest"].status == "confirmed"
        assert by_vendor["Hostile"].status == "failed"
        assert "X25519" in by_vendor["Hostile"].detail
        assert any(r.message.type == "address.update" for r in honest.received)
    finally:
        await asyncio.gather(honest.stop(), hostile.stop())


async def test_a_fault_in_one_branch_leaves_the_others_to_finish() -> None:
    other_done = asyncio.Event()

    async def job(arg: str) -> Any:
        if arg == "bad":
            raise RuntimeError("Unexpected library error")
        await asyncio.sleep(0)
        other_done.set()
        raise LookupError("no relationship")  # an ordinary, expected failure

    report = await fan_out([(Target("Bad", "http://bad"), "bad"),
                            (Target("Good", "http://good"), "good")], job)
    assert other_done.is_set()
    assert [r.status for r in report.results] == ["failed", "failed"]
    assert "RuntimeError" in report.results[0].detail


# -- item 9: versions, role and types of the document are obeyed (§13.1-10) ----------------------


@pytest.mark.parametrize(("extra", "code"), [
    ({"versions": [2]}, Problem.UNSUPPORTED_VERSION),
    ({"role": "customer"}, Problem.INVALID_FIELD),
    ({"types": ["intentcast", "receipt", "problem"]}, Problem.UNKNOWN_TYPE),
], ids=["versions", "role", "no-terms-offer"])
async def test_a_document_that_is_not_a_vendor_speaking_our_version_is_refused(
    agent: Agent, hostile: HostileVendor, extra: dict[str, Any], code: Problem
) -> None:
    hostile.doc_extra = extra
    with pytest.raises(ProtocolError) as info:
        await agent.connect(hostile.url)
    assert info.value.code is code
    assert hostile.inbox_posts == 0
    assert await agent.relationships() == []


async def test_a_type_the_vendor_does_not_list_is_not_sent(
    agent: Agent, hostile: HostileVendor
) -> None:
    hostile.doc_extra = {"types": ["terms.offer", "receipt", "problem", "relationship.end"]}
    assert (await agent.connect(hostile.url)).status == "accepted"
    posts = hostile.inbox_posts
    with pytest.raises(ProtocolError) as info:
        await share(agent, hostile.url)
    assert info.value.code is Problem.UNKNOWN_TYPE
    assert "data.share" in str(info.value)
    report = await agent.update_address({"city": "Park City"})
    assert [r.status for r in report.results] == ["failed"]
    assert hostile.inbox_posts == posts
    assert await agent.pending() == []
    result = await agent.intentcast("a car", vendors=[hostile.url], deadline_ms=5_000)
    assert [r.status for r in result.report.results] == ["failed"]
    assert hostile.inbox_posts == posts


# -- item 10: nothing links one person's identities (§11.6-1, §11.6-3, §12.11-4) -----------------


class TrackingVendor(FakeVendor):
    """A vendor that sets a cookie on every answer and notes, for every request, the cookies it
    got and the client's port (one port: one TCP connection) with the key that signed it."""

    def __init__(self, name: str) -> None:
        super().__init__(name, price=Money(100, "USD"))
        self.cookies: list[str] = []
        self.senders_by_port: dict[int, set[bytes]] = {}

    def app(self) -> web.Application:
        @web.middleware
        async def track(request: web.Request, handler: Any) -> web.StreamResponse:
            if "Cookie" in request.headers:
                self.cookies.append(request.headers["Cookie"])
            response = await handler(request)
            response.set_cookie("track", os.urandom(8).hex())
            return response

        app = super().app()
        app.middlewares.append(track)
        return app

    async def inbox(self, request: web.Request) -> web.Response:
        data = await request.read()
        hdr = msgpack.unpackb(msgpack.unpackb(data, raw=False)["hdr"], raw=False)
        port = request.transport.get_extra_info("peername")[1] if request.transport else 0
        self.senders_by_port.setdefault(port, set()).add(hdr["from"])
        return await super().inbox(request)

    @property
    def local_url(self) -> str:  # a host name, not an address: cookies are kept for names
        return f"http://localhost:{self.port}"


async def _talk_as_four_identities(agent: Agent, a: TrackingVendor, b: TrackingVendor) -> None:
    await agent.connect(a.local_url)  # our pairwise key for A
    await agent.intentcast("a car", vendors=[a.local_url, b.local_url])  # a throw-away key
    await agent.connect(b.local_url)  # our pairwise key for B, on the same host as A
    await agent.intentcast("a bike", vendors=[a.local_url])  # another throw-away key


async def test_no_cookie_is_sent(agent: Agent) -> None:
    a, b = TrackingVendor("A"), TrackingVendor("B")
    await asyncio.gather(a.start(), b.start())
    try:
        await _talk_as_four_identities(agent, a, b)
        assert a.cookies == []
        assert b.cookies == []
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_no_connection_carries_two_identities(agent: Agent) -> None:
    a, b = TrackingVendor("A"), TrackingVendor("B")
    await asyncio.gather(a.start(), b.start())
    try:
        await _talk_as_four_identities(agent, a, b)
        for v in (a, b):
            senders = set().union(*v.senders_by_port.values())
            assert len(senders) >= 2  # the vendor saw several of our keys...
            assert all(len(s) == 1 for s in v.senders_by_port.values())  # ...never on one socket
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_one_relationships_messages_share_a_connection(agent: Agent) -> None:
    """Keeping identities apart does not cost a handshake per message: the messages of one
    relationship, sent one after another, go over one kept-alive connection (§11.6-3)."""
    a = TrackingVendor("A")
    await a.start()
    try:
        thread = (await agent.connect(a.local_url)).thread
        for _ in range(3):
            assert (await share(agent, thread)).status == "confirmed"
        await agent.intentcast("a car", vendors=[a.local_url])  # another identity: another socket
        ports = [p for p, senders in a.senders_by_port.items() if len(senders) == 1]
        assert len(a.senders_by_port) == 2
        assert len(ports) == 2
    finally:
        await a.stop()


async def test_each_vendor_is_told_an_endpoint_path_of_its_own(hostile: HostileVendor) -> None:
    seed = os.urandom(32)
    other = FakeVendor("Other")
    await other.start()
    try:
        async with await Agent.open(MemoryStore(), seed,
                                    endpoint="http://127.0.0.1:9999/") as agent:  # fmt: skip
            one = await agent.connect(hostile.url)
            two = await agent.connect(other.url)
            told = [next(r.message.body.endpoint for r in v.received
                         if r.message.type == "terms.offer") for v in (hostile, other)]
            assert told[0] != told[1]
            assert all(t.startswith("http://127.0.0.1:9999/r/") for t in told)
            assert all(len(t.rsplit("/", 1)[1]) == 22 for t in told)  # 128 bits
            assert told == [agent.endpoint_for(one.thread), agent.endpoint_for(two.thread)]
        again = await Agent.open(MemoryStore(), seed, endpoint="http://127.0.0.1:9999")
        assert again.endpoint_for(one.thread) == told[0]  # derived from the seed: survives
        await again.close()
    finally:
        await other.stop()


async def test_the_agent_endpoint_serves_each_relationship_at_its_own_path_only() -> None:
    seed = MasterSeed(os.urandom(32))
    store = MemoryStore()
    v1, v2 = FakeVendor("One"), FakeVendor("Two")
    await asyncio.gather(v1.start(), v2.start())
    runner: web.AppRunner | None = None
    try:
        async with await Agent.open(store, seed) as agent:
            t1 = (await agent.connect(v1.url)).thread
            t2 = (await agent.connect(v2.url)).thread
        node = await CustomerNode.open(store, seed)  # a later process: it knows no thread yet
        routes = node.inbound
        await routes.refresh()
        runner = web.AppRunner(routes.app(), access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        client = EndpointClient(retry=RetryPolicy(attempts=1))
        try:
            # nothing at the origin, nor at a guessed path
            for path in ("", "/r/" + "A" * 22):
                with pytest.raises(InvalidResponse) as miss:
                    await client.fetch_discovery(base + path)
                assert miss.value.status == 404
            # each relationship's document: its own key, no person's name, its own inbox
            docs = [await client.fetch_discovery(base + endpoint_path(seed, t), role="customer")
                    for t in (t1, t2)]  # fmt: skip
            assert docs[0].key != docs[1].key
            assert {d.name for d in docs} == {AGENT_NAME}
            assert docs[0].inbox == base + endpoint_path(seed, t1) + "/vrm/inbox"
            relationship_keys = {r.local_key for r in await store.relationships()}
            assert not {d.key for d in docs} & relationship_keys

            # the vendor of t1 reaches us at t1's path; t2's path refuses t1's messages
            now = now_ms()
            rel = v1.threads[t1]
            end = rel.send(RelationshipEnd(reason="closing"), now=now, msg_id=os.urandom(16))
            with pytest.raises(PeerProblemError) as wrong:
                await client.post_envelope(docs[1].inbox, end.message.envelope)
            assert wrong.value.code == "no_relationship"
            replies = await client.post_envelope(docs[0].inbox, end.message.envelope)
            assert open_envelope(replies[0], now=now_ms()).type == "receipt"
        finally:
            await client.close()
            await node.close()
    finally:
        if runner is not None:
            await runner.cleanup()
        await asyncio.gather(v1.stop(), v2.stop())
