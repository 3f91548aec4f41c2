"""The HTTP/1.1 answer reader (vrmproto/_http1.py) bounds what is not head or body too.

Before: a peer could send trailer fields (each under 4 KiB) or interim ``1xx`` answers (each a
head under 64 KiB) without end — 200 MB of trailers in 1.2 s — and the reader took them until
the request's deadline. The head and the body were bounded; these were not. Now an answer's
chunk extensions and trailer fields together are at most ``max_trailer`` bytes
(:data:`MAX_TRAILER`), and at most ``max_interim`` interim answers (:data:`MAX_INTERIM`) come
before the final one; past either, :class:`MalformedResponse`. Both are keyword arguments of
:class:`ResponseReader`.
"""

from __future__ import annotations

import pytest

from vrmproto._http1 import MAX_INTERIM, MAX_TRAILER, MalformedResponse, ResponseReader

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
INTERIM = b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
FINAL = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def feed_all(r: ResponseReader, piece: bytes, times: int) -> None:
    """Feed ``piece`` ``times`` times; no answer may come of it."""
    for _ in range(times):
        assert r.feed(piece) is None


FIELD = b"X-T: " + b"v" * 1000 + b"\r\n"  # one trailer field, under MAX_LINE


@pytest.mark.parametrize("keep_body", [True, False])
def test_trailer_fields_past_the_limit_are_malformed(keep_body: bool) -> None:
    r = ResponseReader(keep_body=keep_body)
    r.start(1000)
    assert r.feed(CHUNKED) is None
    with pytest.raises(MalformedResponse, match="trailer"):  # (before: 4 MB taken, and more)
        feed_all(r, FIELD, 4000)


def test_trailer_fields_up_to_the_limit_are_read_and_dropped() -> None:
    fields = FIELD * (MAX_TRAILER // len(FIELD))
    r = ResponseReader()
    r.start(1000)
    got = r.feed(CHUNKED + fields + b"\r\n")
    assert got is not None
    assert (got.status, got.body) == (200, b"ok")


def test_chunk_extensions_count_with_the_trailer() -> None:
    """1-byte chunks each with a 4 KB extension: 4 KB of framing per byte of body."""
    r = ResponseReader(max_trailer=10_000)
    r.start(1 << 20)
    r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"1;" + b"e" * 4000 + b"\r\nx\r\n"
    r.feed(chunk * 2)
    with pytest.raises(MalformedResponse, match="chunk extensions"):
        r.feed(chunk)


def test_interim_answers_past_the_limit_are_malformed() -> None:
    r = ResponseReader()
    r.start(1000)
    with pytest.raises(MalformedResponse, match="interim"):  # (before: taken as they came)
        feed_all(r, INTERIM, 10_000)


def test_interim_answers_up_to_the_limit_then_the_answer() -> None:
    r = ResponseReader()
    r.start(1000)
    got = r.feed(INTERIM * MAX_INTERIM + FINAL)
    assert got is not None
    assert got.body == b"ok"
    # the count is per answer: the next answer may have as many
    got = r.feed(INTERIM * MAX_INTERIM + FINAL)
    assert got is not None
    assert got.body == b"ok"


def test_the_limits_are_the_callers_to_set() -> None:
    r = ResponseReader(max_interim=1, max_trailer=100)
    r.start(1000)
    with pytest.raises(MalformedResponse, match="more than 1 interim"):
        r.feed(INTERIM * 2 + FINAL)
    r = ResponseReader(max_interim=1, max_trailer=100)
    r.start(1000)
    with pytest.raises(MalformedResponse, match="more than 100 bytes"):
        r.feed(CHUNKED + b"X-T: " + b"v" * 100 + b"\r\n\r\n")
