"""``vrm history --export`` into a directory that does not exist (found by s15-huntcli).

Before: "vrm: No such file or directory (/nonexistent/.x.json.4_rk8kqu.tmp)." — the name of
the temporary file the atomic write makes beside the one asked for, which the person never
named. Now: "cannot write /nonexistent/x.json: No such file or directory", exit 2.
"""

from __future__ import annotations

from pathlib import Path

from tests._cli_helpers import VendorHost, connected, fails, hosted, vrm

vendors = hosted("outfitters")


def test_an_export_that_cannot_be_written_names_the_file_asked_for(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = connected(tmp_path, vendors["outfitters"].url)
    target = tmp_path / "no such dir" / "wasatch.json"
    r = fails(vrm("history", "Wasatch", "--export", str(target), home=home), 2,
              f"cannot write {target}", "No such file or directory")  # fmt: skip
    assert ".tmp" not in r.stderr, r
    assert not target.parent.exists()
