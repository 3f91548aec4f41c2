"""The event feed woken across processes by PostgreSQL's LISTEN/NOTIFY (issue 15): a reader on
one store object wakes when another — another server process, as far as the database can tell —
commits events, long before its poll would have read them; a rolled-back write wakes nobody; a
lost listening connection is opened again. The readers' poll is set to an hour, and each wait
below is bounded by far less: only a wake-up can meet it (no timing is asserted).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import _postgres
import pytest

from vrmproto.server._events import FeedEvent, Wakeup, follow
from vrmproto.store import Commit, EventWatch, PostgresConfig, PostgresStore, StoreConflict
from vrmproto.testing.store_contract import T1, T2, entry, event, rel

pytest.importorskip("asyncpg", reason="asyncpg is not installed (pip install -e '.[dev]')")

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config

#: The readers' poll: far longer than any test waits.
HOUR_S = 3600.0
#: How long a test waits for a wake-up (the poll alone could not meet it).
WAKE_S = 30.0


async def _next(feed: AsyncIterator[FeedEvent]) -> FeedEvent:
    return await asyncio.wait_for(anext(feed), WAKE_S)


async def test_a_reader_wakes_when_another_store_commits_events(
    postgres_config: PostgresConfig,
) -> None:
    """The writer and the reader share nothing but the database: after the reader has read
    everything there was (event 0), each later event reaches it through a notification."""
    async with await PostgresStore.open(postgres_config) as writer, \
            await PostgresStore.open(postgres_config) as reader:  # fmt: skip
        assert isinstance(reader, EventWatch)
        wakeup = Wakeup(poll_s=HOUR_S).watch(reader)
        await reader.notices.listening()
        await writer.commit(Commit(events=(event(T1, 0),)))
        feed = follow(reader, wakeup)
        assert (await _next(feed)).seq == 0  # read at once: it was there
        for seq in (1, 2, 3):  # each committed after the reader's last read
            await writer.commit(Commit(events=(event(T1, seq),)))
            got = await _next(feed)
            assert (got.thread, got.seq) == (T1, seq)
        await feed.aclose()


async def test_a_rolled_back_write_notifies_nobody_and_other_schemas_are_not_heard(
    postgres_config: PostgresConfig, postgres_cluster: object
) -> None:
    """A Commit refused for a conflict rolls back its events and its notification; a commit
    of events to another schema of the same database does not wake this one's readers. The
    wake-ups are counted: exactly one per commit of events to this schema."""
    other = PostgresConfig(postgres_config.dsn, schema=postgres_config.schema + "_b",
                           pool_size=1, writers=1)  # fmt: skip
    try:
        async with await PostgresStore.open(postgres_config) as writer, \
                await PostgresStore.open(postgres_config) as reader, \
                await PostgresStore.open(other) as elsewhere:  # fmt: skip
            woken: asyncio.Queue[None] = asyncio.Queue()
            reader.watch_events(lambda: woken.put_nowait(None))
            await reader.notices.listening()
            await asyncio.wait_for(woken.get(), WAKE_S)  # the wake-up of connecting
            await writer.commit(Commit(relationships=(rel(T1),), history=(entry(T1, 0),),
                                       events=(event(T1, 0),)))  # fmt: skip
            await asyncio.wait_for(woken.get(), WAKE_S)
            with pytest.raises(StoreConflict):  # a taken history slot: rolled back after NOTIFY
                await writer.commit(Commit(history=(entry(T1, 0, "again"),),
                                           events=(event(T1, 5),)))  # fmt: skip
            await elsewhere.commit(Commit(events=(event(T2, 0),)))
            await writer.commit(Commit(events=(event(T1, 1),)))  # the one that tells
            await asyncio.wait_for(woken.get(), WAKE_S)
            assert [e.seq for e in await reader.events()] == [0, 1]
            # Every notification sent before the last one's has arrived by now (one connection
            # delivers them in commit order): none was for the rolled-back or the other schema.
            assert woken.empty()
    finally:
        await _postgres.drop_schema(postgres_config.dsn, other.schema)


async def test_a_lost_listening_connection_is_opened_again(
    postgres_config: PostgresConfig,
) -> None:
    """The listening connection's server process is terminated: the store listens again on a
    new one, and events committed meanwhile or after still wake the reader."""
    import asyncpg  # noqa: PLC0415 -- after the fixture skipped where it is missing

    async with await PostgresStore.open(postgres_config) as writer, \
            await PostgresStore.open(postgres_config) as reader:  # fmt: skip
        wakeup = Wakeup(poll_s=HOUR_S).watch(reader)
        first = await reader.notices.listening()
        feed = follow(reader, wakeup)
        await writer.commit(Commit(events=(event(T1, 0),)))
        assert (await _next(feed)).seq == 0
        admin = await asyncpg.connect(postgres_config.dsn)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)",
                                        reader.notices.backend_pid)  # fmt: skip
        finally:
            await admin.close()
        await writer.commit(Commit(events=(event(T1, 1),)))  # perhaps while nobody listens
        assert (await _next(feed)).seq == 1
        assert await asyncio.wait_for(reader.notices.listening(first), WAKE_S) > first
        await writer.commit(Commit(events=(event(T1, 2),)))
        assert (await _next(feed)).seq == 2
        await feed.aclose()


async def test_stores_without_notifications_are_polled() -> None:
    """A store that does not tell (here: in memory) leaves the Wakeup to its poll."""
    from vrmproto.store import MemoryStore  # noqa: PLC0415

    store = MemoryStore()
    assert not isinstance(store, EventWatch)
    wakeup = Wakeup(poll_s=HOUR_S).watch(store)
    armed = wakeup.arm()
    wakeup.notify()
    await asyncio.wait_for(wakeup.wait(armed), WAKE_S)  # its own commits still wake it
    with pytest.raises(ValueError, match="poll_s"):
        Wakeup(poll_s=0)
