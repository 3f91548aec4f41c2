"""A thread's working copy of what the agent keeps beside the core state
(:class:`ThreadMeta`), while a step of :mod:`vrmproto.client._ledger` works on it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from vrmproto._errors import Problem, StateError
from vrmproto._quick import quick_make
from vrmproto.store import DraftRecord, SavePoint, ShareNote, ThreadKind, ThreadRecord

__all__ = ["LOST", "ThreadMeta", "lost_by_vendor"]

#: How a thread's ``last_problem`` begins when the vendor's last answer was that it holds no such
#: relationship (§4.5-5): the relationship is shown lost, and connect opens a new one.
LOST = f"{Problem.NO_RELATIONSHIP.value}:"

#: ``ThreadRecord(...)``, the same object built without the frozen class's
#: ``object.__setattr__`` per field: a step builds one per Commit (#12;
#: ``tests/test_agent_s13_quick.py`` holds it to the class).
_new_thread_record = quick_make(ThreadRecord)
_NONE: frozenset[int] = frozenset()
_NO_POINTS: frozenset[bytes] = frozenset()


def lost_by_vendor(last_problem: str) -> bool:
    """Whether a thread whose ``last_problem`` this is was lost by the vendor (:data:`LOST`)."""
    return last_problem.startswith(LOST)


@dataclass(slots=True)
class ThreadMeta:
    """What the agent keeps about a thread beside the core state, while a step works on it:
    the thread's :class:`~vrmproto.store.ThreadRecord`, drafts and save points."""

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
    types: tuple[str, ...] | None = None  # what the vendor receives (§13.1-3); None: unknown
    #: When the vendor's discovery document last read for the thread expires (§13.1-8); None:
    #: unknown (stored before schema 11). See :mod:`vrmproto.client._moved`.
    doc_expires_ms: int | None = None
    #: Messages waiting for their turn, in order (see :mod:`vrmproto.client._drafts`).
    drafts: list[DraftRecord] = field(default_factory=list)
    #: For each message of ours in the outbox: the relationship as it was before it was signed,
    #: so a message the vendor refuses can be taken back out of our chain and history (§8.1-5).
    points: dict[bytes, SavePoint] = field(default_factory=dict)
    #: Notes of what this step shared (§5.3.1), stored with it.
    notes: list[ShareNote] = field(default_factory=list)
    _stored_drafts: frozenset[int] = frozenset()  # draft seqs the store holds
    _stored_points: frozenset[bytes] = frozenset()  # save points the store holds

    @classmethod
    def of(cls, r: ThreadRecord, drafts: Sequence[DraftRecord] = (),
           points: Sequence[SavePoint] = ()) -> ThreadMeta:  # fmt: skip
        """The working copy of a thread's stored records."""
        return cls(
            kind=r.kind, vendor_key=r.vendor_key, name=r.name, inbox=r.inbox,
            history=r.history_url, lifetime_ms=r.lifetime_ms, generation=r.generation,
            intent_id=r.intent_id, last_activity_ms=r.last_activity_ms,
            last_problem=r.last_problem, types=r.types, doc_expires_ms=r.doc_expires_ms,
            drafts=list(drafts),
            points={p.msg_hash: p for p in points},
            _stored_drafts=frozenset(d.seq for d in drafts),
            _stored_points=frozenset(p.msg_hash for p in points),
        )  # fmt: skip

    def record(self, thread: bytes, *, activity: int | None = None) -> ThreadRecord:
        """The thread's record; with ``activity``, the same with that ``last_activity_ms``."""
        return _new_thread_record(
            thread=thread, kind=self.kind, vendor_key=self.vendor_key, name=self.name,
            inbox=self.inbox, history_url=self.history, lifetime_ms=self.lifetime_ms,
            generation=self.generation, intent_id=self.intent_id,
            last_activity_ms=self.last_activity_ms if activity is None else activity,
            last_problem=self.last_problem, types=self.types,
            doc_expires_ms=self.doc_expires_ms,
        )  # fmt: skip

    def holds(self, thread: bytes, stored: ThreadRecord) -> bool:
        """Whether ``stored`` is this thread's record but perhaps for ``last_activity_ms``: a
        Commit then leaves it as it is. Every Commit of a thread writes its relationship record
        with a later ``updated_ms`` (:meth:`Ledger.record`), which says when it was last active
        as well; rewriting the thread's row for that alone wrote a page of the store twice a
        message (#12)."""
        return self.record(thread, activity=stored.last_activity_ms) == stored

    def check_receives(self, mtype: str) -> None:
        """Refuse a message of a type the vendor did not list in ``types`` (§13.1-3,
        §13.1-10): StateError. A thread opened before types were kept allows every type."""
        if self.types is not None and mtype not in self.types:
            raise StateError(
                f"this vendor does not receive {mtype} (its discovery document lists "
                f"{', '.join(self.types) or 'no types'})", code=Problem.UNKNOWN_TYPE,
                clause="§13.1-10",
            )  # fmt: skip

    def queue(self, thread: bytes, kind: str, payload: bytes) -> None:
        """Add a draft at the end of the thread's queue."""
        seq = 1 + max((d.seq for d in self.drafts), default=max(self._stored_drafts, default=-1))
        self.drafts.append(DraftRecord(thread, seq, kind, payload))

    def copy(self) -> ThreadMeta:
        return replace(self, drafts=list(self.drafts), points=dict(self.points),
                       notes=list(self.notes))  # fmt: skip

    def changes(self) -> tuple[tuple[DraftRecord, ...], tuple[int, ...], tuple[SavePoint, ...],
                               tuple[bytes, ...]]:  # fmt: skip
        """What the store lacks: drafts added and done, save points added and done."""
        added: tuple[DraftRecord, ...] = ()
        done: tuple[int, ...] = ()
        stored = self._stored_drafts
        if self.drafts or stored:  # most threads have none, in memory or stored
            added = tuple(d for d in self.drafts if d.seq not in stored)
            done = tuple(sorted(stored - {d.seq for d in self.drafts}))
        kept, points = self._stored_points, self.points
        saved = tuple(p for h, p in points.items() if h not in kept) if points else ()
        dropped = tuple(sorted(kept - points.keys())) if kept else ()
        return added, done, saved, dropped

    def unchanged(self) -> bool:
        """Whether the store holds this working copy's drafts and save points, and it has
        noted no share: nothing of it for a Commit to write but its thread record."""
        stored = self._stored_drafts
        return (not self.notes and self.points.keys() == self._stored_points
                and len(self.drafts) == len(stored)
                and (not stored or all(d.seq in stored for d in self.drafts)))  # fmt: skip

    def saved(self) -> None:
        """The store now holds this working copy."""
        drafts = self.drafts
        self._stored_drafts = frozenset(d.seq for d in drafts) if drafts else _NONE
        self._stored_points = frozenset(self.points) if self.points else _NO_POINTS
        self.notes.clear()
