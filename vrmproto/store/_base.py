"""The storage interface: records, the :class:`Commit` unit of work, the :class:`Store` protocol.

A store keeps opaque bytes plus the few columns it must index or constrain. Hashing, validation
and the state machine live elsewhere; the store's job is spec §12 (durability): what one protocol
step changes is written in one transaction, all or nothing, and ``commit()`` returns only once
that transaction is durable — so a receipt is sent only after commit.

Uniqueness is the store's other job, because it is what makes retries safe: a history slot
``(thread, index)`` and a de-duplication key ``(sender, msg_id)`` can each be written once. A
:class:`Commit` that would write one again fails as a whole with :class:`StoreConflict`, and the
caller re-reads and decides (typically: answer a replay with the stored response).

That a message appears at most once in a history (§8.2-2) is not a store rule: the relationship
engine keeps it before the store sees the entry. A message's hash covers its header (§4.4-1),
and the header's ``prev`` is the hash of the previous message the same sender sent in the thread
(§4.2-8), so each party's messages form a hash chain. The engine signs each message of its own
with ``prev`` its own last one, and accepts a message only when ``prev`` is the last one it holds
from that sender (§4.5-6); it also refuses a message already in the history it holds (§4.5-7).
Once a message is logged its sender's chain has moved past it, and comes back to the same
``prev`` only through a SHA-256 collision — or when a refused tail is dropped (§8.1-5), which
takes the dropped messages out of the history too. So the same message cannot stand at two places
in one thread's history. Two concurrent attempts to apply the same message both pass those
checks, from the same stored state, and then collide on its history slot and its dedupe key.
Lookups by hash (:meth:`Store.history_entry`) return the entry with the lowest index.

Beside those, every persistent thing a node keeps is a typed record with its own Commit parts
and queries (:mod:`vrmproto.store._rows`); ``meta`` holds only store-level settings (the
master-seed check). :mod:`vrmproto._records` maps the engine's relationship and history to the
records and back, and captures and restores save points (§8.1-5), for both nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from vrmproto._errors import VrmError
from vrmproto.store._rows import (
    DeadLetter,
    DraftRecord,
    EventRecord,
    FailingEvent,
    HeldRecord,
    IntentRecord,
    OfferRecord,
    SavePoint,
    ShareNote,
    ThreadKind,
    ThreadRecord,
)

__all__ = [
    "Commit",
    "DeadLetter",
    "DedupeRecord",
    "DraftRecord",
    "EventRecord",
    "EventWatch",
    "FailingEvent",
    "HeldRecord",
    "HistoryEntry",
    "IntentRecord",
    "NewOutboxItem",
    "OfferRecord",
    "OutboxItem",
    "RelationshipRecord",
    "SavePoint",
    "ShareNote",
    "Store",
    "StoreConflict",
    "StoreCounts",
    "StoreError",
    "StoreUsage",
    "ThreadKind",
    "ThreadRecord",
]

ROLES = frozenset({"customer", "vendor"})
DIRECTIONS = frozenset({"in", "out"})


class StoreError(VrmError):
    """Storage failed, or was used wrongly (closed, schema too new, a history gap).

    Nothing of the Commit that raised it was written.
    """


class SchemaTooNew(StoreError):  # noqa: N818 -- named for what it is, as StoreConflict
    """The database was written by a newer vrmproto (its schema ``version`` is above the
    ``supported`` one): refused, and left as it is. Not damage: a newer vrmproto reads it."""

    def __init__(self, version: int, supported: int) -> None:
        super().__init__(f"database schema version {version} is newer than this vrmproto "
                         f"supports ({supported})")  # fmt: skip
        self.version = version
        self.supported = supported


class StoreBusy(StoreError):  # noqa: N818 -- named for what it is, as StoreConflict
    """Another connection (another process) held the database's write lock for longer than
    the store waits for it. Nothing was written; the same call later may succeed."""


class StoreConflict(StoreError):  # noqa: N818 -- a conflict is an outcome callers expect
    """A uniqueness rule was hit: a history slot ``(thread, index)``, a de-duplication key
    ``(sender, msg_id)`` or a draft slot ``(thread, seq)`` already exists. Nothing of that
    Commit was written.

    A repeated ``(thread, msg_hash)`` is not a conflict: the relationship engine refuses a
    message already in the history (its ``prev`` no longer links, §4.2-8, §4.5-6; §8.2-2) before
    the store sees it; the store keeps only what makes retries safe (see the module docstring).
    """


def check_next_index(h: HistoryEntry, expected: int) -> None:
    """Refuse ``h`` unless its index is ``expected``, the next free one of its thread: less is
    a conflict (the slot is taken), more an error (a gap). Every store's rule, in one place."""
    if h.index < expected:
        raise StoreConflict(f"history index {h.index} of thread {h.thread.hex()} is taken")
    if h.index > expected:
        raise StoreError(
            f"history gap: thread {h.thread.hex()} expects index {expected}, got {h.index}"
        )


@dataclass(frozen=True, slots=True)
class RelationshipRecord:
    """One relationship as this store's owner sees it; upserted by ``thread``."""

    thread: bytes  # 16-byte relationship/thread id
    role: str  # "customer" | "vendor": which side this store's owner plays
    local_key: bytes  # our 32-byte Ed25519 public key in this relationship
    peer_key: bytes  # the other side's current 32-byte Ed25519 public key
    state: str  # state name from the protocol state machine (opaque here)
    data: bytes  # opaque msgpack blob of the full relationship state
    label: str  # human label (vendor name / customer fingerprint)
    peer_url: str  # the peer's base URL, or "" if unknown
    updated_ms: int

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be 'customer' or 'vendor', not {self.role!r}")


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One entry of a relationship's append-only, hash-linked history.

    ``index`` runs 0, 1, 2… per thread without gaps. ``envelope`` holds the exact envelope bytes
    until an erase (:attr:`Commit.erase`) replaces them with the erased form.
    """

    thread: bytes
    index: int
    msg_hash: bytes  # 32 bytes
    entry_hash: bytes  # 32 bytes: the hash-chain value, computed by the caller
    envelope: bytes
    direction: str  # "in" | "out"
    recorded_ms: int

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"history index must be >= 0, not {self.index}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'in' or 'out', not {self.direction!r}")


@dataclass(frozen=True, slots=True)
class DedupeRecord:
    """An accepted message and the exact response sent for it, so a replay gets the same answer."""

    sender: bytes  # 32-byte key
    msg_id: bytes  # 16-byte message id; (sender, msg_id) is unique
    msg_hash: bytes  # hash of the accepted message
    response: bytes  # exact response bytes sent back
    expires_ms: int  # may be purged after this


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A message waiting for delivery; the store assigns ``item_id`` and never reuses it."""

    item_id: int
    destination: str  # base URL of the recipient endpoint
    thread: bytes
    msg_hash: bytes
    envelope: bytes
    attempts: int
    next_attempt_ms: int
    last_error: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class NewOutboxItem:
    """What a caller enqueues: an :class:`OutboxItem` before it has an id or any attempts."""

    destination: str
    thread: bytes
    msg_hash: bytes
    envelope: bytes
    next_attempt_ms: int
    created_ms: int


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """How many records a store holds, counted in the store (:meth:`Store.counts`): what a
    vendor's ``/metrics`` tells, without reading every record into the process."""

    relationships: Mapping[str, int]  # by state; a state no relationship is in is absent
    outbox: int  # outbox items (signed messages waiting for delivery)
    drafts: int  # drafts queued behind a message in flight
    dead_letters: Mapping[str, int]  # by consumer name; one without any is absent
    failing: Mapping[str, int] = field(default_factory=dict)  # being retried, by name
    gone: Mapping[str, int] = field(default_factory=dict)  # answered 410, by name


@dataclass(frozen=True, slots=True)
class StoreUsage:
    """How much room a store takes and has left, for a storage budget (spec §11.8-4)."""

    stored_bytes: int  # what the store's data takes now (files, or an estimate in memory)
    free_bytes: int | None  # free space where it grows (None: no disk, or unknown)


@dataclass(frozen=True, slots=True)
class Commit:
    """Everything one protocol step changes, written in ONE transaction (all or nothing).

    Parts are applied in this order, so later parts may rely on earlier ones:

    1. ``relationships`` — upsert by thread.
    2. ``threads`` — upsert :class:`ThreadRecord` by thread.
    3. ``meta`` — upsert by key (store-level settings only).
    4. ``truncate`` — drop a thread's entries from an index on: a message the peer refused
       never joined the relationship (spec §8.1-5).
    5. ``history`` — append; each entry's thread must have a relationship record and its index
       must be exactly the next one.
    6. ``erase`` — replace the stored envelope of every entry of the thread holding that
       message (one, §8.2-2); a missing entry is ignored.
    7. ``dedupe`` — insert.
    8. ``outbox_done`` — delete; a missing id is ignored. 9. ``outbox_add``.
    10. ``drafts_done`` — delete ``(thread, seq)``; a missing draft is ignored.
    11. ``drafts_add`` — insert :class:`DraftRecord`; a taken ``(thread, seq)`` is a
        :class:`StoreConflict`.
    12. ``save_points_clear`` — delete every save point of a thread.
    13. ``save_points_done`` — delete ``(thread, msg_hash)``; a missing one is ignored.
    14. ``save_points`` — upsert :class:`SavePoint` by ``(thread, msg_hash)``.
    15. ``held_drop`` — delete the :class:`HeldRecord` rows of ``(thread, share)``, and set
        ``personal`` to None on the :class:`EventRecord` of that share; take the fields held
        under it out of the thread's ``address.updated`` events (``field_shares``; personal
        None when none is left, ``store/_redact.py``, docs/events.md); then, of the fields the
        dropped shares governed, those no ``held`` row of the thread names any more, out of
        every event of the thread (the values the dropped ones had replaced,
        ``_redact.stripped``).
    16. ``held`` — upsert :class:`HeldRecord` by ``(thread, field)``.
    17. ``intents`` — upsert :class:`IntentRecord` by intent id. 18. ``offers`` — upsert
        :class:`OfferRecord` by hash. 19. ``share_notes`` — upsert :class:`ShareNote` by share.
    20. ``intents_drop`` — delete an intent and its offers; a missing one is ignored.
    21. ``drop`` — delete a thread: its relationship record, history, thread record, drafts,
        save points and held data; a missing thread is ignored. Its outbox items and share
        notes stay (a customer deletes them explicitly), its replay records are left to expire
        with their window (§10-5). ``drop`` is how a relationship that never reached an
        agreement expires (spec §11.8-3): its events of the kinds a relationship has before an
        agreement keep their place, id and kind but no longer what the message said (``data``
        without its body, ``"forgotten": true``; ``_redact.forgotten``), found through the
        index ``events_unagreed`` (schema 15, PostgreSQL's 11).
    22. ``unset`` — delete meta keys; a missing key is ignored.
    23. ``events`` — insert :class:`EventRecord` (the store assigns ``pos`` in order). An id
        has no rule of its own in the store: it is its message's hash, whose history slot is
        in the same Commit (§8.2-2). Events outlive ``drop``, forgotten (part 21).
    24. ``event_cursors`` — upsert ``(name, pos)``: how far a consumer has read the feed.
    25. ``dead_letters_done`` — delete ``(name, pos)``. 26. ``dead_letters`` — upsert
        :class:`DeadLetter` by ``(name, pos)``.
    27. ``failing_done`` — delete ``(name, pos)``; a missing one is ignored. 28. ``failing``
        — upsert :class:`FailingEvent` by ``(name, pos)`` (schema v12).
    """

    relationships: tuple[RelationshipRecord, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    dedupe: tuple[DedupeRecord, ...] = ()
    outbox_add: tuple[NewOutboxItem, ...] = ()
    outbox_done: tuple[int, ...] = ()
    erase: tuple[tuple[bytes, bytes, bytes], ...] = ()  # (thread, msg_hash, replacement envelope)
    meta: tuple[tuple[str, bytes], ...] = ()
    truncate: tuple[tuple[bytes, int], ...] = ()  # (thread, first index dropped)
    drop: tuple[bytes, ...] = ()  # threads deleted with their history and every row of theirs
    unset: tuple[str, ...] = ()  # meta keys deleted
    threads: tuple[ThreadRecord, ...] = ()
    drafts_add: tuple[DraftRecord, ...] = ()
    drafts_done: tuple[tuple[bytes, int], ...] = ()  # (thread, seq)
    save_points: tuple[SavePoint, ...] = ()
    save_points_done: tuple[tuple[bytes, bytes], ...] = ()  # (thread, msg_hash)
    save_points_clear: tuple[bytes, ...] = ()  # threads
    held: tuple[HeldRecord, ...] = ()
    held_drop: tuple[tuple[bytes, bytes], ...] = ()  # (thread, share)
    intents: tuple[IntentRecord, ...] = ()
    offers: tuple[OfferRecord, ...] = ()
    share_notes: tuple[ShareNote, ...] = ()
    intents_drop: tuple[bytes, ...] = ()  # intent ids
    events: tuple[EventRecord, ...] = ()
    event_cursors: tuple[tuple[str, int], ...] = ()  # (consumer name, last pos it has)
    dead_letters_done: tuple[tuple[str, int], ...] = ()  # (consumer name, pos)
    dead_letters: tuple[DeadLetter, ...] = ()
    failing_done: tuple[tuple[str, int], ...] = ()  # (consumer name, pos)
    failing: tuple[FailingEvent, ...] = ()


class Store(Protocol):
    """Async storage. Blocking work never runs on the event loop thread.

    Ordering: ``relationships()`` and ``find_relationship()`` sort by thread, ``history()`` by
    index, ``outbox_due()`` by (next_attempt_ms, item_id), ``outbox_all()`` by item_id.
    After ``close()`` every method but ``close()`` raises :class:`StoreError`.
    """

    async def commit(self, c: Commit) -> None:
        """Write ``c`` in one transaction; return only once it is durable (spec §12 (durability)).

        Raises :class:`StoreConflict` if a uniqueness rule was hit, :class:`StoreError` for other
        failures; either way nothing of ``c`` was written.

        The stores of this package also take keywords this protocol does not require, and a
        caller passes them only to a ``commit`` known to take them (so a wrapper or a test's
        spy that replaces ``commit`` keeps seeing every Commit): ``expect=``
        (:func:`vrmproto.server._warm.checks_expect`) and ``durable=False``
        (:func:`vrmproto.client._sending.may_close_lazily`). ``durable=False`` is a permission,
        not a requirement: the store may return once ``c`` is committed in a way that survives
        a crash of the process, before it is flushed to disk, provided its next durable commit
        returns only once ``c`` is durable too and ``close()`` makes it durable — as
        :class:`SQLiteStore` opened with ``inline=True`` does. Any other store (and SQLite's
        writer thread) simply commits durably.

        The library's stores also have ``commit_ids(c, *, durable=True)``: ``commit`` that
        returns the ids it gave the items of ``c.outbox_add``, in their order, so that the
        agent need not read back the item it just queued (#12). A caller uses it only where
        it may pass ``durable=False`` (an own ``commit``, not replaced).
        """
        ...

    async def get_dedupe(self, sender: bytes, msg_id: bytes) -> DedupeRecord | None: ...

    async def get_relationship(self, thread: bytes) -> RelationshipRecord | None: ...

    async def relationships(self, *, with_data: bool = True) -> list[RelationshipRecord]:
        """Every relationship. ``with_data=False``: for callers that do not read ``data``: a
        store that would have to read or copy the state blobs leaves ``data`` empty (``b""``);
        one that holds the records as they are may hand them over whole."""
        ...

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
        """The relationships whose columns equal every one given — ``states``: any of those;
        ``thread_range``: ``(first, last)``, both included, the ids a prefix names — by
        thread, ``data`` as :meth:`relationships` with ``with_data=False`` leaves it.

        How an agent finds a relationship by what a person calls it or a vendor is known by
        (its name, its URL, its key), per message: in as many rows as match, never a scan of
        every relationship a customer has (#12). A store looks up the criterion it indexes
        (the peer key and thread id at least)."""
        ...

    async def find_relationship(
        self, local_key: bytes | None = None, peer_key: bytes | None = None
    ) -> list[RelationshipRecord]:
        """Relationships matching every key given (all of them if neither is)."""
        ...

    async def history(
        self, thread: bytes, start: int = 0, limit: int | None = None
    ) -> list[HistoryEntry]: ...

    async def history_head(self, thread: bytes) -> HistoryEntry | None: ...

    async def history_entry(self, thread: bytes, msg_hash: bytes) -> HistoryEntry | None:
        """The entry of ``thread`` holding ``msg_hash`` (the lowest index, should the engine
        ever have logged it twice), or None."""
        ...

    async def outbox_due(self, now_ms: int, limit: int = 100) -> list[OutboxItem]:
        """Items with ``next_attempt_ms <= now_ms``, soonest first."""
        ...

    async def outbox_all(self) -> list[OutboxItem]: ...

    async def outbox_retry(
        self, item_id: int, attempts: int, next_attempt_ms: int, last_error: str
    ) -> None:
        """Record a failed attempt (durably); a missing item is ignored."""
        ...

    async def outbox_for(self, thread: bytes) -> list[OutboxItem]:
        """The thread's outbox items, oldest (lowest ``item_id``) first."""
        ...

    async def get_meta(self, key: str) -> bytes | None:
        """A store-level setting (the schema's own, the master-seed check)."""
        ...

    # -- typed records (schema v3) --

    async def get_thread(self, thread: bytes) -> ThreadRecord | None: ...

    async def threads(self, *, vendor_key: bytes | None = None, kind: ThreadKind | None = None
                      ) -> list[ThreadRecord]:  # fmt: skip
        """Thread records (those first contacted under ``vendor_key``, of ``kind``, if given),
        by thread."""
        ...

    async def drafts(self, thread: bytes | None = None) -> list[DraftRecord]:
        """The drafts of ``thread`` (of every thread if None), by (thread, seq)."""
        ...

    async def save_point(self, thread: bytes, msg_hash: bytes) -> SavePoint | None: ...

    async def save_points(self, thread: bytes) -> list[SavePoint]:
        """The thread's save points, by msg_hash."""
        ...

    async def held(self, thread: bytes) -> list[HeldRecord]:
        """The data held in ``thread``, by field."""
        ...

    async def held_expired(self, now_ms: int) -> list[tuple[bytes, bytes]]:
        """``(thread, share)`` of every share whose held rows expire at or before ``now_ms``,
        sorted (§5.3.1-4, §12.10-4)."""
        ...

    async def get_intent(self, intent_id: bytes) -> IntentRecord | None: ...

    async def intents(self) -> list[IntentRecord]:
        """Every intentcast, by (sent_ms, intent_id)."""
        ...

    async def offers(self, intent_id: bytes | None = None) -> list[OfferRecord]:
        """Offers (to ``intent_id`` if given), by (intent_id, received_ms, hash)."""
        ...

    async def get_offer(self, offer_hash: bytes) -> OfferRecord | None: ...

    async def share_notes(self, thread: bytes | None = None) -> list[ShareNote]:
        """Share notes (of ``thread`` if given), by (shared_ms, share)."""
        ...

    # -- the event feed --

    async def events(
        self, after: int = 0, limit: int = 100, *, thread: bytes | None = None
    ) -> list[EventRecord]:
        """Events with ``pos > after`` (of ``thread`` if given), by pos, at most ``limit``."""
        ...

    async def event(self, event_id: str) -> EventRecord | None: ...

    async def event_cursor(self, name: str) -> int:
        """The last pos consumer ``name`` has (0 if none)."""
        ...

    async def feed_head(self) -> int:
        """The pos of the newest event (0 if none): a consumer whose cursor is there has
        every event."""
        ...

    async def dead_letters(self, name: str | None = None) -> list[DeadLetter]:
        """Dead letters (of consumer ``name`` if given), by (name, pos)."""
        ...

    async def failing(self, name: str | None = None) -> list[FailingEvent]:
        """The events consumers are retrying (``name``'s if given), by (name, pos)."""
        ...

    async def event_cursors(self) -> dict[str, int]:
        """Every consumer's cursor, by name."""
        ...

    async def forget_consumer(self, name: str) -> bool:
        """Delete consumer ``name``'s cursor, its dead letters and the events it was
        retrying, in one transaction; whether it had any. Retention then keeps nothing for it
        (docs/events.md, "Retention": ``vrm vendor events --forget``); a consumer that reads
        again starts as a new one."""
        ...

    async def feed_floor(self) -> int:
        """The pos of the newest event trimmed from the feed (0 if none): the events up to it
        are gone (but those kept as dead letters), so a reader whose cursor is below it has
        missed some (docs/events.md, "Retention")."""
        ...

    async def trim_events(self, upto: int, *, recorded_before: int, keep: Collection[int] = (),
                          limit: int = 2_000) -> int:  # fmt: skip
        """Delete the oldest events, in one transaction: those after the floor, by pos, up to
        ``upto`` and while recorded before ``recorded_before``, at most ``limit`` of them
        looked at, never the newest event; those in ``keep`` stay. The floor moves past the
        last one looked at that could go. How many were deleted; called again while the
        floor moves (:mod:`vrmproto.store._trim`)."""
        ...

    async def purge_dedupe(self, now_ms: int) -> int:
        """Delete de-duplication records with ``expires_ms < now_ms``; return how many."""
        ...

    async def usage(self) -> StoreUsage:
        """The room the store takes and has left (cheap enough to call once a second)."""
        ...

    async def counts(self) -> StoreCounts:
        """Relationships by state, outbox items, drafts and dead letters by consumer, counted
        where the records are (``GROUP BY`` in a database, off the event loop): a scrape of
        ``/metrics`` at 100,000 relationships reads a few numbers, not 100,000 records."""
        ...

    def lock(
        self, name: bytes, *, on_wait: Callable[[], None] | None = None
    ) -> AbstractAsyncContextManager[None]:
        """A lock named ``name``, held for an ``async with`` block, that excludes every other
        holder of the same name on the same storage: other tasks, other store objects on the
        same database, other processes (spec §11.11-2). It is released when the block ends or
        its holder dies. ``on_wait`` is called once if the caller has to wait for it.

        Not reentrant. A caller that holds several takes them in ascending order of ``name``.
        Raises :class:`StoreError` if the lock cannot be taken for another reason than that
        someone holds it (then it is waited for).
        """
        ...

    async def close(self) -> None: ...


@runtime_checkable
class EventWatch(Protocol):
    """A store that tells when events were committed to it by any process, its own or another
    sharing the database (:class:`~vrmproto.store.PostgresStore`: LISTEN/NOTIFY). The event
    feed's readers wake on it (``vrmproto.server._events.Wakeup.watch``); a store without it is
    polled."""

    def watch_events(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` (in the event loop, never awaited) after each commit that wrote
        events, and whenever some may have been missed; returns what stops it."""
        ...


#: The library's own ``commit`` functions, by where they are defined. Each takes the keywords
#: beyond the protocol's: ``expect=`` (the vendor's warm step, :mod:`vrmproto.server._warm`)
#: and ``durable=False`` (the agent's lazy close, :mod:`vrmproto.client._sending`). A store
#: whose ``commit`` was replaced or overridden (a subclass, a wrapper, a test's spy) is called
#: the plain way, whenever it was patched, so that whatever replaced it sees every Commit.
OWN_COMMITS = frozenset({
    ("vrmproto.store._sqlite", "SQLiteStore.commit"),
    ("vrmproto.store._memory", "MemoryStore.commit"),
    ("vrmproto.store._postgres", "PostgresStore.commit"),
})  # fmt: skip


def commit_site(store: object) -> tuple[str, str] | None:
    """Where ``store.commit`` is defined: ``(module, qualified name)``, None if not a method."""
    func = getattr(getattr(store, "commit", None), "__func__", None)
    return None if func is None else (func.__module__, func.__qualname__)
