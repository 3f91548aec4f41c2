"""The lean connections of ``serve()`` (vrmproto/server/_lean.py, issue 12).

The hot routes are answered without aiohttp's server machinery, and everything else is handed
to aiohttp on the same connection. What must hold:

- a lean answer is the aiohttp application's, field for field (``Date`` and the signatures
  aside): the same requests, in one write on one connection, to ``serve()`` and to the plain
  aiohttp server (``serve_app(make_app(...))``) get the same answers — discovery, offers and
  their replays, the endpoint's problems, a rate limit, a failure of the receiver, and the
  requests handed over (an unknown path, a wrong content type, ``/healthz``) in between;
- a hand-over: a body in two writes, a chunked one, TLS on both event loops, a head too long
  for the lean reader, which keeps its header deadline (§10.1-1);
- the client behind a trusted proxy, found from the forwarding fields as aiohttp finds it;
- shutting down lets a request in progress finish and be answered;
- the head of an answer is the bytes aiohttp writes for the same ``web.Response``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from _broken_vendor import make_endpoint
from _tls import tls_contexts
from _vendor_proc import Customer, now_ms
from aiohttp import web

from vrmproto import Identity, Limits, open_envelope
from vrmproto._binding import CONTENT_TYPE, DEFAULT_HISTORY_PATH, DEFAULT_INBOX_PATH
from vrmproto._http1_server import MAX_HEAD
from vrmproto.server import ConnectionLimits, Endpoint, Server, make_app, serve, serve_app
from vrmproto.server._app import NOT_PROXIED
from vrmproto.server._connections import MAX_HEAD_LINES, abort
from vrmproto.server._lean import LeanConnection, _answer_head
from vrmproto.server._logging import REQUEST_LOG
from vrmproto.server._proxy import Deployment
from vrmproto.store import MemoryStore

TEST_VENDOR = Identity(bytes(range(32)))  # tests/_broken_vendor.py's key
Answer = tuple[bytes, list[tuple[bytes, bytes]], bytes]  # status line, fields, body


def post(path: str, body: bytes, *, content_type: str = CONTENT_TYPE, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body  # fmt: skip


def get(path: str, *, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


CLOSE = "Connection: close\r\n"


def split_answers(data: bytes) -> list[Answer]:
    """The answers in ``data``, framed by their Content-Length (none: no body)."""
    out = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, head
        status, *lines = head.split(b"\r\n")
        fields = [(n.lower(), v.strip()) for n, _, v in (line.partition(b":") for line in lines)]
        length = int(dict(fields).get(b"content-length", b"0"))
        out.append((status, fields, data[:length]))
        data = data[length:]
    return out


async def exchange(port: int, *writes: bytes, tls: ssl.SSLContext | None = None) -> list[Answer]:
    """Send each of ``writes`` (the next once an answer came, if more than one) and read until
    the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    got = b""
    try:
        async with asyncio.timeout(10):
            for i, data in enumerate(writes):
                writer.write(data)
                await writer.drain()
                if i + 1 < len(writes):
                    got += await reader.read(65536)
            while chunk := await reader.read(65536):
                got += chunk
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return split_answers(got)


def comparable(answer: Answer) -> tuple[bytes, list[tuple[bytes, bytes]], str | None]:
    """An answer without what differs from one signing to the next: the Date, the discovery
    signature, the bytes of a signed body (its problem code is kept)."""
    status, fields, body = answer
    kept = [(n, v) for n, v in fields if n not in (b"date", b"vrm-signature")]
    code = None
    if int(status.split()[1]) >= 400 and body[:1] != b"{":
        code = open_envelope(body, now=now_ms()).body.code
    return status, kept, code


@contextlib.asynccontextmanager
async def two_servers(
    endpoint: Callable[[], Endpoint] = lambda: make_endpoint(MemoryStore()),
    deployment: Deployment = NOT_PROXIED,
) -> AsyncIterator[tuple[Server, Server]]:
    """``serve()`` (lean) and the aiohttp application served alone, each on its own endpoint."""
    lean = await serve(endpoint(), deployment=deployment)
    plain_endpoint = endpoint()
    plain = await serve_app(make_app(plain_endpoint, deployment=deployment), plain_endpoint)
    try:
        yield lean, plain
    finally:
        await lean.close()
        await plain.close()


def offer_bytes() -> bytes:
    return Customer(TEST_VENDOR, base_url="http://127.0.0.1").offer("vrm.no-tracking").envelope


CASES: dict[str, Callable[[], list[bytes]]] = {
    "discovery": lambda: [get("/.well-known/vrm") + get("/.well-known/vrm", extra=CLOSE)],
    "offer-and-replay": lambda: [(o := offer_bytes()) and post(DEFAULT_INBOX_PATH, o)
                                 + post(DEFAULT_INBOX_PATH, o, extra=CLOSE)],
    "bad-envelope": lambda: [post(DEFAULT_INBOX_PATH, b"\x93\x01\x02\x03")
                             + post(DEFAULT_HISTORY_PATH, b"\xc1", extra=CLOSE)],
    "handed-over-between": lambda: [post(DEFAULT_INBOX_PATH, offer_bytes()) + get("/nope")
                                    + get("/healthz") + get("/.well-known/vrm", extra=CLOSE)],
    "wrong-content-type": lambda: [get("/.well-known/vrm") + post(
        DEFAULT_INBOX_PATH, b"x", content_type="text/plain")],
    "one-write-each": lambda: [get("/.well-known/vrm"), post(DEFAULT_INBOX_PATH, offer_bytes()),
                               get("/healthz", extra=CLOSE)],
}  # fmt: skip


@pytest.fixture
def lean_answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The routes the lean path answered, in order."""
    answered: list[str] = []
    real = LeanConnection._answer

    async def answer(self: LeanConnection, name: str, request: Any) -> None:
        answered.append(name)
        await real(self, name, request)

    monkeypatch.setattr(LeanConnection, "_answer", answer)
    return answered


LEAN = {"discovery": 2, "offer-and-replay": 2, "bad-envelope": 2, "handed-over-between": 1,
        "wrong-content-type": 1, "one-write-each": 2}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
async def test_lean_answers_are_the_aiohttp_applications(
    case: str, lean_answers: list[str]
) -> None:
    writes = CASES[case]()
    async with two_servers() as (lean, plain):
        ours = await exchange(lean.port, *writes)
        theirs = await exchange(plain.port, *writes)
    assert [comparable(a) for a in ours] == [comparable(a) for a in theirs]
    assert len(ours) >= 2
    assert len(lean_answers) == LEAN[case]  # the rest went to aiohttp


async def test_a_rate_limited_client_gets_the_same_refusal() -> None:
    def strict() -> Endpoint:
        return Endpoint(TEST_VENDOR, store=MemoryStore(), name="strict",
                        limits=Limits(rate_per_address_per_minute=2))  # fmt: skip

    requests = get("/.well-known/vrm") * 4
    async with two_servers(strict) as (lean, plain):
        ours = await exchange(lean.port, requests)
        theirs = await exchange(plain.port, requests)
    assert [comparable(a) for a in ours] == [comparable(a) for a in theirs]
    assert [a[0].split()[1] for a in ours] == [b"200", b"200", b"429"]  # then closed


async def test_a_failure_of_the_receiver_is_the_same_500(caplog: pytest.LogCaptureFixture) -> None:
    def failing() -> Endpoint:
        endpoint = make_endpoint(MemoryStore())

        async def broken(client: str) -> None:
            raise RuntimeError("the limiter's database is gone")

        endpoint.acheck_address = broken  # type: ignore[method-assign,assignment]
        return endpoint

    requests = get("/.well-known/vrm") + get("/.well-known/vrm")
    with caplog.at_level(logging.ERROR, logger="vrmproto.server"):
        async with two_servers(failing) as (lean, plain):
            ours = await exchange(lean.port, requests)
            theirs = await exchange(plain.port, requests)
    assert [comparable(a) for a in ours] == [comparable(a) for a in theirs]
    assert [comparable(a)[2] for a in ours] == ["internal_error"]  # then closed
    failures = [r for r in caplog.records if r.getMessage().startswith("failed handling")]
    assert len(failures) == 2  # one per server, each with its traceback
    assert all(r.exc_info is not None for r in failures)


# -- hand-overs ------------------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    server = await serve(make_endpoint(MemoryStore()))
    yield server
    await server.close()


def lean_open(server: Server) -> int:
    return sum(isinstance(c, LeanConnection) for c in server.connections._open)


async def test_a_body_in_two_writes_is_handed_over_and_answered(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    given_away = asyncio.Event()
    real = LeanConnection._give_away

    def give_away(self: LeanConnection, head_deadline: float | None) -> None:
        real(self, head_deadline)
        given_away.set()

    monkeypatch.setattr(LeanConnection, "_give_away", give_away)
    request = post(DEFAULT_INBOX_PATH, offer_bytes(), extra=CLOSE)
    half = len(request) - 100
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request[:half])
    await writer.drain()
    async with asyncio.timeout(10):
        await given_away.wait()  # on reading the head, its body incomplete
    assert lean_open(server) == 0
    assert len(server.connections) == 1
    writer.write(request[half:])
    async with asyncio.timeout(10):
        answer = split_answers(await reader.read())
    writer.close()
    assert answer[0][0] == b"HTTP/1.1 200 OK"


async def test_a_chunked_post_is_answered_by_aiohttp(server: Server) -> None:
    body = offer_bytes()
    request = (
        f"POST {DEFAULT_INBOX_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}"
        f"\r\nTransfer-Encoding: chunked\r\n{CLOSE}\r\n{len(body):x}\r\n"
    ).encode()
    answers = await exchange(
        server.port, get("/.well-known/vrm") + request + body + b"\r\n0\r\n\r\n"
    )
    assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 2


async def test_a_head_handed_over_keeps_its_header_deadline() -> None:
    """A head longer than the lean reader waits for goes to aiohttp; the header deadline that
    started with its first byte still closes the connection (§10.1-1)."""
    limits = ConnectionLimits(header_timeout_ms=300, idle_timeout_ms=400)
    server = await serve(make_endpoint(MemoryStore()), connection_limits=limits)
    try:
        # over the lean reader's MAX_HEAD, under the longest head aiohttp's handler reads
        head = get("/.well-known/vrm")[:-2] + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000)
                                                        for i in range(20))  # fmt: skip
        assert MAX_HEAD < len(head) < MAX_HEAD_LINES * limits.max_header_line_bytes
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head)  # never finished
        async with asyncio.timeout(5):  # the deadline is 300 ms; without one it never closes
            assert await reader.read() == b""
        assert lean_open(server) == 0
        writer.close()
    finally:
        await server.close()


@pytest.mark.parametrize("fields", [
    "X-Forwarded-For: 203.0.113.9\r\n",
    "X-Forwarded-For: 198.51.100.1, 127.0.0.1\r\nX-Forwarded-Proto: https\r\n",
    'Forwarded: for="[2001:db8::1]:4711";proto=https, for=127.0.0.1\r\n',
    "Forwarded: for=unknown\r\n",
    "Forwarded: for=192.0.2.60\r\nForwarded: for=192.0.2.61\r\n",  # repeated: aiohttp's
    "",
], ids=["x-forwarded-for", "chain", "forwarded", "unknown", "repeated", "none"])  # fmt: skip
async def test_a_trusted_proxys_client_is_the_one_aiohttp_finds(
    fields: str, caplog: pytest.LogCaptureFixture, lean_answers: list[str]
) -> None:
    """From a trusted proxy the client's address comes from its forwarding fields: the one the
    request log shows, and the rate limits count (§12.13-1), as aiohttp's middleware finds it."""
    deployment = Deployment.of(None, ["127.0.0.1/32"])
    clients = []
    async with two_servers(deployment=deployment) as (lean, plain):
        for server in (lean, plain):
            caplog.clear()
            with caplog.at_level(logging.INFO, logger=REQUEST_LOG.name):
                answers = await exchange(server.port, post(DEFAULT_INBOX_PATH, offer_bytes(),
                                                           extra=fields + CLOSE))  # fmt: skip
            assert answers[0][0] == b"HTTP/1.1 200 OK"
            logged = [r for r in caplog.records if r.name == REQUEST_LOG.name]
            clients.append([r.fields["client"] for r in logged])  # type: ignore[attr-defined]
    assert clients[0] == clients[1]
    assert len(clients[0]) == 1
    assert len(lean_answers) == (0 if "repeated" in fields or fields.count("Forwarded:") > 1
                                 else 1)  # fmt: skip


async def _lean_then_handed_over(tls: bool) -> None:
    server_tls, client_tls = tls_contexts() if tls else (None, None)
    server = await serve(make_endpoint(MemoryStore()), ssl_context=server_tls)
    try:
        answers = await exchange(
            server.port,
            get("/.well-known/vrm") + get("/healthz") + get("/.well-known/vrm", extra=CLOSE),
            tls=client_tls,
        )
    finally:
        await server.close()
    assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 3


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_lean_then_handed_over(tls: bool) -> None:
    await _lean_then_handed_over(tls)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_lean_then_handed_over_on_uvloop(tls: bool) -> None:
    """What ``vrm vendor serve`` runs on where uvloop is installed (its TLS transport is not an
    asyncio.Transport; its transports' set_protocol is its own)."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_lean_then_handed_over(tls))


# -- shutting down ---------------------------------------------------------------------------------


async def test_a_request_in_progress_is_answered_before_the_server_stops() -> None:
    endpoint = make_endpoint(MemoryStore())
    entered, release = asyncio.Event(), asyncio.Event()
    real: Callable[..., Awaitable[Any]] = endpoint.handle_inbox

    async def slow(data: bytes, *, client: str = "") -> Any:
        entered.set()
        await release.wait()
        return await real(data, client=client)

    endpoint.handle_inbox = slow  # type: ignore[method-assign]
    server = await serve(endpoint)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    idle = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(post(DEFAULT_INBOX_PATH, offer_bytes()))
    async with asyncio.timeout(10):
        await entered.wait()
        closing = asyncio.create_task(server.close())
        assert await idle[0].read() == b""  # an idle connection is closed at once
        release.set()
        answer = split_answers(await reader.read())
        await closing
    writer.close()
    idle[1].close()
    assert answer[0][0] == b"HTTP/1.1 200 OK"


# -- the answer's head, byte for byte ------------------------------------------------------------


@pytest.mark.parametrize(("status", "headers", "body", "close"), [
    (204, {}, b"", False),
    (200, {"Content-Type": CONTENT_TYPE}, b"abc", False),
    (200, {}, b"abc", True),
    (429, {"Content-Type": CONTENT_TYPE, "Retry-After": "7"}, b"abc", True),
    (500, {"Content-Type": CONTENT_TYPE, "Connection": "close"}, b"x", True),
    (299, {}, b"", False),  # no reason phrase
])  # fmt: skip
async def test_an_answers_head_is_aiohttps(
    status: int, headers: dict[str, str], body: bytes, close: bool
) -> None:
    async def handler(request: web.Request) -> web.Response:
        out = web.Response(status=status, body=body or None, headers=headers)
        if close:
            out.force_close()
        return out

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        theirs = await exchange(port, get("/") + get("/", extra=CLOSE))
    finally:
        await runner.cleanup()
    ours = split_answers(_answer_head(status, headers, len(body), close) + body)
    assert [(s, [f for f in fs if f[0] != b"date"], b) for s, fs, b in ours] == [
        (s, [f for f in fs if f[0] != b"date"], b) for s, fs, b in theirs[:1]
    ]


async def test_a_request_whose_client_goes_away_is_still_handled_to_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The answer cannot be sent, but the message is not cut short mid-commit (as aiohttp's
    handler, which is not cancelled when its client goes away)."""
    endpoint = make_endpoint(MemoryStore())
    entered, release, done, lost = (asyncio.Event() for _ in range(4))
    real_lost = LeanConnection.connection_lost

    def connection_lost(self: LeanConnection, exc: BaseException | None) -> None:
        real_lost(self, exc)
        lost.set()

    monkeypatch.setattr(LeanConnection, "connection_lost", connection_lost)
    real: Callable[..., Awaitable[Any]] = endpoint.handle_inbox

    async def slow(data: bytes, *, client: str = "") -> Any:
        entered.set()
        await release.wait()
        try:
            return await real(data, client=client)
        finally:
            done.set()

    endpoint.handle_inbox = slow  # type: ignore[method-assign]
    server = await serve(endpoint)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(post(DEFAULT_INBOX_PATH, offer_bytes()))
        async with asyncio.timeout(10):
            await entered.wait()
            # gone for good: a reset (a FIN alone is a half-close, whose request is answered)
            abort(writer.transport)
            await lost.wait()
            assert len(server.connections) == 0
            release.set()
            await done.wait()
    finally:
        await server.close()
