"""An entry whose envelope does not open is reported with its code and clause once (§8.2-3):
``verify_entries`` wrapped the inner error's whole text, code and clause included, and cited
both again — ``vrm verify`` printed "envelope_mismatch: entry 2: envelope_mismatch: …
(§3.4-4) (§3.4-4)" (found by s20-daily)."""

from __future__ import annotations

import dataclasses

import pytest

from vrmproto import ProtocolError
from vrmproto._history import verify_entries
from vrmproto.testing.pair import CustomerVendorPair


def test_an_entry_that_does_not_open_cites_its_clause_once() -> None:
    pair = CustomerVendorPair()
    pair.agree()
    pair.exchange(pair.share({"email": "ada@example.org"}))
    entries = list(pair.customer.history.entries())
    env = bytearray(entries[2].envelope)
    env[-1] ^= 1  # the signature's last byte
    log = [*entries[:2], dataclasses.replace(entries[2], envelope=bytes(env)), *entries[3:]]
    with pytest.raises(ProtocolError) as caught:
        verify_entries(log)
    text, clause = str(caught.value), caught.value.clause
    assert clause
    assert text.count(clause) == 1, text
    assert text.count(caught.value.code.value) == 1, text
    assert text.startswith(f"{caught.value.code.value}: entry 2: ")
