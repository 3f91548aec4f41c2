"""The webhooks' HTTP/1.1 client (docs/events.md, "Webhooks"): POSTs to one URL over kept-alive
connections, each request one write, each answer read by a sans-IO :class:`ResponseReader`.

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
- a redirect is not followed: it is an answer that is not 2xx (a failure, retried).
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import quote, unquote, urlsplit

__all__ = ["HTTPError", "Poster", "ResponseReader"]


class HTTPError(Exception):
    """An answer that is not HTTP/1.1 (RFC 9112), or a connection lost before its end."""


_STATUS = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: [^\r\n]*)?")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PCHARS = "/%:@!$&'()*+,;=~"  # kept as they are in a request target (RFC 3986 pchar, and /)
MAX_HEAD = 65_536  # bytes of a status line and its header fields
MAX_LINE = 4_096  # bytes of a chunk-size line or a trailer field

# The reader's states: the head, a body of known length, chunks, until the connection closes.
_HEAD, _LENGTH, _SIZE, _CHUNK, _CRLF, _TRAILER, _CLOSE, _DONE = range(8)


class ResponseReader:
    """Sans-IO: the bytes one connection receives in, each answer's status out, once its end is
    read (RFC 9112 §6.3). Raises :class:`HTTPError` for anything malformed; the connection is
    then useless. The client never pipelines, so a byte after an answer is an error too."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = _HEAD
        self._left = 0
        self.status = 0
        self.keep_alive = True  # whether the connection may carry another request
        self.started = False  # whether any byte of the current answer arrived

    def feed(self, data: bytes) -> int | None:
        """Take ``data``; the status once the current answer is complete, else None."""
        if data:
            self.started = True
            self._buf += data
        buf = self._buf
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise HTTPError("an answer's head is too long")
                    return None
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._head(head)
            elif state in (_LENGTH, _CHUNK):
                n = min(self._left, len(buf))
                del buf[:n]
                self._left -= n
                if self._left:
                    return None
                self._state = _DONE if state == _LENGTH else _CRLF
            elif state in (_SIZE, _TRAILER):
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_LINE:
                        raise HTTPError("a chunk line is too long")
                    return None
                line = bytes(buf[:end])
                del buf[: end + 2]
                if state == _TRAILER:
                    if not line:
                        self._state = _DONE
                    continue
                size = line.split(b";", 1)[0].strip(b" \t")
                if not _HEX.fullmatch(size):
                    raise HTTPError("a chunk size is not hexadecimal")
                self._left = int(size, 16)
                self._state = _CHUNK if self._left else _TRAILER
            elif state == _CRLF:
                if len(buf) < 2:
                    return None
                if buf[:2] != b"\r\n":
                    raise HTTPError("a chunk does not end with CRLF")
                del buf[:2]
                self._state = _SIZE
            elif state == _CLOSE:
                buf.clear()
                return None
            else:  # _DONE
                if buf:
                    raise HTTPError("bytes after the answer")
                self._state = _HEAD
                self.started = False
                return self.status

    def eof(self) -> int | None:
        """The connection closed: the status if that ended the answer (one framed by the close),
        None if no byte of an answer had come; HTTPError if it cut one short."""
        self.keep_alive = False
        if self._state == _CLOSE:
            self._state = _HEAD
            self.started = False
            return self.status
        if self.started:
            raise HTTPError("the connection closed in the middle of an answer")
        return None

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        m = _STATUS.fullmatch(lines[0])
        if m is None:
            raise HTTPError("not an HTTP/1.x status line")
        minor, status = m.group(1), int(m.group(2))
        length: int | None = None
        chunked = False
        coded = False  # a Transfer-Encoding was given
        close = minor == b"0"
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):  # also refuses obs-fold (RFC 9112 §5.2)
                raise HTTPError("a malformed header field")
            name = name.lower()
            value = value.strip(b" \t")
            if name == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise HTTPError("a malformed Content-Length")
                length = int(value)
            elif name == b"transfer-encoding":
                coded = True
                chunked = value.rsplit(b",", 1)[-1].strip(b" \t").lower() == b"chunked"
            elif name == b"connection":
                tokens = {t.strip(b" \t").lower() for t in value.split(b",")}
                if b"close" in tokens:
                    close = True
                elif minor == b"0" and b"keep-alive" in tokens:
                    close = False
        if status < 200:
            if status == 101:
                raise HTTPError("a protocol switch nobody asked for")
            return  # an interim answer (§15.2 of RFC 9110): the real one follows
        self.status = status
        if coded and length is not None:
            close = True  # both: the coding wins, and the connection is not to be trusted after
        if status in (204, 304):
            self._state = _DONE
        elif coded:
            self._state = _SIZE if chunked else _CLOSE
        elif length is not None:
            self._left = length
            self._state = _LENGTH if length else _DONE
        else:
            self._state = _CLOSE
        if self._state == _CLOSE:
            close = True
        self.keep_alive = not close


class _Connection(asyncio.Protocol):
    """One connection: a request written, its answer awaited."""

    def __init__(self) -> None:
        self.reader = ResponseReader()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.lost = False
        self.used = 0.0  # monotonic time it was last released

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an asyncio.Transport subclass (uvloop's is not).
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        try:
            status = self.reader.feed(data)
        except HTTPError as exc:
            self._settle(exc)
            self.close()
            return
        if status is not None:
            self._settle(status)

    def eof_received(self) -> bool:
        try:
            status = self.reader.eof()
        except HTTPError as exc:
            self._settle(exc)
            return False
        closed = ConnectionResetError("the connection closed before an answer")
        self._settle(closed if status is None else status)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reader.keep_alive = False
        self._settle(ConnectionResetError(f"the connection was lost: {exc}" if exc else
                                          "the connection closed before an answer"))  # fmt: skip

    def _settle(self, outcome: int | BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            if not isinstance(outcome, BaseException):  # an answer nobody asked for
                self.reader.keep_alive = False
            return
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)

    def send(self, request: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[int]:
        assert self.transport is not None
        self.waiter = waiter = loop.create_future()
        self.transport.write(request)
        return waiter

    def expire(self) -> None:
        """No answer in time: the attempt fails, and the connection (its answer may still come)
        is closed."""
        self._settle(TimeoutError("no answer in time"))
        self.close()

    def close(self) -> None:
        self.reader.keep_alive = False
        if self.transport is not None:
            self.transport.close()


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

    async def post(self, header_lines: bytes, body: bytes) -> int:
        """POST ``body`` with the fixed header fields and ``header_lines`` (each ending CRLF);
        the answer's status. Raises OSError (ConnectionError), :class:`HTTPError` or
        TimeoutError when there is none."""
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
            timer = loop.call_at(deadline, conn.expire)  # lighter than a timeout context
            try:
                status = await conn.send(request, loop)
            except BaseException as exc:
                conn.close()
                if isinstance(exc, ConnectionError) and reused and not conn.reader.started:
                    continue  # the receiver had closed it, idle: once more, on a new one
                raise
            finally:
                timer.cancel()
                self._busy.discard(conn)
            self._release(conn)
            return status

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
