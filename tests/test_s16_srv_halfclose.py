"""A client that half-closes its side after a complete request gets its answer (s16 hunt).

HTTP/1.1 lets a client shut down its sending side once its request is sent (RFC 9112 §9.6:
"a client … MAY half-close"); the request is complete, so the server answers it, then closes.
Before, on the lean path only a request answered before the end of input came (discovery,
answered without awaiting anything) got an answer; an inbox message was handled — stored! —
and its receipt dropped: the transport closed itself at the end of input. aiohttp's handler
closed the connection at the end of input too, cancelling the request in progress.

Each case runs on asyncio's loop and on uvloop (what ``vrm vendor serve`` runs where installed).

Over TLS neither loop's transport sends after the peer's end of input, so since session 18 the
endpoint does TLS itself (``vrmproto/server/_tls.py``) and a TLS client that half-closes is
answered as well: ``tests/test_s18_srv_tls_halfclose.py``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import pytest
from _broken_vendor import ACCEPTS, VENDOR_SEED, make_endpoint
from _vendor_proc import Customer

from vrmproto import Identity
from vrmproto._binding import CONTENT_TYPE, DEFAULT_INBOX_PATH, WELL_KNOWN_PATH
from vrmproto.server import Server, serve
from vrmproto.store import MemoryStore

VENDOR = Identity(VENDOR_SEED)


def post(body: bytes, *, chunked: bool = False) -> bytes:
    head = f"POST {DEFAULT_INBOX_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\n"
    if chunked:  # the lean path hands a chunked body over to aiohttp
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + (
            b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")  # fmt: skip
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, shut the sending side down, read until the server closes."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, data)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        async with asyncio.timeout(10):
            while chunk := await loop.sock_recv(sock, 65536):
                got += chunk
        return got
    finally:
        sock.close()


def statuses(got: bytes) -> list[bytes]:
    """The status of each answer in ``got``, read by their ``Content-Length``."""
    out = []
    while got:
        head, _, got = got.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        out.append(lines[0].split(b" ", 2)[1])
        length = [int(line.split(b":", 1)[1]) for line in lines[1:]
                  if line.lower().startswith(b"content-length:")]  # fmt: skip
        got = got[length[0] if length else 0:]
    return out


async def start(path: str) -> Server:
    """``lean``: :func:`serve` as is; ``aiohttp``: with an access log, which serves every
    request with aiohttp's handler."""
    access = logging.getLogger("s16.halfclose") if path == "aiohttp" else None
    return await serve(make_endpoint(MemoryStore()), access_log=access)


Case = Callable[[int], Awaitable[None]]


async def one_offer(port: int, *, chunked: bool = False) -> None:
    offer = Customer(VENDOR).offer(*ACCEPTS)
    got = await exchange(port, post(offer.envelope, chunked=chunked))
    assert statuses(got) == [b"200"], got[:300]


async def pipelined(port: int) -> None:
    offers = [Customer(VENDOR).offer(*ACCEPTS).envelope for _ in range(3)]
    got = await exchange(port, b"".join(post(o) for o in offers) + get(WELL_KNOWN_PATH))
    assert statuses(got) == [b"200"] * 4, got[:300]


async def then_handed_over(port: int) -> None:
    """The lean path answers the first, then hands the connection, at its end, to aiohttp for
    the chunked one."""
    first, second = (Customer(VENDOR).offer(*ACCEPTS).envelope for _ in range(2))
    got = await exchange(port, post(first) + post(second, chunked=True) + get(WELL_KNOWN_PATH))
    assert statuses(got) == [b"200"] * 3, got[:300]


async def discovery(port: int) -> None:
    assert statuses(await exchange(port, get(WELL_KNOWN_PATH))) == [b"200"]


async def half_a_request(port: int) -> None:
    """A request cut short by the end of input is not answered as if whole: the connection
    closes (the answers before it are sent)."""
    offer = Customer(VENDOR).offer(*ACCEPTS).envelope
    got = await exchange(port, get(WELL_KNOWN_PATH) + post(offer)[:-10])
    assert statuses(got) in ([b"200"], [b"200", b"400"]), got[:300]


CASES: dict[str, Case] = {
    "offer": one_offer,
    "chunked-offer": lambda port: one_offer(port, chunked=True),
    "pipelined": pipelined,
    "then-handed-over": then_handed_over,
    "discovery": discovery,
    "half-a-request": half_a_request,
}


async def run(path: str, name: str) -> None:
    server = await start(path)
    try:
        await CASES[name](server.port)
    finally:
        await server.close()


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("path", ["lean", "aiohttp"])
async def test_a_half_closed_client_gets_its_answer(path: str, name: str) -> None:
    await run(path, name)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("path", ["lean", "aiohttp"])
def test_a_half_closed_client_gets_its_answer_on_uvloop(path: str, name: str) -> None:
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(path, name))
