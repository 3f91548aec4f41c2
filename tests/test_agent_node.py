"""One customer node (issue 9 items 3 and 6): the outgoing API and the inbound agent endpoint on
one ledger, our key in a thread looked up (not searched for), one agent for every outbox round,
idle locks dropped, drafts as typed values, and nothing the node signed or stored opened again
to learn what it already knows."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_client import FakeVendor, now_ms

from vrmproto import MasterSeed, Money, RelationshipEnd, open_envelope
from vrmproto._keys import Context
from vrmproto._messages import Intentcast
from vrmproto._vocab import TermRef, latest
from vrmproto.client import (
    Agent,
    CustomerNode,
    Delivery,
    EndpointClient,
    ProgressEvent,
    RetryPolicy,
)
from vrmproto.client._drafts import (
    AcceptCounterDraft,
    AddressDraft,
    DataRequestDraft,
    EndDraft,
    IntentcastDraft,
    RotateDraft,
    ShareDraft,
    TermsOfferDraft,
    WithdrawDraft,
    decode_draft,
    encode_draft,
)
from vrmproto.client._ledger import Ledger
from vrmproto.client._paths import endpoint_path
from vrmproto.store import MemoryStore, SQLiteStore

ONE = RetryPolicy(attempts=1)


@pytest.fixture
async def vendor() -> AsyncIterator[FakeVendor]:
    v = FakeVendor("Acme")
    await v.start()
    yield v
    await v.stop()


async def _post_end(node: CustomerNode, vendor: FakeVendor, base: str, thread: bytes) -> Any:
    """The vendor ends ``thread`` by a message to the node's endpoint; the post's task."""
    client = EndpointClient(retry=ONE)
    try:
        doc = await client.fetch_discovery(base + endpoint_path(node.ledger.master, thread),
                                           role="customer")  # fmt: skip
    except BaseException:
        await client.close()
        raise
    end = vendor.threads[thread].send(RelationshipEnd(reason="closing"), now=now_ms(),
                                      msg_id=os.urandom(16))  # fmt: skip

    async def post() -> list[bytes]:
        try:
            return await client.post_envelope(doc.inbox, end.message.envelope)
        finally:
            await client.close()

    return asyncio.create_task(post())


async def test_a_vendors_message_waits_for_the_nodes_own_step_in_that_thread(
    vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inbound endpoint takes the ledger's lock, the one the outgoing API takes (§12.8-1)."""
    store = MemoryStore()
    async with await CustomerNode.open(store, os.urandom(32), retry=ONE) as node:
        thread = (await node.agent.connect(vendor.url)).thread
        server = await node.listen()
        asked = asyncio.Event()
        real = node.ledger.lock

        def lock(key: bytes, **kw: Any) -> Any:
            asked.set()
            return real(key, **kw)

        async with node.ledger.lock(thread):  # the node is sending in this thread
            monkeypatch.setattr(node.ledger, "lock", lock)
            post = await _post_end(node, vendor, server.url, thread)
            await asyncio.wait_for(asked.wait(), timeout=5)
            assert _waiting(node.ledger, thread)  # the vendor's step waits for ours
            assert not post.done()
        replies = await asyncio.wait_for(post, timeout=5)
        assert open_envelope(replies[0], now=now_ms()).type == "receipt"
        (view,) = await node.agent.relationships()
        assert view.state == "ended"  # the step's change is not hidden by a stale cache


def _waiting(ledger: Ledger, thread: bytes) -> bool:
    return ledger._locks._locks.get(thread, (None, 0))[1] >= 2  # holder + the vendor's step


async def test_our_key_in_a_thread_is_looked_up_not_searched_for(
    vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread rotated by another process after the node started: one derivation of our key,
    from the thread's meta, not a search over key generations."""
    store = MemoryStore()
    seed = MasterSeed(os.urandom(32))
    async with await CustomerNode.open(store, seed, retry=ONE) as node:
        server = await node.listen()
        async with await Agent.open(store, seed, retry=ONE) as other:  # another vrm process
            thread = (await other.connect(vendor.url)).thread
            for _ in range(3):
                await other.rotate_key(thread)
        await node.round()  # learns the paths of relationships opened meanwhile
        derived: list[int] = []
        real = MasterSeed.pairwise

        def counting(self: MasterSeed, vendor_key: bytes, generation: int = 0) -> Any:
            derived.append(generation)
            return real(self, vendor_key, generation)

        monkeypatch.setattr(MasterSeed, "pairwise", counting)
        replies = await (await _post_end(node, vendor, server.url, thread))
        assert open_envelope(replies[0], now=now_ms()).type == "receipt"
        assert derived == [3]


async def test_the_node_delivers_queued_messages_with_its_one_agent(
    vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore()
    async with await CustomerNode.open(store, os.urandom(32), retry=ONE) as node:
        thread = (await node.agent.connect(vendor.url)).thread
        await vendor.stop()
        queued = await node.agent.end(thread, "closing")
        assert queued.status == "queued"
        await vendor.start(port=vendor.port)
        opened: list[object] = []
        monkeypatch.setattr(Agent, "open", lambda *a, **k: opened.append(a))
        stop = asyncio.Event()
        seen: list[Delivery] = []

        def delivered(d: Delivery) -> None:
            seen.append(d)
            stop.set()

        await asyncio.wait_for(node.run(stop, interval_s=0.2, on_delivery=delivered), 10)
        assert [d.status for d in seen] == ["confirmed"]
        assert opened == []
        assert await node.agent.pending() == []


async def test_the_ledger_keeps_no_lock_for_a_thread_nobody_holds() -> None:
    ledger = Ledger(MemoryStore(), MasterSeed(os.urandom(32)))
    for _ in range(50):
        async with ledger.lock(os.urandom(16)):
            pass
    assert len(ledger._locks) == 0


async def test_sending_a_share_verifies_only_what_the_vendor_sent(
    vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node never opens its own signed bytes again (issue 9 item 6): the share is verified
    once, by the vendor (in this process), and the vendor's receipt once, by us."""
    from vrmproto import _envelope  # noqa: PLC0415

    async with await Agent.open(MemoryStore(), os.urandom(32), retry=ONE) as agent:
        await agent.connect(vendor.url)
        checked: list[bytes] = []
        real = _envelope.verify

        def counting(context: bytes, data: bytes, signature: bytes, key: bytes) -> None:
            if context == Context.MESSAGE:
                checked.append(data)
            real(context, data, signature, key)

        monkeypatch.setattr(_envelope, "verify", counting)
        shared = await agent.share("Acme", {"email": "ada@example.org"}, purposes=["delivery"],
                                   categories=["contact"], expires_ms=now_ms() + 86_400_000)
        assert shared.confirmed
        assert len(checked) == len(set(checked)) == 2


def test_every_kind_of_draft_keeps_what_it_says_when_stored() -> None:
    term = TermRef.of(latest("vrm.no-tracking"))
    body = Intentcast(what="an SUV", reply_by=now_ms() + 60_000, constraints=("no gas",),
                      memberships=(), max_price=Money(30000, "USD"))
    drafts = [
        TermsOfferDraft(msg_id=os.urandom(16), terms=(term,), note="hi", in_reply_to=None,
                        endpoint="http://127.0.0.1:1/r/x"),
        AcceptCounterDraft(msg_id=os.urandom(16)),
        ShareDraft(msg_id=os.urandom(16), fields={"email": "a@b.c"}, purposes=(3,),
                   categories=(2,), expires=now_ms()),
        WithdrawDraft(msg_id=os.urandom(16), shares=(os.urandom(32),), reason=None),
        DataRequestDraft(msg_id=os.urandom(16)),
        AddressDraft(msg_id=os.urandom(16), fields={"street": "1 Main St"}),
        IntentcastDraft(msg_id=os.urandom(16), body=body, reply_by=body.reply_by),
        RotateDraft(msg_id=os.urandom(16), reason="compromise"),
        EndDraft(msg_id=os.urandom(16), reason="bye"),
    ]
    for d in drafts:
        assert decode_draft(encode_draft(d)) == d


async def test_an_intentcast_cut_short_keeps_the_offers_that_had_arrived() -> None:
    """Offers are stored as they arrive (issue 9 item 2): stopping the intentcast while one
    vendor has not answered loses nothing of the one that had."""
    quick = FakeVendor("Quick", price=Money(25000, "USD"))
    slow = FakeVendor("Slow", price=Money(20000, "USD"))
    slow.hold = asyncio.Event()  # its inbox answers only when the test lets it
    await asyncio.gather(quick.start(), slow.start())
    store = MemoryStore()
    seed = os.urandom(32)
    try:
        async with await Agent.open(store, seed, retry=ONE) as agent:
            answered = asyncio.Event()

            def progress(ev: ProgressEvent) -> None:
                if ev.stage == "confirmed":
                    answered.set()

            cast = asyncio.create_task(agent.intentcast(
                "an SUV", vendors=[quick.url, slow.url], deadline_ms=60_000, progress=progress,
            ))  # fmt: skip
            await asyncio.wait_for(answered.wait(), timeout=10)
            cast.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cast
        slow.hold.set()
        async with await Agent.open(store, seed, retry=ONE) as later:  # after a restart
            (offer,) = await later.offers()
            (intent,) = await later.intents()
            assert (offer.vendor, offer.price) == ("Quick", Money(25000, "USD"))
            assert (intent.what, intent.vendors) == ("an SUV", (quick.url, slow.url))
            assert (await later.take_offer(offer)).status == "accepted"
    finally:
        slow.hold.set()
        await asyncio.gather(quick.stop(), slow.stop())


async def test_an_agent_db_of_the_previous_release_opens_with_everything_it_held(
    tmp_path: Path,
) -> None:
    """``tests/data/v2/agent.db`` (written by 25ceebf, scripts/make_v2_fixtures.py) opens with
    this agent: every relationship, its verified history, the queued share and the draft
    waiting behind it (now a typed draft the outbox can sign)."""
    db = tmp_path / "agent.db"
    shutil.copyfile(Path(__file__).parent / "data" / "v2" / "agent.db", db)
    seed = hashlib.sha256(b"vrmproto v2 fixture: customer").digest()
    store = await SQLiteStore.open(db)
    try:
        async with await Agent.open(store, seed, retry=ONE) as agent:
            views = await agent.relationships()
            assert {(v.vendor, v.kind, v.state) for v in views} >= {
                ("Acme", "vendor", "agreed"), ("Budget", "vendor", "countered"),
                ("Closed", "vendor", "agreed"),
            }  # fmt: skip
            assert any(v.kind == "intent" for v in views)
            for v in views:
                assert await agent.history(v.thread)  # every link and signature verifies
            (closed,) = [v for v in views if v.vendor == "Closed"]
            assert closed.pending == 2  # the share in the outbox, and the draft behind it
            (draft,) = await store.drafts(closed.thread)
            assert isinstance(decode_draft(draft.payload), ShareDraft)
            (item,) = await agent.pending()
            assert await store.save_point(closed.thread, item.msg_hash) is not None
    finally:
        await store.close()
