"""First contact and the storage budget: the vendor's side of §11.8-2 and §11.8-4.

:func:`admit` asks the per-address :class:`~vrmproto.server._admission.Admission` budget
whether a message that opens a relationship (or is large for a stranger) may be taken, and
answers a refusal as a signed problem — unless the message is no first contact after all (a
replay of one, or a thread that exists). :class:`StorageGauge` measures the store against the
vendor-wide :class:`~vrmproto.server.StorageBudget` at most every ``check_every_ms``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vrmproto._envelope import Signed, unknown_body_bytes
from vrmproto._errors import Problem
from vrmproto._limits import Limits
from vrmproto._messages import TermsOffer
from vrmproto._relationship import Relationship
from vrmproto._state import State
from vrmproto.server._admission import Refusal, StorageBudget, Ticket
from vrmproto.server._response import Outcome, Response
from vrmproto.store import RelationshipRecord, Store, StoreConflict

if TYPE_CHECKING:
    from vrmproto.server._endpoint import Endpoint

__all__ = ["Room", "StorageGauge", "admit"]

log = logging.getLogger("vrmproto.server")


class Room(enum.IntEnum):
    """How much the storage budget still allows (§11.8-4)."""

    ANY = 0  # within the budget
    NO_NEW = 1  # no relationship is opened
    FULL = 2  # nothing more is stored


class StorageGauge:
    """The store measured against a :class:`StorageBudget`, at most every
    ``budget.check_every_ms`` (a usage query is a system call or a table scan). The requests
    that find the last measure too old while one is being taken wait for that one rather than
    each taking its own (on PostgreSQL, a scan of the catalog per request under load)."""

    def __init__(self, store: Store, clock: Callable[[], int]) -> None:
        self._store = store
        self._clock = clock
        self._checked: tuple[int, Room] | None = None  # (ms, level)
        self._measuring: asyncio.Future[Room] | None = None

    def known(self, budget: StorageBudget) -> Room | None:
        """The room measured less than ``budget.check_every_ms`` ago; None: :meth:`room`
        measures it (a message's step asks without a coroutine when it need not wait)."""
        checked = self._checked
        if checked is not None and 0 <= self._clock() - checked[0] < budget.check_every_ms:
            return checked[1]
        return None

    async def room(self, budget: StorageBudget | None) -> Room:
        if budget is None:
            return Room.ANY
        now = self._clock()
        checked = self._checked
        if checked is not None and 0 <= now - checked[0] < budget.check_every_ms:
            return checked[1]
        if self._measuring is None:
            self._measuring = asyncio.ensure_future(self._measure(budget, now))
            self._measuring.add_done_callback(self._measured)
        return await asyncio.shield(self._measuring)

    def _measured(self, done: asyncio.Future[Room]) -> None:
        if self._measuring is done:
            self._measuring = None
        if not done.cancelled():
            done.exception()  # retrieved here: each waiter gets it raised as well

    async def _measure(self, budget: StorageBudget, now: int) -> Room:
        checked = self._checked
        usage = await self._store.usage()
        free = usage.free_bytes if usage.free_bytes is not None else budget.min_free_bytes
        level = Room.ANY
        if free < budget.reserve_free_bytes:
            level = Room.FULL
        elif free < budget.min_free_bytes or (
            budget.max_store_bytes is not None and usage.stored_bytes >= budget.max_store_bytes
        ):
            level = Room.NO_NEW
        if level and (checked is None or checked[1] is not level):
            log.warning("storage budget: %s (store %d bytes, %s bytes free)",
                        "nothing more is stored" if level is Room.FULL else "no new relationships",
                        usage.stored_bytes, usage.free_bytes)  # fmt: skip
        self._checked = (now, level)
        return level


def large(msg: Signed[Any], limits: Limits) -> bool:
    """Whether a first-contact message is over the size limits of §10-13 and §10-14."""
    if len(msg.envelope) > limits.max_first_contact_bytes:
        return True
    body = msg.body_bytes or b""
    return len(body) > limits.max_unknown_body_bytes and (
        unknown_body_bytes(msg) > limits.max_unknown_body_bytes
    )


async def admit(
    ep: Endpoint,
    msg: Signed[Any],
    record: RelationshipRecord | None,
    rel: Relationship,
    client: str,
    *,
    fresh: bool,
) -> Ticket | tuple[Response, Outcome] | None:
    """Admit a first-contact message from ``client`` (§11.8-2): a :class:`Ticket` for what
    it took, None when the message is no first contact, or the refusal to answer with."""
    # a new offer after a rejection opens a negotiation again: it counts as one (§10-17)
    opens = record is None or (rel.state is State.REJECTED and isinstance(msg.body, TermsOffer))
    if not opens and (rel.agreement is not None or msg.sender != rel.peer_key):
        return None  # an agreed relationship, or the vendor's own key
    admitted: Ticket | Refusal | None = None
    if opens and ep.storage is not None and await ep._gauge.room(ep.storage) is Room.NO_NEW:
        admitted = Refusal(
            Problem.RATE_LIMITED,
            "the receiver's storage budget is used up: it opens no relationships now",
            "§11.8-4", retry_after=ep.storage.retry_after_s,
        )  # fmt: skip
    elif not client:
        return None  # no address: nothing to count against
    else:
        is_large = large(msg, ep.limits)
        if not opens and not is_large:
            ep.admission.touch(msg.thread)
            return None
        admission = ep.admission
        if admission.shared:  # in the database shared by several processes (§12.9-8)
            admitted = await admission.aadmit(client, msg.thread, opens=opens, large=is_large)
        else:
            admitted = admission.admit(client, msg.thread, opens=opens, large=is_large)
        if isinstance(admitted, Ticket):
            return admitted
    return await _refuse(ep, msg, record, admitted, client, opens=opens, fresh=fresh)


async def _refuse(
    ep: Endpoint,
    msg: Signed[Any],
    record: RelationshipRecord | None,
    refusal: Refusal,
    client: str,
    *,
    opens: bool,
    fresh: bool,
) -> tuple[Response, Outcome]:
    """A first contact refused: unless it is none after all (a replay, a known thread)."""
    if opens:
        stored = await ep.store.get_dedupe(msg.sender, msg.id)
        if stored is not None:
            return ep._replay(stored, msg)
        if fresh and record is None and await ep.store.get_relationship(msg.thread):
            raise StoreConflict("the thread exists: not a first contact")  # accept() retries
    log.debug("first contact refused (%s, client %s): %s", refusal.code.value, client,
              refusal.detail)  # fmt: skip
    return ep.problem(
        refusal.code, refusal.detail, clause=refusal.clause,
        retry_after=refusal.retry_after, to=msg.sender, thread=msg.thread, ref=msg.hash,
    ), Outcome.REFUSED  # fmt: skip
