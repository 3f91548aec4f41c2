"""A vendor that moves, keeping its key: a new base URL, or a new inbox path in its signed
discovery document.

The agent keeps the inbox and history URLs the vendor's discovery document named
(``ThreadMeta.inbox``). The spec says a sender reads the document "before its first message,
and again when the document has expired" (§13.1), and a reader MUST NOT use a cached document
after its ``expires`` (§13.1-8). Once the agent read it only at first contact, so a vendor that
moved was out of reach in every existing relationship: messages waited in the outbox for the
old URL until they expired, and ``vrm connect NEW-URL`` answered "already connected" with the
old URL. Now ``vrm connect NEW-URL`` moves the relationship (``Agent._follow``), and the agent
reads the document again, pinned to the vendor's key, when the one it read has expired and when
the inbox answers that it is not there (:mod:`vrmproto.client._moved`).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from _agent_clock import DAY_MS, FIELDS, T0, URL, Clock

from vrmproto import Identity, Money
from vrmproto.binding import discovery_url
from vrmproto.client import DEFAULT_TERMS, Agent, Delivery
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy, serve
from vrmproto.store import MemoryStore, SQLiteStore
from vrmproto.testing.transport import MemoryTransport, Route, _where

NEW_URL = "http://acme-new.test"


def vendor(clock: Clock) -> Endpoint:
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme",
                             catalogue=(CatalogueItem("a bike", ("bike",), Money(100, "USD")),))
    return Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme",
                    clock=clock)  # fmt: skip


@asynccontextmanager
async def world() -> AsyncIterator[tuple[Clock, Endpoint, MemoryTransport, Agent]]:
    """A vendor at ``URL`` on a memory transport, and an agent; the agent is closed after."""
    clock = Clock()
    ep = vendor(clock)
    transport = MemoryTransport(clock=clock)
    transport.add(URL, ep)
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport, clock=clock)
    try:
        yield clock, ep, transport, agent
    finally:
        await agent.close()


async def share(agent: Agent, thread: bytes) -> Delivery:
    return await agent.share(thread, FIELDS, purposes=["delivery"], categories=["contact"],
                             expires_ms=T0 + 365 * DAY_MS)  # fmt: skip


async def test_a_new_inbox_in_the_vendors_document_is_used_once_the_old_one_expired() -> None:
    async with world() as (clock, ep, transport, agent):
        thread = (await agent.connect(URL)).thread
        assert (await share(agent, thread)).confirmed
        ep.inbox_path, ep.history_path = "/v2/vrm/inbox", "/v2/vrm/history"  # a redeployment
        transport.add(URL, ep)  # the old paths answer no more; the new document names these
        clock.now += 2 * DAY_MS  # the document read at first contact expired a day ago
        transport.requests.clear()
        d = await share(agent, thread)
        assert d.confirmed, d.error  # before: queued for the old inbox, until it expired
        # Read again before anything went to the old inbox: not used after it expired.
        assert [r.route for r in transport.requests][:2] == [Route.DISCOVERY, Route.INBOX]
        assert all(r.url.startswith(URL + "/v2/") for r in transport.requests[1:])
        stored = await agent.store.get_thread(thread)
        assert stored is not None
        assert stored.inbox == URL + "/v2/vrm/inbox"  # kept: the next process uses it too
        assert stored.history_url == URL + "/v2/vrm/history"


async def test_connecting_to_a_vendor_at_its_new_url_moves_the_relationship() -> None:
    async with world() as (_, ep, transport, agent):
        thread = (await agent.connect(URL)).thread
        transport.remove(URL)
        transport.add(NEW_URL, ep)  # the vendor moved, with its key and its relationships
        again = await agent.connect(NEW_URL)  # what a person does: "it is here now"
        assert again.existing
        assert again.thread == thread
        d = await share(agent, thread)
        assert d.confirmed, d.error  # actual: queued for the old URL, until it expires


async def test_a_document_still_valid_is_not_read_again() -> None:
    """The document is read again only when needed: a share a day costs no discovery GET."""
    async with world() as (clock, _, transport, agent):
        thread = (await agent.connect(URL)).thread
        transport.requests.clear()
        for _ in range(3):
            clock.now += 3_600_000
            assert (await share(agent, thread)).confirmed
        assert Route.DISCOVERY not in {r.route for r in transport.requests}


async def test_a_document_signed_by_another_key_moves_nothing() -> None:
    """Someone else at the vendor's URL, naming other paths: the document read again doesn't
    verify under the relationship's key, so the message stays queued for the vendor we know
    (§11.10-1) — a new key is a person's decision, not the agent's."""
    async with world() as (clock, _, transport, agent):
        thread = (await agent.connect(URL)).thread
        other = vendor(clock)
        other.inbox_path, other.history_path = "/v2/vrm/inbox", "/v2/vrm/history"
        transport.add(URL, other)
        clock.now += 2 * DAY_MS
        d = await share(agent, thread)
        assert d.status == "queued"
        stored = await agent.store.get_thread(thread)
        assert stored is not None
        assert stored.inbox == URL + "/vrm/inbox"
        assert not [r for r in transport.requests if r.url.startswith(URL + "/v2/")]


async def test_an_inbox_gone_from_its_path_is_found_through_the_document(tmp_path: Path) -> None:
    """Over real HTTP on 127.0.0.1: the vendor redeploys with a new inbox path on the same
    origin, and the agent, restarted (it read no document in this process), posts to the old
    path, is answered 404, reads the document again, and delivers at the new inbox."""
    key, store = os.urandom(32), MemoryStore()

    def redeployed(inbox: str = "/vrm/inbox", history: str = "/vrm/history") -> Endpoint:
        return Endpoint(Identity(key), store=store, name="Acme", inbox_path=inbox,
                        history_path=history,
                        policy=ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS]))

    ep = redeployed()
    server = await serve(ep)
    seed = os.urandom(32)
    async with await SQLiteStore.open(tmp_path / "agent.db") as agent_store:
        agent = await Agent.open(agent_store, seed)
        try:
            thread = (await agent.connect(server.url)).thread
            assert (await share_now(agent, thread)).confirmed
        finally:
            await agent.close()
    port = server.port
    await server.close()
    server = await serve(redeployed("/v2/vrm/inbox", "/v2/vrm/history"), port=port)
    try:
        async with await SQLiteStore.open(tmp_path / "agent.db") as agent_store:
            agent = await Agent.open(agent_store, seed)
            try:
                d = await share_now(agent, thread)
                assert d.confirmed, d.error
                assert d.attempts == 1  # found on its first delivery, not after a backoff
                stored = await agent.store.get_thread(thread)
                assert stored is not None
                assert stored.inbox == f"{server.url}/v2/vrm/inbox"
            finally:
                await agent.close()
    finally:
        await server.close()


async def share_now(agent: Agent, thread: bytes) -> Delivery:
    return await agent.share(thread, FIELDS, purposes=["delivery"], categories=["contact"],
                             expires_ms=int(time.time() * 1000) + 365 * DAY_MS)  # fmt: skip


async def test_an_expired_document_that_cant_be_read_is_tried_again_a_minute_later() -> None:
    """The document expired and can't be read (its URL fails): the message still goes to the
    inbox known, and the next read is tried a minute later, not before every message."""
    async with world() as (clock, _, transport, agent):
        thread = (await agent.connect(URL)).thread
        transport._routes.pop(_where(discovery_url(URL)))  # the document's URL answers no more
        clock.now += 2 * DAY_MS
        transport.requests.clear()

        async def reads() -> int:
            assert (await share(agent, thread)).confirmed
            n = sum(r.url == discovery_url(URL) for r in transport.requests)
            transport.requests.clear()
            return n

        assert [await reads(), await reads()] == [1, 0]
        clock.now += 61_000
        assert await reads() == 1
