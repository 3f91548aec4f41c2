"""Webhooks of the event feed (issue 14): CloudEvents 1.0 JSON, Standard Webhooks signatures
(checked with the ``standardwebhooks`` reference package), retry while the receiver is down,
per-relationship order, dead letters and their replay, the ``[[webhooks]]`` section and
``vrm vendor events``.

Receivers are real aiohttp servers on 127.0.0.1. No test sleeps: each awaits the receiver's
event, or runs one delivery step to its end.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer
from _vendor_proc import InProcessVendor as Vendor
from aiohttp import web
from click.testing import CliRunner
from cloudevents.core.bindings.http import HTTPMessage, from_http_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent
from standardwebhooks import Webhook as ReferenceWebhook

from vrmproto._keys import Identity
from vrmproto.cli._app import cli as main
from vrmproto.cli._errors import EXIT_USAGE, CliError
from vrmproto.server._config import ConfigError, parse_vendor_file
from vrmproto.server._events import to_feed_event
from vrmproto.server._webhooks import (
    REFUSED,
    Deliverer,
    Webhook,
    parse_secret,
    render,
    running,
    sign,
)
from vrmproto.store import Commit, DeadLetter, MemoryStore, SQLiteStore
from vrmproto.testing.store_contract import event

VENDOR = Identity(VENDOR_SEED)
SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: keeps every request; answers ``status``."""

    port: int = field(default_factory=free_port)
    status: int = 204
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    want: int = 0  # set ``enough`` once this many distinct ids arrived
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    answers: dict[str, int] = field(default_factory=dict)  # webhook-id -> status, not ``status``
    want_posts: int = 0  # set ``posted`` once this many POSTs arrived
    posted: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            self.got.append((dict(request.headers), await request.read()))
            if self.want and len(self.ids()) >= self.want:
                self.enough.set()
            if self.want_posts and len(self.got) >= self.want_posts:
                self.posted.set()
            return web.Response(status=self.answers.get(request.headers["webhook-id"],
                                                        self.status))  # fmt: skip

        app = web.Application()
        app.router.add_post("/hook", hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def ids(self) -> set[str]:
        """The event ids received: each POST's ``webhook-id``, or in batched mode the ids of
        its array's documents."""
        out: set[str] = set()
        for h, body in self.got:
            if h.get("Content-Type") == "application/cloudevents-batch+json":
                out.update(doc["id"] for doc in json.loads(body))
            else:
                out.add(h["webhook-id"])
        return out

    def verified(self) -> list[dict[str, Any]]:
        """Every body, checked with the reference Standard Webhooks verifier."""
        ref = ReferenceWebhook(SECRET)
        return [ref.verify(body, headers) for headers, body in self.got]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    yield r
    await r.stop()


def hook(url: str, **kw: Any) -> Webhook:
    kw.setdefault("backoff_s", 0.005)
    kw.setdefault("backoff_max_s", 0.05)
    return Webhook("crm", url, parse_secret(SECRET), "https://shop.example/vrm", **kw)




# -- the format ---------------------------------------------------------------------------------


def test_signatures_are_the_standard_webhooks_ones() -> None:
    body = b'{"a":1}'
    ours = sign(parse_secret(SECRET), "evt_1", 1_700_000_000, body)
    import datetime as dt  # noqa: PLC0415

    when = dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
    assert ours == ReferenceWebhook(SECRET).sign("evt_1", when, body.decode())


def test_a_secret_must_be_whsec_base64_of_enough_key() -> None:
    for bad in ("k" * 40, "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="webhook secret"):
            parse_secret(bad)


def test_backoff_doubles_with_jitter_up_to_its_ceiling() -> None:
    h = Webhook("x", "http://x", b"k" * 16, "s", backoff_s=1.0, backoff_max_s=8.0)
    assert [h.delay(n, lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert [h.delay(n, lambda: 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


async def test_each_event_is_a_signed_cloudevent(receiver: Receiver) -> None:
    await receiver.start()
    v, c = Vendor(MemoryStore()), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    await v.deliver(c, c.share({"email": "a@example.org"}, purposes=(2,)))
    async with Deliverer(hook(receiver.url), v.store) as d:
        assert await d.step()
        assert not await d.step()
    bodies = receiver.verified()
    assert [b["type"] for b in bodies] == [
        "org.vrmproto.relationship.opened", "org.vrmproto.terms.accepted",
        "org.vrmproto.data.shared",
    ]  # fmt: skip
    headers, raw = receiver.got[2]
    lowered = {k.lower(): v for k, v in headers.items()}
    cloud = from_http_event(HTTPMessage(headers=lowered, body=raw))
    assert cloud.get_specversion() == "1.0"
    assert cloud.get_source() == "https://shop.example/vrm"
    assert cloud.get_subject() == c.thread.hex()
    assert cloud.get_id() == headers["webhook-id"] == bodies[2]["id"]
    data = cloud.get_data()
    assert isinstance(data, dict)
    assert data["personal"]["fields"] == {"email": "a@example.org"}
    assert await v.store.event_cursor("crm") == (await v.store.events())[-1].pos


async def test_the_cloudevent_is_the_one_the_sdk_renders() -> None:
    """The body is spliced from the stored event, not built by the cloudevents SDK: read by the
    SDK, it has the attributes and data the SDK itself renders for the same event."""
    v, c = Vendor(MemoryStore()), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    await v.deliver(c, c.share({"email": "ä@example.org"}, purposes=(2,)))
    h = hook("http://127.0.0.1:9/hook")
    for e in await v.store.events():
        now = e.recorded_ms + 1
        body, headers = render(h, e, now)
        ours = from_http_event(HTTPMessage(headers=headers, body=body))
        feed = to_feed_event(e, now)
        reference = CloudEvent(attributes={
            "id": e.id, "type": "org.vrmproto." + e.kind, "source": h.source,
            "subject": e.thread.hex(), "datacontenttype": "application/json",
            "time": dt.datetime.fromtimestamp(e.recorded_ms / 1000, dt.UTC),
        }, data=feed.as_json())  # fmt: skip
        theirs = from_http_event(to_structured_event(reference))
        assert ours.get_attributes() == theirs.get_attributes()
        assert ours.get_data() == theirs.get_data() == json.loads(body)["data"]
        assert headers["content-type"] == "application/cloudevents+json"
        ReferenceWebhook(SECRET).verify(body, headers)


async def test_a_hook_gets_personal_data_only_for_its_purposes(receiver: Receiver) -> None:
    await receiver.start()
    v, c = Vendor(MemoryStore()), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    await v.deliver(c, c.share({"email": "a@example.org"}, purposes=(2,)))
    async with Deliverer(hook(receiver.url, purposes=frozenset({3})), v.store) as d:
        assert await d.step()
    shared = receiver.verified()[-1]
    assert shared["type"] == "org.vrmproto.data.shared"
    assert shared["data"]["personal"] is None
    assert shared["data"]["body"]["purposes"] == [2]


# -- acceptance: a receiver down while 100 messages from 10 customers arrive -------------------


async def test_a_receiver_down_then_up_gets_every_event_once_in_order(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vrmproto.server.webhooks")
    v = Vendor(MemoryStore())
    customers = [Customer(VENDOR) for _ in range(10)]
    async with running(v.endpoint, [hook(receiver.url)]) as (deliverer,):
        for c in customers:  # 10 customers x 10 messages: an offer, then 9 shares
            await v.deliver(c, c.offer(*ACCEPTED))
        for n in range(9):
            for c in customers:
                await v.deliver(c, c.share({"n": str(n)}))
        events = await v.store.events(limit=1000)
        assert len(events) == 110  # 100 messages, and the 10 terms.accept replies
        assert deliverer.delivered == 0
        receiver.want = len(events)
        await receiver.start()
        await asyncio.wait_for(receiver.enough.wait(), 30)
    assert deliverer.failed > 0  # it was down, and retried
    bodies = receiver.verified()  # every signature verifies (the reference algorithm)
    assert receiver.ids() == {e.id for e in events}
    first: dict[str, dict[str, Any]] = {}
    for b in bodies:  # de-duplicated by id, as a receiver does
        first.setdefault(b["id"], b)
    for c in customers:
        seqs = [b["data"]["seq"] for b in first.values() if b["subject"] == c.thread.hex()]
        assert seqs == sorted(seqs)
        assert len(seqs) == 11
    said = [r.getMessage() for r in caplog.records]
    failing = [m.split()[2] for m in said if " failed (" in m]
    recovered = [m.split()[2] for m in said if " delivered after " in m]
    assert failing  # the operator hears of the outage: once per event held up, not per retry
    assert len(failing) == len(set(failing))
    assert sorted(recovered) == sorted(failing)  # and of each such event getting through


# -- batched mode ------------------------------------------------------------------------------


def _batched(receiver: Receiver) -> list[list[dict[str, Any]]]:
    """Every batched POST's array, each signature checked with the reference verifier."""
    bodies = receiver.verified()
    assert all(h["Content-Type"] == "application/cloudevents-batch+json"
               for h, _ in receiver.got)  # fmt: skip
    assert all(isinstance(b, list) for b in bodies)
    return bodies  # type: ignore[return-value]


async def test_a_batched_hook_posts_each_batch_as_one_cloudevents_array(
    receiver: Receiver,
) -> None:
    """Batched mode: one POST per batch; its elements are the documents single mode POSTs,
    in feed order; its webhook-id is the same for the same events and differs for others."""
    await receiver.start()
    v, c = Vendor(MemoryStore()), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    await v.deliver(c, c.share({"email": "a@example.org"}, purposes=(2,)))
    h = hook(receiver.url, batched=True)
    async with Deliverer(h, v.store) as d:
        assert await d.step()
        assert not await d.step()
        assert d.delivered == 3
    events = await v.store.events()
    (batch,) = _batched(receiver)
    now = events[-1].recorded_ms + 1  # the bodies depend on it only past a share's expiry
    single = [json.loads(render(hook(receiver.url), e, now)[0]) for e in events]
    assert batch == single
    webhook_id = receiver.got[0][0]["webhook-id"]
    assert webhook_id.startswith("evts_")
    renderer = Deliverer(h, v.store).renderer
    assert renderer.batch(events, 0)[0] == webhook_id
    assert renderer.batch(events[:2], 0)[0] != webhook_id
    assert await v.store.event_cursor("crm") == events[-1].pos


async def test_a_batched_receiver_down_then_up_gets_every_event_once_in_order(
    receiver: Receiver,
) -> None:
    """The acceptance scenario in batched mode: 100 messages from 10 customers while the
    receiver is down; once up, every event arrives (de-duplicated by id), in feed order."""
    v = Vendor(MemoryStore())
    customers = [Customer(VENDOR) for _ in range(10)]
    async with running(v.endpoint, [hook(receiver.url, batched=True)]) as (deliverer,):
        for c in customers:
            await v.deliver(c, c.offer(*ACCEPTED))
        for n in range(9):
            for c in customers:
                await v.deliver(c, c.share({"n": str(n)}))
        events = await v.store.events(limit=1000)
        assert len(events) == 110
        receiver.want = len(events)
        await receiver.start()
        await asyncio.wait_for(receiver.enough.wait(), 30)
    assert deliverer.failed > 0
    first: dict[str, dict[str, Any]] = {}
    for batch in _batched(receiver):
        for doc in batch:
            first.setdefault(doc["id"], doc)
    assert list(first) == [e.id for e in events]  # each once, in feed order


# -- dead letters --------------------------------------------------------------------------------


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
async def test_an_event_failing_too_long_is_a_dead_letter_until_replayed(
    receiver: Receiver, batched: bool
) -> None:
    """A failing event (in batched mode: every event of the failing batch) is set aside and
    the cursor goes on; a replay delivers each dead letter (batched: as a batch of one)."""
    receiver.status = 500
    await receiver.start()
    v, c = Vendor(MemoryStore()), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    async with Deliverer(hook(receiver.url, dead_after_s=0.02, batched=batched), v.store) as d:
        assert await d.step()
        dead = await v.store.dead_letters("crm")
        events = await v.store.events()
        assert [x.pos for x in dead] == [e.pos for e in events]
        assert dead[0].error == "HTTP 500"
        assert await v.store.event_cursor("crm") == dead[-1].pos  # later events go on
        receiver.status = 200
        assert await d.replay() == (2, 0)
    assert await v.store.dead_letters() == []
    assert receiver.ids() == {e.id for e in events}
    if batched:
        replayed = _batched(receiver)[-2:]
        assert [[doc["id"] for doc in b] for b in replayed] == [[e.id] for e in events]


@pytest.mark.parametrize("status", sorted(REFUSED))
async def test_an_event_the_receiver_refuses_is_set_aside_without_waiting_out_an_outage(
    receiver: Receiver, status: int
) -> None:
    """One event answered 400 (413, 415, 422: the receiver will not take that document) is a
    dead letter after ``refused_after_s``, though ``dead_after_s`` is an hour: the feed's later
    events are not held back for it."""
    await receiver.start()
    v, c = Vendor(MemoryStore()), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    await v.deliver(c, c.share({"email": "a@example.org"}))
    events = await v.store.events()
    receiver.answers = {events[0].id: status}
    refusing = hook(receiver.url, dead_after_s=3600, refused_after_s=0.02)
    async with Deliverer(refusing, v.store) as d:
        assert await asyncio.wait_for(d.step(), 30)
    dead = await v.store.dead_letters("crm")
    assert [(x.pos, x.error) for x in dead] == [(events[0].pos, f"HTTP {status}")]
    assert await v.store.event_cursor("crm") == events[-1].pos
    assert [h["webhook-id"] for h, _ in receiver.got][-len(events) + 1 :] == [
        e.id for e in events[1:]]  # fmt: skip


@pytest.mark.parametrize("status", [500, 503, 401, 403, 404, 408, 429])
async def test_a_receiver_down_or_misconfigured_is_waited_for_up_to_dead_after_s(
    receiver: Receiver, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Any other failure keeps the event (and the feed) waiting for ``dead_after_s``: after
    twenty attempts, long past ``refused_after_s``, it is still being retried."""
    receiver.status = status
    receiver.want_posts = 20
    await receiver.start()
    v, c = Vendor(MemoryStore()), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    events = await v.store.events()
    waiting = hook(receiver.url, dead_after_s=3600, refused_after_s=0.001, backoff_max_s=0.005)
    async with Deliverer(waiting, v.store) as d:
        failure = await d.attempt(events[:1])
        assert failure is not None
        assert (str(failure), failure.refused) == (f"HTTP {status}", False)
        delivering = asyncio.create_task(d.deliver(events[:1]))
        await asyncio.wait_for(receiver.posted.wait(), 30)
        assert not delivering.done()
        delivering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await delivering
    assert await v.store.dead_letters("crm") == []
    failed = [r.getMessage() for r in caplog.records if "failed (" in r.getMessage()]
    assert failed == [f"webhook crm: {events[0].id} failed (HTTP {status}); retrying for up to "
                      f"3600 s"]  # once, not once per attempt  # fmt: skip


async def test_a_new_deliverer_goes_on_from_the_durable_cursor(receiver: Receiver) -> None:
    """The deliverer keeps the cursor it wrote in memory; another one (a restart, or the next
    worker to hold the hook's lock) starts from the store's: nothing acknowledged is sent
    again, nothing after it is skipped."""
    await receiver.start()
    v, c = Vendor(MemoryStore()), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    async with Deliverer(hook(receiver.url), v.store) as first:
        assert await first.step()
    await v.deliver(c, c.share({"n": "1"}))
    async with Deliverer(hook(receiver.url), v.store) as second:
        assert await second.step()
        assert not await second.step()
    events = await v.store.events()
    assert [h["webhook-id"] for h, _ in receiver.got] == [e.id for e in events]
    assert await v.store.event_cursor("crm") == events[-1].pos


class HeldPoster:
    """A Poster stand-in that holds the first POSTs until ``release_at`` are in flight, and
    counts how many are at once and in which order each relationship's events came."""

    def __init__(self, release_at: int) -> None:
        self.release_at = release_at  # every POST waits until this many are in flight
        self.in_flight = 0
        self.most = 0
        self.order: dict[str, list[int]] = {}
        self.go = asyncio.Event()

    async def post(self, header_lines: bytes, body: bytes) -> int:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        data = json.loads(body)["data"]
        self.order.setdefault(data["relationship"], []).append(data["seq"])
        if self.in_flight == self.release_at:
            self.go.set()
        await self.go.wait()
        self.in_flight -= 1
        return 204

    async def close(self) -> None:
        pass


async def test_at_most_parallel_relationships_are_delivered_at_once_each_in_order() -> None:
    """``parallel`` bounds the POSTs in flight (one per relationship at a time); every
    relationship's events go in their order."""
    store = MemoryStore()
    threads = [os.urandom(16) for _ in range(10)]
    await store.commit(Commit(events=tuple(event(t, seq, "p") for seq in range(3)
                                           for t in threads)))  # fmt: skip
    poster = HeldPoster(release_at=3)
    deliverer = Deliverer(hook("http://127.0.0.1:9/unused", parallel=3), store,
                          poster)  # type: ignore[arg-type]  # fmt: skip
    assert await asyncio.wait_for(deliverer.step(), 10)
    assert poster.most == 3  # the first three wait for each other; a fourth would join them
    assert deliverer.delivered == 30
    assert sorted(poster.order) == sorted(t.hex() for t in threads)
    assert all(seqs == [0, 1, 2] for seqs in poster.order.values())


class CursorLog(MemoryStore):
    """A MemoryStore that keeps every cursor it was told to record."""

    def __init__(self) -> None:
        super().__init__()
        self.cursors: list[int] = []

    async def commit(self, c: Commit) -> None:
        await super().commit(c)
        self.cursors += [pos for _, pos in c.event_cursors]


async def test_a_crash_between_records_delivers_again_only_what_was_not_recorded(
    receiver: Receiver,
) -> None:
    """Batches delivered after the last record are delivered again by the next deliverer (the
    receiver de-duplicates them by webhook-id); those recorded are not."""
    await receiver.start()
    store = CursorLog()
    v, customers = Vendor(store), [Customer(VENDOR) for _ in range(3)]
    for c in customers:
        await v.deliver(c, c.offer(*ACCEPTED))
    async with Deliverer(hook(receiver.url, batch=2), store) as first:
        assert await first.step()  # delivered and recorded: 2 events
        assert await first.deliver_batch() == 2  # delivered, not recorded
        assert await first.deliver_batch() == 2
        assert store.cursors == [2]
        # a SIGKILL here: the store keeps cursor 2
    async with Deliverer(hook(receiver.url), store) as second:
        assert await second.step()
        assert not await second.step()
    events = await store.events()
    sent = [h["webhook-id"] for h, _ in receiver.got]
    ids = [e.id for e in events]
    assert sorted(sent[:6]) == sorted(ids)  # the first deliverer's, then the second's
    assert sorted(sent[6:]) == sorted(ids[2:])
    assert store.cursors == [2, events[-1].pos]


async def test_by_default_the_cursor_is_recorded_after_every_batch(receiver: Receiver) -> None:
    """With the default ``record_s`` (0) a running deliverer records its cursor after each
    batch, so a crash re-delivers at most the batch in flight."""
    await receiver.start()
    store = CursorLog()
    v, customers = Vendor(store), [Customer(VENDOR) for _ in range(3)]
    for c in customers:
        await v.deliver(c, c.offer(*ACCEPTED))
    last = (await store.events())[-1].pos
    reached = asyncio.Event()

    async def commit(c: Commit) -> None:
        await CursorLog.commit(store, c)
        if last in store.cursors:
            reached.set()

    store.commit = commit  # type: ignore[method-assign]
    async with running(v.endpoint, [hook(receiver.url, batch=2)]):
        await asyncio.wait_for(reached.wait(), 30)
        recorded_while_running = list(store.cursors)
    assert len(recorded_while_running) == 3  # 6 events in batches of 2: a record after each
    assert recorded_while_running == sorted(recorded_while_running)


async def test_a_deliverer_records_its_cursor_when_stopped(receiver: Receiver) -> None:
    """While running, the cursor is recorded at most every ``record_s``; when the deliverer is
    stopped, at once, as far as every event was acknowledged: a restart sends again only the
    events after it."""
    await receiver.start()
    store = CursorLog()
    v = Vendor(store)
    customers = [Customer(VENDOR) for _ in range(5)]
    async with running(v.endpoint, [hook(receiver.url, record_s=3600.0)]):
        receiver.want = 2 * len(customers)
        for c in customers:
            await v.deliver(c, c.offer(*ACCEPTED))
        await asyncio.wait_for(receiver.enough.wait(), 30)
    events = await store.events()
    assert len(store.cursors) == 1  # once, at the stop
    after = [e.id for e in events if e.pos > store.cursors[0]]
    async with Deliverer(hook(receiver.url), store) as again:
        await again.step()
    assert sorted(h["webhook-id"] for h, _ in receiver.got[len(events):]) == sorted(after)


# -- configuration and the command ---------------------------------------------------------------


def test_the_webhooks_section() -> None:
    file = parse_vendor_file({"name": "Shop", "webhooks": [
        {"url": "https://crm.example/vrm-events", "secret": SECRET, "purposes": [2]},
    ]})  # fmt: skip
    (entry,) = file.webhooks
    h = entry.webhook("https://shop.example")
    assert (h.name, h.key, h.purposes) == ("https://crm.example/vrm-events", b"k" * 24,
                                           frozenset({2}))  # fmt: skip
    assert SECRET not in json.dumps(file.model_dump(mode="json"))
    assert not h.batched
    batched = parse_vendor_file({"name": "Shop", "webhooks": [
        {"url": "https://crm.example/vrm-events", "secret": SECRET, "batched": True},
    ]}).webhooks[0].webhook("https://shop.example")  # fmt: skip
    assert batched.batched
    assert batched.content_type == "application/cloudevents-batch+json"
    with pytest.raises(ConfigError, match="secret"):
        parse_vendor_file({"name": "Shop", "webhooks": [{"url": "https://c", "secret": "x"}]})
    with pytest.raises(ConfigError, match="ur"):
        parse_vendor_file({"name": "Shop", "webhooks": [{"uri": "https://c", "secret": SECRET}]})


def test_a_webhook_url_needs_a_host_and_a_numeric_port() -> None:
    for bad in ("http://", "https://:443/hook", "http://crm.example:port/hook"):
        with pytest.raises(ConfigError, match="url"):
            parse_vendor_file({"name": "Shop", "webhooks": [{"url": bad, "secret": SECRET}]})


def test_the_documented_webhooks_section_is_valid() -> None:
    import tomllib  # noqa: PLC0415

    doc = (Path(__file__).resolve().parents[1] / "docs" / "events.md").read_text("utf-8")
    toml = doc.split("```toml\n")[1].split("```")[0]
    file = parse_vendor_file({"name": "Shop", **tomllib.loads(toml)})
    assert [w.name for w in file.webhooks] == ["crm"]
    assert file.webhooks[0].webhook("https://shop.example/vrm").refused_after_s == 600


@pytest.fixture
def vendor_dir(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\naccepts_terms = '
                      f'{json.dumps(list(ACCEPTED))}\n\n[[webhooks]]\nname = "crm"\n'
                      f'url = "http://127.0.0.1:9/hook"\nsecret = "{SECRET}"\n')  # fmt: skip
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    return config, data


async def _fill(data: Path) -> list[str]:
    async with await SQLiteStore.open(data / "vendor.db") as store:
        v, c = Vendor(store), Customer(VENDOR)
        await v.deliver(c, c.offer(*ACCEPTED))
        await v.deliver(c, c.share({"email": "a@example.org"}))
        return [e.id for e in await store.events()]


async def test_vrm_vendor_events_reads_the_feed(vendor_dir: tuple[Path, Path]) -> None:
    config, data = vendor_dir
    ids = await _fill(data)
    runner = CliRunner()
    args = ["vendor", "events", "--config", str(config), "--data-dir", str(data)]
    out = await asyncio.to_thread(runner.invoke, main, [*args, "--json"], env=dict(os.environ))
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.output.splitlines()]
    assert [x["id"] for x in lines] == ids
    assert lines[2]["personal"]["fields"] == {"email": "a@example.org"}
    out = await asyncio.to_thread(runner.invoke, main, [*args, "--since", ids[1]])
    assert out.exit_code == 0, out.output
    assert len(out.output.splitlines()) == 1
    assert "data.shared" in out.output
    assert "fields: email" in out.output
    for nope in ("evt_nope", "\u00b2"):  # "²" is a digit to str.isdigit, not to int()
        out = await asyncio.to_thread(runner.invoke, main, [*args, "--since", nope])
        assert isinstance(out.exception, CliError), out.exception  # a sentence, not a trace
        assert out.exception.exit_code == EXIT_USAGE
    out = await asyncio.to_thread(runner.invoke, main, [*args, "--dead"])
    assert (out.exit_code, out.output) == (0, "No dead letters: no webhook has given up on an "
                                              "event.\n")  # (nothing at all before s19)


async def test_vrm_vendor_events_replay_delivers_the_dead_letters(receiver: Receiver,
                                                                 tmp_path: Path) -> None:
    await receiver.start()
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\n[server]\n'
                      f'public_url = "https://shop.example/vrm"\n[[webhooks]]\nname = "crm"\n'
                      f'url = "{receiver.url}"\nsecret = "{SECRET}"\n')  # fmt: skip
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    ids = await _fill(data)
    async with await SQLiteStore.open(data / "vendor.db") as store:
        events = await store.events()
        await store.commit(Commit(dead_letters=tuple(
            DeadLetter("crm", e.pos, e.recorded_ms, "HTTP 500") for e in events[1:])))
    args = ["vendor", "events", "--config", str(config), "--data-dir", str(data), "--json"]
    out = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--replay"],
                                  env=dict(os.environ))  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"webhook": "crm", "delivered": 2, "still_dead": 0}
    assert [b["id"] for b in receiver.verified()] == ids[1:]
    assert {b["source"] for b in receiver.verified()} == {"https://shop.example/vrm"}
    out = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--dead"],
                                  env=dict(os.environ))  # fmt: skip
    assert (out.exit_code, out.output) == (0, "")


async def test_vrm_vendor_serve_delivers_the_feed_to_its_webhooks(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The ``[[webhooks]]`` of the file are delivered while ``serve_vendor`` runs."""
    from vrmproto.cli._cmd_vendor import serve_vendor  # noqa: PLC0415
    from vrmproto.cli._vendor import check_vendor_file  # noqa: PLC0415

    await receiver.start()
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\naccepts_terms = '
                      f'{json.dumps(list(ACCEPTED))}\n[server]\nport = {free_port()}\n'
                      f'[[webhooks]]\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n')  # fmt: skip
    _, vendor_config = check_vendor_file(config, {})
    receiver.want = 2
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    listening = asyncio.Event()

    class Listening(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "event", "") == "listening":
                listening.set()

    handler = Listening()
    logger = logging.getLogger("vrmproto.server.vendor")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    task = asyncio.create_task(serve_vendor(vendor_config, identity=VENDOR, data_dir=data))
    try:
        await asyncio.wait_for(listening.wait(), 20)
        async with aiohttp.ClientSession() as session:
            c = Customer(VENDOR, base_url=f"http://127.0.0.1:{_port(config)}")
            await c.agree(session)
        await asyncio.wait_for(receiver.enough.wait(), 20)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [b["type"] for b in receiver.verified()] == [
        "org.vrmproto.relationship.opened", "org.vrmproto.terms.accepted",
    ]  # fmt: skip


def _port(config: Path) -> int:
    return int(config.read_text().split("port = ")[1].split("\n")[0])


async def test_vrm_vendor_events_follow_prints_new_events(vendor_dir: tuple[Path, Path]) -> None:
    """``--follow`` in a process of its own finds what the vendor commits after it started."""
    import sys  # noqa: PLC0415

    config, data = vendor_dir
    ids = await _fill(data)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vrmproto.cli", "vendor", "events", "--config", str(config),
        "--data-dir", str(data), "--follow", "--json", "--since", ids[0],
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        got = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 30)) for _ in ids[1:]]
        assert [g["id"] for g in got] == ids[1:]
        async with await SQLiteStore.open(data / "vendor.db") as store:
            v, c = Vendor(store), Customer(VENDOR)
            await v.deliver(c, c.offer(*ACCEPTED))
        line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        assert line["kind"] == "relationship.opened"
        assert line["relationship"] == c.thread.hex()
    finally:
        proc.kill()
        await proc.wait()
