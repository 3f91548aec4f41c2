"""The sans-IO HTTP/1.1 request reader of the lean server path (vrmproto/_http1_server.py).

Its contract: for any bytes in any pieces, a request, None (incomplete) or ``Unhandled`` —
nothing else; after ``Unhandled`` every byte from the start of that request is still there for
aiohttp. And it is narrow: every request it takes, aiohttp's own parser (the one the server
hands other requests to) reads the same, without an error, so that serving it on the lean path
cannot accept what aiohttp would have refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from unittest import mock

import pytest
from aiohttp.http_parser import HttpRequestParser
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vrmproto._http1_server import MAX_FIELDS, MAX_HEAD, Request, RequestReader, Unhandled

INBOX = b"/vrm/inbox"
POST = (
    b"POST /vrm/inbox HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/vnd.vrmproto+msgpack\r\nContent-Length: 5\r\n\r\nhello"
)
GET = b"GET /.well-known/vrm HTTP/1.1\r\nHost: x\r\n\r\n"

Outcome = Request | type[Unhandled] | None


def reader() -> RequestReader:
    return RequestReader(max_line=8190, max_body=1 << 16)


def read_all(data: bytes, cuts: Sequence[int] = ()) -> tuple[list[Request], Outcome, bytes]:
    """Feed ``data`` cut at ``cuts``, taking requests as they complete: the requests taken,
    how it ended (None: waiting for more; Unhandled), and the bytes left."""
    r = reader()
    taken: list[Request] = []
    start = 0
    for end in [*sorted(set(cuts)), len(data)]:
        r.feed(data[start:end])
        start = end
        try:
            while (got := r.next()) is not None:
                taken.append(got)
        except Unhandled:  # the rest of the bytes go to aiohttp as they come
            return taken, Unhandled, r.rest() + data[start:]
    return taken, None, r.rest()


def test_a_plain_post_is_read_with_its_fields_and_body() -> None:
    r = reader()
    r.feed(POST)
    got = r.next()
    assert got == Request(b"POST", INBOX, (
        (b"host", b"127.0.0.1"), (b"content-type", b"application/vnd.vrmproto+msgpack"),
        (b"content-length", b"5"),
    ), b"hello", close=False, body_type=b"application/vnd.vrmproto+msgpack")  # fmt: skip
    assert got.field(b"content-type") == b"application/vnd.vrmproto+msgpack"
    assert got.field(b"expect") is None
    assert r.next() is None
    assert len(r) == 0


def test_pipelined_requests_are_read_in_order_and_close_is_noted() -> None:
    closing = GET.replace(b"Host: x", b"Host: x\r\nConnection: Close")
    taken, end, rest = read_all(POST + GET + closing + POST[:20])
    assert [(t.method, t.close) for t in taken] == [(b"POST", False), (b"GET", False),
                                                     (b"GET", True)]  # fmt: skip
    assert end is None
    assert rest == POST[:20]


def test_unread_puts_the_request_back() -> None:
    r = reader()
    r.feed(GET + POST)
    first = r.next()
    assert first is not None
    r.unread()
    assert r.rest() == GET + POST


@pytest.mark.parametrize("data", [
    POST.replace(b"Content-Length: 5", b"Transfer-Encoding: chunked"),
    POST.replace(b"Content-Length: 5", b"Content-Length: 5\r\nContent-Length: 5"),
    POST.replace(b"Content-Length: 5", b"Content-Length: +5"),
    POST.replace(b"Content-Length: 5", b"Content-Length: 99999999"),  # over max_body
    POST.replace(b"Host: 127.0.0.1", b"Expect: 100-continue"),
    POST.replace(b"Host: 127.0.0.1", b"Connection: Upgrade\r\nUpgrade: h2c"),
    POST.replace(b"Host: 127.0.0.1", b"Host : 127.0.0.1"),  # space before the colon
    POST.replace(b"Host: 127.0.0.1", b"Host: 127.0.0.1\r\n folded"),  # obs-fold
    POST.replace(b"Host: 127.0.0.1", b"Host: 127\x00.0.0.1"),
    POST.replace(b"Host: 127.0.0.1", b"Host: caf\xc3\xa9"),  # obs-text: aiohttp decides
    POST.replace(b"HTTP/1.1", b"HTTP/1.0", 1),
    POST.replace(b"/vrm/inbox", b"http://x/vrm/inbox", 1),  # absolute form
    POST.replace(b"POST ", b"POST  ", 1),
    b"\r\n" + POST,  # an empty line first
    POST[:-1],  # the body still arriving
    POST.replace(b"Host: 127.0.0.1", b"X-Long: " + b"a" * 9000),
    POST.replace(b"Host: 127.0.0.1", b"\r\n".join(b"X-%d: 1" % i for i in range(MAX_FIELDS))),
    b"GET /" + b"a" * (MAX_HEAD + 10),  # a head that never ends
    # spaces then a control character: quadratic for a regular expression that backtracks
    POST.replace(b"Host: 127.0.0.1", b"Host: x\r\nX-A: " + b" " * 8000 + b"\x01"),
    POST.replace(b"Host: 127.0.0.1", b"Host: x\r\nX-A: a" + b" \t" * 4000 + b"\x01"),
], ids=["chunked", "two-lengths", "signed-length", "too-long-body", "expect", "upgrade",
        "space-before-colon", "obs-fold", "nul", "obs-text", "http-1.0", "absolute-form",
        "two-spaces", "leading-crlf", "body-incomplete", "long-line", "many-fields",
        "endless-head", "spaces-then-control", "ows-then-control"])  # fmt: skip
def test_anything_but_a_plain_request_is_unhandled_with_every_byte_kept(data: bytes) -> None:
    taken, end, rest = read_all(GET + data)
    assert [t.target for t in taken] == [b"/.well-known/vrm"]
    assert end is Unhandled
    assert rest == data


# -- any bytes, any pieces ---------------------------------------------------------------------


def _mostly(plain: list[bytes], odd: list[bytes]) -> st.SearchStrategy[bytes]:
    """One of ``plain`` four times in five, else one of ``odd``."""
    return st.sampled_from(plain * 4 * len(odd) + odd * len(plain))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Requests near the plain shape, some of them not plain at all."""
    method = draw(_mostly([b"POST", b"GET"], [b"PUT", b"G T", b""]))
    target = draw(_mostly([INBOX, b"/.well-known/vrm"], [b"/a?b=c", b"*", b"/\x7f"]))
    version = draw(_mostly([b"HTTP/1.1"], [b"HTTP/1.0", b"HTTP/2", b"http/1.1"]))
    names = _mostly([b"Content-Type", b"content-length", b"Connection", b"X-A"],
                    [b"Transfer-Encoding", b"Expect", b"B@d", b"", b"Host"])  # fmt: skip
    values = _mostly([b"x", b"5", b"0", b" close ", b"keep-alive", b"a\tb"],
                     [b"chunked", b"", b"-1", b"1 2", b"\x01", b"\xff", b"05"])  # fmt: skip
    fields = draw(st.lists(st.tuples(names, values), max_size=6))
    fields.insert(draw(st.integers(0, len(fields))), (b"Host", draw(_mostly(
        [b"x", b"127.0.0.1:8421"], [b""]))))  # fmt: skip
    body = draw(st.binary(max_size=12))
    seps = _mostly([b": ", b":"], [b" : ", b":\t", b"  :"])
    head = [method + b" " + target + b" " + version]
    head += [name + draw(seps) + value for name, value in fields]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@given(st.binary(max_size=300) | requests(), st.lists(st.integers(0, 300), max_size=4))
@example(b"! / HTTP/1.1\r\nHost:!\r\n*:\r\ncontent-length:1\r\n\r\n\x00", [46])  # body cut
def test_any_bytes_in_any_pieces_are_requests_none_or_unhandled(
    data: bytes, cuts: list[int]
) -> None:
    whole = read_all(data)
    taken, end, rest = read_all(data, [c for c in cuts if c < len(data)])
    # The same requests whatever the pieces; a request the reader leaves because its body is
    # still arriving may be taken whole when it came at once, so compare what came whole.
    assert taken == whole[0][: len(taken)] or end is Unhandled
    if end is None and whole[1] is None:
        assert (taken, rest) == (whole[0], whole[2])
    assert data.endswith(rest)  # nothing invented
    if end is Unhandled and whole[1] is Unhandled and len(taken) == len(whole[0]):
        # Left at the request it leaves when the bytes come at once, from its start: that
        # request is not the lean reader's, however it comes. (One left because its body was
        # still arriving may be read whole when it comes at once, as above.)
        again = reader()
        again.feed(rest)
        with pytest.raises(Unhandled):
            again.next()


# -- every request taken reads the same to aiohttp -------------------------------------------


def aiohttp_reads(data: bytes) -> list[tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]]:
    """What aiohttp's request parser (the server's) reads from ``data``; raises if it refuses."""
    loop = asyncio.new_event_loop()
    try:
        protocol: Any = mock.Mock()
        parser = HttpRequestParser(protocol, loop, 2**16, max_line_size=8190,
                                   max_field_size=8190)  # fmt: skip
        messages, upgraded, tail = parser.feed_data(data)
        assert not upgraded
        assert tail == b""
        out = []
        for message, payload in messages:
            body = b"".join(getattr(payload, "_buffer", ()))
            fields = [(k.lower(), v) for k, v in message.raw_headers]
            out.append((message.method.encode(), message.path.encode(), fields, body))
        return out
    finally:
        loop.close()


@settings(max_examples=500)
@given(requests())
def test_every_request_taken_is_read_the_same_by_aiohttp(data: bytes) -> None:
    r = reader()
    r.feed(data)
    try:
        got = r.next()
    except Unhandled:
        return
    if got is None:
        return
    theirs = aiohttp_reads(data[: len(data) - len(r.rest())])  # what follows is another's
    assert len(theirs) == 1
    method, path, fields, body = theirs[0]
    assert (method, path, body) == (got.method, got.target, got.body)
    assert fields == list(got.fields)


def test_aiohttp_reads_a_plain_request_the_same() -> None:
    ((method, path, fields, body),) = aiohttp_reads(POST)
    assert (method, path, body) == (b"POST", INBOX, b"hello")
    assert fields[2] == (b"content-length", b"5")
