"""An in-memory :class:`~vrmproto.store.Store` for tests and in-memory customer/vendor pairs.

Same semantics as :class:`~vrmproto.store.SQLiteStore` — the order in which a Commit's parts
apply, the uniqueness rules (a history slot, a dedupe key; not a message hash, see
:mod:`vrmproto.store._base`), the history gap and relationship checks, all or nothing — but
nothing survives the process, so "durable" means only "visible to every later call".
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import operator
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from contextlib import AbstractAsyncContextManager

from vrmproto._closing import AsyncClosing
from vrmproto._quick import quick_new
from vrmproto.store._base import (
    Commit,
    DeadLetter,
    DedupeRecord,
    DraftRecord,
    EventRecord,
    FailingEvent,
    HeldRecord,
    HistoryEntry,
    IntentRecord,
    OfferRecord,
    OutboxItem,
    RelationshipRecord,
    SavePoint,
    ShareNote,
    StoreConflict,
    StoreCounts,
    StoreError,
    StoreUsage,
    ThreadRecord,
    check_next_index,
)
from vrmproto.store._locks import LocalLocks
from vrmproto.store._redact import (
    LEGACY,
    NEVER,
    UNAGREED,
    UPDATED,
    Redaction,
    carried,
    forgotten,
    governed,
    needle,
    stripped,
)
from vrmproto.store._rel_query import RelationshipsWhere
from vrmproto.store._rows import ThreadKind
from vrmproto.store._trim import TRIM_BATCH, trim_plan

_new_item = quick_new(OutboxItem)  # OutboxItem(...): every message sent is one

__all__ = ["MemoryStore"]

_THREAD = operator.attrgetter("thread")


class _Index:
    """The threads of the relationships (or thread records) holding each value of one column,
    kept as the records change: what a look-up by that column reads instead of every record."""

    __slots__ = ("_by",)

    def __init__(self) -> None:
        self._by: dict[object, dict[bytes, None]] = {}

    def move(self, thread: bytes, old: object, new: object) -> None:
        if old == new:
            return
        if old is not None:
            held = self._by[old]
            del held[thread]
            if not held:
                del self._by[old]
        if new is not None:
            self._by.setdefault(new, {})[thread] = None

    def get(self, value: object) -> dict[bytes, None]:
        return self._by.get(value, {})


class _RelationshipIndexes:
    """The relationships by peer key (and by peer key and state: a vendor's few live or ended
    ones among the many intentcast threads with it), peer URL, label and state, and their thread
    ids in order (a prefix of one names a range of them): :meth:`MemoryStore.relationships_where`.
    """

    __slots__ = ("key_state", "label", "order", "peer_key", "peer_url", "state")

    def __init__(self) -> None:
        self.peer_key = _Index()
        self.key_state = _Index()
        self.peer_url = _Index()
        self.label = _Index()
        self.state = _Index()
        self.order: list[bytes] = []

    def move(self, old: RelationshipRecord | None, new: RelationshipRecord | None) -> None:
        """``old`` (None: a new thread) becomes ``new`` (None: the thread is dropped)."""
        if (old is not None and new is not None and old.peer_key == new.peer_key
                and old.state == new.state and old.peer_url == new.peer_url
                and old.label == new.label):  # fmt: skip
            return  # most Commits: a message in a relationship that stays where it is
        some = new or old
        assert some is not None
        thread = some.thread
        self.peer_key.move(thread, old and old.peer_key, new and new.peer_key)
        self.key_state.move(thread, old and (old.peer_key, old.state),
                            new and (new.peer_key, new.state))  # fmt: skip
        self.peer_url.move(thread, old and old.peer_url, new and new.peer_url)
        self.label.move(thread, old and old.label, new and new.label)
        self.state.move(thread, old and old.state, new and new.state)
        if old is None:
            bisect.insort(self.order, thread)
        elif new is None:
            del self.order[bisect.bisect_left(self.order, thread)]

    def candidates(self, where: RelationshipsWhere) -> Iterable[bytes]:
        """The threads that may match ``where``: those of its most selective indexed column."""
        buckets: list[Collection[bytes]] = [index.get(value) for index, value in (
            (self.peer_key, where.peer_key), (self.peer_url, where.peer_url),
            (self.label, where.label)) if value is not None]  # fmt: skip
        if where.states is not None and where.peer_key is not None:
            buckets.append([thread for state in where.states
                            for thread in self.key_state.get((where.peer_key, state))])  # fmt: skip
        elif where.states is not None:
            buckets.append([thread for state in where.states for thread in self.state.get(state)])
        if buckets:
            return min(buckets, key=len)
        if where.thread_range is not None:
            first, last = where.thread_range
            return self.order[bisect.bisect_left(self.order, first):
                              bisect.bisect_right(self.order, last)]  # fmt: skip
        return self.order


class MemoryStore(AsyncClosing):
    """Dictionaries behind the :class:`~vrmproto.store.Store` protocol."""

    def __init__(self) -> None:
        self._closed = False
        self._relationships: dict[bytes, RelationshipRecord] = {}
        self._history: dict[bytes, list[HistoryEntry]] = {}
        # (thread, msg_hash) -> the lowest index holding it (the engine logs a message once)
        self._by_hash: dict[tuple[bytes, bytes], int] = {}
        self._dedupe: dict[tuple[bytes, bytes], DedupeRecord] = {}
        self._outbox: dict[int, OutboxItem] = {}
        self._next_item_id = 1
        self._meta: dict[str, bytes] = {}
        self._threads: dict[bytes, ThreadRecord] = {}
        self._rel_index = _RelationshipIndexes()
        self._threads_by_vendor = _Index()  # by (vendor_key, kind)
        # per thread, so that what a step does to its thread costs nothing per other thread
        self._drafts: dict[bytes, dict[int, DraftRecord]] = {}  # thread -> seq -> draft
        self._save_points: dict[bytes, dict[bytes, SavePoint]] = {}  # thread -> msg_hash -> p
        self._held: dict[bytes, dict[str, HeldRecord]] = {}  # thread -> field -> row
        self._intents: dict[bytes, IntentRecord] = {}
        self._offers: dict[bytes, OfferRecord] = {}
        self._share_notes: dict[bytes, ShareNote] = {}
        self._notes_by_thread: dict[bytes, dict[bytes, ShareNote]] = {}  # thread -> share -> n
        self._locks = LocalLocks()
        self._events: list[EventRecord] = []  # by pos
        self._positions: list[int] = []  # their pos, for bisect (trimming leaves gaps)
        self._next_pos = 1
        self._floor = 0  # the highest pos trimmed (:meth:`trim_events`)
        self._event_ids: dict[str, int] = {}  # id -> pos
        self._cursors: dict[str, int] = {}
        self._dead: dict[tuple[str, int], DeadLetter] = {}
        self._failing: dict[tuple[str, int], FailingEvent] = {}

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    async def close(self) -> None:
        self._closed = True

    def lock(
        self, name: bytes, *, on_wait: Callable[[], None] | None = None
    ) -> AbstractAsyncContextManager[None]:
        """The lock ``name`` among this store's users (nothing else can share a MemoryStore)."""
        self._check_open()
        return self._locks.hold(name, on_wait)

    # -- writes --

    def _check(self, c: Commit) -> None:
        """Raise what SQLiteStore would raise for ``c``, before anything is changed."""
        if c.history:  # (each part tested first: most Commits have few of the 28)
            self._check_history(c)
        new_keys: set[tuple[bytes, bytes]] = set()
        for d in c.dedupe:  # (a vendor's inbox step has one)
            key = (d.sender, d.msg_id)
            if key in self._dedupe or key in new_keys:
                raise StoreConflict("UNIQUE constraint failed: dedupe.sender, dedupe.msg_id")
            new_keys.add(key)
        if not c.drafts_add:
            return
        freed = set(c.drafts_done)
        slots: set[tuple[bytes, int]] = set()
        for draft in c.drafts_add:
            slot = (draft.thread, draft.seq)
            taken = draft.seq in self._drafts.get(draft.thread, {})
            if (taken and slot not in freed) or slot in slots:
                raise StoreConflict("UNIQUE constraint failed: drafts.thread, drafts.seq")
            slots.add(slot)

    def _check_history(self, c: Commit) -> None:
        """Each history entry of ``c`` fills the next slot of its thread's history (after the
        truncation ``c`` makes), of a thread with a relationship record."""
        held = self._relationships
        threads: set[bytes] | None = None  # c's own (made if a thread is not in ``held``)
        heads: dict[bytes, int] = {
            thread: min(index, len(self._history.get(thread, ()))) for thread, index in c.truncate
        } if c.truncate else {}  # fmt: skip
        for h in c.history:
            if h.thread not in held:
                if threads is None:
                    threads = {r.thread for r in c.relationships}
                if h.thread not in threads:
                    raise StoreError("history entry for a thread that has no relationship record")
            expected = heads.get(h.thread, len(self._history.get(h.thread, ())))
            check_next_index(h, expected)
            heads[h.thread] = expected + 1

    async def commit(
        self, c: Commit, *, expect: RelationshipRecord | None = None, durable: bool = True
    ) -> None:
        """Apply ``c`` all or nothing: every check runs before the first change. ``expect``:
        apply it only if the store holds exactly this record for its thread, else
        :class:`StoreConflict`, as :meth:`vrmproto.store.SQLiteStore.commit` does.
        ``durable=False`` is allowed and changes nothing (nothing here outlives the process)."""
        await self.commit_ids(c, expect=expect, durable=durable)

    async def commit_ids(
        self, c: Commit, *, expect: RelationshipRecord | None = None, durable: bool = True
    ) -> tuple[int, ...]:
        """:meth:`commit`, returning the ids given to the items of ``c.outbox_add``, in
        order."""
        self._check_open()
        await asyncio.sleep(0)  # a real store yields here; callers must not rely on it not
        if expect is not None and self._relationships.get(expect.thread) != expect:
            raise StoreConflict(f"relationship {expect.thread.hex()} changed since it was read")
        self._check(c)
        for r in c.relationships:
            self._rel_index.move(self._relationships.get(r.thread), r)
            self._relationships[r.thread] = r
        for t in c.threads:
            old = self._threads.get(t.thread)
            if old is None or old.vendor_key != t.vendor_key or old.kind is not t.kind:
                self._threads_by_vendor.move(t.thread, old and (old.vendor_key, old.kind),
                                             (t.vendor_key, t.kind))  # fmt: skip
            self._threads[t.thread] = t
        self._meta.update(c.meta)
        for thread, first in c.truncate:
            for h in self._history.get(thread, [])[first:]:
                if self._by_hash.get((thread, h.msg_hash), -1) >= first:  # its first is dropped
                    del self._by_hash[thread, h.msg_hash]
            if thread in self._history:
                del self._history[thread][first:]
        for h in c.history:
            self._history.setdefault(h.thread, []).append(h)
            self._by_hash.setdefault((h.thread, h.msg_hash), h.index)
        for thread, msg_hash, envelope in c.erase:  # every entry holding it, as SQLite's UPDATE
            index = self._by_hash.get((thread, msg_hash))
            if index is not None:
                entries = self._history[thread]
                for i in range(index, len(entries)):
                    if entries[i].msg_hash == msg_hash:
                        entries[i] = dataclasses.replace(entries[i], envelope=envelope)
        for d in c.dedupe:
            self._dedupe[d.sender, d.msg_id] = d
        for item_id in c.outbox_done:
            self._outbox.pop(item_id, None)
        ids: list[int] = []
        for o in c.outbox_add:
            item_id, self._next_item_id = self._next_item_id, self._next_item_id + 1
            self._outbox[item_id] = _new_item(
                item_id, o.destination, o.thread, o.msg_hash, o.envelope, 0,
                o.next_attempt_ms, "", o.created_ms,
            )  # fmt: skip
            ids.append(item_id)
        self._apply_rows(c)
        self._forget_threads(c.drop)
        for thread in c.drop:
            self._drop(thread)
        for key in c.unset:
            self._meta.pop(key, None)
        self._apply_events(c)
        return tuple(ids)

    def _apply_events(self, c: Commit) -> None:
        """Parts 23–28 of ``c``: the event feed."""
        for e in c.events:
            pos = self._next_pos
            self._next_pos += 1
            self._event_ids[e.id] = pos
            self._positions.append(pos)
            self._events.append(dataclasses.replace(e, pos=pos))
        self._cursors.update(c.event_cursors)
        for key in c.dead_letters_done:
            self._dead.pop(key, None)
        if c.dead_letters:  # (each part tested first: most Commits have few of the 28)
            self._dead.update(((d.name, d.pos), d) for d in c.dead_letters)
        for key in c.failing_done:
            self._failing.pop(key, None)
        if c.failing:
            self._failing.update(((f.name, f.pos), f) for f in c.failing)

    def _apply_rows(self, c: Commit) -> None:
        """The typed-record parts of ``c``, in :class:`~vrmproto.store.Commit`'s order."""
        for thread, seq in c.drafts_done:
            self._drafts.get(thread, {}).pop(seq, None)
        for draft in c.drafts_add:
            self._drafts.setdefault(draft.thread, {})[draft.seq] = draft
        for thread in c.save_points_clear:
            self._save_points.pop(thread, None)
        for thread, msg_hash in c.save_points_done:
            self._save_points.get(thread, {}).pop(msg_hash, None)
        for p in c.save_points:
            self._save_points.setdefault(p.thread, {})[p.msg_hash] = p
        for thread, share in c.held_drop:
            rows = self._held.get(thread, {})
            for field in [f for f, h in rows.items() if h.share == share]:
                del rows[field]
        for h in c.held:
            self._held.setdefault(h.thread, {})[h.field] = h
        if c.held_drop:  # the dropped shares' events keep no personal data, nor the address
            self._redact(c.held_drop)  # updates' events the fields held under them
        if c.intents:
            self._intents.update((i.intent_id, i) for i in c.intents)
        if c.offers:
            self._offers.update((o.hash, o) for o in c.offers)
        for n in c.share_notes:
            was = self._share_notes.get(n.share)
            if was is not None and was.thread != n.thread:
                del self._notes_by_thread[was.thread][n.share]
            self._share_notes[n.share] = n
            self._notes_by_thread.setdefault(n.thread, {})[n.share] = n
        for intent_id in c.intents_drop:
            self._intents.pop(intent_id, None)
            for offer in [k for k, o in self._offers.items() if o.intent_id == intent_id]:
                del self._offers[offer]

    def _redact(self, held_drop: Collection[tuple[bytes, bytes]]) -> None:
        """Part 15 for the feed, as :func:`vrmproto.store._sqlite_events.redact` does it: the
        dropped shares' own events and the fields held under them in the address updates,
        then, of the fields they governed, those the vendor holds no more from every event of
        the thread (:mod:`vrmproto.store._redact`)."""
        own = {(e.thread, e.msg_hash): (e.pos, carried(e.personal)) for e in self._events
               if e.personal is not None and (e.thread, e.msg_hash) in held_drop}  # fmt: skip
        governs: dict[bytes, set[str]] = {}  # per thread, the fields the dropped shares governed
        for (thread, _), (_, fields) in own.items():
            governs.setdefault(thread, set()).update(fields)
        plan, index = Redaction(), {}  # pos -> its index in the list
        for i, e in enumerate(self._events):
            if e.personal is None:
                continue
            if (e.thread, e.msg_hash) in own:
                self._events[i] = dataclasses.replace(e, personal=None)
            elif e.kind == UPDATED:
                for thread, share in held_drop:
                    since, fields = own.get((thread, share), (NEVER, frozenset()))
                    if thread == e.thread and (needle(share) in e.personal or (
                            e.pos > since and LEGACY not in e.personal)):  # fmt: skip
                        plan.found(e.pos, e.personal, share, since, fields)
                        index[e.pos] = i
                        governs.setdefault(thread, set()).update(
                            governed(e.personal, share, fields if e.pos > since else ()))
        for pos, after in plan.changes():
            i = index[pos]
            self._events[i] = dataclasses.replace(self._events[i], personal=after)
        unheld = {t: then.difference(self._held.get(t, {})) for t, then in governs.items()}
        for i, e in enumerate(self._events):
            gone = unheld.get(e.thread)
            if gone and e.personal is not None:
                after = stripped(e.personal, gone)
                if after != e.personal:
                    self._events[i] = dataclasses.replace(e, personal=after)

    def _forget_threads(self, threads: Collection[bytes]) -> None:
        """Part 21 for the feed, as :func:`vrmproto.store._sqlite_events.forget_threads`: the
        events of the kinds a relationship has before an agreement, of each deleted thread,
        keep their place and kind but not what the message said (§11.8-3)."""
        if not threads:
            return
        gone = set(threads)
        for i, e in enumerate(self._events):
            if e.thread in gone and e.kind in UNAGREED:
                after = forgotten(e.data)
                if after != e.data:
                    self._events[i] = dataclasses.replace(e, data=after)

    def _drop(self, thread: bytes) -> None:
        """Delete ``thread`` and every row of it but outbox items and share notes."""
        record = self._relationships.pop(thread, None)
        if record is not None:
            self._rel_index.move(record, None)
        for h in self._history.pop(thread, []):
            self._by_hash.pop((thread, h.msg_hash), None)
        t = self._threads.pop(thread, None)
        if t is not None:
            self._threads_by_vendor.move(thread, (t.vendor_key, t.kind), None)
        self._drafts.pop(thread, None)
        self._save_points.pop(thread, None)
        self._held.pop(thread, None)

    async def outbox_retry(
        self, item_id: int, attempts: int, next_attempt_ms: int, last_error: str
    ) -> None:
        self._check_open()
        item = self._outbox.get(item_id)
        if item is not None:
            self._outbox[item_id] = dataclasses.replace(
                item, attempts=attempts, next_attempt_ms=next_attempt_ms, last_error=last_error
            )

    async def events(
        self, after: int = 0, limit: int = 100, *, thread: bytes | None = None
    ) -> list[EventRecord]:
        self._check_open()
        start = bisect.bisect_right(self._positions, after)
        found = (e for e in self._events[start:] if thread is None or e.thread == thread)
        return [e for _, e in zip(range(limit), found, strict=False)]

    async def event(self, event_id: str) -> EventRecord | None:
        self._check_open()
        pos = self._event_ids.get(event_id)
        if pos is None:
            return None
        index = bisect.bisect_left(self._positions, pos)
        found = index < len(self._positions) and self._positions[index] == pos
        return self._events[index] if found else None

    async def feed_floor(self) -> int:
        self._check_open()
        return self._floor

    async def event_cursors(self) -> dict[str, int]:
        self._check_open()
        return dict(sorted(self._cursors.items()))

    async def forget_consumer(self, name: str) -> bool:
        self._check_open()
        had = self._cursors.pop(name, None) is not None
        for rows in (self._dead, self._failing):
            mine = [key for key in rows if key[0] == name]
            for key in mine:
                del rows[key]
            had = had or bool(mine)
        return had

    async def trim_events(self, upto: int, *, recorded_before: int, keep: Collection[int] = (),
                          limit: int = TRIM_BATCH) -> int:  # fmt: skip
        """See :meth:`~vrmproto.store.Store.trim_events` (:func:`trim_plan`)."""
        self._check_open()
        split = bisect.bisect_right(self._positions, self._floor)
        rows = [(e.pos, e.recorded_ms) for e in self._events[split:split + limit]]
        below = [(e.pos, e.recorded_ms) for e in self._events[:split]]
        plan = trim_plan(rows, below, floor=self._floor, upto=upto,
                         head=self._events[-1].pos if self._events else 0,
                         recorded_before=recorded_before, keep=keep)  # fmt: skip
        if plan is None:
            return 0
        last, doomed = plan
        gone = set(doomed)
        kept = [e for e in self._events if e.pos not in gone]
        self._events = kept
        self._positions = [e.pos for e in kept]
        self._floor = max(self._floor, last)
        return len(gone)

    async def event_cursor(self, name: str) -> int:
        self._check_open()
        return self._cursors.get(name, 0)

    async def feed_head(self) -> int:
        self._check_open()
        return self._events[-1].pos if self._events else 0

    async def dead_letters(self, name: str | None = None) -> list[DeadLetter]:
        self._check_open()
        return [d for key, d in sorted(self._dead.items()) if name is None or key[0] == name]

    async def failing(self, name: str | None = None) -> list[FailingEvent]:
        self._check_open()
        return [f for key, f in sorted(self._failing.items()) if name is None or key[0] == name]

    async def purge_dedupe(self, now_ms: int) -> int:
        self._check_open()
        expired = [k for k, d in self._dedupe.items() if d.expires_ms < now_ms]
        for key in expired:
            del self._dedupe[key]
        return len(expired)

    # -- reads --

    async def get_dedupe(self, sender: bytes, msg_id: bytes) -> DedupeRecord | None:
        self._check_open()
        return self._dedupe.get((sender, msg_id))

    async def get_relationship(self, thread: bytes) -> RelationshipRecord | None:
        self._check_open()
        return self._relationships.get(thread)

    async def relationships(self, *, with_data: bool = True) -> list[RelationshipRecord]:
        return await self.find_relationship()  # the records as held: ``data`` costs nothing

    async def relationships_where(
        self,
        *,
        role: str | None = None,
        peer_key: bytes | None = None,
        peer_url: str | None = None,
        label: str | None = None,
        states: Collection[str] | None = None,
        thread_range: tuple[bytes, bytes] | None = None,
    ) -> list[RelationshipRecord]:
        """Read through the index of the most selective column given (the records as held)."""
        self._check_open()
        held = self._relationships
        if (peer_url is not None and peer_key is None and label is None and states is None
                and thread_range is None):  # fmt: skip
            # by URL alone: how an agent finds the relationship a person names, per message
            by_url = [held[t] for t in self._rel_index.peer_url.get(peer_url)]
            found = by_url if role is None else [r for r in by_url if r.role == role]
            if len(found) > 1:
                found.sort(key=_THREAD)
            return found
        where = RelationshipsWhere(role, peer_key, peer_url, label, states, thread_range)
        found = [r for r in map(held.__getitem__, self._rel_index.candidates(where))
                 if where.matches(r)]  # fmt: skip
        if len(found) > 1:
            found.sort(key=_THREAD)
        return found

    async def find_relationship(
        self, local_key: bytes | None = None, peer_key: bytes | None = None
    ) -> list[RelationshipRecord]:
        self._check_open()
        return [
            r
            for _, r in sorted(self._relationships.items())
            if (local_key is None or r.local_key == local_key)
            and (peer_key is None or r.peer_key == peer_key)
        ]

    async def history(
        self, thread: bytes, start: int = 0, limit: int | None = None
    ) -> list[HistoryEntry]:
        self._check_open()
        entries = self._history.get(thread, [])[max(start, 0) :]
        return entries if limit is None or limit < 0 else entries[:limit]  # as SQL LIMIT

    async def history_head(self, thread: bytes) -> HistoryEntry | None:
        self._check_open()
        entries = self._history.get(thread)
        return entries[-1] if entries else None

    async def history_entry(self, thread: bytes, msg_hash: bytes) -> HistoryEntry | None:
        """The first entry of ``thread`` holding ``msg_hash`` (lowest index), or None."""
        self._check_open()
        index = self._by_hash.get((thread, msg_hash))
        return None if index is None else self._history[thread][index]

    async def outbox_due(self, now_ms: int, limit: int = 100) -> list[OutboxItem]:
        self._check_open()
        due = [o for o in self._outbox.values() if o.next_attempt_ms <= now_ms]
        due.sort(key=lambda o: (o.next_attempt_ms, o.item_id))
        return due if limit < 0 else due[:limit]  # as SQL LIMIT

    async def outbox_all(self) -> list[OutboxItem]:
        self._check_open()
        return sorted(self._outbox.values(), key=lambda o: o.item_id)

    async def get_meta(self, key: str) -> bytes | None:
        self._check_open()
        return self._meta.get(key)

    async def counts(self) -> StoreCounts:
        """Counted from the dictionaries (no record copied)."""
        self._check_open()
        states = Counter(r.state for r in self._relationships.values())
        dead = Counter(name for name, _ in self._dead)
        failing = Counter(name for name, _ in self._failing)
        gone = Counter(f.name for f in self._failing.values() if f.gone)
        return StoreCounts(dict(states), len(self._outbox),
                           sum(len(q) for q in self._drafts.values()), dict(dead),
                           dict(failing), dict(gone))  # fmt: skip

    async def usage(self) -> StoreUsage:
        """The bytes of envelopes, responses and meta values held; no disk, so no free space."""
        self._check_open()
        held = sum(len(h.envelope) for entries in self._history.values() for h in entries)
        held += sum(len(d.response) for d in self._dedupe.values())
        held += sum(len(r.data) for r in self._relationships.values())
        held += sum(len(v) for v in self._meta.values())
        held += sum(len(d.payload) for q in self._drafts.values() for d in q.values())
        held += sum(len(p.state) for ps in self._save_points.values() for p in ps.values())
        held += sum(len(h.value) for rows in self._held.values() for h in rows.values())
        held += 64 * (len(self._threads) + len(self._intents) + len(self._offers)
                      + len(self._share_notes))  # fmt: skip
        return StoreUsage(held, None)

    async def outbox_for(self, thread: bytes) -> list[OutboxItem]:
        self._check_open()
        return [o for _, o in sorted(self._outbox.items()) if o.thread == thread]

    # -- typed records --

    async def get_thread(self, thread: bytes) -> ThreadRecord | None:
        self._check_open()
        return self._threads.get(thread)

    async def threads(self, *, vendor_key: bytes | None = None, kind: ThreadKind | None = None
                      ) -> list[ThreadRecord]:  # fmt: skip
        self._check_open()
        if vendor_key is None:
            return [t for _, t in sorted(self._threads.items()) if kind is None or t.kind is kind]
        kinds = list(ThreadKind) if kind is None else [kind]
        found = [self._threads[thread] for k in kinds
                 for thread in self._threads_by_vendor.get((vendor_key, k))]  # fmt: skip
        found.sort(key=lambda t: t.thread)
        return found

    async def drafts(self, thread: bytes | None = None) -> list[DraftRecord]:
        self._check_open()
        threads = sorted(self._drafts) if thread is None else [thread]
        found: list[DraftRecord] = []
        for t in threads:
            queue = self._drafts.get(t, {})
            found.extend(queue[seq] for seq in sorted(queue))
        return found

    async def save_point(self, thread: bytes, msg_hash: bytes) -> SavePoint | None:
        self._check_open()
        return self._save_points.get(thread, {}).get(msg_hash)

    async def save_points(self, thread: bytes) -> list[SavePoint]:
        self._check_open()
        return [p for _, p in sorted(self._save_points.get(thread, {}).items())]

    async def held(self, thread: bytes) -> list[HeldRecord]:
        self._check_open()
        return [h for _, h in sorted(self._held.get(thread, {}).items())]

    async def held_expired(self, now_ms: int) -> list[tuple[bytes, bytes]]:
        self._check_open()
        return sorted({(h.thread, h.share) for rows in self._held.values() for h in rows.values()
                       if h.expires_ms is not None and h.expires_ms <= now_ms})  # fmt: skip

    async def get_intent(self, intent_id: bytes) -> IntentRecord | None:
        self._check_open()
        return self._intents.get(intent_id)

    async def intents(self) -> list[IntentRecord]:
        self._check_open()
        return sorted(self._intents.values(), key=lambda i: (i.sent_ms, i.intent_id))

    async def offers(self, intent_id: bytes | None = None) -> list[OfferRecord]:
        self._check_open()
        found = [o for o in self._offers.values() if intent_id is None or o.intent_id == intent_id]
        return sorted(found, key=lambda o: (o.intent_id, o.received_ms, o.hash))

    async def get_offer(self, offer_hash: bytes) -> OfferRecord | None:
        self._check_open()
        return self._offers.get(offer_hash)

    async def share_notes(self, thread: bytes | None = None) -> list[ShareNote]:
        self._check_open()
        notes = self._share_notes if thread is None else self._notes_by_thread.get(thread, {})
        return sorted(notes.values(), key=lambda n: (n.shared_ms, n.share))
