"""Near-HTTP bytes to a real server, over a socket (s15 hunt; spec §12.4-2, §12.4-5).

The contract: whatever a client sends, each answer is a valid HTTP/1.x answer below 500 (a 4xx
in the binding's content type is a signed problem, never ``internal_error``), nothing is logged
as a failure, and the server ends the exchange — once the client has sent everything and shut
its side, the connection closes within the deadlines. The requests are drawn near the shapes
the lean reader and aiohttp take — pipelined, chunked, ``Expect``, forwarding fields full of
garbage from a trusted proxy — and one server (lean path in front, the proxy trusted) serves
them all. ``VRM_HYPOTHESIS_PROFILE=long`` runs many more (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from collections.abc import Iterator

import pytest
from _broken_vendor import make_endpoint
from _vendor_proc import now_ms
from hypothesis import given
from hypothesis import strategies as st

from vrmproto import open_envelope
from vrmproto._binding import CONTENT_TYPE
from vrmproto.server import ConnectionLimits, serve
from vrmproto.server._proxy import Deployment
from vrmproto.store import MemoryStore

LIMITS = ConnectionLimits(header_timeout_ms=1000, idle_timeout_ms=1000)


class _Failures(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, _Failures]]:
    """A server on its own thread and loop, for every example of the module."""
    loop = asyncio.new_event_loop()
    failures = _Failures()
    log = logging.getLogger("vrmproto.server")
    log.addHandler(failures)
    endpoint = make_endpoint(MemoryStore())  # a long run meets its rate limit: 429, fine
    started = loop.run_until_complete(serve(
        endpoint, connection_limits=LIMITS, lingering_time=0.2,
        deployment=Deployment.of(None, ["127.0.0.1"])))  # fmt: skip
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield started.port, failures
    finally:
        asyncio.run_coroutine_threadsafe(started.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        log.removeHandler(failures)


def _pick(*options: bytes) -> st.SearchStrategy[bytes]:
    return st.sampled_from(options)


_JUNK = st.binary(max_size=12)
_METHOD = _pick(b"GET", b"POST", b"PUT", b"OPTIONS", b"DELETE", b"get", b"") | _JUNK
_TARGET = (
    _pick(
        b"/vrm/inbox",
        b"/vrm/history",
        b"/.well-known/vrm",
        b"/healthz",
        b"/readyz",
        b"/nope",
        b"*",
        b"http://x/vrm/inbox",
        b"/vrm/inbox?a=%ff",
        b"/%2e%2e/",
    )
    | _JUNK
)
_VERSION = _pick(b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"", b"HTTP/1.1 x")
_NAME = (
    _pick(
        b"Host",
        b"Content-Type",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Connection",
        b"Expect",
        b"Upgrade",
        b"Forwarded",
        b"X-Forwarded-For",
        b"X-Forwarded-Proto",
        b"X-A",
        b" Host",
        b"Host ",
        b"",
    )
    | _JUNK
)
_VALUE = (
    _pick(
        b"x",
        b"127.0.0.1",
        CONTENT_TYPE.encode(),
        b"0",
        b"5",
        b"-1",
        b"99999999999",
        b"chunked",
        b"gzip, chunked",
        b"close",
        b"keep-alive",
        b"Upgrade",
        b"100-continue",
        b"websocket",
        b'for="[::1',
        b"for=1.2.3.4;proto=https, for=_x",
        b"1.2.3.4, ::ffff:10.0.0.1, unknown",
        b"fe80::1%eth0",
        b"\xff\xfe",
        b"a\r\n b",
    )
    | _JUNK
)


@st.composite
def _request(draw: st.DrawFn) -> bytes:
    sep = draw(st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r"]))  # mostly CRLF
    line = draw(_METHOD) + b" " + draw(_TARGET) + b" " + draw(_VERSION)
    fields = [draw(_NAME) + b": " + draw(_VALUE) for _ in range(draw(st.integers(0, 6)))]
    if draw(st.booleans()):
        fields.insert(0, b"Host: x")
    head = sep.join([line, *fields]) + sep + sep
    body = draw(st.binary(max_size=40))
    if draw(st.booleans()):  # a chunked body, well formed or not
        size = draw(_pick(b"%x" % len(body), b"zz", b"-1", b"ffffffffffffffffff", b"0"))
        body = size + draw(_pick(b"", b";ext=1")) + b"\r\n" + body + b"\r\n0\r\n\r\n"
    return head + body


def _answers(data: bytes) -> list[tuple[int, str, bytes]]:
    """The answers in ``data``: status, content type, body (framed by Content-Length)."""
    out = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"an answer cut short: {head[:200]!r}"
        status_line, *lines = head.split(b"\r\n")
        version, _, rest = status_line.partition(b" ")
        # aiohttp answers in the version the request line names (HTTP/0.9, HTTP/2.0…)
        assert re.fullmatch(rb"HTTP/[0-9]\.[0-9]", version), status_line
        status = int(rest[:3])
        fields = {n.strip().lower(): v.strip() for n, _, v in (x.partition(b":") for x in lines)}
        length = int(fields.get(b"content-length", b"0"))
        out.append((status, fields.get(b"content-type", b"").decode(), data[:length]))
        data = data[length:]
    return out


@given(st.lists(_request(), min_size=1, max_size=3))
def test_any_near_http_bytes_get_answers_below_500_and_an_end(
    server: tuple[int, _Failures], requests: list[bytes]
) -> None:
    port, failures = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(requests))
        sock.shutdown(socket.SHUT_WR)
        got = bytearray()
        try:
            while chunk := sock.recv(65536):  # a timeout here: the server held on
                got += chunk
        except ConnectionResetError:  # closed with our bytes unread: after its last answer
            pass
    for status, content_type, body in _answers(bytes(got)):
        assert status < 500, (status, body[:200])
        if status >= 400 and content_type == CONTENT_TYPE:
            assert open_envelope(body, now=now_ms()).body.code != "internal_error"
    assert not failures.records, [r.getMessage() for r in failures.records]
