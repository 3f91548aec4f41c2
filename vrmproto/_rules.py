"""The rules of each message type: one rule per body class, registered by class (spec §5).

A :class:`Rule` is what step 30 of §4.5-1 does with one message type: the checks its body must
pass against the relationship, in order, and the *effect* of the message once it is accepted
(what it changes in the relationship's facts, §7.4). Each rule also says whether the type
needs an agreement (step 28) and what content it carries sealed (step 31). Rules are declared
with :func:`rule` and looked up by body class in :data:`RULES`; the state they lead to is
Table 7-2 (:data:`vrmproto._state.TRANSITIONS`), and :func:`move` gives both at once:
``(state, role, type) → (next state, rule)``; :func:`machine` is that table whole.

A rule's ``checks`` are the words of the spec's §4.5-1 list (``scripts/gen_spec.py`` writes
them under step 30): each names the code and clause the check refuses with, and the code that
makes it refuses with that code (``tests/test_rules.py`` holds the two together).
A rule reads and checks, and changes nothing until its effect is applied: a refused message
leaves the relationship as it was (§4.5-8).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from vrmproto._errors import Problem, ProtocolError, ValidationError
from vrmproto._keys import Context, check_enc_key, check_key, verify
from vrmproto._messages import (
    MESSAGE_TYPES,
    AddressUpdate,
    Body,
    DataErased,
    DataRequest,
    DataReturn,
    DataShare,
    DataWithdraw,
    FieldsContent,
    Intentcast,
    IntentDecline,
    IntentOffer,
    KeyRotate,
    Receipt,
    RecordsContent,
    RelationshipEnd,
    TermsAccept,
    TermsOffer,
    TermsReject,
)
from vrmproto._state import TRANSITIONS, Role, State, event_of, next_state
from vrmproto._vocab import TermRef, check_refs

if TYPE_CHECKING:
    from vrmproto._relationship import Relationship

#: What an accepted message changes, applied with its message hash once every check passed.
Effect = Callable[[bytes], None]
B = TypeVar("B", bound=Body)


@dataclass(frozen=True, slots=True)
class Check:
    """One check of a message type's rules: what it asks, and how a failure is refused."""

    what: str
    code: Problem
    clause: str
    path: str = ""

    def fail(self, detail: str) -> ValidationError:
        """The refusal of a message that fails this check."""
        return ValidationError(detail, code=self.code, clause=self.clause, path=self.path)


class Turn(NamedTuple):
    """The message a rule checks: who sends it, the time its rules compare with (now, or the
    ``created`` of a message adopted from a history, §8.3-3), and whether it is our own.
    Immutable (a named tuple: cheap to make for every message sent or received)."""

    sender: Role
    now: int
    ours: bool


@dataclass(frozen=True, slots=True)
class Rule:
    """The rules of one message type (§5): its checks, in order, and its effect."""

    body: type[Body]
    checks: tuple[Check, ...]
    apply: Callable[[Relationship, Any, Turn], Effect]
    #: Step 28: the type is refused with ``no_agreement`` in a relationship without one.
    needs_agreement: bool = False
    #: Step 31: the content sealed in the body's ``sealed`` (§5.5), if it carries any.
    sealed: type[Any] | None = None


#: Every rule, by body class. ``problem`` has none: it is outside every relationship (§4.5-9).
RULES: dict[type[Body], Rule] = {}


def rule(
    body: type[B], *checks: Check, needs_agreement: bool = False, sealed: type[Any] | None = None
) -> Callable[[Callable[[Relationship, B, Turn], Effect]], Callable[[Relationship, B, Turn],
                                                                      Effect]]:
    """Register the decorated function as the rule of ``body`` (checks, then the effect)."""

    def register(
        apply: Callable[[Relationship, B, Turn], Effect],
    ) -> Callable[[Relationship, B, Turn], Effect]:
        if body in RULES:
            raise ValueError(f"{body.__name__} has a rule already")
        RULES[body] = Rule(body, checks, apply, needs_agreement, sealed)
        return apply

    return register


class Move(NamedTuple):
    """What one message does in a relationship: the state it leads to (§7) and its rule (§5).
    Immutable (a named tuple: cheap to make for every message sent or received)."""

    to: State
    rule: Rule


def move(state: State, sender: Role, body: Body) -> Move:
    """``(state, role, type) → (next state, rule)``; StateError if Table 7-2 has no row (§7-1)."""
    return Move(next_state(state, sender, event_of(body.TYPE, body)), RULES[type(body)])


def machine() -> dict[tuple[State, Role, str], Move]:
    """Table 7-2 with each row's rule: ``(state, role, type) → (next state, rule)``, where the
    type is the state-machine event (a ``terms.reject`` with a counter is ``terms.counter``)."""
    return {
        (state, role, event): Move(to, RULES[MESSAGE_TYPES[_TYPE_OF.get(event, event)]])
        for (state, role, event), to in TRANSITIONS.items()
    }


_TYPE_OF = {"terms.counter": TermsReject.TYPE}


def _nothing(_: bytes) -> None:
    return None


# -- checks shared by several types ---------------------------------------------------------------


def term_checks(path: str) -> tuple[Check, ...]:
    """The checks of a list of term references at ``path``, made for each reference in turn
    (§6.2-6, §6.2-3, §6.3-3): the first failing reference decides."""
    field = path.rsplit(".", 1)[-1]
    return (
        Check(f"`{field}` cites no term id twice", Problem.INVALID_FIELD, "§6.2-6", path),
        Check(f"each term `{field}` cites is one the receiver knows, by id, version and the "
              "hash of its text", Problem.UNKNOWN_TERM, "§6.2-3", path),
        Check(f"each reference in `{field}` has parameters that suit its term",
              Problem.INVALID_FIELD, "§6.3-3", path),
    )  # fmt: skip


def check_terms(refs: tuple[TermRef, ...], path: str) -> None:
    """Every cited term must be one we know, by id, version and text hash (§6.2-3)."""
    try:
        check_refs(refs)
    except ProtocolError as exc:
        raise ValidationError(exc.detail, code=exc.code, clause=exc.clause,
                              path=path + exc.path) from None  # fmt: skip


_AGREEMENT = Check("`agreement` is this relationship's agreement id", Problem.NO_AGREEMENT,
                   "§5.3-1", "$.body.agreement")


def same_agreement(rel: Relationship, agreement: bytes) -> None:
    """A data message names the relationship's agreement (§5.3-1)."""
    if rel.agreement is None or agreement != rel.agreement:
        raise _AGREEMENT.fail("there is no such agreement in this relationship")


def rotation_proof_bytes(old_key: bytes, new_key: bytes, thread: bytes) -> bytes:
    """What the new key signs in a key.rotate (§2.6-2): old ‖ new ‖ thread."""
    return old_key + new_key + thread


# -- terms (§5.2) ---------------------------------------------------------------------------------

_ENC_KEY = Check("`enc_key` is a usable X25519 key", Problem.BAD_KEY, "§2.1-5", "$.body.enc_key")


@rule(TermsOffer, *term_checks("$.body.terms"), _ENC_KEY)
def _terms_offer(rel: Relationship, body: TermsOffer, turn: Turn) -> Effect:
    check_terms(body.terms, "$.body.terms")
    check_enc_key(body.enc_key, path="$.body.enc_key")

    def offered(h: bytes) -> None:
        rel.pending_offer, rel.offered, rel.counter = h, body.terms, None
        if not turn.ours:
            rel.peer_enc_key = body.enc_key

    return offered


_OPEN_OFFER = Check("`offer` is the hash of the open terms.offer", Problem.INVALID_FIELD,
                    "§5.2.2-1", "$.body.offer")
_SAME_TERMS = Check("`terms` are exactly the offer's, in order", Problem.INVALID_FIELD,
                    "§5.2.2-2", "$.body.terms")


@rule(TermsAccept, _OPEN_OFFER, _SAME_TERMS)
def _terms_accept(rel: Relationship, body: TermsAccept, turn: Turn) -> Effect:
    if body.offer != rel.pending_offer:
        raise _OPEN_OFFER.fail("this answers an offer that is not open")
    if body.terms != rel.offered:
        raise _SAME_TERMS.fail("accepted terms differ from the offer")

    def agreed(_: bytes) -> None:
        rel.agreement, rel.terms = rel.pending_offer, rel.offered
        rel.pending_offer = None

    return agreed


@rule(TermsReject, _OPEN_OFFER, *term_checks("$.body.counter"))
def _terms_reject(rel: Relationship, body: TermsReject, turn: Turn) -> Effect:
    if body.offer != rel.pending_offer:
        raise _OPEN_OFFER.fail("this answers an offer that is not open")
    if body.counter:
        check_terms(body.counter, "$.body.counter")

    def refused(_: bytes) -> None:
        rel.pending_offer, rel.counter = None, body.counter

    return refused


# -- data (§5.3) ----------------------------------------------------------------------------------

_SHARE_EXPIRES = Check("`expires` is later than now", Problem.INVALID_FIELD, "§5.3.1-3",
                       "$.body.expires")


@rule(DataShare, _AGREEMENT, _SHARE_EXPIRES, needs_agreement=True, sealed=FieldsContent)
def _data_share(rel: Relationship, body: DataShare, turn: Turn) -> Effect:
    same_agreement(rel, body.agreement)
    if body.expires <= turn.now:
        raise _SHARE_EXPIRES.fail("the share's expiry has passed")

    def shared(h: bytes) -> None:
        rel.shares[h] = body.expires

    return shared


_LIVE_SHARES = Check("every share named is a live data.share of this relationship",
                     Problem.INVALID_FIELD, "§5.3.2-1", "$.body.shares")


@rule(DataWithdraw, _AGREEMENT, _LIVE_SHARES, needs_agreement=True)
def _data_withdraw(rel: Relationship, body: DataWithdraw, turn: Turn) -> Effect:
    same_agreement(rel, body.agreement)
    unknown = [s for s in body.shares if s not in rel.shares]
    if unknown:
        raise _LIVE_SHARES.fail("withdraws a share that is not live")
    # each once, in the order named (§5.3.3-2); all live ones sorted, the same after a restore
    withdrawn = tuple(dict.fromkeys(body.shares)) or tuple(sorted(rel.shares))

    def withdrawing(h: bytes) -> None:
        rel.pending_withdraws[h] = withdrawn

    return withdrawing


_PENDING_WITHDRAW = Check("`withdraw` is a data.withdraw not yet confirmed",
                          Problem.INVALID_FIELD, "§5.3.3-1", "$.body.withdraw")
_ERASED_SHARES = Check("`shares` are exactly the shares that withdrawal withdrew",
                       Problem.INVALID_FIELD, "§5.3.3-2", "$.body.shares")


@rule(DataErased, _PENDING_WITHDRAW, _ERASED_SHARES)
def _data_erased(rel: Relationship, body: DataErased, turn: Turn) -> Effect:
    expected = rel.pending_withdraws.get(body.withdraw)
    if expected is None:
        raise _PENDING_WITHDRAW.fail("confirms a withdrawal that is not pending")
    if set(body.shares) != set(expected):
        raise _ERASED_SHARES.fail("must confirm exactly the withdrawn shares")

    def erased(_: bytes) -> None:
        for s in rel.pending_withdraws.pop(body.withdraw):
            rel.shares.pop(s, None)

    return erased


@rule(DataRequest, _AGREEMENT, needs_agreement=True)
def _data_request(rel: Relationship, body: DataRequest, turn: Turn) -> Effect:
    same_agreement(rel, body.agreement)
    return rel.pending_requests.add


_PENDING_REQUEST = Check("`request` is a data.request not yet answered", Problem.INVALID_FIELD,
                         "§5.3.5-1", "$.body.request")


@rule(DataReturn, _PENDING_REQUEST, sealed=RecordsContent)
def _data_return(rel: Relationship, body: DataReturn, turn: Turn) -> Effect:
    if body.request not in rel.pending_requests:
        raise _PENDING_REQUEST.fail("answers a data request that is not pending")
    return lambda _: rel.pending_requests.discard(body.request)


@rule(AddressUpdate, _AGREEMENT, needs_agreement=True, sealed=FieldsContent)
def _address_update(rel: Relationship, body: AddressUpdate, turn: Turn) -> Effect:
    same_agreement(rel, body.agreement)
    return _nothing


# -- intentcasting (§5.4) -------------------------------------------------------------------------


@rule(Intentcast, *term_checks("$.body.terms"))
def _intentcast(rel: Relationship, body: Intentcast, turn: Turn) -> Effect:
    if body.terms:
        check_terms(body.terms, "$.body.terms")

    def opened(h: bytes) -> None:
        rel.intent = h

    return opened


_THIS_INTENT = Check("`intent` is the hash of this thread's intentcast", Problem.INVALID_FIELD,
                     "§5.4.2-1", "$.body.intent")


def _answer_intent(rel: Relationship, body: IntentOffer | IntentDecline, turn: Turn) -> Effect:
    if body.intent != rel.intent:
        raise _THIS_INTENT.fail("answers another intentcast")
    return _nothing


rule(IntentOffer, _THIS_INTENT)(_answer_intent)
rule(IntentDecline, _THIS_INTENT)(_answer_intent)


# -- control (§5.6) -------------------------------------------------------------------------------

_ACK = Check("`ack` is an unacknowledged message of the other party in this thread",
             Problem.INVALID_FIELD, "§5.6.1-1", "$.body.ack")


@rule(Receipt, _ACK)
def _receipt(rel: Relationship, body: Receipt, turn: Turn) -> Effect:
    pending = rel.owed_receipts if turn.ours else rel.awaiting_receipt
    if body.ack not in pending:
        raise _ACK.fail("acknowledges no unacknowledged message of this thread")
    return lambda _: pending.discard(body.ack)


@rule(
    KeyRotate,
    Check("`new_key` is a valid Ed25519 key", Problem.BAD_KEY, "§2.1-2", "$.body.new_key"),
    Check("`new_enc_key` is a usable X25519 key", Problem.BAD_KEY, "§2.1-5",
          "$.body.new_enc_key"),
    Check("`proof` verifies under `new_key` over old ‖ new ‖ thread", Problem.BAD_SIGNATURE,
          "§2.6-2", "$.body.proof"),
)
def _key_rotate(rel: Relationship, body: KeyRotate, turn: Turn) -> Effect:
    old = rel.identity.public_key if turn.ours else rel.peer_key
    assert old is not None
    check_key(body.new_key, path="$.body.new_key")
    check_enc_key(body.new_enc_key, path="$.body.new_enc_key")
    verify(
        Context.KEY_ROTATION,
        rotation_proof_bytes(old, body.new_key, rel.thread),
        body.proof,
        body.new_key,
    )
    if turn.ours:
        return _nothing

    def rotated(_: bytes) -> None:
        rel.retired[old] = body.reason
        rel.peer_key, rel.peer_enc_key = body.new_key, body.new_enc_key

    return rotated


@rule(RelationshipEnd)
def _relationship_end(rel: Relationship, body: RelationshipEnd, turn: Turn) -> Effect:
    return _nothing


#: The state :func:`move` leads to, in one look-up, by ``(state, sender, body class)``: the rows
#: of Table 7-2 whose event is the type itself (every type's but ``terms.reject``, whose event
#: depends on its body). Each row's sender may send the type (§7-2); its rule is
#: ``RULES[body class]``, read when it is used. A message not found here takes :func:`move`
#: and its errors (tests/test_core_s12_quick.py holds the two together). Made from the table
#: in :data:`MOVES_FROM`: read it only while that is the table in force (``_state.TRANSITIONS``;
#: a test that plants another one, as the conformance mutants do, takes :func:`move`).
MOVES: Mapping[tuple[State, Role, type[Body]], State] = {
    (state, role, cls): to
    for (state, role, event), to in TRANSITIONS.items()
    if (cls := MESSAGE_TYPES.get(event)) is not None and cls is not TermsReject and cls in RULES
}
#: The table MOVES was made from, held in a tuple: a test that plants another table under
#: every name the first one had leaves this one as it was.
MOVES_FROM = (TRANSITIONS,)


def rules_by_type() -> Mapping[str, Rule]:
    """Every rule by wire type name, in the order of :data:`vrmproto.MESSAGE_TYPES`."""
    return {name: RULES[cls] for name, cls in MESSAGE_TYPES.items() if cls in RULES}
