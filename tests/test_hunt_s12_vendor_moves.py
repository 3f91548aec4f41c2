"""A vendor that moves, keeping its key: a new base URL, or a new inbox path in its signed
discovery document.

The agent reads the vendor's discovery document once, at first contact, and keeps the inbox
and history URLs it named for the life of the relationship (``ThreadMeta.inbox``). The spec
says a sender reads the document "before its first message, and again when the document has
expired" (§13.1), and a reader MUST NOT use a cached document after its ``expires``
(§13.1-8). A vendor that moved is then out of reach in every existing relationship: messages
wait in the outbox for the old URL until they expire, and ``vrm connect NEW-URL`` — the one
thing a person can do — answered "already connected" with the old URL and changed nothing. It
now moves the relationship (``Agent._follow``); reading the document again once it expired is
still to do (the first test, a strict xfail).
"""

from __future__ import annotations

import os

import pytest
from _agent_clock import DAY_MS, FIELDS, T0, URL, Clock

from vrmproto import Identity, Money
from vrmproto.client import DEFAULT_TERMS, Agent, Delivery
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport

NEW_URL = "http://acme-new.test"


def vendor(clock: Clock) -> Endpoint:
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme",
                             catalogue=(CatalogueItem("a bike", ("bike",), Money(100, "USD")),))
    return Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme",
                    clock=clock)  # fmt: skip


async def share(agent: Agent, thread: bytes) -> Delivery:
    return await agent.share(thread, FIELDS, purposes=["delivery"], categories=["contact"],
                             expires_ms=T0 + 365 * DAY_MS)  # fmt: skip


@pytest.mark.xfail(strict=True, reason="a vendor that moved its inbox (same key, new signed "
                   "discovery document) is never read again: every message goes to the old URL")
async def test_a_new_inbox_in_the_vendors_document_is_used_once_the_old_one_expired() -> None:
    clock = Clock()
    ep = vendor(clock)
    transport = MemoryTransport(clock=clock)
    transport.add(URL, ep)
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport, clock=clock)
    try:
        thread = (await agent.connect(URL)).thread
        assert (await share(agent, thread)).confirmed
        ep.inbox_path, ep.history_path = "/v2/vrm/inbox", "/v2/vrm/history"  # a redeployment
        transport.add(URL, ep)  # the old paths answer no more; the new document names these
        clock.now += 2 * DAY_MS  # the document read at first contact expired a day ago
        d = await share(agent, thread)
        assert d.confirmed, d.error  # actual: queued for the old inbox, until it expires
    finally:
        await agent.close()


async def test_connecting_to_a_vendor_at_its_new_url_moves_the_relationship() -> None:
    clock = Clock()
    ep = vendor(clock)
    transport = MemoryTransport(clock=clock)
    transport.add(URL, ep)
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport, clock=clock)
    try:
        thread = (await agent.connect(URL)).thread
        transport.remove(URL)
        transport.add(NEW_URL, ep)  # the vendor moved, with its key and its relationships
        again = await agent.connect(NEW_URL)  # what a person does: "it is here now"
        assert again.existing
        assert again.thread == thread
        d = await share(agent, thread)
        assert d.confirmed, d.error  # actual: queued for the old URL, until it expires
    finally:
        await agent.close()
