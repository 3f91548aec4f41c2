"""CONN-004 and CONN-005: the conformance cases of spec §10.1-7 (s16).

§10.1-7 (SHOULD): a connection is held to §10.1's deadlines from its accept, its TLS handshake
included, and one whose client takes no byte of its answers within ``idle_timeout_ms`` is
closed. The reference vendor passes both cases, on asyncio and on uvloop, by the lean path and
by aiohttp's; a vendor that makes the mistake each case is about fails it (NON_STRICT: a
SHOULD):

- ``graceful-unread``: at the deadline, an unread connection is closed gracefully rather than
  reset — the close waits for the unsent answer to flush, which it never does, so the
  connection, its buffers and its descriptor stay for as long as the client likes;
- ``untimed-handshake``: the TLS handshake is left to asyncio's own 60 s timeout, as a
  listening socket that does the handshake itself does.

Each mistake is made by monkeypatching the server in this process; the cases use hand-made
sockets only, so the patch cannot reach the checker. The cases wait for at most the ceiling
of §10.1-5 and two seconds (22 s) for a close; here to one second and a half (the
vendor's deadlines are 300 ms), so that a miss costs seconds, not twenty.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import ssl
from typing import Any, cast

import aiohttp
import pytest
import trustme
from _broken_vendor import make_endpoint

from vrmproto.server import ConnectionLimits, Server, _connections, _lean, serve
from vrmproto.store import MemoryStore
from vrmproto.testing import Outcome, run_suite
from vrmproto.testing._case import load_default_cases
from vrmproto.testing._context import CaseContext
from vrmproto.testing._runner import _run_one
from vrmproto.testing.cases import connections

LIMITS = ConnectionLimits(header_timeout_ms=300, idle_timeout_ms=300)
CEILING_MS = 1_000


@pytest.fixture(autouse=True)
def short_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "CEILING_MS", CEILING_MS)
    monkeypatch.setattr(connections, "GRACE_S", 0.5)


def graceful_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    def close(transport: asyncio.BaseTransport) -> None:
        transport.close()

    monkeypatch.setattr(_lean, "abort", close)
    monkeypatch.setattr(_connections, "abort", close)


class _LongHandshakes:
    """A guard whose handshakes may take 20 s (the most a limit may be; asyncio's: 60 s)."""

    def __init__(self, guard: _connections.ConnectionGuard) -> None:
        self._guard = guard
        self.limits = dataclasses.replace(guard.limits, idle_timeout_ms=20_000)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._guard, name)


class UntimedHandshake(_connections._Handshake):
    def __init__(self, guard: _connections.ConnectionGuard, *args: Any) -> None:
        super().__init__(cast(_connections.ConnectionGuard, _LongHandshakes(guard)), *args)


async def start(path: str) -> Server:
    """``lean``: :func:`serve` as is; ``aiohttp``: with an access log, which serves every
    request with aiohttp's handler."""
    access = logging.getLogger("s16.conformance") if path == "aiohttp" else None
    return await serve(make_endpoint(MemoryStore()), connection_limits=LIMITS,
                       access_log=access)  # fmt: skip


async def unread_case(path: str) -> Outcome:
    server = await start(path)
    try:
        result = await run_suite(server.url, only=["CONN-004"], seed=1)
    finally:
        await server.close()
    [record] = [r for r in result.records if r.case.id == "CONN-004"]
    return record.outcome


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("path", ["lean", "aiohttp"])
@pytest.mark.parametrize("mistake", ["reference", "graceful-unread"])
def test_unread_answers(monkeypatch: pytest.MonkeyPatch, mistake: str, path: str,
                        loop: str) -> None:  # fmt: skip
    factory = None
    if loop == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    if mistake == "graceful-unread":
        graceful_unread(monkeypatch)
    with asyncio.Runner(loop_factory=factory) as runner:
        outcome = runner.run(unread_case(path))
    assert outcome is (Outcome.PASSED if mistake == "reference" else Outcome.NON_STRICT)


def test_both_cases_pass_a_plain_http_vendor_as_not_applicable_or_checked() -> None:
    async def run() -> dict[str, tuple[Outcome, str | None]]:
        server = await start("lean")
        try:
            result = await run_suite(server.url, only=["CONN-004", "CONN-005"], seed=2)
        finally:
            await server.close()
        return {r.case.id: (r.outcome, r.actual) for r in result.records
                if r.outcome is not Outcome.SKIPPED}

    got = asyncio.run(run())
    assert got["CONN-004"][0] is Outcome.PASSED
    assert got["CONN-005"] == (Outcome.PASSED, "not applicable: the target is plain HTTP, "
                               "with no TLS handshake to time")  # fmt: skip


@pytest.fixture(scope="module")
def tls() -> ssl.SSLContext:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def handshake_case(context: ssl.SSLContext) -> Outcome:
    """CONN-005 against a vendor over TLS, graded as the runner grades it (the suite's client
    would not trust the test certificate; the case needs no discovery document)."""
    server = await serve(make_endpoint(MemoryStore()), connection_limits=LIMITS,
                         ssl_context=context)  # fmt: skip
    [conn_005] = [c for c in load_default_cases() if c.id == "CONN-005"]
    try:
        async with aiohttp.ClientSession() as session:
            ctx = CaseContext(case=conn_005, base_url=server.url, discovery={},
                              session=session, rng=random.Random(3), state={})  # fmt: skip
            record = await _run_one(conn_005, ctx, 30.0, 0)
    finally:
        await server.close()
    return record.outcome


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("mistake", ["reference", "untimed-handshake"])
def test_stalled_tls_handshake(monkeypatch: pytest.MonkeyPatch, tls: ssl.SSLContext,
                               mistake: str, loop: str) -> None:  # fmt: skip
    factory = None
    if loop == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    if mistake == "untimed-handshake":
        monkeypatch.setattr(_connections, "_Handshake", UntimedHandshake)
    with asyncio.Runner(loop_factory=factory) as runner:
        outcome = runner.run(handshake_case(tls))
    assert outcome is (Outcome.PASSED if mistake == "reference" else Outcome.NON_STRICT)
