"""The relationship state machine, driven at random (spec §5, §7; _state.py, _relationship.py).

A hypothesis :class:`RuleBasedStateMachine` plays random message sequences — every message type
as a rule, from either side, legal or not — through a customer and a vendor
:class:`Relationship` wired back to back in memory (:class:`CustomerVendorPair`). The test keeps
its own model of the relationship, computed from :data:`TRANSITIONS` and the per-type rules of
§5, and checks after every step that:

- every message the sender's own ``send`` accepts is accepted by the receiver;
- every refused message is refused with the code the model predicts — ``illegal_transition``
  for a table miss, ``no_agreement``, ``invalid_field``, ``unknown_term``, ``bad_signature``,
  ``bad_key`` for the per-type rules — by the sender's ``send`` AND by the receiver, when the
  same message is forged past the sender; and that a refusal changes neither side;
- both histories stay identical (same entries, same head), and both sides and the model agree
  on the state and the agreement.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from strategies import term_lists

from vrmproto import (
    DATA_FORMAT,
    MESSAGE_TYPES,
    TRANSITIONS,
    AddressUpdate,
    Body,
    DataErased,
    DataRequest,
    DataReturn,
    DataShare,
    DataWithdraw,
    History,
    Identity,
    Intentcast,
    IntentDecline,
    IntentOffer,
    KeyRotate,
    Money,
    Problem,
    ProblemReport,
    ProtocolError,
    Receipt,
    Relationship,
    RelationshipEnd,
    Role,
    State,
    TermRef,
    TermsAccept,
    TermsOffer,
    TermsReject,
    compare,
    open_envelope,
    sha256,
    sign_message,
)
from vrmproto._keys import Context
from vrmproto._relationship import rotation_proof_bytes
from vrmproto._state import event_of, mermaid, table_markdown
from vrmproto.testing.pair import DUPLICATE, CustomerVendorPair

C, V = Role.CUSTOMER, Role.VENDOR
#: The data messages that need an agreement before anything else is checked (§5.3-1).
NEEDS_AGREEMENT = (DataShare, DataWithdraw, DataRequest, AddressUpdate)
SMALL_ORDER_KEY = bytes(32)


@dataclasses.dataclass
class Model:
    """What the test expects both sides to hold, kept independently of the library."""

    state: State = State.NONE
    pending_offer: bytes | None = None
    offered: tuple[TermRef, ...] = ()
    agreement: bytes | None = None
    shares: dict[bytes, int] = dataclasses.field(default_factory=dict)
    withdraws: dict[bytes, tuple[bytes, ...]] = dataclasses.field(default_factory=dict)
    requests: set[bytes] = dataclasses.field(default_factory=set)
    intent: bytes | None = None
    #: messages each side sent that the other has not yet acknowledged (§5.6.1)
    unacked: dict[Role, list[bytes]] = dataclasses.field(
        default_factory=lambda: {C: [], V: []}
    )
    sent: dict[Role, list[bytes]] = dataclasses.field(default_factory=lambda: {C: [], V: []})
    rotations: int = 0


def _role(natural: Role) -> st.SearchStrategy[Role]:
    """Mostly the role that may send a type, sometimes the other (an illegal message)."""
    return st.integers(0, 4).map(lambda i: natural if i else natural.other)


any_role = st.sampled_from([C, V])
#: 0 = a wrong reference, anything else = the right one; so most attempts can succeed.
right = st.integers(0, 5).map(bool)
random_hash = st.binary(min_size=32, max_size=32)


def _bad_ref(ref: TermRef) -> TermRef:
    """The same term with a hash of other text: ``unknown_term`` (§6.2-3)."""
    return TermRef(ref.id, ref.version, sha256(b"other text"), ref.params)


class RelationshipMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair = CustomerVendorPair()
        self.model = Model()
        self.vendor_generation = 0
        # what a backup of each side would hold after each step: (length, state, identity)
        self.backups: dict[Role, list[tuple[int, bytes, Identity]]] = {C: [], V: []}
        self.rotated_to: dict[bytes, Identity] = {}  # new key -> identity, for adopt()

    # -- the harness ----------------------------------------------------------------------------

    def snapshot(self) -> tuple[Any, ...]:
        c, v = self.pair.customer, self.pair.vendor
        return (
            c.to_state(), v.to_state(), c.identity.public_key, v.identity.public_key,
            len(c.history), len(v.history), c.history.head, v.history.head,
        )

    def expected(self, by: Role, body: Body, rule_code: Problem | None) -> Problem | None:
        """What the receiver must answer: a type the role never sends is ``illegal_transition``
        (§7-2); a data message with no agreement yet is ``no_agreement`` (§5.3-1, §7-3); then
        the table decides (§7-1); then the type's own rule (§5)."""
        if type(body).SENT_BY not in ("either", by.value):
            return Problem.ILLEGAL_TRANSITION
        if self.model.agreement is None and isinstance(body, NEEDS_AGREEMENT):
            return Problem.NO_AGREEMENT
        if (self.model.state, by, event_of(body.TYPE, body)) not in TRANSITIONS:
            return Problem.ILLEGAL_TRANSITION
        return rule_code

    def sender_expected(self, by: Role, body: Body, expect: Problem | None) -> Problem | None:
        """What the sender's own ``send`` answers: the same, once it knows its peer (§7-1)."""
        if self.pair.side(by).peer_key is None:
            return Problem.ILLEGAL_TRANSITION  # a vendor before the customer's first message
        return expect

    def forge(self, by: Role, body: Body) -> bytes:
        """The message ``by`` would send, signed without its own checks."""
        sender, receiver = self.pair.side(by), self.pair.side(by.other)
        envelope: bytes = sign_message(
            body,
            identity=sender.identity,
            recipient=receiver.identity.public_key,
            thread=self.pair.thread,
            prev=sender.our_head,
            now=self.pair.now,
            msg_id=self.pair.next_id(),
        ).envelope
        return envelope

    def attempt(
        self,
        by: Role,
        body: Body,
        expect: Problem | None,
        *,
        send: Callable[[], Any] | None = None,
    ) -> bytes | None:
        """Send ``body`` from ``by``; check the outcome against ``expect``; return its hash."""
        before = self.snapshot()
        event(f"{body.TYPE} in {self.model.state.value}: {expect.value if expect else 'ok'}")
        do_send = send or (lambda: self.pair.sign(by, body))
        if expect is not None:
            with pytest.raises(ProtocolError) as info:
                do_send()
            sender_expect = self.sender_expected(by, body, expect)
            assert info.value.code is sender_expect, (body.TYPE, by, info.value)
            assert self.snapshot() == before, "a refused send changed something"
            # The receiver must refuse the same message, forged past the sender's checks.
            data = self.forge(by, body)
            with pytest.raises(ProtocolError) as info:
                self.pair.side(by.other).receive(data, now=self.pair.now)
            assert info.value.code is expect, (body.TYPE, by, "receiver", info.value)
            assert self.snapshot() == before, "a refused receive changed something"
            return None
        sent = do_send()
        try:
            got = self.pair.deliver(sent.message.envelope, to=by.other)
        except ProtocolError as exc:  # pragma: no cover - this is the bug the test looks for
            msg = f"{by.value}'s send accepted {body.TYPE}; the receiver refused it: {exc}"
            raise AssertionError(msg) from exc
        assert got != DUPLICATE
        assert got.message.hash == sent.message.hash
        h: bytes = sent.message.hash
        m = self.model
        m.state = TRANSITIONS[(m.state, by, event_of(body.TYPE, body))]
        if not isinstance(body, Receipt):
            m.unacked[by].append(h)
        m.sent[by].append(h)
        return h

    # -- where a run starts: fresh, or some way into a relationship -------------------------

    @initialize(start=st.sampled_from(["shared", "agreed", "offered", "intent", "fresh"]))
    def start(self, start: str) -> None:
        """Begin part-way in, so deep states are explored as often as shallow ones."""
        event(f"start: {start}")
        if start == "fresh":
            return
        if start == "intent":
            self.intentcast(C)
            return
        self.terms_offer(C, self.pair.offer().terms, True)
        if start == "offered":
            return
        self.terms_accept(V, True, True, (), bytes(32))
        if start == "shared":
            self.data_share(C, True, bytes(32), 10**9)
            self.data_request(C, True, bytes(32))

    # -- terms (§5.2) ---------------------------------------------------------------------------

    @rule(by=_role(C), terms=term_lists(max_len=3), good=right)
    def terms_offer(self, by: Role, terms: tuple[TermRef, ...], good: bool) -> None:
        if not good:
            terms = (_bad_ref(terms[0]), *terms[1:])
        body = TermsOffer(terms=terms, enc_key=self.pair.side(by).identity.enc_public_key)
        expect = self.expected(by, body, None if good else Problem.UNKNOWN_TERM)
        h = self.attempt(by, body, expect)
        if h is not None:
            self.model.pending_offer, self.model.offered = h, terms

    @rule(by=_role(V), offer_ok=right, terms_ok=right, other=term_lists(max_len=2),
          offer=random_hash)
    def terms_accept(self, by: Role, offer_ok: bool, terms_ok: bool,
                     other: tuple[TermRef, ...], offer: bytes) -> None:
        m = self.model
        if offer_ok and m.pending_offer is not None:
            offer = m.pending_offer
        terms = m.offered if terms_ok and m.offered else other
        body = TermsAccept(offer=offer, terms=terms)
        rule_code = None
        if offer != m.pending_offer or terms != m.offered:
            rule_code = Problem.INVALID_FIELD
        if self.attempt(by, body, self.expected(by, body, rule_code)) is not None:
            m.agreement, m.pending_offer = m.pending_offer, None

    @rule(by=_role(V), offer_ok=right, offer=random_hash,
          counter=st.none() | term_lists(max_len=2), counter_ok=right)
    def terms_reject(self, by: Role, offer_ok: bool, offer: bytes,
                     counter: tuple[TermRef, ...] | None, counter_ok: bool) -> None:
        m = self.model
        if offer_ok and m.pending_offer is not None:
            offer = m.pending_offer
        if counter is not None and not counter_ok:
            counter = (_bad_ref(counter[0]), *counter[1:])
        body = TermsReject(offer=offer, reason="no", refused=(), counter=counter)
        rule_code = None
        if offer != m.pending_offer:
            rule_code = Problem.INVALID_FIELD
        elif counter is not None and not counter_ok:
            rule_code = Problem.UNKNOWN_TERM
        if self.attempt(by, body, self.expected(by, body, rule_code)) is not None:
            m.pending_offer = None

    # -- data (§5.3) ------------------------------------------------------------------------------

    def _agreement(self, ok: bool, fallback: bytes) -> tuple[bytes, Problem | None]:
        if ok and self.model.agreement is not None:
            return self.model.agreement, None
        return fallback, Problem.NO_AGREEMENT if fallback != self.model.agreement else None

    @rule(by=_role(C), agreement_ok=right, fallback=random_hash,
          lifetime=st.integers(-1000, 10**9))
    def data_share(self, by: Role, agreement_ok: bool, fallback: bytes, lifetime: int) -> None:
        agreement, rule_code = self._agreement(agreement_ok, fallback)
        expires = max(0, self.pair.now + lifetime)
        if rule_code is None and expires <= self.pair.now:
            rule_code = Problem.INVALID_FIELD
        body: DataShare
        if by is C:
            body = self.pair.share({"email": "ada@example.org"}, expires=expires,
                                   agreement=agreement)
        else:
            body = DataShare(agreement=agreement, purposes=(1,), categories=(2,),
                             expires=expires, sealed=b"not sealed")
        h = self.attempt(by, body, self.expected(by, body, rule_code))
        if h is not None:
            self.model.shares[h] = expires

    @rule(by=_role(C), agreement_ok=right, fallback=random_hash, data=st.data())
    def data_withdraw(self, by: Role, agreement_ok: bool, fallback: bytes,
                      data: st.DataObject) -> None:
        m = self.model
        agreement, rule_code = self._agreement(agreement_ok, fallback)
        # in the order they were made: sorted by their (random) hashes, the same draws would
        # pick other shares on a replay, and hypothesis reports FlakyStrategyDefinition
        choices = [*m.shares, sha256(b"no such share")]
        shares = tuple(data.draw(st.lists(st.sampled_from(choices), max_size=3, unique=True)))
        if rule_code is None and any(s not in m.shares for s in shares):
            rule_code = Problem.INVALID_FIELD
        body = DataWithdraw(agreement=agreement, shares=shares)
        h = self.attempt(by, body, self.expected(by, body, rule_code))
        if h is not None:
            m.withdraws[h] = shares or tuple(m.shares)

    @rule(by=_role(V), data=st.data())
    def data_erased(self, by: Role, data: st.DataObject) -> None:
        m = self.model
        withdraw = data.draw(st.sampled_from([*m.withdraws, sha256(b"none")]))
        expected_shares = m.withdraws.get(withdraw, ())
        extra = () if data.draw(right) else (sha256(b"extra"),)
        shares = (*expected_shares, *extra)
        body = DataErased(withdraw=withdraw, shares=shares)
        rule_code = None
        if withdraw not in m.withdraws or set(shares) != set(expected_shares):
            rule_code = Problem.INVALID_FIELD
        if self.attempt(by, body, self.expected(by, body, rule_code)) is not None:
            for s in m.withdraws.pop(withdraw):
                m.shares.pop(s, None)

    @rule(by=_role(C), agreement_ok=right, fallback=random_hash)
    def data_request(self, by: Role, agreement_ok: bool, fallback: bytes) -> None:
        agreement, rule_code = self._agreement(agreement_ok, fallback)
        body = DataRequest(agreement=agreement, format=DATA_FORMAT)
        h = self.attempt(by, body, self.expected(by, body, rule_code))
        if h is not None:
            self.model.requests.add(h)

    @rule(by=_role(V), data=st.data())
    def data_return(self, by: Role, data: st.DataObject) -> None:
        m = self.model
        request = data.draw(st.sampled_from([*m.requests, sha256(b"no request")]))
        rule_code = None if request in m.requests else Problem.INVALID_FIELD
        if by is V and self.pair.vendor.peer_enc_key is not None:
            body: DataReturn = self.pair.data_return((), request=request)
        else:
            body = DataReturn(request=request, format=DATA_FORMAT, sealed=b"not sealed")
        if self.attempt(by, body, self.expected(by, body, rule_code)) is not None:
            m.requests.discard(request)

    @rule(by=_role(C), agreement_ok=right, fallback=random_hash)
    def address_update(self, by: Role, agreement_ok: bool, fallback: bytes) -> None:
        agreement, rule_code = self._agreement(agreement_ok, fallback)
        body: AddressUpdate
        if by is C:
            body = self.pair.address_update({"city": "Park City"}, agreement=agreement)
        else:
            body = AddressUpdate(agreement=agreement, sealed=b"not sealed")
        self.attempt(by, body, self.expected(by, body, rule_code))

    # -- intentcasting (§5.4) -------------------------------------------------------------------

    @rule(by=_role(C))
    def intentcast(self, by: Role) -> None:
        body = Intentcast(what="an SUV", reply_by=self.pair.now + 10**6, constraints=(),
                          memberships=())
        h = self.attempt(by, body, self.expected(by, body, None))
        if h is not None:
            self.model.intent = h

    @rule(by=_role(V), intent_ok=right, decline=st.booleans(), fallback=random_hash)
    def intent_answer(self, by: Role, intent_ok: bool, decline: bool, fallback: bytes) -> None:
        intent = self.model.intent if intent_ok and self.model.intent else fallback
        body: Body
        if decline:
            body = IntentDecline(intent=intent, reason="none left")
        else:
            body = IntentOffer(intent=intent, description="a Jeep",
                               price=Money(amount=100, currency="USD"),
                               valid_until=self.pair.now + 1, conditions=(), accepts_terms=())
        rule_code = None if intent == self.model.intent else Problem.INVALID_FIELD
        self.attempt(by, body, self.expected(by, body, rule_code))

    # -- control (§5.6) ---------------------------------------------------------------------------

    @rule(by=any_role, data=st.data())
    def receipt(self, by: Role, data: st.DataObject) -> None:
        m = self.model
        choices = [*m.unacked[by.other], *m.sent[by][-2:], *m.sent[by.other][:1],
                   sha256(b"unknown")]
        ack = data.draw(st.sampled_from(choices))
        body = Receipt(ack=ack)
        rule_code = None if ack in m.unacked[by.other] else Problem.INVALID_FIELD
        if self.attempt(by, body, self.expected(by, body, rule_code)) is not None:
            m.unacked[by.other].remove(ack)

    @rule(by=any_role, code=st.sampled_from(list(Problem)))
    def problem(self, by: Role, code: Problem) -> None:
        """Problems are outside the machine (§5.6.2): delivered, never chained, never a change."""
        before = self.snapshot()
        with pytest.raises(ProtocolError) as info:
            self.pair.sign(by, ProblemReport(code=code.value, detail="x"))
        assert info.value.code is Problem.ILLEGAL_TRANSITION
        got = self.pair.problem(by, code, "something went wrong")
        assert got.entry is None
        assert got.message.body.code == code.value
        assert self.snapshot() == before

    @precondition(lambda self: self.model.rotations < 4)
    @rule(by=any_role, reason=st.sampled_from(["rotate", "compromise"]),
          proof_ok=right, key_ok=right)
    def key_rotate(self, by: Role, reason: str, proof_ok: bool, key_ok: bool) -> None:
        sender = self.pair.side(by)
        if by is C:
            new = self.pair.master.pairwise(self.pair.vendor_identity.public_key,
                                            sender.generation + 1)
        else:
            new = Identity(sha256(b"vendor generation %d" % (self.vendor_generation + 1)))
        rule_code = None
        send: Callable[[], Any] | None = None
        if not key_ok:
            new_key, signer = SMALL_ORDER_KEY, new
            rule_code = Problem.BAD_KEY
        else:
            new_key, signer = new.public_key, new if proof_ok else sender.identity
            if not proof_ok:
                rule_code = Problem.BAD_SIGNATURE
        proof = signer.sign(
            Context.KEY_ROTATION,
            rotation_proof_bytes(sender.identity.public_key, new_key, self.pair.thread),
        )
        body = KeyRotate(new_key=new_key, new_enc_key=new.enc_public_key, proof=proof,
                         reason=reason)
        if key_ok and proof_ok:
            # The public way: Relationship.rotate builds the same body and switches keys.
            def send() -> Any:
                return sender.rotate(new, now=self.pair.now, msg_id=self.pair.next_id(),
                                     reason=reason)
        if self.attempt(by, body, self.expected(by, body, rule_code), send=send) is not None:
            self.model.rotations += 1
            self.rotated_to[new.public_key] = new
            if by is V:
                self.vendor_generation += 1
            assert sender.identity.public_key == new.public_key

    @rule(by=any_role, reason=st.none() | st.just("moving on"), now=st.integers(0, 3))
    def relationship_end(self, by: Role, reason: str | None, now: int) -> None:
        if now:
            return  # ending is final: try it in a quarter of the steps that pick it
        body = RelationshipEnd(reason=reason)
        self.attempt(by, body, self.expected(by, body, None))

    @rule(ms=st.integers(0, 3_600_000))
    def tick(self, ms: int) -> None:
        self.pair.advance(ms)

    # -- what holds after every step --------------------------------------------------------------

    @invariant()
    def histories_are_identical(self) -> None:
        c, v = self.pair.customer.history, self.pair.vendor.history
        assert compare(c.entries(), v.entries()) is None
        assert c.head == v.head
        assert len(c) == len(v) == len(self.model.sent[C]) + len(self.model.sent[V])
        assert self.pair.histories_equal()

    @invariant()
    def both_sides_and_the_model_agree(self) -> None:
        c, v = self.pair.customer, self.pair.vendor
        assert c.state == v.state == self.model.state
        assert c.agreement == v.agreement == self.model.agreement
        assert set(c.shares) == set(v.shares) == set(self.model.shares)

    @invariant()
    def keep_backups(self) -> None:
        for role in (C, V):
            rel, kept = self.pair.side(role), self.backups[role]
            if not kept or kept[-1][0] != len(rel.history):
                kept.append((len(rel.history), rel.to_state(), rel.identity))

    def teardown(self) -> None:
        """§8.3-3: either side, restored from a backup taken after any earlier step, adopts the
        peer's later entries and ends exactly where it stands (a few backups per run)."""
        for role in (C, V):
            full, theirs = self.pair.side(role), self.pair.side(role.other).history.entries()
            kept = self.backups[role]
            for length, state, identity in {kept[0], kept[len(kept) // 2], kept[-1]}:
                rel = Relationship.from_state(
                    state, identity=identity, history=History(theirs[:length])
                )
                for entry in theirs[length:]:
                    msg = open_envelope(entry.envelope, now=0, check_time=False)
                    new_key = msg.body.new_key if isinstance(msg.body, KeyRotate) else b""
                    rel.adopt(entry.envelope, rotated_to=self.rotated_to.get(new_key))
                assert compare(rel.history.entries(), theirs) is None
                # the same relationship; the stored form's spare room and the shares' places
                # follow each object's own past (Relationship.to_state)
                assert rel.to_state(compact=True) == full.to_state(compact=True)

    @invariant()
    def state_survives_a_round_trip(self) -> None:
        for rel in (self.pair.customer, self.pair.vendor):
            again = Relationship.from_state(rel.to_state(), identity=rel.identity)
            assert again.to_state() == rel.to_state()


# Twice the profile's example count: each run is a whole conversation of up to 50 messages.
RelationshipMachine.TestCase.settings = settings(
    max_examples=2 * settings().max_examples, stateful_step_count=50
)
TestRelationshipMachine = RelationshipMachine.TestCase


# -- the table itself (§7.2) ----------------------------------------------------------------------

LIVE = [s for s in State if s not in (State.NONE, State.ENDED)]
EVENTS = {"terms.counter"} | (set(MESSAGE_TYPES) - {"problem"})


def test_table_events_and_senders_match_the_message_types() -> None:
    """Every chained type is an event; each row's sender may send that type (§7-2)."""
    assert {ev for _, _, ev in TRANSITIONS} == EVENTS
    for _, role, ev in TRANSITIONS:
        sent_by = MESSAGE_TYPES["terms.reject" if ev == "terms.counter" else ev].SENT_BY
        assert sent_by in ("either", role.value), (ev, role)


def test_table_is_total_for_the_documented_rules() -> None:
    """§7.2: receipts anywhere after the first message; end from every live state; rotation
    while negotiating or agreed; data only under an agreement; nothing after the end but
    receipts; intentcasts only open a fresh thread."""
    t = TRANSITIONS
    for state in State:
        for role in Role:
            assert ((state, role, "receipt") in t) == (state is not State.NONE)
            if (state, role, "receipt") in t:
                assert t[(state, role, "receipt")] is state
            assert ((state, role, "relationship.end") in t) == (state in LIVE)
            if state in LIVE:
                assert t[(state, role, "relationship.end")] is State.ENDED
            negotiating = state in (State.OFFERED, State.AGREED, State.REJECTED, State.COUNTERED)
            assert ((state, role, "key.rotate") in t) == negotiating
    for ev in ("data.share", "data.withdraw", "data.request", "address.update"):
        assert {(s, r) for s, r, e in t if e == ev} == {(State.AGREED, C)}
    for ev in ("data.erased", "data.return"):
        assert {(s, r) for s, r, e in t if e == ev} == {(State.AGREED, V)}
    assert {s for s, _, e in t if e == "intentcast"} == {State.NONE}
    assert {s for s, _, e in t if e == "terms.offer"} == {State.NONE, State.REJECTED,
                                                         State.COUNTERED}
    assert {e for s, _, e in t if s is State.ENDED} == {"receipt"}
    assert {(s, r, e) for s, r, e in t if s is State.NONE} == {
        (State.NONE, C, "terms.offer"), (State.NONE, C, "intentcast")}


def test_every_state_is_reachable_and_can_end() -> None:
    reach = {State.NONE}
    while True:
        more = {to for (s, _, _), to in TRANSITIONS.items() if s in reach} - reach
        if not more:
            break
        reach |= more
    assert reach == set(State)
    for state in LIVE:
        assert any((state, r, "relationship.end") in TRANSITIONS for r in Role)


def test_counter_is_its_own_event() -> None:
    """§7.1: a terms.reject carrying a counter-offer is the event terms.counter."""
    ref = (TermRef.of(next(iter(__import__("vrmproto").ROSTER.values()))),)
    h = bytes(32)
    assert event_of("terms.reject", TermsReject(offer=h, reason="r", refused=())) == (
        "terms.reject")
    assert event_of("terms.reject", TermsReject(offer=h, reason="r", refused=(),
                                                counter=ref)) == "terms.counter"
    assert event_of("receipt", Receipt(ack=h)) == "receipt"


def test_mermaid_and_markdown_are_drawn_from_the_table() -> None:
    diagram = mermaid()
    assert diagram.startswith("stateDiagram-v2\n")
    for state in State:
        assert (state.value in diagram) or (state is State.NONE and "[*]" in diagram), state
    for (_, _, ev) in TRANSITIONS:
        if ev != "receipt":
            assert ev in diagram
    table = table_markdown()
    assert len(table.splitlines()) == len(TRANSITIONS) + 2


@pytest.mark.parametrize("body_type", ["data.share", "data.withdraw", "data.request",
                                       "address.update"])
def test_send_checks_the_sender_role_first(body_type: str) -> None:
    """§7-2: the sender's ``send`` refuses what the receiver refuses, with the same code."""
    pair = CustomerVendorPair()
    pair.customer_sends(pair.offer())  # the vendor now knows the customer; no agreement yet
    h = bytes(32)
    body = {
        "data.share": DataShare(agreement=h, purposes=(1,), categories=(1,), expires=2**40,
                                sealed=b"x"),
        "data.withdraw": DataWithdraw(agreement=h, shares=()),
        "data.request": DataRequest(agreement=h, format=DATA_FORMAT),
        "address.update": AddressUpdate(agreement=h, sealed=b"x"),
    }[body_type]
    forged = sign_message(body, identity=pair.vendor_identity,
                          recipient=pair.customer_identity.public_key, thread=pair.thread,
                          prev=pair.vendor.our_head, now=pair.now, msg_id=pair.next_id())
    with pytest.raises(ProtocolError) as received:
        pair.customer.receive(forged.envelope, now=pair.now)
    assert received.value.code is Problem.ILLEGAL_TRANSITION
    with pytest.raises(ProtocolError) as sent:
        pair.sign(V, body)
    assert sent.value.code is received.value.code
