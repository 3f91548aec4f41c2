"""``vrm doctor``'s clock line, against a vendor on the same computer (found by s15-huntcli).

Before: "clock vs Avis Park City: +1 s" about as often as "+0 s" for a vendor reading the very
same clock: a ``Date`` header names a whole second, and the line compared our time with the
start of that second. Now it compares with its middle and says "within 1 s" under a second.
"""

from __future__ import annotations

from pathlib import Path

from tests._cli_helpers import VendorHost, connected, hosted, ok, vrm

host = hosted("avis")


def test_the_same_clock_reads_within_a_second(tmp_path: Path, host: VendorHost) -> None:
    home = connected(tmp_path, host["avis"].url)
    for _ in range(3):
        found = {c["check"]: c for c in ok(vrm("doctor", "--json", home=home)).json["checks"]}
        clock = found["clock vs Avis Park City"]
        assert clock["status"] == "ok"
        assert clock["detail"] == "within 1 s (the limit is ±120 s)", clock
