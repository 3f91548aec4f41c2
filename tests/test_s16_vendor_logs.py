"""A vendor's human log lines against a hostile sender (session 16's hunt).

Each refused request is logged with the message type its envelope claims — read before anything
is verified, so any text a sender likes, up to the 256 KiB of an envelope. Before, the human
line carried it as it came: a type holding a newline wrote a second, forged line into the
vendor's log ("… INFO [Shop] ← data.erased … 200"), an escape sequence reached the terminal
of the operator tailing it, and a type of 200,000 characters was logged whole on every request.
Now a human line's message has its control characters escaped and the claimed type is cut to
64 characters (JSON lines were escaped already, and are cut the same).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import aiohttp
import msgpack
import pytest
from _broken_vendor import make_endpoint
from _logger_reset import logging_as_it_was  # noqa: F401 -- autouse

from vrmproto.server import serve
from vrmproto.server._logging import MAX_KIND, configure_logging, one_line
from vrmproto.server._logwriter import flush_all
from vrmproto.store import MemoryStore

CONTENT_TYPE = "application/vnd.vrmproto+msgpack"
FORGED = "2026-01-01T00:00:00.000Z INFO [conformance test vendor] ← data.erased"


@pytest.fixture
def human() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging(vendor="Shop", stream=stream)
    yield stream
    logging.getLogger("vrmproto").removeHandler(handler)
    handler.close()


def envelope(claimed_type: str) -> bytes:
    hdr = msgpack.packb({"type": claimed_type, "thread": b"\x01" * 16, "from": b"\x02" * 32})
    out: bytes = msgpack.packb({"hdr": hdr, "body": b"", "sig": b"\x00" * 64})
    return out


async def test_a_claimed_type_cannot_forge_a_line_or_reach_the_terminal(
    human: io.StringIO,
) -> None:
    server = await serve(make_endpoint(MemoryStore()))
    try:
        async with aiohttp.ClientSession() as http:
            for claimed in (f"x\n{FORGED}", "\x1b]0;owned\x07\x1b[2J", "t" * 200_000):
                async with http.post(f"{server.url}/vrm/inbox", data=envelope(claimed),
                                     headers={"Content-Type": CONTENT_TYPE}) as r:  # fmt: skip
                    assert r.status == 400
    finally:
        await server.close()
    flush_all()
    lines = [line for line in human.getvalue().splitlines() if " ✗ " in line]
    assert len(lines) == 3  # one line per refused request, as many as were refused
    assert not any(line.startswith(FORGED) for line in human.getvalue().splitlines())
    assert "x\\x0a2026-01-01" in lines[0]
    assert "\x1b" not in human.getvalue()
    assert "\\x1b]0;owned\\x07" in lines[1]
    assert "t" * MAX_KIND in lines[2]
    assert "t" * (MAX_KIND + 1) not in lines[2]


def test_one_line_escapes_controls_and_separators_and_keeps_the_rest() -> None:
    assert one_line("a\r\nb\tc\x00\x7f\x85\u2028\u2029") == (
        "a\\x0d\\x0ab\\x09c\\x00\\x7f\\x85\\u2028\\u2029")  # fmt: skip
    same = "← terms.offer  é ☎ 日本"
    assert one_line(same) is same


async def test_a_json_line_stays_one_line_whatever_the_claimed_type() -> None:
    """JSON escapes the C0 controls but not NEL (U+0085) or the line and paragraph separators,
    and Python's ``splitlines`` (with many log shippers) ends a line at each: before, a claimed
    type holding one cut the request's JSON line in two, neither of them JSON."""
    stream = io.StringIO()
    handler = configure_logging(vendor="Shop", json_lines=True, stream=stream)
    claimed = "x\u2028y\x85z\u2029"
    try:
        server = await serve(make_endpoint(MemoryStore()))
        try:
            async with aiohttp.ClientSession() as http, http.post(
                    f"{server.url}/vrm/inbox", data=envelope(claimed),
                    headers={"Content-Type": CONTENT_TYPE}) as r:  # fmt: skip
                assert r.status == 400
        finally:
            await server.close()
    finally:
        logging.getLogger("vrmproto").removeHandler(handler)
        handler.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (refused,) = [line for line in lines if line["event"] == "refused"]
    assert refused["kind"] == claimed  # the same text, escaped in the line
