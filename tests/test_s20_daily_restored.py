"""A person's week with ``vrm`` (session 20): a data directory brought back from a backup (or
a copy of it that sent meanwhile) is behind the vendor; the next message is refused with
``chain_broken`` (§4.5-6, §11.11), and ``vrm`` said only "prev does not link to the last
message of this sender here". It now says what happened and what to do: ``vrm history VENDOR
--reconcile`` (§8.3-3), then send again — which the test does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests._cli_helpers import VendorHost, connected, fails, hosted, ok, vrm

vendors = hosted("outfitters", "lodge")

SHARE = ("share", "Wasatch Outfitters", "email=doc@example.org", "--purpose",
         "contracted-service", "--expires", "1d")  # fmt: skip


def _behind(tmp_path: Path, vendors: VendorHost) -> Path:
    """A data directory whose relationships with both vendors are one share behind theirs: a
    backup taken before its copy shared with each."""
    home = connected(tmp_path, vendors["outfitters"].url)
    ok(vrm("connect", vendors["lodge"].url, home=home))
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)
    ok(vrm(*SHARE, home=copy))
    ok(vrm("share", "Silver Star Lodge", "name=Doc", "--purpose", "contracted-service",
           home=copy))  # fmt: skip
    return home


def test_a_share_refused_because_the_history_is_behind_says_to_reconcile(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = _behind(tmp_path, vendors)
    refused = fails(vrm(*SHARE, home=home), 1, "chain_broken", "restored from a backup",
                    "--reconcile")  # fmt: skip
    assert "vrm history VENDOR --reconcile" in refused.stderr, refused
    ok(vrm("history", "Wasatch Outfitters", "--reconcile", home=home))
    ok(vrm(*SHARE, home=home))  # as it said: then send again


def test_an_address_update_names_each_vendor_the_history_is_behind(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = _behind(tmp_path, vendors)
    ok(vrm("history", "Silver Star Lodge", "--reconcile", home=home))
    r = fails(vrm("address", "set", "city=Ogden", home=home), 1, "Wasatch Outfitters")
    assert "Wasatch Outfitters: the vendor may hold messages your history lacks" in r.stdout, r
    assert "vrm history 'Wasatch Outfitters' --reconcile" in r.stdout, r
    assert "Silver Star Lodge: the vendor may" not in r.stdout, r  # reconciled: it took it
