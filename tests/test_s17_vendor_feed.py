"""Retention of the event feed (session 17, review of session 16): the feed was never trimmed.

``[feed]`` in the vendor file: an event goes once it is older than ``keep_days`` and every
consumer has passed it — each webhook (its cursor, and its dead letters until replayed), each
``[feed] consumers`` name, each Tryton bridge's ``tryton:<database>`` cursor — or once it is
older than ``max_days``, whoever has not had it. The newest event always stays, so no position
is handed out twice. A consumer whose cursor is below what was trimmed is told: a reader of
the feed gets ``FeedTrimmed``, a webhook logs an error and goes on, the Tryton bridge stops with
``FeedRewound`` (``--resync`` goes on from the oldest event kept). Each rule on the three
stores; time is the ``now_ms`` the test gives.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import _postgres
import pytest

from vrmproto import Identity
from vrmproto.crm.tryton import FeedRewound, TrytonBridge
from vrmproto.server import Endpoint
from vrmproto.server._config import ConfigError, parse_vendor_file
from vrmproto.server._events import FeedEvent, FeedTrimmed, follow
from vrmproto.server._retention import DAY_S, Retention, trim_feed
from vrmproto.server._webhooks import Deliverer, Webhook, parse_secret, running
from vrmproto.store import Commit, DeadLetter, EventRecord, Store
from vrmproto.testing.store_contract import T1, T2, event

postgres_cluster = _postgres.postgres_cluster

DAY_MS = int(DAY_S * 1000)
NOW = 1_800_000_000_000
KEEP = Retention(keep_s=30 * DAY_S, max_s=365 * DAY_S)
SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()


def aged(thread: bytes, seq: int, days: float) -> EventRecord:
    """An event recorded ``days`` before :data:`NOW`."""
    return dataclasses.replace(event(thread, seq), recorded_ms=NOW - int(days * DAY_MS))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with _postgres.opened_store(request, tmp_path, request.param) as s:
        yield s


async def feed(store: Store, *days: float) -> list[int]:
    """Events recorded that many days ago, oldest first (one Commit each); their positions."""
    for n, d in enumerate(days):
        await store.commit(Commit(events=(aged(T1 if n % 2 else T2, n, d),)))
    return [e.pos for e in await store.events(0, 1000)]


async def kept(store: Store) -> list[int]:
    return [e.pos for e in await store.events(0, 1000)]


async def cursors(store: Store, **at: int) -> None:
    await store.commit(Commit(event_cursors=tuple(at.items())))


# -- the rules -----------------------------------------------------------------------------------


async def test_what_every_consumer_passed_goes_once_older_than_keep_days(store: Store) -> None:
    """Both webhooks passed the first five events; of those, the three older than 30 days
    go, except the one at the lowest cursor... which is younger anyway: the two recent ones
    stay however far the consumers are."""
    pos = await feed(store, 100, 90, 40, 20, 10, 1)
    await cursors(store, crm=pos[4], mail=pos[5])
    assert await trim_feed(store, KEEP, ["crm", "mail"], NOW) == 3
    assert await kept(store) == pos[3:]
    assert await store.feed_floor() == pos[2]
    assert await trim_feed(store, KEEP, ["crm", "mail"], NOW) == 0  # nothing more, yet
    assert await trim_feed(store, KEEP, ["crm", "mail"], NOW + 15 * DAY_MS) == 1


async def test_an_event_a_webhook_has_not_passed_stays_until_max_days(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The slowest cursor holds the feed — the event at it too, and every one after — however
    old, until ``max_days``: then it goes, with a warning naming who had not had it."""
    pos = await feed(store, 400, 300, 200, 100, 1)
    await cursors(store, crm=pos[4], slow=pos[1])
    assert await trim_feed(store, KEEP, ["crm", "slow"], NOW) == 1  # only before the cursor
    assert await kept(store) == pos[1:]
    with caplog.at_level(logging.WARNING, "vrmproto.server.feed"):
        assert await trim_feed(store, KEEP, ["crm", "slow"], NOW + 200 * DAY_MS) == 2
    assert await kept(store) == pos[3:]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "max_days" in warning
    assert "slow" in warning
    assert "crm" not in warning


async def test_a_webhook_without_a_cursor_yet_keeps_everything(store: Store) -> None:
    pos = await feed(store, 100, 90, 80)
    assert await trim_feed(store, KEEP, ["new"], NOW) == 0
    assert await kept(store) == pos
    assert await trim_feed(store, Retention(max_s=None), [], NOW) == 2  # no consumer at all


async def test_dead_letters_stay_until_replayed_unless_older_than_max_days(store: Store) -> None:
    pos = await feed(store, 100, 90, 80, 1)
    await cursors(store, crm=pos[3])
    await store.commit(Commit(dead_letters=(DeadLetter("crm", pos[1], NOW, "HTTP 500"),
                                            DeadLetter("gone", pos[2], NOW, "x"))))  # fmt: skip
    assert await trim_feed(store, KEEP, ["crm"], NOW) == 2
    assert await kept(store) == [pos[1], pos[3]]  # a dead letter of a webhook not configured goes
    assert [e.pos for e in await store.events(pos[1] - 1, 1)] == [pos[1]]  # --replay finds it
    assert await trim_feed(store, KEEP, ["crm"], NOW + 300 * DAY_MS) == 1
    assert await kept(store) == [pos[3]]


async def test_a_replayed_dead_letter_goes_at_the_next_pass(store: Store) -> None:
    pos = await feed(store, 100, 90, 80, 1)
    await cursors(store, crm=pos[3])
    await store.commit(Commit(dead_letters=(DeadLetter("crm", pos[1], NOW, "HTTP 500"),)))
    assert await trim_feed(store, KEEP, ["crm"], NOW) == 2
    await store.commit(Commit(dead_letters_done=(("crm", pos[1]),)))  # replayed
    assert await trim_feed(store, KEEP, ["crm"], NOW) == 1
    assert await kept(store) == [pos[3]]


async def test_each_call_is_one_short_step(store: Store) -> None:
    """``trim_events`` looks at ``limit`` events at most (one short transaction); the floor
    moves step by step."""
    pos = await feed(store, 9, 8, 7, 6, 5, 1)
    old = NOW - 2 * DAY_MS
    assert await store.trim_events(pos[-1], recorded_before=old, limit=2) == 2
    assert await store.feed_floor() == pos[1]
    assert await store.trim_events(pos[-1], recorded_before=old, keep={pos[2]}, limit=2) == 1
    assert await store.feed_floor() == pos[3]
    assert await store.trim_events(pos[-1], recorded_before=old, keep={pos[2]}, limit=2) == 1
    assert await store.trim_events(pos[-1], recorded_before=old, keep={pos[2]}, limit=2) == 0
    assert await kept(store) == [pos[2], pos[5]]  # the newest stays
    assert await store.trim_events(pos[-1], recorded_before=old, limit=2) == 1  # not kept now
    assert await kept(store) == [pos[5]]


async def test_bridges_and_named_consumers_are_kept_for(store: Store) -> None:
    """A Tryton bridge's cursor (``tryton:<database>``) holds the feed without being named; an
    in-process consumer's does once ``[feed] consumers`` names it."""
    pos = await feed(store, 100, 90, 80, 70, 1)
    await cursors(store, crm=pos[4], **{"tryton:erp": pos[2], "own": pos[1]})
    assert await trim_feed(store, KEEP, ["crm"], NOW) == 2
    assert await kept(store) == pos[2:]
    named = dataclasses.replace(KEEP, consumers=("own",))
    await feed(store)  # (nothing)
    assert await trim_feed(store, named, ["crm"], NOW) == 0


async def test_the_newest_event_stays_and_positions_are_never_handed_out_again(
    store: Store,
) -> None:
    pos = await feed(store, 100, 90)
    assert await trim_feed(store, Retention(keep_s=0, max_s=0), [], NOW) == 1
    assert await kept(store) == [pos[1]]
    assert await store.feed_head() == pos[1]
    await store.commit(Commit(events=(aged(T1, 9, 0),)))
    assert [e.pos for e in await store.events(0, 10)] == [pos[1], pos[1] + 1]


async def test_a_reader_behind_what_was_trimmed_gets_a_typed_error(store: Store) -> None:
    """``follow`` (``vrm vendor events --since``, ``Endpoint.events``) raises FeedTrimmed when
    the events after its position were trimmed; from 0 it reads what is kept; a reader at or
    after the floor reads on."""
    pos = await feed(store, 100, 90, 80, 1)
    await trim_feed(store, KEEP, [], NOW)
    assert await kept(store) == [pos[3]]
    with pytest.raises(FeedTrimmed) as raised:
        [e async for e in follow(store, None, pos[0])]
    assert (raised.value.after, raised.value.floor) == (pos[0], pos[2])
    assert "trimmed" in str(raised.value)
    assert [e.pos async for e in follow(store, None, 0)] == [pos[3]]
    assert [e.pos async for e in follow(store, None, pos[2])] == [pos[3]]


async def test_a_webhook_behind_what_was_trimmed_logs_it_and_goes_on(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    pos = await feed(store, 500, 400, 1)
    await cursors(store, crm=pos[0])
    await trim_feed(store, KEEP, ["crm"], NOW)  # past max_days: the second goes
    posted: list[int] = []

    class Receiver:
        async def post(self, header_lines: bytes, body: bytes) -> int:
            posted.append(1)
            return 204

        async def close(self) -> None:
            pass

    hook = Webhook("crm", "http://127.0.0.1:9/", parse_secret(SECRET), "https://v.example")
    d = Deliverer(hook, store, Receiver())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, "vrmproto.server.webhooks"):
        assert await d.step()
    assert len(posted) == 1
    assert await store.event_cursor("crm") == pos[2]
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"after position {pos[0]} up to {pos[1]} were trimmed" in error
    assert d.trimmed == pos[1] - pos[0]


# -- the Tryton bridge ---------------------------------------------------------------------------


class FakeCRM:
    """What the bridge asks of a Tryton database, in memory (no trytond)."""

    name = "erp"

    def __init__(self) -> None:
        self.applied: dict[int, str] = {}

    def cursor(self) -> int:
        return max(0, max(self.applied, default=0))

    def applied_at(self, pos: int) -> str | None:
        return self.applied.get(pos)

    def apply(self, data: Mapping[str, Any], now: int) -> bool:
        self.applied[int(data["pos"])] = str(data["id"])
        return True

    def expire(self, now: int) -> int:
        return 0

    def legacy(self) -> dict[str, list[str]]:
        return {}  # no row of an older bridge

    def set_aside(self, head: int) -> None:
        self.applied = {(-pos if pos > head else pos): e for pos, e in self.applied.items()}

    def later_sources(self, relationship: str, names: object, pos: int) -> list[tuple[str, int]]:
        return []  # holds no field


async def bridge(crm: FakeCRM) -> TrytonBridge:
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    b = TrytonBridge(crm, ThreadPoolExecutor(1))  # type: ignore[arg-type]
    b.position = await b.cursor()
    return b


async def test_the_bridge_records_its_cursor_so_the_feed_keeps_what_it_has_not_applied(
    store: Store,
) -> None:
    pos = await feed(store, 100, 90, 80)
    crm = FakeCRM()
    b = await bridge(crm)
    try:
        await b.run(lambda after: follow(store, None, after))
        assert sorted(crm.applied) == pos
        assert await store.event_cursor("tryton:erp") == pos[2]
        await feed(store, 70, 60)  # two more, older than keep_days, not yet applied
        assert await trim_feed(store, KEEP, [], NOW) == 2  # up to the one at its cursor
        assert await kept(store) == [pos[2], pos[2] + 1, pos[2] + 2]
        await b.run(lambda after: follow(store, None, after))  # checks the one at its cursor
        assert max(crm.applied) == pos[2] + 2
    finally:
        await b.close()


async def test_a_bridge_behind_what_was_trimmed_stops_and_resync_goes_on(store: Store) -> None:
    pos = await feed(store, 500, 400, 200, 1)
    crm = FakeCRM()
    crm.applied[pos[0]] = (await store.events(0, 1))[0].id
    b = await bridge(crm)
    try:
        await store.commit(Commit(event_cursors=(("tryton:erp", pos[0]),)))
        await trim_feed(store, KEEP, [], NOW)  # the hard maximum: two of those it has not had
        with pytest.raises(FeedRewound, match=f"trimmed up to position {pos[1]}"):
            await b.run(lambda after: follow(store, None, after))
        seen: list[FeedEvent] = []
        await b.run(lambda after: follow(store, None, after), after=0,
                    report=lambda e, _: seen.append(e))  # fmt: skip
        assert [e.pos for e in seen] == pos[2:]
    finally:
        await b.close()


# -- the vendor file and the server --------------------------------------------------------------


def test_the_feed_section() -> None:
    default = parse_vendor_file({"name": "v"}).feed.retention()
    assert default == Retention(30 * DAY_S, 365 * DAY_S, 3600.0, ())
    f = parse_vendor_file({"name": "v", "feed": {"keep_days": 7, "max_days": 0,
                                                 "consumers": ["crm"]}},
                          environ={"VRM_FEED_TRIM_EVERY_S": "60"})  # fmt: skip
    assert f.feed.retention() == Retention(7 * DAY_S, None, 60.0, ("crm",))
    assert parse_vendor_file({"name": "v", "feed": {"trim": False}}).feed.retention() is None
    with pytest.raises(ConfigError, match="max_days"):
        parse_vendor_file({"name": "v", "feed": {"keep_days": 90, "max_days": 30}})
    with pytest.raises(ConfigError, match="keep_dayz"):
        parse_vendor_file({"name": "v", "feed": {"keep_dayz": 9}})


async def test_running_trims_at_start_keeping_what_its_webhooks_have_not_had(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """What ``vrm vendor serve`` runs: ``running(..., retention=...)`` trims once at start
    (and every ``every_s``), keeping for the webhooks it delivers to."""
    pos = await feed(store, 100, 90, 80, 1)
    await cursors(store, crm=pos[2])
    trimmed = asyncio.Event()

    class Told(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "trimmed" in record.getMessage():
                trimmed.set()

    told = Told()
    logger = logging.getLogger("vrmproto.server.feed")
    logger.addHandler(told)
    logger.setLevel(logging.INFO)
    endpoint = Endpoint(Identity(b"\x07" * 32), store=store, clock=lambda: NOW)
    hook = Webhook("crm", "http://127.0.0.1:9/", parse_secret(SECRET), "https://v.example",
                   backoff_s=3600)  # fmt: skip
    try:
        async with running(endpoint, [hook], retention=KEEP):
            await asyncio.wait_for(trimmed.wait(), 30)
            assert await kept(store) == pos[2:]
    finally:
        logger.removeHandler(told)
        logger.setLevel(logging.NOTSET)
