"""Over TLS, a client that half-closes after whole requests gets them answered (s18).

Over plain TCP a client may send its requests and shut its sending side down (RFC 9112 §9.6):
the server answers what came whole, then closes (tests/test_s16_srv_halfclose.py). Over TLS the
client ends its side with a ``close_notify`` alert (RFC 8446 §6.1: it closes the sender's
*write* side only), often followed by the TCP FIN, or with the FIN alone. asyncio's and
uvloop's TLS transports both take either end as the end of the connection: they stop sending
at once, so an inbox message was handled — stored — and its receipt never sent; the sender had
to deliver it again (§12.6-5) to learn the outcome. The endpoint's connections now do TLS
themselves (``vrmproto.server._tls``) and answer as over TCP, on both loops, on the lean path and
on aiohttp's.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from _broken_vendor import ACCEPTS, VENDOR_SEED, make_endpoint
from _tls import tls_contexts, tls_exchange
from _vendor_proc import Customer
from test_s16_srv_halfclose import get, post, statuses

from vrmproto import Identity
from vrmproto._binding import WELL_KNOWN_PATH
from vrmproto.server import _tls, serve
from vrmproto.store import MemoryStore

VENDOR = Identity(VENDOR_SEED)

#: How the client ends its side: a close_notify alone (the socket stays open both ways), a
#: close_notify and then the FIN, or the FIN alone (no close_notify: a "ragged" end).
ENDS = ("close_notify", "close_notify+fin", "fin")


async def run(path: str, end: str, requests: list[bytes], warnings: list[str],
              after_end: bool = False) -> bytes:  # fmt: skip
    server_ctx, client_ctx = tls_contexts()
    access = logging.getLogger("s18.tls.halfclose") if path == "aiohttp" else None

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())

    seen = Seen(logging.WARNING)
    logging.getLogger("asyncio").addHandler(seen)
    server = await serve(make_endpoint(MemoryStore()), ssl_context=server_ctx,
                         access_log=access)  # fmt: skip
    try:
        sent = requests[:-1] if after_end else requests
        after = requests[-1] if after_end else b""
        got, notified = await asyncio.to_thread(tls_exchange, server.port, client_ctx,
                                                    b"".join(sent), end, after)  # fmt: skip
        assert notified, "the server closed without a close_notify"
        return got
    finally:
        logging.getLogger("asyncio").removeHandler(seen)
        await server.close()


def offers(n: int) -> list[bytes]:
    return [post(Customer(VENDOR).offer(*ACCEPTS).envelope) for _ in range(n)]


def on(loop: str, path: str, end: str, requests: list[bytes], *, after_end: bool = False
       ) -> bytes:  # fmt: skip
    """:func:`run` on ``loop``; ``after_end``: the last of ``requests`` is sent raw after the
    end."""
    factory = None
    if loop == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    warnings: list[str] = []
    with asyncio.Runner(loop_factory=factory) as runner:
        got = runner.run(run(path, end, requests, warnings, after_end))
    assert warnings == []
    return got


@pytest.mark.parametrize("end", ENDS)
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("path", ["lean", "aiohttp"])
def test_an_offer_then_the_end_of_input_is_answered(path: str, loop: str, end: str) -> None:
    got = on(loop, path, end, offers(1))
    assert statuses(got) == [b"200"], got[:300]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("path", ["lean", "aiohttp"])
def test_pipelined_requests_then_a_close_notify_are_all_answered(path: str, loop: str) -> None:
    got = on(loop, path, "close_notify", [*offers(3), get(WELL_KNOWN_PATH)])
    assert statuses(got) == [b"200"] * 4, got[:300]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_part_of_a_request_then_a_close_notify_is_not_answered_as_whole(loop: str) -> None:
    got = on(loop, "lean", "close_notify", [get(WELL_KNOWN_PATH), offers(1)[0][:-10]])
    assert statuses(got) in ([b"200"], [b"200", b"400"]), got[:300]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("path", ["lean", "aiohttp"])
def test_many_pipelined_requests_over_tls_pause_and_resume_reading(path: str, loop: str) -> None:
    """420 kB of pipelined requests, then the end: every one is answered, in order. (On
    aiohttp's path its reading pauses and resumes through the TLS layer on the way.)"""
    padded = get(WELL_KNOWN_PATH)[:-2] + b"X-Pad: " + b"p" * 7_000 + b"\r\n\r\n"
    got = on(loop, path, "close_notify+fin", [*offers(1), *[padded] * 60])  # 420 kB
    assert statuses(got) == [b"200"] * 61, got[:300]


@pytest.mark.parametrize("end", ENDS)
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_end_reaches_the_handler_the_lean_path_handed_over_to(loop: str, end: str) -> None:
    """The lean path answers the first offer and hands the connection, its end included, to
    aiohttp's handler for the chunked one."""
    first, second = (Customer(VENDOR).offer(*ACCEPTS).envelope for _ in range(2))
    got = on(loop, "lean", end, [post(first), post(second, chunked=True), get(WELL_KNOWN_PATH)])
    assert statuses(got) == [b"200"] * 3, got[:300]


def test_bytes_after_the_close_notify_are_not_taken_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """After its close_notify a client may send no more (RFC 8446 §6.1): what it sends anyway
    is read from the socket and dropped — it piled up in the TLS layer's input buffer, never
    to be read, for as long as the requests before it were being answered."""
    held: list[int] = []
    received = _tls.TLSProtocol.data_received

    def data_received(self: _tls.TLSProtocol, data: bytes) -> None:
        received(self, data)
        held.append(self._in.pending)

    monkeypatch.setattr(_tls.TLSProtocol, "data_received", data_received)
    junk = b"\x17\x03\x03\x40\x00" + b"j" * 0x4000  # records' headers, garbage inside
    got = on("asyncio", "lean", "close_notify", [*offers(1), junk * 4], after_end=True)
    assert statuses(got) == [b"200"], got[:300]
    assert max(held) < 0x4000, max(held)
