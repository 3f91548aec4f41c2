"""What a person met using ``vrm`` for a day (README walkthrough, examples/vendors on
loopback), each fixed with the test that shows it."""

from __future__ import annotations

import os

from vrmproto._messages import AddressUpdate
from vrmproto.cli._history_bodies import summary


def test_history_says_what_an_address_update_is() -> None:
    """``vrm history`` showed an address update as "AddressUpdate" (the class's name) where
    every other message says what it is in words."""
    agreement = os.urandom(32)
    said = summary(AddressUpdate(agreement=agreement, sealed=b"\x00" * 64))
    assert said == f"new contact details, under agreement {agreement.hex()[:12]} (sealed)"
