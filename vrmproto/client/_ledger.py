"""The customer's relationships as the agent keeps them: in the store, and cached while in use.

Each relationship is one store row (:class:`~vrmproto.store.RelationshipRecord`: the core
:class:`~vrmproto.Relationship`'s ``to_state()`` in ``data``, the vendor's name in ``label``, its
base URL in ``peer_url``) plus a small JSON meta record (:class:`ThreadMeta`) with what the core
does not know: where the vendor's inbox is, and how our identity in the thread is derived from
the master seed (pairwise per vendor and rotation generation, §2.3; or per intentcast, §2.4).

The meta record also holds the thread's *drafts*: messages waiting behind an undelivered one,
kept as data until their turn (see :mod:`vrmproto.client._outbox`). A draft of a data share or an
address update holds the fields in clear until it is signed and sealed; like the master seed,
the store is the customer's own and must be protected as such.

One lock per thread serialises every step of a relationship — sign, persist, deliver, apply the
replies — so the two sides log the thread's messages in the same order (§8.2). It is two locks,
taken in turn: an :class:`asyncio.Lock` among this agent's tasks, then the store's lock for the
thread (:meth:`~vrmproto.store.Store.lock`), which other agents on the same store — other
processes on the same data directory — hold in turn too (§11.11-2); a step that has to wait
for another process says so (a warning on the ``vrmproto.client`` logger: "another vrm is
working on this relationship; retrying"). Since another process may have changed the thread,
each step drops it from the cache on taking the lock and reads it again from the store. The
cache holds only what the store holds; after any failure mid-step the thread is dropped from it
and re-read.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from vrmproto._history import Entry, History, verify_entries
from vrmproto._keys import Identity, MasterSeed
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._relationship import Relationship
from vrmproto._state import Role
from vrmproto.client._locks import ThreadLocks
from vrmproto.store import HistoryEntry, OutboxItem, RelationshipRecord, Store

__all__ = ["META_PREFIX", "Ledger", "Thread", "ThreadKind", "ThreadMeta", "is_ours"]

META_PREFIX = "client.thread."
#: The store lock of a thread is named this prefix and the thread id (§11.11-2).
LOCK_PREFIX = b"client.thread:"


class ThreadKind(enum.StrEnum):
    """What a customer thread is: a pairwise vendor relationship, or one vendor's thread of an
    intentcast (its key is the intentcast's throw-away one, §2.4)."""

    VENDOR = "vendor"
    INTENT = "intent"


def is_ours(record: RelationshipRecord) -> bool:
    """Whether a store row is a customer relationship (the agent's), not a vendor's."""
    return Role(record.role) is Role.CUSTOMER

log = logging.getLogger("vrmproto.client")


@dataclass(slots=True)
class ThreadMeta:
    """What the agent keeps about a thread beside the core state (JSON in the store's meta)."""

    kind: ThreadKind
    vendor_key: bytes  # the key the vendor's discovery document was signed with at first contact
    name: str  # the vendor's name, from its discovery document
    inbox: str  # absolute inbox URL
    history: str  # absolute history URL
    lifetime_ms: int  # how long our messages stay valid (the vendor's published limit)
    generation: int = 0  # pairwise key generation: rotations so far (§2.6)
    intent_id: bytes | None = None  # the intentcast whose throw-away identity we use (§2.4)
    last_activity_ms: int = 0
    last_problem: str = ""  # the last refusal or delivery failure, for people
    drafts: list[bytes] = field(default_factory=list)  # messages waiting for their turn
    #: For each message in the outbox: the relationship as it was before it was signed —
    #: msg hash hex -> [history length, head link hex, state hex] — so a message the vendor
    #: refuses can be taken back out of our chain and history (§8.1-5).
    rollback: dict[str, list[Any]] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps({
            "kind": self.kind.value,
            "vendor_key": self.vendor_key.hex(),
            "name": self.name,
            "inbox": self.inbox,
            "history": self.history,
            "lifetime_ms": self.lifetime_ms,
            "generation": self.generation,
            "intent_id": self.intent_id.hex() if self.intent_id is not None else None,
            "last_activity_ms": self.last_activity_ms,
            "last_problem": self.last_problem,
            "drafts": [d.hex() for d in self.drafts],
            "rollback": self.rollback,
        }, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ThreadMeta:
        d: dict[str, Any] = json.loads(data)
        return cls(
            kind=ThreadKind(d["kind"]),
            vendor_key=bytes.fromhex(d["vendor_key"]),
            name=str(d["name"]),
            inbox=str(d["inbox"]),
            history=str(d["history"]),
            lifetime_ms=int(d["lifetime_ms"]),
            generation=int(d["generation"]),
            intent_id=bytes.fromhex(d["intent_id"]) if d["intent_id"] else None,
            last_activity_ms=int(d["last_activity_ms"]),
            last_problem=str(d["last_problem"]),
            drafts=[bytes.fromhex(x) for x in d.get("drafts", [])],
            rollback=dict(d.get("rollback", {})),
        )


@dataclass(slots=True)
class Thread:
    """One relationship in use: the core engine, its meta, and the vendor's base URL."""

    rel: Relationship
    meta: ThreadMeta
    url: str

    @property
    def id(self) -> bytes:
        return self.rel.thread

    def copy(self) -> Thread:
        """An independent copy to try a step on (the history is resumed, not copied)."""
        rel = self.rel
        history = History.resume(len(rel.history), rel.history.head)
        twin = Relationship.from_state(rel.to_state(), identity=rel.identity, history=history,
                                       limits=rel.limits)
        return Thread(twin, replace(self.meta, drafts=list(self.meta.drafts)), self.url)

    def save_point(self) -> list[Any]:
        """Where the relationship stands now, to return to if the next message is refused."""
        rel = self.rel
        return [len(rel.history), rel.history.head.hex(), rel.to_state().hex()]

    def roll_back(self, point: list[Any]) -> int:
        """Return to ``point`` (see :meth:`save_point`); the history index to truncate from."""
        length, head, state = int(point[0]), bytes.fromhex(point[1]), bytes.fromhex(point[2])
        self.rel = Relationship.from_state(
            state, identity=self.rel.identity, history=History.resume(length, head),
            limits=self.rel.limits,
        )
        return length

    @property
    def problem_keys(self) -> frozenset[bytes]:
        """Keys a problem about this thread may be signed by: the vendor's, now and at first."""
        keys = {self.meta.vendor_key}
        if self.rel.peer_key is not None:
            keys.add(self.rel.peer_key)
        return frozenset(keys)


def to_entry(h: HistoryEntry) -> Entry:
    return Entry(h.index, h.msg_hash, h.entry_hash, h.envelope, h.direction == "out")


def to_row(thread: bytes, e: Entry, now: int) -> HistoryEntry:
    return HistoryEntry(thread, e.index, e.msg_hash, e.link, e.envelope,
                        "out" if e.outgoing else "in", now)


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
        self._locks = ThreadLocks()
        self._told: set[bytes] = set()
        self._identities: dict[bytes, Identity] = {}  # by public key
        self._derived: dict[tuple[bytes, int], Identity] = {}  # by (vendor key, generation)

    @contextlib.asynccontextmanager
    async def lock(self, thread: bytes, *, on_wait: Callable[[], None] | None = None
                   ) -> AsyncIterator[None]:
        """Hold ``thread`` for one step: among this node's tasks, then among every node on
        the store (§11.11-2); the step reads the thread afresh. ``on_wait`` is called if
        another process holds it (default: one warning per thread). Take several only in
        sorted order (:meth:`lock_all`)."""
        waiting = on_wait if on_wait is not None else (lambda: self._busy(thread))
        async with self._locks.hold(thread), self.store.lock(LOCK_PREFIX + thread,
                                                              on_wait=waiting):
            self.forget(thread)  # another process may have changed it since we cached it
            yield

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
        raw = await self.store.get_meta(META_PREFIX + thread.hex())
        if record is None or raw is None or not is_ours(record):
            raise LookupError(f"no relationship {thread.hex()}")
        meta = ThreadMeta.from_bytes(raw)
        head = await self.store.history_head(thread)
        history = History.resume(head.index + 1, head.entry_hash) if head else History()
        rel = Relationship.from_state(
            record.data, identity=self.identity(meta), history=history, limits=self.limits
        )
        t = Thread(rel, meta, record.peer_url)
        self.adopt(t)
        return t

    async def learn_identity(self, thread: bytes) -> Identity | None:
        """Our identity in ``thread`` as its stored meta says (read afresh, not from the
        cache), remembered for :meth:`identity_of`; None if the thread is not ours."""
        raw = await self.store.get_meta(META_PREFIX + thread.hex())
        if raw is None:
            return None
        identity = self.identity(ThreadMeta.from_bytes(raw))
        self._identities[identity.public_key] = identity
        return identity

    def adopt(self, t: Thread) -> None:
        """Cache ``t`` (after the Commit that stored it succeeded)."""
        self._cache[t.id] = t
        self._identities[t.rel.identity.public_key] = t.rel.identity

    def forget(self, thread: bytes) -> None:
        """Drop a thread from the cache, so the next step re-reads the store."""
        self._cache.pop(thread, None)

    def record(self, t: Thread, now: int) -> RelationshipRecord:
        rel = t.rel
        assert rel.peer_key is not None
        return RelationshipRecord(
            thread=rel.thread,
            role=Role.CUSTOMER.value,
            local_key=rel.identity.public_key,
            peer_key=rel.peer_key,
            state=rel.state.value,
            data=rel.to_state(),
            label=t.meta.name,
            peer_url=t.url,
            updated_ms=now,
        )

    @staticmethod
    def meta_item(t: Thread) -> tuple[str, bytes]:
        return META_PREFIX + t.id.hex(), t.meta.to_bytes()

    async def pending(self, thread: bytes) -> list[OutboxItem]:
        """The thread's undelivered messages, oldest first."""
        return [o for o in await self.store.outbox_all() if o.thread == thread]

    async def entries(self, thread: bytes) -> list[Entry]:
        """Our stored history of ``thread``, verified (§8.2)."""
        entries = [to_entry(h) for h in await self.store.history(thread)]
        verify_entries(entries)
        return entries
