"""Three things the UI hunt (s21-ui) found in the agent library itself.

- ``Agent.relationships()`` answered from its cache after another process — another ``vrm``,
  ``vrm ui`` beside a terminal — had committed to a relationship: one ended elsewhere was
  still "agreed". It now re-reads the relationships whose stored record changed.
- ``Agent.share(…, categories=[])`` (or no purpose) signed the share, stored it, sent it, and
  the vendor refused it with "must hold 1..16 items" (§5.1-2); the sender checks the rules
  the receiver will, before anything is signed (§7).
- ``Agent.decline_counter`` ended the relationship in any state: with the counter-offer open
  in two tabs, accepting it in one and declining in the other ended the agreement just made.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_client import NO_TRACKING, FakeVendor

from vrmproto import StateError, ValidationError
from vrmproto.client import Agent, RetryPolicy
from vrmproto.store import SQLiteStore

DAY_MS = 86_400_000


@pytest.fixture
async def vendors() -> AsyncIterator[dict[str, FakeVendor]]:
    vs = {"acme": FakeVendor("Acme"),
          "counter": FakeVendor("Counter", accepts=("vrm.no-tracking",), counter=(NO_TRACKING,))}
    await asyncio.gather(*(v.start() for v in vs.values()))
    yield vs
    await asyncio.gather(*(v.stop() for v in vs.values()))


async def open_two(tmp_path: Path) -> tuple[Agent, Agent, SQLiteStore, SQLiteStore]:
    """Two agents of one person on one data directory, as two `vrm` processes are."""
    seed = os.urandom(32)
    one = await SQLiteStore.open(tmp_path / "agent.db")
    two = await SQLiteStore.open(tmp_path / "agent.db")
    retry = RetryPolicy(attempts=1)
    return (await Agent.open(one, seed, retry=retry), await Agent.open(two, seed, retry=retry),
            one, two)  # fmt: skip


async def test_relationships_show_what_another_process_did(
        tmp_path: Path, vendors: dict[str, FakeVendor]) -> None:  # fmt: skip
    mine, other, one, two = await open_two(tmp_path)
    try:
        c = await mine.connect(vendors["acme"].url)
        assert [v.state for v in await mine.relationships()] == ["agreed"]
        assert (await other.end(c.thread)).confirmed
        assert [v.state for v in await mine.relationships()] == ["ended"]
        # and the next step of ours sees it too (it re-reads under the thread's lock anyway)
        with pytest.raises(StateError):
            await mine.share(c.thread, {"email": "a@example.org"}, purposes=["delivery"],
                             categories=["contact"],
                             expires_ms=time.time_ns() // 1_000_000 + DAY_MS)  # fmt: skip
    finally:
        for a in (mine, other):
            await a.close()
        for s in (one, two):
            await s.close()


@pytest.mark.parametrize(("purposes", "categories", "where"), [
    (["delivery"], [], "$.body.categories"),
    ([], ["contact"], "$.body.purposes"),
    (["delivery"], ["contact"] * 17, "$.body.categories"),
])  # fmt: skip
async def test_a_share_the_vendor_would_refuse_is_not_signed(
        tmp_path: Path, vendors: dict[str, FakeVendor], purposes: list[str],
        categories: list[str], where: str) -> None:  # fmt: skip
    store = await SQLiteStore.open(tmp_path / "agent.db")
    agent = await Agent.open(store, os.urandom(32))
    try:
        c = await agent.connect(vendors["acme"].url)
        before = len(await agent.history(c.thread))
        with pytest.raises(ValidationError) as refused:
            await agent.share(c.thread, {"email": "a@example.org"}, purposes=purposes,
                              categories=categories,
                              expires_ms=time.time_ns() // 1_000_000 + DAY_MS)  # fmt: skip
        assert refused.value.path == where
        assert len(await agent.history(c.thread)) == before  # nothing signed
        assert await agent.pending() == []
        assert await agent.share_notes(c.thread) == []
    finally:
        await agent.close()
        await store.close()


async def test_declining_a_counter_offer_accepted_meanwhile_is_refused(
        tmp_path: Path, vendors: dict[str, FakeVendor]) -> None:  # fmt: skip
    tab_a, tab_b, one, two = await open_two(tmp_path)
    try:
        c = await tab_a.connect(vendors["counter"].url)
        assert c.status == "countered"
        assert (await tab_a.accept_counter(c.thread)).status == "accepted"
        with pytest.raises(StateError, match="no longer open"):
            await tab_b.decline_counter(c.thread)
        assert vendors["counter"].threads[c.thread].state.value == "agreed"
        assert [v.state for v in await tab_b.relationships()] == ["agreed"]
    finally:
        for a in (tab_a, tab_b):
            await a.close()
        for s in (one, two):
            await s.close()
