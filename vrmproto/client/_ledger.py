"""The customer's relationships as the agent keeps them: in the store, and cached while in use.

Each relationship is one store row (:class:`~vrmproto.store.RelationshipRecord`: the core
:class:`~vrmproto.Relationship`'s ``to_state()`` in ``data``, the vendor's name in ``label``, its
base URL in ``peer_url``) plus typed records of what the core does not know
(:mod:`vrmproto.store`): a :class:`~vrmproto.store.ThreadRecord` — where the vendor's inbox is,
which types it receives, when the discovery document that said so expires (§13.1-8,
:mod:`vrmproto.client._moved`), and how our identity in the thread is derived from the master seed
(pairwise per vendor and rotation generation, §2.3; or per intentcast, §2.4) — the thread's
*drafts* (:class:`~vrmproto.store.DraftRecord`: messages waiting behind an undelivered one, kept
as data until their turn, see :mod:`vrmproto.client._outbox`) and its save points
(:class:`~vrmproto.store.SavePoint`, §8.1-5). :class:`ThreadMeta` is their working copy while a
step runs; :meth:`Ledger.commit` writes what the step changed. A draft of a data share or an
address update holds the fields in clear until it is signed and sealed; like the master seed,
the store is the customer's own and must be protected as such.

One lock per thread serialises every step of a relationship — sign, persist, deliver, apply the
replies — so the two sides log the thread's messages in the same order (§8.2). It is two locks,
taken in turn: an :class:`asyncio.Lock` among this node's tasks, then the store's lock for the
thread (:meth:`~vrmproto.store.Store.lock`), which other agents on the same store — other
processes on the same data directory — hold in turn too (§11.11-2); a step that has to wait
for another process says so (a warning on the ``vrmproto.client`` logger: "another vrm is
working on this relationship; retrying"). Since another process may have changed the thread,
each step drops it from the cache on taking the lock and checks it against the store. The
cache holds only what the store holds; after any failure mid-step the thread is dropped from it
and re-read.

Checking it is one read, the thread's :class:`~vrmproto.store.RelationshipRecord`. Every Commit
of a thread writes it with an ``updated_ms`` later than the stored one's (:meth:`Ledger.record`),
so the store holds exactly the record our last Commit wrote (or our load read) only if nobody
has committed to the thread since — no other process, no other ledger. Then the thread set aside
at the lock, if still exactly what was committed, is taken back whole with no other read (#12:
the other four cost about 70 µs a step on SQLite), with what it knew of its outbox
(:attr:`Thread.idle`). Else the records are read afresh, and the relationship object set aside is
taken back only when the store holds exactly its state (``to_state()``, the same bytes), history
length and head link, and our identity in the thread — else it is rebuilt from the store, which
decodes the whole state, every share the relationship recorded (#12).

Nor is the state encoded more often than it changes: a :class:`Thread` keeps the ``to_state()``
bytes it last made or read (:meth:`Thread.state`) with the history position they belong to.
Every change to a relationship logs a history entry (the core verifies a message before it
changes anything, then logs it and applies it), so the same relationship object at the same
length and head link has the same state. A step thus encodes its state once per message it
signs or receives — for the record it commits — and not again to compare it with the store, to
keep a save point, or to commit a step that changed nothing (#12).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from vrmproto import _records
from vrmproto._history import GENESIS, Entry, History, verify_entries
from vrmproto._keys import Identity, MasterSeed
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._quick import quick_make
from vrmproto._relationship import Relationship
from vrmproto._state import Role
from vrmproto.client._errors import NotFound
from vrmproto.client._locks import InTurn, ThreadLocks
from vrmproto.client._meta import ThreadMeta
from vrmproto.store import (
    Commit,
    DraftRecord,
    HistoryEntry,
    NewOutboxItem,
    OutboxItem,
    RelationshipRecord,
    SavePoint,
    ShareNote,
    Store,
    ThreadKind,
    ThreadRecord,
)

__all__ = ["Ledger", "Thread", "ThreadKind", "ThreadMeta", "is_ours", "to_row"]

#: The store lock of a thread is named this prefix and the thread id (§11.11-2).
LOCK_PREFIX = b"client.thread:"

to_row = _records.to_row

log = logging.getLogger("vrmproto.client")

#: ``Commit(...)``, the same object built without the frozen class's ``object.__setattr__``
#: per field: a step builds one per Commit, of 27 fields (#12; ``tests/test_agent_s13_quick.py``
#: holds it to the class).
_new_commit = quick_make(Commit)


def is_ours(record: RelationshipRecord) -> bool:
    """Whether a store row is a customer relationship (the agent's), not a vendor's. Compared
    as the stored spelling: scans of every relationship call this per row, and an enum look-up
    per row was a fifth of an agent's CPU once it held thousands (intentcasts make many)."""
    return record.role == _CUSTOMER


_CUSTOMER = Role.CUSTOMER.value


@dataclass(slots=True)
class Thread:
    """One relationship in use: the core engine, its meta, and the vendor's base URL."""

    rel: Relationship
    meta: ThreadMeta
    url: str
    #: The relationship object, history length and head link ``_state`` belongs to.
    _state_at: tuple[Relationship, int, bytes] | None = None
    _state: bytes = b""
    #: The records the store holds for the thread as far as we know: read by the load that
    #: made this object, or written by our last Commit of it (:meth:`saved`).
    _stored: tuple[RelationshipRecord, ThreadRecord] | None = None
    _committing: tuple[RelationshipRecord, ThreadRecord] | None = None  # in a Commit not yet done
    #: The store holds no outbox item of this thread (known while ``_stored`` is current).
    idle: bool = False
    #: The thread id (``rel.thread``: the relationship may be replaced, its thread never is),
    #: an attribute: a step reads it a dozen times.
    id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.id = self.rel.thread

    def state(self) -> bytes:
        """``rel.to_state()``, encoded once per history position (see the module docstring)."""
        rel = self.rel
        at = self._state_at
        if (at is None or at[0] is not rel or at[1] != len(rel.history)
                or at[2] != rel.history.head):  # fmt: skip
            self.know_state(rel.to_state())
        return self._state

    def know_state(self, data: bytes) -> None:
        """``data`` is the relationship's state as it stands (read from the store, or made)."""
        rel = self.rel
        self._state_at = (rel, len(rel.history), rel.history.head)
        self._state = data

    def saved(self) -> None:
        """The Commit of this working copy succeeded: the store holds it."""
        self.meta.saved()
        if self._committing is not None:
            self._stored, self._committing = self._committing, None

    def point(self) -> _records.Point:
        """Where the relationship stands now (:func:`vrmproto._records.capture`)."""
        return _records.capture(self.rel, state=self.state())

    def copy(self) -> Thread:
        """An independent copy to try a step on (the history is resumed, not copied)."""
        rel = self.rel
        twin = _records.restore(self.point(), identity=rel.identity, limits=rel.limits)
        return Thread(twin, self.meta.copy(), self.url)

    def guard(self, point: _records.Point, msg_hash: bytes) -> None:
        """Keep ``point`` — where the relationship stood before ``msg_hash`` was signed — until
        the vendor's answer to that message is known (§8.1-5)."""
        (saved,) = _records.guard(point, (msg_hash,), after=len(self.rel.history))
        self.meta.points[msg_hash] = saved

    def roll_back(self, msg_hash: bytes, derive: Callable[[ThreadMeta], Identity]
                  ) -> tuple[tuple[bytes, int], ...]:  # fmt: skip
        """Return to where the relationship stood before ``msg_hash`` (refused, §8.1-5); the
        ``(thread, index)`` to truncate the stored history from (none without a save point).

        A refused ``key.rotate`` never moved the vendor to our next key: the generation and our
        identity go back with it (``derive`` gives the identity of a generation, §2.3, §2.6).
        """
        point = self.meta.points.pop(msg_hash, None)
        if point is None:
            return ()
        rel = _records.restore(point, identity=self.rel.identity, limits=self.rel.limits)
        if rel.peer_head != self.rel.peer_head:
            # The vendor logged a message after ours (one it sent us meanwhile): a refusal
            # takes ours back no more, or the vendor's would go with it (§8.1-6). (The inbound
            # endpoint drops such points; one kept by a stop between its two commits ends here.)
            return ()
        undone = self.rel.generation - rel.generation
        if undone > 0:
            self.meta.generation -= undone
            rel.identity = derive(self.meta)
        self.rel = rel
        return ((self.id, point.length),)

    @property
    def problem_keys(self) -> frozenset[bytes]:
        """Keys a problem about this thread may be signed by: the vendor's, now and at first."""
        keys = {self.meta.vendor_key}
        if self.rel.peer_key is not None:
            keys.add(self.rel.peer_key)
        return frozenset(keys)


class Ledger:
    """Relationship persistence for one customer (one master seed, one store).

    One per customer node: its lock registry and its cache are shared by everything the node
    does — the outgoing API and the inbound agent endpoint alike — so a step of one waits for a
    step of the other in the same thread. It also knows our identity in every thread it has
    read (:meth:`identity_of`), by public key, for the inbound endpoint's sync look-up.
    """

    def __init__(self, store: Store, master: MasterSeed, *, limits: Limits = DEFAULT_LIMITS
                 ) -> None:
        self.store = store
        self.master = master
        self.limits = limits
        self._cache: dict[bytes, Thread] = {}
        #: Threads a step has since locked, whose relationships to take back if still as stored.
        self._set_aside: dict[bytes, Thread] = {}
        self._locks = ThreadLocks()
        self._told: set[bytes] = set()
        self._identities: dict[bytes, Identity] = {}  # by public key
        self._derived: dict[tuple[bytes, int], Identity] = {}  # by (vendor key, generation)

    def lock(self, thread: bytes, *, on_wait: Callable[[], None] | None = None) -> InTurn:
        """Hold ``thread`` for one step: among this node's tasks, then among every node on
        the store (§11.11-2); the step reads the thread afresh. ``on_wait`` is called if
        another process holds it (default: one warning per thread). Take several only in
        sorted order (:meth:`lock_all`)."""
        return InTurn(self, thread, on_wait)

    # -- what InTurn takes the locks from (its Holder) --

    def first_lock(self, thread: bytes) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locks.hold(thread)

    def second_lock(self, thread: bytes, on_wait: Callable[[], None]
                    ) -> contextlib.AbstractAsyncContextManager[None]:  # fmt: skip
        return self.store.lock(LOCK_PREFIX + thread, on_wait=on_wait)

    def entered(self, thread: bytes) -> None:
        self._set_aside_thread(thread)  # another process may have changed it since

    def waiting(self, thread: bytes) -> None:
        self._busy(thread)

    @property
    def held_locks(self) -> int:
        """Threads whose lock is held or waited for now (idle ones are not kept)."""
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def lock_all(self, threads: Iterable[bytes]) -> AsyncIterator[list[bytes]]:
        """Hold every thread of ``threads`` (see :meth:`lock`), taken in ascending order so
        that two holders of overlapping sets never wait for each other; yields them sorted."""
        ordered = sorted(set(threads))
        async with contextlib.AsyncExitStack() as stack:
            for thread in ordered:
                await stack.enter_async_context(self.lock(thread))
            yield ordered

    def _busy(self, thread: bytes) -> None:
        if thread in self._told:  # once per thread and agent is enough for a person
            return
        self._told.add(thread)
        cached = self._cache.get(thread)
        who = f"{cached.meta.name}, thread {thread.hex()[:12]}" if cached else thread.hex()[:12]
        log.warning("another vrm is working on this relationship (%s); retrying", who)

    def identity(self, meta: ThreadMeta) -> Identity:
        """Our identity in a thread, derived from the master seed (§2.3, §2.4) once per key."""
        if meta.kind is ThreadKind.INTENT:
            assert meta.intent_id is not None
            how: tuple[bytes, int] = (meta.intent_id, -1)
        else:
            how = (meta.vendor_key, meta.generation)
        identity = self._derived.get(how)
        if identity is None:
            identity = self._derived[how] = (
                self.master.for_intent(how[0]) if how[1] < 0 else self.master.pairwise(*how)
            )
        return identity

    def identity_of(self, public_key: bytes) -> Identity | None:
        """Our identity whose public key is ``public_key``, if a thread read or stored by this
        ledger uses it (no key search: the thread's meta says how it was derived)."""
        return self._identities.get(public_key)

    async def load(self, thread: bytes) -> Thread:
        """The thread's relationship, from the cache or the store; LookupError if unknown."""
        cached = self._cache.get(thread)
        if cached is not None:
            return cached
        record = await self.store.get_relationship(thread)
        aside = self._set_aside.pop(thread, None)
        if aside is not None and record is not None and self._unchanged(aside, record):
            kept = aside.rel
            kept.history = History.resume(len(kept.history), kept.history.head)
            self._cache[thread] = aside  # as adopted when it was committed or read
            return aside
        stored = await self.store.get_thread(thread)
        if record is None or stored is None or not is_ours(record):
            raise NotFound(f"no relationship {thread.hex()}")
        meta = ThreadMeta.of(stored, await self.store.drafts(thread),
                             await self.store.save_points(thread))  # fmt: skip
        head = await self.store.history_head(thread)
        identity = self.identity(meta)
        rel = self._take_back(aside, record, head, identity)
        if rel is None:
            rel = _records.load(record, head, identity=identity, limits=self.limits)
        t = Thread(rel, meta, record.peer_url, _stored=(record, stored))
        t.know_state(record.data)  # what rel was made of, or is equal to
        self.adopt(t)
        return t

    def _unchanged(self, aside: Thread, record: RelationshipRecord) -> bool:
        """Whether the store still holds exactly what ``aside`` was read as or committed as,
        and ``aside`` exactly that: then nobody has changed the thread since (see the module
        docstring) and it is taken back whole, with no other read."""
        known = aside._stored
        if known is None or (known[0] is not record and known[0] != record) or (
                aside._committing is not None):  # fmt: skip
            return False
        meta, rel = aside.meta, aside.rel
        return (meta.unchanged() and meta.holds(record.thread, known[1])
                and aside.state() == record.data and aside.url == record.peer_url
                and rel.identity.public_key == record.local_key)  # fmt: skip

    async def learn_identity(self, thread: bytes) -> Identity | None:
        """Our identity in ``thread`` as its stored record says (read afresh, not from the
        cache), remembered for :meth:`identity_of`; None if the thread is not ours."""
        record = await self.store.get_thread(thread)
        if record is None:
            return None
        identity = self.identity(ThreadMeta.of(record))
        self._identities[identity.public_key] = identity
        return identity

    def adopt(self, t: Thread) -> None:
        """Cache ``t`` (after the Commit that stored it succeeded)."""
        t.saved()
        self._cache[t.id] = t
        self._identities[t.rel.identity.public_key] = t.rel.identity

    def refresh(self, record: RelationshipRecord) -> None:
        """Forget the cached thread of ``record`` when the store holds another record than
        the one it was read or committed as: another process, or another ledger, committed to
        it since (every Commit writes a later ``updated_ms``, :meth:`record`). For reads that
        take no lock (:meth:`~vrmproto.client.Agent.relationships`); a step re-checks under
        its lock anyway."""
        t = self._cache.get(record.thread)
        if (t is not None and t._committing is None and t._stored is not None
                and t._stored[0].updated_ms != record.updated_ms):  # fmt: skip
            self.forget(record.thread)

    def forget(self, thread: bytes) -> None:
        """Drop a thread from the cache, so the next step re-reads the store and rebuilds it."""
        self._cache.pop(thread, None)
        self._set_aside.pop(thread, None)

    def _set_aside_thread(self, thread: bytes) -> None:
        """Drop a thread from the cache, keeping its relationship for :meth:`_take_back`."""
        t = self._cache.pop(thread, None)
        if t is not None:
            self._set_aside[thread] = t

    def _take_back(self, aside: Thread | None, record: RelationshipRecord,
                   head: HistoryEntry | None, identity: Identity
                   ) -> Relationship | None:  # fmt: skip
        """The relationship of ``aside`` (the thread set aside when the lock was taken) if it
        is exactly what ``record`` holds (see the module docstring), its history resumed at
        the stored end; else None."""
        if aside is None:
            return None
        rel = aside.rel
        length, link = (head.index + 1, head.entry_hash) if head is not None else (0, GENESIS)
        if (len(rel.history) != length or rel.history.head != link
                or rel.identity.public_key != identity.public_key
                or aside.state() != record.data):  # fmt: skip
            return None
        rel.identity = identity
        rel.history = History.resume(length, link)
        return rel

    def record(self, t: Thread, now: int) -> RelationshipRecord:
        """The record of ``t`` for a Commit at ``now``: its ``updated_ms`` later than that of
        the record the store holds, so that every Commit of a thread writes another record
        than the one before it (see the module docstring)."""
        if t._stored is not None and now <= t._stored[0].updated_ms:
            now = t._stored[0].updated_ms + 1
        return _records.to_record(t.rel, label=t.meta.name, peer_url=t.url, now=now,
                                  state=t.state())

    def commit(
        self,
        threads: Sequence[Thread],
        now: int,
        *,
        history: Iterable[HistoryEntry] = (),
        outbox_add: Iterable[NewOutboxItem] = (),
        outbox_done: Iterable[int] = (),
        truncate: tuple[tuple[bytes, int], ...] = (),
    ) -> Commit:
        """One Commit of a step on ``threads``: each one's relationship and thread records,
        what changed in its drafts and save points, and the step's other parts."""
        drafts_add: list[DraftRecord] = []
        drafts_done: list[tuple[bytes, int]] = []
        points: list[SavePoint] = []
        points_done: list[tuple[bytes, bytes]] = []
        notes: list[ShareNote] = []
        records: list[RelationshipRecord] = []
        thread_records: list[ThreadRecord] = []
        for t in threads:
            meta, thread = t.meta, t.id
            rec = self.record(t, now)
            records.append(rec)
            known = t._stored
            if known is not None and meta.holds(thread, known[1]):
                trec = known[1]  # unchanged but for the time of the last activity: kept
            else:
                trec = meta.record(thread)
                thread_records.append(trec)
            t._committing = (rec, trec)
            if meta.notes:
                notes.extend(meta.notes)
            if meta.points or meta._stored_points or meta.drafts or meta._stored_drafts:
                added, done, saved, dropped = meta.changes()
                drafts_add.extend(added)
                if done:
                    drafts_done.extend([(thread, seq) for seq in done])
                points.extend(saved)
                if dropped:
                    points_done.extend([(thread, h) for h in dropped])
        items = tuple(outbox_add)
        if items:
            adding = {i.thread for i in items}
            for t in threads:
                if t.id in adding:
                    t.idle = False
        return _new_commit(
            relationships=tuple(records), threads=tuple(thread_records),
            history=tuple(history), outbox_add=items,
            outbox_done=tuple(outbox_done), truncate=truncate,
            drafts_add=tuple(drafts_add), drafts_done=tuple(drafts_done),
            save_points=tuple(points), save_points_done=tuple(points_done),
            share_notes=tuple(notes),
        )  # fmt: skip

    async def pending(self, thread: bytes) -> list[OutboxItem]:
        """The thread's undelivered messages, oldest first."""
        return await self.store.outbox_for(thread)

    async def entries(self, thread: bytes) -> list[Entry]:
        """Our stored history of ``thread``, verified (§8.2)."""
        entries = [_records.to_entry(h) for h in await self.store.history(thread)]
        verify_entries(entries)
        return entries
