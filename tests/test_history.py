"""The hash-linked history (spec §8; vrmproto/_history.py)."""

from __future__ import annotations

import dataclasses

import pytest

from vrmproto import (
    DATA_FORMAT,
    DataRequest,
    Entry,
    History,
    Identity,
    Problem,
    ProtocolError,
    Receipt,
    Relationship,
    Role,
    TermRef,
    TermsOffer,
    ValidationError,
    compare,
    decode,
    latest,
    open_envelope,
    sha256,
    verify_entries,
)
from vrmproto._history import GENESIS, link
from vrmproto.testing.pair import CustomerVendorPair

C, V = Role.CUSTOMER, Role.VENDOR


def conversation() -> CustomerVendorPair:
    """A few messages each way, including a data share and receipts."""
    pair = CustomerVendorPair()
    pair.agree()
    pair.exchange(pair.share({"email": "ada@example.org"}))
    pair.exchange(DataRequest(agreement=pair.customer.agreement or b"", format=DATA_FORMAT))
    pair.exchange(pair.data_return(()), by=V)
    return pair


def test_links_chain_every_entry() -> None:
    """§8.2-1: link_i = SHA-256(context ‖ link_{i−1} ‖ msg_hash_i), link_{−1} = 32 zero bytes."""
    entries = conversation().customer.history.entries()
    assert len(entries) == 8
    prev = GENESIS
    for i, e in enumerate(entries):
        assert e.index == i
        assert e.link == link(prev, e.msg_hash)
        assert e.link == sha256(b"vrmproto/v1/history\x00" + prev + e.msg_hash)
        assert e.msg_hash == open_envelope(e.envelope, now=0, check_time=False).hash
        prev = e.link
    # offer, accept, share, receipt, request, receipt, return, receipt
    assert [e.outgoing for e in entries] == [True, False, True, False, True, False, False, True]


def test_both_sides_log_the_same_links_in_opposite_directions() -> None:
    pair = conversation()
    ours, theirs = pair.customer.history.entries(), pair.vendor.history.entries()
    assert [e.link for e in ours] == [e.link for e in theirs]
    assert [e.envelope for e in ours] == [e.envelope for e in theirs]
    assert all(a.outgoing != b.outgoing for a, b in zip(ours, theirs, strict=True))


def test_verify_entries_accepts_a_good_log() -> None:
    verify_entries(conversation().customer.history.entries())
    verify_entries(())


def test_verify_entries_finds_tampering() -> None:
    """§8.2: a changed envelope, a reordering and a gap are each an error."""
    entries = list(conversation().customer.history.entries())
    env = bytearray(entries[3].envelope)
    env[len(env) // 2] ^= 1
    cases = {
        "tampered envelope": [*entries[:3], dataclasses.replace(entries[3], envelope=bytes(env)),
                              *entries[4:]],
        "another message's envelope": [
            *entries[:3], dataclasses.replace(entries[3], envelope=entries[4].envelope),
            *entries[4:]],
        "reordered": [entries[0], entries[2], entries[1], *entries[3:]],
        "reordered, reindexed": [
            entries[0], dataclasses.replace(entries[2], index=1),
            dataclasses.replace(entries[1], index=2), *entries[3:]],
        "gap": [*entries[:4], *entries[5:]],
        "gap, reindexed": [*entries[:4],
                           *(dataclasses.replace(e, index=e.index - 1) for e in entries[5:])],
        "wrong link": [*entries[:2], dataclasses.replace(entries[2], link=bytes(32)),
                       *entries[3:]],
        "starts late": entries[1:],
    }
    for what, log in cases.items():
        with pytest.raises(ProtocolError):
            verify_entries(log)
        assert what


def test_compare() -> None:
    """§8.3-1: identical → None; a prefix → behind/ahead; a different message → fork."""
    full = conversation().customer.history.entries()
    assert compare(full, full) is None
    assert compare((), ()) is None
    behind = compare(full[:5], full)
    assert behind is not None
    assert (behind.kind, behind.index, behind.ours, behind.theirs) == ("behind", 5, None, full[5])
    ahead = compare(full, full[:2])
    assert ahead is not None
    assert (ahead.kind, ahead.index) == ("ahead", 2)
    empty = compare((), full)
    assert empty is not None
    assert (empty.kind, empty.index) == ("behind", 0)

    other = CustomerVendorPair()
    other.agree()
    other.exchange(other.share({"email": "someone@else.example"}))  # differs from entry 2 on
    assert other.customer.history.entries()[:2] == full[:2]  # the same agreement
    forked = other.customer.history.entries()
    for a, b in ((full, forked), (full[:3], forked), (full, forked[:3])):
        d = compare(a, b)
        assert d is not None
        assert (d.kind, d.index) == ("fork", 2)
        assert d.ours == a[2]
        assert d.theirs == b[2]


def test_compare_finds_the_first_difference_anywhere() -> None:
    full = list(conversation().customer.history.entries())
    for k in range(len(full)):
        msg_hash = sha256(b"fork %d" % k)
        prev = full[k - 1].link if k else GENESIS
        chain = [*full[:k], Entry(k, msg_hash, link(prev, msg_hash), b"", outgoing=True)]
        d = compare(full, chain)
        assert d is not None
        assert (d.kind, d.index) == ("fork", k)


def test_erasure_keeps_the_log_verifiable() -> None:
    """§8.4: replacing a body with nothing leaves links and signatures intact."""
    pair = conversation()
    history = pair.vendor.history
    share = history.entries()[2]
    msg = open_envelope(share.envelope, now=0, check_time=False)
    assert msg.type == "data.share"
    before = [e.link for e in history.entries()]
    history.erase(share.msg_hash, msg.without_body().envelope)
    after = history.entries()
    assert [e.link for e in after] == before
    assert after[2].envelope != share.envelope
    assert decode(after[2].envelope).keys() == {"hdr", "sig"}
    assert msg.body.sealed not in after[2].envelope
    verify_entries(after)
    with pytest.raises(KeyError):
        history.erase(bytes(32), b"")


def test_resume_appends_like_a_full_history() -> None:
    """§8.2-4: a History that knows only the head appends the very same entries."""
    pair = conversation()
    full = History(pair.customer.history.entries())
    assert full.head == pair.customer.history.head
    resumed = History.resume(len(full), full.head)
    assert len(resumed) == len(full)
    assert resumed.head == full.head
    nxt = pair.sign(C, pair.address_update({"city": "Park City"})).message
    a = full.append(nxt.hash, nxt.envelope, outgoing=True)
    b = resumed.append(nxt.hash, nxt.envelope, outgoing=True)
    assert a == b
    assert a.index == 8
    assert resumed.head == full.head == a.link
    assert resumed[8] == a
    assert resumed.entries() == (a,)
    assert History.resume(0, b"ignored").head == GENESIS
    assert resumed.index_of(nxt.hash) == full.index_of(nxt.hash) == 8
    first = full[0].msg_hash
    assert full.index_of(first) == 0
    assert resumed.index_of(first) is None  # not held in memory
    assert full.index_of(b"\0" * 32) is None


def test_history_refuses_bad_appends() -> None:
    entries = conversation().customer.history.entries()
    h = History(entries[:3])
    with pytest.raises(ValidationError):  # the same message twice
        h.append(entries[1].msg_hash, entries[1].envelope, outgoing=False)
    with pytest.raises(ValidationError):  # entries that do not link
        History([entries[0], entries[2]])
    assert entries[2].msg_hash in h
    assert bytes(32) not in h
    assert h[-1] == entries[2]
    assert [e.index for e in h] == [0, 1, 2]
    nxt = h.next_entry(entries[3].msg_hash, entries[3].envelope, outgoing=entries[3].outgoing)
    assert nxt == entries[3]
    assert len(h) == 3  # next_entry changes nothing


def test_a_crossing_is_told_apart_from_a_fork() -> None:
    """§8.3-6: messages sent at the same time cross; both are accepted, the facts agree, and
    the logs hold the same messages in another order — a fork that is not a fault."""
    pair = CustomerVendorPair()
    pair.agree()
    accept = pair.customer.peer_head or b""
    pair.customer_sends(DataRequest(agreement=pair.customer.agreement or b"",
                                    format=DATA_FORMAT))
    from_vendor = pair.sign(V, pair.data_return(()))
    from_customer = pair.sign(C, Receipt(ack=accept))
    pair.deliver(from_vendor.message.envelope, to=C)  # both accepted...
    pair.deliver(from_customer.message.envelope, to=V)
    c, v = pair.customer, pair.vendor
    assert c.to_state() != v.to_state()  # (each side's own view: heads, receipts owed)
    assert (c.state, c.agreement, c.shares, c.pending_requests) == (
        v.state, v.agreement, v.shares, v.pending_requests)
    ours, theirs = c.history.entries(), v.history.entries()
    d = compare(ours, theirs)
    assert d is not None
    assert (d.kind, d.index) == ("crossing", 3)
    assert {e.msg_hash for e in ours[3:]} == {e.msg_hash for e in theirs[3:]}
    assert not pair.histories_equal()


def test_every_message_must_come_from_a_party_of_the_thread() -> None:
    """§8.3-2: a stranger's message, even correctly linked in, makes the log unacceptable."""
    pair = conversation()
    ours = list(pair.customer.history.entries())
    stranger = Identity(bytes([7]) * 32)
    rel = Relationship(role=Role.CUSTOMER, identity=stranger, thread=pair.customer.thread,
                       peer_key=pair.vendor.identity.public_key,
                       peer_enc_key=pair.vendor.identity.enc_public_key)
    forged = rel.send(TermsOffer(terms=(TermRef.of(latest("vrm.no-tracking")),),
                                 enc_key=stranger.enc_public_key), now=1, msg_id=bytes(16))
    log = History(ours)
    log.append(forged.message.hash, forged.message.envelope, outgoing=False)
    verify_entries(ours)
    with pytest.raises(ProtocolError) as info:
        verify_entries(log.entries())
    assert info.value.code is Problem.NOT_A_PARTY


def test_a_page_of_an_export_verifies_from_its_start_link() -> None:
    """§12.5: a later page is checked from the link of the entry before it."""
    entries = list(conversation().customer.history.entries())
    first = entries[:3]
    page = entries[3:]
    opening = open_envelope(entries[0].envelope, now=0, check_time=False)
    assert opening.recipient is not None
    keys = [opening.sender, opening.recipient]
    verify_entries(page, start_link=first[-1].link, parties=keys)
    with pytest.raises(ProtocolError):
        verify_entries(page, start_link=GENESIS, parties=keys)


def test_keys_named_by_a_rotation_become_parties() -> None:
    """§2.6, §8.3-2: after a key.rotate, the new key's messages belong to the log."""
    pair = CustomerVendorPair()
    pair.agree()
    pair.rotate_customer()
    pair.exchange(pair.share({"email": "new@example.org"}))
    verify_entries(pair.customer.history.entries())
    verify_entries(pair.vendor.history.entries())
