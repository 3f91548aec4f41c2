"""The relationships a vendor endpoint just stored, kept to skip rebuilding them (§12.7).

Rebuilding a relationship for every message — reading its newest history row and decoding its
whole stored state — costs in proportion to what the relationship holds (every share it
recorded), so a message cost more the longer the relationship. The accept step therefore keeps,
per thread, the :class:`~vrmproto.Relationship` it has just committed, beside the exact
:class:`~vrmproto.store.RelationshipRecord` that Commit stored.

The store stays the truth, checked one of two ways:

- **at the commit** (:func:`checks_expect`: the store's own ``commit`` takes ``expect=``, as
  :class:`~vrmproto.store.SQLiteStore`, :class:`~vrmproto.store.MemoryStore` and
  :class:`~vrmproto.store.PostgresStore` do, or passes it on to one that does, as the metrics'
  ``MeteredStore`` does): the step takes the kept pair without reading the record
  (:meth:`WarmRelationships.take_unread`), and commits with ``expect=`` the kept record. The
  store applies the Commit only if the thread's row is still exactly that record, in the same
  transaction (PostgreSQL reads it ``FOR UPDATE`` there, so another process sharing the
  database cannot change it before the COMMIT); otherwise it raises
  :class:`~vrmproto.store.StoreConflict` and the step runs again from what is stored (§12.7-4).
  A step that would refuse the message reads the record first: a refusal is decided on what
  is stored, never on a kept object that another process, a rollback (§8.1-5) or an expiry
  has moved on. The read this saves cost more than the rest of the store work on the event
  loop's thread: each commit of the writer empties a reader's page cache, so a point read
  re-reads the row's pages from the WAL (about 45 µs a message in ``bench/e2e.py``); on
  PostgreSQL it is a round trip.
- **before the step** (any other store): the step reads the thread's record and takes the
  kept object only when the record holds exactly those state bytes for the same key of ours
  (:meth:`WarmRelationships.take`).

Anything else that changed the thread — another process on the same store, a rollback, an
expiry, a relabel — wrote another row (every accepted message moves a chain head and the
record's ``updated_ms``), so the step rebuilds from the store as before. An entry is taken out
while a step uses it and put back only after that step's Commit succeeded, so a failed step can
never leave a half-applied object behind. At most :data:`WARM_MAX` threads are kept, the least
recently stored dropped first.
"""

from __future__ import annotations

from typing import Protocol

from vrmproto._history import History
from vrmproto._relationship import Relationship
from vrmproto.store import Commit, RelationshipRecord, Store
from vrmproto.store._base import OWN_COMMITS, commit_site

__all__ = ["WARM_MAX", "ExpectingStore", "WarmRelationships", "checks_expect"]

#: Most relationships one endpoint keeps warm.
WARM_MAX = 4096

#: The ``commit`` functions that pass ``expect=`` on to the store they wrap (its ``inner``):
#: such a wrapper checks when what it wraps does.
_FORWARDED = frozenset({
    ("vrmproto.server._metrics", "MeteredStore.commit"),
})  # fmt: skip


class ExpectingStore(Protocol):
    async def commit(self, c: Commit, *, expect: RelationshipRecord | None = None) -> None: ...


def checks_expect(store: Store) -> ExpectingStore | None:
    """``store``, if its ``commit`` applies a Commit only while the thread's row is exactly
    ``expect`` (else :class:`~vrmproto.store.StoreConflict`); None for any other store."""
    where = commit_site(store)
    if where in OWN_COMMITS:
        return store  # type: ignore[return-value]  # its commit is one of the library's
    if where in _FORWARDED and checks_expect(store.inner) is not None:  # type: ignore[attr-defined]
        return store  # type: ignore[return-value]  # it passes expect= on to one that checks
    return None


class WarmRelationships:
    """Relationship objects by thread, each with the record its last Commit stored."""

    __slots__ = ("_kept", "_max")

    def __init__(self, max_kept: int = WARM_MAX) -> None:
        self._kept: dict[bytes, tuple[RelationshipRecord, Relationship]] = {}
        self._max = max_kept

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, rel: Relationship, record: RelationshipRecord) -> None:
        """Keep ``rel`` as stored in ``record`` (after its Commit succeeded)."""
        self._kept.pop(rel.thread, None)
        self._kept[rel.thread] = (record, rel)
        while len(self._kept) > self._max:
            del self._kept[next(iter(self._kept))]

    def take(self, record: RelationshipRecord, local_key: bytes) -> Relationship | None:
        """The kept relationship of ``record``'s thread if the record holds exactly what was
        kept, for the same key of ours, with a history continuing from its stored end; None
        otherwise. Taken out either way: :meth:`keep` puts it back after the next Commit."""
        kept = self._kept.pop(record.thread, None)
        if kept is None:
            return None
        stored, rel = kept
        if stored.data != record.data or rel.identity.public_key != local_key:
            return None
        rel.history = History.resume(len(rel.history), rel.history.head)
        return rel

    def take_unread(self, thread: bytes) -> tuple[RelationshipRecord, Relationship] | None:
        """The kept record and relationship of ``thread``, unchecked: only for a step that
        commits with ``expect=`` the record (see the module's notes). Taken out."""
        kept = self._kept.pop(thread, None)
        if kept is None:
            return None
        rel = kept[1]
        rel.history = History.resume(len(rel.history), rel.history.head)
        return kept

    def drop(self, thread: bytes) -> None:
        self._kept.pop(thread, None)
