"""What ``vrm data`` says when its request is kept in the outbox (found by s15-huntcli).

Before: every :class:`~vrmproto.client.Queued` read "could not reach the vendor: the data
request waits in the outbox", whatever stopped it: also a vendor that answered with what we
could not use (a receipt that does not verify), which was reached. Now the sentence says what
waits, why (the words ``vrm outbox`` uses) and what delivers it.
"""

from __future__ import annotations

from vrmproto.cli._errors import explain
from vrmproto.client import InvalidResponse, Queued, Unreachable


def test_a_queued_request_says_why_it_waits() -> None:
    down = Queued("the data request waits in the outbox",
                  cause=Unreachable("POST http://127.0.0.1:8745/vrm/inbox: connection refused"))
    said = explain(down)
    assert said.message == ("the data request waits in the outbox (the vendor could not be "
                            "reached: connection refused); `vrm outbox run` delivers it.")
    assert (said.kind, said.exit_code) == ("queued", 3)  # 1 before the s17 contract
    odd = Queued("the data request waits in the outbox",
                 cause=InvalidResponse("the receipt does not verify: bad_signature", status=200))
    said = explain(odd)
    assert "could not reach" not in said.message
    assert "could not be reached" not in said.message
    assert "the receipt does not verify" in said.message
