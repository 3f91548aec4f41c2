"""A client that does not read its answers (s15 hunt; spec §10.1-5, §10.1-3).

A client that pipelines requests and never reads the answers fills the server's send buffer,
then the transport's write buffer. Before: on the lean path the idle deadline "closed" the
connection with ``transport.close()``, which waits for the buffer to flush — forever — while the
guard no longer counted it, so a client could hold descriptors without bound, past every cap;
on the aiohttp path the handler waited in ``drain()`` with no deadline at all, counted as busy
and never closed to make room, so a few addresses could fill ``max_connections`` for good.

Now, while part of an answer is unsent, the client must read some of it every
``idle_timeout_ms``, or the connection is aborted. A client that reads slowly but steadily gets
every answer.

The server's listening socket has a small send buffer (accepted sockets inherit it) and the
client a small receive buffer, so that a few answers fill the kernel's buffers on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
from collections.abc import AsyncIterator

import pytest
from _broken_vendor import make_endpoint

from vrmproto._binding import WELL_KNOWN_PATH
from vrmproto.server import ConnectionLimits, Server, serve
from vrmproto.store import MemoryStore

IDLE_MS = 300
LIMITS = ConnectionLimits(header_timeout_ms=IDLE_MS, idle_timeout_ms=IDLE_MS)


def get(path: str, *, close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


@contextlib.asynccontextmanager
async def small_buffered_server(limits: ConnectionLimits = LIMITS) -> AsyncIterator[Server]:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    server = await serve(make_endpoint(MemoryStore()), sock=listener, connection_limits=limits)
    try:
        yield server
    finally:
        await server.close()
        listener.close()


async def connect(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def send_some(sock: socket.socket, data: bytes) -> None:
    """Send what the server takes of ``data`` (it stops reading once answers pile up)."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.sock_sendall(sock, data), 1.0)


def hung_up(sock: socket.socket, timeout_ms: int) -> bool:
    """Whether the peer aborted or closed the connection within ``timeout_ms``, seen without
    reading a byte of what waits in the receive buffer (POLLIN is not asked for)."""
    poller = select.poll()
    poller.register(sock, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
    return bool(poller.poll(timeout_ms))


CASES = {
    # the lean path answers discovery itself; the last one asks to close after its answer
    "lean": get(WELL_KNOWN_PATH) * 2000,
    "lean-then-close": get(WELL_KNOWN_PATH) * 2000 + get(WELL_KNOWN_PATH, close=True),
    # /healthz is handed over to aiohttp on the first request
    "aiohttp": get("/healthz") * 4000,
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_client_that_never_reads_is_aborted_and_uncounted(case: str) -> None:
    async with small_buffered_server() as server:
        sock = await connect(server.port)
        try:
            await send_some(sock, CASES[case])
            # Before: never (the lean path's descriptor stayed open, uncounted; aiohttp's
            # handler waited in drain() for ever). Now: one idle period without progress.
            assert await asyncio.to_thread(hung_up, sock, 10_000), "the server held on"
            assert len(server.connections) == 0
        finally:
            sock.close()


async def test_a_client_that_reads_slowly_gets_every_answer() -> None:
    n = 40
    idle_ms = 1000
    limits = ConnectionLimits(header_timeout_ms=idle_ms, idle_timeout_ms=idle_ms)
    async with small_buffered_server(limits) as server:
        sock = await connect(server.port)
        loop = asyncio.get_running_loop()
        got = b""
        try:
            await send_some(sock, get(WELL_KNOWN_PATH) * n + get(WELL_KNOWN_PATH, close=True))
            while chunk := await loop.sock_recv(sock, 2048):
                got += chunk
                await asyncio.sleep(idle_ms / 20_000)  # the slow reader itself: 20 reads a period
        finally:
            sock.close()
    assert got.count(b"HTTP/1.1 200 OK\r\n") == n + 1


@pytest.mark.parametrize("case", ["lean", "aiohttp"])
def test_a_client_that_never_reads_is_aborted_on_uvloop(case: str) -> None:
    """What ``vrm vendor serve`` runs on where uvloop is installed (its transports' write
    buffer limits and pause_writing are its own)."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test_a_client_that_never_reads_is_aborted_and_uncounted(case))
