"""What the vendor's request path remembers between requests, to do less per request, changes
nothing it answers (issue #12): the head of a lean answer built from its cached parts is the
one built whole, whatever the length, fields and closing; the prefix a client address counts
under (§11.8-2) is the one computed afresh; both caches stay bounded whatever a flood sends.
And the request reader's checks of the fields it frames (one Host, one Connection, no
refused field) hold as it reads them now, from a table of the fields."""

from __future__ import annotations

import ipaddress

import pytest

from vrmproto._binding import CONTENT_TYPE
from vrmproto._http1_server import RequestReader, Unhandled
from vrmproto.server import _lean
from vrmproto.server._admission import address_prefix


def _whole(status: int, headers: dict[str, str], length: int, close: bool) -> bytes:
    """The head as built without the cache, from the parts :func:`_lean._head_parts` makes
    for exactly this answer."""
    start, middle, end = _lean._head_parts(status, tuple(headers.items()), length > 0, close)
    sized = b"" if status in (204, 304) else b"Content-Length: %d\r\n" % length
    date = f"Date: {_lean.rfc822_formatted_time()}\r\n".encode()
    return start + sized + middle + date + end


@pytest.mark.parametrize(("status", "headers"), [
    (200, {"Content-Type": CONTENT_TYPE}),
    (429, {"Content-Type": CONTENT_TYPE, "Retry-After": "7"}),
    (200, {}),
    (204, {}),
    (500, {"Content-Type": CONTENT_TYPE, "Connection": "close"}),
])  # fmt: skip
def test_a_cached_head_is_the_head_built_whole(status: int, headers: dict[str, str]) -> None:
    for length, close in [(300, False), (7, False), (0, False), (300, True), (0, True),
                          (12, False)]:  # fmt: skip
        head = _lean._answer_head(status, headers, length, close)
        assert head == _whole(status, headers, length, close), (length, close)
        fields = head.split(b"\r\n")
        assert (b"Content-Length: %d" % length in fields) == (status != 204)
        assert (b"Connection: close" in fields) == (close or "Connection" in headers)
        assert (b"Content-Type: application/octet-stream" in fields) == (
            length > 0 and "Content-Type" not in headers)  # fmt: skip
        assert head.endswith(b"\r\n\r\n")
        assert head.count(b"\r\n\r\n") == 1


def test_the_head_cache_stays_bounded() -> None:
    for wait in range(3 * _lean._HEADS_MAX):
        headers = {"Content-Type": CONTENT_TYPE, "Retry-After": str(wait)}
        head = _lean._answer_head(429, headers, 10, True)
        assert f"Retry-After: {wait}\r\n".encode() in head
        assert len(_lean._HEADS) <= _lean._HEADS_MAX


def test_a_cached_prefix_is_the_one_computed_afresh() -> None:
    fresh = address_prefix.__wrapped__
    addresses = [str(ipaddress.IPv4Address(0x0A000000 + 97 * i)) for i in range(3000)]
    addresses += [f"2001:db8:{i:x}::{i % 7 + 1:x}" for i in range(3000)]
    addresses += ["::ffff:192.0.2.7", "fe80::1%eth0", "unix-socket", ""]
    for address in addresses + addresses[::-1]:
        assert address_prefix(address) == fresh(address)
    info = address_prefix.cache_info()
    assert info.maxsize is not None
    assert info.currsize <= info.maxsize <= 100_000


_PLAIN = b"POST /vrm/inbox HTTP/1.1\r\n%b\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize(("fields", "close"), [
    (b"Host: x", False),
    (b"host: x\r\nConnection: CLOSE", True),
    (b"Connection: keep-alive\r\nHOST: x", False),
    (b"Host: x\r\nConnection:close", True),
])  # fmt: skip
def test_the_fields_the_reader_checks_are_read(fields: bytes, close: bool) -> None:
    r = RequestReader(max_line=8190, max_body=100)
    r.feed(_PLAIN % fields)
    got = r.next()
    assert got is not None
    assert got.body == b"ok"
    assert got.close is close


@pytest.mark.parametrize("fields", [
    b"X-A: 1",  # no Host
    b"Host:",  # an empty one
    b"Host: x\r\nHost: x",
    b"Host: x\r\nhost: y",
    b"Host: x\r\nConnection: close\r\nConnection: close",
    b"Host: x\r\nConnection: close, upgrade",
    b"Host: x\r\nTransfer-Encoding: identity",
    b"Host: x\r\nexpect: 100-continue",
    b"Host: x\r\nUpgrade: h2c",
    b"Host: x\r\nContent-Length: 2",  # a second one
])  # fmt: skip
def test_the_fields_the_reader_refuses_are_unhandled(fields: bytes) -> None:
    r = RequestReader(max_line=8190, max_body=100)
    r.feed(_PLAIN % fields)
    with pytest.raises(Unhandled):
        r.next()
    assert r.rest() == _PLAIN % fields


@pytest.mark.parametrize(("line", "value"), [
    (b"X-A: 1", b"1"),
    (b"X-A:1", b"1"),
    (b"X-A:\t a \t b \t ", b"a \t b"),
    (b"X-A:   ", b""),
    (b"X-A: a:b: c", b"a:b: c"),  # cut at the first colon
])  # fmt: skip
def test_a_field_value_is_read_without_the_whitespace_around_it(line: bytes, value: bytes) -> None:
    r = RequestReader(max_line=8190, max_body=100)
    r.feed(_PLAIN % (b"Host: x\r\n" + line))
    got = r.next()
    assert got is not None
    assert got.field(b"x-a") == value
    assert got.field(b"host") == b"x"
