"""Webhooks at scale (session 17, review of session 16).

- The dead-letter clock survives a restart: when an event started failing (and how many
  attempts it had) is kept in the store with the webhook's cursor (schema v12), so a vendor
  restarted more often than ``dead_after_s`` still sets a permanently failing event aside.
- A receiver answering 410 Gone is not retried like a 5xx: the webhook is paused — nothing
  dropped or set aside, an error logged, ``vrm_webhook_paused`` 1 — until the server starts
  again, when the event is tried first.

Time is injected: the deliverer's ``clock`` is a list the test moves, and its ``sleep`` between
two attempts moves it too (or stops the "process"); no test waits for real time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _postgres
import pytest
from _sqlite_versions import sqlite_at_version

from vrmproto.server._events import Wakeup
from vrmproto.server._metrics import Metrics
from vrmproto.server._webhooks import Deliverer, Webhook, WebhookGone, parse_secret
from vrmproto.store import Commit, PostgresConfig, PostgresStore, SQLiteStore, Store
from vrmproto.store._base import FailingEvent
from vrmproto.testing.store_contract import T1, T2, event

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config

SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()
T0 = 1_767_225_600_000  # the first failed attempt (wall-clock ms)
HOUR_MS = 3_600_000


class Receiver:
    """A Poster stand-in: answers each POST by its ``webhook-id`` (an event id, or a batch's)
    with ``answers.get(id, default)``, and keeps the ids."""

    def __init__(self, answers: dict[str, int], default: int = 204) -> None:
        self.answers = answers
        self.default = default
        self.posts: list[str] = []

    async def post(self, header_lines: bytes, body: bytes) -> int:
        event_id = header_lines.split(b"webhook-id: ", 1)[1].split(b"\r\n", 1)[0].decode()
        self.posts.append(event_id)
        return self.answers.get(event_id, self.default)

    async def close(self) -> None:
        pass


class Stopped(Exception):
    """The vendor's process stopped while the deliverer waited to retry."""


async def stop(_: float) -> None:
    raise Stopped


def hook(**kw: Any) -> Webhook:
    kw.setdefault("dead_after_s", 3600.0)
    return Webhook("crm", "http://127.0.0.1:9/hook", parse_secret(SECRET),
                   "https://shop.example/vrm", **kw)  # fmt: skip


Opener = contextlib.AbstractAsyncContextManager[Store]


@pytest.fixture(params=["sqlite", "postgres"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Opens the same database again each time: a new store object, as a restart does."""
    config: PostgresConfig | None = None
    if request.param == "postgres":
        config = request.getfixturevalue("postgres_config")

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[Store]:
        store: Any = (await SQLiteStore.open(tmp_path / "vendor.db") if config is None
                      else await PostgresStore.open(config))  # fmt: skip
        try:
            yield store
        finally:
            await store.close()

    return opened


async def fail_once_then_stop(reopen: Any) -> tuple[list[str], int]:
    """Two relationships' events; the first fails at T0 and the process stops while it waits
    to retry. The event ids, and the failing event's pos."""
    async with reopen() as store:
        await store.commit(Commit(events=(event(T1, 0), event(T2, 0))))
        events = await store.events()
        ids = [e.id for e in events]
        now = [T0]
        receiver = Receiver({ids[0]: 500})
        d = Deliverer(hook(), store, receiver, clock=lambda: now[0], sleep=stop)  # type: ignore[arg-type]
        with pytest.raises(Stopped):
            await d.step()
        assert await store.failing("crm") == [FailingEvent("crm", events[0].pos, T0, 1,
                                                           "HTTP 500")]  # fmt: skip
        assert await store.event_cursor("crm") == 0
        return ids, events[0].pos


async def test_after_a_restart_the_event_is_set_aside_at_its_first_deadline(reopen: Any) -> None:
    """Restarted 50 minutes after the first failure, the deliverer goes on retrying with the
    backoff it had reached, and sets the event aside once an hour has passed since the first
    failure (not an hour after the restart); the other relationship's event goes on."""
    ids, pos = await fail_once_then_stop(reopen)
    async with reopen() as store:
        now = [T0 + 50 * 60_000]

        async def sleep(seconds: float) -> None:
            now[0] += int(seconds * 1000)

        receiver = Receiver({ids[0]: 500})
        d = Deliverer(hook(), store, receiver, clock=lambda: now[0], sleep=sleep)  # type: ignore[arg-type]
        assert await d.step()
        (dead,) = await store.dead_letters("crm")
        assert dead.pos == pos
        assert T0 + HOUR_MS <= dead.failed_ms < T0 + HOUR_MS + 300_000  # a retry's delay at most
        assert receiver.posts.count(ids[1]) == 1
        assert await store.event_cursor("crm") == await store.feed_head()
        assert await store.failing("crm") == []  # its record went with the dead letter


async def test_a_restart_past_the_deadline_sets_the_event_aside_at_its_next_failure(
    reopen: Any,
) -> None:
    ids, pos = await fail_once_then_stop(reopen)
    async with reopen() as store:
        receiver = Receiver({ids[0]: 500})
        later = T0 + HOUR_MS + 1
        d = Deliverer(hook(), store, receiver, clock=lambda: later, sleep=stop)  # type: ignore[arg-type]
        assert await d.step()
        assert receiver.posts == ids  # one attempt, then the other relationship's event
        assert [(x.pos, x.failed_ms, x.error) for x in await store.dead_letters("crm")] == [
            (pos, later, "HTTP 500")]  # fmt: skip


async def test_an_event_delivered_after_a_restart_leaves_no_record_of_failing(
    reopen: Any,
) -> None:
    ids, _ = await fail_once_then_stop(reopen)
    async with reopen() as store:
        receiver = Receiver({})
        d = Deliverer(hook(), store, receiver, clock=lambda: T0 + 1000, sleep=stop)  # type: ignore[arg-type]
        assert await d.step()
        assert receiver.posts == ids
        assert await store.failing() == []
        assert await store.dead_letters() == []


async def test_a_restart_keeps_the_backoff_it_had_reached(reopen: Any) -> None:
    """The attempts are kept too: the first retry after a restart waits what the next retry
    would have waited (the jitter's lower half at least), not the first retry's second."""
    ids, _ = await fail_once_then_stop(reopen)
    async with reopen() as store:  # a second attempt, then stopped again
        receiver = Receiver({ids[0]: 500})
        d = Deliverer(hook(), store, receiver, clock=lambda: T0 + 5000, sleep=stop)  # type: ignore[arg-type]
        with pytest.raises(Stopped):
            await d.step()
        (failing,) = await store.failing("crm")
        assert (failing.since_ms, failing.attempts) == (T0, 2)
    async with reopen() as store:
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            raise Stopped

        d = Deliverer(hook(), store, receiver, clock=lambda: T0 + 9000, sleep=sleep)  # type: ignore[arg-type]
        with pytest.raises(Stopped):
            await d.step()
        assert waits[0] >= hook().delay(3, rng=lambda: 0.0) == 2.0


async def test_a_version_11_file_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "v11.db"
    sqlite_at_version(path, 11).close()
    async with await SQLiteStore.open(path) as store:
        assert (await store.pragmas())["user_version"] == 15
        assert await store.failing() == []
        f = FailingEvent("crm", 3, T0, 1, "HTTP 503")
        await store.commit(Commit(failing=(f, FailingEvent("erp", 1, T0, 2, "x"))))
        await store.commit(Commit(failing=(FailingEvent("crm", 3, T0, 4, "HTTP 500"),),
                                  failing_done=(("erp", 1), ("erp", 9))))  # fmt: skip
        assert await store.failing() == [FailingEvent("crm", 3, T0, 4, "HTTP 500")]


# -- 410 Gone ------------------------------------------------------------------------------------


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
async def test_a_receiver_that_is_gone_pauses_the_webhook_and_drops_nothing(
    reopen: Any, batched: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """One POST answered 410: no retry, no dead letter, the cursor stays before the event
    (every event waits in the feed), an error says what to do, the metric says paused."""
    async with reopen() as store:
        await store.commit(Commit(events=(event(T1, 0), event(T1, 1), event(T2, 0))))
        ids = [e.id for e in await store.events()]
        receiver = Receiver({}, default=410)
        d = Deliverer(hook(parallel=1, batched=batched), store, receiver, clock=lambda: T0,  # type: ignore[arg-type]
                      sleep=stop)  # fmt: skip
        with pytest.raises(WebhookGone, match="410 Gone") as raised:
            await d.step()
        assert "paused" in str(raised.value)
        assert len(receiver.posts) == 1  # not retried, and no other lane went on
        assert await store.dead_letters() == []
        assert await store.event_cursor("crm") == 0
        assert [e.id for e in await store.events()] == ids
        (failing,) = await store.failing("crm")
        assert (failing.gone, failing.error, failing.since_ms) == (True, "HTTP 410", T0)
        metrics = Metrics()
        metrics.webhooks = ("crm",)
        await metrics.refresh(store)
        text = metrics.text().decode()
        assert 'vrm_webhook_paused{webhook="crm"} 1.0' in text
        assert 'vrm_webhook_behind{webhook="crm"} 3.0' in text


async def test_a_running_deliverer_pauses_then_a_restart_delivers_everything(
    reopen: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """``run`` logs one error and delivers nothing more, whatever is committed (it keeps the
    webhook's lock, so another worker does not start over); the next start (the operator
    fixed the url) delivers every event, the one answered 410 first, and unpauses."""
    async with reopen() as store:
        await store.commit(Commit(events=(event(T1, 0), event(T2, 0))))
        ids = [e.id for e in await store.events()]
        receiver = Receiver({ids[0]: 410})
        wakeup = Wakeup()
        d = Deliverer(hook(parallel=1), store, receiver, wakeup=wakeup, clock=lambda: T0,  # type: ignore[arg-type]
                      sleep=stop)  # fmt: skip
        with caplog.at_level(logging.ERROR, "vrmproto.server.webhooks"):
            running = asyncio.create_task(d.run())
            await asyncio.wait_for(d.paused.wait(), 30)
            await store.commit(Commit(events=(event(T1, 1),)))
            wakeup.notify()
            for _ in range(20):  # let it run, were it to deliver
                await asyncio.sleep(0)
            assert not running.done()
            assert receiver.posts == [ids[0]]
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "410 Gone" in errors[0]
        assert "restart" in errors[0]
        assert await store.event_cursor("crm") == 0
    async with reopen() as store:
        receiver = Receiver({})
        d = Deliverer(hook(), store, receiver, clock=lambda: T0 + 1000, sleep=stop)  # type: ignore[arg-type]
        assert await d.step()
        events = await store.events()
        assert receiver.posts[0] == ids[0]
        assert sorted(receiver.posts) == sorted(e.id for e in events)
        assert await store.failing() == []
        assert (await store.counts()).gone == {}


async def test_a_receiver_gone_then_failing_starts_the_dead_letter_clock_afresh(
    reopen: Any,
) -> None:
    """The time a receiver answered 410 does not count towards ``dead_after_s``: after the
    restart, a 500 is a first failure (the operator's fix is given its full deadline)."""
    async with reopen() as store:
        await store.commit(Commit(events=(event(T1, 0),)))
        (e,) = await store.events()
        d = Deliverer(hook(), store, Receiver({e.id: 410}), clock=lambda: T0, sleep=stop)  # type: ignore[arg-type]
        with pytest.raises(WebhookGone):
            await d.step()
    async with reopen() as store:
        later = T0 + 2 * HOUR_MS
        d = Deliverer(hook(), store, Receiver({e.id: 500}), clock=lambda: later, sleep=stop)  # type: ignore[arg-type]
        with pytest.raises(Stopped):
            await d.step()
        assert await store.dead_letters() == []
        (failing,) = await store.failing("crm")
        assert (failing.since_ms, failing.attempts, failing.gone) == (later, 1, False)
