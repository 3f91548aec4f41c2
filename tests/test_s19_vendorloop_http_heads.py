"""The request reader keeps the heads it read (vrmproto/_http1_server.py, ``_HEADS``): a client's
next request with the same head is taken without reading the head again (#12), and what it
takes is exactly what a reading from scratch takes, each reader's own limits included."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest

from vrmproto import _http1_server
from vrmproto._http1_server import Request, RequestReader, Unhandled

HEAD = (
    b"POST /vrm/inbox HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/vnd.vrmproto+msgpack\r\nContent-Length: 5\r\n\r\n"
)


@pytest.fixture(autouse=True)
def no_heads_kept() -> Iterator[None]:
    _http1_server._HEADS.clear()
    yield
    _http1_server._HEADS.clear()


def take(reader: RequestReader, data: bytes) -> Request | None:
    reader.feed(data)
    return reader.next()


def test_a_head_seen_before_is_not_read_again() -> None:
    reader = RequestReader(max_line=8190, max_body=1 << 16)
    with mock.patch.object(_http1_server, "_parse_head", wraps=_http1_server._parse_head) as read:
        first = take(reader, HEAD + b"hello")
        second = take(RequestReader(max_line=8190, max_body=1 << 16), HEAD + b"world")
    assert read.call_count == 1
    assert first is not None
    assert second is not None
    assert (first.body, second.body) == (b"hello", b"world")
    assert first.fields == second.fields
    assert (first.method, first.target, first.close) == (b"POST", b"/vrm/inbox", False)


def test_a_kept_head_still_meets_each_readers_limits() -> None:
    assert take(RequestReader(max_line=8190, max_body=1 << 16), HEAD + b"hello") is not None
    with pytest.raises(Unhandled, match="line"):  # its longest line is 52 bytes
        take(RequestReader(max_line=40, max_body=1 << 16), HEAD + b"hello")
    with pytest.raises(Unhandled, match="body"):
        take(RequestReader(max_line=8190, max_body=4), HEAD + b"hello")
    partial = RequestReader(max_line=8190, max_body=1 << 16)
    with pytest.raises(Unhandled, match="arrived"):
        take(partial, HEAD + b"hel")
    assert partial.rest() == HEAD + b"hel"  # every byte left for aiohttp


def test_a_head_not_taken_is_not_kept_and_refused_each_time() -> None:
    repeated = HEAD.replace(b"Host: 127.0.0.1\r\n", b"Host: a\r\nHost: b\r\n")
    for _ in range(2):
        with pytest.raises(Unhandled, match="repeated"):
            take(RequestReader(max_line=8190, max_body=1 << 16), repeated + b"hello")
    assert not _http1_server._HEADS


def test_the_kept_heads_are_bounded() -> None:
    reader = RequestReader(max_line=1 << 16, max_body=1 << 16)
    for i in range(_http1_server._HEADS_MAX + 5):
        head = HEAD.replace(b"Host: 127.0.0.1", b"Host: h%d" % i)
        assert take(reader, head + b"hello") is not None
    assert len(_http1_server._HEADS) <= _http1_server._HEADS_MAX
    long = HEAD.replace(b"Host: 127.0.0.1", b"Host: " + b"h" * _http1_server._HEADS_KEPT_BYTES)
    got = take(reader, long + b"hello")
    assert got is not None
    assert got.body == b"hello"
    assert long[:-4] not in _http1_server._HEADS


@pytest.mark.parametrize("field", [b"Authorization: Bearer s3cr3t", b"Cookie: sid=s3cr3t",
                                   b"Proxy-Authorization: Basic czNjcjN0"])  # fmt: skip
def test_a_head_with_credentials_is_read_but_not_kept(field: bytes) -> None:
    """A request's credentials stay in memory no longer than the request (review, session 19)."""
    head = HEAD.replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\r\n" + field + b"\r\n")
    request = take(RequestReader(max_line=8190, max_body=1 << 16), head + b"hello")
    assert request is not None
    assert request.body == b"hello"
    assert not any(b"s3cr3t" in h or b"czNjcjN0" in h for h in _http1_server._HEADS)
    assert _http1_server._HEADS == {}
