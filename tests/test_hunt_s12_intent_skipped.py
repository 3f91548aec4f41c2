"""``vrm intent new --vendor URL`` says when it did not ask that vendor.

The agent leaves out of an intentcast a vendor the person ended a relationship with (and a
second URL of a vendor already asked), and says so in ``IntentcastResult.skipped``. Before,
``vrm intent new`` printed neither: the vendor named on the command line was not asked, and the
person read "No offers arrived before the deadline." as that vendor having nothing to offer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, new_home, ok, vendor_host, vrm


@pytest.fixture(scope="module")
def host() -> Iterator[VendorHost]:
    with vendor_host("outfitters") as h:
        yield h


def test_a_vendor_left_out_is_named_with_why(tmp_path: Path, host: VendorHost) -> None:
    home = new_home(tmp_path)
    url = host["outfitters"].url
    ok(vrm("connect", url, home=home))
    ok(vrm("end", "Wasatch Outfitters", home=home))
    args = ("intent", "new", "ski rental", "--deadline", "10s", "--no-discover", "--no-relays",
            "--vendor", url)  # fmt: skip
    out = ok(vrm(*args, home=home)).stdout
    assert f"{url} not asked: you ended your relationship with this vendor" in " ".join(
        out.split())
    cast = ok(vrm(*args, "--json", home=home)).json
    assert cast["skipped"] == [{"url": url, "reason": "you ended your relationship with this "
                                                      "vendor"}]  # fmt: skip
    assert cast["results"] == []
