"""The state table, cell by cell: every event the suite can send, in every state it can reach
(§7-1, §7-2, §7-4, §5.3-1, §5.6.4-1, §12.2-6).

The cases here are GENERATED from ``vrmproto._state.TRANSITIONS`` (Table 7-2): one case per
(state, event) cell, ``SM-<state><event>`` (``SM-201`` is a ``terms.offer`` in state
``agreed``). What a cell expects follows from the table and from the order of checks (§4.5-1):

- in state ``none`` (a thread the endpoint has never seen) only the opening messages, a
  ``terms.offer`` and an ``intentcast``, are accepted; anything else is ``no_relationship``
  (step 23, §12.2-6);
- an event the customer never sends (Table 5-1: ``terms.accept``, ``data.erased``, …) is
  ``illegal_transition`` whatever the state (step 25, §7-2): the vendor's rows of the table are
  never read for a message from the customer;
- a data message in a relationship without an agreement is ``no_agreement`` (step 28, §5.3-1);
- any other event without a customer row in the state is ``illegal_transition`` (step 29,
  §7-1) — a second ``terms.offer`` once agreed, anything after ``relationship.end`` (§5.6.4-1);
- an event with a customer row is accepted with a receipt, and the endpoint's replies must take
  the vendor's rows of the same table (the suite applies them to every reply, §7-4).

A new row, state or event in the table changes these expectations with it; a new state or event
gets new cases (the event list below must name every event: a test checks it). The vendor's rows
are tested through the endpoint's replies (checked against the table for the vendor's role) and
by sending the vendor's events as the customer, which must never be accepted.

The suite reaches a state by driving a fresh relationship there: ``agreed`` by offering terms
from ``accepts_terms``, ``rejected`` or ``countered`` by adding a roster term the endpoint does not
list, the intent states by an intentcast (the endpoint's answer decides which), ``ended`` by
ending an agreed relationship. ``offered`` is never reached: the suite requires an endpoint that
answers an offer in the same response (§14.2), so no cases are generated for it. A cell whose
state the endpoint does not lead to (it lists every roster term, or it answers every intentcast
with an offer) passes with "not reached", and says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vrmproto._errors import ProtocolError
from vrmproto._keys import Context
from vrmproto._messages import (
    MESSAGE_TYPES,
    AddressUpdate,
    Body,
    DataErased,
    DataRequest,
    DataReturn,
    DataWithdraw,
    FieldsContent,
    Intentcast,
    IntentDecline,
    IntentOffer,
    KeyRotate,
    Money,
    Receipt,
    RecordsContent,
    RelationshipEnd,
    TermsAccept,
    TermsOffer,
    TermsReject,
)
from vrmproto._relationship import rotation_proof_bytes
from vrmproto._state import TRANSITIONS, Role, State
from vrmproto._vocab import DATA_FORMAT, ROSTER, TermRef
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    Customer,
    acceptable_terms,
    example_params,
    expect_problem,
    expect_receipt,
    identity,
    new_id,
    now_ms,
    offer_body,
    post,
    share_body,
    target,
)

#: Every event of §7.1, in a fixed order that gives each its number in the case ids. Append a
#: new event at the end: the numbers of the others must not change.
EVENTS: tuple[str, ...] = (
    "terms.offer", "terms.accept", "terms.reject", "terms.counter", "data.share",
    "data.withdraw", "data.erased", "data.request", "data.return", "address.update",
    "intentcast", "intent.offer", "intent.decline", "receipt", "key.rotate", "relationship.end",
)

#: Events that need the relationship's agreement (§5.3-1, step 28 of §4.5-1).
NEEDS_AGREEMENT = frozenset({"data.share", "data.withdraw", "data.request", "address.update"})

#: Events that open a relationship in a thread the endpoint does not know (§12.2-6).
OPENING = frozenset({"terms.offer", "intentcast"})

#: The states the suite can drive a relationship to (``offered`` is not: see the docstring).
STATES: tuple[State, ...] = tuple(s for s in State if s is not State.OFFERED)


def _sent_by(event: str) -> str:
    """Table 5-1's "sent by" for an event (``terms.counter`` is a ``terms.reject``)."""
    return MESSAGE_TYPES["terms.reject" if event == "terms.counter" else event].SENT_BY


@dataclass(frozen=True)
class Cell:
    """One (state, event) cell: what a customer's message of that event must get there."""

    state: State
    event: str
    code: str | None
    """The problem code the endpoint must refuse with, or None when it must accept."""
    clause: str
    covers: tuple[str, ...]
    why: str

    @property
    def case_id(self) -> str:
        return f"SM-{list(State).index(self.state)}{EVENTS.index(self.event) + 1:02d}"


def expectation(state: State, event: str, *, agreed: bool) -> Cell:
    """What Table 7-2 and the order of checks (§4.5-1) say about a customer's ``event`` in
    ``state`` (``agreed``: the relationship holds an agreement)."""
    ended = ("§5.6.4-1",) if state is State.ENDED else ()
    if state is State.NONE:
        if event in OPENING:
            return Cell(state, event, None, "§7-4", ("§12.2-6",),
                        "it opens a relationship (Table 7-2)")
        return Cell(state, event, "no_relationship", "§12.2-6", ("§4.5-5",),
                    "the thread names no relationship and the message does not open one")
    if _sent_by(event) == Role.VENDOR.value:
        return Cell(state, event, "illegal_transition", "§7-2", ended,
                    "the customer never sends it (Table 5-1); the vendor's row is not the "
                    "customer's")
    if event in NEEDS_AGREEMENT and not agreed:
        return Cell(state, event, "no_agreement", "§5.3-1", ended,
                    "the relationship has no agreement")
    if (state, Role.CUSTOMER, event) in TRANSITIONS:
        to = TRANSITIONS[(state, Role.CUSTOMER, event)]
        return Cell(state, event, None, "§7-4", ended,
                    f"Table 7-2 has the row ({state.value}, customer, {event}) -> {to.value}")
    return Cell(state, event, "illegal_transition", "§7-1", ended,
                f"Table 7-2 has no row ({state.value}, customer, {event})")


# -- driving a relationship to a state -------------------------------------------------------


class NotReached(Exception):  # noqa: N818 - a signal, like CaseFailed
    """The endpoint leads elsewhere: the cell's state cannot be reached against it."""


async def _agreed(ctx: CaseContext) -> Customer:
    c = Customer(ctx)
    await c.agree()
    return c


async def _refused(ctx: CaseContext) -> Customer:
    """A relationship whose offer was refused: ``rejected``, or ``countered``."""
    listed = set(target(ctx).accepts_terms)
    extra = [term for (term_id, _), term in sorted(ROSTER.items()) if term_id not in listed]
    if not extra:
        raise NotReached("the endpoint lists every roster term, so it refuses no offer")
    c = Customer(ctx)
    terms = (*acceptable_terms(ctx), TermRef.of(extra[0], **example_params(extra[0])))
    msg, answer = await c.send(TermsOffer(terms=terms, enc_key=c.identity.enc_public_key))
    expect_receipt(ctx, answer, msg)
    return c


async def _intent(ctx: CaseContext) -> Customer:
    c = Customer(ctx)
    msg, answer = await c.send(_intentcast())
    expect_receipt(ctx, answer, msg)
    return c


async def _ended(ctx: CaseContext) -> Customer:
    c = await _agreed(ctx)
    msg, answer = await c.send(RelationshipEnd(reason="conformance test"))
    expect_receipt(ctx, answer, msg)
    return c


async def _fresh(ctx: CaseContext) -> Customer:
    return Customer(ctx)


_REACH: dict[State, Callable[[CaseContext], Awaitable[Customer]]] = {
    State.NONE: _fresh,
    State.AGREED: _agreed,
    State.REJECTED: _refused,
    State.COUNTERED: _refused,
    State.INTENT_OPEN: _intent,
    State.INTENT_ANSWERED: _intent,
    State.INTENT_DECLINED: _intent,
    State.ENDED: _ended,
}

#: Whether a relationship driven to the state holds an agreement (decides no_agreement).
_AGREED_IN = frozenset({State.AGREED, State.ENDED})


# -- a valid body of each event ----------------------------------------------------------------


def _intentcast() -> Intentcast:
    return Intentcast(what="a conformance test intent", reply_by=now_ms() + 3_600_000,
                      constraints=(), memberships=())


def body_of(ctx: CaseContext, c: Customer, event: str) -> tuple[Body, bytes]:
    """A body of ``event`` that passes every check before the state's (§4.5-1 steps 1-21), and
    every check after it where the customer may send it; and the message id to sign it with
    (sealed content is bound to it, §5.5-6)."""
    msg_id = new_id(ctx)
    rel = c.rel
    agreement = rel.agreement or new_id(ctx) + new_id(ctx)
    some_hash = rel.peer_head or new_id(ctx) + new_id(ctx)
    terms = acceptable_terms(ctx)
    body: Body
    if event == "terms.offer":
        body = offer_body(ctx, c.identity)
    elif event == "terms.accept":
        body = TermsAccept(offer=some_hash, terms=terms)
    elif event == "terms.reject":
        body = TermsReject(offer=some_hash, reason="conformance test", refused=())
    elif event == "terms.counter":
        body = TermsReject(offer=some_hash, reason="conformance test", refused=(),
                           counter=terms)
    elif event == "data.share":
        body, msg_id = share_body(ctx, c, {"email": "state@example.org"}, agreement=agreement)
    elif event == "data.withdraw":
        body = DataWithdraw(agreement=agreement, shares=())
    elif event == "data.erased":
        body = DataErased(withdraw=some_hash, shares=())
    elif event == "data.request":
        body = DataRequest(agreement=agreement, format=DATA_FORMAT)
    elif event == "data.return":
        sealed = rel.seal(RecordsContent(records=()), msg_id=msg_id)
        body = DataReturn(request=some_hash, format=DATA_FORMAT, sealed=sealed)
    elif event == "address.update":
        sealed = rel.seal(FieldsContent(fields={"city": "Park City"}), msg_id=msg_id)
        body = AddressUpdate(agreement=agreement, sealed=sealed)
    elif event == "intentcast":
        body = _intentcast()
    elif event == "intent.offer":
        body = IntentOffer(intent=some_hash, description="conformance test",
                           price=Money.parse("10.00", "EUR"), valid_until=now_ms() + 60_000,
                           conditions=(), accepts_terms=())
    elif event == "intent.decline":
        body = IntentDecline(intent=some_hash, reason="conformance test")
    elif event == "receipt":
        owed = sorted(rel.owed_receipts)
        body = Receipt(ack=owed[0] if owed else some_hash)
    elif event == "key.rotate":
        new = identity(ctx)
        proof = new.sign(Context.KEY_ROTATION, rotation_proof_bytes(
            c.identity.public_key, new.public_key, rel.thread))
        body = KeyRotate(new_key=new.public_key, new_enc_key=new.enc_public_key, proof=proof,
                         reason="rotate")
    elif event == "relationship.end":
        body = RelationshipEnd(reason="conformance test")
    else:  # pragma: no cover - EVENTS and this function are kept together
        raise AssertionError(f"no body for {event}")
    return body, msg_id


# -- the cases -----------------------------------------------------------------------------------


def _requirement(cell: Cell) -> str:
    what = f"In state {cell.state.value}, a {cell.event} from the customer"
    if cell.code is None:
        return f"{what} MUST be accepted: {cell.why}."
    return f"{what} MUST be refused with {cell.code}: {cell.why}."


def _accepts(cell: Cell) -> str:
    if cell.code is None and cell.event == "receipt":
        return ("HTTP 204 with an empty body (§12.3-3) (a state the endpoint does not lead to "
                "passes as not reached)")
    if cell.code is None:
        return ("HTTP 200 with a receipt; every reply follows the vendor's rows of Table 7-2 "
                "(a state the endpoint does not lead to passes as not reached)")
    return (f"problem {cell.code} (a state the endpoint does not lead to passes as not "
            "reached)")


def _make(cell: Cell) -> Callable[[CaseContext], Awaitable[None]]:
    async def run(ctx: CaseContext) -> None:
        # Which states this endpoint does not lead to is cached for the run: the endpoint's
        # answers decide it, not the order of the cases, so the verdict is the same either way.
        unreached: dict[State, str] = ctx.state.setdefault("sm_unreached", {})
        if cell.state in unreached:
            ctx.expect(True, expected=f"a relationship in state {cell.state.value}",
                       actual=f"not reached: {unreached[cell.state]}")
            return
        try:
            c = await _REACH[cell.state](ctx)
            if c.rel.state is not cell.state:
                raise NotReached(f"the endpoint led to {c.rel.state.value}")
        except NotReached as exc:
            unreached[cell.state] = str(exc)
            ctx.expect(True, expected=f"a relationship in state {cell.state.value}",
                       actual=f"not reached: {exc}")
            return
        body, msg_id = body_of(ctx, c, cell.event)
        if cell.code is not None:
            expect_problem(ctx, await post(ctx, c.unchecked(body, msg_id=msg_id).envelope),
                           [cell.code])
            return
        if cell.event == "receipt" and not c.rel.owed_receipts:
            ctx.expect(True, expected=f"a message of the endpoint to acknowledge in state "
                       f"{cell.state.value}", actual="not judged: the endpoint has sent nothing "
                       "in this thread that a receipt could acknowledge (§5.6.1-1)")
            return
        try:
            if cell.event == "key.rotate":
                msg, answer = await c.rotate(identity(ctx))
            else:
                msg, answer = await c.send(body, msg_id=msg_id)
        except ProtocolError as exc:  # the suite's own engine, after the endpoint's replies
            ctx.fail(expected=f"a {cell.event} the customer may send in state "
                     f"{cell.state.value}", actual=f"the endpoint's replies so far leave the "
                     f"customer unable to send it: {exc}")
        if cell.event == "receipt":  # owed no receipt: 204 and an empty body (§12.3-3)
            ctx.expect(answer.status == 204 and not answer.exchange.response_body,
                       expected="HTTP 204 with an empty body", actual=answer.describe())
            return
        expect_receipt(ctx, answer, msg)
        ctx.expect(not answer.error, expected="replies that follow Table 7-2 for the vendor",
                   actual=answer.error)

    run.__name__ = run.__qualname__ = f"cell_{cell.state.value}_{cell.event.replace('.', '_')}"
    return run


def cells() -> list[Cell]:
    """Every cell the suite tests, in id order."""
    return [expectation(s, e, agreed=s in _AGREED_IN) for s in STATES for e in EVENTS]


def _register() -> None:
    for cell in cells():
        tags = ("state", "table", cell.state.value, cell.event)
        case(id=cell.case_id, clause=cell.clause, level=Level.MUST, tags=tags,
             covers=cell.covers, requirement=_requirement(cell), accepts=_accepts(cell))(
            _make(cell))


_register()
