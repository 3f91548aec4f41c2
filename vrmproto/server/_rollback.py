"""Save points: the state before our last replies in a thread, to return to (§8.1-5).

When the peer finally refuses one of the replies we sent with a receipt (a problem naming it,
with a code that is not retryable) and nothing has followed it, that reply never joined the
relationship: it is dropped from our history and the state before it restored. The save point
is taken in the accept step, beside what it saves, and committed with it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vrmproto import _codec
from vrmproto._relationship import Relationship
from vrmproto.store import Commit, RelationshipRecord

if TYPE_CHECKING:
    from vrmproto.server._endpoint import Endpoint

__all__ = ["SavePoint", "roll_back", "rollback_key"]


def rollback_key(thread: bytes) -> str:
    """Store meta key: the state before our last replies in ``thread`` (§8.1-5)."""
    return f"rollback:{thread.hex()}"


@dataclass(frozen=True, slots=True)
class SavePoint:
    """The relationship before our replies: ``length`` entries and the ``state`` then; the
    replies' hashes; the history length ``after`` them."""

    replies: tuple[bytes, ...]
    length: int
    head: bytes | None
    state: bytes
    after: int

    def encode(self) -> bytes:
        return _codec.encode([list(self.replies), self.length, self.head, self.state, self.after])

    @classmethod
    def decode(cls, raw: bytes) -> SavePoint:
        hashes, length, head, state, after = _codec.decode_form(raw)
        return cls(tuple(hashes), length, head, state, after)


async def roll_back(ep: Endpoint, record: RelationshipRecord, ref: bytes) -> None:
    """Return ``record``'s thread to its save point if ``ref`` is one of the replies saved
    there and nothing followed them (§8.1-5)."""
    raw = await ep.store.get_meta(rollback_key(record.thread))
    if not raw:
        return
    point = SavePoint.decode(raw)
    latest = await ep.store.history_head(record.thread)
    if ref not in point.replies or latest is None or latest.index + 1 != point.after:
        return  # not one of our last replies, or the relationship moved on since
    rel = Relationship.from_state(point.state, identity=ep.identity_of(record))
    restored = replace(record, state=rel.state.value, data=point.state, updated_ms=ep.clock())
    await ep.store.commit(Commit(
        relationships=(restored,),
        truncate=((record.thread, point.length),),
        meta=((rollback_key(record.thread), b""),),
    ))  # fmt: skip
