"""WIRE-014 on a busy host (s21; spec §14.2, §10-8).

WIRE-014 trickles a body in four pieces over 0.6 × ``body_read_timeout_ms`` and expects a
receipt; three refused tries fail it. Its pieces were paced by sleeps one after another, so
that a moment the suite's own event loop was busy pushed every later piece back by as much:
with three busy loops on two cores, and three suites and their vendors in one loop
(``tests/test_conformance_reference.py``), the body took longer than the timeout to leave,
and the reference vendor, rightly refusing it, failed the case three times in three. Now each
piece is sent at its own time from the first (a busy moment delays the pieces due in it, not
the rest), and a try whose last piece the suite itself sent later than 0.8 × the timeout
proves nothing about the endpoint: it does not count among the three (at most six tries in
all). An endpoint that enforces a shorter timeout than it publishes still fails: its refusals
come to bodies the suite sent on time.

A busy loop is played by blocking the event loop (the suite's and the vendor's, here one)
for a while at a given moment of a try: that is what a busy host does to both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from _broken_vendor import ACCEPTS, CONNECTION_LIMITS, VENDOR_SEED

from vrmproto._keys import Identity
from vrmproto._limits import Limits
from vrmproto.server import Endpoint, ReferencePolicy, Server, _app, serve
from vrmproto.store import MemoryStore
from vrmproto.testing import Outcome, run_suite
from vrmproto.testing.cases import _support


@pytest.fixture
async def vendor() -> AsyncIterator[Server]:
    """The conformance test vendor, publishing (and giving a body) one second: the trickle
    takes 0.6 s, a try is late past 0.8 s."""
    endpoint = Endpoint(Identity(VENDOR_SEED), store=MemoryStore(), name="trickle vendor",
                        limits=Limits(body_read_timeout_ms=1_000),
                        policy=ReferencePolicy(accepts_terms=ACCEPTS, name="trickle vendor"))
    server = await serve(endpoint, connection_limits=CONNECTION_LIMITS)
    yield server
    await server.close()


@pytest.fixture
def busy(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[int, tuple[float, float]]],
                                                      list[int]]:
    """``busy({try: (at_s, for_s)})``: in those tries of WIRE-014 (counted from 0), block the
    event loop ``for_s`` seconds from ``at_s`` after the connection opened. Returns the list
    the tries are counted in."""
    tries: list[int] = []

    def plan(stalls: dict[int, tuple[float, float]]) -> list[int]:
        real = _support.open_stream

        async def opened(url: str, **kwargs: Any) -> Any:
            stream = await real(url, **kwargs)
            stall = stalls.get(len(tries))
            tries.append(len(tries))
            if stall is not None:
                at, length = stall
                asyncio.get_running_loop().call_later(at, time.sleep, length)
            return stream

        monkeypatch.setattr(_support, "open_stream", opened)
        return tries

    return plan


async def _wire_014(url: str) -> tuple[Outcome, str]:
    result = await run_suite(url, only=["WIRE-014"], seed=1)
    record = next(r for r in result.records if r.case.id == "WIRE-014")
    return record.outcome, record.actual or ""


async def test_a_busy_moment_early_in_each_try_delays_no_later_piece(
    vendor: Server, busy: Callable[[dict[int, tuple[float, float]]], list[int]]
) -> None:
    """The loop blocked from 0.15 s to 0.7 s of every try: the pieces due by then go out at
    0.7 s, within the 1 s timeout (paced one after another, the last left at 1.1 s)."""
    tries = busy(dict.fromkeys(range(6), (0.15, 0.55)))
    outcome, actual = await _wire_014(vendor.url)
    assert outcome is Outcome.PASSED, actual
    assert len(tries) == 1


async def test_tries_the_suite_sent_late_do_not_count(
    vendor: Server, busy: Callable[[dict[int, tuple[float, float]]], list[int]]
) -> None:
    """The loop blocked from 0.45 s to 1.1 s of the first three tries: their last piece left
    after the timeout, and the vendor refused them; the fourth, on time, passes."""
    tries = busy(dict.fromkeys(range(3), (0.45, 0.65)))
    outcome, actual = await _wire_014(vendor.url)
    assert outcome is Outcome.PASSED, actual
    assert len(tries) == 4


async def test_an_endpoint_with_a_shorter_timeout_than_it_publishes_still_fails(
    vendor: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It publishes 1 s and gives a body 0.5 s: every try, sent on time, is refused."""
    read = _app._read_body

    async def one_second(request: Any, limit: int) -> bytes:
        async with asyncio.timeout(0.5):
            return await read(request, limit)

    monkeypatch.setattr(_app, "_read_body", one_second)
    outcome, actual = await _wire_014(vendor.url)
    assert outcome is Outcome.FAILED, actual
    assert "408" in actual or "request_timeout" in actual, actual
