"""The customer agent's lean HTTP/1.1 client: a request written in one piece on a kept-alive
connection of its *channel*, the answer read by the sans-IO :class:`~vrmproto._http1.
ResponseReader`. :class:`~vrmproto.client._http.EndpointClient` sends its POSTs (the inbox,
§12.3, and history pages, §12.5) and its discovery GETs (§13.1, a redirect aside) this way
when it owns its connections.

Why not aiohttp's client, which the client still uses for discovery: the inbox POST is one
small body and one small answer per message, and aiohttp's client spent ~250-280 µs of CPU on
each (its request and response objects, multidict headers, the connector's bookkeeping, the
streamed payload) - more than all the cryptography the agent does for the message (issue 12).
This client does what those POSTs need and what aiohttp did for them:

- **channels** (§11.6-3: no connection carries two identities): a request of a channel (a
  relationship's thread) goes out on that channel's connections only, at most ``per_channel``
  at once (a further request waits for one); a request with no channel gets a connection of its
  own, closed after it, at most ``pool_size`` at once. The ``max_channels`` most recently used
  channels keep their idle connections; an older idle channel's are closed when a new one opens;
- no cookies, no proxy (the environment's proxy settings are not read), no redirect followed
  (a 3xx is an answer like any other); ``https`` through :mod:`ssl` with the default context
  (the system's trusted roots, ``SSL_CERT_FILE`` honoured, the host name checked), as aiohttp;
- one deadline per request, covering the wait for a connection, connecting, writing and the
  whole answer; the answer's body capped (declared, received and decoded:
  :class:`~vrmproto._http1.ResponseTooLarge`);
- kept-alive connections reused, most recently used first; one idle for longer than ``idle_s``
  (aiohttp's default keep-alive, 15 s) is closed rather than reused. A request on a reused
  connection that the server closed before sending a byte of the answer (it closed the idle
  connection as the request went out) is sent once more, on a new connection. Nothing else is
  resent: a request whose answer had begun, or on a fresh connection, fails. Resending is safe
  for what goes this way: the inbox answers a POST again with the byte-identical stored answer
  (§12.3-4), and a history page is a read.

Transports are used through the methods every stream transport has: uvloop's are not
:class:`asyncio.Transport` subclasses.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from vrmproto._http1 import (
    IncompleteResponse,
    MalformedResponse,
    Response,
    ResponseReader,
    ResponseTooLarge,
)
from vrmproto._http_connection import ClientConnection

__all__ = ["ConnectError", "Connections", "ServerClosed", "Target", "target"]

_PCHARS = "/%:@!$&'()*+,;=~"  # kept as they are in a request target (RFC 3986 pchar, and /)


class ConnectError(OSError):
    """No connection to ``host``:``port`` could be made; ``os_error`` says why (refused, a name
    that does not resolve, a certificate that does not verify, …)."""

    def __init__(self, host: str, port: int, os_error: OSError) -> None:
        self.host = host
        self.port = port
        self.os_error = os_error
        super().__init__(os_error.errno, f"cannot connect to {host}:{port}: {os_error}")


class ServerClosed(ConnectionError):  # noqa: N818 -- named for what happened
    """The server closed the connection before any byte of the answer."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: the origin, and the bytes of its head up to ``Content-Length``."""

    tls: bool
    host: str
    port: int
    head: bytes  # request line and header fields, each ending CRLF; Content-Length not yet


def target(method: str, url: str, headers: tuple[tuple[str, str], ...],
           *, close: bool = False) -> Target:  # fmt: skip
    """Parse ``url`` (``http`` or ``https``, with a host) and build the head of a ``method``
    request to it with ``headers`` (user info in the URL becomes ``Authorization: Basic``, as
    aiohttp does). ``close`` asks the server to close the connection after the answer.
    Raises ValueError for a URL we cannot send to, or a header with a line break in it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host: {url!r}")
    host = parts.hostname.encode("idna").decode("ascii")
    tls = parts.scheme == "https"
    default = 443 if tls else 80
    port = parts.port or default  # ValueError for a port out of range
    authority = f"[{host}]" if ":" in host else host
    if port != default:
        authority += f":{port}"
    path = quote(parts.path or "/", safe=_PCHARS)
    if parts.query:
        path += "?" + quote(parts.query, safe=_PCHARS + "?")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {authority}", "User-Agent: vrmproto",
             "Accept-Encoding: identity"]  # fmt: skip
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        lines.append("Authorization: Basic " + base64.b64encode(pair).decode())
    if close:
        lines.append("Connection: close")
    for name, value in headers:
        if any(c in name + value for c in "\r\n\0") or not name:
            raise ValueError(f"a header field that cannot be sent: {name!r}")
        lines.append(f"{name}: {value}")
    return Target(tls, host, port, ("\r\n".join(lines) + "\r\n").encode("latin-1"))


class _Connection(ClientConnection[Response]):
    """One connection of ``origin``: a request written, its whole answer awaited."""

    def __init__(self, origin: tuple[bool, str, int]) -> None:
        super().__init__(ResponseReader())
        self.origin = origin

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        try:
            response = self.reader.feed(data)
        except (MalformedResponse, ResponseTooLarge) as exc:
            self.settle(exc)
            self.close()
            return
        if response is not None:
            self.settle(response)

    def eof_received(self) -> bool:
        try:
            response = self.reader.eof()
        except MalformedResponse as exc:
            self.settle(exc)
            return False
        self.settle(ServerClosed("the server closed the connection") if response is None
                    else response)  # fmt: skip
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reader.keep_alive = False
        if self.reader.started:
            self.settle(IncompleteResponse("the connection was lost in the middle of an answer"))
        else:
            self.settle(ServerClosed(f"the connection was lost: {exc}" if exc else
                                     "the server closed the connection"))  # fmt: skip

    def ask(self, request: bytes, cap: int, loop: asyncio.AbstractEventLoop,
            deadline: float) -> asyncio.Future[Response]:  # fmt: skip
        """:meth:`send` ``request``, its answer's body capped at ``cap`` bytes."""
        self.reader.start(cap)
        return self.send(request, loop, deadline)

    @property
    def reusable(self) -> bool:
        return (not self.lost and self.reader.keep_alive and self.transport is not None
                and not self.transport.is_closing())  # fmt: skip


@dataclass
class _Channel:
    """One channel's connections: idle ones by origin (last used last), and those in use."""

    limit: asyncio.Semaphore
    idle: dict[tuple[bool, str, int], list[_Connection]] = field(default_factory=dict)
    busy: set[_Connection] = field(default_factory=set)
    requests: int = 0  # in flight (and waiting for a connection)

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()
        for conn in self.busy:
            conn.close()


class Connections:
    """The client's connections, kept apart by channel (see the module docstring)."""

    def __init__(self, *, pool_size: int = 100, per_channel: int = 2, max_channels: int = 64,
                 idle_s: float = 15.0) -> None:  # fmt: skip
        self.per_channel = per_channel
        self.max_channels = max_channels
        self.idle_s = idle_s
        self._channels: OrderedDict[bytes, _Channel] = OrderedDict()
        self._single = asyncio.Semaphore(pool_size)  # requests with no channel
        self._alone: set[_Connection] = set()
        self._ssl: ssl.SSLContext | None = None

    async def request(self, to: Target, body: bytes, *, channel: bytes | None,
                      deadline: float, cap: int,
                      loop: asyncio.AbstractEventLoop | None = None) -> Response:  # fmt: skip
        """Send one request (its head from :func:`target`) and return the answer, by the loop
        time ``deadline``. Raises :class:`ConnectError`, :class:`ServerClosed` (or another
        OSError), TimeoutError, :class:`~vrmproto._http1.MalformedResponse` or
        :class:`~vrmproto._http1.ResponseTooLarge`. ``loop``: the running loop, if the caller
        has it at hand."""
        if loop is None:
            loop = asyncio.get_running_loop()
        if body or not to.head.startswith(b"GET "):
            request = b"%sContent-Length: %d\r\n\r\n%s" % (to.head, len(body), body)
        else:  # a GET has no content, and says none (RFC 9110 §8.6)
            request = to.head + b"\r\n"
        if channel is None:
            return await self._alone_request(loop, to, request, deadline, cap)
        chan = self._channel(channel)
        chan.requests += 1
        try:
            if chan.limit.locked():
                async with asyncio.timeout_at(deadline):
                    await chan.limit.acquire()
            else:
                await chan.limit.acquire()  # returns at once
            try:
                return await self._on_channel(loop, chan, to, request, deadline=deadline,
                                              cap=cap)
            finally:
                chan.limit.release()
        finally:
            chan.requests -= 1

    async def _on_channel(self, loop: asyncio.AbstractEventLoop, chan: _Channel, to: Target,
                          request: bytes, *, deadline: float, cap: int) -> Response:  # fmt: skip
        origin = (to.tls, to.host, to.port)
        fresh = False  # the retry after a kept-alive connection turned out closed is on a new one
        while True:
            conn = None if fresh else self._take(loop, chan, origin)
            reused = conn is not None
            if conn is None:
                conn = await self._open(loop, to, deadline)
            chan.busy.add(conn)
            try:
                response = await conn.ask(request, cap, loop, deadline)
            except ServerClosed:
                conn.close()  # (as _exchange does)
                if reused and not conn.reader.started:
                    fresh = True
                    continue  # the server had closed it, idle: once more, on a new one
                raise
            except BaseException:
                conn.close()  # an answer may be on its way or half read: the connection is spent
                raise
            finally:
                chan.busy.discard(conn)
            if response.keep_alive and conn.reusable:
                conn.used = loop.time()
                chan.idle.setdefault(origin, []).append(conn)
            else:
                conn.close()
            return response

    async def _alone_request(self, loop: asyncio.AbstractEventLoop, to: Target, request: bytes,
                             deadline: float, cap: int) -> Response:  # fmt: skip
        if self._single.locked():
            async with asyncio.timeout_at(deadline):
                await self._single.acquire()
        else:
            await self._single.acquire()
        try:
            conn = await self._open(loop, to, deadline)
            self._alone.add(conn)
            try:
                return await self._exchange(loop, conn, request, deadline, cap)
            finally:
                conn.close()
                self._alone.discard(conn)
        finally:
            self._single.release()

    @staticmethod
    async def _exchange(loop: asyncio.AbstractEventLoop, conn: _Connection, request: bytes,
                        deadline: float, cap: int) -> Response:  # fmt: skip
        try:
            return await conn.ask(request, cap, loop, deadline)
        except BaseException:
            conn.close()  # an answer may be on its way or half read: the connection is spent
            raise

    def _channel(self, channel: bytes) -> _Channel:
        """The channel's connections, made most recently used; the oldest idle channels beyond
        ``max_channels`` closed."""
        chan = self._channels.get(channel)
        if chan is None:
            chan = self._channels[channel] = _Channel(asyncio.Semaphore(self.per_channel))
            excess = len(self._channels) - self.max_channels
            if excess > 0:  # oldest first; a channel with a request in flight is kept
                idle = [c for c, ch in self._channels.items() if not ch.requests and
                        c != channel][:excess]  # fmt: skip
                for old in idle:
                    self._channels.pop(old).close()
        else:
            self._channels.move_to_end(channel)
        return chan

    def _take(self, loop: asyncio.AbstractEventLoop, chan: _Channel,
              origin: tuple[bool, str, int]) -> _Connection | None:  # fmt: skip
        conns = chan.idle.get(origin)
        if not conns:
            return None
        now = loop.time()
        while conns:
            conn = conns.pop()
            if conn.reusable and now - conn.used < self.idle_s:
                return conn
            conn.close()
        return None

    async def _open(self, loop: asyncio.AbstractEventLoop, to: Target,
                    deadline: float) -> _Connection:  # fmt: skip
        context = None
        if to.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        origin = (to.tls, to.host, to.port)
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin), to.host, to.port, ssl=context,
                    server_hostname=to.host if context is not None else None,
                )  # fmt: skip
        except TimeoutError:
            raise
        except OSError as exc:  # also ssl.SSLError: a certificate that does not verify
            raise ConnectError(to.host, to.port, exc) from exc
        return conn

    def close(self) -> None:
        """Close every connection (those in use too: their requests fail)."""
        for chan in self._channels.values():
            chan.close()
        self._channels.clear()
        for conn in self._alone:
            conn.close()
        self._alone.clear()
