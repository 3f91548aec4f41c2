"""The agent's lean HTTP/1.1 client (vrmproto/client/_http_conn.py) as EndpointClient uses it for
its POSTs: connections kept apart by channel (§11.6-3) and reused, a kept-alive connection the
server closed handled, timeouts, caps, 429/5xx as Transient, connection failures worded as
before, TLS with the certificate checked, no cookies, no proxy, no redirect — and on uvloop.

Servers are real, on 127.0.0.1 (aiohttp's, or a scripted asyncio one for what aiohttp's server
would never do). No test sleeps: each awaits the answer or the error.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from _scripted import Scripted, scripted_server
from aiohttp import web

from vrmproto.client import EndpointClient, RetryPolicy
from vrmproto.client._errors import InvalidResponse, Transient, Unreachable
from vrmproto.client._http import describe_failure, unreachable_words
from vrmproto.client._http_conn import ConnectError
from vrmproto.client._transport import Answer

ONCE = RetryPolicy(attempts=1)


class Receiver:
    """An aiohttp server on 127.0.0.1 that records who sent what and answers as told."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self.status = 200
        self.answer_headers: dict[str, str] = {}
        self.hold: asyncio.Event | None = None
        self.held = 0
        self.two_held = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername"))
        self.headers.append(dict(request.headers))
        body = await request.read()
        self.bodies.append(body)
        if self.hold is not None:
            self.held += 1
            if self.held == 2:
                self.two_held.set()
            await self.hold.wait()
        if request.path == "/chunked":
            out = web.StreamResponse(headers=self.answer_headers)
            out.enable_chunked_encoding()
            await out.prepare(request)
            for piece in (b"re", b"ply ", body):
                await out.write(piece)
            await out.write_eof()
            return out
        response = web.Response(status=self.status, body=b"reply " + body,
                                headers=self.answer_headers)  # fmt: skip
        if request.path == "/cookie":
            response.set_cookie("track", "me")
        return response

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def post(c: EndpointClient, url: str, body: bytes = b"x", *,
               channel: bytes | None = b"thread-1", cap: int = 1000) -> Answer:  # fmt: skip
    return await c._request("POST", url, body, headers={"Content-Type": "application/x-test"},
                            timeout_s=None, retry=None, cap=cap, channel=channel)  # fmt: skip


# -- channels and keep-alive -------------------------------------------------------------------


async def test_a_channel_keeps_one_connection_alive_and_channels_never_share(
    receiver: Receiver,
) -> None:
    async with EndpointClient(retry=ONCE) as c:
        for n in range(3):
            answer = await post(c, f"{receiver.url}/inbox", b"a%d" % n, channel=b"A")
            assert (answer.status, answer.body) == (200, b"reply a%d" % n)
            assert answer.header("CONTENT-LENGTH") == str(len(answer.body))
        await post(c, f"{receiver.url}/inbox", b"b", channel=b"B")
        await post(c, f"{receiver.url}/inbox", b"a3", channel=b"A")
        await post(c, f"{receiver.url}/inbox", b"none", channel=None)
        await post(c, f"{receiver.url}/inbox", b"none", channel=None)
    a, b = receiver.peers[0], receiver.peers[3]
    assert receiver.peers == [a, a, a, b, a, *receiver.peers[5:]]
    assert a != b
    assert len({a, b, *receiver.peers[5:]}) == 4  # no channel: a connection each
    assert receiver.headers[5]["Connection"] == "close"
    h = receiver.headers[0]
    assert (h["Host"], h["Content-Type"], h["Content-Length"]) == (
        receiver.url.removeprefix("http://"), "application/x-test", "2")
    assert "Cookie" not in h


async def test_at_most_per_channel_connections_at_once(receiver: Receiver) -> None:
    receiver.hold = asyncio.Event()
    async with EndpointClient(retry=ONCE, per_channel=1) as c:
        first = asyncio.ensure_future(post(c, f"{receiver.url}/inbox", b"1"))
        second = asyncio.ensure_future(post(c, f"{receiver.url}/inbox", b"2"))
        other = asyncio.ensure_future(post(c, f"{receiver.url}/inbox", b"3", channel=b"B"))
        await receiver.two_held.wait()  # the first of channel 1, and channel B's
        assert sorted(receiver.bodies) == [b"1", b"3"]  # the second waits for the connection
        receiver.hold.set()
        await asyncio.gather(first, second, other)
    assert receiver.peers[0] == receiver.peers[2] != receiver.peers[1]


async def test_the_least_recently_used_idle_channel_is_closed(receiver: Receiver) -> None:
    async with EndpointClient(retry=ONCE, max_channels=2) as c:
        for channel in (b"A", b"B", b"A", b"C", b"A", b"B"):
            await post(c, f"{receiver.url}/inbox", channel=channel)
    p = receiver.peers
    # A, B, A again on its connection; C pushes out B (A was used since); B comes back anew
    assert p[0] == p[2] == p[4]
    assert len({p[0], p[1], p[3], p[5]}) == 4


async def test_an_answer_after_the_server_closed_is_read_and_the_next_on_a_new_connection(
    receiver: Receiver,
) -> None:
    receiver.answer_headers = {"Connection": "close"}
    async with EndpointClient(retry=ONCE) as c:
        assert (await post(c, f"{receiver.url}/inbox", b"1")).body == b"reply 1"
        assert (await post(c, f"{receiver.url}/inbox", b"2")).body == b"reply 2"
    assert receiver.peers[0] != receiver.peers[1]


async def test_a_chunked_answer_is_read_whole(receiver: Receiver) -> None:
    async with EndpointClient(retry=ONCE) as c:
        for n in range(2):
            answer = await post(c, f"{receiver.url}/chunked", b"%d" % n)
            assert answer.body == b"reply %d" % n
    assert receiver.peers[0] == receiver.peers[1]


# -- a server that closes a kept-alive connection ---------------------------------------------


async def scripted(script: list[list[bytes | None]],
                   log: list[tuple[int, bytes]]) -> tuple[asyncio.Server, str]:  # fmt: skip
    server, port = await scripted_server(script, log)
    return server, f"http://127.0.0.1:{port}/inbox"


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_a_kept_connection_the_server_closed_sends_the_request_once_more() -> None:
    log: list[tuple[int, bytes]] = []
    server, url = await scripted([[OK, None], [OK]], log)  # the 2nd request finds it closing
    async with EndpointClient(retry=ONCE) as c:
        assert (await post(c, url, b"one")).body == b"ok"
        assert (await post(c, url, b"two")).body == b"ok"  # sent again, on a new connection
    server.close()
    assert [(i, body) for i, body in log if i >= 0] == [(0, b"one"), (0, b"two"), (1, b"two")]


async def test_a_new_connection_closed_without_an_answer_is_not_sent_again() -> None:
    log: list[tuple[int, bytes]] = []
    server, url = await scripted([[None]], log)
    async with EndpointClient(retry=ONCE) as c:
        with pytest.raises(Unreachable, match="the server closed the connection"):
            await post(c, url, b"one")
    server.close()
    assert [body for i, body in log if i >= 0] == [b"one"]


async def test_an_answer_cut_short_is_unreachable_and_not_resent() -> None:
    log: list[tuple[int, bytes]] = []

    class Half(Scripted):
        def data_received(self, data: bytes) -> None:
            assert self.transport is not None
            self.log.append((self.index, data.split(b"\r\n\r\n", 1)[1]))
            if len(self.log) == 2:
                self.transport.write(OK)
            else:
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhal")
                self.transport.close()

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Half([], log), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    async with EndpointClient(retry=ONCE) as c:
        await post(c, url, b"one")
        with pytest.raises(Unreachable, match="cut short"):
            await post(c, url, b"two")
    server.close()
    assert [body for i, body in log if i >= 0] == [b"one", b"two"]


async def test_bytes_that_are_not_http_are_an_invalid_answer() -> None:
    """A server answered, not in HTTP: not "unreachable" (test_s19_client_edges_http)."""
    log: list[tuple[int, bytes]] = []
    server, url = await scripted([[b"SSH-2.0-OpenSSH_9.6\r\n\r\n"]], log)
    async with EndpointClient(retry=ONCE) as c:
        with pytest.raises(InvalidResponse, match="malformed answer"):
            await post(c, url)
    server.close()


# -- limits, time, errors ----------------------------------------------------------------------


async def test_no_answer_in_time_is_unreachable_timed_out() -> None:
    log: list[tuple[int, bytes]] = []

    class Mute(Scripted):
        def data_received(self, data: bytes) -> None:
            self.log.append((0, data))

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Mute([], log), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    async with EndpointClient(retry=ONCE, timeout_s=0.05) as c:
        with pytest.raises(Unreachable, match="timed out") as info:
            await post(c, url)
        assert unreachable_words(str(info.value)) == "unreachable: timed out"
    server.close()


async def test_a_reused_connection_times_out_its_own_request() -> None:
    """The connection's one timer, armed by the answered first request, does not cut the second
    short: it moves on to the second's deadline, and fires there (vrmproto/_deadline.py)."""

    class AnswerOnce(Scripted):
        def data_received(self, data: bytes) -> None:
            if not any(i == 0 for i, _ in self.log):
                super().data_received(data)  # the first request: answered
            else:
                self.log.append((0, data))  # the second: no answer

    log: list[tuple[int, bytes]] = []
    ok = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: AnswerOnce([[ok]], log), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    async with EndpointClient(retry=ONCE, timeout_s=0.2) as c:
        assert (await post(c, url)).status == 202
        with pytest.raises(Unreachable, match="timed out"):
            await post(c, url)
    server.close()
    assert [i for i, _ in log] == [-1, 0, 0]  # one connection, both requests on it


async def test_an_oversized_answer_is_refused_and_its_connection_dropped(
    receiver: Receiver,
) -> None:
    async with EndpointClient(retry=ONCE) as c:
        await post(c, f"{receiver.url}/inbox", b"ok")
        with pytest.raises(InvalidResponse, match="more than 10 bytes") as info:
            await post(c, f"{receiver.url}/chunked", b"0123456789", cap=10)
        assert info.value.status == 200
        with pytest.raises(InvalidResponse, match="16 bytes; the limit is 10"):
            await post(c, f"{receiver.url}/inbox", b"0123456789", cap=10)
        await post(c, f"{receiver.url}/inbox", b"ok")
    assert len(set(receiver.peers)) == 3  # one spent by each refused answer


async def test_429_with_retry_after_and_5xx_are_transient(receiver: Receiver) -> None:
    receiver.status = 429
    receiver.answer_headers = {"Retry-After": "2"}
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    async with EndpointClient(retry=RetryPolicy(attempts=2), sleep=sleep) as c:
        with pytest.raises(Transient) as info:
            await post(c, f"{receiver.url}/inbox")
        assert (info.value.status, info.value.retry_after, waits) == (429, 2, [2])
        receiver.status, receiver.answer_headers = 503, {}
        with pytest.raises(Transient, match="answered 503"):
            await post(c, f"{receiver.url.replace('127.0.0.1', 'localhost')}/inbox")
    assert len(receiver.bodies) == 4


async def test_a_redirect_is_not_followed_and_no_cookie_is_kept(receiver: Receiver) -> None:
    receiver.status = 307
    receiver.answer_headers = {"Location": "/elsewhere"}
    async with EndpointClient(retry=ONCE) as c:
        assert (await post(c, f"{receiver.url}/cookie")).status == 307
        await post(c, f"{receiver.url}/cookie")
    assert len(receiver.bodies) == 2
    assert "Cookie" not in receiver.headers[1]


async def test_a_proxy_in_the_environment_is_not_used(receiver: Receiver,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    async with EndpointClient(retry=ONCE) as c:
        assert (await post(c, f"{receiver.url}/inbox")).status == 200


async def test_connection_refused_is_worded_as_before() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with EndpointClient(retry=ONCE) as c:
        with pytest.raises(Unreachable) as info:
            await post(c, f"http://127.0.0.1:{port}/inbox")
    assert str(info.value) == f"POST http://127.0.0.1:{port}/inbox: connection refused"
    assert unreachable_words(str(info.value)) == "unreachable: connection refused"
    # as aiohttp's own error for the same failure is worded
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as theirs:
            await session.post(f"http://127.0.0.1:{port}/inbox")
    assert describe_failure(theirs.value) == "connection refused"
    refused = ConnectionRefusedError(111, "Connect call failed")
    assert describe_failure(ConnectError("h", 1, refused)) == "connection refused"
    both = OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 9, 0, 0), "
                   "[Errno 111] Connect call failed ('127.0.0.1', 9)")  # fmt: skip
    assert describe_failure(ConnectError("localhost", 9, both)) == "connection refused"
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert describe_failure(ConnectError("nowhere.invalid", 80, gai)) == (
        "the host name nowhere.invalid does not resolve")


async def test_a_url_we_cannot_send_to_is_a_transport_error() -> None:
    from vrmproto import TransportError  # noqa: PLC0415

    async with EndpointClient(retry=ONCE) as c:
        for url in ("ftp://127.0.0.1/inbox", "http:///inbox", "http://127.0.0.1:99999/"):
            with pytest.raises(TransportError, match="invalid URL"):
                await post(c, url)


# -- TLS, uvloop ---------------------------------------------------------------------------------


async def test_https_with_the_certificate_checked(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    receiver = Receiver()
    url = await receiver.start(ssl_context=server_context)
    try:
        async with EndpointClient(retry=ONCE) as c:  # the system's roots: not this CA
            with pytest.raises(Unreachable, match="cannot connect"):
                await post(c, f"{url}/inbox")
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # as aiohttp honours it
        async with EndpointClient(retry=ONCE) as c:
            assert (await post(c, f"{url}/inbox", b"1")).body == b"reply 1"
            assert (await post(c, f"{url}/inbox", b"2")).body == b"reply 2"
    finally:
        await receiver.stop()
    assert len(receiver.peers) == 2
    assert receiver.peers[0] == receiver.peers[1]


def test_posts_on_uvloop_whose_transports_are_not_asyncio_transports() -> None:
    pytest.importorskip("uvloop", reason="uvloop (the vrmproto[speed] extra) is not installed")
    from vrmproto._loop import run  # noqa: PLC0415 -- only this test needs it

    async def go() -> tuple[list[bytes], int, list[bytes]]:
        receiver = Receiver()
        await receiver.start()
        log: list[tuple[int, bytes]] = []
        server, url = await scripted([[OK, None], [OK]], log)
        try:
            async with EndpointClient(retry=ONCE) as c:
                bodies = [(await post(c, f"{receiver.url}/inbox", b"%d" % n)).body
                          for n in range(2)]  # fmt: skip
                bodies.append((await post(c, f"{receiver.url}/chunked", b"c")).body)
                await post(c, url, b"one")
                await post(c, url, b"two")  # the kept connection closed: sent again
        finally:
            server.close()
            await receiver.stop()
        return bodies, len(set(receiver.peers)), [b for i, b in log if i >= 0]

    assert run(go(), fast=True) == ([b"reply 0", b"reply 1", b"reply c"], 1,
                                    [b"one", b"two", b"two"])  # fmt: skip


async def test_a_session_given_by_the_caller_is_used_for_everything(receiver: Receiver) -> None:
    async with aiohttp.ClientSession() as session:
        async with EndpointClient(retry=ONCE, session=session) as c:
            assert (await post(c, f"{receiver.url}/inbox", b"s")).body == b"reply s"
        assert "aiohttp" in receiver.headers[0].get("User-Agent", "")
