"""The vendor's history is read where its current document says (spec §13.1-8), like its inbox.

A thread's history URL comes from the vendor's discovery document, as its inbox does. Delivery
reads the document again once the stored one has expired (``test_s15_docexp_agent.py``), but
three other paths fetched the vendor's history from the URL stored at first contact, whatever
the document's age: comparing and reconciling histories (``vrm history --compare``, the restore
of a backup, §8.3-4) and asking the vendor whether it holds a message whose answer was lost
(§8.1-8). A vendor that had moved its history since was then "unreachable" from them. Each test
here fails without :func:`vrmproto.client._moved.current` on that path.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from _agent_clock import DAY_MS, FIELDS, T0, URL, Clock

from vrmproto import Identity
from vrmproto.client import DEFAULT_TERMS, Agent, Delivery, Unreachable
from vrmproto.client._own import own_header
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport, Route


class LosesAnswers(MemoryTransport):
    """``lose``: message types whose answer is lost after the vendor took them."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.lose: set[str] = set()

    async def post_envelope(self, inbox_url: str, envelope: bytes, **kw: Any) -> list[bytes]:
        answer = await super().post_envelope(inbox_url, envelope, **kw)
        header = own_header(envelope)
        if header is not None and header.type in self.lose:
            raise Unreachable(f"{inbox_url}: connection reset by peer")
        return answer


@dataclass
class World:
    clock: Clock
    transport: LosesAnswers
    vendor: Endpoint
    agent: Agent

    async def share(self, thread: bytes, n: str) -> Delivery:
        return await self.agent.share(thread, {**FIELDS, "n": n}, purposes=["delivery"],
                                      categories=["contact"],
                                      expires_ms=T0 + 365 * DAY_MS)  # fmt: skip

    def redeploy(self) -> None:
        """The vendor moves its inbox and history (same key, same base URL) and says so in its
        document; the old paths are gone."""
        self.vendor.inbox_path, self.vendor.history_path = "/v2/vrm/inbox", "/v2/vrm/history"
        self.transport.add(URL, self.vendor)

    async def stored_history_url(self, thread: bytes) -> str:
        stored = await self.agent.store.get_thread(thread)
        assert stored is not None
        return stored.history_url


@asynccontextmanager
async def world() -> AsyncIterator[World]:
    clock = Clock()
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme",
                      clock=clock)  # fmt: skip
    transport = LosesAnswers(clock=clock)
    transport.add(URL, vendor)
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport, clock=clock)
    try:
        yield World(clock, transport, vendor, agent)
    finally:
        await agent.close()


async def test_comparing_histories_reads_the_expired_document_first() -> None:
    async with world() as w:
        thread = (await w.agent.connect(URL)).thread
        assert (await w.share(thread, "1")).confirmed
        w.redeploy()
        w.clock.now += 2 * DAY_MS  # the document read at first contact lived a day
        assert await w.agent.compare_history(thread) is None  # identical, read at the new URL
        assert await w.stored_history_url(thread) == f"{URL}/v2/vrm/history"


async def test_reconciling_reads_the_expired_document_first() -> None:
    async with world() as w:
        thread = (await w.agent.connect(URL)).thread
        assert (await w.share(thread, "1")).confirmed
        w.redeploy()
        w.clock.now += 2 * DAY_MS
        assert (await w.agent.reconcile(thread)).kind == "equal"


async def test_a_document_still_valid_is_not_read_before_comparing() -> None:
    async with world() as w:
        thread = (await w.agent.connect(URL)).thread
        asked = len(w.transport.requests)
        assert await w.agent.compare_history(thread) is None
        routes = {r.route for r in w.transport.requests[asked:]}
        assert routes == {Route.HISTORY}  # no read of the discovery document


async def test_a_lost_answer_is_looked_up_in_the_history_the_document_names_now() -> None:
    """The share reached the vendor, its answer was lost, a week passed (the share expired in
    the outbox) and the vendor moved meanwhile: the agent reads the vendor's document, finds the
    share in the history at its new URL with its receipt (§8.1-8), and calls it delivered."""
    async with world() as w:
        thread = (await w.agent.connect(URL)).thread
        w.transport.lose = {"data.share"}
        lost = await w.share(thread, "1")
        assert (lost.status, lost.attempts) == ("queued", 1)
        w.transport.lose = set()
        w.redeploy()
        w.clock.now += 8 * DAY_MS
        d2 = await w.share(thread, "2")
        assert [(e.msg_hash, e.status) for e in d2.earlier] == [(lost.msg_hash, "confirmed")]
        assert d2.confirmed, d2.error
        ours = [e.msg_hash for e in await w.agent.history(thread)]
        assert ours == [h.msg_hash for h in await w.vendor.store.history(thread)]
