"""A withdrawn or expired share's data goes from the vendor's history too where an address
update carried it (§5.3.2-2, §12.10-2, §12.10-4).

An address.update of a field held from a share replaces the value and is held as that share's
(§5.3.6-2): withdrawing the share deletes it from what the vendor holds. But the update's own
body, sealed to the vendor — which the vendor can open — stayed in its history: a copy of the
deleted data the vendor kept, where §5.3.2-2 says "every copy it holds". The vendor now erases
the bodies of the address.updates that came after the share, as it erases the share's.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vrmproto import Identity, _codec
from vrmproto.client import DEFAULT_TERMS, Agent
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.server._expiry import expire_shares
from vrmproto.store import MemoryStore, SQLiteStore, Store
from vrmproto.testing import MemoryTransport

URL = "http://outfitters.test"
DAY_MS = 86_400_000
MONTH_MS = 30 * DAY_MS


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture(params=["memory", "sqlite"])
async def vendor_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    store: Store = (MemoryStore() if request.param == "memory"
                    else await SQLiteStore.open(tmp_path / "vendor.db"))  # fmt: skip
    yield store
    await store.close()


async def _pair(store: Store, clock: Clock) -> tuple[Endpoint, Agent]:
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Outfitters")
    ep = Endpoint(Identity(os.urandom(32)), store=store, name="Outfitters", policy=policy,
                  clock=clock)  # fmt: skip
    transport = MemoryTransport({URL: ep}, clock=clock)
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport, clock=clock)
    await agent.connect(URL)
    return ep, agent


async def _bodies(store: Store, thread: bytes) -> dict[str, list[bool]]:
    """Per message type, whether each of its entries in the vendor's history keeps its body."""
    out: dict[str, list[bool]] = {}
    for e in await store.history(thread):
        env = _codec.decode_form(e.envelope)
        kind = env["type"] if "type" in env else _codec.decode_form(env["hdr"])["type"]
        out.setdefault(kind, []).append(env.get("body") is not None)
    return out


async def test_withdrawing_a_share_erases_the_updates_that_replaced_its_values(
    vendor_store: Store,
) -> None:
    clock = Clock()
    _, agent = await _pair(vendor_store, clock)
    shared = await agent.share(URL, {"email": "old@example.org"}, purposes=["delivery"],
                               categories=["contact"], expires_ms=clock.ms + MONTH_MS)  # fmt: skip
    await agent.update_address({"email": "new@example.org"})
    withdrawn = await agent.withdraw(URL, [shared.msg_hash])
    assert withdrawn.confirmed
    assert await agent.request_data(URL) == ()  # what it holds: nothing of either value
    thread = (await agent.relationships())[0].thread
    bodies = await _bodies(vendor_store, thread)
    assert bodies["data.share"] == [False]
    assert bodies["address.update"] == [False]  # was [True]: the new email, sealed to it
    assert bodies["terms.offer"] == [True]
    assert bodies["terms.accept"] == [True]
    assert await agent.compare_history(URL) is None  # erased entries still verify (§8.4-2)
    await agent.close()


async def test_an_expired_share_takes_the_updates_that_replaced_its_values(
    vendor_store: Store,
) -> None:
    clock = Clock()
    ep, agent = await _pair(vendor_store, clock)
    await agent.share(URL, {"phone": "+1 801 555 0142"}, purposes=["delivery"],
                      categories=["contact"], expires_ms=clock.ms + DAY_MS)  # fmt: skip
    await agent.update_address({"phone": "+1 435 555 0199", "city": "Park City"})
    clock.ms += 2 * DAY_MS
    await expire_shares(ep)
    thread = (await agent.relationships())[0].thread
    bodies = await _bodies(vendor_store, thread)
    assert bodies["data.share"] == [False]
    assert bodies["address.update"] == [False]  # was [True]
    # The city, held from the update itself (it held none before), stays held; the feed keeps
    # the update's event with it.
    assert [(r.field, r.value) for r in await agent.request_data(URL)] == [("city", "Park City")]
    updated = [e for e in await vendor_store.events(0, 100) if e.kind == "address.updated"]
    assert len(updated) == 1
    assert b"Park City" in (updated[0].personal or b"")
    assert await agent.compare_history(URL) is None
    await agent.close()


async def test_an_update_before_the_share_keeps_its_body(vendor_store: Store) -> None:
    """Only updates after the share can hold a value in place of its own."""
    clock = Clock()
    _, agent = await _pair(vendor_store, clock)
    await agent.update_address({"city": "Park City"})
    shared = await agent.share(URL, {"email": "old@example.org"}, purposes=["delivery"],
                               categories=["contact"], expires_ms=clock.ms + MONTH_MS)  # fmt: skip
    assert (await agent.withdraw(URL, [shared.msg_hash])).confirmed
    thread = (await agent.relationships())[0].thread
    bodies = await _bodies(vendor_store, thread)
    assert bodies["data.share"] == [False]
    assert bodies["address.update"] == [True]
    await agent.close()


async def test_a_sweep_looks_for_updates_only_when_it_erases_a_share(
    vendor_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An expired share stays in the relationship until a data.erased: every later sweep (and
    every history export) finds it again, and must not read the thread's history each time."""
    clock = Clock()
    ep, agent = await _pair(vendor_store, clock)
    await agent.share(URL, {"phone": "+1 801 555 0142"}, purposes=["delivery"],
                      categories=["contact"], expires_ms=clock.ms + DAY_MS)  # fmt: skip
    await agent.update_address({"phone": "+1 435 555 0199"})
    clock.ms += 2 * DAY_MS
    assert await expire_shares(ep) == 1  # shares erased, not bodies
    reads: list[int] = []
    history = vendor_store.history

    async def counted(thread: bytes, start: int = 0, limit: int | None = None) -> Any:
        reads.append(start)
        return await history(thread, start, limit)

    monkeypatch.setattr(vendor_store, "history", counted)
    assert await expire_shares(ep) == 0
    assert reads == []
    await agent.close()


async def test_withdrawing_everything_takes_what_the_updates_gave_too(vendor_store: Store) -> None:
    """§5.3.2-1: a data.withdraw naming no share withdraws all, and a field that only an
    address.update gave (held from the update, without expiry, §12.10-1) is data the customer
    gave too. Before, it stayed held — returned, in the feed, in the history — however the
    customer withdrew: no data.withdraw could name it."""
    clock = Clock()
    _, agent = await _pair(vendor_store, clock)
    await agent.update_address({"street": "1 Main Street"})  # before any share
    await agent.share(URL, {"email": "doc@example.org"}, purposes=["delivery"],
                      categories=["contact"], expires_ms=clock.ms + MONTH_MS)  # fmt: skip
    await agent.update_address({"email": "new@example.org", "city": "Park City"})
    assert (await agent.withdraw(URL)).confirmed  # every share
    assert await agent.request_data(URL) == ()  # was street and city
    thread = (await agent.relationships())[0].thread
    bodies = await _bodies(vendor_store, thread)
    assert bodies["address.update"] == [False, False]
    for event in await vendor_store.events(0, 100, thread=thread):
        for value in (b"1 Main Street", b"Park City", b"doc@example.org", b"new@example.org"):
            assert value not in (event.personal or b""), (event.kind, value)
    assert await agent.compare_history(URL) is None
    await agent.close()


async def test_withdrawing_one_share_keeps_what_the_updates_gave(vendor_store: Store) -> None:
    clock = Clock()
    _, agent = await _pair(vendor_store, clock)
    shared = await agent.share(URL, {"email": "doc@example.org"}, purposes=["delivery"],
                               categories=["contact"], expires_ms=clock.ms + MONTH_MS)  # fmt: skip
    await agent.update_address({"city": "Park City"})
    assert (await agent.withdraw(URL, [shared.msg_hash])).confirmed
    assert [(r.field, r.value) for r in await agent.request_data(URL)] == [("city", "Park City")]
    await agent.close()
