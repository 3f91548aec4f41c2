"""The agent refuses, before it signs, stores or sends anything, a body that breaks the wire's
limits every receiver checks (§5.1-2, §5.4.1: ``what`` ≤ 500 characters; values ≤ 4096).

Before, ``Agent.intentcast`` and ``Agent.share`` built their bodies without checking them: an
over-long intentcast was stored as one of the person's intentcasts and sent to every vendor,
each of which refused it with ``invalid_field``, and the call returned normally with no offers;
an over-long share was sealed, signed, sent and refused. ``vrm`` and ``vrm ui`` check first too
(with the option's name in the message); a program using the library gets a
:class:`ValidationError` naming the field's path (``vrmproto._fields.check_record``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests._world import serving
from vrmproto import MasterSeed, ValidationError
from vrmproto.client import Agent
from vrmproto.store import MemoryStore


@asynccontextmanager
async def outfitters() -> AsyncIterator[tuple[Agent, str]]:
    """A new agent and the outfitters' vendor on 127.0.0.1 (its base URL)."""
    async with (serving("outfitters") as (vendor,),
                await Agent.open(MemoryStore(), MasterSeed(os.urandom(32))) as agent):
        yield agent, vendor.url


async def test_an_intentcast_the_wire_cannot_carry_is_refused_before_it_is_sent() -> None:
    async with outfitters() as (agent, url):
        with pytest.raises(ValidationError, match="500"):
            await agent.intentcast("k" * 501, vendors=[url], deadline_ms=5_000)
        assert await agent.intents() == []


async def test_a_share_the_wire_cannot_carry_is_refused_before_it_is_sent() -> None:
    async with outfitters() as (agent, url):
        thread = (await agent.connect(url)).thread
        before = len(await agent.history(thread))
        with pytest.raises(ValidationError, match="4096"):
            await agent.share(thread, {"note": "n" * 4097}, purposes=["core-function"],
                              categories=["contact"],
                              expires_ms=agent.clock() + 86_400_000)  # fmt: skip
        assert len(await agent.history(thread)) == before


async def test_an_address_update_the_wire_cannot_carry_goes_to_no_vendor() -> None:
    async with outfitters() as (agent, url):
        thread = (await agent.connect(url)).thread
        before = len(await agent.history(thread))
        with pytest.raises(ValidationError, match="64"):
            await agent.update_address({f"line{i}": "x" for i in range(65)})
        assert len(await agent.history(thread)) == before
        assert await agent.store.outbox_all() == []
