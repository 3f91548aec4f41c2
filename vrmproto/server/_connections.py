"""The HTTP connections of an endpoint: deadlines, caps and accept failures (spec §10.1, §11.8).

An open connection costs a file descriptor whether or not a request ever arrives on it, so this
layer bounds what a client that sends nothing useful can hold:

- a *header deadline*: once the first byte of a request has arrived, its line and header fields
  must be complete within ``header_timeout_ms`` (§10.1-1);
- an *idle deadline*: a connection with no request in progress — just opened, or after a
  response — is closed after ``idle_timeout_ms`` without the first byte of a request (§10.1-2);
- caps on open connections, in total (``max_connections``, lowered to fit the process's
  open-file limit) and per client address or prefix (``max_connections_per_address``,
  §10.1-3, §10.1-4). At the total cap the connection that has waited longest for a request is
  closed to make room, so a flood of silent connections cannot keep an honest client out;
- an *unread answer*: a client that does not read what it is sent holds the answer in the
  server's write buffer, and the connection with it. While part of an answer waits to be sent,
  the client must read some of it every ``idle_timeout_ms``, or the connection is aborted
  (§10.1-7, §10.1-5: closed within that long of its last progress); a connection closed for a
  deadline, or to make room, with part of an answer unsent is aborted, not left to flush (its
  descriptor would stay open, no longer counted, for as long as the client kept not reading);
- with TLS, a connection is admitted, counted and timed from when it is accepted, not from the
  end of its handshake (:class:`_Handshake`): the handshake must be done within
  ``idle_timeout_ms``, since the connection has sent no byte of a request yet (§10.1-2,
  §10.1-7);
- a client that half-closes its side after sending whole requests gets them answered, then
  the connection closes (:meth:`_ConnectionHandler.eof_received`); over TLS too, where the
  endpoint does TLS itself so that it can (:mod:`vrmproto.server._tls`);
- accept failures (``EMFILE``…): asyncio already retries accepting a second later; this layer
  logs them once per ``log_interval_ms`` without a traceback and closes waiting connections to
  free descriptors (§10.1-6);
- HTTP that does not parse (a negative ``Content-Length``, ``Content-Length`` with
  ``Transfer-Encoding``, a header line over ``max_header_line_bytes``…) is answered with the
  endpoint's signed problem ``malformed`` and the connection closed, never with aiohttp's
  plain-text page (§12.4-5).

A connection is served by aiohttp's request handler (:class:`_ConnectionHandler`), or, with
:func:`~vrmproto.server.serve`, first by a lean connection (:mod:`vrmproto.server._lean`) that
answers the hot routes itself and hands the connection to that handler for anything else; the
guard holds either kind alike, and a hand-over keeps the connection's place and deadline.

:class:`ConnectionLimits` is a deployment setting of the HTTP shell, not a protocol limit: it is
not published in discovery (the ceilings of §10.1-5 are what a sender can rely on).
:func:`~vrmproto.server.serve` builds the listening socket from it with :class:`ConnectionSite`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import ipaddress
import logging
import re
import socket
import ssl
import struct
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import HttpVersion11, hdrs, web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import _ErrInfo

from vrmproto._codec import MAX_SAFE_INT
from vrmproto._deadline import Deadline
from vrmproto._http1_server import valid_host
from vrmproto.server._proxy import Deployment
from vrmproto.server._tls import TLSProtocol, TLSTransport

__all__ = [
    "DEFAULT_CONNECTION_LIMITS",
    "MAX_CONNECTION_WAIT_MS",
    "MAX_HEADER_LINE_BYTES",
    "MAX_HEAD_LINES",
    "ConnectionGuard",
    "ConnectionLimits",
    "ConnectionSite",
]

log = logging.getLogger("vrmproto.server")

#: §10.1-5: the longest a receiver may let a connection wait for a request head, in ms.
MAX_CONNECTION_WAIT_MS = 20_000
#: Why a connection whose request head missed its deadline (§10.1-1) was closed, as logged.
HEAD_LATE = "request head not complete in time"
#: Why a connection whose client read none of its answer for ``idle_timeout_ms`` was aborted.
SEND_LATE = "answer not read in time"
#: §12.4-5: no receiver accepts a request line or header field longer than this, in bytes.
MAX_HEADER_LINE_BYTES = 65_536
#: §12.4-5: a request head (request line and header fields) longer than this many times
#: ``max_header_line_bytes`` is answered ``malformed``, as soon as its bytes show it: each line
#: held to the limit, aiohttp's 128 fields made a head of ~1 MB, kept in memory while it came.
MAX_HEAD_LINES = 8


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many HTTP connections an endpoint holds, and for how long (spec §10.1, Table 10-2).

    The defaults are the values of Table 10-2. Every value is a positive integer, at most
    2^53 - 1 (§3.3); ``ValueError`` otherwise.
    """

    #: §10.1-1: once the first byte of a request has arrived, its request line and header
    #: fields must be complete within this many ms, or the connection is closed.
    header_timeout_ms: int = 10_000
    #: §10.1-2: a connection with no request in progress (just opened, or after a response)
    #: is closed when the first byte of the next request has not arrived within this many ms.
    idle_timeout_ms: int = 20_000
    #: §10.1-3: open connections in total; at the limit the connection that has waited longest
    #: for a request is closed to make room (or, if every one is busy, the new one is refused).
    #: Lowered to the process's open-file limit minus ``open_file_reserve`` and the listen
    #: backlog (an event loop accepts up to a backlog of connections at one wake-up, before
    #: the ones closed to make room give their descriptors back).
    max_connections: int = 1024
    #: §10.1-3: file descriptors kept free for the store and the logs when ``max_connections``
    #: is fitted to the process's open-file limit.
    open_file_reserve: int = 64
    #: §10.1-4: open connections per client address (or prefix, below); beyond it a new
    #: connection from that address is closed at once.
    max_connections_per_address: int = 128
    #: §10.1-4: IPv4 client addresses are counted together by this prefix length (32: each
    #: address alone; 24: per /24).
    ipv4_prefix: int = 32
    #: §10.1-4: IPv6 client addresses are counted together by this prefix length (64: per
    #: /64, what one subscriber usually holds; 128: each address alone).
    ipv6_prefix: int = 64
    #: §12.4-5: longest request line, and longest header field, in bytes; longer is answered
    #: ``malformed`` and the connection closed.
    max_header_line_bytes: int = 8190
    #: §10.1-6: connections refused or closed for these limits, and failures to accept, are
    #: logged at most once per this many ms, as counts.
    log_interval_ms: int = 60_000

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"connection limit {f.name} must be a positive integer")
            if value > MAX_SAFE_INT:  # the protocol's integers (§3.3), as Limits
                raise ValueError(f"connection limit {f.name} must be at most 2^53 - 1")
        for name in ("header_timeout_ms", "idle_timeout_ms"):
            if getattr(self, name) > MAX_CONNECTION_WAIT_MS:
                raise ValueError(f"{name} must not exceed {MAX_CONNECTION_WAIT_MS} (§10.1-5)")
        if self.ipv4_prefix > 32 or self.ipv6_prefix > 128:
            raise ValueError("ipv4_prefix must be at most 32, ipv6_prefix at most 128")
        if self.max_header_line_bytes > MAX_HEADER_LINE_BYTES:
            raise ValueError(f"max_header_line_bytes must not exceed {MAX_HEADER_LINE_BYTES}"
                             " (§12.4-5)")  # fmt: skip

    def total_cap(self, open_files: int | None = None, *, accept_burst: int = 0) -> int:
        """``max_connections``, lowered to fit ``open_files`` descriptors (default: this
        process's soft ``RLIMIT_NOFILE``) minus ``open_file_reserve`` and ``accept_burst`` (the
        connections accepted at once before closed ones release theirs: the listen backlog),
        and at least 1 (§10.1-3)."""
        if open_files is None:
            open_files = _open_file_limit()
        if open_files is None:
            return self.max_connections
        room = open_files - self.open_file_reserve - accept_burst
        return max(1, min(self.max_connections, room))

    def address_key(self, address: str) -> str:
        """The key a client address is counted under: the address itself, or its prefix
        (``ipv4_prefix``, ``ipv6_prefix``); a name that is not an IP address counts alone."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        prefix = self.ipv4_prefix if ip.version == 4 else self.ipv6_prefix
        if prefix >= ip.max_prefixlen:
            return str(ip)
        return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


DEFAULT_CONNECTION_LIMITS = ConnectionLimits()


def _open_file_limit() -> int | None:
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


_LINGER_NOT = struct.pack("ii", 1, 0)  # SO_LINGER on, for 0 s: close() resets the connection


def abort(transport: asyncio.BaseTransport) -> None:
    """Abort a connection whose client does not read what it is sent: reset (SO_LINGER 0), so
    that neither the process nor the kernel keeps the unsent bytes or the socket."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_NOT)
    transport.abort()  # type: ignore[attr-defined]


def half_closable(transport: asyncio.BaseTransport | None) -> bool:
    """Whether ``transport`` can keep sending after its peer's end of input: TCP, and TLS as
    the endpoint does it (:mod:`vrmproto.server._tls`); not another TLS transport — asyncio's
    and uvloop's close at the peer's end whatever the protocol asks, logging a warning each
    time it asks to stay open (a log line per connection a client could make)."""
    return transport is not None and (isinstance(transport, TLSTransport)
                                      or transport.get_extra_info("sslcontext") is None)


class _Throttled:
    """Counts events by kind and logs them at most once per interval, without tracebacks."""

    __slots__ = ("_clock", "_counts", "_interval", "_last")

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self._interval = interval_s
        self._clock = clock
        self._counts: Counter[str] = Counter()
        self._last: float | None = None

    def note(self, kind: str) -> None:
        self._counts[kind] += 1
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            return
        since = "" if self._last is None else f" in the last {now - self._last:.0f} s"
        summary = "; ".join(f"{n} × {what}" for what, n in sorted(self._counts.items()))
        log.warning("HTTP connections%s: %s", since, summary)
        self._counts.clear()
        self._last = now


class _State(enum.Enum):
    WAITING = "waiting"
    """No request in progress: waiting for the first byte of one (the idle deadline)."""
    HEAD = "head"
    """Part of a request head has arrived (the header deadline)."""
    BUSY = "busy"
    """A request is being handled or answered: no deadline of this layer."""


class Held(Protocol):
    """A connection the guard holds: the aiohttp handler, or a lean one (:mod:`._lean`)."""

    def drop(self) -> None:
        """Close the connection now (it waited too long, or room is needed)."""


class ConnectionGuard:
    """The connections of one server: who is open, from where, and who waits for a request.

    ``admit`` decides about a new connection (§10.1-3, §10.1-4); handlers report their state
    changes so that the connection waiting longest can be closed when room is needed.

    ``deployment``: the connections of its trusted proxies count against the total alone, not
    against ``max_connections_per_address``: each carries the requests of whichever clients
    the proxy serves, and §12.13-1 puts the limits per client address (§10.1-4 among them) on
    the client's address, not the proxy's — the connections per client are the proxy's to
    bound. Capped like any address, one proxy's connections for that many requests in progress
    at once made every further one of its connections refused, every customer's request with
    it.
    """

    def __init__(
        self,
        limits: ConnectionLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        open_files: int | None = None,
        accept_burst: int = 0,
        deployment: Deployment | None = None,
    ) -> None:
        self.limits = limits
        self.deployment = deployment or Deployment()
        self.cap = limits.total_cap(open_files, accept_burst=accept_burst)
        if self.cap < limits.max_connections:
            log.info("at most %d open HTTP connections (the open-file limit allows no more)",
                     self.cap)  # fmt: skip
        self._open: dict[Held, str] = {}
        self._per_key: Counter[str] = Counter()
        # connections with no request in progress, the longest waiting first
        self._waiting: OrderedDict[Held, None] = OrderedDict()
        self._log = _Throttled(limits.log_interval_ms / 1000, clock)

    def __len__(self) -> int:
        return len(self._open)

    def count(self, address: str) -> int:
        """Open connections counted under ``address``'s key."""
        return self._per_key[self.limits.address_key(address)]

    def admit_transport(self, handler: Held, transport: asyncio.BaseTransport) -> str | None:
        """:meth:`admit` ``handler``'s new connection by its peer's address: that address if
        taken in, else None, the connection aborted (§10.1-3, §10.1-4)."""
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.admit(handler, address):
            transport.abort()  # type: ignore[attr-defined]
            return None
        return address

    def admit(self, handler: Held, address: str) -> bool:
        """Take ``handler``'s connection in, or say it must be closed (§10.1-3, §10.1-4; a
        trusted proxy's, §12.13-1: see the class)."""
        key = self.limits.address_key(address)
        if (self._per_key[key] >= self.limits.max_connections_per_address
                and not self.deployment.trusts(address)):  # fmt: skip
            self._log.note("refused: over max_connections_per_address")
            return False
        if len(self._open) >= self.cap:
            if not self._waiting:
                self._log.note("refused: max_connections open, all busy")
                return False
            oldest = next(iter(self._waiting))
            self._log.note("closed to make room: waited longest for a request")
            oldest.drop()
        self._open[handler] = key
        self._per_key[key] += 1
        self._waiting[handler] = None
        return True

    def release(self, handler: Held) -> None:
        """``handler``'s connection is gone."""
        key = self._open.pop(handler, None)
        if key is None:
            return
        self._waiting.pop(handler, None)
        self._per_key[key] -= 1
        if self._per_key[key] <= 0:
            del self._per_key[key]

    def replace(self, old: Held, new: Held) -> None:
        """``old``'s connection is now served by ``new`` (a lean connection handing over to
        aiohttp's handler): counted once, under the same key, still waiting if it was."""
        key = self._open.pop(old, None)
        if key is None:
            return
        self._open[new] = key
        if old in self._waiting:
            del self._waiting[old]
            self._waiting[new] = None

    def waiting(self, handler: Held) -> None:
        if handler in self._open:
            self._waiting[handler] = None
            self._waiting.move_to_end(handler)

    def idle(self, handler: Held, deadline: Deadline, loop: asyncio.AbstractEventLoop) -> None:
        """``handler`` has no request in progress: it waits, and its ``deadline`` is the idle
        one (§10.1-2); closing it when that passes is routine. For either kind of connection."""
        self.waiting(handler)
        deadline.set(loop, loop.time() + self.limits.idle_timeout_ms / 1000)

    def head(self, deadline: Deadline, loop: asyncio.AbstractEventLoop) -> None:
        """The first byte of a request has arrived: ``deadline`` is now the header one
        (§10.1-1), whose miss is counted as :data:`HEAD_LATE`."""
        deadline.set(loop, loop.time() + self.limits.header_timeout_ms / 1000)

    def busy(self, handler: Held) -> None:
        self._waiting.pop(handler, None)

    def expired(self, what: str) -> None:
        self._log.note(f"closed: {what}")

    def shed(self) -> int:
        """Close about a tenth of the connections waiting for a request (at least one), the
        longest waiting first: accepting failed for want of file descriptors (§10.1-6)."""
        n = min(len(self._waiting), max(1, len(self._open) // 10))
        for handler in list(self._waiting)[:n]:
            handler.drop()
        return n

    def accept_failed(self, exc: BaseException | None) -> None:
        """An ``accept()`` failed (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``)."""
        name = "unknown error" if exc is None else f"{type(exc).__name__}: {exc}"
        self._log.note(f"accept failed ({name}); retried after 1 s")
        self.shed()


#: Builds the signed problem a request that is not valid HTTP gets (§12.4-5).
ErrorAnswer = Callable[[int, str], web.Response]


class LeanServing(Protocol):
    """Connections served without aiohttp until a request needs it (:mod:`._lean`)."""

    def connection(self, guard: ConnectionGuard,
                   hand_over: Callable[[], _ConnectionHandler]) -> asyncio.Protocol:  # fmt: skip
        """A new connection's protocol; ``hand_over`` makes the aiohttp handler to give the
        connection to when a request is not one it serves."""

    async def shutdown(self, grace_s: float) -> None:
        """The server stops: close idle connections, finish the requests in progress (at most
        ``grace_s`` seconds), then close."""


def _fail_body(request: web.BaseRequest, parsed: object) -> None:
    """``parsed`` is what aiohttp's parser made of bytes that came while ``request``'s body was
    still being read: if it is an error (the body's chunked coding broke), fail the body's
    reads with it (§12.4-5). aiohttp's C parser drops the body when it raises, and queues the
    error as a request of its own: the handler reading the body would wait for the rest until
    ``body_read_timeout_ms`` and answer 408, where the request is malformed at once."""
    error = getattr(parsed, "exc", None)
    body = request.content
    if isinstance(error, BaseException) and not body.is_eof() and body.exception() is None:
        body.set_exception(web.RequestPayloadError(f"the body's transfer coding broke: {error}"))


def _declared_length(message: Any) -> int:
    """The ``Content-Length`` of a request message aiohttp parsed (its parser's
    ``RawRequestMessage``, C or Python); -1 for a body of another length (chunked, or in a
    content coding, whose decoded bytes the body counts), an upgrade, or a parse error."""
    if (isinstance(message, _ErrInfo) or message.chunked or message.compression
            or message.upgrade):  # fmt: skip
        return -1
    return int(message.headers.get(hdrs.CONTENT_LENGTH) or 0)


def _host_ok(value: str) -> bool:
    """:func:`~vrmproto._http1_server.valid_host` of a ``Host`` value as aiohttp decodes it."""
    ok = _HOSTS.get(value)
    if ok is None:
        if len(_HOSTS) >= 256:
            _HOSTS.clear()
        ok = _HOSTS[value] = valid_host(value.encode("utf-8", "surrogateescape"))
    return ok


_HOSTS: dict[str, bool] = {}  # Host values seen, and whether each is valid; emptied when full


#: Pieces a read is cut into at a guess of a chunked body's end (see data_received).
_GUESSES = 4


def _last_chunk_end(data: bytes, start: int) -> int:
    """Where the first ``CRLF 0 CRLF CRLF`` (a chunked body's end, without trailer fields)
    at or after ``start`` in ``data`` ends; -1: none."""
    at = data.find(b"\r\n0\r\n\r\n", start)
    return at + 7 if at >= 0 else -1


_CONTENT = re.compile(rb"[^\r\n]")


def _head_end(data: bytes, start: int) -> int:
    """Where the first head at or after ``start`` in ``data`` ends (its blank line, CRLF
    CRLF); -1: none. Empty lines before a head are part of it (RFC 9112 §2.2): a read of
    blank lines alone is no head, not thousands."""
    first = _CONTENT.search(data, start)
    at = -1 if first is None else data.find(b"\r\n\r\n", first.start())
    return at + 4 if at >= 0 else -1


class _Faulty(BadHttpMessage):
    """HTTP that aiohttp's parser takes but :class:`_ConnectionHandler` does not (a head too
    long, :meth:`~_ConnectionHandler._count_head`; a transfer coding in HTTP/1.0): its message
    is the problem's detail."""


class _ConnectionHandler(web.RequestHandler):
    """aiohttp's request handler, with the deadlines and the admission of §10.1 and signed
    answers to HTTP it cannot parse (§12.4-5)."""

    __slots__ = ("_admitted", "_answer", "_answered", "_deadline", "_ends", "_eof", "_guard",
                 "_head", "_last_body", "_last_message", "_sending", "_state")  # fmt: skip

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, answer: ErrorAnswer,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._answer = answer
        self._admitted = False
        self._state = _State.WAITING
        # The deadline in force (none while busy; which one, and what missing it means, is the
        # state's): one timer per connection rather than two made and cancelled per request
        # (vrmproto/_deadline.py).
        limits = guard.limits
        self._deadline = Deadline(self._expire, horizon=min(
            limits.header_timeout_ms, limits.idle_timeout_ms) / 1000)
        # While writing is paused (the client does not read its answer): the bytes the
        # transport held at the last look, which must shrink every idle_timeout_ms; else -1.
        self._sending = -1
        self._answered = 0  # requests answered; aiohttp counts those it parsed
        self._eof = False  # the client shut its sending side down: answer what came, close
        # Bytes of the head being read (see _count_head); -1: one was too long, read no more.
        self._head = 0
        self._last_body: StreamReader | None = None  # the last request parsed's body
        self._ends = b""  # the last bytes received (up to 3): see data_received
        self._last_message: Any = None  # the last request parsed (see _body_left)

    # -- admission and deadlines (§10.1) -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._guard.admit_transport(self, transport) is None:
            return
        self._admitted = True
        super().connection_made(transport)
        self._wait()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._deadline.cancel()
        self._guard.release(self)
        super().connection_lost(exc)

    def adopt(self, transport: asyncio.Transport, data: bytes, *, head_deadline: float | None
              ) -> None:  # fmt: skip
        """Serve a connection a lean connection (:mod:`._lean`) admitted and read from until
        now: ``data``, the bytes it received from the start of the request it does not serve,
        are read as if they had just arrived. ``head_deadline``: the loop time by which that
        request's head must be complete (§10.1-1), when part of it had arrived; None: the
        connection waits for a request (§10.1-2)."""
        self._admitted = True
        super().connection_made(transport)
        if head_deadline is None:
            self._wait()
        else:
            self._state = _State.HEAD
            self._guard.waiting(self)
            self._deadline.set(self._loop, head_deadline)
        if data:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        """``data``, fed to aiohttp's parser in pieces that each end where a request head
        does (after a blank line), so that the parser hands over each request whose head is
        whole before it reads a byte past it. A request that closes the connection
        (``Connection: close``, HTTP/1.0) is answered, and what follows it is not read
        (RFC 9112 §9.6): llhttp refuses any byte after such a request, and when that byte came
        in the same read as the request's head, aiohttp's parser raised without handing the
        request over — its client got ``400 malformed`` in place of its answer. Where the
        pieces end changes nothing else: the parser reads a stream, in pieces of any size.

        Pieces are cut only while the parser takes requests (not after an error, nor while
        the requests queued wait to be handled), at heads that hold more than blank lines, and
        a body's bytes are not searched for blank lines (a body of them would cost a call of
        the parser each): the next head is looked for past the end of a ``Content-Length``
        body; and past the next ``CRLF 0 CRLF CRLF`` of a body of unknown length, the end of a
        chunked body without trailer fields — :data:`_GUESSES` times a read at most: after
        that, the rest of the read goes to the parser whole."""
        self._ends, ends = (self._ends + data)[-3:] if len(data) < 3 else data[-3:], self._ends
        at = data.find(b"\r\n\r\n")
        if (at < 0 or at + 4 == len(data)) and data[:1] not in (b"\r", b"\n"):
            self._received(data)  # no place to cut (every one ends a CRLF CRLF): one piece
            return
        start = 0
        skip = self._body_left()
        if skip == 0 and data[:1] in (b"\r", b"\n") and (
                at := (ends + data[:3]).find(b"\r\n\r\n")) >= 0:  # fmt: skip
            end = at + 4 - len(ends)  # a blank line split over two reads
        else:
            end = _head_end(data, skip) if skip >= 0 else _last_chunk_end(data, 0)
        guesses = _GUESSES - (skip < 0)
        while 0 < end < len(data):
            self._received(data[start:end])
            start = end
            if (self._buffer_paused or self._force_close or self._close or self._head < 0
                    or isinstance(self._last_message, _ErrInfo)):  # fmt: skip
                break  # the parser takes no more requests for now, or none at all
            skip = self._body_left()
            if skip >= 0:
                end = _head_end(data, start + skip)
            elif guesses:
                guesses -= 1
                end = _last_chunk_end(data, start)
            else:
                break
        self._received(data[start:] if start else data)

    def _body_left(self) -> int:
        """Bytes of the last request's body still to come, when known; -1: not known."""
        body = self._last_body
        if body is None or body.is_eof():
            return 0
        length = _declared_length(self._last_message)
        left = length - body.total_bytes
        return left if length >= 0 and left > 0 else -1

    def _received(self, data: bytes) -> None:
        if self._head < 0:
            return  # after a head too long, nothing more is read (the answer closes)
        if self._state is _State.WAITING and data:
            self._state = _State.HEAD
            self._guard.head(self._deadline, self._loop)
        request, queued = self._current_request, len(self._messages)
        body = self._last_body
        in_head = body is None or body.is_eof()  # past the last request parsed: a head
        super().data_received(data)
        if len(self._messages) > queued:
            if request is not None:
                _fail_body(request, self._messages[queued][0])
            self._head = 0
            self._last_message, self._last_body = self._messages[-1]
            if self._state is _State.HEAD:  # the head is whole: its deadline ends with it
                self.request_started()  # (§10.1-1), not when the loop first runs its handler
        elif in_head:
            self._count_head(len(data))

    def _count_head(self, n: int) -> None:
        """``n`` more bytes of a request head went to aiohttp's parser, which keeps what it
        has read of a head until its end (RFC 9112 §2.2): past :data:`MAX_HEAD_LINES` times
        ``max_header_line_bytes``, the head is answered ``malformed`` and the connection
        closed (§12.4-5), its bytes no longer read. A body's bytes are no head's: counted are
        only bytes that came while the last request parsed had all its body, and none that
        came with the end of a head."""
        if self._payload_parser is not None or self._upgraded or self._force_close:
            return  # not HTTP requests any more (an upgrade), or closing
        self._head += n
        limit = MAX_HEAD_LINES * self._guard.limits.max_header_line_bytes
        if self._head <= limit:
            return
        self._head = -1
        exc = _Faulty(f"a request head is longer than {limit} bytes")
        self._messages.append((_ErrInfo(status=400, exc=exc, message=exc.message),
                               EMPTY_PAYLOAD))  # fmt: skip
        self._request_count += 1
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio.Protocol's
        """The client shut its sending side down (a half-close, RFC 9112 §9.6): the requests
        it sent whole are answered, in order, and then the connection is closed. A request
        whose body the end cut short gets a ``ConnectionResetError`` when its body is read
        (the client went away: no answer), and part of a head is no request. Over TLS the end
        is a close_notify or the TCP FIN alone, alike (:mod:`vrmproto.server._tls`)."""
        if not self._admitted or self._request_count <= self._answered:
            return None  # nothing whole is waiting: close
        if not half_closable(self.transport):
            return None
        self._eof = True
        payloads = [payload for _, payload in self._messages]
        if self._current_request is not None:
            payloads.append(self._current_request.content)
        if self._last_body is not None:  # taken from the queue, its task not started yet
            payloads.append(self._last_body)
        for payload in payloads:
            if not payload.is_eof():
                payload.set_exception(ConnectionResetError("the client ended its input "
                                                           "in the middle of a request body"))
        return True

    async def _handle_request(self, request: web.BaseRequest, start_time: float | None,
                              request_handler: Callable[[web.BaseRequest],
                                                        Awaitable[web.StreamResponse]],
                              ) -> tuple[web.StreamResponse, bool]:  # fmt: skip
        """Every request aiohttp parsed, whatever the application: its deadlines stop
        while it is handled (§10.1-1). The application is not asked to say so (a middleware
        would have to be added to an application of the vendor's own, :func:`serve_app`)."""
        self.request_started()
        if request.version.major != 1:
            request_handler = self._not_http1
        elif request.version.minor == 0 and hdrs.TRANSFER_ENCODING in request.headers:
            request_handler = self._coded_http10
        elif not _host_ok(request.headers.get(hdrs.HOST, "")):
            request_handler = self._not_one_host
        elif hdrs.EXPECT in request.headers:
            request_handler = functools.partial(self._expecting, request_handler)
        return await super()._handle_request(request, start_time, request_handler)

    async def _not_one_host(self, request: web.BaseRequest) -> web.StreamResponse:
        """A ``Host`` field whose value is not one host and maybe a port: answered
        ``malformed`` and closed (RFC 9112 §3.2, §12.4-5); aiohttp served it."""
        return self.handle_error(request, 400, _Faulty(
            "the Host field is not one host and port (RFC 9112 §3.2)"))

    async def _coded_http10(self, request: web.BaseRequest) -> web.StreamResponse:
        """An HTTP/1.0 request with ``Transfer-Encoding``: HTTP/1.0 has no transfer codings,
        so its framing is faulty — its sender may frame it otherwise, and what follows the
        chunks may be part of it, not a request (RFC 9112 §6.1). Answered ``malformed`` and
        closed, its body not read (§12.4-5); aiohttp read the chunks and, with keep-alive, took
        the bytes after them as the next request."""
        return self.handle_error(request, 400, _Faulty(
            "Transfer-Encoding in an HTTP/1.0 request: its framing is faulty"))

    async def _expecting(self, handler: Callable[[web.BaseRequest],
                                                 Awaitable[web.StreamResponse]],
                         request: web.BaseRequest) -> web.StreamResponse:  # fmt: skip
        """A request with an ``Expect`` field: an expectation aiohttp's default expect
        handler refuses (anything but 100-continue; it runs before any middleware, on every
        route without an expect handler of its own, and on unknown paths and methods) is
        answered ``malformed`` and closed — where aiohttp answered a plain-text 417 (§12.4-2).
        """
        try:
            return await handler(request)
        except web.HTTPExpectationFailed:
            log.debug("unknown expectation from %s", request.remote)
            out = self._answer(400, "the only expectation understood is 100-continue")
            out.force_close()  # the body may follow, or not: where would a next request start?
            return out

    async def _not_http1(self, request: web.BaseRequest) -> web.StreamResponse:
        """A request line naming HTTP/2 or later on this HTTP/1 connection ("GET / HTTP/2.0"
        in text, which aiohttp's parser takes): not valid HTTP/1.1, answered ``malformed``
        and closed (§12.4-5) — in HTTP/1.1, not in a status line of the version it named."""
        named = request.version
        request._cache["version"] = HttpVersion11  # the answer's status line (a reify)
        log.debug("HTTP/%d.%d request line from %s", named.major, named.minor, request.remote)
        return self.handle_error(request, 400, BadHttpMessage("not an HTTP/1 version"))

    def request_started(self) -> None:
        """The head of a request has arrived and it is being handled."""
        self._state = _State.BUSY
        if self._sending < 0:
            self._deadline.clear()
        self._guard.busy(self)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        out = await super().finish_response(request, resp, start_time)
        self._answered += 1
        if self._state is _State.BUSY and self._admitted:
            self._wait()
        if self._eof and not self._messages:
            self.close()  # the client sends no more: what it sent whole is answered
        return out

    def drop(self) -> None:
        """Close the connection now (it waited too long, or room is needed); abort it if part
        of an answer is unsent, which a close would wait for."""
        self._deadline.cancel()
        self._guard.release(self)
        transport = self.transport
        self.force_close()
        if transport is not None and transport.get_write_buffer_size():
            abort(transport)

    def pause_writing(self) -> None:
        """The client does not read its answer as fast as it is written: it must read some of
        it every ``idle_timeout_ms`` (§10.1-7), whatever the state's deadline."""
        super().pause_writing()
        if self._admitted and self.transport is not None:
            self._sending = self.transport.get_write_buffer_size()
            self._deadline.set(self._loop, self._loop.time() + self._idle_s())

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._sending >= 0:
            self._sending = -1
            if self._state is _State.BUSY:
                self._deadline.clear()
            elif self._state is _State.HEAD:
                self._guard.head(self._deadline, self._loop)
            elif self._admitted:
                self._wait()

    def _idle_s(self) -> float:
        return self._guard.limits.idle_timeout_ms / 1000

    def _wait(self) -> None:
        self._state = _State.WAITING
        self._guard.idle(self, self._deadline, self._loop)
        if self._sending >= 0:  # the answer's end is still unsent: its deadline comes first
            self._deadline.set(self._loop, self._loop.time() + self._idle_s())

    def _expire(self) -> None:
        if not self._admitted:
            return
        if self._sending >= 0:
            transport = self.transport
            left = transport.get_write_buffer_size() if transport is not None else 0
            if 0 < left < self._sending:  # the client read some: another period
                self._sending = left
                self._deadline.set(self._loop, self._loop.time() + self._idle_s())
                return
            self._guard.expired(SEND_LATE)
            self.drop()
        elif self._state is not _State.BUSY:
            if self._state is _State.HEAD:
                self._guard.expired(HEAD_LATE)
            self.drop()

    # -- HTTP that does not parse (§12.4-5) ----------------------------------------------------

    def _make_error_handler(
        self, err_info: _ErrInfo
    ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        """A request aiohttp could not parse is answered in HTTP/1.1, the version this server
        speaks (RFC 9110 §6.2): aiohttp stands a message of version 1.0 in for it, and its
        answer's status line said ``HTTP/1.0``."""

        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            request._cache["version"] = HttpVersion11  # the answer's status line (a reify)
            return self.handle_error(request, err_info.status, err_info.exc, err_info.message)

        return handler

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A signed problem instead of aiohttp's plain-text page, and the connection closed.

        The detail names the kind of fault only: nothing of the request is echoed (§11.12).
        A client that went away mid-request (the body read ends in a ``ConnectionError``) is
        no failure of ours: logged at debug, with no problem signed for nobody to read.
        """
        if isinstance(exc, ConnectionError):
            log.debug("%s went away in the middle of its request: %r", request.remote, exc)
            raise exc
        if status >= 500:
            log.error("failed handling a request from %s", request.remote, exc_info=exc)
            detail = "the receiver failed; the request was not handled"
        else:
            log.debug("unparsable HTTP request from %s: %r", request.remote, exc)
            if isinstance(exc, LineTooLong):
                limit = self._guard.limits.max_header_line_bytes
                detail = f"a request line or header field is longer than {limit} bytes"
            elif isinstance(exc, _Faulty):
                detail = exc.message
            else:
                kind = type(exc).__name__ if exc is not None else "unknown"
                detail = f"the request is not valid HTTP/1.1 ({kind})"
        if request.writer.output_size > 0:
            raise ConnectionError("part of a response was sent; no problem can follow it")
        out = self._answer(status, detail)
        out.headers["Connection"] = "close"  # said and done: where would a next request start?
        out.force_close()
        return out


class ConnectionSite(web.BaseSite):
    """A TCP listening socket whose connections are held to :class:`ConnectionLimits`.

    Like :class:`aiohttp.web.TCPSite`, but each accepted connection is served by a handler
    that the :class:`ConnectionGuard` admits, times and may close; and failures to accept are
    logged once per interval instead of with a traceback each (§10.1-6).
    """

    __slots__ = ("_accept_errors", "_answer", "_guard", "_handler_kwargs", "_handshakes", "_host",
                 "_lean", "_port", "_shutdown_timeout", "_sock", "_ssl")  # fmt: skip

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        guard: ConnectionGuard,
        answer: ErrorAnswer,
        handler_kwargs: dict[str, Any],
        backlog: int = 128,
        ssl_context: ssl.SSLContext | None = None,
        sock: socket.socket | None = None,
        lean: LeanServing | None = None,
        shutdown_timeout: float = 60.0,
    ) -> None:
        """``lean``: serve connections with it, each handed to aiohttp when a request needs
        it; ``shutdown_timeout``: how long :meth:`stop` lets its requests in progress finish."""
        super().__init__(runner, backlog=backlog)
        self._ssl = ssl_context
        self._sock = sock  # a listening socket to serve on instead of binding host:port
        self._host = host
        self._port = port
        self._guard = guard
        self._answer = answer
        self._handler_kwargs = handler_kwargs
        self._lean = lean
        self._shutdown_timeout = shutdown_timeout
        self._accept_errors: _AcceptErrors | None = None
        self._handshakes: set[_Handshake] = set()

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{'http' if self._ssl is None else 'https'}://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        manager = self._runner.server
        assert manager is not None
        guard, answer, kwargs = self._guard, self._answer, self._handler_kwargs
        limits = guard.limits

        def handler() -> _ConnectionHandler:
            return _ConnectionHandler(
                manager, guard=guard, answer=answer, loop=loop,
                # aiohttp's own idle close is only a backstop behind the deadlines of §10.1
                keepalive_timeout=(limits.idle_timeout_ms + limits.header_timeout_ms) / 1000,
                max_line_size=limits.max_header_line_bytes,
                max_field_size=limits.max_header_line_bytes,
                **kwargs,
            )  # fmt: skip

        lean = self._lean
        factory: Callable[[], asyncio.Protocol] = (
            handler if lean is None else functools.partial(lean.connection, guard, handler)
        )

        if self._ssl is not None:  # admitted before the handshake, not after it (_Handshake)
            factory = functools.partial(_Handshake.protocol, guard, factory, self._ssl,
                                        self._handshakes)  # fmt: skip
        if self._sock is not None:  # a worker serving the supervisor's socket
            server = await loop.create_server(factory, sock=self._sock, backlog=self._backlog)
        else:
            server = await loop.create_server(factory, self._host, self._port,
                                              backlog=self._backlog)  # fmt: skip
        self._server = server
        self._accept_errors = _AcceptErrors(loop, server, guard)

    async def stop(self) -> None:
        if self._accept_errors is not None:
            self._accept_errors.remove()
        for shaking in list(self._handshakes):
            shaking.drop()
        await super().stop()
        if self._lean is not None:  # aiohttp's own connections are shut down by the runner
            await self._lean.shutdown(self._shutdown_timeout)


class _Handshake:
    """A TLS connection until its handshake is done: admitted and counted as soon as it is
    accepted (§10.1-3, §10.1-4), closed to make room like any connection waiting for a request,
    and closed when the handshake is not done within ``idle_timeout_ms`` — the connection has
    not sent the first byte of a request yet (§10.1-2, §10.1-7). Then it is served over TLS
    (:class:`~vrmproto.server._tls.TLSProtocol`) by a protocol of ``serving``, which the guard
    admits in its place.

    A listening socket that does the handshake itself (``create_server(ssl=…)``) calls the
    protocol only once the handshake is done: until then a connection was neither counted nor
    timed but by asyncio's own 60 s handshake timeout, and one address could open connections
    that never sent a byte until the process ran out of descriptors.
    """

    __slots__ = ("_guard", "_late", "_serving", "_shaking", "tls")

    def __init__(self, guard: ConnectionGuard, serving: Callable[[], asyncio.Protocol],
                 context: ssl.SSLContext, shaking: set[_Handshake]) -> None:  # fmt: skip
        self._guard = guard
        self._serving = serving
        self._shaking = shaking
        self._late: asyncio.TimerHandle | None = None
        self.tls = TLSProtocol(context, self._shaken, self._accepted)

    @classmethod
    def protocol(cls, guard: ConnectionGuard, serving: Callable[[], asyncio.Protocol],
                 context: ssl.SSLContext, shaking: set[_Handshake]) -> TLSProtocol:  # fmt: skip
        """The protocol of a TLS connection just accepted (the listening socket's factory)."""
        return cls(guard, serving, context, shaking).tls

    def _accepted(self, tls: TLSProtocol) -> None:
        if self._guard.admit_transport(self, tls.raw) is None:
            return
        self._shaking.add(self)
        loop = asyncio.get_running_loop()
        self._late = loop.call_later(self._guard.limits.idle_timeout_ms / 1000, self._too_late)

    def _too_late(self) -> None:
        log.debug("TLS handshake with %s not done in time", self.tls.info("peername", None))
        self.drop()

    def _shaken(self, tls: TLSProtocol, exc: BaseException | None) -> None:
        self._done()
        if exc is not None:  # a failed handshake, a client gone: nobody to answer
            log.debug("TLS handshake with %s failed: %r", tls.info("peername", None), exc)
            tls.abort()
            return
        if tls.closing():
            return
        tls.serve(self._serving())  # admitted by the guard in this one's place

    def _done(self) -> None:
        if self._late is not None:
            self._late.cancel()
            self._late = None
        self._guard.release(self)
        self._shaking.discard(self)

    def drop(self) -> None:
        """Close the connection now: room is needed, or the server stops."""
        self._done()
        self.tls.abort()


class _AcceptErrors:
    """The loop's exception handler while a site listens: failures to accept on the site's
    sockets go to :meth:`ConnectionGuard.accept_failed` (logged once per interval, no
    traceback); everything else to the handler that was there before (§10.1-6).

    asyncio itself stops accepting on such a failure and retries a second later.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, server: asyncio.Server,
                 guard: ConnectionGuard) -> None:  # fmt: skip
        self._loop = loop
        self._fds = {sock.fileno() for sock in server.sockets}
        self._guard = guard
        self._previous = loop.get_exception_handler()
        self._active = True
        loop.set_exception_handler(self)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        sock = context.get("socket")
        message = str(context.get("message", ""))
        if (
            self._active
            and sock is not None
            and sock.fileno() in self._fds
            and message.startswith("socket.accept() out of")
        ):
            self._guard.accept_failed(context.get("exception"))
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def remove(self) -> None:
        self._active = False
        if self._loop.get_exception_handler() is self:
            self._loop.set_exception_handler(self._previous)
