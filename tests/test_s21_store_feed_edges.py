"""Edges of reading the feed that a user reaches from the command line.

``vrm vendor events --since 99999999999999999999``: a position past any the store can hand out.
Before, SQLite answered ``OverflowError: Python int too large to convert to SQLite INTEGER``
(``vrm`` printed it and exited 1) and PostgreSQL a ``StoreError`` about an int8 argument; the
memory store, nothing. Now every store reads it as what it is: after every event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import _postgres
import pytest

from vrmproto.store import Commit, Store
from vrmproto.testing.store_contract import T1, event

postgres_cluster = _postgres.postgres_cluster


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with _postgres.opened_store(request, tmp_path, request.param) as s:
        await s.commit(Commit(events=(event(T1, 0), event(T1, 1))))
        yield s


@pytest.mark.parametrize("after", [2**63 - 1, 2**63, 10**20])
async def test_a_position_past_any_the_store_hands_out_is_after_every_event(
    store: Store, after: int
) -> None:
    assert await store.events(after) == []
    assert await store.events(after, thread=T1) == []
    assert [e.seq for e in await store.events(-1)] == [0, 1]  # before every event


def test_a_rewound_feed_is_one_of_the_librarys_errors() -> None:
    """``TrytonBridge.run`` stops with FeedRewound; a program that catches the library's errors
    (``except VrmError``, STYLE: one exception tree) caught everything else but not it."""
    from vrmproto import VrmError  # noqa: PLC0415
    from vrmproto.crm.tryton import FeedRewound  # noqa: PLC0415

    with pytest.raises(VrmError, match="restored from a backup"):
        raise FeedRewound(7, "evt_1", None)
