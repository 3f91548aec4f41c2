"""The customer's agent end to end, over HTTP, against core-built vendors (spec §5, §8, §12)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_client import DELETE_90, NO_THIRD_PARTY, NO_TRACKING, FakeVendor, ServerVendor

from vrmproto import (
    DataErased,
    DataRecord,
    DataShare,
    Entry,
    FieldsContent,
    History,
    Money,
    Problem,
    ProtocolError,
    Receipt,
    TermsOffer,
    sign_message,
)
from vrmproto.client import Agent, PeerProblemError, Queued, RetryPolicy, Unreachable
from vrmproto.server import CatalogueItem
from vrmproto.store import MemoryStore, SQLiteStore

DAY_MS = 86_400_000


def clock() -> int:
    return time.time_ns() // 1_000_000


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return clock() + self.offset


@pytest.fixture
async def vendors() -> AsyncIterator[dict[str, FakeVendor]]:
    record = DataRecord(field="email", value="ada@example.org", category=2, source="provided",
                        collected=clock(), purposes=(3,))
    vs = {
        "acme": FakeVendor("Acme", records=(record,)),
        "strict": FakeVendor("Strict", accepts=("vrm.no-tracking",)),
        "counter": FakeVendor("Counter", accepts=("vrm.no-tracking",),
                              counter=(NO_TRACKING,)),
    }
    await asyncio.gather(*(v.start() for v in vs.values()))
    yield vs
    await asyncio.gather(*(v.stop() for v in vs.values()))


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    a = await Agent.open(MemoryStore(), os.urandom(32), fanout_retry=RetryPolicy(attempts=1),
                         retry=RetryPolicy(attempts=1))
    yield a
    await a.close()


def in_a_year() -> int:
    return clock() + 365 * DAY_MS


# -- terms (§5.2) -------------------------------------------------------------------------------


async def test_connect_accepted(agent: Agent, vendors: dict[str, FakeVendor]) -> None:
    acme = vendors["acme"]
    c = await agent.connect(acme.url)
    assert c.status == "accepted"
    assert c.vendor == "Acme"
    assert c.terms == (NO_TRACKING, NO_THIRD_PARTY)
    rel = acme.threads[c.thread]
    assert rel.agreement == c.agreement
    assert rel.state.value == "agreed"
    # the customer's key is pairwise: derived for this vendor, not reused with another
    c2 = await agent.connect(vendors["counter"].url, [NO_TRACKING])
    assert vendors["counter"].threads[c2.thread].peer_key != rel.peer_key
    (view,) = [v for v in await agent.relationships() if v.thread == c.thread]
    assert (view.vendor, view.state, view.terms, view.pending) == (
        "Acme", "agreed", (NO_TRACKING, NO_THIRD_PARTY), 0)


async def test_connect_rejected(agent: Agent, vendors: dict[str, FakeVendor]) -> None:
    c = await agent.connect(vendors["strict"].url, [NO_TRACKING, DELETE_90])
    assert c.status == "rejected"
    assert c.refused == ("vrm.delete-after",)
    assert c.reason
    assert c.counter is None
    (view,) = await agent.relationships()
    assert view.state == "rejected"


async def test_counter_accepted(agent: Agent, vendors: dict[str, FakeVendor]) -> None:
    c = await agent.connect(vendors["counter"].url)
    assert c.status == "countered"
    assert c.counter == (NO_TRACKING,)
    assert c.refused == ("vrm.no-third-party",)
    again = await agent.accept_counter(c.thread)
    assert again.status == "accepted"
    assert again.terms == (NO_TRACKING,)
    assert vendors["counter"].threads[c.thread].terms == (NO_TRACKING,)


async def test_counter_declined_ends_it(agent: Agent, vendors: dict[str, FakeVendor]) -> None:
    c = await agent.connect(vendors["counter"].url)
    d = await agent.decline_counter(c.thread)
    assert d.confirmed
    assert vendors["counter"].threads[c.thread].state.value == "ended"
    with pytest.raises(ProtocolError):
        await agent.accept_counter(c.thread)  # nothing more in an ended relationship


async def test_connect_to_a_vendor_that_is_down(agent: Agent, vendors: dict[str, FakeVendor]
                                                ) -> None:
    url = vendors["acme"].url
    await vendors["acme"].stop()
    with pytest.raises(Unreachable):
        await agent.connect(url)
    assert await agent.relationships() == []


# -- data (§5.3) --------------------------------------------------------------------------------


async def test_share_withdraw_and_request_data(agent: Agent, vendors: dict[str, FakeVendor]
                                               ) -> None:
    acme = vendors["acme"]
    c = await agent.connect(acme.url)
    shared = await agent.share("Acme", {"email": "ada@example.org"}, purposes=["delivery"],
                               categories=["contact"], expires_ms=in_a_year())
    assert shared.confirmed
    got = acme.received[-1]
    assert isinstance(got.message.body, DataShare)
    assert got.content == FieldsContent(fields={"email": "ada@example.org"})
    assert got.message.body.purposes == (3,)
    assert got.message.body.categories == (2,)
    assert got.message.hash == shared.msg_hash

    (view,) = await agent.relationships()
    assert [h for h, _ in view.shares] == [shared.msg_hash]

    withdrawn = await agent.withdraw(acme.url, [shared.msg_hash], reason="changed my mind")
    (erased,) = withdrawn.reply_bodies()
    assert isinstance(erased, DataErased)
    assert erased.shares == (shared.msg_hash,)
    (view,) = await agent.relationships()
    assert view.shares == ()

    records = await agent.request_data(c.thread.hex())
    assert records == acme.records
    assert await agent.compare_history(c.thread) is None


async def test_refusal_is_raised_and_recorded(agent: Agent, vendors: dict[str, FakeVendor]
                                              ) -> None:
    acme = vendors["acme"]
    await agent.connect(acme.url)
    acme.refuse_next = Problem.NO_AGREEMENT
    with pytest.raises(PeerProblemError) as info:
        await agent.share("Acme", {"email": "a@b.c"}, purposes=[3], categories=[2],
                          expires_ms=in_a_year())
    assert info.value.code == "no_agreement"
    assert info.value.status == 422
    (view,) = await agent.relationships()
    assert view.last_problem.startswith("no_agreement")
    assert view.pending == 0  # a verified refusal is final: not retried


async def test_a_problem_that_may_be_retried_is_not_final(
    agent: Agent, vendors: dict[str, FakeVendor]
) -> None:
    acme = vendors["acme"]
    await agent.connect(acme.url)
    acme.refuse_next = Problem.CLOCK_SKEW  # retry: yes (Table 9-1, §9.1-9)
    d = await agent.share("Acme", {"email": "a@b.c"}, purposes=[3], categories=[2],
                          expires_ms=in_a_year())
    assert d.status == "queued"
    assert isinstance(d.error, PeerProblemError)
    assert d.error.code == "clock_skew"
    run = await agent.run_outbox(now=clock() + DAY_MS)
    assert run.counts()["confirmed"] == 1
    assert isinstance(acme.received[-1].message.body, DataShare)


async def test_request_data_while_the_vendor_is_down_is_queued(
    agent: Agent, vendors: dict[str, FakeVendor]
) -> None:
    acme = vendors["acme"]
    await agent.connect(acme.url)
    await acme.stop()
    with pytest.raises(Queued):
        await agent.request_data("Acme")
    await acme.start(port=acme.port)
    run = await agent.run_outbox(now=clock() + DAY_MS)
    assert run.confirmed == 2  # the request, then our receipt for the data.return (§5.6.1-2)
    d, ack = run.deliveries
    assert [type(b).__name__ for b in d.reply_bodies()] == ["DataReturn"]
    assert acme.received[-1].message.body == Receipt(ack=d.replies[0].message.hash)
    assert ack.msg_hash == acme.received[-1].message.hash


# -- intentcasting (§5.4) -----------------------------------------------------------------------


async def test_intentcast_ranked_offers_and_take_offer(agent: Agent) -> None:
    prices = {"Avis": 30_000, "Budget": 10_000, "Hertz": 20_000}
    vs = [FakeVendor(n, price=Money(p, "USD")) for n, p in prices.items()]
    vs.append(FakeVendor("Nobody"))  # declines
    await asyncio.gather(*(v.start() for v in vs))
    try:
        await agent.connect(vs[0].url)  # an existing pairwise relationship with Avis
        result = await agent.intentcast(
            "a 4-wheel-drive SUV", where="Park City", start=clock(), end=clock() + 5 * DAY_MS,
            constraints=["no prepaid gas"], memberships=["Hertz 1 Club"],
            max_price=Money(50_000, "USD"), vendors=[v.url for v in vs], deadline_ms=10_000,
        )
        assert [o.vendor for o in result.offers] == ["Budget", "Hertz", "Avis"]
        assert [o.price.amount for o in result.offers] == [10_000, 20_000, 30_000]
        assert result.declines == (("Nobody", "nothing available"),)
        assert result.report.counts()["confirmed"] == 4
        # one throw-away key for the whole intentcast, unlinkable to the pairwise key
        senders = {v.threads[o.thread].peer_key for v in vs for o in result.offers
                   if o.thread in v.threads}
        assert len(senders) == 1
        avis_pairwise = next(r.peer_key for r in vs[0].threads.values() if r.agreement)
        assert senders != {avis_pairwise}

        best = result.offers[0]
        taken = await agent.take_offer(best)
        assert taken.status == "accepted"
        budget = vs[1]
        (offer_msg,) = [r.message for r in budget.received
                        if r.message.thread == taken.thread and r.message.type == "terms.offer"]
        assert isinstance(offer_msg.body, TermsOffer)
        assert offer_msg.body.in_reply_to == best.hash
        assert offer_msg.sender != next(iter(senders))  # now the pairwise key, not the intent's
        kinds = {v.kind for v in await agent.relationships()}
        assert kinds == {"vendor", "intent"}
    finally:
        await asyncio.gather(*(v.stop() for v in vs))


async def test_intentcast_stops_at_its_deadline() -> None:
    fast = FakeVendor("Fast", price=Money(100, "EUR"))
    slow = FakeVendor("Slow", price=Money(50, "EUR"))
    slow.hold = asyncio.Event()
    await fast.start()
    await slow.start()
    now = Clock()
    agent = await Agent.open(MemoryStore(), os.urandom(32), clock=now)
    try:
        t0 = time.perf_counter()
        result = await agent.intentcast("bread", vendors=[fast.url, slow.url], deadline_ms=300)
        assert time.perf_counter() - t0 < 1.5
        assert [o.vendor for o in result.offers] == ["Fast"]
        assert [r.status for r in result.report.results] == ["confirmed", "queued"]
        now.offset = DAY_MS  # long after reply_by: the queued intentcast can only be dropped
        run = await agent.run_outbox()
        assert run.counts()["dropped"] == 1
        assert await agent.pending() == []
    finally:
        slow.hold.set()
        await agent.close()
        await fast.stop()
        await slow.stop()


# -- control and history (§2.6, §5.6, §8) ------------------------------------------------------


async def test_rotate_key_then_keep_going(agent: Agent, vendors: dict[str, FakeVendor]) -> None:
    acme = vendors["acme"]
    c = await agent.connect(acme.url)
    old = acme.threads[c.thread].peer_key
    d = await agent.rotate_key(c.thread)
    assert d.confirmed
    new = acme.threads[c.thread].peer_key
    assert new != old
    (view,) = await agent.relationships()
    assert view.local_key == new
    assert view.generation == 1
    shared = await agent.share(c.thread, {"phone": "555-0100"}, purposes=[4], categories=[2],
                               expires_ms=in_a_year())
    assert shared.confirmed
    assert acme.received[-1].message.sender == new
    assert await agent.compare_history(c.thread) is None
    # a new relationship with the same vendor uses the key now in use, not the rotated one
    c2 = await agent.connect(acme.url)
    assert acme.threads[c2.thread].peer_key == new


async def test_end(agent: Agent, vendors: dict[str, FakeVendor]) -> None:
    c = await agent.connect(vendors["acme"].url)
    assert (await agent.end(c.thread, "moving away")).confirmed
    (view,) = await agent.relationships()
    assert view.state == "ended"
    assert vendors["acme"].threads[c.thread].state.value == "ended"


def logged_something_else(vendor: FakeVendor, thread: bytes, entries: list[Entry], *, at: int
                          ) -> History:
    """The vendor's history with another message than ours at index ``at``: a fork (§8.3-6)."""
    forged = History(entries[:at])
    other = sign_message(Receipt(ack=entries[at - 1].msg_hash), identity=vendor.identity,
                         recipient=vendor.threads[thread].peer_key, thread=thread,
                         prev=entries[at - 1].msg_hash, now=clock(), msg_id=os.urandom(16))
    forged.append(other.hash, other.envelope, outgoing=True)
    return forged


async def test_history_compare_equal_and_diverged(agent: Agent, vendors: dict[str, FakeVendor]
                                                  ) -> None:
    acme = vendors["acme"]
    c = await agent.connect(acme.url)
    await agent.share(c.thread, {"email": "a@b.c"}, purposes=[3], categories=[2],
                      expires_ms=in_a_year())
    ours = await agent.history(c.thread)
    assert [e.outgoing for e in ours] == [True, False, False, True, True, False]
    assert await agent.compare_history(c.thread) is None

    rel = acme.threads[c.thread]
    entries = list(rel.history.entries())

    rel.history = History(entries[:-1])  # the vendor lost its last entry
    div = await agent.compare_history(c.thread)
    assert div is not None
    assert (div.index, div.kind) == (5, "ahead")

    rel.history = logged_something_else(acme, c.thread, entries, at=3)
    div = await agent.compare_history(c.thread)
    assert div is not None
    assert (div.index, div.kind) == (3, "fork")
    assert div.ours is not None
    assert div.ours.msg_hash == ours[3].msg_hash

    bad = bytearray(entries[1].envelope)
    bad[-3] ^= 1  # links still hold (they cover hashes); the envelope no longer verifies
    rel.history = History([entries[0], replace(entries[1], envelope=bytes(bad)), *entries[2:]])
    with pytest.raises(ProtocolError):
        await agent.compare_history(c.thread)


# -- durability (§12) ---------------------------------------------------------------------------


async def test_restart_from_sqlite_keeps_relationships(tmp_path: Path,
                                                       vendors: dict[str, FakeVendor]) -> None:
    seed = os.urandom(32)
    acme = vendors["acme"]
    store = await SQLiteStore.open(tmp_path / "agent.db")
    async with await Agent.open(store, seed) as agent:
        c = await agent.connect(acme.url)
        shared = await agent.share("Acme", {"email": "a@b.c"}, purposes=[3], categories=[2],
                                   expires_ms=in_a_year())
        await agent.rotate_key("Acme")
        await acme.stop()
        queued = await agent.update_address({"city": "Oslo"})
        assert len(queued.queued) == 1
    await store.close()

    store = await SQLiteStore.open(tmp_path / "agent.db")
    try:
        with pytest.raises(ValueError, match="another master seed"):
            await Agent.open(store, os.urandom(32))
        async with await Agent.open(store, seed) as agent:
            (view,) = await agent.relationships()
            assert (view.thread, view.vendor, view.state, view.generation) == (
                c.thread, "Acme", "agreed", 1)
            assert [h for h, _ in view.shares] == [shared.msg_hash]
            assert view.pending == 1
            await acme.start(port=acme.port)
            run = await agent.run_outbox(now=clock() + DAY_MS)
            assert run.confirmed == 1
            assert acme.received[-1].content == FieldsContent(fields={"city": "Oslo"})
            assert (await agent.update_address({"city": "Bergen"})).counts()["confirmed"] == 1
            assert await agent.compare_history(c.thread) is None
            assert len(await agent.history("Acme")) == 12
    finally:
        await store.close()


def copy_database(source: Path, target: Path) -> None:
    """A file-level backup: the database file and its write-ahead log, as they are."""
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


async def test_after_restoring_a_backup_the_agent_adopts_what_it_lost(
    tmp_path: Path, vendors: dict[str, FakeVendor]
) -> None:
    """§8.3-3, §8.3-4: restored from a backup taken after connecting, the agent is behind the
    vendor; reconciling adopts every entry it lost (a rotation of its own key among them), and
    the relationship goes on from there."""
    seed = os.urandom(32)
    acme = vendors["acme"]
    live, backup = tmp_path / "agent.db", tmp_path / "backup.db"
    store = await SQLiteStore.open(live)
    async with await Agent.open(store, seed) as agent:
        c = await agent.connect(acme.url)
    await store.close()
    await asyncio.to_thread(copy_database, live, backup)
    store = await SQLiteStore.open(live)
    async with await Agent.open(store, seed) as agent:
        first = await agent.share("Acme", {"email": "a@b.c"}, purposes=[3], categories=[2],
                                  expires_ms=in_a_year())
        await agent.rotate_key("Acme")
        await agent.share("Acme", {"phone": "555"}, purposes=[3], categories=[2],
                          expires_ms=in_a_year())
        full = await agent.history(c.thread)
        (before,) = await agent.relationships()
    await store.close()

    store = await SQLiteStore.open(backup)
    try:
        async with await Agent.open(store, seed) as agent:
            kept = len(await agent.history(c.thread))
            assert 0 < kept < len(full)
            div = await agent.compare_history(c.thread)
            assert div is not None
            assert (div.index, div.kind) == (kept, "behind")
            done = await agent.reconcile(c.thread)
            assert (done.kind, done.adopted, done.stopped) == ("adopted", len(full) - kept, None)
            assert await agent.history(c.thread) == full
            (view,) = await agent.relationships()
            assert (view.state, view.generation, view.local_key, view.shares) == (
                before.state, 1, before.local_key, before.shares)
            assert first.msg_hash in dict(view.shares)
            assert (await agent.reconcile(c.thread)).kind == "equal"
            again = await agent.share("Acme", {"city": "Oslo"}, purposes=[3], categories=[2],
                                      expires_ms=in_a_year())
            assert again.status == "confirmed"
            assert await agent.compare_history(c.thread) is None
    finally:
        await store.close()


async def test_reconcile_adopts_nothing_past_a_fork(agent: Agent,
                                                    vendors: dict[str, FakeVendor]) -> None:
    """§8.3-5, §8.3-6: when the vendor is behind, or logged something we never accepted, there
    is nothing to adopt; our history stays as it was."""
    acme = vendors["acme"]
    c = await agent.connect(acme.url)
    await agent.share(c.thread, {"email": "a@b.c"}, purposes=[3], categories=[2],
                      expires_ms=in_a_year())
    ours = await agent.history(c.thread)
    rel = acme.threads[c.thread]
    entries = list(rel.history.entries())
    rel.history = History(entries[:-1])
    done = await agent.reconcile(c.thread)
    assert (done.kind, done.adopted) == ("ahead", 0)
    rel.history = logged_something_else(acme, c.thread, entries, at=3)
    done = await agent.reconcile(c.thread)
    assert (done.kind, done.adopted) == ("fork", 0)
    assert done.divergence is not None
    assert done.divergence.index == 3
    assert await agent.history(c.thread) == ours


async def test_lookup_by_name_url_and_prefix(agent: Agent, vendors: dict[str, FakeVendor]
                                             ) -> None:
    c = await agent.connect(vendors["acme"].url)
    assert await agent.resolve("Acme") == c.thread
    assert await agent.resolve(vendors["acme"].url + "/") == c.thread
    assert await agent.resolve(c.thread.hex()[:8]) == c.thread
    with pytest.raises(LookupError):
        await agent.resolve("Nobody Inc")


# -- against the reference vendor server (vrmproto.server) ----------------------------------------


async def test_every_flow_against_the_reference_vendor(tmp_path: Path) -> None:
    suv = "4-wheel-drive SUV"
    shops = {
        name: ServerVendor(name, counter=[NO_TRACKING], catalogue=[
            CatalogueItem(f"{name} Jeep, {suv}", ("suv",), Money(price, "USD"))])
        for name, price in (("Avis", 61_000), ("Budget", 45_000), ("Hertz", 52_000))
    }
    await asyncio.gather(*(v.start() for v in shops.values()))
    store = await SQLiteStore.open(tmp_path / "agent.db")
    try:
        async with await Agent.open(store, os.urandom(32)) as agent:
            avis = shops["Avis"]
            c = await agent.connect(avis.url)
            assert c.status == "accepted"
            shared = await agent.share("Avis", {"email": "ada@example.org"},
                                       purposes=["delivery"], categories=["contact"],
                                       expires_ms=in_a_year())
            assert shared.confirmed
            (heard,) = await avis.heard("data.share")
            assert heard.content == FieldsContent(fields={"email": "ada@example.org"})
            records = await agent.request_data("Avis")
            assert [(r.field, r.value, r.source) for r in records] == [
                ("email", "ada@example.org", "provided")]
            withdrawn = await agent.withdraw("Avis", [shared.msg_hash])
            assert [type(b).__name__ for b in withdrawn.reply_bodies()] == ["DataErased"]
            assert await agent.request_data("Avis") == ()
            assert (await agent.rotate_key("Avis")).confirmed
            report = await agent.update_address({"city": "Park City"})
            assert report.counts()["confirmed"] == 1
            assert await agent.compare_history(c.thread) is None

            countered = await agent.connect(shops["Hertz"].url, [NO_TRACKING, DELETE_90])
            assert countered.status == "countered"
            assert countered.counter == (NO_TRACKING,)
            assert (await agent.accept_counter(countered.thread)).status == "accepted"

            result = await agent.intentcast(f"a {suv}", where="Park City",
                                            vendors=[v.url for v in shops.values()])
            assert [o.vendor for o in result.offers] == ["Budget", "Hertz", "Avis"]
            taken = await agent.take_offer(result.offers[0])
            assert taken.status == "accepted"
            (offer,) = await shops["Budget"].heard("terms.offer")
            assert offer.message.body.in_reply_to == result.offers[0].hash
            for view in await agent.relationships():
                assert view.pending == 0
                if view.kind == "vendor" and view.state == "agreed":
                    assert await agent.compare_history(view.thread) is None
            assert await agent.pending() == []
    finally:
        await store.close()
        await asyncio.gather(*(v.stop() for v in shops.values()))


async def test_a_refused_message_leaves_the_chain_as_the_vendor_holds_it(tmp_path: Path) -> None:
    """§8.1-5: a message the vendor refuses is taken back out of our chain and history, so the
    next message links to what the vendor holds and both histories stay equal."""
    shop = ServerVendor("Avis", counter=[NO_TRACKING], catalogue=[])
    await shop.start()
    store = await SQLiteStore.open(tmp_path / "agent.db")
    try:
        async with await Agent.open(store, os.urandom(32)) as agent:
            c = await agent.connect(shop.url)
            assert c.status == "accepted"
            before = await agent.history(c.thread)
            # "Bad Field" cannot be held in the vrm-data/1 form: the vendor refuses the share
            with pytest.raises(PeerProblemError) as refused:
                await agent.share("Avis", {"Bad Field": "x"}, purposes=["delivery"],
                                  categories=["contact"], expires_ms=in_a_year())
            assert refused.value.code == "invalid_field"
            assert [e.msg_hash for e in await agent.history(c.thread)] == [
                e.msg_hash for e in before]
            shared = await agent.share("Avis", {"email": "ada@example.org"},
                                       purposes=["delivery"], categories=["contact"],
                                       expires_ms=in_a_year())
            assert shared.confirmed
            assert await agent.compare_history(c.thread) is None
    finally:
        await store.close()
        await shop.stop()
