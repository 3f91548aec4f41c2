"""The Tryton bridge's sweep of expired shares outlives one failure (§5.3.1-4, session 22).

A running bridge deletes the fields of shares whose ``expires`` passed every ``sweep_s`` when
no event comes (docs/events.md: "before each event and every minute"). The sweep ran as a task
that one exception ended for good — Tryton's SQLite database locked by the staff's client for a
moment, the vendor's PostgreSQL store restarting under ``forget_unheld`` — silently: the bridge
went on applying events, but a customer's email whose share expired stayed in the CRM until the
next event came, however long that was, and the error surfaced only when the bridge stopped.
Now a failed sweep is logged and the next one runs as usual.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests._tryton import open_crm

REL = "ab" * 16
NOW = 1_800_000_000_000
EMAIL = "ada@example.org"


@pytest.fixture
def tryton(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    open_crm(tmp_path_factory, tmp_path)  # it skips without Tryton
    return tmp_path


def emails() -> set[str]:
    from trytond.pool import Pool  # noqa: PLC0415
    from trytond.transaction import Transaction  # noqa: PLC0415

    with Transaction().start("crm", 0, readonly=True):
        return {c.value for c in Pool().get("party.contact_mechanism").search([])
                if c.type == "email"}  # fmt: skip


async def quiet(after: int) -> AsyncIterator[Any]:
    """A feed that has nothing more to give: only the sweep changes Tryton."""
    await asyncio.Event().wait()
    yield  # pragma: no cover


@pytest.mark.slow
async def test_a_failed_sweep_does_not_end_the_sweeps(
    tryton: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from vrmproto.crm.tryton import TrytonBridge  # noqa: PLC0415 -- needs trytond

    now = [NOW]
    loop = asyncio.get_running_loop()
    swept = asyncio.Event()
    async with await TrytonBridge.open("crm", path=tryton, clock=lambda: now[0]) as bridge:
        await bridge.apply({"id": "evt_" + "1" * 64, "pos": 1, "relationship": REL,
                            "kind": "data.shared", "created": NOW, "from": "customer",
                            "body": {}, "personal": {"fields": {"email": EMAIL},
                                                     "expires": NOW + 1_000}})  # fmt: skip
        assert await asyncio.to_thread(emails) == {EMAIL}
        real, calls = bridge.crm.expire, []

        def locked_once(now_ms: int) -> int:  # on the bridge's Tryton thread
            calls.append(now_ms)
            if len(calls) == 2:  # the first sweep, after run's own at its start
                now[0] = NOW + 2_000  # the share expires meanwhile
                raise sqlite3.OperationalError("database is locked")
            gone = real(now_ms)
            if gone:
                loop.call_soon_threadsafe(swept.set)
            return gone

        bridge.crm.expire = locked_once  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, "vrmproto.crm"):
            running = asyncio.create_task(bridge.run(quiet, sweep_s=0.001))
            try:
                await asyncio.wait_for(swept.wait(), 30)
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
    assert len(calls) >= 3
    assert "database is locked" in caplog.text  # told, not swallowed
    assert await asyncio.to_thread(emails) == set()
