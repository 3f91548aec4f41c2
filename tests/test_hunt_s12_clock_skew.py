"""A person whose clock is ahead of the vendor's by more than ``max_clock_skew_ms`` (§4.5-4).

The vendor answers ``clock_skew`` (may be retried, §9.2-3): the message waits, and goes once the
vendor's clock has caught up. Before, ``vrm connect`` said "the vendor could not be reached",
and ``vrm outbox`` "the vendor could not be reached: refused by the vendor (clock_skew…)": the
person looked for a network fault while the vendor was up and the fault was their own clock.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, fails, new_home, ok, vrm
from vrmproto import Identity
from vrmproto.server import Endpoint, ReferencePolicy, serve
from vrmproto.store import MemoryStore


@pytest.mark.parametrize("behind_ms", [200_000, 400_000])
def test_a_clock_ahead_of_the_vendors_is_named_not_the_network(
    tmp_path: Path, behind_ms: int
) -> None:
    """The vendor's clock is behind the person's by more than the skew allowed (120 s): its
    ``clock_skew`` problem is read; or, past its problems' lifetime (300 s), is not."""
    host = VendorHost()
    try:
        ep = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name="Slow Clock",
                      clock=lambda: time.time_ns() // 1_000_000 - behind_ms,
                      policy=ReferencePolicy(accepts_terms=("vrm.no-tracking",)))  # fmt: skip
        server = host.call(serve(ep, "127.0.0.1", 0))
        home = new_home(tmp_path)
        # the offer waits in the outbox: exit 3 (the s17 exit-code contract; it was 0)
        said = " ".join(fails(vrm("connect", f"http://127.0.0.1:{server.port}", home=home), 3)
                        .stdout.split())  # fmt: skip
        waits = " ".join(ok(vrm("outbox", home=home)).stdout.split())
        if behind_ms < 300_000:
            assert "queued: your clock is ahead of the vendor's (clock_skew)" in said
            assert "could not be reached" not in said
            assert "could not be reached" not in waits
            assert "clock_skew" in waits
        else:
            assert "its clock and yours may differ (`vrm doctor` compares them)" in said
        host.call(server.close())
    finally:
        host.close()


def test_a_vendor_document_from_the_future_points_at_the_clocks(tmp_path: Path) -> None:
    """The vendor's clock is ahead by more than 120 s: its discovery document is refused
    (§13.1-6, ``expired``), and the sentence says whose clocks to compare."""
    host = VendorHost()
    try:
        ep = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name="Fast Clock",
                      clock=lambda: time.time_ns() // 1_000_000 + 400_000,
                      policy=ReferencePolicy(accepts_terms=("vrm.no-tracking",)))  # fmt: skip
        server = host.call(serve(ep, "127.0.0.1", 0))
        r = fails(vrm("connect", f"http://127.0.0.1:{server.port}", home=new_home(tmp_path)), 1,
                  "clock")  # fmt: skip
        assert "the vendor's clock and yours may differ (`vrm doctor` compares them)" in r.stderr
        host.call(server.close())
    finally:
        host.close()


def test_why_a_message_waits_names_what_happened() -> None:
    """Only a failure to connect reads "could not be reached"; a message behind another one
    was not tried at all, and an answer that could not be taken was an answer."""
    from vrmproto._errors import TransportError  # noqa: PLC0415
    from vrmproto.cli._output import waits_because  # noqa: PLC0415
    from vrmproto.client import Unreachable  # noqa: PLC0415

    behind = TransportError("queued behind earlier undelivered messages")
    assert waits_because(behind) == "queued behind earlier undelivered messages"
    assert waits_because(Unreachable("http://h/vrm/inbox: connection refused")) == \
        "the vendor could not be reached: connection refused"
    assert waits_because("peer refused: rate_limited: slow down") == \
        "the vendor answered rate_limited: not now"
    odd = waits_because("POST http://h/vrm/inbox: the server closed the connection")
    assert odd.startswith("not delivered yet: ")
