"""A person's week with ``vrm`` (session 20): connecting again to a vendor whose counter-offer
is still open. The reason came with the counter-offer, earlier; the second ``vrm connect``
printed "↺ countered: " with nothing after the colon."""

from __future__ import annotations

from pathlib import Path

from tests._cli_helpers import VendorHost, fails, hosted, new_home, vrm

vendors = hosted("budget")


def test_connecting_again_while_a_counter_offer_is_open_shows_no_empty_reason(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = new_home(tmp_path)
    first = fails(vrm("connect", vendors["budget"].url, home=home), 1, "counter-offer is open")
    assert "↺ countered: we cannot agree to: vrm.no-third-party" in first.stdout, first
    again = fails(vrm("connect", vendors["budget"].url, home=home), 1, "counter-offer is open")
    assert "↺ countered" in again.stdout, again
    lines = [line.rstrip() for line in again.stdout.splitlines()]
    assert not [line for line in lines if line.endswith("countered:")], again
