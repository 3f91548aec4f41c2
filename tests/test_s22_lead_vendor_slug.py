"""A vendor whose name makes a slug past a file name's 255 bytes: ``vrm vendor serve`` failed
with "File name too long" (its default data directory is named after it; s22-embed's note).
The slug is now cut at 200 bytes and ends with a digest of the whole name."""

from __future__ import annotations

from pathlib import Path

from vrmproto.cli._vendor import default_vendor_dir, vendor_slug


def test_a_long_name_makes_a_directory_the_file_system_takes(tmp_path: Path) -> None:
    name = "Éléphant " * 60  # 540 characters, ~660 bytes
    directory = default_vendor_dir(tmp_path, name)
    assert len(directory.name.encode()) <= 200
    directory.mkdir(parents=True)  # was OSError: File name too long
    assert directory.name.startswith("éléphant-éléphant")


def test_long_names_that_differ_past_the_cut_stay_apart() -> None:
    a, b = "shop " * 100 + "north", "shop " * 100 + "south"
    assert vendor_slug(a) != vendor_slug(b)
    assert vendor_slug("Wasatch Outfitters") == "wasatch-outfitters"  # short names unchanged
