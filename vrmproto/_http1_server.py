"""Sans-IO: the requests an HTTP/1.1 server connection receives (RFC 9112), in the plain shape
an endpoint's own clients send them — or a typed "not mine" for anything else.

The reference vendor's hot routes (``POST <inbox>``, ``POST <history>``, ``GET
/.well-known/vrm``, spec §12.2) are served by a lean connection
(:mod:`vrmproto.server._lean`) that reads its requests with this reader. The reader is
deliberately narrow: it takes only what it can frame without doubt — an ``HTTP/1.1`` request
line in origin form, at most :data:`MAX_FIELDS` header fields of visible ASCII, none repeated,
one ``Host``, no ``Transfer-Encoding``, ``Expect`` or ``Upgrade``, a plain ``Content-Length``
if any, and the whole body already received. Everything else — a chunked body, a body still
arriving, an obsolete line folding, a control character, HTTP/1.0, a request line too long — is
:class:`Unhandled`, as soon as the bytes received show it (a head of bare-LF lines does not
wait for the CRLF CRLF that will not come): the connection's bytes, from the start of that
request, go to a full HTTP server (aiohttp), which answers exactly as it would have had it read
them from the start. So this reader never decides that a request is malformed; it only decides
that a request is plainly well formed.

The error contract: :meth:`RequestReader.next` returns a :class:`Request`, or None while the
head of the next one is incomplete, or raises :class:`Unhandled`. Anything else raised is a
bug (``tests/test_http1_server.py`` feeds it arbitrary bytes in arbitrary pieces).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from vrmproto._quick import quick_new

__all__ = ["MAX_FIELDS", "MAX_HEAD", "Request", "RequestReader", "Unhandled", "valid_host"]

#: Header fields of a request this reader takes; more: :class:`Unhandled` (aiohttp's own cap,
#: which then answers, is 128).
MAX_FIELDS = 64
#: Bytes of a request head (request line and fields) this reader waits for; more without the
#: blank line that ends it: :class:`Unhandled`.
MAX_HEAD = 16_384

# The head in one match. Every quantifier is possessive, and no two adjacent parts can match
# the same bytes, so that matching is linear in the head's length whatever it holds (a field
# of spaces then a control character took quadratic time with plain ``*``). A field line is a
# token, a colon, then visible ASCII, spaces and tabs: the field value (RFC 9110 §5.5, without
# obs-text) with the optional whitespace around it, which :meth:`RequestReader.next` strips.
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]++"
_FIELD = _TOKEN + rb":[\x21-\x7e \t]*+\r\n"
_HEAD = re.compile(rb"(" + _TOKEN + rb") (/[\x21-\x7e]*+) HTTP/1\.1\r\n((?:" + _FIELD + rb")*+)")
_DIGITS = re.compile(rb"[0-9]{1,18}")
#: A byte no plain head holds (a control or non-ASCII byte), a bare LF, or a CR not before LF:
#: an incomplete head with one is already not plain (aiohttp answers a head of bare-LF lines).
_NOT_PLAIN = re.compile(rb"[^\t\r\n\x20-\x7e]|(?<!\r)\n|\r(?=[^\n])")
#: Fields whose presence alone means the request is not one this reader frames.
_REFUSED = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
_CONNECTION_TOKENS = {b"keep-alive": False, b"close": True}
#: A ``Host`` field value: ``uri-host [":" port]`` (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP
#: literal in brackets (an IPv6 address, checked below, with a zone as RFC 6874 writes it, or
#: an IPvFuture), or a reg-name — but for the comma, which no host name holds and which is
#: how an intermediary joins two ``Host`` lines into one (RFC 9110 §5.3), refused as repeated
#: ones are (RFC 9112 §3.2).
_HOST = re.compile(
    rb"(?:\[(?P<ip6>[0-9A-Fa-f:.]++)(?:%25[0-9A-Za-z._~-]++)?\]"
    rb"|\[[vV][0-9A-Fa-f]++\.[0-9A-Za-z._~!$&'()*+;=:-]++\]"
    rb"|(?:[0-9A-Za-z._~!$&'()*+;=-]|%[0-9A-Fa-f]{2})*+)(?::[0-9]*+)?")


def valid_host(value: bytes) -> bool:
    """Whether ``value`` (a ``Host`` field's, without the whitespace around it) is one host and
    maybe a port, as RFC 9112 §3.2 requires of a request; an empty one is (a target without an
    authority, RFC 9110 §7.2). Otherwise a server answers 400 (spec §12.4-5)."""
    valid = _HOSTS.get(value)
    if valid is None:
        m = _HOST.fullmatch(value)
        valid = m is not None
        if m is not None and (ip6 := m.group("ip6")) is not None:
            try:
                ipaddress.IPv6Address(ip6.decode("ascii"))
            except ValueError:
                valid = False
        if len(_HOSTS) >= _HOSTS_MAX:
            _HOSTS.clear()
        _HOSTS[value] = valid
    return valid


#: Host values seen (clients send the same one time after time), and whether each is valid;
#: emptied when full.
_HOSTS: dict[bytes, bool] = {}
_HOSTS_MAX = 256


class Unhandled(Exception):  # noqa: N818 -- named for what it means: not this reader's
    """The next request is not one this reader frames (see the module docstring): the
    connection's remaining bytes (:meth:`RequestReader.rest`) are for a full HTTP server."""


@dataclass(frozen=True, slots=True)
class Request:
    """One whole request. ``fields``: name (lower-cased) and value, in the order received;
    ``close``: the client asked for the connection to close after the answer; ``body_type``:
    the ``Content-Type`` (lower-cased) of a body whose bytes are the representation itself —
    framed by a ``Content-Length``, without a ``Content-Encoding`` — else None (no such field,
    no length, or a coded body)."""

    method: bytes
    target: bytes
    fields: tuple[tuple[bytes, bytes], ...]
    body: bytes
    close: bool
    body_type: bytes | None

    def values(self, name: str) -> list[str]:
        """The values of the fields named ``name`` (any case), as text: at most one, since
        the reader takes no request with a repeated field."""
        key = name.lower().encode("latin-1")
        return [value.decode("latin-1") for k, value in self.fields if k == key]

    def field(self, name: bytes) -> bytes | None:
        """The value of the field ``name`` (lower case), the first if repeated; None if absent."""
        for key, value in self.fields:
            if key == name:
                return value
        return None


_new_request = quick_new(Request)  # one per request: without the frozen __init__'s detour


class RequestReader:
    """The requests of one connection, in order: :meth:`feed` the bytes received, then take
    requests with :meth:`next` until it returns None. ``max_line``: the longest request line
    or header field line taken (longer: :class:`Unhandled`); ``max_body``: the longest
    ``Content-Length`` taken."""

    __slots__ = ("_buf", "_last", "_pos", "_seen", "max_body", "max_line")

    def __init__(self, *, max_line: int, max_body: int) -> None:
        self.max_line = max_line
        self.max_body = max_body
        # The bytes received: a request is taken by moving _pos past it, never by copying what
        # follows it (pipelined requests would make that quadratic); what was taken is dropped
        # when more bytes come.
        self._buf: bytes | bytearray = b""
        self._pos = 0  # where the next request starts in _buf
        self._last = 0  # where the last request taken started (unread)
        self._seen = 0  # up to where _buf was searched for the end of a head

    def __len__(self) -> int:
        """Bytes received and not yet taken as part of a request."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        """Take bytes received."""
        if not data:
            return
        buf, pos = self._buf, self._pos
        if pos == len(buf):  # everything before was taken: no copy
            self._buf, self._pos, self._last, self._seen = data, 0, 0, 0
            return
        if pos or type(buf) is bytes:
            buf = bytearray(buf[pos:])
            self._seen = max(self._seen - pos, 0)
            self._pos = self._last = 0
        buf += data
        self._buf = buf

    def rest(self) -> bytes:
        """The bytes not yet taken as a request (from the start of the next one), emptied."""
        rest = bytes(self._buf[self._pos :])
        self._buf, self._pos, self._last, self._seen = b"", 0, 0, 0
        return rest

    def unread(self) -> None:
        """Put the request :meth:`next` just returned back, as if it had not been taken (its
        reader's caller found it is not one it serves after all)."""
        self._pos = self._seen = self._last

    def _incomplete(self, buf: bytes | bytearray, pos: int) -> None:
        """The head starting at ``pos`` has no end yet: Unhandled if it is already too long,
        or already holds what no plain head does (no use waiting for more)."""
        if len(buf) - pos > MAX_HEAD:
            raise Unhandled("the request head is too long")
        if _NOT_PLAIN.search(buf, max(self._seen, pos)) is not None:
            raise Unhandled("not a plain HTTP/1.1 request head")
        self._seen = max(len(buf) - 3, pos)  # bytes trickling in: no search twice

    def next(self) -> Request | None:
        """The next whole request; None while its head is incomplete; :class:`Unhandled` if
        it is not a request this reader takes (its bytes are all left in :meth:`rest`)."""
        buf, pos = self._buf, self._pos
        if pos == len(buf):
            return None
        end = buf.find(b"\r\n\r\n", max(self._seen, pos))
        if end < 0:
            self._incomplete(buf, pos)
            return None
        if end - pos > MAX_HEAD:
            raise Unhandled("the request head is too long")
        head = bytes(buf[pos:end])
        parsed = _HEADS.get(head)
        if parsed is None:
            parsed = _parse_head(head)
            if len(head) <= _HEADS_KEPT_BYTES and _SECRET.isdisjoint(f[0] for f in parsed[2]):
                if len(_HEADS) >= _HEADS_MAX:
                    _HEADS.clear()
                _HEADS[head] = parsed
        method, target, fields, length, close, longest, body_type = parsed
        if longest > self.max_line:
            raise Unhandled("a line longer than this reader takes")
        if length > self.max_body:
            raise Unhandled("a body longer than this reader takes")
        start = end + 4
        stop = start + max(length, 0)
        if len(buf) < stop:
            raise Unhandled("the body has not all arrived")
        self._last, self._pos, self._seen = pos, stop, stop
        return _new_request(method, target, fields, bytes(buf[start:stop]), close, body_type)


#: A head's reading: method, target, fields, Content-Length (-1: none), close, the length of
#: its longest line (checked against each reader's ``max_line``), and the request's body_type.
_Head = tuple[bytes, bytes, tuple[tuple[bytes, bytes], ...], int, bool, int, bytes | None]
#: Heads read before, by their bytes (the request line and fields, without the blank line).
#: A client sends the same head time after time, but for its Content-Length: reading one again
#: cost more than the rest of taking a request (#12). Only heads this reader takes, of at most
#: _HEADS_KEPT_BYTES, are kept (so at most ~1 MB); it is emptied when full. A head with
#: credentials (_SECRET) is never kept: they stay no longer than their request.
_HEADS: dict[bytes, _Head] = {}
_HEADS_MAX = 512
_HEADS_KEPT_BYTES = 2048
_SECRET = frozenset({b"authorization", b"proxy-authorization", b"cookie"})


def _parse_head(head: bytes) -> _Head:
    """The reading of a request head (the bytes before its blank line), or :class:`Unhandled`
    if it is not one a plain reader takes (see the module docstring)."""
    m = _HEAD.fullmatch(head + b"\r\n")
    if m is None:
        raise Unhandled("not a plain HTTP/1.1 request head")
    # each field line is a token, a colon and the value with OWS around (the match said so)
    first, past = m.span(3)
    lines = head[first : past - 2].split(b"\r\n") if past > first else []
    if len(lines) > MAX_FIELDS:
        raise Unhandled("too many header fields")
    length = -1
    close = False
    fields = []
    for line in lines:
        name, _, rest = line.partition(b":")
        fields.append((name.lower(), rest.strip(b" \t")))
    named = dict(fields)
    if len(named) != len(fields):
        raise Unhandled("a repeated field")  # aiohttp refuses some (Content-Type…)
    host = named.get(b"host")
    if not host:  # none, or an empty one (aiohttp decides)
        raise Unhandled("not one Host field")  # aiohttp refuses none (RFC 9112 §3.2)
    if not valid_host(host):
        raise Unhandled("a Host field that is not one host")  # answered 400 (RFC 9112 §3.2)
    if not _REFUSED.isdisjoint(named):
        raise Unhandled("a Transfer-Encoding, Expect or Upgrade field")
    value = named.get(b"content-length")
    if value is not None:
        if _DIGITS.fullmatch(value) is None:
            raise Unhandled("not one plain Content-Length")
        length = int(value)
    value = named.get(b"connection")
    if value is not None:
        asked = _CONNECTION_TOKENS.get(value.lower())
        if asked is None:
            raise Unhandled("a Connection field other than keep-alive or close")
        close = asked
    longest = max(len(line) for line in head.split(b"\r\n"))
    method, target, _ = m.groups()
    value = named.get(b"content-type")
    body_type = (value.lower() if value is not None and length >= 0
                 and b"content-encoding" not in named else None)  # fmt: skip
    return method, target, tuple(fields), length, close, longest, body_type
