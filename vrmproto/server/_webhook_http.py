"""The webhooks' HTTP/1.1 client (docs/events.md, "Webhooks"): POSTs to one URL over kept-alive
connections, each request one write, each answer read by the sans-IO
:class:`vrmproto._http1.ResponseReader` (the agent's client reads its answers with it too),
which drops the bodies here: a webhook needs only the status.

Why not aiohttp's client, which the rest of the package uses: a webhook POST is one small body
and a status to read, many times a second, on the event loop that also accepts the customers'
messages. aiohttp's client spends ~165 µs of CPU per such POST (building its request and
response objects, headers as multidicts, the payload, the connector's bookkeeping) where the
write and the read themselves take ~55 µs; at two events per accepted message that was most of
the feed's cost (bench/events.py). This client does only what a webhook needs:

- one URL (``http`` or ``https``; user info in it becomes ``Authorization: Basic``), no proxy
  (as aiohttp's default session: it ignores the environment's), no cookies;
- connections kept alive and reused, last used first; one idle longer than ``idle_s`` is closed
  rather than reused (a receiver closes idle connections too, at its keep-alive timeout);
- a POST on a reused connection that the receiver closed before any byte of its answer is sent
  once more on a new connection (a webhook POST may be repeated: receivers de-duplicate by
  ``webhook-id``), so a keep-alive race is not a failed attempt;
- the answer framed as RFC 9112 §6.3 says (no body for 1xx, 204, 304; chunked; Content-Length;
  else until the connection closes), its body read and dropped, interim 1xx answers skipped;
- a redirect is not followed: it is an answer that is not 2xx (a failure, retried); its
  ``Location`` is kept, for the failure to name.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import math
import ssl
import time
from collections.abc import Callable
from urllib.parse import quote, unquote, urlsplit

from vrmproto._http1 import MalformedResponse, Response, ResponseReader
from vrmproto._http_connection import ClientConnection

__all__ = ["HTTPError", "Poster", "Status", "retry_after_s"]


class Status(int):
    """An answer's status code; ``location``: a redirect's ``Location``, else None;
    ``retry_after_s``: how long a 429's or 503's ``Retry-After`` asks to wait, else None."""

    location: str | None = None
    retry_after_s: float | None = None

    @classmethod
    def of(cls, answer: Response, now_s: float | None = None) -> Status:
        status = cls(answer.status)
        for name, value in answer.headers:  # the reader keeps no other field
            if name == "location":
                status.location = value
            elif name == "retry-after":
                status.retry_after_s = retry_after_s(value, time.time() if now_s is None
                                                     else now_s)  # fmt: skip
        return status


def retry_after_s(value: str, now_s: float) -> float | None:
    """A ``Retry-After`` value in seconds from ``now_s`` (RFC 9110 §10.2.3: a number of
    seconds, or an HTTP date; one past is no wait); None when it is neither."""
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(min(int(value[:12]), 10**9))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_s)


class HTTPError(Exception):
    """An answer that is not HTTP/1.1 (RFC 9112), or a connection lost before its end."""


_PCHARS = "/%:@!$&'()*+,;=~"  # kept as they are in a request target (RFC 3986 pchar, and /)


class _Connection(ClientConnection[Response]):
    """One connection: a POST written, its answer awaited (its body and fields dropped, but a
    redirect's ``location``)."""

    def __init__(self) -> None:
        super().__init__(ResponseReader(keep_body=False))

    def data_received(self, data: bytes) -> None:
        try:
            answer = self.reader.feed(data)
        except MalformedResponse as exc:
            self.settle(HTTPError(str(exc)))
            self.close()
            return
        if answer is not None:
            self.settle(answer)

    def eof_received(self) -> bool:
        try:
            answer = self.reader.eof()
        except MalformedResponse as exc:
            self.settle(HTTPError(str(exc)))
            return False
        closed = ConnectionResetError("the connection closed before an answer")
        self.settle(closed if answer is None else answer)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reader.keep_alive = False
        self.settle(ConnectionResetError(f"the connection was lost: {exc}" if exc else
                                         "the connection closed before an answer"))  # fmt: skip


class Poster:
    """POSTs to ``url`` over kept-alive connections (see the module docstring). ``timeout_s``
    bounds each attempt, connecting included; ``ssl_context``: for ``https`` (default: the
    system's trusted roots, host name checked)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        content_type: str = "application/json",
        user_agent: str = "vrmproto",
        idle_s: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < timeout_s < math.inf:  # no answer ever would hold the feed for ever
            raise ValueError(f"a webhook's timeout_s is a finite time, not {timeout_s}")
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"a webhook URL is http(s)://host/…, not {url!r}")
        self.host = parsed.hostname.encode("idna").decode("ascii")
        self.tls = parsed.scheme == "https"
        default = 443 if self.tls else 80
        self.port = parsed.port or default
        self.timeout_s = timeout_s
        self.idle_s = idle_s
        self.clock = clock
        self._ssl = ssl_context
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != default:
            host += f":{self.port}"
        target = quote(parsed.path or "/", safe=_PCHARS)
        if parsed.query:
            target += "?" + quote(parsed.query, safe=_PCHARS + "?")
        lines = [f"POST {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {user_agent}",
                 f"Content-Type: {content_type}"]  # fmt: skip
        if parsed.username is not None:
            pair = f"{unquote(parsed.username)}:{unquote(parsed.password or '')}".encode()
            lines.append("Authorization: Basic " + base64.b64encode(pair).decode())
        self._prefix = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()

    async def post(self, header_lines: bytes, body: bytes) -> Status:
        """POST ``body`` with the fixed header fields and ``header_lines`` (each ending CRLF);
        the answer's status (with a redirect's ``location``). Raises OSError
        (ConnectionError), :class:`HTTPError` or TimeoutError when there is none."""
        request = b"%s%sContent-Length: %d\r\n\r\n%s" % (self._prefix, header_lines, len(body),
                                                          body)  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while True:
            conn = self._take()
            reused = conn is not None
            if conn is None:
                async with asyncio.timeout_at(deadline):
                    conn = await self._open(loop)
            self._busy.add(conn)
            try:
                answer = await conn.send(request, loop, deadline)
            except BaseException as exc:
                conn.close()
                if isinstance(exc, ConnectionError) and reused and not conn.reader.started:
                    continue  # the receiver had closed it, idle: once more, on a new one
                raise
            finally:
                self._busy.discard(conn)
            self._release(conn)
            return Status.of(answer)

    def _take(self) -> _Connection | None:
        now = self.clock()
        while self._idle:
            conn = self._idle.pop()
            if not conn.lost and conn.reader.keep_alive and now - conn.used < self.idle_s:
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection) -> None:
        if conn.lost or not conn.reader.keep_alive:
            conn.close()
            return
        conn.used = self.clock()
        self._idle.append(conn)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        context = None
        if self.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        _, conn = await loop.create_connection(
            _Connection, self.host, self.port, ssl=context,
            server_hostname=self.host if context is not None else None,
        )  # fmt: skip
        return conn

    async def close(self) -> None:
        """Close every connection."""
        for conn in (*self._idle, *self._busy):
            conn.close()
        self._idle.clear()
        self._busy.clear()
        await asyncio.sleep(0)  # let the transports' close callbacks run
