"""The vendor's event feed (issue 14): events in the same commit as the message, read in order
by in-process consumers with a durable cursor.

No test waits with a sleep: a consumer awaits the feed's wake-up, which the endpoint fires after
each commit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _vendor_proc import ACCEPTED, DAY_MS, VENDOR_SEED, Customer, Reply, now_ms
from hypothesis import given
from hypothesis import strategies as st

from vrmproto import Intentcast, RelationshipEnd
from vrmproto._keys import Identity
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.server._events import FeedEvent, _dumps, follow, kinds, wakeup_of
from vrmproto.store import Commit, MemoryStore, SQLiteStore, Store, StoreError

VENDOR = Identity(VENDOR_SEED)


class Vendor:
    """A vendor endpoint on ``store`` with a clock the test moves."""

    def __init__(self, store: Store, accepts: tuple[str, ...] = ACCEPTED) -> None:
        self.now = now_ms()
        self.store = store
        self.endpoint = Endpoint(
            VENDOR, store=store, clock=lambda: self.now,
            policy=ReferencePolicy(accepts_terms=accepts),
        )  # fmt: skip

    async def deliver(self, customer: Customer, msg: Any) -> None:
        response = await self.endpoint.handle_inbox(msg.envelope)
        customer.absorb(Reply(response.status, response.body, dict(response.headers)), msg)

    async def feed(self) -> list[FeedEvent]:
        """The whole feed as it stands (no follow)."""
        return [e async for e in _read(self.store)]


async def _read(store: Store, after: int | str = 0) -> AsyncIterator[FeedEvent]:
    """The feed after ``after`` as it stands (no follow)."""
    async for e in follow(store, None, after):
        yield e


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = (
        MemoryStore()
        if request.param == "memory"
        else await SQLiteStore.open(tmp_path / "vendor.db")
    )
    yield s
    await s.close()


async def test_every_step_of_a_relationship_is_an_event_in_order(store: Store) -> None:
    v, c = Vendor(store), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    share = c.share({"email": "a@example.org", "name": "Ada"}, purposes=(2, 3))
    await v.deliver(c, share)
    await v.deliver(c, c.address({"street": "1 Main St"}))
    await v.deliver(c, c.request())
    await v.deliver(c, c.withdraw(share.hash))
    await v.deliver(c, c.send(RelationshipEnd(reason="moving")))
    feed = await v.feed()
    assert [e.kind for e in feed] == [
        "relationship.opened", "terms.accepted", "data.shared", "address.updated",
        "data.requested", "data.returned", "data.withdrawn", "data.erased",
        "relationship.ended",
    ]  # fmt: skip
    assert [e.seq for e in feed] == sorted(e.seq for e in feed)
    assert all(e.thread == c.thread for e in feed)
    assert feed[2].id == "evt_" + share.hash.hex()
    assert feed[2].data["body"]["purposes"] == [2, 3]
    assert "sealed" not in feed[2].data["body"]
    # the withdrawn share's event stays, its personal data is gone; the address update's stays
    assert feed[2].personal is None
    assert feed[3].personal == {"fields": {"street": "1 Main St"},  # a new field: purpose 1
                                "field_purposes": {"street": [1]}, "purposes": [1],
                                "field_shares": {}, "field_expires": {}}  # under no share
    assert feed[6].data["body"]["shares"] == [share.hash.hex()]
    assert feed[6].data["erase"] == [feed[2].id]  # what consumers must erase
    assert feed[1].data["from"] == "vendor"
    assert feed[0].data["from"] == "customer"


async def test_a_shares_fields_are_in_its_event_until_it_expires(store: Store) -> None:
    v, c = Vendor(store), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    await v.deliver(c, c.share({"email": "a@example.org"}))
    shared = (await v.feed())[-1]
    assert shared.personal is not None
    assert shared.personal["fields"] == {"email": "a@example.org"}
    assert shared.personal["purposes"] == [2]
    v.now += 2 * DAY_MS  # expired: a reader withholds it at once, the sweep drops it for good
    assert json.loads((await v.store.events())[-1].personal or b"null") is not None
    reader = v.endpoint.events()
    assert [(await anext(reader)).personal for _ in range(3)][-1] is None
    await reader.aclose()
    assert await v.endpoint.expire_shares() == 1
    assert (await v.store.events())[-1].personal is None


async def test_refused_countered_intentcast_and_rotation_kinds(store: Store) -> None:
    v = Vendor(store, accepts=ACCEPTED[:1])
    refused = Customer(VENDOR)
    await v.deliver(refused, refused.offer(*ACCEPTED))
    caster = Customer(VENDOR)
    await v.deliver(
        caster,
        caster.send(
            Intentcast(what="a bicycle", reply_by=now_ms() + DAY_MS, constraints=(), memberships=())
        ),
    )
    assert [e.kind for e in await v.feed()] == [
        "relationship.opened", "terms.rejected", "intentcast.received", "offer.declined",
    ]  # fmt: skip
    assert {"terms.countered", "offer.sent", "key.rotated"} <= set(kinds())


async def test_a_replay_or_a_refusal_makes_no_event(store: Store) -> None:
    v, c = Vendor(store), Customer(VENDOR)
    offer = c.offer(*ACCEPTED)
    await v.deliver(c, offer)
    await v.endpoint.handle_inbox(offer.envelope)  # a replay: the stored answer, no new event
    stale = c.send(RelationshipEnd(reason="x"))
    c.rel = Customer(VENDOR, thread=c.thread).rel  # a stranger in the same thread
    refused = await v.endpoint.handle_inbox(c.offer(*ACCEPTED).envelope)
    assert refused.status >= 400
    assert len(await v.feed()) == 2
    assert stale.type == "relationship.end"


async def test_a_failed_commit_makes_no_event_and_wakes_no_one() -> None:
    """Nothing is an event that was not committed: the events are in the message's Commit."""
    store = MemoryStore()
    v, c = Vendor(store), Customer(VENDOR)
    real = store.commit

    async def failing(commit: Commit) -> None:
        if commit.events:
            raise StoreError("disk on fire")
        await real(commit)

    store.commit = failing  # type: ignore[method-assign,assignment]
    response = await v.endpoint.handle_inbox(c.offer(*ACCEPTED).envelope)
    assert response.status >= 500
    assert await store.events() == []
    assert await store.get_relationship(c.thread) is None


async def test_an_in_process_consumer_follows_the_feed_without_polling(store: Store) -> None:
    v = Vendor(store)
    customers = [Customer(VENDOR) for _ in range(3)]
    seen: list[FeedEvent] = []
    enough = asyncio.Event()

    async def consume() -> None:
        async for e in v.endpoint.events():
            seen.append(e)
            if len(seen) == 2 * len(customers) + len(customers):
                enough.set()

    task = asyncio.create_task(consume())
    for c in customers:
        await v.deliver(c, c.offer(*ACCEPTED))
    for c in customers:
        await v.deliver(c, c.share({"email": f"{c.thread.hex()}@example.org"}))
    await asyncio.wait_for(enough.wait(), 10)
    task.cancel()
    assert [e.pos for e in seen] == sorted(e.pos for e in seen)
    assert len({e.id for e in seen}) == len(seen)


async def test_the_feed_is_woken_in_the_step_not_by_a_task_per_message(store: Store) -> None:
    """A reader of the feed adds no hook task to each accepted message: the Wakeup is told in
    the accept step, after its commit. It wakes a reader armed before the commit, and only
    that one: a reader arming after it waits for the next commit."""
    v, c = Vendor(store), Customer(VENDOR)
    wakeup = wakeup_of(v.endpoint, poll_s=3600.0)
    early = wakeup.arm()
    await v.deliver(c, c.offer(*ACCEPTED))
    assert not v.endpoint._hooks
    assert not v.endpoint._hook_tasks
    assert early.is_set()
    late = wakeup.arm()
    assert late is not early
    assert not late.is_set()
    assert wakeup.arm() is late  # no commit between: the same event
    await v.deliver(c, c.share({"email": "a@example.org"}))
    await asyncio.wait_for(wakeup.wait(late), 10)


async def test_a_durable_cursor_resumes_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "vendor.db"
    async with await SQLiteStore.open(path) as store:
        v, c = Vendor(store), Customer(VENDOR)
        await v.deliver(c, c.offer(*ACCEPTED))
        async for e in v.endpoint.events():
            await store.commit(Commit(event_cursors=(("crm", e.pos),)))  # acknowledged
            break
        await v.deliver(c, c.share({"email": "a@example.org"}))
    async with await SQLiteStore.open(path) as store:
        v = Vendor(store)
        after = await store.event_cursor("crm")
        rest = [e.kind async for e in _read(store, after)]
        assert rest == ["terms.accepted", "data.shared"]
        by_id = [e.kind async for e in _read(store, (await store.events())[1].id)]
        assert by_id == ["data.shared"]


async def test_withdrawing_every_share_names_each_to_erase(store: Store) -> None:
    """An empty ``shares`` withdraws them all (§5.3.2): the event names each one."""
    v, c = Vendor(store), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    first, second = c.share({"email": "a@example.org"}), c.share({"phone": "555"})
    await v.deliver(c, first)
    await v.deliver(c, second)
    await v.deliver(c, c.withdraw())
    feed = await v.feed()
    withdrawn = next(e for e in feed if e.kind == "data.withdrawn")
    assert sorted(withdrawn.data["erase"]) == sorted(
        "evt_" + m.hash.hex() for m in (first, second)
    )
    assert [e.personal for e in feed if e.kind == "data.shared"] == [None, None]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64) | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@given(_JSON)
def test_event_json_is_what_json_dumps_makes(value: Any) -> None:
    """The feed's encoder (one C encoder made once) writes exactly json.dumps' compact,
    sorted-keys, ASCII form: stored events read the same as before it."""
    assert _dumps(value) == json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
