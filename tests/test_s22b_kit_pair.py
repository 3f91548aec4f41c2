"""CustomerVendorPair as a builder meets it (vrmproto/testing/pair.py)."""

from __future__ import annotations

import pytest

from vrmproto import Problem, ProtocolError
from vrmproto.testing.pair import CustomerVendorPair


def test_a_key_rotation_lasts_the_pairs_lifetime_like_every_message_it_sends() -> None:
    """``lifetime_ms`` is "how long the messages the pair sends stay valid": the key.rotate of
    :meth:`rotate_customer` too, so a test that lets it expire sees it refused (§4.4-2)."""
    pair = CustomerVendorPair(lifetime_ms=60_000)
    pair.agree()
    header = pair.rotate_customer().message.header
    assert header.expires - header.created == 60_000


def _snapshot(pair: CustomerVendorPair) -> tuple[object, ...]:
    c, v = pair.customer, pair.vendor
    return (len(c.history), c.history.head, c.to_state(compact=True), c.identity.public_key,
            len(v.history), v.history.head, v.to_state(compact=True))  # fmt: skip


def test_a_message_the_receiver_refuses_leaves_the_sender_as_it_was() -> None:
    """``send``: "a refused call leaves both relationships unchanged". A message the vendor
    refuses never joined the relationship (§8.1-5): before, the customer kept it in its history
    and state, so the two histories parted and every later message was refused (its ``prev``
    named a message the vendor never stored)."""
    pair = CustomerVendorPair()
    pair.agree()
    before = _snapshot(pair)
    taken = (1).to_bytes(16, "big")  # the offer's id: the vendor's replay table refuses it
    with pytest.raises(ProtocolError) as refused:
        pair.customer_sends(pair.share({"email": "a@b.c"}), msg_id=taken)
    assert refused.value.code is Problem.ID_CONFLICT
    assert _snapshot(pair) == before
    assert pair.histories_equal()
    pair.lifetime_ms = 400 * 86_400_000  # longer than the vendor allows (§4.4-2)
    with pytest.raises(ProtocolError):
        pair.customer_sends(pair.share({"email": "a@b.c"}))
    assert _snapshot(pair) == before
    pair.lifetime_ms = 60_000
    got = pair.customer_sends(pair.share({"email": "a@b.c"}))  # the flow goes on
    assert got.content is not None
    assert pair.histories_equal()


def test_a_key_rotation_the_receiver_refuses_leaves_the_old_key() -> None:
    pair = CustomerVendorPair()
    pair.agree()
    before = _snapshot(pair)
    pair.lifetime_ms = 400 * 86_400_000
    with pytest.raises(ProtocolError):
        pair.rotate_customer()
    assert _snapshot(pair) == before
    pair.lifetime_ms = 60_000
    pair.rotate_customer()
    assert pair.customer.generation == 1
    assert pair.histories_equal()
