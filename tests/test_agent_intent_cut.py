"""An intentcast cut short (issue #11 item 3): Ctrl-C keeps the offers that had arrived — they
can be taken up afterwards — and what it left in the outbox is not dropped silently by the
node's outbox rounds (``vrm agent serve`` says why). Over the in-memory transport."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import click
import pytest
from click.testing import CliRunner

from vrmproto import Identity, Money, TransportError
from vrmproto.cli._cmd_serve import _delivery_printer
from vrmproto.cli._output import Out
from vrmproto.client import Agent, Delivery
from vrmproto.client._fanout import ProgressEvent
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy, Response
from vrmproto.store import MemoryStore
from vrmproto.testing import MemoryTransport

ACCEPTS = ("vrm.no-tracking", "vrm.no-third-party")
FAST, SLOW = "http://fast.test", "http://slow.test"


def shop(name: str) -> Endpoint:
    return Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name=name,
                    policy=ReferencePolicy(accepts_terms=ACCEPTS, name=name, catalogue=(
                        CatalogueItem(f"{name} bike", ("bike",), Money(100, "USD")),)))


class Clock:
    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        import time  # noqa: PLC0415

        return time.time_ns() // 1_000_000 + self.offset


@pytest.fixture
async def setup() -> AsyncIterator[tuple[Agent, Clock, asyncio.Event]]:
    fast, slow = shop("Fast"), shop("Slow")
    release = asyncio.Event()
    answer = slow.handle_inbox

    async def held(data: bytes, **kw: Any) -> Response:  # the slow vendor answers when told
        await release.wait()
        return await answer(data, **kw)

    slow.handle_inbox = held  # type: ignore[method-assign]
    clock = Clock()
    a = await Agent.open(MemoryStore(), os.urandom(32), clock=clock,
                         client=MemoryTransport({FAST: fast, SLOW: slow}, clock=clock))
    yield a, clock, release
    release.set()
    await a.close()
    await fast.drain()
    await slow.drain()


async def cut_short(a: Agent) -> None:
    """An intentcast to both, cancelled (Ctrl-C) once the fast vendor's offer is in."""
    answered = asyncio.Event()

    def progress(e: ProgressEvent) -> None:
        if e.stage == "confirmed":
            answered.set()

    task = asyncio.create_task(a.intentcast("a bike", vendors=[FAST, SLOW], deadline_ms=60_000,
                                            progress=progress))  # fmt: skip
    await answered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_offers_that_arrived_before_ctrl_c_can_be_taken_up(
    setup: tuple[Agent, Clock, asyncio.Event],
) -> None:
    a, _, _ = setup
    await cut_short(a)
    (offer,) = await a.offers()
    assert offer.vendor == "Fast"
    assert len(await a.intents()) == 1
    assert offer.intent  # the intentcast it answers, from the thread that was kept
    taken = await a.take_offer(offer)
    assert taken.status == "accepted"


async def test_what_a_killed_intentcast_left_waiting_is_dropped_saying_why(
    setup: tuple[Agent, Clock, asyncio.Event],
) -> None:
    a, clock, _ = setup
    await cut_short(a)
    (left,) = [w for w in await a.waiting() if w.type == "intentcast"]
    clock.offset += 120_000  # the deadline passed
    run = await a.run_outbox()
    (dropped,) = [d for d in run.deliveries if d.msg_id == left.msg_id]
    assert dropped.status == "dropped"
    assert "intentcast expired before it could be delivered" in str(dropped.error)
    assert await a.waiting() == []
    view = next(v for v in await a.relationships() if v.thread == left.thread)
    assert "expired" in view.last_problem


@pytest.mark.parametrize("json_mode", [False, True])
def test_agent_serve_says_why_a_message_was_dropped(json_mode: bool) -> None:
    why = "the intentcast expired before it could be delivered"
    d = Delivery(bytes(16), bytes(16), b"\x01" * 32, "dropped", error=TransportError(why))

    @click.command()
    def show() -> None:
        _delivery_printer(Out(json_mode=json_mode))(d)

    assert why in CliRunner().invoke(show).output
