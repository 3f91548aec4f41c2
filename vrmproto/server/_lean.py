"""The hot routes without aiohttp's server machinery: ``POST <inbox>``, ``POST <history>`` and
``GET /.well-known/vrm`` on the connections :func:`~vrmproto.server.serve` accepts (spec §12.2).

aiohttp's request handling (its protocol, request and response objects, middlewares, URL
dispatch, stream writer) cost the reference vendor ~70 µs of CPU per message on the message
path of issue 12, a third of the cryptography a ``data.share`` needs. A :class:`LeanConnection`
reads its requests with the sans-IO :class:`~vrmproto._http1_server.RequestReader`, answers the
three routes itself by calling the :class:`~vrmproto.server.Endpoint`, and hands the connection
to aiohttp's handler (:class:`~vrmproto.server._connections._ConnectionHandler`, with every
byte from the start of the request it does not serve) as soon as a request is anything else: an
other path or method, a chunked or still-arriving body, a content type other than the binding's,
a ``Content-Encoding`` (aiohttp decodes the body), a body over the limit, a head the reader
does not take as plainly well formed (a repeated ``Forwarded`` or ``X-Forwarded-For`` field
among them). From then on aiohttp serves that connection alone, exactly as it serves every
connection of an application mounted in a site of one's own. So every refusal other than a
rate limit or a failure of the receiver is aiohttp's, as before; what the lean path answers, it
answers as the aiohttp application would (``tests/test_server_lean.py`` compares the two byte
for byte, the ``Date`` aside):

- the client's address as :func:`~vrmproto.server._proxy.client_of` finds it: the
  connection's, or from the forwarding fields when the connection is a trusted proxy's
  (§12.13-1);
- the per-address rate limit before the body is used (§12.9-6), the problem and a closed
  connection when it refuses;
- the endpoint's answer, the same status, headers and body bytes, with aiohttp's
  ``Content-Length``, ``Date`` and ``Server`` fields, ``Connection: close`` when closing;
- a failure of the receiver: logged, answered with the signed ``internal`` problem, closed
  (§12.4-3);
- each answer logged and counted as :func:`~vrmproto.server._observe.observe` does;
- the deadlines and caps of §10.1 through the same :class:`ConnectionGuard`: the idle
  deadline while waiting for a request, the header deadline from its first byte, none while a
  request is handled; a hand-over keeps the header deadline already running;
- keep-alive and pipelining: requests answered one at a time, in order; reading paused once
  two requests' worth of bytes (at their largest) wait, until at most one's worth does;
- a client that half-closes (shuts its sending side down after its requests): the requests
  it sent whole are answered, then the connection closes (not over TLS, which asyncio cannot
  half-close);
- an answer the client does not read: the transport pauses as soon as part of an answer is
  unsent, and the idle deadline starts only once all of it is (a request being answered is
  not cut, §10.1-1); meanwhile the client must read some of it every ``idle_timeout_ms``, or
  the connection is aborted (§10.1-5), as :class:`ConnectionGuard` counts it
  (:data:`SEND_LATE`).

Since the reader takes a request only once its body has arrived whole, the body read timeout
(§12.9-4) and the lingering after a refusal that left a body unread are aiohttp's concern: a
request whose body is still arriving is handed over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.tcp_helpers import tcp_keepalive
from aiohttp.web_response import REASON_PHRASES

from vrmproto._binding import CONTENT_TYPE, WELL_KNOWN_PATH
from vrmproto._deadline import Deadline
from vrmproto._errors import Problem
from vrmproto._http1_server import MAX_HEAD, Request, RequestReader, Unhandled
from vrmproto.server._connections import (
    HEAD_LATE,
    SEND_LATE,
    ConnectionGuard,
    _ConnectionHandler,
    abort,
    half_closable,
)
from vrmproto.server._endpoint import Endpoint, Response
from vrmproto.server._logging import REQUEST_LOG
from vrmproto.server._observe import DISCOVERY_ROUTE, HISTORY_ROUTE, INBOX_ROUTE, record
from vrmproto.server._proxy import Deployment, client_from, may_be_a_proxy, note_forwarding

if TYPE_CHECKING:
    from vrmproto.server._metrics import Metrics

__all__ = ["LeanConnection", "LeanRoutes"]

log = logging.getLogger("vrmproto.server")

_CONTENT_TYPE = CONTENT_TYPE.encode()
_SERVER = f"Server: {SERVER_SOFTWARE}\r\n".encode()
_CLOSE = b"Connection: close\r\n"
_FAILED = "the receiver failed; the request was not handled"
#: Statuses whose answers have no body, and so no Content-Length (RFC 9110 §8.6).
_NO_BODY = frozenset({204, 304})


@dataclass(slots=True)
class LeanRoutes:
    """What the lean connections of one server serve, and the connections open (see the
    module docstring). ``inbox``, ``history``: the routes' paths in the application;
    ``discovery``: the discovery answer, as the application's route makes it."""

    endpoint: Endpoint
    inbox: str
    history: str
    deployment: Deployment
    discovery: Callable[[], Response]
    metrics: Metrics | None = None
    open: set[LeanConnection] = field(default_factory=set)
    _routes: dict[tuple[bytes, bytes], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._routes = {
            (b"POST", self.inbox.encode()): INBOX_ROUTE,
            (b"POST", self.history.encode()): HISTORY_ROUTE,
            (b"GET", WELL_KNOWN_PATH.encode()): DISCOVERY_ROUTE,
        }

    def route(self, request: Request) -> str | None:
        """The route serving ``request`` on the lean path; None: aiohttp is to serve it."""
        name = self._routes.get((request.method, request.target))
        if name is None:
            return None
        if name == DISCOVERY_ROUTE:
            return None if request.body or request.field(b"content-length") not in (
                None, b"0") else name  # fmt: skip
        # Anything else — another type, no Content-Length, a Content-Encoding — is aiohttp's
        # (it answers 415, §12.2-3; or decodes the body, or answers malformed). Read once per
        # head, not scanned for here three times a request.
        if request.body_type != _CONTENT_TYPE:
            return None
        if len(request.body) > self.endpoint.limits.max_envelope_bytes:
            return None  # aiohttp answers 413 (§12.9-2)
        return name

    def connection(self, guard: ConnectionGuard,
                   hand_over: Callable[[], _ConnectionHandler]) -> LeanConnection:  # fmt: skip
        return LeanConnection(self, guard, hand_over)

    async def shutdown(self, grace_s: float) -> None:
        """Close idle connections; let the requests in progress finish (at most ``grace_s``
        seconds, then they are cancelled and their connections aborted), as aiohttp's server
        shuts its connections down."""
        busy = []
        for conn in list(self.open):
            task = conn.close()
            if task is not None:
                busy.append(task)
        if not busy:
            return
        _, pending = await asyncio.wait(busy, timeout=grace_s)
        for task in pending:
            task.cancel()
        for conn in list(self.open):
            conn.abort()


#: The parts of an answer's head that depend only on its status, its fields, whether it has a
#: body and whether it closes (see :func:`_head_parts`), by those. Answers carry few distinct
#: field sets (a problem's ``Retry-After`` varies most): this stays small, and is emptied
#: when it is not.
_HEADS: dict[tuple[int, tuple[tuple[str, str], ...], bool, bool], tuple[bytes, bytes, bytes]] = {}
_HEADS_MAX = 256
_date: tuple[str, bytes] = ("", b"")  # aiohttp's Date value (it changes once a second), as a line


def _head_parts(status: int, fields: tuple[tuple[str, str], ...], body: bool, close: bool) -> (
    tuple[bytes, bytes, bytes]
):
    """What :func:`_answer_head` writes before ``Content-Length``, between it and ``Date``,
    and after ``Date``."""
    start = [f"HTTP/1.1 {status} {REASON_PHRASES.get(status, '')}\r\n".encode()]
    start.extend(f"{name}: {value}\r\n".encode() for name, value in fields)
    typed = any(name.lower() == "content-type" for name, _ in fields)
    middle = b"" if typed or not body else b"Content-Type: application/octet-stream\r\n"
    end = _SERVER
    if close and not any(name.lower() == "connection" for name, _ in fields):
        end += _CLOSE
    return b"".join(start), middle, end + b"\r\n"


def _answer_head(status: int, headers: Mapping[str, str], length: int, close: bool) -> bytes:
    """The status line and fields aiohttp writes for a ``web.Response`` with these headers
    and a body of ``length`` bytes."""
    global _date  # noqa: PLW0603 - the Date line, made once for the second it names
    key = (status, tuple(headers.items()), length > 0, close)
    parts = _HEADS.get(key)
    if parts is None:
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        parts = _HEADS[key] = _head_parts(*key)
    now = rfc822_formatted_time()
    if _date[0] != now:
        _date = (now, f"Date: {now}\r\n".encode())
    start, middle, end = parts
    sized = b"" if status in _NO_BODY else b"Content-Length: %d\r\n" % length
    return b"".join((start, sized, middle, _date[1], end))


def _one_request(reader: RequestReader) -> int:
    """The most bytes one request the lean reader takes holds, near enough: with more bytes
    than this buffered, :meth:`RequestReader.next` returns a request or raises Unhandled."""
    return reader.max_body + MAX_HEAD


class LeanConnection(asyncio.Protocol):
    """One connection on the lean path (see the module docstring)."""

    __slots__ = ("_ask_proxy", "_closing", "_deadline", "_eof", "_guard", "_hand_over", "_loop",
                 "_paused", "_proxied", "_reader", "_reading", "_remote", "_routes", "_sending",
                 "_task", "_transport", "_waiting")  # fmt: skip

    def __init__(self, routes: LeanRoutes, guard: ConnectionGuard,
                 hand_over: Callable[[], _ConnectionHandler]) -> None:  # fmt: skip
        self._routes = routes
        self._guard = guard
        self._hand_over = hand_over
        limits = guard.limits
        self._reader = RequestReader(
            max_line=limits.max_header_line_bytes,
            max_body=routes.endpoint.limits.max_envelope_bytes,
        )
        self._loop = asyncio.get_running_loop()
        self._deadline = Deadline(self._expire, horizon=min(
            limits.header_timeout_ms, limits.idle_timeout_ms) / 1000)  # fmt: skip
        self._transport: asyncio.Transport | None = None  # None: not admitted, or gone
        self._remote = ""
        self._proxied = False  # the peer is a trusted proxy: the client is in its fields
        self._ask_proxy = False  # an untrusted local peer whose first request is looked at
        self._task: asyncio.Task[None] | None = None  # the request being answered
        self._waiting = True  # no request in progress; False: part of a head, or busy
        self._closing = False  # the server stops: close once the answer in progress is sent
        self._paused = False  # part of an answer is unsent (the write buffer's high water is 1)
        self._sending = -1  # while paused: the bytes unsent at the last look (see _expire)
        self._reading = True
        self._eof = False  # the client shut its sending side down: answer what came, close

    # -- the connection ------------------------------------------------------------------------

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)  # uvloop's TLS one is not a subclass
        address = self._guard.admit_transport(self, transport)
        if address is None:
            return
        self._transport = transport
        self._remote = address
        self._proxied = self._routes.deployment.trusts(address)
        # A proxy the vendor did not name? Its first request says (note_forwarding).
        self._ask_proxy = not self._proxied and may_be_a_proxy(address, self._routes.deployment)
        self._routes.open.add(self)
        tcp_keepalive(transport)
        # pause_writing as soon as an answer is not all sent, resume_writing once it is (not
        # high=0: asyncio's TLS transport then pauses with nothing to send, and stays paused)
        transport.set_write_buffer_limits(high=1, low=0)
        self._wait()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._transport is None:
            return
        self._transport = None
        self._deadline.cancel()
        self._guard.release(self)
        self._routes.open.discard(self)
        # A request in progress runs to its end (its commit is not cut short); its answer is
        # not sent.

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._sending >= 0:  # the answer is all sent: the connection waits for a request
            self._sending = -1
            if self._transport is not None and not self._transport.is_closing():
                self._next()
        elif self._task is None and self._transport is not None:
            self._advance()

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        reader = self._reader
        reader.feed(data)
        if self._waiting:  # the first byte of a request: its head has a deadline (§10.1-1)
            self._waiting = False
            self._guard.head(self._deadline, self._loop)
        if self._task is not None or self._paused:
            if len(reader) > 2 * _one_request(reader) and self._reading:
                self._reading = False  # pipelined requests pile up: let TCP push back
                self._transport.pause_reading()
            return
        self._advance()

    def eof_received(self) -> bool | None:
        """The client shut its sending side down (a half-close, RFC 9112 §9.6): the requests
        it sent whole are answered, in order, and then the connection is closed; a request cut
        short by the end is not answered; over TLS alike (:mod:`~vrmproto.server._tls`)."""
        if self._transport is None:
            return None
        if self._task is None and self._sending < 0:
            return None  # nothing whole is waiting (data_received started every one): close
        if not half_closable(self._transport):
            return None
        self._eof = True
        return True

    # -- the guard's side (ConnectionGuard) ----------------------------------------------------

    def drop(self) -> None:
        """Close the connection now (it waited too long, or room is needed); abort it if part
        of an answer is unsent, which a close would wait for."""
        self._deadline.cancel()
        self._guard.release(self)
        transport = self._transport
        if transport is not None:
            if transport.get_write_buffer_size():
                abort(transport)
            else:
                transport.close()

    def close(self) -> asyncio.Task[None] | None:
        """The server stops: close now if no request is in progress, else once it is
        answered (returned: the task answering it)."""
        self._closing = True
        if self._task is None and self._transport is not None:
            self._transport.close()
        return self._task

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _wait(self) -> None:
        self._waiting = True
        self._guard.idle(self, self._deadline, self._loop)

    def _expire(self) -> None:
        transport = self._transport
        if self._task is not None or transport is None:
            return
        if self._sending >= 0:  # an answer is being sent: did the client read some of it?
            left = transport.get_write_buffer_size()
            if 0 < left < self._sending:
                self._sending = left
                self._deadline.set(self._loop, self._loop.time() + self._idle_s())
                return
            self._guard.expired(SEND_LATE)
        elif not self._waiting:  # part of a head had come (§10.1-1); idle ones are routine
            self._guard.expired(HEAD_LATE)
        self.drop()

    def _idle_s(self) -> float:
        return self._guard.limits.idle_timeout_ms / 1000

    # -- requests ------------------------------------------------------------------------------

    def _advance(self) -> None:
        """Answer the next request buffered, if it is whole; or hand the connection over."""
        reader = self._reader
        try:
            request = reader.next()
        except Unhandled:
            self._give_away(self._deadline.at if not self._waiting else None)
            return
        if request is None:
            if len(reader) and self._waiting:  # the first bytes of a pipelined request
                self._waiting = False
                self._guard.head(self._deadline, self._loop)
            return
        name = self._routes.route(request)
        if name is None:
            reader.unread()
            self._give_away(self._deadline.at if not self._waiting else None)
            return
        self._waiting = False
        self._deadline.clear()
        self._guard.busy(self)
        self._task = self._loop.create_task(self._answer(name, request))

    def _give_away(self, head_deadline: float | None) -> None:
        """Hand the connection to aiohttp's handler, with the bytes not yet answered."""
        transport = self._transport
        assert transport is not None
        handler = self._hand_over()
        self._transport = None
        self._deadline.cancel()
        self._routes.open.discard(self)
        self._guard.replace(self, handler)
        transport.set_write_buffer_limits()  # aiohttp's own flow control: the defaults
        transport.set_protocol(handler)
        if not self._reading:
            transport.resume_reading()
        handler.adopt(transport, self._reader.rest(), head_deadline=head_deadline)
        if self._eof and not handler.eof_received():
            transport.close()

    async def _answer(self, name: str, request: Request) -> None:
        """Answer one request, then go on with the next buffered one."""
        routes = self._routes
        endpoint = routes.endpoint
        # record() logs and counts only for someone: else neither it nor the clock is asked
        observed = routes.metrics is not None or REQUEST_LOG.isEnabledFor(logging.INFO)
        started = time.perf_counter() if observed else 0.0
        remote = self._remote
        if self._proxied:  # as aiohttp's proxy middleware finds it (§12.13-1)
            remote, _ = client_from(remote, "http", request.values, routes.deployment)
        elif self._ask_proxy:
            self._ask_proxy = False
            note_forwarding(remote, request.values)
        close = request.close
        data: bytes | None = None
        extra: dict[str, str] = {}
        try:
            limited = await endpoint.acheck_address(remote)
            if limited is not None:  # before the body is used (§12.9-6)
                answer, close = limited, True
            elif name == INBOX_ROUTE:
                data = request.body
                answer = await endpoint.handle_inbox(data, client=remote)
            elif name == HISTORY_ROUTE:
                data = request.body
                answer = await endpoint.handle_history(data, client=remote)
            else:
                answer = routes.discovery()
            recorded: tuple[int, bytes | None] = (answer.status, answer.body or None)
        except Exception as exc:  # as aiohttp's handler: logged, a signed problem, closed
            log.error("failed handling a request from %s", remote, exc_info=exc)
            answer = endpoint.problem(Problem.INTERNAL, _FAILED, clause="§12.4-3")
            extra = {"Connection": "close"}
            close = True
            recorded = (500, None)
        if observed:
            try:
                record(endpoint, routes.metrics, name, path=request.target.decode(),
                       remote=remote, status=recorded[0], body=recorded[1], data=data,
                       seconds=time.perf_counter() - started)  # fmt: skip
            except Exception:  # the answer is good; a failure to log it must not lose it
                log.exception("failed logging or counting a request from %s", remote)
        self._task = None
        self._send(answer, extra, close or self._closing)

    def _send(self, answer: Response, extra: Mapping[str, str], close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # the client went away
        headers = {**answer.headers, **extra} if extra else answer.headers
        body = answer.body
        transport.write(_answer_head(answer.status, headers, len(body), close) + body)
        if close:
            transport.close()  # once the answer is all sent
        if self._paused:  # part of it is unsent: the client must read it (see _expire)
            self._sending = transport.get_write_buffer_size()
            self._guard.waiting(self)
            self._deadline.set(self._loop, self._loop.time() + self._idle_s())
        elif not close:
            self._next()

    def _next(self) -> None:
        """The last answer is all sent: wait for the next request, or answer it."""
        transport = self._transport
        assert transport is not None
        self._wait()
        reader = self._reader
        if not self._reading and len(reader) <= _one_request(reader):
            # Not before: each answer would let in another read (up to 256 KiB) while one
            # request's bytes were taken, and the requests piled up without bound. Above this,
            # the next request is whole or Unhandled: the reader needs no more bytes to go on.
            self._reading = True
            transport.resume_reading()
        if len(reader):
            self._advance()
        if self._eof and self._task is None and self._transport is transport:
            transport.close()  # the client sends no more: what it sent whole is answered
