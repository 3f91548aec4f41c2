"""The HTTP connections a receiver holds: slow heads, idle connections, unread answers and
stalled TLS handshakes are closed, HTTP that does not parse gets a signed problem (§10.1,
§12.4-5).

The deadlines of §10.1 are a receiver's own and are not published: a case waits for at most
the ceiling every receiver must keep (§10.1-5, 20 s) plus two seconds, and passes as soon as
the connection closes. Against a receiver with short deadlines the cases are quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import time
from urllib.parse import urlsplit

from vrmproto._binding import CONTENT_TYPE, WELL_KNOWN_PATH
from vrmproto.testing._case import Info, Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    expect_problem,
    host_port,
    note_requests,
    open_stream,
    raw_request,
    read_answer,
    recent_requests,
    target,
    tls_for,
)

M = Level.MUST
S = Level.SHOULD
#: CONN-004: the requests pipelined on a connection that never reads an answer. Each answer is
#: a discovery document (a kilobyte or more); the client's receive buffer and segment size are
#: made small, so that the receiver's buffers fill after a few dozen answers.
UNREAD_REQUESTS = 200
#: CONN-004: the client's receive buffer and largest segment, in bytes (where settable).
UNREAD_RCVBUF = 4096
UNREAD_MSS = 536
#: CONN-005: the start of a TLS ClientHello — a handshake record announcing 512 bytes, of which
#: a few arrive — and then nothing.
STALLED_HELLO = bytes.fromhex("1603010200010001fc0303") + bytes(16)

#: §10.1-5: no receiver lets a connection wait longer than this for a request head, in ms.
CEILING_MS = 20_000
#: What a case adds to the ceiling before it gives up: time for the close to arrive.
GRACE_S = 2.0
#: §12.4-5: a header field longer than every receiver accepts (the most is 65 536 bytes).
OVERSIZE_FIELD = 70_000


def _host_port(ctx: CaseContext) -> tuple[str, int]:
    return host_port(target(ctx).inbox)


async def _until_closed(url: str, send: bytes, limit_s: float, *, plain: bool = False) -> tuple[
    float | None, bytes, str
]:  # fmt: skip
    """Connect to the endpoint of ``url`` — over TLS where it is ``https``, unless ``plain`` —
    send ``send`` (maybe nothing), and read until the server closes.

    Returns (seconds until the close or None if it stayed open for ``limit_s``, what was
    read, an error if the connection could not be made). Over TLS the time counts from the
    end of the handshake: the case times the connection's HTTP, as a client meets it.
    """
    try:
        if plain:
            reader, writer = await asyncio.open_connection(*host_port(url))
        else:
            reader, writer = await open_stream(url)
    except OSError as exc:
        return None, b"", f"cannot connect: {exc}"
    started = time.monotonic()
    got = b""
    try:
        if send:
            writer.write(send)
            await writer.drain()
        async with asyncio.timeout(limit_s):
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(65536):
                    got += chunk
        return time.monotonic() - started, got, ""
    except TimeoutError:
        return None, got, ""
    except OSError as exc:  # the server reset it while we were still sending: closed
        return time.monotonic() - started, got, f"{type(exc).__name__}"
    finally:
        writer.transport.abort()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _describe(elapsed: float | None, got: bytes, limit_s: float) -> str:
    if elapsed is None:
        return f"still open after {limit_s:g} s"
    first = got.split(b"\r\n", 1)[0].decode("latin-1")[:80]
    return f"closed after {elapsed:.2f} s" + (f" (after answering {first!r})" if got else "")


@case(id="CONN-001", clause="§10.1-1", level=M, tags=("http", "connections", "slow"),
      covers=("§10.1-5",),
      requirement="A receiver MUST close a connection on which a request head (request line "
      "and header fields) has started but is not complete within header_timeout_ms, which "
      "is at most 20 000 ms.",
      accepts="a connection that sends half a request head and nothing more is closed (with "
      "or without an answer) within 20 s + 2 s")
async def slow_head_closed(ctx: CaseContext) -> None:
    host, port = _host_port(ctx)
    path = urlsplit(target(ctx).inbox).path or "/"
    limit = CEILING_MS / 1000 + GRACE_S
    note_requests(ctx)
    half = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {CONTENT_TYPE}\r\n"
    elapsed, got, error = await _until_closed(target(ctx).inbox, half.encode(), limit)
    ctx.expect(not error.startswith("cannot connect"), expected="a connection", actual=error)
    ctx.expect(elapsed is not None, expected=f"the connection closed within {limit:g} s",
               actual=_describe(elapsed, got, limit))  # fmt: skip


@case(id="CONN-002", clause="§10.1-2", level=M, tags=("http", "connections", "slow"),
      covers=("§10.1-5",),
      requirement="A receiver MUST close a connection that has no request in progress — just "
      "opened, or after a response — when no byte of a request has arrived within "
      "idle_timeout_ms, which is at most 20 000 ms.",
      accepts="a connection that sends nothing, and a kept-alive connection after a 200 to "
      "GET /.well-known/vrm, are both closed within 20 s + 2 s")
async def idle_closed(ctx: CaseContext) -> None:
    host, port = _host_port(ctx)
    limit = CEILING_MS / 1000 + GRACE_S
    note_requests(ctx)
    where = urlsplit(ctx.base_url).path + WELL_KNOWN_PATH  # the target's, not the origin's
    get = f"GET {where} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    url = target(ctx).inbox
    (silent, _, err1), (kept, got, err2) = await asyncio.gather(
        _until_closed(url, b"", limit), _until_closed(url, get, limit))
    ctx.expect(not (err1 + err2).startswith("cannot connect"), expected="a connection",
               actual=err1 or err2)  # fmt: skip
    ctx.expect(silent is not None, expected=f"a silent connection closed within {limit:g} s",
               actual=_describe(silent, b"", limit))  # fmt: skip
    answered = got.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
    ctx.expect(answered, expected="HTTP 200 to GET /.well-known/vrm",
               actual=repr(got.split(b"\r\n", 1)[0][:80]) if got else "no answer")  # fmt: skip
    ctx.expect(kept is not None, expected=f"the connection closed within {limit:g} s of the "
               "answer", actual=_describe(kept, got, limit))  # fmt: skip


@case(id="CONN-003", clause="§12.4-5", level=M, tags=("http", "connections", "robustness"),
      covers=("§12.4-2",),
      requirement="A receiver MUST answer a request that is not valid HTTP/1.1 — a negative "
      "Content-Length, Content-Length together with Transfer-Encoding, a header field longer "
      "than it accepts — with 400 and a signed problem malformed, and close the connection.",
      accepts="for each of the three requests: HTTP 400 with a signed problem malformed, then "
      "the connection closed")
async def unparsable_http(ctx: CaseContext) -> None:
    t = target(ctx)
    path = urlsplit(t.inbox).path or "/"
    start = f"POST {path} HTTP/1.1\r\nContent-Type: {CONTENT_TYPE}\r\n"
    for head, chunks in (
        (start + "Content-Length: -1", [b"\x80"]),
        (start + "Content-Length: 5\r\nTransfer-Encoding: chunked", [b"0\r\n\r\n"]),
        (start + "Content-Length: 1\r\nX-Oversize: " + "a" * OVERSIZE_FIELD, [b"\x80"]),
    ):
        note_requests(ctx)
        raw = await raw_request(ctx, t.inbox, head, chunks, probe_close=True)
        answer = read_answer(ctx.exchanges[-1], t)
        expect_problem(ctx, answer, ["malformed"])
        ctx.expect(raw.closed, expected="the connection closed after the answer",
                   actual="the connection stayed open")  # fmt: skip


def _hung_up(sock: socket.socket, limit_s: float) -> bool:
    """Whether the peer reset or closed ``sock`` within ``limit_s``, seen without reading a
    byte of what waits in its receive buffer (POLLIN is not asked for)."""
    poller = select.poll()
    poller.register(sock, select.POLLERR | select.POLLHUP | getattr(select, "POLLRDHUP", 0))
    return bool(poller.poll(int(limit_s * 1000)))


async def _tls_records(sock: socket.socket, host: str, tls: ssl.SSLContext,
                       plain: bytes) -> bytes:  # fmt: skip
    """Do the TLS handshake on ``sock`` and return ``plain`` as the TLS records that carry it,
    for the caller to send without ever reading the socket again (CONN-004 over HTTPS): the
    TLS object works on memory buffers, so nothing reads what the receiver sends after the
    handshake (session tickets, then the answers)."""
    loop = asyncio.get_running_loop()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = tls.wrap_bio(incoming, outgoing, server_hostname=host)
    while True:
        try:
            conn.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                await loop.sock_sendall(sock, outgoing.read())
            got = await loop.sock_recv(sock, 65536)
            if not got:
                raise ConnectionResetError("closed during the TLS handshake") from None
            incoming.write(got)
    if outgoing.pending:  # the client's Finished
        await loop.sock_sendall(sock, outgoing.read())
    conn.write(plain)
    return outgoing.read()


async def _unread_connection(host: str, port: int) -> socket.socket:
    """A connection whose receive buffer and segments are small (where the platform lets a
    client set them): a receiver's answers fill the buffers on both sides quickly."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UNREAD_RCVBUF)
        if hasattr(socket, "TCP_MAXSEG"):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, UNREAD_MSS)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


@case(id="CONN-004", clause="§10.1-7", level=S, tags=("http", "connections", "slow"),
      covers=("§10.1-5",),
      requirement="A receiver SHOULD close a connection whose client takes no byte of its "
      "written answers within idle_timeout_ms (at most 20 000 ms): a client that sends "
      "requests and never reads must not hold the connection, its buffers and its descriptor.",
      accepts=f"a connection that pipelines {UNREAD_REQUESTS} GET /.well-known/vrm and never "
      "reads (its receive buffer small; over HTTPS, once the TLS handshake is done) is reset or "
      "closed within 20 s + 2 s; not checked where the address limit leaves no room, or where "
      "the platform has no poll()")
async def unread_answers_closed(ctx: CaseContext) -> Info | None:
    t = target(ctx)
    if not hasattr(select, "poll"):
        return Info("not checked: this platform has no poll() to watch a socket unread")
    limit = t.limits.rate_per_address_per_minute
    if recent_requests(ctx) + UNREAD_REQUESTS + 200 > limit:  # 200: requests not counted
        return Info(f"not checked: this run already sent {recent_requests(ctx)} requests in "
                    f"the last minute, too close to the address limit of {limit}")
    host, port = _host_port(ctx)
    where = urlsplit(ctx.base_url).path + WELL_KNOWN_PATH  # the target's, not the origin's
    get = f"GET {where} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    wait = CEILING_MS / 1000 + GRACE_S
    note_requests(ctx, UNREAD_REQUESTS)
    try:
        sock = await _unread_connection(host, port)
    except OSError as exc:
        ctx.fail(expected="a connection", actual=f"cannot connect: {exc}")
    try:
        loop = asyncio.get_running_loop()
        requests = get * UNREAD_REQUESTS
        if (tls := tls_for(t.inbox)) is not None:
            try:
                async with asyncio.timeout(wait / 4):
                    requests = await _tls_records(sock, host, tls, requests)
            except (TimeoutError, OSError) as exc:  # ssl.SSLError is an OSError
                ctx.fail(expected="a TLS connection", actual=f"the handshake failed: {exc!r}")
        started = time.monotonic()
        with contextlib.suppress(TimeoutError, OSError):  # the receiver stopped reading: fine
            async with asyncio.timeout(wait / 4):
                await loop.sock_sendall(sock, requests)
        closed = await asyncio.to_thread(_hung_up, sock, wait)
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    ctx.expect(closed, expected=f"the connection reset or closed within {wait:g} s, none of "
               "its answers read", actual=f"closed after {elapsed:.2f} s" if closed
               else f"still open after {elapsed:.2f} s")  # fmt: skip
    return None


@case(id="CONN-005", clause="§10.1-7", level=S, tags=("http", "connections", "slow"),
      covers=("§10.1-2", "§10.1-5"),
      requirement="A receiver SHOULD hold a connection to the deadlines of §10.1 from the "
      "moment it accepts it: a TLS handshake is part of the connection's first "
      "idle_timeout_ms (at most 20 000 ms).",
      accepts="over HTTPS, a connection that sends the first bytes of a TLS ClientHello and "
      "nothing more is closed within 20 s + 2 s; not applicable to plain HTTP (a silent "
      "connection there is CONN-002's)")
async def stalled_handshake_closed(ctx: CaseContext) -> Info | None:
    parts = urlsplit(ctx.base_url)
    if parts.scheme != "https":
        return Info("not applicable: the target is plain HTTP, with no TLS handshake to time")
    limit = CEILING_MS / 1000 + GRACE_S
    elapsed, got, error = await _until_closed(ctx.base_url, STALLED_HELLO, limit, plain=True)
    ctx.expect(not error.startswith("cannot connect"), expected="a connection", actual=error)
    ctx.expect(elapsed is not None, expected=f"the connection closed within {limit:g} s",
               actual=_describe(elapsed, got, limit))  # fmt: skip
    return None
