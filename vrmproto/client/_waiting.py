"""What waits in the outbox, and a person's way out: every item listed with the reason it
waits, one dropped, one or all retried now (spec §12, durability).

A relationship's queue is its signed messages in the outbox (:class:`~vrmproto.store.OutboxItem`)
followed by its drafts (:class:`~vrmproto.store.DraftRecord`), delivered strictly in order
(:mod:`vrmproto.client._outbox`). :func:`waiting` lists both, so the count a person sees per
relationship is the one ``relationships`` shows. Each is named by its message id (chosen when
the draft was made, carried by the signed message), in hex.

Dropping a signed message takes it back out of our chain and history as a refusal does
(§8.1-5); the next draft then takes its turn (:meth:`~vrmproto.client.Outbox.drop`). A receipt of
ours is not dropped: it is owed to the vendor (§5.6.1-2) and already part of our history.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vrmproto._errors import VrmError
from vrmproto.client._drafts import decode_draft
from vrmproto.client._errors import NotFound
from vrmproto.client._own import own_header
from vrmproto.client._schedule import HELD_MS
from vrmproto.store import DraftRecord, OutboxItem

__all__ = ["MIN_ID_PREFIX", "WaitReason", "Waiting", "find", "waiting"]

#: The fewest hex digits of a message id that name a waiting message.
MIN_ID_PREFIX = 4


class WaitReason(enum.Enum):
    """Why a message has not been delivered yet."""

    # (an attempt is recorded once it ends: one cut short by a stop is not, and its message
    # may be at the vendor, §8.1-8)
    NOT_TRIED = "not tried yet, or cut short before its answer came: the vendor may hold it"
    UNREACHABLE = "the vendor could not be reached"  # or answered "try again later"
    BEHIND = "behind an earlier message to the same vendor"
    UNSIGNED = "not signed yet: it waits for the vendor's answer to the message before it"
    HELD = "held until you act: the vendor now answers with another key"


@dataclass(frozen=True, slots=True)
class Waiting:
    """One message waiting for its vendor: signed (``item_id`` set) or still a draft."""

    thread: bytes
    msg_id: bytes
    type: str
    reason: WaitReason
    item_id: int | None = None  # the outbox item, if signed
    msg_hash: bytes = b""  # b"" while a draft
    draft_seq: int | None = None
    attempts: int = 0
    next_attempt_ms: int | None = None
    last_error: str = ""
    destination: str = ""

    @property
    def signed(self) -> bool:
        return self.item_id is not None


def _item(item: OutboxItem, first: bool) -> Waiting:
    header = own_header(item.envelope)
    msg_id, mtype = (header.id, header.type) if header is not None else (bytes(16), "?")
    if not first:
        reason = WaitReason.BEHIND
    elif item.attempts and item.next_attempt_ms >= HELD_MS:
        reason = WaitReason.HELD
    else:
        reason = WaitReason.UNREACHABLE if item.attempts else WaitReason.NOT_TRIED
    return Waiting(item.thread, msg_id, mtype, reason, item.item_id, item.msg_hash,
                   attempts=item.attempts, next_attempt_ms=item.next_attempt_ms,
                   last_error=item.last_error, destination=item.destination)  # fmt: skip


def _draft(d: DraftRecord) -> Waiting:
    try:
        draft = decode_draft(d.payload)
        msg_id, mtype = draft.msg_id, draft.MESSAGE_TYPE
    except (VrmError, ValueError, KeyError):
        msg_id, mtype = bytes(16), d.kind
    return Waiting(d.thread, msg_id, mtype, WaitReason.UNSIGNED, draft_seq=d.seq)


def waiting(store_items: list[OutboxItem], drafts: list[DraftRecord]) -> list[Waiting]:
    """Every waiting message, relationship by relationship, each in the order it will go."""
    by_thread: dict[bytes, list[Waiting]] = {}
    for item in store_items:
        queue = by_thread.setdefault(item.thread, [])
        queue.append(_item(item, first=not queue))
    for d in sorted(drafts, key=lambda d: (d.thread, d.seq)):
        by_thread.setdefault(d.thread, []).append(_draft(d))
    return [w for queue in by_thread.values() for w in queue]


def find(all_waiting: list[Waiting], ref: str) -> Waiting:
    """The waiting message whose id starts with ``ref`` (hex, at least
    :data:`MIN_ID_PREFIX` digits); :class:`NotFound` if none or several."""
    text = ref.strip().lower()
    if len(text) < MIN_ID_PREFIX:
        raise NotFound(f"give at least {MIN_ID_PREFIX} hex digits of the message id")
    hits = [w for w in all_waiting if w.msg_id.hex().startswith(text)]
    if not hits:
        raise NotFound(f"no waiting message with id {ref!r}")
    if len(hits) > 1:
        raise NotFound(f"{len(hits)} waiting messages have ids starting {ref!r}: give more "
                          "digits")  # fmt: skip
    return hits[0]
