"""The relationships a vendor endpoint just stored, kept to skip rebuilding them (§12.7).

Rebuilding a relationship for every message — reading its newest history row and decoding its
whole stored state — costs in proportion to what the relationship holds (every share it
recorded), so a message cost more the longer the relationship. The accept step therefore keeps,
per thread, the :class:`~vrmproto.Relationship` it has just committed, beside the exact state
bytes that Commit stored.

The store stays the truth. The next step still reads the thread's record, and takes the kept
object only when the record holds exactly those state bytes for the same key of ours:
anything else that changed the thread — another process on the same store, a rollback
(§8.1-5), an expiry — wrote other state (every accepted message moves a chain head), so the
step rebuilds from the store as before. An entry is taken out while a step uses it and put back
only after that step's Commit succeeded, so a failed step can never leave a half-applied object
behind. At most :data:`WARM_MAX` threads are kept, the least recently stored dropped first.
"""

from __future__ import annotations

from vrmproto._history import History
from vrmproto._relationship import Relationship
from vrmproto.store import RelationshipRecord

__all__ = ["WARM_MAX", "WarmRelationships"]

#: Most relationships one endpoint keeps warm.
WARM_MAX = 4096


class WarmRelationships:
    """Relationship objects by thread, each with the state bytes its last Commit stored."""

    __slots__ = ("_kept", "_max")

    def __init__(self, max_kept: int = WARM_MAX) -> None:
        self._kept: dict[bytes, tuple[bytes, Relationship]] = {}
        self._max = max_kept

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, rel: Relationship, state: bytes) -> None:
        """Keep ``rel`` as stored with ``state`` (after its Commit succeeded)."""
        self._kept.pop(rel.thread, None)
        self._kept[rel.thread] = (state, rel)
        while len(self._kept) > self._max:
            del self._kept[next(iter(self._kept))]

    def take(self, record: RelationshipRecord, local_key: bytes) -> Relationship | None:
        """The kept relationship of ``record``'s thread if the record holds exactly what was
        kept, for the same key of ours, with a history continuing from its stored end; None
        otherwise. Taken out either way: :meth:`keep` puts it back after the next Commit."""
        kept = self._kept.pop(record.thread, None)
        if kept is None:
            return None
        state, rel = kept
        if state != record.data or rel.identity.public_key != local_key:
            return None
        rel.history = History.resume(len(rel.history), rel.history.head)
        return rel

    def drop(self, thread: bytes) -> None:
        self._kept.pop(thread, None)
