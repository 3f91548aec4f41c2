"""The agent signs and sends bodies it would itself refuse on receipt (strict xfail: the client
is another helper's area).

``Agent.intentcast`` builds its ``Intentcast`` body (vrmproto/client/_intents.py:123) and
``Agent.share`` its ``FieldsContent`` (vrmproto/client/_drafts.py:198) without checking them
against the wire's rules that every receiver applies (§5.1-2, §5.4.1: ``what`` ≤ 500 characters;
values ≤ 4096). So an over-long intentcast is stored as one of the person's intentcasts and sent
to every vendor, each of which refuses it with ``invalid_field``, and the call returns normally
with no offers; an over-long share is signed and sent and refused. ``vrm`` and ``vrm ui`` now
check first (cli._parse.intentcast_problem / fields_problem); a program using the library
directly still sends them. Expected: a ``ValueError``/``ProtocolError`` before anything is
signed, stored or sent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vrmproto import MasterSeed, ProtocolError
from vrmproto.client import Agent
from vrmproto.server import LocalVendor, load_vendor_config
from vrmproto.store import MemoryStore

VENDORS = Path(__file__).resolve().parent.parent / "examples" / "vendors"


@pytest.mark.xfail(strict=True, reason="Agent.intentcast signs, stores and sends an intentcast "
                   "whose `what` breaks §5.4.1's 500-character limit (client/_intents.py:123)")
async def test_an_intentcast_the_wire_cannot_carry_is_refused_before_it_is_sent() -> None:
    vendor = LocalVendor.of(load_vendor_config(VENDORS / "outfitters.toml"))
    await vendor.start()
    try:
        agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)))
        async with agent:
            with pytest.raises((ValueError, ProtocolError)):
                await agent.intentcast("k" * 501, vendors=[vendor.url], deadline_ms=5_000)
            assert await agent.intents() == []
    finally:
        await vendor.stop()


@pytest.mark.xfail(strict=True, reason="Agent.share seals and sends a value over the 4096 "
                   "characters every receiver refuses (client/_drafts.py:198)")
async def test_a_share_the_wire_cannot_carry_is_refused_before_it_is_sent() -> None:
    vendor = LocalVendor.of(load_vendor_config(VENDORS / "outfitters.toml"))
    await vendor.start()
    try:
        agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)))
        async with agent:
            thread = (await agent.connect(vendor.url)).thread
            before = len(await agent.history(thread))
            with pytest.raises(ValueError):  # a ProtocolError from the vendor is too late
                await agent.share(thread, {"note": "n" * 4097}, purposes=["core-function"],
                                  categories=["contact"],
                                  expires_ms=agent.clock() + 86_400_000)  # fmt: skip
            assert len(await agent.history(thread)) == before
    finally:
        await vendor.stop()
