"""The vendor's event feed: what each accepted message tells the vendor's own systems.

Every message a vendor accepts (and every reply of its own committed with it, receipts and
problems aside) becomes one :class:`~vrmproto.store.EventRecord`, written in the SAME store
Commit as the message (:func:`events_of`, called from the accept step): nothing is an event that
was not committed, and nothing committed fails to become one. The format is documented in
``docs/events.md``; this module owns the event kinds, the JSON payloads and the in-process
reader (:func:`follow`, ``Endpoint.events``). Delivery to webhooks is ``_webhooks``.

- ``id`` — ``evt_`` and the hex of the message's hash: stable, the same on every replay.
- ``seq`` — the message's index in the relationship's history: increasing per relationship.
- ``data`` — the message's body without sealed content or keys, as JSON.
- ``erase`` (data.withdrawn) — the ids of the data.shared events whose fields consumers must
  erase now (an empty ``shares`` withdraws them all, §5.3.2, and with them the fields that
  address.updated events gave and no share held: those events' ids too, §5.3.2-1); at a
  share's ``personal.expires`` consumers erase its fields without being told again (§5.3.1-4).
- ``personal`` — the fields of a data.share or address.update with the purposes and categories
  the customer agreed to (§5.3.1). When the share is withdrawn or expires, the store's
  ``held_drop`` of it also drops this (§12.10-2, §12.10-4), and the fields held under it from
  every address.updated event (which names, per field, the share it is held under: §5.3.6-2),
  and of the fields the vendor then holds no more, the values the share had replaced from every
  event of the thread (§12.10-1: a reader of the whole feed ends with what the vendor holds):
  the event stays, its personal data goes; a reader also withholds them once the share's expiry
  has passed, before the sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import json.encoder
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from vrmproto._envelope import Signed
from vrmproto._errors import VrmError
from vrmproto._messages import (
    AddressUpdate,
    DataShare,
    FieldsContent,
    Money,
    RecordsContent,
    TermsOffer,
    TermsReject,
)
from vrmproto._state import Role
from vrmproto._vocab import TermRef
from vrmproto.server._fast import setters
from vrmproto.store import EventRecord, HeldRecord, Store
from vrmproto.store._base import EventWatch
from vrmproto.store._redact import without

if TYPE_CHECKING:
    from vrmproto.server._accept import Step
    from vrmproto.server._endpoint import Endpoint

__all__ = ["EXPIRED", "KINDS", "Feed", "FeedAhead", "FeedEvent", "FeedTrimmed", "Wakeup",
           "events_of", "expired_record", "follow", "to_feed_event", "wakeup_of"]  # fmt: skip

#: Event kind per message type (a terms.offer at index 0 opens the relationship).
KINDS: Mapping[str, str] = {
    "terms.offer": "terms.offered",
    "terms.accept": "terms.accepted",
    "terms.reject": "terms.rejected",  # "terms.countered" when it carries a counter-offer
    "data.share": "data.shared",
    "data.withdraw": "data.withdrawn",
    "data.erased": "data.erased",
    "data.request": "data.requested",
    "data.return": "data.returned",
    "address.update": "address.updated",
    "intentcast": "intentcast.received",
    "intent.offer": "offer.sent",
    "intent.decline": "offer.declined",
    "key.rotate": "key.rotated",
    "relationship.end": "relationship.ended",
}
OPENED = "relationship.opened"
COUNTERED = "terms.countered"
#: The vendor deleted a relationship that never reached an agreement (§11.8-3): no message.
EXPIRED = "relationship.expired"
_SKIPPED_FIELDS = frozenset({"sealed", "enc_key"})  # ciphertext and keys tell a CRM nothing


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


_MAPPINGPROXY = type(type.__dict__)


def _plain(value: object) -> object:
    """The JSON encoder's ``default``, for the values JSON has no type for: bytes as hex, terms
    as ``{id, version, params}`` (``params`` when there are any), money as its two parts, a
    mapping as an object (tuples are arrays)."""
    if isinstance(value, bytes):
        return value.hex()
    if type(value) is _MAPPINGPROXY:  # a message's field map: before the ABC's slower check
        return value.copy()  # its mapping's own copy (a dict's: ten times dict(value)'s speed)
    if isinstance(value, TermRef):  # the parameters are what was agreed: days=30 (§6.3)
        if value.params:
            return {"id": value.id, "version": value.version, "params": dict(value.params)}
        return {"id": value.id, "version": value.version}
    if isinstance(value, Money):
        return {"amount": value.amount, "currency": value.currency}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


#: The body fields an event shows, per body class (dataclasses.fields is slow to ask per message).
_SHOWN: dict[type, tuple[str, ...]] = {}


def _body(msg: Signed[Any]) -> dict[str, Any]:
    """The body's shown fields that are set, as they are: the encoder converts the values
    (:func:`_plain`), so that nothing is copied before it is written."""
    body = msg.body
    names = _SHOWN.get(type(body))
    if names is None:
        names = _SHOWN[type(body)] = tuple(
            f.name for f in dataclasses.fields(body) if f.name not in _SKIPPED_FIELDS
        )
    return {name: value for name in names if (value := getattr(body, name)) is not None}


def kind_of(msg: Signed[Any], seq: int) -> str:
    if isinstance(msg.body, TermsOffer) and seq == 0:
        return OPENED
    if isinstance(msg.body, TermsReject) and msg.body.counter:
        return COUNTERED
    return KINDS[msg.type]


# json.dumps with arguments builds an encoder per call, which costs more than the encoding of an
# event's few fields: one C encoder, made once, compact and with sorted keys. No check for
# cycles (None): the values are built here, from a decoded message.
_ENCODE = getattr(json.encoder, "c_make_encoder", None)
_ENCODE = None if _ENCODE is None else _ENCODE(
    None, _plain, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True)


def _dumps(value: object) -> bytes:
    """``value`` as compact JSON with sorted keys (ASCII: other characters escaped), the values
    JSON has no type for converted by :func:`_plain`."""
    if _ENCODE is None:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, default=_plain).encode()
    return "".join(_ENCODE(value, 0)).encode()


def _personal(msg: Signed[Any], content: FieldsContent | RecordsContent | None,
              held: Iterable[HeldRecord] = ()) -> bytes | None:  # fmt: skip
    """The personal data an event may carry: the fields of a share or an address update, with
    the purposes and categories the customer agreed to (§5.3.1). An address update names no
    purposes: each of its fields is held for those of the value it replaces (§12.10-1, the
    ``held`` rows), given as ``field_purposes``, and ``purposes`` is all of them; and as that
    value is held (§5.3.6-2): ``field_shares`` names the data.shared event of each field held
    under a share, ``field_expires`` that share's expiry (both empty when no field is). A
    withdrawal or expiry of that share takes the field out of this event too
    (:mod:`vrmproto.store._redact`); the other fields are held from address updates, and stay."""
    if not isinstance(content, FieldsContent):
        return None
    body = msg.body
    if isinstance(body, DataShare):
        return _dumps({"fields": content.fields, "purposes": body.purposes,
                       "categories": body.categories, "expires": body.expires})  # fmt: skip
    if isinstance(body, AddressUpdate):
        each, shares, expires = {}, {}, {}
        for h in held:
            each[h.field] = h.purposes
            if h.expires_ms is not None:  # held under a share: only its rows expire (_held)
                shares[h.field] = "evt_" + h.share.hex()
                expires[h.field] = h.expires_ms
        return _dumps({"fields": content.fields, "field_purposes": each, "field_shares": shares,
                       "field_expires": expires,
                       "purposes": sorted({p for ps in each.values() for p in ps})})  # fmt: skip
    return None


def for_purposes(personal: Mapping[str, Any], purposes: frozenset[int]) -> bytes | None:
    """``personal`` (an event's) for a consumer of ``purposes`` only (a webhook's, §6.6): None
    when none of its fields is held for one of them; else the JSON of the fields that are, or
    None again when that is every field (``personal`` as it is stored serves)."""
    if purposes.isdisjoint(personal["purposes"]):
        return b"null"
    each = personal.get("field_purposes")
    if each is None:
        return None
    gone = {name for name in personal["fields"] if purposes.isdisjoint(each.get(name, ()))}
    if not gone:
        return None
    kept = without(personal, gone)
    return b"null" if kept is None else _dumps(kept)


def unexpired(personal: dict[str, Any], now: int) -> dict[str, Any] | None:
    """``personal`` (an event's) at ``now``: None once its share expired; of an address
    update, without the fields held under a share that expired (§5.3.1-4, §5.3.6-2)."""
    if personal.get("expires", now + 1) <= now:
        return None
    expiring = personal.get("field_expires")
    if expiring:
        gone = {name for name, expires in expiring.items() if expires <= now}
        if gone:
            return without(personal, gone)
    return personal


#: The end of an event's ``data`` after its body, created time and erasures, by message type
#: and direction: ``,"from":…,"type":…}`` (the type names are plain ASCII, written as-is).
_TAILS: dict[tuple[str, bool], bytes] = {
    (mtype, incoming): b',"from":%s,"type":%s}' % (
        _dumps("customer" if incoming else "vendor"), _dumps(mtype))
    for mtype in KINDS for incoming in (True, False)
}  # fmt: skip

_EVENT_FIELDS = ("id", "thread", "seq", "kind", "msg_hash", "recorded_ms", "data", "personal",
                 "pos")  # fmt: skip
(_set_id, _set_thread, _set_seq, _set_kind, _set_msg_hash, _set_recorded, _set_data,
 _set_personal, _set_pos) = setters(EventRecord, _EVENT_FIELDS)  # fmt: skip


def record_of(
    msg: Signed[Any],
    seq: int,
    *,
    now: int,
    incoming: bool,
    personal: bytes | None = None,
    erase: Iterable[bytes] = (),
) -> EventRecord | None:
    """The event ``msg`` (logged at ``seq``) makes, or None for a receipt or problem.
    ``erase``: the shares whose data consumers must erase now (a withdrawal's, §5.3.2)."""
    tail = _TAILS.get((msg.type, incoming))
    if tail is None:
        return None
    # _dumps({"type": …, "from": …, "created": …, "body": …[, "erase": …]}), its keys in
    # sorted order: only the body is encoded per message, the rest is written around it
    parts = [b'{"body":', _dumps(_body(msg)), b',"created":%d' % msg.header.created]
    if erase:
        parts.append(b',"erase":' + _dumps(["evt_" + share.hex() for share in erase]))
    parts.append(tail)
    # EventRecord(id, thread, seq, kind, msg_hash, now, data, personal), built through its
    # slots (:mod:`._fast`): one per accepted message
    e = EventRecord.__new__(EventRecord)
    _set_id(e, "evt_" + msg.hash.hex())
    _set_thread(e, msg.thread)
    _set_seq(e, seq)
    _set_kind(e, kind_of(msg, seq))
    _set_msg_hash(e, msg.hash)
    _set_recorded(e, now)
    _set_data(e, b"".join(parts))
    _set_personal(e, personal)
    _set_pos(e, 0)
    return e


def expired_record(thread: bytes, seq: int, *, now: int, last_ms: int,
                   ttl_ms: int) -> EventRecord:  # fmt: skip
    """The event of ``thread``'s deletion at ``now`` for never reaching an agreement
    (§11.8-3), for the deletion's own Commit: no message tells it, so its ``type`` is null and
    its id ``evt_`` and a hash of the thread (a relationship is deleted once); ``seq`` after
    every message of the thread; ``body``: when its last message came (``last_message``) and
    ``open_relationship_ttl_ms``. It says nothing the relationship said: the deletion forgets
    those (``_redact.forgotten``), and this event is not of a kind it forgets."""
    digest = hashlib.sha256(b"vrm.relationship.expired\0" + thread).digest()
    data = _dumps({"body": {"last_message": last_ms, "ttl_ms": ttl_ms}, "created": now,
                   "from": "vendor", "type": None})  # fmt: skip
    return EventRecord("evt_" + digest.hex(), thread, seq, EXPIRED, digest, now, data)


def events_of(ep: Endpoint, step: Step, msg: Signed[Any], now: int) -> tuple[EventRecord, ...]:
    """The events of one accept step, for its Commit: the incoming message's, then each of our
    replies' (a customer's agent endpoint keeps no feed)."""
    if ep.role is not Role.VENDOR:
        return ()
    seq = step.rel.history.index_of(msg.hash)
    if seq is None:
        seq = len(step.rel.history) - 1
    first = record_of(msg, seq, now=now, incoming=True,
                      personal=_personal(msg, step.event.content, step.held),
                      erase=[share for _, share in step.held_drop])  # fmt: skip
    events = [] if first is None else [first]
    for sent in step.replies:
        reply = record_of(sent.message, sent.entry.index, now=now, incoming=False)
        if reply is not None:
            events.append(reply)
    return tuple(events)


# -- reading the feed ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One event as a consumer reads it (see ``docs/events.md``)."""

    id: str
    pos: int
    thread: bytes
    seq: int
    kind: str
    recorded_ms: int
    data: dict[str, Any]
    personal: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        """The event as the JSON object the CLI prints and a webhook's CloudEvent carries."""
        return {"id": self.id, "pos": self.pos, "relationship": self.thread.hex(),
                "seq": self.seq, "kind": self.kind, "recorded": self.recorded_ms,
                **self.data, "personal": self.personal}  # fmt: skip


def to_feed_event(e: EventRecord, now: int) -> FeedEvent:
    """``e`` for a reader at ``now``: a share's fields are withheld once it expired, wherever
    they are (:func:`unexpired`, §5.3.1-4)."""
    personal = None if e.personal is None else unexpired(json.loads(e.personal), now)
    return FeedEvent(e.id, e.pos, e.thread, e.seq, e.kind, e.recorded_ms, json.loads(e.data),
                     personal)  # fmt: skip


class Wakeup:
    """Wakes feed readers when this process commits an event (after the commit: an endpoint
    hook, §12.12) and, once it watches a store that tells (:meth:`watch`; PostgreSQL's
    LISTEN/NOTIFY), when any process commits one. ``poll_s`` bounds the wait otherwise: for
    events other processes commit to a store that does not tell (SQLite), or a notification
    lost while the listening connection was down.

    A reader takes :meth:`arm` BEFORE it reads the store and awaits :meth:`wait` on it after,
    so a commit between the read and the wait is not missed."""

    def __init__(self, poll_s: float = 1.0) -> None:
        if poll_s <= 0:
            raise ValueError("poll_s must be positive")
        self.poll_s = poll_s
        self._changed = asyncio.Event()
        self._unwatch: Callable[[], None] | None = None

    def watch(self, store: Store) -> Wakeup:
        """Also wake when ``store`` says events were committed, by any process
        (:class:`~vrmproto.store.EventWatch`; nothing for a store that does not); ``self``."""
        if self._unwatch is None and isinstance(store, EventWatch):
            self._unwatch = store.watch_events(self.notify)
        return self

    def unwatch(self) -> None:
        """Stop waking on the store's word (closing the store stops it too)."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    def notify(self) -> None:
        """Wake every reader armed before now; called once per committed message, so a commit
        when no reader is armed (the event already set) costs one attribute test."""
        changed = self._changed
        if not changed.is_set():
            changed.set()

    def arm(self) -> asyncio.Event:
        """The event a reader waits on: set by the next commit after this call."""
        if self._changed.is_set():  # fired since the last arm: a fresh one for this reader
            self._changed = asyncio.Event()
        return self._changed

    async def wait(self, armed: asyncio.Event, timeout_s: float | None = None) -> None:
        """Until woken after ``armed`` was taken, or ``poll_s`` (``timeout_s`` if shorter)."""
        limit = self.poll_s if timeout_s is None else min(timeout_s, self.poll_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(armed.wait(), limit)


_WAKEUPS: weakref.WeakKeyDictionary[Endpoint, Wakeup] = weakref.WeakKeyDictionary()


def wakeup_of(ep: Endpoint, poll_s: float | None = None) -> Wakeup:
    """The endpoint's :class:`Wakeup`, subscribed to its hooks and watching its store on first
    use; ``poll_s``: set its poll interval."""
    found = _WAKEUPS.get(ep)
    if found is None:
        found = _WAKEUPS[ep] = Wakeup().watch(ep.store)
        ep._listen(found.notify)  # in the accept step, after its commit: no task per message
    if poll_s is not None:
        found.poll_s = poll_s
    return found


async def resolve(store: Store, after: int | str) -> int:
    """A feed position from a position or an event id (the position of that event)."""
    if isinstance(after, int):
        return after
    found = await store.event(after)
    if found is None:
        raise KeyError(f"no event {after!r} in the feed")
    return found.pos


class FeedTrimmed(VrmError):  # noqa: N818 -- what happened, as the operator reads it
    """The events after a reader's position are no longer in the feed: retention trimmed them
    (``[feed]`` in the vendor file, docs/events.md "Retention") up to ``floor``, the newest
    event trimmed, before this reader had them. It is raised instead of skipping them silently;
    a reader that accepts the loss starts again from the oldest event kept (``after=0``; the
    Tryton bridge's ``--resync``)."""

    def __init__(self, after: int, floor: int) -> None:
        super().__init__(f"the event feed no longer holds the events after position {after}: "
                         f"retention trimmed them up to {floor} before this reader had them "
                         "(older than [feed] max_days, or not kept for any consumer: "
                         "docs/events.md, Retention); read again from the oldest event kept "
                         "(position 0) to go on without them")  # fmt: skip
        self.after = after
        self.floor = floor


class FeedAhead(VrmError):  # noqa: N818 -- what happened, as the operator reads it
    """A reader's position is past the feed's newest event (``head``). Positions are never
    handed out again, so it is a position of another feed: a vendor store since restored from
    a backup, or another vendor's. Raised instead of reading nothing (or waiting until the
    feed grows past it, and skipping every event up to it without a word)."""

    def __init__(self, after: int, head: int) -> None:
        newest = (f"the feed's newest event is at position {head}" if head else
                  "the feed holds no event yet")  # fmt: skip
        super().__init__(f"no event comes after position {after}: {newest} (a position from "
                         "a store since restored from a backup, or another vendor's?); read "
                         f"from position {head} for the events that come next, or from 0 for "
                         "every event the feed keeps")  # fmt: skip
        self.after = after
        self.head = head


class Feed(AsyncGenerator[FeedEvent, None]):
    """What :func:`follow` returns: its events, and the ``store`` they are read from, where a
    consumer that keeps a cursor of its own (the Tryton bridge) records how far it got, so
    that retention keeps what it has not had (docs/events.md, "Retention")."""

    def __init__(self, store: Store, events: AsyncGenerator[FeedEvent, None]) -> None:
        self.store = store
        self._events = events

    async def __anext__(self) -> FeedEvent:
        return await self._events.__anext__()

    async def asend(self, value: None) -> FeedEvent:
        return await self._events.asend(value)

    async def athrow(self, typ: type[BaseException] | BaseException, val: object = None,
                     tb: TracebackType | None = None) -> FeedEvent:  # fmt: skip
        if isinstance(typ, BaseException):
            return await self._events.athrow(typ)
        return await self._events.athrow(typ(val) if val is not None else typ())

    async def aclose(self) -> None:
        await self._events.aclose()


async def trimmed_gap(store: Store, pos: int, found: Sequence[EventRecord],
                      accepted: int = 0) -> tuple[int, FeedTrimmed] | None:  # fmt: skip
    """Where ``found`` (the events read after ``pos``) skips events that retention trimmed: the
    index of the event after them and the :class:`FeedTrimmed` to raise there, or None. Looked
    at only where ``found`` has a gap (positions are consecutive but for trimming and, on
    PostgreSQL, a rolled-back insert), at each one, not only before its first event: a dead
    letter stays below the floor until it is replayed, while the events after it go.
    Positions up to ``accepted`` are known to be gone: a reader from position 0 reads from the
    oldest event kept, and passes the floor at its start (:func:`follow`)."""
    prev = pos
    for i, e in enumerate(found):
        if e.pos != prev + 1 and e.pos - 1 > max(prev, accepted):  # a gap past ``accepted``
            floor = await store.feed_floor()
            if max(prev, accepted) < floor:
                return i, FeedTrimmed(max(prev, accepted), floor)
            return None  # every later gap is above the floor too
        prev = e.pos
    return None


async def trimmed_before(store: Store, pos: int, found: Sequence[EventRecord],
                         accepted: int = 0) -> None:  # fmt: skip
    """:class:`FeedTrimmed` if ``found`` skips events after ``pos`` that were trimmed
    (:func:`trimmed_gap`)."""
    gap = await trimmed_gap(store, pos, found, accepted)
    if gap is not None:
        raise gap[1]


def follow(
    store: Store,
    wakeup: Wakeup | None,
    after: int | str = 0,
    *,
    clock: Callable[[], int] = wall_ms,
    batch: int = 100,
) -> Feed:
    """Every event after ``after`` (a position or an event id), in feed order, then each new
    one as it is committed; without ``wakeup``, stop at the end of the feed.
    :class:`FeedTrimmed` when retention trimmed events after ``after`` before they were read
    (``after`` 0 reads from the oldest event kept); :class:`FeedAhead` when ``after`` is past
    the feed's newest event."""
    return Feed(store, _follow(store, wakeup, after, clock, batch))


async def _follow(store: Store, wakeup: Wakeup | None, after: int | str,
                  clock: Callable[[], int], batch: int
                  ) -> AsyncGenerator[FeedEvent, None]:  # fmt: skip
    pos = await resolve(store, after)
    if pos > 0 and pos > (head := await store.feed_head()):
        raise FeedAhead(pos, head)
    accepted = await store.feed_floor() if pos == 0 else 0  # from the oldest event kept
    while True:
        armed = wakeup.arm() if wakeup is not None else None
        found = await store.events(pos, batch)
        gap = await trimmed_gap(store, pos, found, accepted)
        now = clock()
        for e in found if gap is None else found[: gap[0]]:  # what is kept before the gap
            pos = e.pos
            yield to_feed_event(e, now)
        if gap is not None:
            raise gap[1]
        if len(found) == batch:
            continue
        if wakeup is None or armed is None:
            return
        await wakeup.wait(armed)


def kinds() -> Iterable[str]:
    """Every event kind, sorted."""
    return sorted({*KINDS.values(), OPENED, COUNTERED, EXPIRED})
