"""A person's way out of the outbox (issue #11 item 2): every waiting message listed with the
reason it waits, the count per relationship the same as ``relationships`` shows, one dropped,
one relationship retried now, and one run emptying every relationship whose vendor answers.
Over the in-memory transport, against reference vendor endpoints."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import pytest

from vrmproto import Identity
from vrmproto.client import Agent, Queued
from vrmproto.client._waiting import WaitReason
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing import MemoryTransport

DAY_MS = 86_400_000
ACCEPTS = ("vrm.no-tracking", "vrm.no-third-party")
URLS = [f"http://shop{n}.test" for n in range(3)]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Shops:
    def __init__(self) -> None:
        self.endpoints = {
            u: Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name=u[7:12],
                        policy=ReferencePolicy(accepts_terms=ACCEPTS, name=u[7:12]))
            for u in URLS
        }  # fmt: skip
        self.transport = MemoryTransport(dict(self.endpoints))
        self.agent: Agent

    def down(self) -> None:
        for u in URLS:
            self.transport.remove(u)

    def up(self) -> None:
        for u, ep in self.endpoints.items():
            self.transport.add(u, ep)


@pytest.fixture
async def shops() -> AsyncIterator[Shops]:
    s = Shops()
    s.agent = await Agent.open(MemoryStore(), os.urandom(32), client=s.transport)
    yield s
    await s.agent.close()
    for ep in s.endpoints.values():
        await ep.drain()


async def queue_three(shops: Shops) -> list[bytes]:
    """Connect to every shop, then with them down: a data request, a withdraw, a rotation."""
    a = shops.agent
    threads = [(await a.connect(u)).thread for u in URLS]
    shops.down()
    for th in threads:
        with pytest.raises(Queued):
            await a.request_data(th)
        await a.withdraw(th)
        await a.rotate_key(th)
    return threads


async def test_every_waiting_message_is_listed_with_why_it_waits(shops: Shops) -> None:
    threads = await queue_three(shops)
    waiting = await shops.agent.waiting()
    assert len(waiting) == 9
    views = {v.thread: v.pending for v in await shops.agent.relationships()}
    for th in threads:
        mine = [w for w in waiting if w.thread == th]
        assert [w.type for w in mine] == ["data.request", "data.withdraw", "key.rotate"]
        assert [w.reason for w in mine] == [WaitReason.UNREACHABLE, WaitReason.UNSIGNED,
                                            WaitReason.UNSIGNED]  # fmt: skip
        assert mine[0].signed
        assert "could not" in mine[0].last_error or mine[0].last_error
        assert views[th] == len(mine)


async def test_one_run_empties_every_relationship(shops: Shops) -> None:
    threads = await queue_three(shops)
    shops.up()
    run = await shops.agent.retry_waiting()  # `vrm outbox run`: once
    assert run.refused == 0
    assert run.confirmed == 15  # 3 x: request, withdraw, rotate, our receipts of data and erasure
    assert await shops.agent.waiting() == []
    for th in threads:
        assert await shops.agent.compare_history(th) is None


async def test_drop_a_draft_and_a_signed_message(shops: Shops) -> None:
    a = shops.agent
    th, *_ = await queue_three(shops)
    request, withdraw, rotate = [w for w in await a.waiting() if w.thread == th]
    dropped = await a.drop_waiting(withdraw.msg_id.hex()[:8])
    assert dropped.status == "dropped"
    dropped = await a.drop_waiting(request.msg_id.hex())
    assert dropped.msg_hash == request.msg_hash
    # the rotation was next: signed now, the first in line
    (left,) = [w for w in await a.waiting() if w.thread == th]
    assert left.msg_id == rotate.msg_id
    assert left.signed
    assert left.reason is WaitReason.NOT_TRIED
    shops.up()
    await a.retry_waiting(left.msg_id.hex()[:6])
    assert [w for w in await a.waiting() if w.thread == th] == []
    assert await a.compare_history(th) is None
    types = [e.envelope for e in await a.history(th)]
    assert len(types) == len(await shops.endpoints[URLS[0]].store.history(th))


async def test_retry_one_relationship_leaves_the_others_waiting(shops: Shops) -> None:
    a = shops.agent
    first, *others = await queue_three(shops)
    shops.up()
    (w, *_) = [w for w in await a.waiting() if w.thread == first]
    run = await a.retry_waiting(w.msg_id.hex())
    assert {d.thread for d in run.deliveries} == {first}
    assert {w.thread for w in await a.waiting()} == set(others)


async def test_a_message_is_named_by_4_digits_at_least(shops: Shops) -> None:
    await queue_three(shops)
    with pytest.raises(LookupError, match="at least 4"):
        await shops.agent.drop_waiting("ab")
    with pytest.raises(LookupError, match="no waiting message"):
        await shops.agent.drop_waiting("0" * 32)
