"""Relayed intentcasts found again from the master seed alone after a routine read of answers
(spec §15.2-4).

Before: every ``vrm relay answers`` with relays (the kept ones: always) searched the 20 indices
after the store's highest, found nothing, and spent them all: the next intentcast was published
20 indices further on. An agent restored from its seed, which stops after 20 indices in a row
with no event, then never found it: publish, read the answers, publish again — and the second
intentcast was lost to any restored agent (its answers unread, its offers never asked for).

Now a search starts one past the highest index the store knows was used, and spends the indices
it asked about only when it found an intentcast there (the relays would link a later one to
those found); a search that found nothing leaves the next index where it was.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from _nostr_relay import relay

from vrmproto import MasterSeed
from vrmproto.client import Agent
from vrmproto.nostr import _customer
from vrmproto.nostr._customer import publish_intentcast, relay_answers
from vrmproto.store import MemoryStore


async def test_an_intentcast_published_after_a_read_of_answers_is_found_from_the_seed(
    tmp_path: Path,
) -> None:
    seed = MasterSeed(os.urandom(32))
    with relay(tmp_path) as url:
        agent = await Agent.open(MemoryStore(), seed)
        async with agent:
            first = await publish_intentcast(agent, "kayak for a day", relays=[url],
                                             pow_difficulty=0, answer_wait_ms=0,
                                             deadline_ms=600_000)  # fmt: skip
            await relay_answers(agent, [url], answer_wait_ms=0)
            await relay_answers(agent, [url], answer_wait_ms=0)
            second = await publish_intentcast(agent, "canoe for a day", relays=[url],
                                              pow_difficulty=0, answer_wait_ms=0,
                                              deadline_ms=600_000)  # fmt: skip
        assert (first.record.relay_index, second.record.relay_index) == (0, 1)
        restored = await Agent.open(MemoryStore(), seed)
        async with restored:
            read = await relay_answers(restored, [url], answer_wait_ms=0)
            found = sorted((r.record.relay_index, r.record.what) for r in read)
            assert found == [(0, "kayak for a day"), (1, "canoe for a day")]
            # the restored agent's search found them: it never publishes from what it asked
            third = await publish_intentcast(restored, "raft for a day", relays=[url],
                                             pow_difficulty=0, answer_wait_ms=0,
                                             deadline_ms=600_000)  # fmt: skip
        assert third.record.relay_index == 2 + 20


async def test_the_answers_of_open_intentcasts_are_awaited_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``vrm relay answers`` read its open relayed intentcasts one after the other,
    each waiting ``--wait`` (5 s) for answers: ten open ones kept the person waiting 50 s. Now
    their waits overlap: each of three waits until all three are waiting."""
    real = _customer._answers
    waiting = 0
    all_in = asyncio.Event()

    async def answers(*args: Any, **kw: Any) -> Any:
        nonlocal waiting
        waiting += 1
        if waiting == 3:
            all_in.set()
        async with asyncio.timeout(10):
            await all_in.wait()
        return await real(*args, **kw)

    seed = MasterSeed(os.urandom(32))
    with relay(tmp_path) as url:
        agent = await Agent.open(MemoryStore(), seed)
        async with agent:
            for what in ("kayak", "canoe", "raft"):
                await publish_intentcast(agent, what, relays=[url], pow_difficulty=0,
                                         answer_wait_ms=0, deadline_ms=600_000)  # fmt: skip
            monkeypatch.setattr(_customer, "_answers", answers)
            read = await relay_answers(agent, [url], answer_wait_ms=0)
    assert sorted(r.record.what for r in read) == ["canoe", "kayak", "raft"]
