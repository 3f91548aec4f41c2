"""A person's week with ``vrm`` (session 20): the Park City intentcast. The offers table says
which of your terms a vendor's offer does not accept ("not delete-after"); taking such an offer
up proffers your terms as they are, and the vendor rejected them with nothing said before it
was sent. ``vrm intent accept`` now says so first (your terms still go as they are).
"""

from __future__ import annotations

from pathlib import Path

from tests._cli_helpers import VendorHost, fails, hosted, new_home, ok, vrm

vendors = hosted("hertz", "avis")


def test_taking_up_an_offer_that_does_not_accept_your_terms_says_so_first(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = new_home(tmp_path)
    ok(vrm("intent", "new", "4-wheel-drive SUV rental", "--no-discover", "--no-relays",
           "--deadline", "3s", "--vendor", vendors["hertz"].url, "--vendor",
           vendors["avis"].url, home=home))  # fmt: skip
    intent = ok(vrm("intent", "list", "--json", home=home)).json["intents"][0]["id"]
    offers = {o["vendor"]: o for o in ok(vrm("intent", "show", intent, "--json",
                                              home=home)).json["offers"]}  # fmt: skip
    assert offers["Hertz Wasatch"]["missing_terms"] == ["vrm.delete-after"], offers
    hertz = fails(vrm("intent", "accept", offers["Hertz Wasatch"]["id"], home=home), 1,
                  "rejected")  # fmt: skip
    warning = "Hertz Wasatch's offer does not accept your terms vrm.delete-after"
    assert warning in " ".join(hertz.stdout.split()), hertz
    said = vrm("intent", "accept", offers["Hertz Wasatch"]["id"], "--json", home=home)
    assert "does not accept your terms" in said.stderr, said  # stdout stays JSON
    assert said.json["vendor"] == "Hertz Wasatch", said
    avis = ok(vrm("intent", "accept", offers["Avis Park City"]["id"], home=home))
    assert "does not accept" not in avis.stdout, avis
