"""A reader whose next event is a dead letter kept below the trim floor (session 21b).

Retention keeps a webhook's dead letters until they are replayed, below the floor, while the
events after them go. ``trimmed_before`` looked only at the first event a read returned: for a
reader just before such a dead letter (``vrm vendor events --since N``, ``follow``, a
consumer without a cursor) that event is the next position, so the trimmed events after it
were skipped without :class:`FeedTrimmed`. Now every gap a read shows is looked at; a reader
from position 0 (the oldest event kept) still reads what is kept without an error.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import _postgres
import pytest
from test_s17_vendor_feed import KEEP, NOW, SECRET, feed, kept
from test_s21_store_expired_feed import AGENT_URL, opened

from vrmproto.server._events import FeedTrimmed, follow
from vrmproto.server._retention import Retention, trim_feed
from vrmproto.server._webhooks import Deliverer, Webhook, parse_secret
from vrmproto.store import Commit, DeadLetter, Store
from vrmproto.testing.store_contract import T1, rel

postgres_cluster = _postgres.postgres_cluster


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with _postgres.opened_store(request, tmp_path, request.param) as s:
        yield s


async def _dead_letter_below_floor(store: Store) -> list[int]:
    """Five old events and a young one; the second is a dead letter of the webhook ``crm``,
    whose cursor has passed them all: retention trims every old one but the dead letter."""
    pos = await feed(store, 100, 90, 80, 70, 60, 1)
    await store.commit(Commit(event_cursors=(("crm", pos[5]),),
                              dead_letters=(DeadLetter("crm", pos[1], NOW, "HTTP 500"),)))
    await trim_feed(store, KEEP, ["crm"], NOW)
    assert await kept(store) == [pos[1], pos[5]]
    assert await store.feed_floor() == pos[4]
    return pos


@pytest.mark.parametrize("batch", [1, 100])
async def test_a_reader_just_before_a_kept_dead_letter_is_told_of_the_gap_after_it(
    store: Store, batch: int
) -> None:
    pos = await _dead_letter_below_floor(store)
    got: list[int] = []

    async def read() -> None:
        async for e in follow(store, None, pos[0], batch=batch):
            got.append(e.pos)  # noqa: PERF401 -- each one as it comes, before the error

    with pytest.raises(FeedTrimmed) as raised:
        await read()
    assert got == [pos[1]]  # what is kept, then the error: never the young event silently
    assert (raised.value.after, raised.value.floor) == (pos[1], pos[4])


@pytest.mark.parametrize("batch", [1, 100])
async def test_a_reader_from_the_start_reads_what_is_kept(store: Store, batch: int) -> None:
    pos = await _dead_letter_below_floor(store)
    assert [e.pos async for e in follow(store, None, 0, batch=batch)] == [pos[1], pos[5]]
    assert [e.pos async for e in follow(store, None, pos[4], batch=batch)] == [pos[5]]


class Receiver:
    def __init__(self) -> None:
        self.posted = 0

    async def post(self, header_lines: bytes, body: bytes) -> int:
        self.posted += 1
        return 204

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(("start", "told"), [(0, False), (1, True)])
async def test_a_webhook_is_told_of_the_gap_after_a_kept_dead_letter_unless_it_is_new(
    store: Store, caplog: pytest.LogCaptureFixture, start: int, told: bool
) -> None:
    """A webhook ``b`` not in the file when the feed was trimmed: added back with its cursor
    just before ``crm``'s dead letter, it logs the events it will not get; new (no cursor),
    it starts from the oldest event kept, as every new webhook does, without an error."""
    pos = await _dead_letter_below_floor(store)
    if start:
        await store.commit(Commit(event_cursors=(("b", pos[0]),)))
    receiver = Receiver()
    hook = Webhook("b", "http://127.0.0.1:9/", parse_secret(SECRET), "https://v.example")
    d = Deliverer(hook, store, receiver)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, "vrmproto.server.webhooks"):
        assert await d.step()
    assert receiver.posted == 2
    assert await store.event_cursor("b") == pos[5]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    if told:
        (error,) = errors
        assert f"after position {pos[1]} up to {pos[4]} were trimmed" in error
        assert d.trimmed == pos[4] - pos[1]
    else:
        assert errors == []
        assert d.trimmed == 0


class FailingOne(Receiver):
    """A receiver that answers 500 to one event (``refused``: its id), 204 to the others."""

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused = refused.encode()
        self.tried = 0

    async def post(self, header_lines: bytes, body: bytes) -> int:
        if self.refused in body:
            self.tried += 1
            return 500
        self.posted += 1
        return 204


async def test_an_event_trimmed_while_a_webhook_retries_it_is_not_posted_again(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Retention's hard maximum (``max_days``, which may be shorter than a webhook's
    ``dead_after_s``) trims an event a receiver keeps failing: each retry posted the copy read
    before, of an event the vendor no longer holds, until ``dead_after_s``, and then set it
    aside as a dead letter of a position that is gone. Now the retry finds it gone: it is
    told as trimmed (an error, ``Deliverer.trimmed``), and the webhook goes on."""
    pos = await feed(store, 2, 1)
    (old, _) = await store.events(0, 2)
    receiver = FailingOne(old.id)
    clock = [NOW]

    async def sleep(delay: float) -> None:  # between two attempts, the feed is trimmed
        clock[0] += int(delay * 1000)
        await trim_feed(store, Retention(keep_s=0.0, max_s=1.5 * 86_400), [], clock[0])

    hook = Webhook("crm", "http://127.0.0.1:9/", parse_secret(SECRET), "https://v.example",
                   dead_after_s=600.0, parallel=1)  # fmt: skip
    d = Deliverer(hook, store, receiver, clock=lambda: clock[0], sleep=sleep)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, "vrmproto.server.webhooks"):
        assert await d.step()
    assert receiver.tried == 1  # never again once it was trimmed
    assert receiver.posted == 1  # the other event
    assert await kept(store) == [pos[1]]
    assert await store.event_cursor("crm") == pos[1]
    assert await store.dead_letters() == []
    assert await store.failing("crm") == []
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"{old.id} was trimmed from the feed" in error
    assert d.trimmed == 1


async def test_a_retry_sends_what_the_deletion_of_the_relationship_left(store: Store) -> None:
    """A relationship deleted for never reaching an agreement (§11.8-3) while a receiver
    failed its event: the retry read the event again only when it had personal data, and
    posted the body it had read — the customer's note and agent URL — which the feed no
    longer held. Now each retry posts the event as the feed holds it (``"forgotten"``)."""
    await store.commit(Commit(relationships=(rel(T1),), events=(opened(T1),)))
    bodies: list[bytes] = []

    class FailsOnce(Receiver):
        async def post(self, header_lines: bytes, body: bytes) -> int:
            bodies.append(body)
            return 503 if len(bodies) == 1 else 204

    async def sleep(delay: float) -> None:  # between the two attempts, the deletion
        await store.commit(Commit(drop=(T1,)))

    hook = Webhook("crm", "http://127.0.0.1:9/", parse_secret(SECRET), "https://v.example")
    d = Deliverer(hook, store, FailsOnce(), clock=lambda: NOW, sleep=sleep)  # type: ignore[arg-type]
    assert await d.step()
    assert len(bodies) == 2
    assert AGENT_URL.encode() in bodies[0]
    assert AGENT_URL.encode() not in bodies[1]
    assert b'"forgotten":true' in bodies[1]
