"""TLS connections are counted and timed from their first moment (s15 hunt; spec §10.1).

A listening socket that does the TLS handshake itself (``create_server(ssl=…)``) calls the
protocol only once the handshake is done. Before, a TLS connection that never sent its
ClientHello was neither counted (§10.1-3, §10.1-4) nor timed (§10.1-2) by the server, only cut
by asyncio's own 60 s handshake timeout: one address could open connections that never send a
byte until the process ran out of descriptors. Now the connection is admitted when accepted,
refused beyond the caps, closed when its handshake is not done within ``idle_timeout_ms``, and
served as before once it is (the bytes that arrive around the hand-over kept, on both loops).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from _broken_vendor import make_endpoint
from _tls import tls_contexts

from vrmproto._binding import WELL_KNOWN_PATH
from vrmproto.server import ConnectionLimits, serve
from vrmproto.server._connections import ConnectionGuard, Held
from vrmproto.store import MemoryStore

CAP = 4
LIMITS = ConnectionLimits(max_connections_per_address=CAP, idle_timeout_ms=300,
                          header_timeout_ms=300)  # fmt: skip


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection within 5 s (asyncio's own handshake
    timeout is 60 s)."""
    try:
        async with asyncio.timeout(5):
            return await reader.read(1) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def silent_tls_connections_are_capped_and_closed() -> None:
    server_ctx, client_ctx = tls_contexts()
    server = await serve(make_endpoint(MemoryStore()), ssl_context=server_ctx,
                         connection_limits=LIMITS)  # fmt: skip
    silent: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        # plain TCP: no ClientHello, ever
        silent.extend([await asyncio.open_connection("127.0.0.1", server.port)
                       for _ in range(3 * CAP)])  # fmt: skip
        assert len(server.connections) <= CAP  # before: 0, none of them counted
        assert all(await asyncio.gather(*(closed(r) for r, _ in silent)))
        assert len(server.connections) == 0
        # an honest client is served over TLS as before
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=client_ctx)
        writer.write(f"GET {WELL_KNOWN_PATH} HTTP/1.1\r\nHost: x\r\n"
                     "Connection: close\r\n\r\n".encode())  # fmt: skip
        async with asyncio.timeout(10):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for _, w in silent:
            w.close()
        await server.close()


async def test_silent_tls_connections_are_capped_and_closed() -> None:
    await silent_tls_connections_are_capped_and_closed()


def test_silent_tls_connections_are_capped_and_closed_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(silent_tls_connections_are_capped_and_closed())


async def test_a_client_that_closes_during_the_handshake_is_uncounted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    none_open = asyncio.Event()
    release = ConnectionGuard.release

    def released(guard: ConnectionGuard, handler: Held) -> None:
        release(guard, handler)
        if not len(guard):
            none_open.set()

    monkeypatch.setattr(ConnectionGuard, "release", released)
    server_ctx, _ = tls_contexts()
    server = await serve(make_endpoint(MemoryStore()), ssl_context=server_ctx,
                         connection_limits=LIMITS)  # fmt: skip
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x16\x03\x01\x00\x05hello")  # the start of a TLS record, then gone
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        async with asyncio.timeout(5):  # before: counted by nobody, so never released
            await none_open.wait()
        assert len(server.connections) == 0
    finally:
        await server.close()
