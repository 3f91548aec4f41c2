"""CustomerVendorPair as a builder meets it (vrmproto/testing/pair.py)."""

from __future__ import annotations

from vrmproto.testing.pair import CustomerVendorPair


def test_a_key_rotation_lasts_the_pairs_lifetime_like_every_message_it_sends() -> None:
    """``lifetime_ms`` is "how long the messages the pair sends stay valid": the key.rotate of
    :meth:`rotate_customer` too, so a test that lets it expire sees it refused (§4.4-2)."""
    pair = CustomerVendorPair(lifetime_ms=60_000)
    pair.agree()
    header = pair.rotate_customer().message.header
    assert header.expires - header.created == 60_000
