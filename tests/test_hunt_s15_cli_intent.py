"""Taking up an intentcast's offer from a vendor you already have a relationship with (found
by s15-huntcli).

Before: ``vrm intent accept ID`` for Budget's offer, when the person had agreed with Budget
earlier on Budget's counter-terms, printed "already connected" and then "✓ accepted — agreement
… on your terms: …" (they were the vendor's) and exited 0: as if the offer had been taken up,
though nothing was sent and Budget never learnt of it (one relationship per vendor,
``Agent.take_offer`` answers the live one). Now the agreement reads "on the terms agreed then",
and the command ends with exit 1 saying the offer was not taken up and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests._cli_helpers import (
    VendorHost,
    fails,
    history_length,
    hosted,
    new_home,
    ok,
    vendor_host,
    vrm,
)

vendors = hosted("budget")


def the_offer(home: Path, url: str, *args: str) -> dict[str, Any]:
    """The one offer an intentcast to the vendor at ``url`` alone brought."""
    ok(vrm("intent", "new", "4-wheel-drive SUV rental", *args, "--vendor", url, "--no-discover",
           "--no-relays", "--deadline", "10s", home=home))  # fmt: skip
    (intent,) = ok(vrm("intent", "list", "--json", home=home)).json["intents"]
    (offer,) = ok(vrm("intent", "show", intent["id"], "--json", home=home)).json["offers"]
    return offer


def test_an_offer_from_a_vendor_already_related_is_not_said_taken_up(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = new_home(tmp_path)
    url = vendors["budget"].url
    said = ok(vrm("connect", url, "--accept-counter", home=home)).stdout
    assert "on the vendor's terms" in said
    offer = the_offer(home, url, "--where", "Park City, UT")
    before = history_length("Budget", home)
    r = fails(vrm("intent", "accept", offer["id"], home=home), 1, "not taken up",
              "already have a relationship with Budget Salt Lake", "vrm end")  # fmt: skip
    assert "on your terms" not in r.stdout, r
    assert "on the terms agreed then" in r.stdout, r
    assert history_length("Budget", home) == before


def test_an_intentcast_every_vendor_declined_is_not_said_to_have_timed_out(
    tmp_path: Path, vendors: VendorHost
) -> None:
    """Before: "No offers arrived before the deadline." when the vendor had declined at once."""
    home = new_home(tmp_path)
    r = ok(vrm("intent", "new", "a sailing boat", "--max-price", "1USD", "--vendor",
               vendors["budget"].url, "--no-discover", "--no-relays", "--deadline", "10s",
               home=home))  # fmt: skip
    assert "Budget Salt Lake declined" in r.stdout, r
    assert "No offers: every vendor that received it declined." in r.stdout, r
    assert "before the deadline" not in r.stdout, r


def test_taking_up_the_same_offer_again_is_not_said_to_have_failed(tmp_path: Path) -> None:
    """The relationship that exists is the one this very offer was taken up in: exit 0, and
    no "not taken up … was not told" (its terms.offer names the offer, §5.2.1)."""
    home = new_home(tmp_path)
    with vendor_host("avis") as host:
        offer = the_offer(home, host["avis"].url)
        ok(vrm("intent", "accept", offer["id"], home=home))
        again = ok(vrm("intent", "accept", offer["id"], home=home))
        assert "not taken up" not in again.stderr, again
