"""``vrm doctor``'s clock line, against a vendor on the same computer (found by s15-huntcli).

Before: "clock vs Avis Park City: +1 s" about as often as "+0 s" for a vendor reading the very
same clock: a ``Date`` header names a whole second, and the line compared our time with the
start of that second. Now it compares with its middle and says "within 1 s" under a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, new_home, ok, vendor_host, vrm


@pytest.fixture(scope="module")
def host() -> Iterator[VendorHost]:
    with vendor_host("avis") as h:
        yield h


def test_the_same_clock_reads_within_a_second(tmp_path: Path, host: VendorHost) -> None:
    home = new_home(tmp_path)
    ok(vrm("connect", host["avis"].url, home=home))
    for _ in range(3):
        found = {c["check"]: c for c in ok(vrm("doctor", "--json", home=home)).json["checks"]}
        clock = found["clock vs Avis Park City"]
        assert clock["status"] == "ok"
        assert clock["detail"] == "within 1 s (the limit is ±120 s)", clock
