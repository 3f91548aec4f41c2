"""The vendor's HTTP connections (issue 10, items 1 and 5; spec §10.1, §11.8, §12.4-5).

- slow headers and idle connections are closed after their deadlines (§10.1-1, §10.1-2);
- open connections are capped per address (or prefix) and in total, and at the total cap the
  connection that waited longest for a request makes room (§10.1-3, §10.1-4);
- a vendor started with ``ulimit -n 256`` keeps serving an honest customer while hundreds of
  never-finished request heads are held open, and logs no tracebacks (§11.8);
- failures to accept are logged once per interval, without a traceback (§10.1-6);
- HTTP that does not parse gets the endpoint's signed problem, and the connection closed
  (§12.4-5).

Slow clients are raw sockets on loopback; some bind the source addresses 127.0.0.2… so that
they count apart from the honest client on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _broken_vendor import make_endpoint
from _vendor_proc import VENDOR_SEED, Customer, now_ms

from vrmproto import Identity, MasterSeed, open_envelope
from vrmproto._binding import CONTENT_TYPE, DEFAULT_INBOX_PATH, WELL_KNOWN_PATH
from vrmproto.client import CustomerNode
from vrmproto.server import ConnectionLimits, Server, serve, serve_app
from vrmproto.server._connections import ConnectionGuard, _AcceptErrors
from vrmproto.store import MemoryStore

HERE = Path(__file__).resolve().parent
VENDOR = Identity(VENDOR_SEED)
TEST_VENDOR = Identity(bytes(range(32)))  # tests/_broken_vendor.py's key
PARTIAL_HEAD = f"POST {DEFAULT_INBOX_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()


class Slow:
    """A client that opened a connection and sent part of a request head, or nothing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1", data: bytes = PARTIAL_HEAD) -> Slow:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                      local_addr=(source, 0))  # fmt: skip
        if data:
            with contextlib.suppress(OSError):
                writer.write(data)
                await writer.drain()
        return cls(reader, writer)

    async def closed_by_server(self) -> bytes:
        """Read until the server closes (or resets) the connection; return what came."""
        out = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await self.reader.read(65536):
                out += chunk
        return out

    async def close(self) -> None:
        self.writer.transport.abort()  # nothing to flush; and a queued connect never drains
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@pytest.fixture
async def small() -> AsyncIterator[Server]:
    """The conformance test vendor with deadlines of a fraction of a second and small caps."""
    limits = ConnectionLimits(header_timeout_ms=300, idle_timeout_ms=400,
                              max_connections=6, max_connections_per_address=4,
                              max_header_line_bytes=1024)  # fmt: skip
    server = await serve(make_endpoint(MemoryStore()), connection_limits=limits)
    yield server
    await server.close()


async def honest(url: str, session: aiohttp.ClientSession, vendor: Identity) -> None:
    """Discovery, then a terms.offer that gets a verified receipt and a terms.accept."""
    async with session.get(url + WELL_KNOWN_PATH) as resp:
        assert resp.status == 200
        await resp.read()
    c = Customer(vendor, base_url=url)
    await c.agree(session, "vrm.no-tracking")


# -- deadlines (§10.1-1, §10.1-2) -----------------------------------------------------------------


async def test_a_request_head_that_never_finishes_is_closed(small: Server) -> None:
    slow = await Slow.open(small.port)
    try:
        async with asyncio.timeout(5):  # the deadline is 300 ms; without one it never closes
            assert await slow.closed_by_server() == b""
    finally:
        await slow.close()


async def test_idle_connections_are_closed_before_and_after_a_request(small: Server) -> None:
    silent = await Slow.open(small.port, data=b"")
    kept = await Slow.open(small.port, data=b"GET /.well-known/vrm HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        async with asyncio.timeout(5):
            assert await silent.closed_by_server() == b""
            answer = await kept.closed_by_server()
        assert answer.startswith(b"HTTP/1.1 200 ")  # answered, kept alive, then closed idle
        assert b"connection: close" not in answer.lower()
    finally:
        await silent.close()
        await kept.close()


async def test_a_busy_request_is_not_cut_by_the_deadlines(small: Server) -> None:
    """The deadlines stop once a head has arrived: a body read (1 s here) outlasts them."""
    async with aiohttp.ClientSession() as session:
        c = Customer(TEST_VENDOR, base_url=small.url)
        offer = c.offer("vrm.no-tracking")

        async def trickle() -> AsyncIterator[bytes]:
            half = len(offer.envelope) // 2
            yield offer.envelope[:half]
            await asyncio.sleep(0.6)  # the client is slow on purpose: longer than 400 ms idle
            yield offer.envelope[half:]

        async with session.post(c.inbox, data=trickle(),
                                headers={"Content-Type": CONTENT_TYPE}) as resp:  # fmt: skip
            assert resp.status == 200, await resp.read()


# -- caps (§10.1-3, §10.1-4) -----------------------------------------------------------------------


async def test_connections_are_capped_per_address_and_in_total(small: Server) -> None:
    guard = small.connections
    flood = [await Slow.open(small.port, source="127.0.0.2") for _ in range(6)]
    try:
        async with aiohttp.ClientSession() as session:
            await honest(small.url, session, TEST_VENDOR)  # accepted after all of the above
            assert guard.count("127.0.0.2") == 4  # max_connections_per_address
            refused = flood[4:]
            async with asyncio.timeout(5):
                for s in refused:
                    assert await s.closed_by_server() == b""
            more = [await Slow.open(small.port, source="127.0.0.3") for _ in range(4)]
            flood += more
            await honest(small.url, session, TEST_VENDOR)
            # 6 in total: the newest are in, the ones that waited longest made room
            assert len(guard) <= 6
            assert guard.count("127.0.0.3") == 4
            async with asyncio.timeout(5):
                for s in flood[:2]:
                    assert await s.closed_by_server() == b""
    finally:
        for s in flood:
            await s.close()


def test_addresses_are_counted_by_prefix_when_asked() -> None:
    exact = ConnectionLimits()
    assert exact.address_key("192.0.2.7") == "192.0.2.7"
    assert exact.address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert exact.address_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    wide = ConnectionLimits(ipv4_prefix=24, ipv6_prefix=48)
    assert wide.address_key("192.0.2.7") == wide.address_key("192.0.2.200") == "192.0.2.0/24"
    assert wide.address_key("2001:db8:1:ffff::1") == "2001:db8:1::/48"
    assert ConnectionLimits(ipv6_prefix=128).address_key("2001:db8::1") == "2001:db8::1"


def test_the_total_cap_fits_the_open_file_limit() -> None:
    limits = ConnectionLimits(max_connections=1024, open_file_reserve=64)
    assert limits.total_cap(256) == 192
    assert limits.total_cap(100_000) == 1024
    assert limits.total_cap(10) == 1
    # what one wake-up of the event loop may accept before closed connections free theirs
    assert limits.total_cap(384, accept_burst=128) == 192


@pytest.mark.parametrize("bad", [
    {"header_timeout_ms": 0}, {"idle_timeout_ms": 20_001}, {"ipv4_prefix": 33},
    {"ipv6_prefix": 129}, {"max_connections": -1},
])
def test_connection_limits_are_checked(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must"):
        ConnectionLimits(**bad)


# -- the reproduction, small: a vendor with 384 file descriptors (§11.8) ---------------


async def test_slow_headers_do_not_take_a_vendor_with_384_descriptors_offline(
    tmp_path: Path,
) -> None:
    """Hundreds of never-finished heads from three addresses, more than the vendor has file
    descriptors: an honest customer still gets discovery and a receipt, and the vendor's log
    holds no traceback. (Before issue 10 the honest request waited in the listen queue.)

    384 descriptors leave 192 connections once the reserve and the listen backlog are kept
    free. With 256 and no room for the backlog, a burst of accepts ran out of descriptors
    about one run in four, and the shedding that follows closed most of the flood."""
    # The longest header deadline §10.1-5 allows: the slow heads are held by the cap and the
    # eviction order, not by a deadline that a busy CI machine can outlast while flooding.
    command = (f'ulimit -n 384 && exec "{sys.executable}" "{HERE / "_vendor_proc.py"}" '
               f'"{tmp_path / "vendor.db"}" {VENDOR_SEED.hex()} 20000')  # fmt: skip
    proc = await asyncio.create_subprocess_shell(
        command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdin is not None
    assert proc.stderr is not None
    stderr = proc.stderr
    tracebacks = 0

    async def read_log() -> None:  # read as it comes: a full pipe would stop the vendor
        nonlocal tracebacks
        while line := await stderr.readline():
            tracebacks += line.startswith(b"Traceback")

    log_reader = asyncio.create_task(read_log())
    flood: list[Slow] = []
    try:
        port = int(await asyncio.wait_for(proc.stdout.readline(), timeout=30))

        async def one(source: str) -> None:
            # a vendor that no longer accepts leaves connects hanging in its listen queue
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(2):
                    flood.append(await Slow.open(port, source=source))

        for source, n in (("127.0.0.2", 200), ("127.0.0.3", 100), ("127.0.0.4", 100)):
            await asyncio.gather(*(one(source) for _ in range(n)))
        async with asyncio.timeout(10), aiohttp.ClientSession() as session:
            await honest(f"http://127.0.0.1:{port}", session, VENDOR)
        held = sum(1 for s in flood if not s.reader.at_eof() and s.reader.exception() is None)
        assert held >= 100, held  # the slow ones are still held while the customer is served
    finally:
        for s in flood:
            await s.close()
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await log_reader
    assert tracebacks == 0


# -- accept failures (§10.1-6) ------------------------------------------------------------


class _Listening:
    def __init__(self, sock: socket.socket) -> None:
        self.sockets = [sock]


async def test_accept_failures_are_logged_once_per_interval_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    passed_on: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: passed_on.append(context))
    guard = ConnectionGuard(ConnectionLimits(log_interval_ms=60_000))
    with socket.socket() as sock:
        handler = _AcceptErrors(loop, _Listening(sock), guard)  # type: ignore[arg-type]
        try:
            with caplog.at_level(logging.WARNING, logger="vrmproto.server"):
                for _ in range(1000):
                    loop.call_exception_handler({
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(errno.EMFILE, "Too many open files"),
                        "socket": sock,
                    })  # fmt: skip
                loop.call_exception_handler({"message": "something else"})
        finally:
            handler.remove()
            loop.set_exception_handler(previous)
    records = [r for r in caplog.records if r.name == "vrmproto.server"]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].exc_info is None
    assert "accept failed" in records[0].getMessage()
    assert [c["message"] for c in passed_on] == ["something else"]


# -- HTTP that does not parse (§12.4-5) ----------------------------------------------------


@pytest.mark.parametrize("head", [
    "Content-Length: -1",
    "Content-Length: 5\r\nTransfer-Encoding: chunked",
    "X-Long: " + "a" * 9000,
    "\r\n".join(f"X-{i}: 1" for i in range(200)),
], ids=["negative-content-length", "content-length-and-transfer-encoding",
        "header-line-too-long", "too-many-headers"])
async def test_malformed_http_gets_a_signed_problem_and_the_connection_closes(head: str) -> None:
    server = await serve(make_endpoint(MemoryStore()))
    try:
        request = (f"POST {DEFAULT_INBOX_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Content-Type: {CONTENT_TYPE}\r\n{head}\r\n\r\n0\r\n\r\n").encode()
        client = await Slow.open(server.port, data=request)
        try:
            async with asyncio.timeout(5):
                answer = await client.closed_by_server()  # closed after the answer
        finally:
            await client.close()
    finally:
        await server.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1:2] == [b"400"], answer[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert f"content-type: {CONTENT_TYPE}".encode() in headers.lower()
    problem = open_envelope(body, now=now_ms())
    assert problem.type == "problem"
    assert problem.sender == TEST_VENDOR.public_key
    assert problem.body.code == "malformed"
    assert "a" * 50 not in problem.body.detail  # nothing of the request echoed


# -- the customer's agent endpoint is on the same open network ----------------------------------


async def test_the_agent_endpoint_has_the_vendors_deadlines_and_signed_http_problems() -> None:
    """``vrm agent serve`` serves its routes with :func:`serve_app`: a slow head is closed
    (§10.1-1) and HTTP that does not parse gets the agent's signed problem (§12.4-5)."""
    seed = MasterSeed(os.urandom(32))
    store = MemoryStore()
    routes = (await CustomerNode.open(store, seed)).inbound
    limits = ConnectionLimits(header_timeout_ms=300, idle_timeout_ms=400)
    server = await serve_app(routes.app(), routes.engine, connection_limits=limits)
    slow = await Slow.open(server.port)
    bad = await Slow.open(server.port, data=b"POST /r/x/vrm/inbox HTTP/1.1\r\nHost: x\r\n"
                                            b"Content-Length: -1\r\n\r\n")  # fmt: skip
    try:
        async with asyncio.timeout(5):  # the deadline is 300 ms; without one it never closes
            assert await slow.closed_by_server() == b""
            answer = await bad.closed_by_server()
        assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
        assert CONTENT_TYPE.encode() in answer.lower()
    finally:
        await slow.close()
        await bad.close()
        await server.close()
