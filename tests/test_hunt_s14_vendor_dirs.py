"""Two vendors on one machine, each with its default data directory (``$VRM_HOME/vendors/<slug>``).

Before: the slug kept only the ASCII letters and digits of the vendor's name, so every name in
another script ("日本の店", "Магазин", "متجر") became ``vendor``, and "Café Zoë" and "Café Zoé"
both ``caf-zo``. Two such vendors served from one directory: a vendor whose file gives no seed
takes the directory's, so the second one had the first one's key — customers saw one identity
for two businesses — and its database, with the first one's customers and their shared data
(in ``vrm vendor events``, and in the CRM the bridge feeds). Run at the same time, the second was
refused as "another vrm vendor serve is serving from …/vendors/vendor/vendor.db".
"""

from __future__ import annotations

from pathlib import Path

from tests._cli_helpers import EXAMPLES, VendorProcess
from vrmproto.cli._vendor import claim_vendor_dir, default_vendor_dir, vendor_slug


def test_a_name_keeps_the_letters_of_its_script() -> None:
    assert vendor_slug("Wasatch Outfitters") == "wasatch-outfitters"  # as before
    assert vendor_slug("日本の店") == "日本の店"
    assert vendor_slug("Магазин у дома") == "магазин-у-дома"
    assert vendor_slug("Café Zoë") != vendor_slug("Café Zoé")
    assert vendor_slug("../..") == "vendor"
    assert "/" not in vendor_slug("a/b\\c")
    assert "." not in vendor_slug("../x")


def test_a_directory_an_earlier_vrm_made_is_still_used_while_it_is_no_other_vendors(
    tmp_path: Path,
) -> None:
    legacy = tmp_path / "vendors" / "vendor"
    legacy.mkdir(parents=True)
    assert default_vendor_dir(tmp_path, "日本の店") == legacy
    claim_vendor_dir(legacy, "日本の店")
    assert default_vendor_dir(tmp_path, "日本の店") == legacy
    assert default_vendor_dir(tmp_path, "中国商店") == tmp_path / "vendors" / "中国商店"
    assert default_vendor_dir(tmp_path, "Avis") == tmp_path / "vendors" / "avis"


def _unseeded(tmp_path: Path, name: str) -> Path:
    """The outfitters' file under another name, without its seed: the directory gives one."""
    text = (EXAMPLES / "vendors" / "outfitters.toml").read_text("utf-8")
    lines = [f'name = "{name}"' if line.startswith("name =") else line
             for line in text.splitlines() if not line.startswith("seed =")]  # fmt: skip
    path = tmp_path / f"{len(list(tmp_path.iterdir()))}.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_two_vendors_named_in_other_scripts_have_their_own_keys(tmp_path: Path) -> None:
    home = tmp_path / "home"
    files = tmp_path / "files"
    files.mkdir()
    keys = []
    for name in ("日本の店", "Магазин", "Café Zoë", "Café Zoé"):
        vendor = VendorProcess("--config", str(_unseeded(files, name)), "--no-advertise",
                               home=home)  # fmt: skip
        try:
            keys.append(vendor.info["key"])
        finally:
            vendor.stop()
    assert len(set(keys)) == 4, keys
    assert sorted(p.name for p in (home / "vendors").iterdir()) == sorted(
        ["日本の店", "магазин", "café-zoë", "café-zoé"])  # fmt: skip
