"""Webhooks: the vendor's event feed pushed to its own systems, at least once, in order per
relationship (docs/events.md).

Each event is POSTed as a CloudEvents 1.0 JSON document (structured mode): ``id`` the event id,
``type`` ``org.vrmproto.<kind>``, ``source`` the vendor's public URL, ``subject`` the
relationship (thread id, hex), ``time`` when it was committed, ``data`` the event
(``FeedEvent.as_json``). :class:`Renderer` splices it from the event's stored JSON (the tests
check it reads as the ``cloudevents`` SDK's own rendering). It is signed per Standard
Webhooks: ``webhook-id`` (the event id, the receiver's de-duplication key),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`` under the secret given as ``whsec_<base64>``.

Delivery (:class:`Deliverer`): read a batch of the feed after the webhook's cursor, deliver
each relationship's events in order (relationships in parallel), retry a failure with
exponential backoff and jitter (each retry with the event as the store holds it then: the
fields of a share withdrawn meanwhile are not sent again, §12.10-2), and move the cursor
past an event once it and every event before it is delivered or set aside. The cursor is
recorded (committed) after every batch (``record_s`` 0, the default; a larger value records at
most that often while events keep coming), and when the deliverer stops. A crash therefore
re-delivers what was in flight and what was acknowledged since the last record, never skips.
An event still failing ``dead_after_s`` after its first attempt becomes a dead letter
(:class:`~vrmproto.store.DeadLetter`) and its relationship's later events go on; ``vrm vendor
events --replay`` delivers dead letters again. When an event started failing, and how many
attempts it had, is kept in the store with each failed attempt
(:class:`~vrmproto.store.FailingEvent`, schema v12), on the wall clock (``clock``): a restart
goes on with the same deadline and backoff — a vendor restarted daily still sets aside an event
that fails for ``dead_after_s``. A 2xx answer is an acknowledgement; anything else
(or no answer within ``timeout_s``) is a failure. An event the receiver refuses as such
(:data:`REFUSED`: 400, 413, 415, 422 — it will not take this document, however often sent) is
set aside after ``refused_after_s`` instead: the feed waits out a receiver that is down or
misconfigured (5xx, timeouts, 401, 403, 404…), but one event it will never take does not hold
back every relationship's later events for ``dead_after_s``. A 410 Gone says the endpoint itself
is gone for good (RFC 9110 §15.5.11): the webhook is paused (:class:`WebhookGone`) — no event
is dropped or set aside, its events wait in the feed, an error is logged and ``/metrics``
shows ``vrm_webhook_paused`` — until the server is started again (after the operator fixed or
removed the ``[[webhooks]]`` entry), when the event is tried again.

Batched mode (``batched``, opt-in per webhook): each batch read from the feed is ONE POST, a
CloudEvents JSON batch (``application/cloudevents-batch+json``: an array of the documents above,
in feed order, so every relationship's events in order), signed the same way with
``webhook-id`` ``evts_`` and a hash of the event ids. It is acknowledged, retried and set aside
as a whole; a receiver de-duplicates by each element's ``id``. One request per batch instead of
per event: for receivers that take many events a second. The POSTs go over kept-alive connections
(:class:`~vrmproto.server._webhook_http.Poster`: redirects are not followed).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from vrmproto import __version__
from vrmproto._errors import VrmError
from vrmproto.server._events import (
    FeedTrimmed,
    Wakeup,
    for_purposes,
    trimmed_before,
    unexpired,
    wakeup_of,
)
from vrmproto.server._retention import Retention, trimming
from vrmproto.server._webhook_http import HTTPError, Poster, Status
from vrmproto.store import Commit, DeadLetter, EventRecord, Store
from vrmproto.store._base import FailingEvent

if TYPE_CHECKING:
    from vrmproto.server._config import VendorFile
    from vrmproto.server._endpoint import Endpoint

__all__ = ["BATCH_CONTENT_TYPE", "CONTENT_TYPE", "GONE", "REFUSED", "Deliverer", "Failure",
           "Renderer", "Webhook", "WebhookGone", "listening_url", "parse_secret", "render",
           "running", "shown", "sign", "webhooks"]  # fmt: skip

log = logging.getLogger("vrmproto.server.webhooks")

SECRET_PREFIX = "whsec_"  # noqa: S105 -- the format's prefix, not a secret
TYPE_PREFIX = "org.vrmproto."
CONTENT_TYPE = "application/cloudevents+json"  # CloudEvents' structured JSON mode
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"  # its batched mode (a JSON array)
BATCH_ID_PREFIX = "evts_"  # a batched POST's webhook-id: this and a hash of its event ids
USER_AGENT = f"vrmproto/{__version__}"
#: Statuses by which a receiver refuses the POST itself, not its own state: Bad Request,
#: Content Too Large, Unsupported Media Type, Unprocessable Content (RFC 9110 §15.5).
REFUSED = frozenset({400, 413, 415, 422})
#: Gone (RFC 9110 §15.5.11): the receiver says the endpoint is no more, "likely to be
#: permanent": the webhook is paused, not retried (:class:`WebhookGone`).
GONE = 410
#: What a CloudEvent adds to an event's stored JSON besides the source, at most (its other
#: attributes, the event's id, relationship and kind a second time): to cut a batch to
#: ``Webhook.batch_bytes``.
_DOCUMENT_BYTES = 500
#: The longest an attempt may wait for the receiver's answer (``timeout_s``), in seconds.
MAX_TIMEOUT_S = 3600.0
#: An event is read from the store again before a retry, and before a first attempt made this
#: long after its batch was read (a relationship's earlier events held it up): a share withdrawn
#: meanwhile goes without its fields (§12.10-2, docs/events.md), a relationship deleted
#: meanwhile without what it said (§11.8-3).
FRESH_S = 1.0


def shown(name: str) -> str:
    """A webhook's ``name`` as logs, metrics and listings show it. Its default is the url, whose
    user info is a password (``Authorization: Basic``): that part is shown as ``***``. (The
    store still keys the cursor and dead letters by the name itself.)"""
    if "@" not in name:  # a name the file gives cannot hold one (its pattern)
        return name
    try:
        parts = urlsplit(name)
    except ValueError:
        return name
    if "@" not in parts.netloc:
        return name
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def parse_secret(text: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret (Standard Webhooks); ValueError if malformed."""
    if not text.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("a webhook secret is whsec_ and base64") from None
    if len(key) < 16:
        raise ValueError("a webhook secret needs at least 16 bytes of key")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of
    ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@dataclass(frozen=True, slots=True)
class Webhook:
    """One receiver of the feed. ``name`` keys its cursor and dead letters; ``purposes``, when
    given, limits the personal data it receives to shares made for one of them (§6.6)."""

    name: str
    url: str
    key: bytes
    source: str  # the vendor's public URL: the CloudEvents source
    purposes: frozenset[int] | None = None
    timeout_s: float = 10.0
    dead_after_s: float = 3 * 86_400.0
    refused_after_s: float = 600.0  # an event answered with a REFUSED status: set aside sooner
    backoff_s: float = 1.0  # the first retry's delay; it doubles up to backoff_max_s
    backoff_max_s: float = 300.0
    batch: int = 100
    parallel: int = 16  # relationships delivered at once
    # While delivering, the cursor is recorded at most this often. 0: after every batch, so a
    # crash re-delivers only that batch's acknowledged events (the acceptance line: duplicates
    # only of unacknowledged deliveries, as far as a cursor outside the receiver can tell).
    # Recording less often saved no measurable CPU at 64 in flight (bench/events.py).
    record_s: float = 0.0
    # After a batch that emptied the feed, before reading it again: while events keep coming,
    # batches of a few dozen rather than a few (a batch's read and cursor commit cost ~350 µs
    # of CPU; 10 ms made that ~15 µs per event at 2,400 events a second).
    linger_s: float = 0.05
    # Batched mode: each batch is ONE POST of a JSON array of CloudEvents (in feed order),
    # acknowledged, retried and set aside as a whole. Off: one POST per event.
    batched: bool = False
    # Batched mode: a POST carries at most this many bytes of events (a batch of up to ``batch``
    # events is cut short), so that a few large shares do not make the body one a receiver
    # refuses (nginx's default limit is 1 MiB) and set aside every customer's events in it.
    batch_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        """Times and sizes delivery can work with (docs/events.md, "Webhooks"): an attempt's
        ``timeout_s`` a finite time up to :data:`MAX_TIMEOUT_S` (an infinite one, which TOML
        writes ``inf``, left a receiver that never answers holding the feed for ever); the
        other times finite and not negative, but ``dead_after_s`` and ``refused_after_s``,
        which may be infinite (never set aside); counts and sizes at least 1."""
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:  # NaN compares false: refused too
            raise ValueError(f"webhook {self.shown}: timeout_s must be more than 0 and at most "
                             f"{MAX_TIMEOUT_S:.0f} seconds, not {self.timeout_s}")  # fmt: skip
        for name in ("dead_after_s", "refused_after_s", "backoff_s", "backoff_max_s",
                     "linger_s", "record_s"):  # fmt: skip
            value: float = getattr(self, name)
            never = name in ("dead_after_s", "refused_after_s") and value == math.inf
            if not (value >= 0 and (math.isfinite(value) or never)):
                raise ValueError(f"webhook {self.shown}: {name} must be a finite number of "
                                 f"seconds, 0 or more, not {value}")  # fmt: skip
        for name in ("batch", "parallel", "batch_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"webhook {self.shown}: {name} must be at least 1, not "
                                 f"{getattr(self, name)}")  # fmt: skip

    @property
    def shown(self) -> str:
        """The name as logs and metrics show it (:func:`shown`: no password)."""
        return shown(self.name)

    @property
    def content_type(self) -> str:
        return BATCH_CONTENT_TYPE if self.batched else CONTENT_TYPE

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """The wait before retry ``attempt`` (1, 2, …): exponential, with full jitter in its
        upper half so that receivers coming back are not hit by every sender at once."""
        # 2.0 ** 1024 is beyond a float: the ceiling is reached long before (attempt 10 with
        # the defaults), and an event failing for dead_after_s makes over a thousand attempts
        doublings = min(attempt - 1, 64)
        ceiling: float = min(self.backoff_max_s, self.backoff_s * 2.0 ** doublings)
        return ceiling * (0.5 + rng() / 2)


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt: ``what`` went wrong, as a dead letter records it (``HTTP 500``,
    ``TimeoutError: …``); ``refused``: the receiver answered with a :data:`REFUSED` status;
    ``gone``: with :data:`GONE`; ``retry_after_s``: how long its ``Retry-After`` asked to wait
    (a 429 or 503), the least wait before the next attempt (up to ``backoff_max_s``)."""

    what: str
    refused: bool = False
    gone: bool = False
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return self.what


class WebhookGone(VrmError):  # noqa: N818 -- what the receiver said, as the operator reads it
    """The receiver answered 410 Gone: its endpoint is gone for good, so the deliverer stops
    delivering to it (``run`` waits until cancelled; ``step`` raises this). Nothing is dropped:
    the cursor stays before the event, which is recorded as failing with ``gone`` (what
    ``vrm_webhook_paused`` reads), and a deliverer started again tries it first."""

    def __init__(self, hook: Webhook, what: str) -> None:
        super().__init__(f"webhook {hook.shown}: the receiver answered 410 Gone to {what}: it "
                         "says this endpoint is gone for good, so delivery to it is paused. No "
                         "event is dropped or set aside: they wait in the feed. Fix the url of "
                         "this [[webhooks]] entry (or remove the entry) and restart the server: "
                         "delivery resumes with this event.")  # fmt: skip
        self.hook = hook


class Renderer:
    """The POSTs of one hook: each event's CloudEvent and its Standard Webhooks signature, from
    the event as the store holds it (its JSON bytes spliced, not decoded and encoded again), the
    constant parts built once."""

    def __init__(self, hook: Webhook) -> None:
        self.hook = hook
        source = json.dumps(hook.source).encode()
        self._head = b'{"specversion":"1.0","source":%s,"type":"%s' % (source,
                                                                      TYPE_PREFIX.encode())
        self._mac = hmac.new(hook.key, digestmod=hashlib.sha256)
        self._second = -1
        self._stamp = b""

    def body(self, e: EventRecord, now_ms: int) -> bytes:
        """``e`` as a CloudEvents 1.0 JSON document: ``id`` the event id, ``type``
        ``org.vrmproto.<kind>``, ``source`` the vendor's URL, ``subject`` the relationship,
        ``time`` when it was committed, ``data`` the event as ``FeedEvent.as_json`` gives it,
        with the personal data this hook may have at ``now_ms`` (§5.3.1-4, §6.6)."""
        fields = e.data.strip()[1:-1]  # the stored JSON object's members: type, from, body…
        if fields.strip():
            fields += b","
        return b'%s%s","id":"%s","subject":"%s","time":"%s","datacontenttype":"application/json",' \
               b'"data":{"id":"%s","pos":%d,"relationship":"%s","seq":%d,"kind":"%s",' \
               b'"recorded":%d,%s"personal":%s}}' % (
                   self._head, e.kind.encode(), e.id.encode(), e.thread.hex().encode(),
                   self._time(e.recorded_ms), e.id.encode(), e.pos, e.thread.hex().encode(),
                   e.seq, e.kind.encode(), e.recorded_ms, fields, self._personal(e, now_ms))

    def batch(self, events: Sequence[EventRecord], now_ms: int) -> tuple[str, bytes]:
        """``events`` as one CloudEvents JSON batch (a JSON array of the documents
        :meth:`body` makes, in feed order) and its ``webhook-id``: ``evts_`` and a hash of the
        event ids, the same for every attempt of the same events."""
        ids = hashlib.blake2b(" ".join(e.id for e in events).encode(), digest_size=16)
        return BATCH_ID_PREFIX + ids.hexdigest(), b"[%s]" % b",".join(
            self.body(e, now_ms) for e in events)

    def _personal(self, e: EventRecord, now_ms: int) -> bytes:
        """The event's personal data for this hook: none once the share expired (§5.3.1-4), or
        when the hook names purposes and the share none of them (§6.6); of an address update,
        the fields held for one of them (§12.10-1)."""
        if e.personal is None:
            return b"null"
        stored = json.loads(e.personal)
        personal = unexpired(stored, now_ms)  # and of an update, no field of an expired share
        if personal is None:
            return b"null"
        whole = e.personal if personal is stored else json.dumps(
            personal, separators=(",", ":"), sort_keys=True).encode()
        purposes = self.hook.purposes
        if purposes is not None and "purposes" in personal:
            return for_purposes(personal, purposes) or whole
        return whole

    def _time(self, ms: int) -> bytes:
        """RFC 3339, UTC, to the millisecond (the CloudEvents ``time``)."""
        second = ms // 1000
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        return b"%s.%03dZ" % (self._stamp, ms % 1000)

    def signature(self, event_id: str, now_s: int, body: bytes) -> bytes:
        """The Standard Webhooks header fields of ``body``, each ending CRLF: ``webhook-id``,
        ``webhook-timestamp`` and ``webhook-signature`` (``v1,`` and the base64 HMAC-SHA256 of
        ``id.timestamp.body``; the same as :func:`sign`)."""
        mac = self._mac.copy()
        mac.update(b"%s.%d." % (event_id.encode(), now_s))
        mac.update(body)
        return b"webhook-id: %s\r\nwebhook-timestamp: %d\r\nwebhook-signature: v1,%s\r\n" % (
            event_id.encode(), now_s, base64.b64encode(mac.digest()))


def render(hook: Webhook, e: EventRecord, now_ms: int) -> tuple[bytes, dict[str, str]]:
    """The body and headers of ``e``'s POST to ``hook`` at ``now_ms`` (see the module
    docstring; the Deliverer sends these, with Host, User-Agent and Content-Length)."""
    r = Renderer(hook)
    body = r.body(e, now_ms)
    headers = {"content-type": CONTENT_TYPE}
    for line in r.signature(e.id, now_ms // 1000, body).decode().splitlines():
        name, _, value = line.partition(": ")
        headers[name] = value
    return body, headers


class Deliverer:
    """Pushes the feed of ``store`` to ``hook`` until cancelled (see the module docstring), with
    ``poster`` (default: its own, closed by :meth:`close`). ``wakeup`` wakes it when this
    process — and, where the Wakeup watches a PostgreSQL store, any process — commits an event;
    ``clock`` gives wall-clock ms (the dead-letter deadlines are kept in the store by it);
    ``sleep`` waits between two attempts of a failing event."""

    def __init__(
        self,
        hook: Webhook,
        store: Store,
        poster: Poster | None = None,
        *,
        wakeup: Wakeup | None = None,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.hook = hook
        self.store = store
        self._own = poster is None
        self.poster = poster if poster is not None else Poster(
            hook.url, timeout_s=hook.timeout_s, content_type=hook.content_type,
            user_agent=USER_AGENT)
        self.renderer = Renderer(hook)
        self.wakeup = wakeup if wakeup is not None else Wakeup()
        self.clock = clock
        self.sleep = sleep
        self.delivered = 0  # deliveries acknowledged (2xx), for tests and the bench
        self.failed = 0  # attempts that failed
        self.trimmed = 0  # positions trimmed from the feed before they were delivered
        self._cursor: int | None = None  # delivered (or set aside) up to here
        self._recorded = 0  # the durable cursor, as this deliverer last read or wrote it
        self._recorded_at = time.monotonic()
        self._dead: list[DeadLetter] = []  # set aside since, to record with the cursor
        # the events being retried, by pos, as the store holds them (read with the cursor)
        self._failing: dict[int, FailingEvent] = {}
        self._cleared: list[int] = []  # failing no more (delivered or set aside): to record
        self._read_at = 0.0  # when the batch being delivered was read (monotonic)
        #: Set once the receiver answered 410 Gone: ``run`` delivers no more.
        self.paused = asyncio.Event()

    async def __aenter__(self) -> Deliverer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections of the poster it made."""
        if self._own:
            await self.poster.close()

    async def run(self) -> None:
        """Deliver until cancelled. One process at a time delivers to a hook: the others
        (workers of the same vendor) wait on its store lock (§11.11-2). The cursor is recorded
        at most every ``record_s`` while events keep coming, within ``record_s`` once they stop,
        and when cancelled: a crash re-delivers what was acknowledged since, with what was in
        flight — never skips."""
        async with self.store.lock(b"webhook:" + self.hook.name.encode()):
            self._cursor = None  # another process may have moved it before we had the lock
            try:
                await self._run()
            finally:
                try:
                    await self.record()
                except Exception:  # stopping anyway: the next run delivers them again
                    log.exception("webhook %s: the cursor could not be recorded", self.hook.shown)

    async def _run(self) -> None:
        hook = self.hook
        while True:
            armed = self.wakeup.arm()
            try:
                try:
                    count = await self.deliver_batch()
                except WebhookGone as gone:
                    await self.record()  # as far as delivered before the gone one
                    log.error("%s", gone)
                    self.paused.set()
                    await asyncio.Future()  # until cancelled: the others wait on the lock
                due = hook.record_s - (time.monotonic() - self._recorded_at)
                if self.unrecorded and due <= 0:
                    await self.record()
                if count >= hook.batch:  # behind: straight on
                    continue
                if count:  # caught up: let a few events gather before the next read
                    await asyncio.sleep(hook.linger_s)
                    continue
                if self.unrecorded:  # record within record_s, unless more events come first
                    await self.wakeup.wait(armed, max(due, 0.0))
                    continue
            except Exception:  # the store failed: deliver again from the recorded cursor
                log.exception("webhook %s: delivery failed", hook.shown)
                self._cursor = None
                self._dead = []
                self._cleared = []
                await asyncio.sleep(hook.backoff_s)
                continue
            await self.wakeup.wait(armed)

    @property
    def unrecorded(self) -> bool:
        """Whether events were delivered or set aside past the recorded cursor."""
        return self._cursor != self._recorded or bool(self._dead) or bool(self._cleared)

    async def step(self) -> bool:
        """Deliver one batch after the cursor and record the cursor past it; False if there was
        none. :class:`WebhookGone` once the cursor is recorded as far as delivered, if the
        receiver answered 410."""
        try:
            count = await self.deliver_batch()
        finally:
            await self.record()
        return count > 0

    async def record(self) -> None:
        """Commit the cursor as far as delivered, and the dead letters set aside before it
        (the record of their failing goes with them, and that of events delivered after
        failing)."""
        if self._cursor is None or not self.unrecorded:
            return
        cursor, dead, cleared = self._cursor, tuple(self._dead), tuple(self._cleared)
        name = self.hook.name
        await self.store.commit(Commit(event_cursors=((name, cursor),), dead_letters=dead,
                                       failing_done=tuple((name, p) for p in cleared)))
        self._recorded = cursor
        del self._dead[: len(dead)]
        del self._cleared[: len(cleared)]
        self._recorded_at = time.monotonic()

    async def _load(self) -> int:
        """Read the durable cursor (returned), and the events being retried (those the cursor
        has passed are failing no more: their record goes with the next cursor record)."""
        name = self.hook.name
        cursor = self._cursor = self._recorded = await self.store.event_cursor(name)
        self._failing = {f.pos: f for f in await self.store.failing(name)}
        self._cleared = [p for p in self._failing if p <= cursor]
        return cursor

    async def deliver_batch(self) -> int:
        """Deliver (or set aside) the next batch after the cursor, each relationship's events
        in order, relationships in parallel; move the cursor past it in memory (:meth:`record`
        makes that durable). How many events it had: 0 if none."""
        hook = self.hook
        cursor = self._cursor if self._cursor is not None else await self._load()
        batch = await self.store.events(cursor, hook.batch)
        # a webhook without a cursor yet starts from the oldest event kept (docs/events.md)
        accepted = await self.store.feed_floor() if not cursor and batch else 0
        try:
            await trimmed_before(self.store, cursor, batch, accepted)
        except FeedTrimmed as trimmed:  # told, then on from the oldest event kept
            log.error("webhook %s: the events after position %d up to %d were trimmed from the "
                      "feed before they were delivered (older than [feed] max_days): this "
                      "receiver will not get them", hook.shown, trimmed.after,
                      trimmed.floor)  # fmt: skip
            self.trimmed += trimmed.floor - trimmed.after
        self._read_at = time.monotonic()
        if not batch:
            return 0
        if hook.batched:
            return await self._deliver_whole(batch)
        dead: list[DeadLetter] = []
        done: set[int] = set()
        lanes: dict[bytes, list[EventRecord]] = {}
        for e in batch:
            lanes.setdefault(e.thread, []).append(e)
        waiting = iter(lanes.values())

        async def worker() -> None:  # `parallel` of these take the lanes in turn
            for events in waiting:
                for e in events:
                    failure = await self.deliver((e,))
                    if failure is not None:
                        dead.append(DeadLetter(hook.name, e.pos, self.clock(), failure))
                    done.add(e.pos)

        going = [asyncio.create_task(worker()) for _ in range(min(hook.parallel, len(lanes)))]
        try:  # a lane that fails (the store, or a receiver gone) stops the others
            await asyncio.wait(going, return_when=asyncio.FIRST_EXCEPTION)
        finally:  # stopped midway too: up to the first event not yet done
            for task in going:
                task.cancel()
            await asyncio.gather(*going, return_exceptions=True)
            reached = cursor
            for e in batch:
                if e.pos not in done:
                    break
                reached = e.pos
            self._dead.extend(d for d in dead if d.pos <= reached)
            # one set aside past the cursor is delivered again: with its record of failing
            self._cleared = [p for p in self._cleared if p <= reached]
            self._cursor = reached
        for task in going:
            if not task.cancelled() and (failed := task.exception()) is not None:
                raise failed
        return len(batch)

    async def _deliver_whole(self, batch: Sequence[EventRecord]) -> int:
        """Batched mode: the events of ``batch`` that fit in ``batch_bytes`` (the first one
        at least) as one POST until acknowledged, or every event of it set aside as a dead
        letter; the cursor then moves past them. How many events ``batch`` had."""
        size, end, overhead = 1, len(batch), _DOCUMENT_BYTES + len(self.hook.source)
        for i, e in enumerate(batch):
            size += len(e.data) + len(e.personal or b"") + overhead
            if size > self.hook.batch_bytes and i:
                end = i
                break
        sent = batch[:end]
        failure = await self.deliver(sent)
        if failure is not None:
            now = self.clock()
            self._dead.extend(DeadLetter(self.hook.name, e.pos, now, failure) for e in sent)
        self._cursor = sent[-1].pos
        return len(batch)

    async def deliver(self, events: Sequence[EventRecord]) -> str | None:
        """POST ``events`` (one, or in batched mode a batch) until acknowledged (None) or dead:
        the last failure, ``dead_after_s`` after the first — or ``refused_after_s`` when the
        receiver's last answer refused the POST as such (:data:`REFUSED`). Each failed
        attempt is recorded in the store (:class:`~vrmproto.store.FailingEvent`, keyed by the
        first event's pos), and an event failing when the deliverer started goes on from that
        record: its first failure's time and its attempts (so its backoff) survive a
        restart."""
        started = time.monotonic()
        hook = self.hook
        key = events[0].pos
        what = events[0].id if len(events) == 1 else f"a batch of {len(events)} events"
        known = self._failing.get(key)
        # one the receiver had answered 410 (before a restart) is tried as if for the first time
        since = None if known is None or known.gone else known.since_ms
        attempt = 0 if known is None or known.gone else known.attempts
        tried = 0  # attempts made by this deliverer
        while True:
            if tried or started - self._read_at > FRESH_S:
                events = await self._current(events)
                if not events:  # trimmed while retried: nothing is left to deliver
                    self._clear(key)
                    return None
            failure = await self.attempt(events)
            tried += 1
            now = self.clock()
            if failure is None:
                if attempt:
                    log.info("webhook %s: %s delivered after %d failed attempts", hook.shown,
                             what, attempt)  # fmt: skip
                if attempt or known is not None:
                    self._clear(key)
                return None
            attempt += 1
            if since is None:
                since = now
            if failure.gone:  # recorded as such (the metric reads it), and the hook paused
                failing = FailingEvent(hook.name, key, since, attempt, failure.what, gone=True)
                await self.store.commit(Commit(failing=(failing,)))
                self._failing[key] = failing
                raise WebhookGone(hook, what)
            limit = hook.refused_after_s if failure.refused else hook.dead_after_s
            if now - since >= limit * 1000:
                log.warning("webhook %s: %s is a dead letter: %s", hook.shown, what, failure)
                self._clear(key)
                return failure.what
            if tried == 1:  # once per event and process, not per retry: the feed waits for it
                if attempt == 1:
                    log.warning("webhook %s: %s failed (%s); retrying for up to %.0f s",
                                hook.shown, what, failure, limit)  # fmt: skip
                else:
                    log.warning("webhook %s: %s still failing (%s) after %d attempts since %.0f s "
                                "ago; retrying for up to %.0f s more", hook.shown, what, failure,
                                attempt, (now - since) / 1000, limit - (now - since) / 1000)
            failing = FailingEvent(hook.name, key, since, attempt, failure.what)
            await self.store.commit(Commit(failing=(failing,)))
            self._failing[key] = failing
            wait = hook.delay(attempt)
            if failure.retry_after_s is not None:  # the receiver's own word, up to our longest
                wait = max(wait, min(failure.retry_after_s, hook.backoff_max_s))
            await self.sleep(wait)

    def _clear(self, key: int) -> None:
        """The event at ``key`` fails no more: its record goes with the next cursor record."""
        self._failing.pop(key, None)
        if key not in self._cleared:
            self._cleared.append(key)

    async def _current(self, events: Sequence[EventRecord]) -> Sequence[EventRecord]:
        """``events`` as the store holds them now, before a retry or a late first attempt:
        the personal data of a share withdrawn since they were read is gone from its event
        (§12.10-2), and must not be sent again; the body of a relationship deleted since
        (§11.8-3) too — an intentcast's or an offer's, which carry no personal data (a late
        first attempt read only those that did, until session 22). One retention trimmed since
        (``[feed] max_days``, whoever has not had it) is not there: it is left out, and logged
        as the batch read would have."""
        first, last = events[0].pos, events[-1].pos
        now = {e.pos: e for e in await self.store.events(first - 1, last - first + 1)}
        gone = [e.id for e in events if e.pos not in now]
        if gone:
            log.error("webhook %s: %s was trimmed from the feed while it was retried (older "
                      "than [feed] max_days): this receiver will not get it", self.hook.shown,
                      ", ".join(gone))  # fmt: skip
            self.trimmed += len(gone)
        return [now[e.pos] for e in events if e.pos in now]

    async def attempt(self, events: Sequence[EventRecord]) -> Failure | None:
        """One POST of ``events``: in batched mode as a batch (of one, too), else the one event
        as its document. None if acknowledged (2xx), else what went wrong."""
        now = self.clock()
        if self.hook.batched:
            webhook_id, body = self.renderer.batch(events, now)
        else:
            (e,) = events
            webhook_id, body = e.id, self.renderer.body(e, now)
        try:
            status = await self.poster.post(self.renderer.signature(webhook_id, now // 1000, body),
                                            body)  # fmt: skip
        except (OSError, HTTPError, TimeoutError) as exc:
            self.failed += 1
            return Failure(f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= status < 300:
            self.delivered += len(events)
            return None
        self.failed += 1
        if isinstance(status, Status) and status.location is not None:
            # the url is likely the vendor's to change (http:// to a receiver on https://)
            return Failure(f"HTTP {status} to {status.location[:300]}: a webhook follows no "
                           "redirect; set its url to where the receiver is")
        later = status.retry_after_s if isinstance(status, Status) else None
        return Failure(f"HTTP {status}", status in REFUSED, status == GONE, later)

    async def replay(self) -> tuple[int, int]:
        """Deliver this hook's dead letters again, in feed order, one attempt each; those
        acknowledged leave the dead letters. Returns (delivered, still dead)."""
        done: list[tuple[str, int]] = []
        left = 0
        for d in await self.store.dead_letters(self.hook.name):
            found = await self.store.events(d.pos - 1, 1)
            if not found or found[0].pos != d.pos:
                done.append((d.name, d.pos))  # the event is gone: nothing to replay
                continue
            if await self.attempt(found) is None:
                done.append((d.name, d.pos))
            else:
                left += 1
        if done:
            await self.store.commit(Commit(dead_letters_done=tuple(done)))
        return len(done), left


@contextlib.asynccontextmanager
async def running(endpoint: Endpoint, hooks: Sequence[Webhook], *, poll_s: float | None = None,
                  retention: Retention | None = None,
                  ) -> AsyncIterator[list[Deliverer]]:  # fmt: skip
    """Deliver ``endpoint``'s feed to each of ``hooks`` while the block runs; woken by the
    endpoint's commits and, on PostgreSQL, every process's (``poll_s``: the fallback poll).
    ``retention``: also trim the feed (:mod:`vrmproto.server._retention`), keeping what these
    hooks have not had. ValueError if two hooks have one name: it keys a hook's cursor and its
    lock."""
    names = [h.name for h in hooks]
    if len(set(names)) < len(names):  # one would wait for the other's lock for ever
        twice = sorted({shown(n) for n in names if names.count(n) > 1})
        raise ValueError(f"two webhooks are named {', '.join(twice)} (a webhook without a name "
                         "is named after its url): give each a name of its own")  # fmt: skip
    tasks: list[asyncio.Task[None]] = []
    if retention is not None:
        tasks.append(asyncio.create_task(trimming(endpoint.store, retention, names,
                                                  endpoint.clock), name="feed retention"))
    deliverers: list[Deliverer] = []
    if hooks:
        wakeup = wakeup_of(endpoint, poll_s)
        deliverers = [Deliverer(h, endpoint.store, wakeup=wakeup, clock=endpoint.clock)
                      for h in hooks]  # fmt: skip
        tasks += [asyncio.create_task(d.run(), name=f"webhook {d.hook.shown}")
                  for d in deliverers]  # fmt: skip
    try:
        yield deliverers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for d in deliverers:
            await d.close()


def listening_url(file: VendorFile) -> str | None:
    """The URL ``vrm vendor serve`` of ``file`` listens at (as its server's ``url`` says it),
    the CloudEvents ``source`` of its webhooks when the file names no ``server.public_url``:
    None when the file leaves the port to the system (0), which picks another at each start.
    What ``vrm vendor events --replay`` sends from, so that a receiver gets a dead letter from
    the source it got the feed from."""
    server = file.server
    if not server.port:
        return None
    scheme = "https" if server.tls_cert is not None and server.tls_key is not None else "http"
    host = f"[{server.host}]" if ":" in server.host else server.host
    return f"{scheme}://{host}:{server.port}"


def webhooks(file: VendorFile, url: str) -> list[Webhook]:
    """The ``[[webhooks]]`` of a vendor file; ``url``: the vendor's own, when the file names no
    ``server.public_url`` (the CloudEvents source)."""
    return [entry.webhook(file.server.public_url or url) for entry in file.webhooks]
