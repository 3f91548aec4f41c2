"""What a person and a vendor's operator met using ``vrm`` every day (session 18: the rough
edges left by session 17, then the README walkthrough on loopback), each fixed with the test
that shows it."""

from __future__ import annotations

from pathlib import Path

from tests._cli_helpers import new_home, ok, vendor_host, vrm
from tests._ports import closed_port


def test_an_intentcast_says_each_decline_and_failure_once_on_a_pipe(tmp_path: Path) -> None:
    """Off a terminal the progress lines say each vendor's outcome as it comes; the summary
    after them said every decline (and every vendor not reached) a second time."""
    home = new_home(tmp_path)
    down = f"http://127.0.0.1:{closed_port()}"
    with vendor_host("avis", "outfitters") as host:
        r = ok(vrm("intent", "new", "4-wheel-drive SUV rental", "--no-discover", "--no-relays",
                   "--deadline", "3s", "--vendor", host["avis"].url, "--vendor",
                   host["outfitters"].url, "--vendor", down, home=home))  # fmt: skip
    assert r.stdout.count("nothing we offer matches this request") == 1, r
    assert "Wasatch Outfitters declined: nothing we offer" in r.stdout, r
    assert r.stdout.count("127.0.0.1:" + down.rsplit(":", 1)[1]) == 1, r
    assert "Avis Park City" in r.stdout, r
