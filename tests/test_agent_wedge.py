"""Queued while the vendor is down, delivered when it is back (issue #11 item 1).

Every order of operations queued while a vendor is unreachable must be delivered, in that order,
by the outbox once the vendor is back: nothing left waiting, both histories identical (§8.2),
and a key rotation among them (§2.6) must not leave messages signed or answered for the wrong
key. Over the in-memory transport, against the reference vendor endpoint.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from vrmproto import Identity
from vrmproto.client import Agent, Queued
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing import MemoryTransport

DAY_MS = 86_400_000
ACME = "http://acme.test"
ACCEPTS = ("vrm.no-tracking", "vrm.no-third-party")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Setup:
    def __init__(self) -> None:
        identity = Identity(os.urandom(32))
        self.endpoint = Endpoint(
            identity, store=MemoryStore(), name="Acme",
            policy=ReferencePolicy(accepts_terms=ACCEPTS, name="Acme"),
        )  # fmt: skip
        self.transport = MemoryTransport({ACME: self.endpoint})
        self.agent: Agent

    def down(self) -> None:
        self.transport.remove(ACME)

    def up(self) -> None:
        self.transport.add(ACME, self.endpoint)


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    s = Setup()
    s.agent = await Agent.open(MemoryStore(), os.urandom(32), client=s.transport)
    yield s
    await s.agent.close()
    await s.endpoint.drain()


Op = Callable[[Agent, bytes], Awaitable[object]]


async def _data(a: Agent, th: bytes) -> None:
    with pytest.raises(Queued):
        await a.request_data(th)


async def _share(a: Agent, th: bytes) -> object:
    return await a.share(th, {"email": "ada@example.org"}, purposes=["delivery"],
                         categories=["contact"], expires_ms=now_ms() + 365 * DAY_MS)  # fmt: skip


OPS: dict[str, Op] = {
    "data": _data,
    "withdraw": lambda a, th: a.withdraw(th, reason="changed my mind"),
    "rotate": lambda a, th: a.rotate_key(th),
    "share": _share,
    "address": lambda a, th: a.update_address({"city": "Paris"}),
}

ORDERS = [
    *itertools.permutations(("data", "withdraw", "rotate")),
    ("rotate", "rotate", "share"),
    ("share", "rotate", "address", "withdraw"),
    ("rotate", "data", "rotate", "withdraw"),
]


@pytest.mark.parametrize("order", ORDERS, ids="-".join)
async def test_what_waited_for_a_vendor_is_delivered_in_order_when_it_is_back(
    setup: Setup, order: tuple[str, ...]
) -> None:
    a = setup.agent
    c = await a.connect(ACME)
    assert c.status == "accepted"
    setup.down()
    for name in order:
        await OPS[name](a, c.thread)
    setup.up()
    run = await a.run_outbox(now=now_ms() + DAY_MS)
    assert run.refused == 0, run
    assert run.dropped == 0, run
    assert await a.pending() == []
    assert await a.compare_history(c.thread) is None
    assert (await a.reconcile(c.thread)).kind == "equal"
    # the relationship goes on: one more message, signed by the current key, is confirmed
    assert (await a.withdraw(c.thread)).confirmed
    assert await a.compare_history(c.thread) is None
