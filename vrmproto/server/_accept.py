"""The accept step: one verified message applied, answered and committed (§12.3, §12.7).

Under the thread's lock (§12.8-1)::

    load the relationship ─ admit a first contact (§11.8-2) ─ receive (§4.5)
      ─ storage budget (§11.8-4) ─ held data (§12.10) ─ receipt, then the policy's replies
      ─ ONE store Commit (relationship, history, dedupe + exact response, held rows, erasures,
        save points) ─ hooks

Loading the relationship and mapping it back to records, and the save points, are the layer
both nodes share (:mod:`vrmproto._records`); a relationship this endpoint has just stored is
taken as it was kept, when the store still holds exactly its state (:mod:`._warm`).

A replay is recognised without a read before every message: it cannot pass ``receive`` (its
``prev`` no longer links) nor commit (its dedupe key is taken), and both of those paths look up
the stored response before answering (§12.6-2).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from vrmproto._binding import CONTENT_TYPE, encode_replies
from vrmproto._envelope import Signed
from vrmproto._errors import Problem, ProtocolError, ValidationError
from vrmproto._keys import fingerprint
from vrmproto._messages import Intentcast, ProblemReport, Receipt, TermsOffer
from vrmproto._quick import quick_make
from vrmproto._records import capture, guard, history_rows, to_record
from vrmproto._records import load as load_record
from vrmproto._relationship import Relationship, Sent
from vrmproto._state import Role, State
from vrmproto.server._admission import Ticket
from vrmproto.server._events import events_of
from vrmproto.server._first_contact import Room, admit
from vrmproto.server._held import take_data
from vrmproto.server._policy import Event
from vrmproto.server._replies import reply
from vrmproto.server._response import NO_CONTENT, Outcome, Peek, Response
from vrmproto.server._warm import checks_expect
from vrmproto.store import (
    Commit,
    DedupeRecord,
    HeldRecord,
    RelationshipRecord,
    SavePoint,
    StoreConflict,
)

if TYPE_CHECKING:
    from vrmproto.server._endpoint import Endpoint

__all__ = ["Step", "accept"]

log = logging.getLogger("vrmproto.server")

_OPENING_TYPES = frozenset({TermsOffer.TYPE, Intentcast.TYPE})
#: States of a negotiation still waiting on someone: what counts against a prefix's
#: open_relationships_per_address (§10-17). A settled one (agreed, rejected, declined, ended)
#: does not; one that never agreed still expires (§11.8-3).
_LIVE = frozenset({State.OFFERED, State.COUNTERED, State.INTENT_OPEN, State.INTENT_ANSWERED})
#: Messages that answer nothing and are owed no receipt: 204 (§12.3-3).
_UNACKNOWLEDGED = frozenset({Receipt.TYPE, ProblemReport.TYPE})
#: ``Commit(...)``, ``DedupeRecord(...)`` and ``Event(...)`` built through their slots
#: (:func:`~vrmproto._quick.quick_make`): one of each per accepted message (a Commit's generated
#: ``__init__`` sets 26 frozen fields, one at a time: 2.7 µs, this 1.5).
_commit = quick_make(Commit)
_dedupe = quick_make(DedupeRecord)
_event = quick_make(Event)


class Step:
    """What one accepted message produced, before it is committed."""

    __slots__ = ("erase", "event", "held", "held_drop", "rel", "replies", "save_points", "state")

    def __init__(self, rel: Relationship, event: Event) -> None:
        self.rel = rel
        self.event = event
        self.replies: list[Sent] = []
        self.held: list[HeldRecord] = []  # rows written (one per field the message carries)
        self.held_drop: list[tuple[bytes, bytes]] = []  # (thread, share) whose rows go
        self.erase: list[tuple[bytes, bytes, bytes]] = []
        self.save_points: tuple[SavePoint, ...] = ()  # if the peer refuses a reply (§8.1-5)
        self.state: bytes | None = None  # rel.to_state(), when already computed


async def accept(ep: Endpoint, msg: Signed[Any], now: int, client: str = "") -> (
    tuple[Response, Outcome]
):
    """Run the step under the thread's lock; after a store conflict, again from what is
    stored (§12.7-4). A replay is found by the store's uniqueness rules, not by a read
    before every message: a stored message can never be applied twice (its ``prev`` no
    longer links, and its dedupe key and history slot are taken), and every such refusal
    looks up the stored response before answering (§12.6-2)."""
    # A message that opens a relationship is first tried without reading the store: if the
    # thread exists after all, the commit conflicts on history slot 0 and we start over.
    optimistic = ep.role is Role.VENDOR and msg.type in _OPENING_TYPES and msg.header.prev is None
    attempts = 3 if optimistic else 2
    async with ep._threads.hold(msg.thread):  # one step at a time per thread (§12.8-1)
        for attempt in range(1, attempts + 1):
            try:
                return await apply(ep, msg, now, fresh=optimistic and attempt == 1, client=client)
            except StoreConflict:
                if attempt == attempts:
                    raise
                log.debug("store conflict on thread %s; retrying", msg.thread.hex())
            stored = await ep.store.get_dedupe(msg.sender, msg.id)
            if stored is not None:
                return ep._replay(stored, msg)
    raise AssertionError("unreachable")  # pragma: no cover


async def load(ep: Endpoint, msg: Signed[Any], record: RelationshipRecord | None) -> (
    Relationship
):
    """The relationship ``msg`` belongs to, as stored (or a new one it opens)."""
    if record is None or Role(record.role) is not ep.role:
        if record is not None or ep.role is Role.CUSTOMER or msg.type not in _OPENING_TYPES:
            raise ValidationError(
                "there is no relationship with this thread id here",
                code=Problem.NO_RELATIONSHIP, clause="§12.11-1" if ep.role is Role.CUSTOMER
                else "§12.2-6", path="$.hdr.thread",
            )  # fmt: skip
        return Relationship(role=ep.role, identity=ep.identity, thread=msg.thread, limits=ep.limits)
    identity = ep.identity_of(record)
    if msg.recipient != identity.public_key:
        raise ValidationError(
            "this message is addressed to another key than ours in this relationship",
            code=Problem.WRONG_RECIPIENT, clause="§4.5-2", path="$.hdr.to",
        )  # fmt: skip
    warm = ep._warm.take(record, identity.public_key)  # exactly what is stored, if kept
    if warm is not None:
        return warm
    head = await ep.store.history_head(msg.thread)
    return load_record(record, head, identity=identity, limits=ep.limits)


async def _moved_on(ep: Endpoint, record: RelationshipRecord) -> None:
    """Before refusing a message on a relationship taken warm without reading its record:
    StoreConflict, to run the step again from the store, if the store no longer holds that
    record (another process, a rollback or an expiry moved the thread on, :mod:`._warm`)."""
    if await ep.store.get_relationship(record.thread) != record:
        raise StoreConflict("the thread moved on since this endpoint stored it: run it again")


async def apply(
    ep: Endpoint, msg: Signed[Any], now: int, *, fresh: bool, client: str = ""
) -> tuple[Response, Outcome]:
    """One protocol step; ``fresh``: assume the thread is new (see :func:`accept`).
    ``client``: the address the message came from, for first-contact admission (§11.8-2);
    "" (unknown) admits without per-address budgets.

    A relationship this endpoint just stored is taken as kept, without reading its record,
    when the store checks the record at the commit instead (``expect``, :mod:`._warm`)."""
    expecting = None if fresh else checks_expect(ep.store)
    kept = ep._warm.take_unread(msg.thread) if expecting is not None else None
    record: RelationshipRecord | None
    rel: Relationship | None
    if kept is not None:
        record, rel = kept
    else:
        record = None if fresh else await ep.store.get_relationship(msg.thread)
        rel = None
    ticket: Ticket | None = None
    try:
        if rel is None:
            rel = await load(ep, msg, record)
        elif msg.recipient != rel.identity.public_key:
            raise ValidationError(
                "this message is addressed to another key than ours in this relationship",
                code=Problem.WRONG_RECIPIENT, clause="§4.5-2", path="$.hdr.to",
            )  # fmt: skip
        if ep.role is Role.VENDOR:
            admitted = await admit(ep, msg, record, rel, client, fresh=fresh)
            if isinstance(admitted, tuple):
                if kept is not None:
                    await _moved_on(ep, kept[0])
                return admitted
            ticket = admitted
        received = rel.receive(msg, now=now)
        budget = ep.storage
        room = None if budget is None else ep._gauge.known(budget)  # without a coroutine
        if budget is not None and room is None:
            room = await ep._gauge.room(budget)
        if budget is not None and room is Room.FULL:
            if ticket is not None:
                ticket.cancel()
            return ep.problem(
                Problem.STORAGE_FULL, "the receiver has no room to store this message now",
                clause="§11.8-4", retry_after=budget.retry_after_s, to=msg.sender,
                thread=msg.thread, ref=msg.hash,
            ), Outcome.REFUSED  # fmt: skip
        step = Step(rel, _event(kind=msg.type, thread=msg.thread, message=msg,
                                content=received.content))
        if ep.role is Role.VENDOR:
            await take_data(ep.store, step, msg, received.content, now)
    except ProtocolError as exc:
        if ticket is not None:
            ticket.cancel()
        stored = await ep.store.get_dedupe(msg.sender, msg.id)
        if stored is not None:  # a replay: the stored answer, not a refusal (§12.6-2)
            return ep._replay(stored, msg)
        if kept is not None:  # refuse only on what is stored
            await _moved_on(ep, kept[0])
        if fresh and await ep.store.get_relationship(msg.thread) is not None:
            raise StoreConflict("a held thread: steps 23-29 of §4.5-1 first") from None
        return ep._refuse(
            exc, Peek(msg.sender, msg.thread, msg.hash), rel.identity if rel else None
        ), Outcome.REFUSED
    try:
        # The commit applies only while the store still holds the record the step was checked
        # against: taken warm and unread, or read cold. Else another process (or worker)
        # committed in between, and a message checked against the old state would be appended
        # after the new head — a fork (StoreConflict instead: the step runs again).
        held = kept[0] if kept is not None else record
        response = await respond(ep, step, msg, record, now, expect=held)
    except BaseException:
        if ticket is not None:
            ticket.cancel()
        raise
    if rel.state not in _LIVE:  # settled: no longer an open negotiation (§10-17)
        if not ep.admission.shared:
            ep.admission.close(msg.thread)
        elif (ticket is not None and ticket.thread is not None) or (
            record is not None and State(record.state) in _LIVE
        ):  # one the database counts: a round trip only where one was open
            await ep.admission.aclose(msg.thread)
    ep._fire(step.event)  # after the commit, never before (§12.7-1)
    return response, Outcome.STORED


async def respond(
    ep: Endpoint,
    step: Step,
    msg: Signed[Any],
    record: RelationshipRecord | None,
    now: int,
    *,
    expect: RelationshipRecord | None = None,
) -> Response:
    """Receipt and replies for an accepted message, committed with it (§12.3, §12.7-1).
    ``expect``: the record the step was checked against (read, or taken unread from
    :mod:`._warm`), which the store must still hold for the commit to apply."""
    rel = step.rel
    if msg.type in _UNACKNOWLEDGED:
        response = Response(NO_CONTENT, b"")
    else:
        receipt = rel.send(msg.receipt(), now=now, msg_id=ep.random_id())
        point = capture(rel)
        await reply(ep, step, msg, now)
        if step.replies:  # what to return to if the peer refuses a reply (§8.1-5)
            hashes = (s.message.hash for s in step.replies)
            step.save_points = guard(point, hashes, after=len(rel.history))
        else:
            step.state = point.state  # nothing changed since: the state to store
        envelopes = [receipt.message.envelope, *(s.message.envelope for s in step.replies)]
        response = Response(200, encode_replies(envelopes), {"Content-Type": CONTENT_TYPE})
    c = commit_of(ep, step, msg, record=record, response=response, now=now)
    expecting = checks_expect(ep.store) if expect is not None else None
    if expecting is not None:
        await expecting.commit(c, expect=expect)
    else:
        await ep.store.commit(c)
    ep._warm.keep(rel, c.relationships[0])  # stored: the next step may skip the rebuild
    return response


def commit_of(
    ep: Endpoint,
    step: Step,
    msg: Signed[Any],
    *,
    record: RelationshipRecord | None,
    response: Response,
    now: int,
) -> Commit:
    """Everything the step changed, for ONE transaction (§12.7-1). New save points replace
    the thread's older ones, which no longer apply: messages were logged after them (§8.1-5)."""
    rel = step.rel
    assert rel.peer_key is not None
    peer_url = record.peer_url if record else ""
    if isinstance(msg.body, TermsOffer) and msg.body.endpoint:
        peer_url = msg.body.endpoint
    label = record.label if record else fingerprint(rel.peer_key)
    expires = now + ep.limits.replay_window_ms
    return _commit(
        relationships=(to_record(rel, label=label, peer_url=peer_url, now=now, state=step.state),),
        history=history_rows(rel, now),
        dedupe=(_dedupe(sender=msg.sender, msg_id=msg.id, msg_hash=msg.hash,
                        response=response.body, expires_ms=expires),),
        erase=tuple(step.erase),
        save_points_clear=(rel.thread,) if step.save_points else (),
        save_points=step.save_points,
        held_drop=tuple(step.held_drop),
        held=tuple(step.held),
        events=events_of(ep, step, msg, now),  # the feed, in the same transaction
    )
