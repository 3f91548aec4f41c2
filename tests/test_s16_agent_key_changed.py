"""A message to a vendor whose key changed is held, not retried until it expires (§11.10-1).

Before: the vendor, now under another key, answered each delivery with a problem signed by that
key; the agent took it for a bad answer ("retry later") and tried again on every outbox run until
the message expired, and only ``vrm doctor`` said why. Now, when the vendor's discovery document
is signed by that other key too, the message is held in the outbox — never due by the clock —
and the error names both keys and how to accept the new one (``vrm connect URL
--accept-new-key FP``, §11.10-3). Nothing trusts the new key: the relationship keeps the key it
holds, and a problem signed by another key while the document still verifies under ours is
only a bad answer, retried as before.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._cli_helpers import fails, new_home, ok, vendor_host, vrm
from vrmproto import Identity, fingerprint
from vrmproto.binding import DiscoveryDocument
from vrmproto.client import DEFAULT_TERMS, Agent, InvalidResponse, KeyChangedError, RetryPolicy
from vrmproto.client._waiting import WaitReason
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport, Route

URL = "http://acme.test"
FIELDS = {"email": "ada@example.org"}
DAY_MS = 86_400_000


def vendor(store: MemoryStore) -> Endpoint:
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
    return Endpoint(Identity(os.urandom(32)), store=store, policy=policy, name="Acme")


@dataclass
class World:
    agent: Agent
    transport: MemoryTransport
    old: Endpoint
    store: MemoryStore
    thread: bytes

    def inbox_posts(self) -> int:
        return sum(1 for r in self.transport.requests if r.route is Route.INBOX)

    async def share(self) -> object:
        return await self.agent.share(self.thread, FIELDS, purposes=["delivery"],
                                      categories=["contact"], expires_ms=4_000_000_000_000)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    transport = MemoryTransport()
    store = MemoryStore()
    old = vendor(store)
    transport.add(URL, old)
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport)
    try:
        thread = (await agent.connect(URL)).thread
        yield World(agent, transport, old, store, thread)
    finally:
        await agent.close()


async def test_a_share_to_a_vendor_under_a_new_key_is_held_and_says_how_to_accept_it(
    world: World,
) -> None:
    new = vendor(world.store)  # the same vendor, its data kept, now under another key
    world.transport.add(URL, new)
    d = await world.share()
    assert d.status == "queued"  # type: ignore[attr-defined]
    err = d.error  # type: ignore[attr-defined]
    assert isinstance(err, InvalidResponse)
    assert isinstance(err.error, KeyChangedError)
    assert err.error.offered == new.identity.public_key
    assert err.error.pinned == (world.old.identity.public_key,)
    new_fp = fingerprint(new.identity.public_key)
    said = str(err)
    assert fingerprint(world.old.identity.public_key) in said
    assert f"vrm connect {URL} --accept-new-key {new_fp}" in said

    (w,) = await world.agent.waiting()
    assert w.reason is WaitReason.HELD
    assert w.last_error == said

    # what would go behind it is held with it, and says why
    report = await world.agent.update_address({"city": "Paris"})
    (behind,) = report.results
    assert behind.status == "queued"
    assert behind.delivery is not None
    assert str(behind.delivery.error).startswith("held, not retried")
    await world.agent.drop_waiting(behind.delivery.msg_id.hex())

    # not retried by the clock: a run a day later sends nothing
    posts = world.inbox_posts()
    run = await world.agent.run_outbox(world.agent.clock() + DAY_MS)
    assert run.deliveries == ()
    assert world.inbox_posts() == posts

    # nothing trusted the new key
    (view,) = await world.agent.relationships()
    assert view.peer_key == world.old.identity.public_key
    with pytest.raises(KeyChangedError):
        await world.agent.connect(URL)

    # a person's retry tries once more, and holds it again
    again = await world.agent.retry_waiting()
    assert [x.status for x in again.deliveries] == ["queued"]
    assert world.inbox_posts() == posts + 1
    assert (await world.agent.waiting())[0].reason is WaitReason.HELD

    # the person's decision opens a relationship under the new key; the held one can be dropped
    accepted = await world.agent.connect(URL, accept_new_key=new_fp)
    assert accepted.status == "accepted"
    dropped = await world.agent.drop_waiting(w.msg_id.hex())
    assert dropped.status == "dropped"
    assert await world.agent.waiting() == []


class InboxOfAnother(MemoryTransport):
    """The vendor's document verifies under the key we hold; its inbox answers are another
    endpoint's (someone on the path injects them)."""

    def __init__(self, real: MemoryTransport, fake: MemoryTransport) -> None:
        super().__init__()
        self.real, self.fake = real, fake

    async def fetch_discovery(self, base_url: str, expected_key: bytes | None = None, *,
                              role: str | None = None, timeout_s: float | None = None,
                              retry: RetryPolicy | None = None) -> DiscoveryDocument:
        return await self.real.fetch_discovery(base_url, expected_key, role=role,
                                               timeout_s=timeout_s)

    async def post_envelope(self, inbox_url: str, envelope: bytes, *,
                            expected_keys: Collection[bytes] | None = None,
                            ref: bytes | None = None, channel: bytes | None = None,
                            timeout_s: float | None = None,
                            retry: RetryPolicy | None = None) -> list[bytes]:
        return await self.fake.post_envelope(inbox_url, envelope, expected_keys=expected_keys,
                                             ref=ref, channel=channel, timeout_s=timeout_s)


async def test_a_problem_under_another_key_while_the_document_is_ours_is_retried() -> None:
    real, fake = MemoryTransport(), MemoryTransport()
    store = MemoryStore()
    real.add(URL, vendor(store))
    fake.add(URL, vendor(MemoryStore()))
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=real)
    thread = (await agent.connect(URL)).thread
    await agent.close()
    agent = await Agent.open(agent.store, agent.ledger.master,
                             client=InboxOfAnother(real, fake))
    try:
        d = await agent.share(thread, FIELDS, purposes=["delivery"], categories=["contact"],
                              expires_ms=4_000_000_000_000)
        assert d.status == "queued"
        assert not str(d.error).startswith("held")
        (w,) = await agent.waiting()
        assert w.reason is WaitReason.UNREACHABLE  # retried by the schedule, as before
        assert w.next_attempt_ms is not None
        assert w.next_attempt_ms < agent.clock() + DAY_MS
    finally:
        await agent.close()


def test_vrm_share_to_a_vendor_under_a_new_key_exits_5_and_outbox_says_held(
    tmp_path: Path,
) -> None:
    home = new_home(tmp_path)
    with vendor_host("outfitters") as host:
        v = host["outfitters"]
        ok(vrm("connect", v.url, home=home))
        host.stop("outfitters")
        v.identity = Identity(os.urandom(32))
        host.start("outfitters")
        new_fp = fingerprint(v.identity.public_key)
        # held: exit 5, a person decides (the s17 contract; it was 1, as a refusal)
        r = fails(vrm("share", "Wasatch Outfitters", "email=doc@example.org", home=home), 5,
                  "another key", "held")
        assert "⏸ held" in r.stdout
        assert f"--accept-new-key {new_fp}" in " ".join(r.stdout.split())
        assert "`vrm outbox run` delivers it" not in r.stdout
        rows = ok(vrm("outbox", "--json", home=home)).json["pending"]
        assert [row["reason"] for row in rows] == [WaitReason.HELD.value]
        assert f"--accept-new-key {new_fp}" in rows[0]["last_error"]
        r = fails(vrm("share", "Wasatch Outfitters", "phone=1", "--json", home=home), 5,
                  "another key")
        assert (r.json["status"], r.json["held"]) == ("queued", True)
        assert f"--accept-new-key {new_fp}" in r.json["error"]
        r = fails(vrm("address", "set", "city=Paris", home=home), 5, "another key", "held")
        assert "⏸ held" in r.stdout
        assert "will retry" not in r.stdout
