"""Return to a save point when the peer refuses one of our replies (§8.1-5).

When the peer finally refuses one of the replies we sent with a receipt (a problem naming it,
with a code that is not retryable) and nothing has followed it, that reply never joined the
relationship: it is dropped from our history and the state before it restored. The accept step
keeps a :class:`~vrmproto.store.SavePoint` row per reply, captured before the replies and
committed with them (:func:`vrmproto._records.capture`, :func:`~vrmproto._records.guard`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vrmproto._records import restore, still_applies, to_record
from vrmproto._state import Role
from vrmproto.store import Commit, RelationshipRecord

if TYPE_CHECKING:
    from vrmproto.server._endpoint import Endpoint

__all__ = ["roll_back"]


async def roll_back(ep: Endpoint, record: RelationshipRecord, ref: bytes) -> None:
    """Return ``record``'s thread to the point before ``ref`` if ``ref`` is one of the replies
    saved there and nothing followed them (§8.1-5). Only a vendor replies from the inbox: the
    save points in a customer's store guard what its agent sent, and its agent takes those
    back itself."""
    if ep.role is not Role.VENDOR:
        return
    thread = record.thread
    point = await ep.store.save_point(thread, ref)
    if point is None:
        return  # not one of our last replies
    latest = await ep.store.history_head(thread)
    if latest is None or not still_applies(point, latest.index + 1):
        return  # the relationship moved on since
    rel = restore(point, identity=ep.identity_of(record), limits=ep.limits)
    restored = to_record(
        rel, label=record.label, peer_url=record.peer_url, now=ep.clock(), state=point.state
    )
    await ep.store.commit(Commit(
        relationships=(restored,),
        truncate=((thread, point.length),),
        save_points_clear=(thread,),
    ))  # fmt: skip
