"""Whole conversations between an in-memory customer and vendor (spec §5, §7; issue 2).

Each flow runs through :class:`vrmproto.testing.pair.CustomerVendorPair`: two real
:class:`Relationship` engines delivering envelope bytes to each other.
"""

from __future__ import annotations

import dataclasses
from types import EllipsisType

import pytest

from vrmproto import (
    DATA_FORMAT,
    Body,
    DataErased,
    DataRecord,
    DataRequest,
    DataShare,
    DataWithdraw,
    FieldsContent,
    History,
    Identity,
    Intentcast,
    Money,
    Problem,
    ProtocolError,
    Receipt,
    RecordsContent,
    Relationship,
    RelationshipEnd,
    Role,
    State,
    TermRef,
    TermsAccept,
    TermsOffer,
    latest,
    problem_for,
    seal_content,
    sign_message,
)
from vrmproto.testing import pair as pair_module
from vrmproto.testing.pair import DUPLICATE, CustomerVendorPair, default_terms

C, V = Role.CUSTOMER, Role.VENDOR
NO_TRACKING = TermRef.of(latest("vrm.no-tracking"))
PURPOSE_ONLY = TermRef.of(latest("vrm.purpose-only"))
DELETE_AFTER = TermRef.of(latest("vrm.delete-after"), days=90)


def assert_in_step(pair: CustomerVendorPair) -> None:
    assert pair.histories_equal()
    assert pair.customer.state == pair.vendor.state
    assert pair.customer.agreement == pair.vendor.agreement


@pytest.fixture
def agreed() -> CustomerVendorPair:
    pair = CustomerVendorPair()
    pair.agree()
    return pair


def test_terms_offer_then_accept() -> None:
    """§5.2.1, §5.2.2: the accepted offer's hash is the agreement id on both sides."""
    pair = CustomerVendorPair()
    terms = (NO_TRACKING, DELETE_AFTER)
    offer = pair.exchange(TermsOffer(terms=terms, enc_key=pair.customer_identity.enc_public_key))
    assert pair.vendor.state is State.OFFERED
    assert pair.vendor.peer_key == pair.customer_identity.public_key
    accept = pair.exchange(offer.message.accept(), by=V)
    assert accept.message.body.offer == offer.message.hash
    for rel in (pair.customer, pair.vendor):
        assert rel.state is State.AGREED
        assert rel.agreement == offer.message.hash
        assert rel.terms == terms
    assert len(pair.customer.history) == 4  # offer, receipt, accept, receipt
    assert_in_step(pair)


def test_data_share_then_receipt(agreed: CustomerVendorPair) -> None:
    """§5.3.1: the vendor, and only the vendor, reads the shared fields."""
    pair = agreed
    fields = {"email": "ada@example.org", "given_name": "Ada"}
    got = pair.exchange(pair.share(fields, purposes=(3,), expires=pair.now + 60_000))
    assert isinstance(got.content, FieldsContent)
    assert dict(got.content.fields) == fields
    assert got.message.body.categories == (1, 2)  # suggested from the field names
    assert got.message.body.purposes == (3,)
    assert pair.vendor.shares == pair.customer.shares == {got.message.hash: pair.now + 60_000}
    assert b"ada@example.org" not in got.message.envelope
    assert got.message.hash not in pair.customer.awaiting_receipt
    assert got.message.hash not in pair.vendor.owed_receipts
    assert_in_step(pair)


def test_data_withdraw_then_erased(agreed: CustomerVendorPair) -> None:
    """§5.3.2, §5.3.3: the vendor confirms deletion of exactly the withdrawn shares."""
    pair = agreed
    one = pair.customer_sends(pair.share({"email": "a@example.org"})).message.hash
    two = pair.customer_sends(pair.share({"phone": "+1 555 0100"})).message.hash
    withdraw = pair.customer_sends(DataWithdraw(agreement=pair.customer.agreement or b"",
                                                shares=(one,), reason="changed my mind"))
    with pytest.raises(ProtocolError) as info:  # must confirm exactly what was withdrawn
        pair.vendor_sends(DataErased(withdraw=withdraw.message.hash, shares=(one, two)))
    assert info.value.code is Problem.INVALID_FIELD
    pair.vendor_sends(DataErased(withdraw=withdraw.message.hash, shares=(one,)))
    assert set(pair.vendor.shares) == set(pair.customer.shares) == {two}
    # An empty list withdraws everything still live (§5.3.2).
    everything = pair.customer_sends(DataWithdraw(agreement=pair.customer.agreement or b"",
                                                  shares=()))
    pair.vendor_sends(DataErased(withdraw=everything.message.hash, shares=(two,)))
    assert pair.vendor.shares == pair.customer.shares == {}
    assert_in_step(pair)


def test_data_request_then_return(agreed: CustomerVendorPair) -> None:
    """§5.3.4, §5.3.5: the customer reads the returned records in the standard form."""
    pair = agreed
    request = pair.customer_sends(DataRequest(agreement=pair.customer.agreement or b"",
                                              format=DATA_FORMAT))
    records = (
        DataRecord("email", "ada@example.org", 2, "provided", pair.now - 1000, (1,)),
        DataRecord("interest", "skiing", 16, "derived", pair.now - 10, (5, 6)),
    )
    got = pair.vendor_sends(pair.data_return(records))
    assert got.message.body.request == request.message.hash
    assert isinstance(got.content, RecordsContent)
    assert got.content.records == records
    assert not pair.vendor.pending_requests
    with pytest.raises(ProtocolError) as info:  # answered already
        pair.vendor_sends(pair.data_return(records, request=request.message.hash))
    assert info.value.code is Problem.INVALID_FIELD
    assert_in_step(pair)


def test_address_update(agreed: CustomerVendorPair) -> None:
    """§5.3.6: new contact details, readable by the vendor."""
    pair = agreed
    got = pair.exchange(pair.address_update({"street": "1 Main St", "city": "Park City"}))
    assert isinstance(got.content, FieldsContent)
    assert got.content.fields == {"city": "Park City", "street": "1 Main St"}
    assert pair.vendor.state is State.AGREED
    assert_in_step(pair)


def test_no_data_without_an_agreement() -> None:
    """§5.3-1: data messages before terms are agreed get ``no_agreement``."""
    pair = CustomerVendorPair()
    pair.customer_sends(pair.offer())
    for body in (pair.share({"email": "a@b.c"}, agreement=bytes(32)),
                 pair.address_update({"city": "x"}, agreement=bytes(32)),
                 DataRequest(agreement=bytes(32), format=DATA_FORMAT)):
        with pytest.raises(ProtocolError) as info:
            pair.customer_sends(body)
        assert info.value.code is Problem.NO_AGREEMENT
    assert_in_step(pair)


def _intentcast(pair: CustomerVendorPair) -> Intentcast:
    return Intentcast(
        what="a 4-wheel-drive SUV",
        where="Park City",
        start=pair.now + 10 * 86_400_000,
        end=pair.now + 15 * 86_400_000,
        reply_by=pair.now + 86_400_000,
        constraints=("no prepaid gas", "no insurance"),
        memberships=("Avis Wizard", "Budget FastBreak", "Hertz 1 Club"),
        max_price=Money(amount=80_000, currency="USD"),
    )


def test_intentcast_then_offer_from_a_fresh_key() -> None:
    """§2.4, §5.4.1, §5.4.2: the intentcast comes from the thread's throw-away key."""
    pair = CustomerVendorPair(intent=True)
    intent_key = pair.master.for_intent(pair.thread).public_key
    assert pair.customer_identity.public_key == intent_key
    assert intent_key != pair.master.pairwise(pair.vendor_identity.public_key).public_key
    cast = pair.customer_sends(_intentcast(pair))
    assert cast.message.sender == intent_key
    assert pair.vendor.peer_key == intent_key
    price = Money(amount=65_000, currency="USD")
    offer = pair.vendor_sends(cast.message.offer("Jeep Grand Cherokee, 5 days", price,
                                                 valid_until=pair.now + 3_600_000,
                                                 accepts_terms=("vrm.no-tracking",)))
    assert offer.message.body.intent == cast.message.hash
    assert offer.message.recipient == intent_key
    assert pair.customer.state is State.INTENT_ANSWERED
    pair.vendor_sends(cast.message.offer("Ford Explorer", price, valid_until=pair.now + 1))
    assert_in_step(pair)


def test_intentcast_then_decline() -> None:
    pair = CustomerVendorPair(intent=True)
    cast = pair.customer_sends(_intentcast(pair))
    pair.exchange(cast.message.decline("no SUVs left that week"), by=V)
    assert pair.customer.state is State.INTENT_DECLINED
    with pytest.raises(ProtocolError) as info:  # declined is final for offers
        pair.vendor_sends(cast.message.offer("x", Money(amount=1, currency="USD"),
                                             valid_until=pair.now + 1))
    assert info.value.code is Problem.ILLEGAL_TRANSITION
    assert_in_step(pair)


def test_reject_with_counter_then_offer_the_counter() -> None:
    """§5.2.3: a counter-offer, taken up by the customer as a new offer, is accepted."""
    pair = CustomerVendorPair()
    offer = pair.customer_sends(pair.offer((NO_TRACKING, PURPOSE_ONLY)))
    reject = pair.vendor_sends(offer.message.reject(
        "we use an analytics partner", refused=("vrm.no-tracking",), counter=(PURPOSE_ONLY,)))
    assert reject.message.body.counter == (PURPOSE_ONLY,)
    assert pair.customer.state is pair.vendor.state is State.COUNTERED
    assert pair.customer.counter == (PURPOSE_ONLY,)
    second = pair.customer_sends(pair.offer(pair.customer.counter))
    with pytest.raises(ProtocolError):  # the first offer is no longer open
        pair.vendor_sends(offer.message.accept())
    pair.vendor_sends(second.message.accept())
    assert pair.customer.agreement == pair.vendor.agreement == second.message.hash
    assert pair.customer.terms == (PURPOSE_ONLY,)
    assert_in_step(pair)


def test_plain_reject_then_offer_again() -> None:
    pair = CustomerVendorPair()
    offer = pair.customer_sends(pair.offer())
    pair.vendor_sends(offer.message.reject("no"))
    assert pair.vendor.state is State.REJECTED
    pair.agree((PURPOSE_ONLY,))
    assert pair.side(V).state is State.AGREED


@pytest.mark.parametrize(("reason", "code"), [("rotate", Problem.KEY_ROTATED),
                                              ("compromise", Problem.KEY_REVOKED)])
def test_key_rotation_mid_relationship(agreed: CustomerVendorPair, reason: str,
                                       code: Problem) -> None:
    """§2.6: the old key signs the move; then only the new key is accepted."""
    pair = agreed
    old = pair.customer_identity
    new = pair.master.pairwise(pair.vendor_identity.public_key, 1)
    sent = pair.customer.rotate(new, now=pair.now, msg_id=pair.next_id(), reason=reason)
    assert sent.message.sender == old.public_key
    assert pair.deliver(sent.message.envelope, to=V) != DUPLICATE
    assert pair.vendor.peer_key == new.public_key
    assert pair.vendor.peer_enc_key == new.enc_public_key
    assert pair.customer.identity is new
    assert pair.customer.generation == 1
    # Later messages: from the new key, to the new key, sealed to the new key.
    share = pair.customer_sends(pair.share({"email": "new@example.org"}))
    assert share.message.sender == new.public_key
    receipt = pair.vendor_sends(share.message.receipt())
    assert receipt.message.recipient == new.public_key
    pair.customer_sends(DataRequest(agreement=pair.customer.agreement or b"",
                                    format=DATA_FORMAT))
    got = pair.vendor_sends(pair.data_return(()))
    assert isinstance(got.content, RecordsContent)
    # Anything signed by the old key is refused.
    stale = sign_message(
        DataRequest(agreement=pair.customer.agreement or b"", format=DATA_FORMAT),
        identity=old, recipient=pair.vendor_identity.public_key, thread=pair.thread,
        prev=pair.customer.our_head, now=pair.now, msg_id=pair.next_id(),
    )
    with pytest.raises(ProtocolError) as info:
        pair.deliver(stale.envelope, to=V)
    assert info.value.code is code
    assert_in_step(pair)


def test_vendor_rotation(agreed: CustomerVendorPair) -> None:
    pair = agreed
    new = Identity(b"\x42" * 32)
    sent = pair.vendor.rotate(new, now=pair.now, msg_id=pair.next_id())
    pair.deliver(sent.message.envelope, to=C)
    assert pair.customer.peer_key == new.public_key
    got = pair.customer_sends(pair.share({"email": "a@example.org"}))  # sealed to the new key
    assert got.message.recipient == new.public_key
    assert isinstance(got.content, FieldsContent)
    assert_in_step(pair)


def test_nothing_after_the_end_but_receipts(agreed: CustomerVendorPair) -> None:
    """§5.6.4: after relationship.end, every message but a receipt is illegal_transition."""
    pair = agreed
    end = pair.customer_sends(RelationshipEnd(reason="moving away"))
    assert pair.customer.state is pair.vendor.state is State.ENDED
    agreement = pair.customer.agreement or b""
    for by, body in [
        (C, pair.share({"email": "a@example.org"})),
        (C, DataRequest(agreement=agreement, format=DATA_FORMAT)),
        (C, RelationshipEnd()),
        (V, RelationshipEnd()),
        (C, pair.offer()),
        (C, pair.address_update({"city": "x"})),
    ]:
        with pytest.raises(ProtocolError) as info:
            pair.send(by, body)
        assert info.value.code is Problem.ILLEGAL_TRANSITION, body
    new = pair.master.pairwise(pair.vendor_identity.public_key, 1)
    with pytest.raises(ProtocolError) as info:
        pair.customer.rotate(new, now=pair.now, msg_id=pair.next_id())
    assert info.value.code is Problem.ILLEGAL_TRANSITION
    pair.vendor_sends(end.message.receipt())
    assert_in_step(pair)


def test_state_round_trip_mid_flow_preserves_behaviour(agreed: CustomerVendorPair) -> None:
    """§12 storage: to_state/from_state in the middle of a flow changes nothing."""
    pair = agreed
    share = pair.customer_sends(pair.share({"email": "a@example.org"}))
    request = pair.customer_sends(DataRequest(agreement=pair.customer.agreement or b"",
                                              format=DATA_FORMAT))
    for role in (C, V):
        old = pair.side(role)
        fresh = Relationship.from_state(
            old.to_state(),
            identity=old.identity,
            history=History.resume(len(old.history), old.history.head),
        )
        assert fresh.to_state() == old.to_state()
        assert fresh.state is old.state
        assert fresh.history.head == old.history.head
        if role is C:
            pair.customer = fresh
        else:
            pair.vendor = fresh
    got = pair.vendor_sends(pair.data_return((), request=request.message.hash))
    assert isinstance(got.content, RecordsContent)
    withdraw = pair.customer_sends(DataWithdraw(agreement=pair.customer.agreement or b"",
                                                shares=(share.message.hash,)))
    pair.vendor_sends(DataErased(withdraw=withdraw.message.hash, shares=(share.message.hash,)))
    assert pair.customer.history.head == pair.vendor.history.head
    assert len(pair.customer.history) == len(pair.vendor.history)
    assert pair.customer.shares == pair.vendor.shares == {}


def test_receipts_acknowledge_each_message_once(agreed: CustomerVendorPair) -> None:
    """§5.6.1: a receipt names an unacknowledged message of the peer's, once."""
    pair = agreed
    share = pair.customer_sends(pair.share({"email": "a@example.org"}))
    pair.vendor_sends(share.message.receipt())
    for by in (V, C):  # again, or for its own message
        with pytest.raises(ProtocolError) as info:
            pair.send(by, Receipt(ack=share.message.hash))
        assert info.value.code is Problem.INVALID_FIELD


# -- the pair's inbox: de-duplication (§12.3) -----------------------------------------------------


def test_redelivery_is_a_duplicate_and_changes_nothing(agreed: CustomerVendorPair) -> None:
    pair = agreed
    sent = pair.sign(C, pair.share({"email": "a@example.org"}))
    first = pair.deliver(sent.message.envelope, to=V)
    assert first != DUPLICATE
    before = pair.vendor.to_state(), len(pair.vendor.history)
    assert pair.deliver(sent.message.envelope, to=V) == DUPLICATE
    assert (pair.vendor.to_state(), len(pair.vendor.history)) == before
    assert pair.received(sent.message.hash) is first


def test_same_id_other_message_is_an_id_conflict(agreed: CustomerVendorPair) -> None:
    pair = agreed
    msg_id = pair.next_id()
    pair.customer_sends(DataRequest(agreement=pair.customer.agreement or b"",
                                    format=DATA_FORMAT), msg_id=msg_id)
    other = sign_message(RelationshipEnd(), identity=pair.customer_identity,
                         recipient=pair.vendor_identity.public_key, thread=pair.thread,
                         prev=pair.customer.our_head, now=pair.now, msg_id=msg_id)
    with pytest.raises(ProtocolError) as info:
        pair.deliver(other.envelope, to=V)
    assert info.value.code is Problem.ID_CONFLICT


def test_pair_is_deterministic() -> None:
    """Same seed, same clock, same ids: the same bytes (but for the sealed boxes)."""
    a, b = CustomerVendorPair(), CustomerVendorPair()
    assert a.agree() == b.agree()
    assert a.customer.history.head == b.customer.history.head
    assert CustomerVendorPair(seed=1).agree() != a.customer.agreement
    assert a.offer().terms == default_terms()


def test_pair_clock_and_problems() -> None:
    pair = CustomerVendorPair(now=1_000_000)
    assert pair.advance(500) == pair.now == 1_000_500
    with pytest.raises(ValueError, match="forward"):
        pair.advance(-1)
    got = pair.problem(C, Problem.RATE_LIMITED, "slow down")
    assert got.entry is None
    assert got.message.body.code == "rate_limited"
    with pytest.raises(ProtocolError) as info:
        pair.share({"email": "x"})
    assert info.value.code is Problem.ILLEGAL_TRANSITION
    offer = pair.customer_sends(pair.offer())
    accept = pair.sign(V, offer.message.accept())
    pair.advance(pair.lifetime_ms + 1)
    with pytest.raises(ProtocolError) as info:  # the accept arrives after it expired
        pair.deliver(accept.message.envelope, to=C)
    assert info.value.code is Problem.EXPIRED


# -- the processing order inside a relationship (§4.5-1, steps 22 to 31) --------------------------


def _forge(
    pair: CustomerVendorPair,
    body: Body,
    *,
    by: Role = C,
    identity: Identity | None = None,
    prev: bytes | EllipsisType | None = ...,
    thread: bytes | None = None,
    msg_id: bytes | None = None,
) -> bytes:
    """``body`` as ``by`` would sign it, with any of identity, prev and thread overridden."""
    sender, receiver = pair.side(by), pair.side(by.other)
    return sign_message(
        body,
        identity=identity or sender.identity,
        recipient=receiver.identity.public_key,
        thread=thread or pair.thread,
        prev=sender.our_head if prev is ... else prev,
        now=pair.now,
        msg_id=msg_id or pair.next_id(),
    ).envelope


def _refused_by(pair: CustomerVendorPair, data: bytes, to: Role) -> Problem:
    before = pair.side(to).to_state(), len(pair.side(to).history)
    with pytest.raises(ProtocolError) as info:
        pair.side(to).receive(data, now=pair.now)
    assert (pair.side(to).to_state(), len(pair.side(to).history)) == before  # §4.5-8
    return info.value.code


def test_relationship_processing_order(agreed: CustomerVendorPair) -> None:
    pair = agreed
    stranger = Identity(b"\x77" * 32)
    agreement = pair.customer.agreement or b""
    request = DataRequest(agreement=agreement, format=DATA_FORMAT)
    junk = b"\x01" * 32
    # 23 before 24: another thread, from a stranger
    assert _refused_by(pair, _forge(pair, request, identity=stranger, thread=b"\x09" * 16),
                       V) is Problem.NO_RELATIONSHIP
    # 24 before 25 and 26: a stranger, with a type it may not send and a broken chain
    assert _refused_by(pair, _forge(pair, DataErased(withdraw=junk, shares=()),
                                    identity=stranger, prev=junk), V) is Problem.NOT_A_PARTY
    # 25 before 26: a type the customer never sends, with a broken chain
    assert _refused_by(pair, _forge(pair, DataErased(withdraw=junk, shares=()), prev=junk),
                       V) is Problem.ILLEGAL_TRANSITION
    # 26 before 28..31: a broken chain on an otherwise wrong message
    assert _refused_by(pair, _forge(pair, DataRequest(agreement=junk, format=DATA_FORMAT),
                                    prev=junk), V) is Problem.CHAIN_BROKEN
    # 29 before 30: the table refuses before the type's rules (an accept with a wrong offer)
    accept = TermsAccept(offer=junk, terms=default_terms())
    assert _refused_by(pair, _forge(pair, accept, by=V), C) is Problem.ILLEGAL_TRANSITION
    # 30 before 31: an expired share with content nobody can open, then only the content
    bad_share = DataShare(agreement=agreement, purposes=(1,), categories=(1,), expires=pair.now,
                          sealed=b"not a sealed box")
    assert _refused_by(pair, _forge(pair, bad_share), V) is Problem.INVALID_FIELD
    bad_share = dataclasses.replace(bad_share, expires=pair.now + 1)
    assert _refused_by(pair, _forge(pair, bad_share), V) is Problem.CANNOT_DECRYPT
    assert_in_step(pair)


def test_no_agreement_comes_before_the_table() -> None:
    """§4.5-1 step 28 before 29: data before any agreement is ``no_agreement``, in any state."""
    pair = CustomerVendorPair()
    offer = pair.customer_sends(pair.offer())
    pair.vendor_sends(offer.message.reject("no"))  # rejected: the table has no data rows here
    data = _forge(pair, DataRequest(agreement=bytes(32), format=DATA_FORMAT))
    assert _refused_by(pair, data, V) is Problem.NO_AGREEMENT


def test_rotated_key_is_named_before_the_chain(agreed: CustomerVendorPair) -> None:
    """§4.5-1 step 24 before 26: an old key's message is ``key_rotated``, whatever its prev."""
    pair = agreed
    old = pair.customer_identity
    pair.rotate_customer()
    stale = _forge(pair, RelationshipEnd(), identity=old, prev=b"\x05" * 32)
    assert _refused_by(pair, stale, V) is Problem.KEY_ROTATED


def test_a_problem_is_accepted_whatever_its_thread(agreed: CustomerVendorPair) -> None:
    """§4.5-1 step 22: a problem is accepted outside every relationship, before step 23."""
    pair = agreed
    error = ProtocolError("bad bytes", code=Problem.MALFORMED, clause="§3.3-2")
    problem = problem_for(error, identity=pair.vendor_identity, now=pair.now,
                          msg_id=pair.next_id(), to=pair.customer_identity.public_key)
    got = pair.customer.receive(problem.envelope, now=pair.now)
    assert got.entry is None
    assert got.message.body.code == "malformed"


# -- sealed content (§5.5) ----------------------------------------------------------------------


def _share_sealed(pair: CustomerVendorPair, sealed: bytes) -> DataShare:
    return DataShare(agreement=pair.customer.agreement or b"", purposes=(1,), categories=(2,),
                     expires=pair.now + 60_000, sealed=sealed)


def test_sealed_content_is_bound_to_its_message_and_recipient(agreed: CustomerVendorPair) -> None:
    """§5.5-5, §5.5-6: content sealed for another message id or another recipient is refused,
    so a vendor cannot replay or forward what a customer shared with it (§11.5)."""
    pair = agreed
    content = FieldsContent(fields={"email": "ada@example.org"})
    vendor = pair.vendor_identity
    me = pair.customer_identity

    def refused(sealed: bytes, msg_id: bytes) -> Problem:
        return _refused_by(pair, _forge(pair, _share_sealed(pair, sealed), msg_id=msg_id), V)

    # Sealed for another message id than the one that carries it.
    sealed = pair.customer.seal(content, msg_id=b"\x55" * 16)
    assert refused(sealed, pair.next_id()) is Problem.ENVELOPE_MISMATCH
    # Signed for another recipient (a second vendor), though encrypted to this one.
    msg_id = pair.next_id()
    sealed = seal_content(content, identity=me, recipient=bytes(32),
                          recipient_enc_key=vendor.enc_public_key, msg_id=msg_id)
    assert refused(sealed, msg_id) is Problem.WRONG_RECIPIENT
    # Signed by someone else.
    sealed = seal_content(content, identity=Identity(b"\x66" * 32), recipient=vendor.public_key,
                          recipient_enc_key=vendor.enc_public_key, msg_id=msg_id)
    assert refused(sealed, msg_id) is Problem.BAD_SIGNATURE
    # Encrypted to another key.
    sealed = seal_content(content, identity=me, recipient=vendor.public_key,
                          recipient_enc_key=Identity(b"\x67" * 32).enc_public_key, msg_id=msg_id)
    assert refused(sealed, msg_id) is Problem.CANNOT_DECRYPT
    # Not the content the type needs (records where fields belong).
    sealed = seal_content(RecordsContent(records=()), identity=me, recipient=vendor.public_key,
                          recipient_enc_key=vendor.enc_public_key, msg_id=msg_id)
    assert refused(sealed, msg_id) is Problem.INVALID_FIELD
    # The same content sealed properly is accepted.
    sealed = seal_content(content, identity=me, recipient=vendor.public_key,
                          recipient_enc_key=vendor.enc_public_key, msg_id=msg_id)
    got = pair.customer_sends(_share_sealed(pair, sealed), msg_id=msg_id)
    assert got.content == content
    assert_in_step(pair)


def test_a_sender_cannot_check_what_it_sealed(agreed: CustomerVendorPair) -> None:
    """The one rule a sender's ``send`` cannot check: the seal is opaque to it (§5.5). Content
    sealed for one id and sent under another is signed and logged by the sender, refused by
    the receiver — so :meth:`CustomerVendorPair.share` reserves the id it sealed for."""
    pair = agreed
    sealed = pair.customer.seal(FieldsContent(fields={"email": "a@b.c"}), msg_id=b"\x55" * 16)
    sent = pair.sign(C, _share_sealed(pair, sealed))
    with pytest.raises(ProtocolError) as info:
        pair.deliver(sent.message.envelope, to=V)
    assert info.value.code is Problem.ENVELOPE_MISMATCH
    assert not pair.histories_equal()  # the customer is now ahead (§8.3-5)


def test_the_pair_docstring_example_runs() -> None:
    """The usage shown in vrmproto.testing.pair's docstring is real code."""
    lines = (pair_module.__doc__ or "").split("::\n", 1)[1].splitlines()
    code = []
    for line in lines:
        if line and not line.startswith("    "):
            break  # the prose after the example
        code.append(line[4:])
    assert any("CustomerVendorPair()" in line for line in code)
    exec(compile("\n".join(code), "pair-docstring", "exec"), {})
