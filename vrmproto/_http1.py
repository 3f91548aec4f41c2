"""Sans-IO: an HTTP/1.1 client's view of the bytes a connection receives (RFC 9112), one answer
at a time, with its status, header fields and body, the body capped.

The customer's agent posts each message of a relationship to the peer's inbox (spec §12.3) over
a kept-alive connection of that relationship's own (§11.6-3); :mod:`vrmproto.client._http_conn`
is the I/O around this reader. The vendor's webhook client
(:mod:`vrmproto.server._webhook_http`) reads its receivers' answers with it too, their bodies
dropped (``keep_body=False``). It is here, apart from any socket or event loop, so that it can
be fed arbitrary bytes in arbitrary pieces by tests (``tests/test_http1.py``), the way h11 is.

The error contract: :meth:`ResponseReader.feed` and :meth:`ResponseReader.eof` return a
:class:`Response`, or None while one is incomplete, or raise :class:`MalformedResponse` (the
bytes are not an HTTP/1.1 answer, or stop short of the end of one) or :class:`ResponseTooLarge`
(the body, as declared, as received, or once decoded, exceeds the cap). Anything else raised is
a bug. After an error the connection is useless and is to be closed.

Limits (keyword arguments of :class:`ResponseReader`; every one a :class:`MalformedResponse`
past it, but the body's cap, :class:`ResponseTooLarge`): a status line and its header fields
at most ``max_head`` bytes (:data:`MAX_HEAD`); a chunk-size line or a trailer field at most
:data:`MAX_LINE`; an answer's chunk extensions and trailer fields at most ``max_trailer`` bytes
together (:data:`MAX_TRAILER`); at most ``max_interim`` interim answers before one final answer
(:data:`MAX_INTERIM`). So whatever a peer sends, the reader works through at most a few times
the body's cap before it answers or fails, not bytes without end until the deadline.

What an answer is, as RFC 9112 §6.3 frames it: no body for 1xx, 204 and 304; interim 1xx
answers skipped (101 refused: nobody asked to switch); ``Transfer-Encoding`` ending in
``chunked``: chunks and trailer fields (dropped); another transfer coding, or neither header:
the body runs until the connection closes; else ``Content-Length``. A body in the ``gzip`` or
``deflate`` content coding (which the client does not ask for, but a proxy may apply anyway) is
decoded, the cap applying to what it decodes to as well. The client never pipelines: a byte
after an answer, before the next request, is an error. Answers to ``HEAD`` are not handled: the
client does not send it.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

__all__ = ["MAX_HEAD", "MAX_INTERIM", "MAX_LINE", "MAX_TRAILER", "IncompleteResponse",
           "MalformedResponse", "Response", "ResponseReader", "ResponseTooLarge"]  # fmt: skip

MAX_HEAD = 65_536  #: bytes of a status line and its header fields
MAX_LINE = 4_096  #: bytes of a chunk-size line or a trailer field
MAX_TRAILER = 65_536  #: bytes of one answer's chunk extensions and trailer fields, together
MAX_INTERIM = 16  #: interim (1xx) answers before one final answer

_STATUS = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: [^\r\n]*)?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")  # field-value: no CR, LF, NUL or controls
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")

#: What a status line and its fields say (:func:`_read_head`): status, fields, Content-Length,
#: whether a Transfer-Encoding was given, whether it ends in chunked, whether the connection
#: closes after the answer, and the content coding.
_Head = tuple[int, tuple[tuple[str, str], ...], "int | None", bool, bool, bool, bytes]

# The reader's states: the head, a body of known length, a chunk-size line, a chunk's data, the
# CRLF after it, trailer fields, a body that runs until the connection closes.
_HEAD, _LENGTH, _SIZE, _CHUNK, _CRLF, _TRAILER, _CLOSE = range(7)


class MalformedResponse(Exception):  # noqa: N818 -- named for what happened, as httpx
    """Bytes that are not an HTTP/1.1 answer (RFC 9112), or an answer cut short."""


class IncompleteResponse(MalformedResponse):
    """The connection closed after some of an answer had come, before its end."""


class ResponseTooLarge(Exception):  # noqa: N818 -- named for what happened
    """An answer's body is longer than the reader's cap: ``declared`` is its Content-Length
    when that was already too long (None when the bytes themselves went over)."""

    def __init__(self, status: int, cap: int, declared: int | None = None) -> None:
        self.status = status
        self.cap = cap
        self.declared = declared
        what = f"{declared} bytes" if declared is not None else f"more than {cap} bytes"
        super().__init__(f"an answer of {what}; the limit is {cap}")


@dataclass(frozen=True, slots=True)
class Response:
    """One whole answer. ``headers`` in the order received, names lower-cased, values as
    Latin-1 text (RFC 9110 §5.5); ``keep_alive``: whether the connection may carry another
    request after it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    keep_alive: bool


class ResponseReader:
    """The answers one connection receives, in order (see the module docstring).

    :meth:`start` before each request sets the cap on its answer's body; then :meth:`feed`
    every byte received, and :meth:`eof` when the peer closes. ``started`` tells whether any
    byte of the current answer has come (a request on a kept-alive connection that the peer
    closed before that may be sent again on a new one); ``keep_alive`` turns False once the
    connection can carry no further request.
    """

    __slots__ = ("_body", "_buf", "_cap", "_coding", "_extra", "_headers", "_interim", "_keep",
                 "_left", "_seen", "_state", "_status", "keep_alive", "max_head", "max_interim",
                 "max_trailer", "started")  # fmt: skip

    def __init__(self, *, cap: int = 4 * 1024 * 1024, max_head: int = MAX_HEAD,
                 max_trailer: int = MAX_TRAILER, max_interim: int = MAX_INTERIM,
                 keep_body: bool = True) -> None:  # fmt: skip
        """``keep_body`` False: every body is read and dropped, whatever its length (no cap,
        no decoding), and the fields are checked but not kept (:attr:`Response.body` empty,
        :attr:`Response.headers` too but for a redirect's ``location`` and a 429's or 503's
        ``retry-after``) — for a client that needs only the status, where a redirect points
        and when to try again. The
        limits: see the module's docstring."""
        self.max_head = max_head
        self.max_trailer = max_trailer
        self.max_interim = max_interim
        self._extra = 0  # bytes of chunk extensions and trailer fields of the current answer
        self._interim = 0  # interim answers before the current one
        self._keep = keep_body
        self._buf = bytearray()
        self._body = bytearray()
        self._cap = cap
        self._state = _HEAD
        self._left = 0
        self._seen = 0  # bytes of the buffer already searched for the end of a line or head
        self._status = 0
        self._headers: tuple[tuple[str, str], ...] = ()
        self._coding = b""
        self.keep_alive = True
        self.started = False

    def start(self, cap: int) -> None:
        """A request is about to be sent: its answer's body may be at most ``cap`` bytes."""
        self._cap = cap
        self.started = False

    def feed(self, data: bytes) -> Response | None:
        """Take ``data``; the answer once it is complete, else None."""
        if data:
            self.started = True
            self._buf += data
        buf = self._buf
        while True:
            state = self._state
            if state == _HEAD:
                if not buf:
                    return None
                end = buf.find(b"\r\n\r\n", self._seen)
                if end < 0 or end > self.max_head:
                    if len(buf) > self.max_head:
                        raise MalformedResponse("an answer's head is too long")
                    self._seen = max(len(buf) - 3, 0)  # bytes trickling in: no search twice
                    return None
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._seen = 0
                self._head(head)
            elif state in (_LENGTH, _CHUNK):
                n = min(self._left, len(buf))
                if n:
                    if self._keep:
                        self._body += buf[:n]
                    del buf[:n]
                    self._left -= n
                if self._left:
                    return None
                if state == _LENGTH:
                    return self._done()
                self._state = _CRLF
            elif state in (_SIZE, _TRAILER):
                line = self._line(buf)
                if line is None:
                    return None
                if state == _SIZE:
                    self._size(line)
                elif not line:
                    return self._done()
                else:
                    _field(line)  # a trailer field: checked, then dropped
                    self._more(len(line) + 2)
            elif state == _CRLF:
                if len(buf) < 2:
                    return None
                if buf[:2] != b"\r\n":
                    raise MalformedResponse("a chunk does not end with CRLF")
                del buf[:2]
                self._state = _SIZE
            else:  # _CLOSE: everything until the connection closes
                if self._keep:
                    self._body += buf
                buf.clear()
                if len(self._body) > self._cap:
                    raise ResponseTooLarge(self._status, self._cap)
                return None

    def eof(self) -> Response | None:
        """The peer closed the connection: the answer if that ended it (one framed by the
        close), None if no byte of an answer had come; :class:`IncompleteResponse` if it cut
        one short."""
        self.keep_alive = False
        if self._state == _CLOSE:
            return self._done()
        if self.started:
            raise IncompleteResponse("the connection closed in the middle of an answer")
        return None

    # -- the parts ---------------------------------------------------------------------------

    def _line(self, buf: bytearray) -> bytes | None:
        """A chunk-size line or trailer field taken from ``buf``, None until its CRLF came."""
        end = buf.find(b"\r\n", self._seen)
        if end < 0 or end > MAX_LINE:
            if len(buf) > MAX_LINE:
                raise MalformedResponse("a chunk line is too long")
            self._seen = max(len(buf) - 1, 0)  # bytes trickling in: no search twice
            return None
        line = bytes(buf[:end])
        del buf[: end + 2]
        self._seen = 0
        return line

    def _size(self, line: bytes) -> None:
        """A chunk-size line (its extensions ignored): the chunk's data next, or the trailer."""
        size = line.split(b";", 1)[0].strip(b" \t")
        if not _HEX.fullmatch(size):
            raise MalformedResponse("a chunk size is not hexadecimal")
        if len(line) != len(size):  # an extension (or spaces): counted with the trailer
            self._more(len(line) - len(size))
        self._left = int(size, 16)
        if self._keep and len(self._body) + self._left > self._cap:
            raise ResponseTooLarge(self._status, self._cap)
        self._state = _CHUNK if self._left else _TRAILER

    def _more(self, n: int) -> None:
        """``n`` more bytes of chunk extensions or trailer fields in the current answer."""
        self._extra += n
        if self._extra > self.max_trailer:
            raise MalformedResponse(f"more than {self.max_trailer} bytes of chunk extensions "
                                    "and trailer fields")  # fmt: skip

    def _head(self, head: bytes) -> None:
        """Read a status line and its fields, and set the state that reads the body."""
        key = (head, self._keep)
        read = _READ.get(key)
        if read is None:
            read = _read_head(head, self._keep)
            if read is None:  # an interim answer (RFC 9110 §15.2): the real one follows
                self._interim += 1
                if self._interim > self.max_interim:
                    raise MalformedResponse(f"more than {self.max_interim} interim answers")
                return
            if len(head) <= _READ_HEAD_MAX:  # a hostile peer's large heads are read each time
                if len(_READ) >= _READ_MAX:
                    _READ.clear()
                _READ[key] = read
        status, fields, length, coded, chunked, close, coding = read
        self._interim = self._extra = 0
        self._status = status
        self._headers = fields
        self._coding = coding
        self._body = bytearray()
        if self._keep and not coded and length is not None and length > self._cap:
            raise ResponseTooLarge(status, self._cap, declared=length)
        if coded:
            self._state = _SIZE if chunked else _CLOSE
        elif length is not None:
            self._left = length
            self._state = _LENGTH
        else:
            self._state = _CLOSE
        if close:
            self.keep_alive = False

    def _done(self) -> Response:
        """The current answer is whole: hand it out, and wait for the next one."""
        if self._buf:
            raise MalformedResponse("bytes after the answer")
        body = bytes(self._body)
        if self._keep and self._coding and self._coding != b"identity":
            body = _decode(self._coding, body, self._status, self._cap)
        self._state = _HEAD
        self._body = bytearray()
        self.started = False
        return Response(self._status, self._headers, body, self.keep_alive)


#: What :func:`_read_head` concluded of each head lately read, by the head's bytes and whether
#: bodies are kept: a connection's answers mostly repeat their head but for the length and the
#: date, and reading the fields again cost more than the rest of taking an answer (#12).
_READ: dict[tuple[bytes, bool], _Head] = {}
_READ_MAX = 256
#: Only heads this short are kept (a vendor's answers have ~200 bytes): at most ~0.5 MB of them,
#: where heads of up to :data:`MAX_HEAD` could pin 16 MB.
_READ_HEAD_MAX = 2048


def _field(line: bytes) -> tuple[bytes, bytes]:
    """A header or trailer field's name, lower-cased, and value (RFC 9112 §5)."""
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):  # also refuses obs-fold (RFC 9112 §5.2)
        raise MalformedResponse("a malformed header field")
    value = value.strip(b" \t")
    if not _VALUE.fullmatch(value):
        raise MalformedResponse("a control character in a header field")
    return name.lower(), value


#: Answers whose ``Retry-After`` says when to try again (RFC 9110 §10.2.3, RFC 6585 §4).
_LATER = frozenset({429, 503})


def _read_head(head: bytes, keep: bool) -> _Head | None:
    """What a status line and its fields say (``keep``: the fields are kept): status, fields,
    Content-Length, whether a Transfer-Encoding was given and ends in chunked, whether the
    connection closes after the answer, the content coding — None for an interim answer."""
    lines = head.split(b"\r\n")
    m = _STATUS.fullmatch(lines[0])
    if m is None:
        raise MalformedResponse("not an HTTP/1.x status line")
    minor, status = m.group(1), int(m.group(2))
    length: int | None = None
    chunked = coded = False  # coded: a Transfer-Encoding was given
    close = minor == b"0"
    coding = b""
    fields = []
    redirect = 300 <= status < 400  # its Location is kept even where fields are not
    later = status in _LATER  # and a "not now"'s Retry-After
    for line in lines[1:]:
        name, value = _field(line)
        if keep or (redirect and name == b"location") or (later and name == b"retry-after"):
            fields.append((name.decode("ascii"), value.decode("latin-1")))
        if name == b"content-length":
            if not value.isdigit() or len(value) > 19 or (length is not None and
                                                          int(value) != length):
                raise MalformedResponse("a malformed Content-Length")
            length = int(value)
        elif name == b"transfer-encoding":
            coded = True
            chunked = value.rsplit(b",", 1)[-1].strip(b" \t").lower() == b"chunked"
        elif name == b"content-encoding":
            coding = value.lower()
        elif name == b"connection":
            tokens = {t.strip(b" \t").lower() for t in value.split(b",")}
            if b"close" in tokens:
                close = True
            elif minor == b"0" and b"keep-alive" in tokens:
                close = False
    if status < 200:
        if status == 101:
            raise MalformedResponse("a protocol switch nobody asked for")
        return None
    if coded and length is not None:
        close = True  # both: the coding wins, and the connection is not to be trusted after
    if status in (204, 304):
        length, coded = 0, False
    if (coded and not chunked) or (not coded and length is None):
        close = True  # the body runs until the connection closes
    return status, tuple(fields), length, coded, chunked, close, coding


def _decode(coding: bytes, body: bytes, status: int, cap: int) -> bytes:
    """``body`` in the content coding ``coding`` decoded, at most ``cap`` bytes of it. Codings
    other than gzip and deflate are left as they are (as aiohttp's client leaves them): the
    caller then finds bytes it cannot read."""
    if coding in (b"gzip", b"x-gzip"):
        wbits = [16 + zlib.MAX_WBITS]
    elif coding == b"deflate":  # meant as zlib-wrapped (RFC 9110 §8.4.1.2); raw seen in the wild
        wbits = [zlib.MAX_WBITS, -zlib.MAX_WBITS]
    else:
        return body
    for i, bits in enumerate(wbits):
        d = zlib.decompressobj(bits)
        try:
            out = d.decompress(body, cap + 1)
        except zlib.error:
            if i + 1 < len(wbits):
                continue
            raise MalformedResponse(f"a body that is not {coding.decode()}") from None
        if len(out) > cap:
            raise ResponseTooLarge(status, cap)
        if not d.eof or d.unused_data:
            raise MalformedResponse(f"a {coding.decode()} body cut short or followed by bytes")
        return out
    raise AssertionError("unreachable")  # pragma: no cover
