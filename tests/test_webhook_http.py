"""The webhooks' HTTP/1.1 client (vrmproto/server/_webhook_http.py): the sans-IO reader
(``vrmproto._http1``, bodies dropped) frames answers as RFC 9112 §6.3 says, whatever pieces the
bytes arrive in; the Poster keeps
connections alive, sends a POST again on a new connection when the receiver had closed the kept
one before answering, speaks TLS, and follows no redirect.

Servers are real, on 127.0.0.1. No test sleeps: each awaits the answer or the error.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Callable

import pytest
import trustme
from _scripted import Scripted, scripted_server
from _timers import TimerLoop
from aiohttp import web

from vrmproto._http1 import MalformedResponse, Response, ResponseReader
from vrmproto.server._webhook_http import HTTPError, Poster, _Connection

# -- the reader, as the webhook client uses it: bodies dropped, the status read -------------------


class StatusReader:
    """:class:`ResponseReader` with ``keep_body=False``, each answer as its status."""

    def __init__(self) -> None:
        self.reader = ResponseReader(keep_body=False)

    def feed(self, data: bytes) -> int | None:
        answer = self.reader.feed(data)
        return None if answer is None else answer.status

    def eof(self) -> int | None:
        answer = self.reader.eof()
        return None if answer is None else answer.status

    @property
    def keep_alive(self) -> bool:
        return self.reader.keep_alive


ANSWERS: list[tuple[bytes, int, bool]] = [  # (bytes of one answer, status, kept alive)
    (b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", 204, True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, True),
    (b"HTTP/1.1 200 OK\r\ncontent-length:0\r\n\r\n", 200, True),
    (b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: y\r\n\r\n", 500, True),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 201,
     True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 200, False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, False),
    (b"HTTP/1.0 202 Accepted\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 202, True),
    (b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n", 307, True),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 304, True),
    (b"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx", 200, True),
]  # fmt: skip


def read_in_pieces(data: bytes, cut: Callable[[int], list[int]]) -> tuple[list[int], bool]:
    r = StatusReader()
    got = []
    start = 0
    for end in [*cut(len(data)), len(data)]:
        status = r.feed(data[start:end])
        start = end
        if status is not None:
            got.append(status)
    return got, r.keep_alive


@pytest.mark.parametrize(("data", "status", "alive"), ANSWERS)
def test_the_reader_frames_an_answer_in_any_pieces(data: bytes, status: int,
                                                   alive: bool) -> None:  # fmt: skip
    assert read_in_pieces(data, lambda n: []) == ([status], alive)
    assert read_in_pieces(data, lambda n: list(range(1, n))) == ([status], alive)
    for at in range(1, len(data)):
        assert read_in_pieces(data, lambda n, at=at: [at]) == ([status], alive)


def test_the_reader_reads_answers_one_after_another() -> None:
    r = StatusReader()
    assert r.feed(ANSWERS[1][0]) == 200
    assert r.feed(ANSWERS[3][0]) == 500
    assert r.feed(ANSWERS[0][0]) == 204


def test_an_answer_without_length_ends_when_the_connection_closes() -> None:
    r = StatusReader()
    assert r.feed(b"HTTP/1.1 200 OK\r\n\r\nsome body") is None
    assert r.feed(b" and more") is None
    assert not r.keep_alive
    assert r.eof() == 200
    coded = StatusReader()  # a coding other than chunked last: also until the close
    assert coded.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx") is None
    assert coded.eof() == 200


def test_a_close_before_an_answer_is_no_answer_and_within_one_an_error() -> None:
    assert StatusReader().eof() is None
    r = StatusReader()
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
    with pytest.raises(MalformedResponse, match="middle"):
        r.eof()


@pytest.mark.parametrize("data", [
    b"HTTP/2 200 OK\r\n\r\n",
    b"ICY 200 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\nextra",
    b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70_000,
])  # fmt: skip
def test_the_reader_refuses_what_is_not_http_1_1(data: bytes) -> None:
    with pytest.raises(MalformedResponse):
        StatusReader().feed(data)


def test_a_body_of_any_length_is_dropped_not_kept() -> None:
    """A receiver may answer with a page of its own: the status is what counts, whatever the
    body's length or content coding (no cap, nothing decoded, nothing held)."""
    big = 64 * 1024 * 1024
    r = ResponseReader(keep_body=False)
    assert r.feed(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
                  % big) is None  # fmt: skip
    for _ in range(big // (1024 * 1024) - 1):
        assert r.feed(b"x" * 1024 * 1024) is None
    answer = r.feed(b"x" * 1024 * 1024)
    assert answer is not None
    assert (answer.status, answer.body, answer.headers, r.keep_alive) == (200, b"", (), True)


def test_content_length_with_a_coding_closes_the_connection_after() -> None:
    r = StatusReader()
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert r.feed(data) == 200
    assert not r.keep_alive


# -- the poster ----------------------------------------------------------------------------------


class Seen:
    def __init__(self) -> None:
        self.peers: list[object] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []


async def aiohttp_receiver(seen: Seen, status: int = 204,
                           ssl_context: ssl.SSLContext | None = None
                           ) -> tuple[web.AppRunner, int]:  # fmt: skip
    async def hook(request: web.Request) -> web.Response:
        seen.peers.append(request.transport.get_extra_info("peername") if request.transport
                          else None)  # fmt: skip
        seen.headers.append(dict(request.headers))
        seen.bodies.append(await request.read())
        return web.Response(status=status, headers={"Location": "/elsewhere"})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Seen, int]]:
    seen = Seen()
    runner, port = await aiohttp_receiver(seen)
    yield seen, port
    await runner.cleanup()


async def test_posts_share_one_kept_alive_connection(receiver: tuple[Seen, int]) -> None:
    seen, port = receiver
    poster = Poster(f"http://127.0.0.1:{port}/hook", content_type="application/x-test",
                    user_agent="tester/1")  # fmt: skip
    for n in range(3):
        assert await poster.post(b"webhook-id: evt_%d\r\n" % n, b"body %d" % n) == 204
    await poster.close()
    assert len(set(seen.peers)) == 1
    assert seen.bodies == [b"body 0", b"body 1", b"body 2"]
    h = seen.headers[2]
    assert (h["Host"], h["User-Agent"], h["Content-Type"], h["webhook-id"], h["Content-Length"]) \
        == (f"127.0.0.1:{port}", "tester/1", "application/x-test", "evt_2", "6")  # fmt: skip


def test_posts_on_the_uvloop_the_vrm_runners_use() -> None:
    """``vrm vendor serve`` and ``vrm vendor events --replay`` run on uvloop where it is
    installed (vrmproto._loop), whose transports are not asyncio.Transport subclasses."""
    pytest.importorskip("uvloop", reason="uvloop (the vrmproto[speed] extra) is not installed")
    from vrmproto._loop import run  # noqa: PLC0415 -- only this test needs it

    async def post_twice() -> tuple[list[int], int]:
        seen = Seen()
        runner, port = await aiohttp_receiver(seen)
        try:
            poster = Poster(f"http://127.0.0.1:{port}/hook")
            statuses = [await poster.post(b"", b"one"), await poster.post(b"", b"two")]
            await poster.close()
        finally:
            await runner.cleanup()
        return statuses, len(set(seen.peers))

    assert run(post_twice(), fast=True) == ([204, 204], 1)


async def test_parallel_posts_open_a_connection_each(receiver: tuple[Seen, int]) -> None:
    seen, port = receiver
    poster = Poster(f"http://127.0.0.1:{port}/hook")
    assert await asyncio.gather(*(poster.post(b"", b"x") for _ in range(4))) == [204] * 4
    assert await poster.post(b"", b"y") == 204  # reuses one of them
    await poster.close()
    assert len(set(seen.peers)) == 4


async def test_a_redirect_is_an_answer_not_followed() -> None:
    seen = Seen()
    runner, port = await aiohttp_receiver(seen, status=307)
    poster = Poster(f"http://127.0.0.1:{port}/hook")
    assert await poster.post(b"", b"x") == 307
    await poster.close()
    await runner.cleanup()
    assert len(seen.bodies) == 1


async def test_user_info_in_the_url_is_basic_authentication(receiver: tuple[Seen, int]) -> None:
    seen, port = receiver
    poster = Poster(f"http://crm%40shop:s3cret@127.0.0.1:{port}/hook")
    assert await poster.post(b"", b"x") == 204
    await poster.close()
    assert seen.headers[0]["Authorization"] == "Basic " + base64.b64encode(
        b"crm@shop:s3cret").decode()


async def scripted(script: list[list[bytes | None]],
                   log: list[tuple[int, bytes]]) -> asyncio.Server:  # fmt: skip
    server, _ = await scripted_server(script, log)
    return server


OK = b"HTTP/1.1 204 No Content\r\n\r\n"


async def test_a_kept_connection_closed_by_the_receiver_is_not_a_failed_post() -> None:
    log: list[tuple[int, bytes]] = []
    server = await scripted([[OK, None], [OK]], log)  # the 2nd request finds it closing
    port = server.sockets[0].getsockname()[1]
    poster = Poster(f"http://127.0.0.1:{port}/")
    assert await poster.post(b"", b"one") == 204
    assert await poster.post(b"", b"two") == 204  # sent again, on a new connection
    await poster.close()
    server.close()
    assert [(i, body) for i, body in log if i >= 0] == [(0, b"one"), (0, b"two"), (1, b"two")]


async def test_a_new_connection_closed_without_an_answer_is_a_failure() -> None:
    log: list[tuple[int, bytes]] = []
    server = await scripted([[None]], log)
    port = server.sockets[0].getsockname()[1]
    poster = Poster(f"http://127.0.0.1:{port}/")
    with pytest.raises(ConnectionError):
        await poster.post(b"", b"one")
    await poster.close()
    server.close()
    assert [body for i, body in log if i >= 0] == [b"one"]  # not sent twice


async def test_an_answer_that_is_not_http_is_an_http_error_and_the_connection_goes() -> None:
    """What the reader refuses reaches the deliverer as HTTPError (a failed attempt), and the
    connection is not used again: the next POST opens a new one."""
    log: list[tuple[int, bytes]] = []
    server = await scripted([[b"HTTP/2 200 OK\r\n\r\n"], [OK]], log)
    port = server.sockets[0].getsockname()[1]
    poster = Poster(f"http://127.0.0.1:{port}/")
    with pytest.raises(HTTPError, match="status line"):
        await poster.post(b"", b"one")
    assert await poster.post(b"", b"two") == 204
    await poster.close()
    server.close()
    assert [(i, body) for i, body in log if i >= 0] == [(0, b"one"), (1, b"two")]


async def test_an_answer_that_never_comes_times_out() -> None:
    log: list[tuple[int, bytes]] = []

    class Mute(Scripted):
        def data_received(self, data: bytes) -> None:
            self.log.append((0, data))  # and no answer

    loop = asyncio.get_running_loop()
    mute = await loop.create_server(lambda: Mute([], log), "127.0.0.1", 0)
    poster = Poster(f"http://127.0.0.1:{mute.sockets[0].getsockname()[1]}/", timeout_s=0.05)
    with pytest.raises(TimeoutError):
        await poster.post(b"", b"x")
    await poster.close()
    mute.close()
    assert [i for i, _ in log if i >= 0] == [0]


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


def connected() -> tuple[TimerLoop, _Connection, Transport]:
    """A connection on a driven clock, and the transport it writes to."""
    clock, conn, transport = TimerLoop(asyncio.get_running_loop()), _Connection(), Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return clock, conn, transport


async def answered(conn: _Connection, request: asyncio.Future[Response]) -> int:
    conn.data_received(b"HTTP/1.1 204 No Content\r\n\r\n")
    return (await request).status


async def test_one_timer_per_connection_gives_each_request_its_own_deadline() -> None:
    """A connection arms one timer, not one per request: a request sent after an answered one
    is not cut short at the earlier deadline, and still fails at its own; a timer that fires on
    an idle connection arms no other (vrmproto/_deadline.py)."""
    clock, conn, transport = connected()
    assert await answered(conn, conn.send(b"one", clock, 10.0)) == 204  # type: ignore[arg-type]
    clock.now = 9.0
    second = conn.send(b"two", clock, 19.0)  # type: ignore[arg-type]
    assert clock.armed == [10.0]  # the first request's timer, kept
    clock.fire()  # at 10: early for the second request, so moved on to its deadline
    assert not second.done()
    assert clock.armed == [19.0]
    clock.fire()
    with pytest.raises(TimeoutError):
        await second
    assert transport.closed  # its answer may still come: the connection is not reused
    assert transport.written == [b"one", b"two"]
    clock, conn, transport = connected()
    assert await answered(conn, conn.send(b"one", clock, 10.0)) == 204  # type: ignore[arg-type]
    clock.fire()  # idle: nothing to expire, nothing armed again
    assert (clock.armed, transport.closed) == ([], False)
    later = conn.send(b"two", clock, 30.0)  # type: ignore[arg-type]
    assert clock.armed == [30.0]  # armed again by the next request
    assert await answered(conn, later) == 204


async def test_https_with_the_host_name_checked() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    seen = Seen()
    runner, port = await aiohttp_receiver(seen, ssl_context=server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    poster = Poster(f"https://127.0.0.1:{port}/hook", ssl_context=client_context)
    assert await poster.post(b"", b"sealed") == 204
    assert await poster.post(b"", b"again") == 204
    await poster.close()
    untrusting = Poster(f"https://127.0.0.1:{port}/hook", ssl_context=ssl.create_default_context())
    with pytest.raises(ssl.SSLError):
        await untrusting.post(b"", b"x")
    await untrusting.close()
    await runner.cleanup()
    assert seen.bodies == [b"sealed", b"again"]
    assert len(set(seen.peers)) == 1


def test_a_webhook_url_is_http_or_https_with_a_host() -> None:
    for bad in ("ftp://x/", "http:///path", "mailto:crm@example.org"):
        with pytest.raises(ValueError, match="webhook URL"):
            Poster(bad)
