"""The sans-IO HTTP/1.1 answer reader (vrmproto/_http1.py): answers framed as RFC 9112 §6.3 says,
whatever pieces the bytes arrive in, their bodies capped; for any bytes at all, an answer or a
typed error (MalformedResponse, ResponseTooLarge) and nothing else.
"""

from __future__ import annotations

import ast
import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vrmproto._http1 import (
    IncompleteResponse,
    MalformedResponse,
    Response,
    ResponseReader,
    ResponseTooLarge,
)

Outcome = Response | type[Exception] | None


def read(data: bytes, cuts: Sequence[int] = (), *, cap: int = 1 << 20) -> Outcome:
    """Feed ``data`` cut at ``cuts``; the first answer (the connection closing after the last
    piece when none came before), or the type of the error raised."""
    r = ResponseReader()
    r.start(cap)
    start = 0
    try:
        for end in [*sorted(cuts), len(data)]:
            got = r.feed(data[start:end])
            start = end
            if got is not None:
                return got
        return r.eof()
    except (MalformedResponse, ResponseTooLarge) as exc:
        return type(exc)


def every_split(data: bytes, *, cap: int = 1 << 20) -> Outcome:
    """The outcome, checked to be the same whole, byte by byte, and cut once anywhere."""
    whole = read(data, cap=cap)
    assert read(data, range(1, len(data)), cap=cap) == whole
    step = 1 if len(data) < 2000 else 97  # a long head: every 97th byte is enough
    for at in range(1, len(data), step):
        assert read(data, [at], cap=cap) == whole
    return whole


ANSWERS: list[tuple[bytes, int, bytes, bool]] = [  # (an answer, status, body, kept alive)
    (b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", 204, b"", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello", True),
    (b"HTTP/1.1 200 OK\r\ncontent-length:0\r\n\r\n", 200, b"", True),
    (b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: y\r\n\r\n", 500, b"hello!", True),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 201,
     b"ok", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False),
    (b"HTTP/1.0 202 Accepted\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 202, b"",
     True),
    (b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n", 307, b"",
     True),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 304, b"", True),
    (b"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx", 200, b"x", True),
    (b"HTTP/1.1 200 OK\r\n\r\nuntil the close", 200, b"until the close", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw", 200, b"raw", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"1\r\nz\r\n0\r\n\r\n", 200, b"z", False),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
     % (len(gzip.compress(b"squeezed")), gzip.compress(b"squeezed")), 200, b"squeezed", True),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n%s"
     % (len(zlib.compress(b"zlib")), zlib.compress(b"zlib")), 200, b"zlib", True),
]  # fmt: skip


@pytest.mark.parametrize(("data", "status", "body", "alive"), ANSWERS)
def test_an_answer_is_framed_alike_in_any_pieces(data: bytes, status: int, body: bytes,
                                                 alive: bool) -> None:  # fmt: skip
    got = every_split(data)
    assert isinstance(got, Response)
    assert (got.status, got.body, got.keep_alive) == (status, body, alive)


def test_header_fields_come_in_order_names_lower_cased() -> None:
    got = read(b"HTTP/1.1 429 Too Many\r\nRetry-After:  3 \r\nX-A: 1\r\nx-a: 2\r\n"
               b"Content-Length: 0\r\n\r\n")  # fmt: skip
    assert isinstance(got, Response)
    assert got.headers == (("retry-after", "3"), ("x-a", "1"), ("x-a", "2"),
                           ("content-length", "0"))  # fmt: skip


def test_answers_one_after_another_on_one_connection() -> None:
    r = ResponseReader()
    bodies = []
    for data, *_ in ANSWERS[:4]:
        r.start(100)
        assert not r.started
        got = r.feed(data)
        assert got is not None
        bodies.append(got.body)
    assert bodies == [b"", b"hello", b"", b"hello!"]


def test_started_tells_whether_any_byte_of_the_answer_came() -> None:
    r = ResponseReader()
    r.start(100)
    assert r.eof() is None  # closed before any byte: no answer, no error
    r = ResponseReader()
    r.start(100)
    r.feed(b"H")
    assert r.started
    with pytest.raises(IncompleteResponse):
        r.eof()


@pytest.mark.parametrize("data", [
    b"HTTP/2 200 OK\r\n\r\n",
    b"ICY 200 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\nb\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nnot",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\n"
    + gzip.compress(b"cut short")[:5],
    b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70_000,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 5000,
])  # fmt: skip
def test_what_is_not_http_1_1_is_a_malformed_response(data: bytes) -> None:
    assert every_split(data) in (MalformedResponse, IncompleteResponse)


def test_a_byte_after_the_answer_is_malformed() -> None:
    """The client never pipelines: nothing may follow an answer before the next request (the
    connection's protocol closes a connection that receives bytes between requests)."""
    for answer, extra in ((b"HTTP/1.1 204 No Content\r\n\r\n", b"extra"),
                          (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", b"y")):
        assert read(answer + extra) is MalformedResponse
        assert isinstance(read(answer + extra, [len(answer)]), Response)  # what came first


def test_a_connection_closed_in_the_middle_is_an_incomplete_response() -> None:
    for data in (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", b"HTTP/1.1 200 O",
                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"):  # fmt: skip
        assert every_split(data) is IncompleteResponse


# -- the cap -----------------------------------------------------------------------------------


def test_a_declared_length_over_the_cap_is_refused_before_the_body() -> None:
    r = ResponseReader()
    r.start(10)
    with pytest.raises(ResponseTooLarge) as info:
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")
    assert (info.value.status, info.value.declared, info.value.cap) == (200, 11, 10)


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n123456\r\n5\r\n12345\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n",
    b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 11,
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
    % (len(gzip.compress(bytes(11))), gzip.compress(bytes(11))),
    b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n" + zlib.compress(bytes(10**6)),
])  # fmt: skip
def test_a_body_over_the_cap_is_too_large_however_it_comes(data: bytes) -> None:
    assert every_split(data, cap=10) is ResponseTooLarge


def test_a_body_at_the_cap_is_whole() -> None:
    got = every_split(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n", cap=10)  # fmt: skip
    assert isinstance(got, Response)
    assert got.body == b"1234567890"


# -- properties (more examples than the profile's default for a parser; the "long" profile more) --

TOKEN = st.text("abcdefghijklmnopqrstuvwxyz-ABCXYZ0123456789", min_size=1, max_size=12)
VALUE = st.text("abc xyz;=,/0123456789\t", max_size=20).map(str.strip)


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, int, bytes, bool]:
    """An answer as a server may frame it: (its bytes, status, body, whether kept alive)."""
    status = draw(st.integers(200, 599))
    body = draw(st.binary(max_size=300))
    fields = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=4).map(lambda fs: [
        (n, v) for n, v in fs if n.lower() not in (
            "content-length", "transfer-encoding", "connection", "content-encoding")]))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    if status in (204, 304):
        framing, body = "length", b""
    head = [f"HTTP/1.1 {status} {draw(st.sampled_from(['OK', 'X', '']))}".rstrip()]
    head += [f"{n}:{draw(st.sampled_from(['', ' ', '  ']))}{v}" for n, v in fields]
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
        payload = body
    elif framing == "chunked":
        head.append("Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 64), max_size=8))
        payload, at = b"", 0
        for size in sizes:
            piece = body[at : at + size]
            at += len(piece)
            if piece:
                payload += b"%x\r\n%s\r\n" % (len(piece), piece)
        if at < len(body):
            payload += b"%X;x=y\r\n%s\r\n" % (len(body) - at, body[at:])
        payload += b"0\r\n" + (b"T: t\r\n" if draw(st.booleans()) else b"") + b"\r\n"
    else:
        payload = body
    data = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    return data, status, body, framing != "close"


@settings(max_examples=max(settings().max_examples, 150))
@given(answers(), st.lists(st.integers(0, 2000), max_size=6))
def test_any_answer_in_any_pieces_reads_the_same(answer: tuple[bytes, int, bytes, bool],
                                                 cuts: list[int]) -> None:  # fmt: skip
    data, status, body, alive = answer
    got = read(data, [c for c in cuts if c <= len(data)])
    assert isinstance(got, Response)
    assert (got.status, got.body, got.keep_alive) == (status, body, alive)
    if body:
        assert read(data, cuts, cap=len(body) - 1) is ResponseTooLarge


@settings(max_examples=max(settings().max_examples, 300))
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=5))
def test_any_bytes_are_an_answer_or_a_typed_error(data: bytes, cuts: list[int]) -> None:
    for prefix in (b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
                   b"\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n"):  # fmt: skip
        whole = prefix + data
        read(whole, [c for c in cuts if c <= len(whole)], cap=100)  # raises nothing else


@settings(max_examples=max(settings().max_examples, 150))
@given(answers(), st.integers(0, 10**6), st.binary(min_size=1, max_size=3))
def test_a_damaged_answer_is_an_answer_or_a_typed_error(answer: tuple[bytes, int, bytes, bool],
                                                        at: int, junk: bytes) -> None:  # fmt: skip
    data = answer[0]
    at %= len(data)
    for damaged in (data[:at] + junk + data[at:], data[:at] + junk + data[at + len(junk):],
                    data[:at]):  # fmt: skip
        whole = read(damaged)
        split = read(damaged, range(1, len(damaged)))
        # the same, unless an answer ended before the bytes did (whole: bytes after it)
        assert split == whole or (isinstance(split, Response) and whole is MalformedResponse)


def test_the_reader_is_sans_io() -> None:
    """No sockets, event loop or clock in the reader (STYLE §1): only parsing."""
    tree = ast.parse((Path(__file__).parents[1] / "vrmproto" / "_http1.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "re", "zlib", "dataclasses"}
