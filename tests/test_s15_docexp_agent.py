"""The vendor document's expiry is the thread's, stored: a restarted agent (every ``vrm``
command is a new process) does not use a document after its ``expires`` (spec §13.1-8).

Before, the expiry lived in the memory of the process that read the document
(``vrmproto.client._moved.Documents``): an agent restarted after the document expired went on
posting to the inbox it named for as long as that inbox answered 200 — a vendor that moved
its inbox but kept the old one running was never followed. Now every read of the document for
a thread stores its expiry in the thread's record (first contact, an intentcast, ``vrm connect``
of a vendor we know, the read again before a delivery), and the delivery path reads it from
there (:mod:`vrmproto.client._moved`). The clocks of the agents and the vendors are the test's.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

from _agent_clock import DAY_MS, FIELDS, T0, URL, Clock

from vrmproto import Identity, Money
from vrmproto.client import DEFAULT_TERMS, Agent, Delivery, Transport
from vrmproto.client._meta import ThreadMeta
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy, Response, serve
from vrmproto.store import MemoryStore, SQLiteStore, Store, ThreadKind
from vrmproto.testing.store_contract import T1, thread_record
from vrmproto.testing.transport import MemoryTransport, Route

POLICY = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme",
                         catalogue=(CatalogueItem("a bike", ("bike",), Money(100, "USD")),))


class Vendor(Endpoint):
    """A vendor endpoint that counts the discovery documents it serves and the envelopes its
    inbox takes (both HTTP and the lean connections call these)."""

    documents = 0
    posts = 0

    def discovery(self) -> tuple[bytes, str]:
        self.documents += 1
        return super().discovery()

    async def handle_inbox(self, data: bytes, *, client: str = "") -> Response:
        self.posts += 1
        return await super().handle_inbox(data, client=client)


def vendor(key: bytes, store: Store, clock: Clock, **paths: str) -> Vendor:
    return Vendor(Identity(key), store=store, policy=POLICY, name="Acme", clock=clock, **paths)


@asynccontextmanager
async def agent_on(path: Path, seed: bytes, clock: Clock, client: Transport | None = None
                   ) -> AsyncIterator[Agent]:  # fmt: skip
    """An agent process on the data at ``path``: a new Agent object on the file, closed after."""
    async with await SQLiteStore.open(path) as store:
        agent = await Agent.open(store, seed, clock=clock, client=client)
        try:
            yield agent
        finally:
            await agent.close()


async def share(agent: Agent, thread: bytes) -> Delivery:
    return await agent.share(thread, FIELDS, purposes=["delivery"], categories=["contact"],
                             expires_ms=T0 + 365 * DAY_MS)  # fmt: skip


async def doc_expires(agent: Agent, thread: bytes) -> int | None:
    stored = await agent.store.get_thread(thread)
    assert stored is not None
    return stored.doc_expires_ms


async def test_a_restarted_agent_reads_the_expired_document_and_follows_the_new_inbox(
    tmp_path: Path,
) -> None:
    """Over real HTTP on 127.0.0.1. The vendor moves its inbox to a new deployment and names it
    in its document, while its old inbox still takes messages (200). An agent restarted after
    the document it stored expired reads the document again before it delivers, and delivers
    to the new inbox; the one after it, while that document is valid, reads nothing."""
    clock, key, vendor_store = Clock(), os.urandom(32), MemoryStore()
    old = vendor(key, vendor_store, clock)
    new = vendor(key, vendor_store, clock, inbox_path="/v2/vrm/inbox",
                 history_path="/v2/vrm/history")  # fmt: skip
    old_server, new_server = await serve(old), await serve(new)
    seed, data = os.urandom(32), tmp_path / "agent.db"
    try:
        async with agent_on(data, seed, clock) as agent:
            thread = (await agent.connect(old_server.url)).thread
            assert (await share(agent, thread)).confirmed
            assert await doc_expires(agent, thread) == T0 + DAY_MS

        # The vendor's document now names the new deployment's inbox; the old inbox still
        # answers 200. The document the agent read expires a day before the next command.
        old.inbox_path = f"{new_server.url}/v2/vrm/inbox"
        old.history_path = f"{new_server.url}/v2/vrm/history"
        clock.now += 2 * DAY_MS
        documents, old_posts = old.documents, old.posts
        async with agent_on(data, seed, clock) as agent:
            d = await share(agent, thread)
            assert d.confirmed, d.error
            assert old.documents == documents + 1  # read again before anything was posted
            assert old.posts == old_posts  # before: posted to the old inbox, which took it
            assert new.posts >= 1
            stored = await agent.store.get_thread(thread)
            assert stored is not None
            assert stored.inbox == f"{new_server.url}/v2/vrm/inbox"
            assert stored.history_url == f"{new_server.url}/v2/vrm/history"
            assert stored.doc_expires_ms == clock.now + DAY_MS

        clock.now += DAY_MS // 2  # another command, the stored document still valid
        documents, new_posts = old.documents, new.posts
        async with agent_on(data, seed, clock) as agent:
            assert (await share(agent, thread)).confirmed
        assert old.documents == documents  # no read: its expiry was stored with the thread
        assert (old.posts, new.posts) == (old_posts, new_posts + 1)
    finally:
        await old_server.close()
        await new_server.close()


def world() -> tuple[Clock, MemoryTransport, bytes]:
    """A vendor at ``URL`` on a memory transport, and an agent's seed (its processes:
    :func:`agent_on`)."""
    clock = Clock()
    transport = MemoryTransport(clock=clock)
    transport.add(URL, vendor(os.urandom(32), MemoryStore(), clock))
    return clock, transport, os.urandom(32)


async def test_a_thread_of_unknown_expiry_has_its_document_read_once(tmp_path: Path) -> None:
    """A thread stored before schema 11 (expiry None): the document is read before its next
    delivery, and its expiry stored; the next command reads nothing."""
    data = tmp_path / "agent.db"
    clock, transport, seed = world()
    async with agent_on(data, seed, clock, transport) as agent:
        thread = (await agent.connect(URL)).thread
        assert await doc_expires(agent, thread) == T0 + DAY_MS
    with closing(sqlite3.connect(data, isolation_level=None)) as conn:
        conn.execute("UPDATE threads SET doc_expires_ms = NULL")  # as schema 11 finds it
    clock.now += 3_600_000
    async with agent_on(data, seed, clock, transport) as agent:
        assert await doc_expires(agent, thread) is None
        transport.requests.clear()
        assert (await share(agent, thread)).confirmed
        assert [r.route for r in transport.requests][:2] == [Route.DISCOVERY, Route.INBOX]
        assert await doc_expires(agent, thread) == T0 + DAY_MS  # the vendor's cached one
    async with agent_on(data, seed, clock, transport) as agent:
        transport.requests.clear()
        assert (await share(agent, thread)).confirmed
        assert Route.DISCOVERY not in {r.route for r in transport.requests}


async def test_connecting_again_stores_the_document_read(tmp_path: Path) -> None:
    """``vrm connect URL`` of a vendor we have a relationship with reads its document: its
    expiry is stored even where the document names the same inbox."""
    clock, transport, seed = world()
    async with agent_on(tmp_path / "agent.db", seed, clock, transport) as agent:
        thread = (await agent.connect(URL)).thread
        clock.now += DAY_MS  # the vendor signs a new document after half a day
        again = await agent.connect(URL)
        assert again.existing
        assert await doc_expires(agent, thread) == T0 + 2 * DAY_MS


async def test_an_intentcast_thread_stores_the_document_read(tmp_path: Path) -> None:
    clock, transport, seed = world()
    async with agent_on(tmp_path / "agent.db", seed, clock, transport) as agent:
        result = await agent.intentcast("a bike", vendors=[URL], deadline_ms=10_000)
        assert result.report.counts()["confirmed"] == 1
        (t,) = await agent.store.threads(kind=ThreadKind.INTENT)
        assert t.doc_expires_ms == T0 + DAY_MS


def test_the_working_copy_keeps_every_field_of_the_record() -> None:
    """``ThreadMeta`` reads the expiry from the record and writes it back (a step's Commit
    rewrites the thread record: it must not drop it)."""
    for expires in (T0 + DAY_MS, None):
        r = thread_record(T1, generation=2, last_activity_ms=9, last_problem="refused",
                          doc_expires_ms=expires)  # fmt: skip
        assert ThreadMeta.of(r).record(T1) == r
