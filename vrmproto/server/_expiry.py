"""Sweeps: what the vendor deletes because time passed.

- A relationship that never reached an agreement and had no message for
  ``open_relationship_ttl_ms`` goes, with its history and held data (§11.8-3); its events
  forget what it said, and a ``relationship.expired`` event tells the feed's consumers.
- The held data of a share past its expiry is deleted and the share's body erased from the
  history (§5.3.1-4, §12.10-4).

Each thread is swept under its own lock, from what is stored then, in one store commit.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vrmproto._relationship import Relationship
from vrmproto._state import Role, State
from vrmproto.server._events import expired_record
from vrmproto.server._held import erasures, is_live
from vrmproto.store import Commit, RelationshipRecord

if TYPE_CHECKING:
    from vrmproto.server._endpoint import Endpoint

__all__ = ["expire_shares", "expire_thread_shares", "expire_unagreed"]

log = logging.getLogger("vrmproto.server")

#: States a relationship can be in only while it has never reached an agreement (§7.2).
NEVER_AGREED = frozenset({
    State.OFFERED, State.REJECTED, State.COUNTERED,
    State.INTENT_OPEN, State.INTENT_ANSWERED, State.INTENT_DECLINED,
})  # fmt: skip


def _relationship(ep: Endpoint, record: RelationshipRecord) -> Relationship:
    return Relationship.from_state(record.data, identity=ep.identity_of(record), limits=ep.limits)


def ever_agreed(ep: Endpoint, record: RelationshipRecord) -> bool:
    """Whether the relationship holds, or held, an agreement: only ``agreed`` and ``ended``
    can follow one (§7.2), and an ended one tells by its agreement id."""
    state = State(record.state)
    if state in NEVER_AGREED:
        return False
    if state is not State.ENDED:
        return True
    return _relationship(ep, record).agreement is not None


async def expire_unagreed(ep: Endpoint, now: int) -> int:
    """Delete every relationship that never reached an agreement and whose last message is
    older than ``open_relationship_ttl_ms``, with its history and held data (§11.8-3);
    returns how many. Its replay records stay until their window ends (§10-5), so that a
    replay of its first message is still answered from the record and opens nothing."""
    cutoff = now - ep.limits.open_relationship_ttl_ms
    expired = 0
    for record in await ep.store.relationships():
        if Role(record.role) is not Role.VENDOR or record.updated_ms >= cutoff:
            continue
        if State(record.state) is State.AGREED:
            if not ep.admission.shared:  # a database closed it when it was settled
                ep.admission.close(record.thread)
            continue
        if await _expire_unagreed(ep, record.thread, cutoff, now):
            expired += 1
    if expired:
        log.info("expired %d relationships that never reached an agreement", expired)
    return expired


async def _expire_unagreed(ep: Endpoint, thread: bytes, cutoff: int, now: int) -> bool:
    """Drop ``thread`` if, under its lock, it still qualifies (see :func:`expire_unagreed`),
    and tell the feed's consumers (a ``relationship.expired`` event, docs/events.md), who
    applied its events before they were forgotten."""
    async with ep._threads.hold(thread):
        fresh = await ep.store.get_relationship(thread)
        if fresh is None or fresh.updated_ms >= cutoff:
            return False
        if ever_agreed(ep, fresh):
            await ep.admission.aclose(thread)  # agreed since, outside an inbox step
            return False
        head = await ep.store.history_head(thread)  # the last message: seq goes after it
        told = expired_record(thread, 0 if head is None else head.index + 1, now=now,
                              last_ms=fresh.updated_ms,
                              ttl_ms=ep.limits.open_relationship_ttl_ms)  # fmt: skip
        # with its held rows and save points; its events forgotten, and this one told
        await ep.store.commit(Commit(drop=(thread,), events=(told,)))
        for listener in ep._listeners:  # the feed's readers in this process (_events.Wakeup)
            listener()
    await ep.admission.aclose(thread)
    return True


async def expire_shares(ep: Endpoint) -> int:
    """Delete the held data of every share past its expiry and erase the share's body from
    the history, with those of the address.updates after it (§5.3.1-4, §12.10-4); returns
    how many shares' bodies were erased."""
    erased = 0
    for record in await ep.store.relationships():
        erased += await expire_thread_shares(ep, record)
    return erased


async def expire_thread_shares(ep: Endpoint, record: RelationshipRecord) -> int:
    """:func:`expire_shares` for one thread; also run before each history export of it, so
    that the export never shows data past its expiry (§5.3.1-4)."""
    if Role(record.role) is not Role.VENDOR:
        return 0
    now = ep.clock()
    async with ep._threads.hold(record.thread):
        fresh = await ep.store.get_relationship(record.thread)
        if fresh is None:  # pragma: no cover - expired (§11.8-3) since it was listed
            return 0
        rel = _relationship(ep, fresh)
        expired = sorted(h for h, expires in rel.shares.items() if expires <= now)
        if not expired:
            return 0
        held = await ep.store.held(record.thread)
        erase = await erasures(ep.store, record.thread, expired)
        # A share whose body is still to erase goes by name as well as by its rows: an update
        # that came after it expired replaced them, and its event's personal data goes too.
        # (erase also holds the bodies of the updates after the shares: only the shares go by
        # name, the fields held from those updates stay.)
        named = set(expired)
        drop = sorted({(h.thread, h.share) for h in held if not is_live(h, now)}
                      | {(thread, share) for thread, share, _ in erase
                         if share in named})  # fmt: skip
        if not erase and not drop:
            return 0
        await ep.store.commit(Commit(held_drop=tuple(drop), erase=tuple(erase)))
        return sum(share in named for _, share, _ in erase)
