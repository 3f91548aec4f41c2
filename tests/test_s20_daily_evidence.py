"""A person's week with ``vrm`` (session 20): showing someone the evidence. ``vrm verify`` of a
file that does not verify cited the clause twice ("… (§8.3-2) (§8.3-2)"): the error's text
already ends with it. Once now."""

from __future__ import annotations

import json
from pathlib import Path

from tests._cli_helpers import VendorHost, connected, fails, hosted, ok, vrm

vendors = hosted("outfitters")


def test_evidence_for_another_thread_is_refused_citing_its_clause_once(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = connected(tmp_path, vendors["outfitters"].url)
    evidence = tmp_path / "evidence.json"
    ok(vrm("history", "Wasatch Outfitters", "--export", str(evidence), home=home))
    doc = json.loads(evidence.read_text())
    doc["thread"] = "00" * 16  # the file names a thread its entries are not of
    evidence.write_text(json.dumps(doc))
    r = fails(vrm("verify", str(evidence), home=None), 1, "another thread", "(§8.3-2)")
    assert r.stderr.count("§8.3-2") == 1, r
