"""Adopting the entries a party lacks from the peer's history (spec §8.3-3)."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from vrmproto import (
    DATA_FORMAT,
    DataRequest,
    DataWithdraw,
    History,
    Identity,
    Problem,
    ProtocolError,
    Receipt,
    Relationship,
    Role,
    compare,
    open_envelope,
    sign_message,
)
from vrmproto.testing.pair import CustomerVendorPair

C, V = Role.CUSTOMER, Role.VENDOR


class Snapshot(NamedTuple):
    """One side as it stood after ``length`` entries: what a backup of it would hold."""

    length: int
    state: bytes
    identity: Identity


def snap(rel: Relationship) -> Snapshot:
    return Snapshot(len(rel.history), rel.to_state(), rel.identity)


def restore(s: Snapshot, full: Relationship) -> Relationship:
    """The side restored from ``s``: its state then, and the first ``length`` entries."""
    history = History(full.history.entries()[: s.length])
    return Relationship.from_state(s.state, identity=s.identity, history=history)


def long_conversation() -> tuple[CustomerVendorPair, dict[Role, list[Snapshot]]]:
    """Every kind of step, with both sides snapshotted after each message."""
    pair = CustomerVendorPair()
    snaps: dict[Role, list[Snapshot]] = {C: [snap(pair.customer)], V: [snap(pair.vendor)]}

    def step() -> None:
        for role in (C, V):
            rel = pair.side(role)
            if len(rel.history) != snaps[role][-1].length:
                snaps[role].append(snap(rel))

    pair.agree()
    step()
    pair.exchange(pair.share({"email": "ada@example.org"}, expires=pair.now + 1_000))
    step()
    pair.advance(5_000)  # the share has expired by the time anyone adopts it
    pair.rotate_customer()
    step()
    pair.exchange(pair.share({"email": "new@example.org"}))
    step()
    pair.exchange(DataRequest(agreement=pair.customer.agreement or b"", format=DATA_FORMAT))
    step()
    pair.exchange(pair.data_return(()), by=V)
    step()
    assert pair.histories_equal()
    return pair, snaps


@pytest.mark.parametrize("role", [C, V])
def test_a_party_behind_adopts_every_entry_it_lacks(role: Role) -> None:
    """§8.3-3: restored from any earlier point, a side adopts the peer's later entries, in order,
    and ends where it would have been: the same history and the same relationship state."""
    pair, snaps = long_conversation()
    full, peer = pair.side(role), pair.side(role.other)
    theirs = peer.history.entries()
    assert len(snaps[role]) > 5
    for s in snaps[role]:
        rel = restore(s, full)
        div = compare(rel.history.entries(), theirs)
        assert div is not None or s.length == len(theirs)
        if div is not None:
            assert (div.index, div.kind) == (s.length, "behind")
        for entry in theirs[s.length :]:
            rotated_to = pair.customer_identity if role is C else None
            adopted = rel.adopt(entry.envelope, rotated_to=rotated_to)
            assert (adopted.index, adopted.link) == (entry.index, entry.link)
            assert adopted.outgoing != entry.outgoing  # their "sent" is our "received"
        assert compare(rel.history.entries(), theirs) is None
        assert rel.to_state() == full.to_state()
        assert rel.identity.public_key == full.identity.public_key


def test_rules_that_read_the_clock_use_the_message_time() -> None:
    """§8.3-3: a share that has expired since it was sent is still adopted (its ``created``
    stands in for now), though the same share arriving now would be refused."""
    pair, snaps = long_conversation()
    before_share = next(s for s in snaps[V] if s.length == 2)
    rel = restore(before_share, pair.vendor)
    share = pair.customer.history.entries()[2]
    late = restore(before_share, pair.vendor)
    with pytest.raises(ProtocolError, match="expiry"):
        late.receive(late.open(share.envelope, now=pair.now), now=pair.now)
    rel.adopt(share.envelope)
    assert share.msg_hash in rel.shares


def adopt_fails(rel: Relationship, envelope: bytes, code: Problem | None = None,
                **kw: Identity) -> ProtocolError:
    """Adopting ``envelope`` raises, and leaves ``rel`` exactly as it was."""
    state, length, head = rel.to_state(), len(rel.history), rel.history.head
    with pytest.raises(ProtocolError) as info:
        rel.adopt(envelope, **kw)
    if code is not None:
        assert info.value.code is code
    assert (rel.to_state(), len(rel.history), rel.history.head) == (state, length, head)
    return info.value


def test_what_cannot_be_applied_is_refused_and_changes_nothing() -> None:
    """§8.3-3: a message that cannot be applied stops the adoption there; the party keeps what
    it had (and treats the histories as a fork, §8.3-6)."""
    pair, snaps = long_conversation()
    theirs = pair.vendor.history.entries()
    s = snaps[C][1]  # after the offer and its acceptance
    rel = restore(s, pair.customer)

    # the vendor's message, but not after the last one we hold from it (prev)
    unlinked = sign_message(Receipt(ack=theirs[s.length - 1].msg_hash),
                            identity=pair.vendor_identity, recipient=rel.identity.public_key,
                            thread=rel.thread, prev=bytes(32), now=pair.now, msg_id=bytes(16))
    adopt_fails(rel, unlinked.envelope, Problem.CHAIN_BROKEN)
    # a message of another thread
    other = CustomerVendorPair(seed=1)
    other.agree()
    adopt_fails(rel, other.vendor.history.entries()[0].envelope, Problem.NO_RELATIONSHIP)
    # signed by a stranger, addressed to us
    stranger = Identity(bytes(range(1, 33)))
    forged = sign_message(Receipt(ack=theirs[s.length - 1].msg_hash), identity=stranger,
                          recipient=rel.identity.public_key, thread=rel.thread, prev=None,
                          now=pair.now, msg_id=bytes(16))  # fmt: skip
    adopt_fails(rel, forged.envelope, Problem.NOT_A_PARTY)
    # the vendor's message, but addressed to someone else
    misdirected = sign_message(Receipt(ack=theirs[s.length - 1].msg_hash),
                               identity=pair.vendor_identity, recipient=stranger.public_key,
                               thread=rel.thread, prev=rel.peer_head, now=pair.now,
                               msg_id=bytes(16))  # fmt: skip
    adopt_fails(rel, misdirected.envelope, Problem.WRONG_RECIPIENT)
    # an entry whose body was erased (§8.4) cannot be applied
    share = theirs[s.length]
    erased = open_envelope(share.envelope, now=0, check_time=False)
    adopt_fails(rel, erased.without_body().envelope)
    # a problem report is never part of a history
    problem = pair.problem(V, Problem.UNKNOWN_TERM, "no")
    adopt_fails(rel, problem.message.envelope)
    # a message already in the history
    adopt_fails(rel, theirs[0].envelope)
    # after all that, the right next entry still goes in
    rel.adopt(share.envelope)


def test_our_own_rotation_needs_the_new_identity() -> None:
    """§2.6, §8.3-3: adopting our own key.rotate moves us to the key it names, which only the
    caller can derive; without it (or with another) the rotation is not adopted."""
    pair, snaps = long_conversation()
    theirs = pair.vendor.history.entries()
    rotation = next(i for i, e in enumerate(theirs)
                    if open_envelope(e.envelope, now=0, check_time=False).type == "key.rotate")
    s = next(s for s in snaps[C] if s.length == rotation)
    rel = restore(s, pair.customer)
    adopt_fails(rel, theirs[rotation].envelope, Problem.BAD_KEY)
    adopt_fails(rel, theirs[rotation].envelope, Problem.BAD_KEY, rotated_to=s.identity)
    rel.adopt(theirs[rotation].envelope, rotated_to=pair.customer_identity)
    assert rel.identity == pair.customer_identity
    assert rel.generation == 1


def test_a_new_vendor_side_adopts_the_opening_offer_like_a_first_contact() -> None:
    """§2.1-2, §8.3-3: adopting the first message checks its key as receiving it would."""
    pair = CustomerVendorPair()
    pair.agree()
    fresh = Relationship(role=V, identity=pair.vendor_identity, thread=pair.thread)
    for entry in pair.customer.history.entries():
        fresh.adopt(entry.envelope)
    assert fresh.to_state() == pair.vendor.to_state()
    assert fresh.peer_key == pair.customer_identity.public_key
    assert compare(fresh.history.entries(), pair.vendor.history.entries()) is None


def test_withdrawing_every_share_lists_them_in_one_order_whatever_the_past() -> None:
    """§5.3.2-1: an empty ``shares`` withdraws every live share; the list recorded (and later
    confirmed by data.erased) is sorted, so a side rebuilt from its stored state and a side that
    never was record the same thing — found by the state machine's backup-and-adopt check."""
    pair = CustomerVendorPair()
    pair.agree()
    hashes: list[bytes] = []
    while len(hashes) < 2 or hashes == sorted(hashes):  # sealing is random: share until the
        share = pair.share({"email": f"{len(hashes)}@example.org"})  # order is not sorted
        hashes.append(pair.exchange(share).message.hash)
    stored = Relationship.from_state(pair.vendor.to_state(), identity=pair.vendor_identity,
                                     history=History(pair.vendor.history.entries()))
    withdraw = pair.customer_sends(DataWithdraw(agreement=pair.customer.agreement or b"",
                                                shares=()))  # fmt: skip
    stored.receive(withdraw.message, now=pair.now)
    expected = tuple(sorted(hashes))
    assert pair.vendor.pending_withdraws[withdraw.message.hash] == expected
    assert stored.pending_withdraws[withdraw.message.hash] == expected
    assert stored.to_state() == pair.vendor.to_state()
