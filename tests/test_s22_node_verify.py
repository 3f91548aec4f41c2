"""``vrm verify FILE`` on files someone else made (session 22): a file that is not evidence at
all is a usage error (2, "not an evidence file"), never a crash that reads as "does not verify"
(1) with a Python exception's name — deep JSON nesting was a ``RecursionError``, an ``entries``
that is not a list a ``TypeError``, an index of 1e999 an ``OverflowError``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, connected, fails, hosted, ok, vrm
from vrmproto._history import GENESIS, link

_ENTRY = {"index": 0, "hash": "00", "link": "00", "envelope": "AAAA"}


def _doc(**fields: object) -> str:
    return json.dumps({"format": "vrm-evidence/1", "thread": "00" * 16, **fields})


_HOSTILE = {
    "deep": "[" * 100_000 + "]" * 100_000,
    "deep-entries": _doc(entries="X").replace('"X"', "[" * 100_000 + "]" * 100_000),
    "entries-int": _doc(entries=5),
    "entries-dict": _doc(entries={"index": 0}),
    "index-inf": _doc(entries=[_ENTRY]).replace('"index": 0', '"index": 1e999'),
    "index-float": _doc(entries=[{**_ENTRY, "index": 0.5}]),
    "index-bool": _doc(entries=[{**_ENTRY, "index": False}]),
    "hash-int": _doc(entries=[{**_ENTRY, "hash": 0}]),
    "entry-list": _doc(entries=[[0, "00", "00", "AAAA"]]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(_HOSTILE))
def test_a_file_that_is_not_evidence_is_said_so(tmp_path: Path, name: str) -> None:
    text = _HOSTILE[name]
    path = tmp_path / f"{name}.json"
    path.write_text(text)
    r = fails(vrm("verify", str(path), home=None), 2, "evidence file")
    assert "Error" not in r.stderr, r  # no Python exception's name


vendors = hosted("outfitters")


def test_evidence_with_a_message_cut_out_of_the_middle_does_not_verify(
    tmp_path: Path, vendors: VendorHost
) -> None:
    """The hash links of an evidence file are unsigned: whoever hands it over can take a
    message out of the middle — a ``data.withdraw``, say — and compute the links again.
    ``vrm verify`` checked only those and said "✓ verified … every signature, body hash and
    link". What no one can recompute is each message's signed ``prev``, the one before it
    from the same party (§4.5-6): a message of a party that names one the file lacks means
    the file is not the history it claims to be."""
    home = connected(tmp_path, vendors["outfitters"].url)
    for value in ("doc@example.org", "doc@example.com"):
        ok(vrm("share", "Wasatch Outfitters", f"email={value}", "--purpose",
               "contracted-service", home=home))  # fmt: skip
    evidence = tmp_path / "evidence.json"
    ok(vrm("history", "Wasatch Outfitters", "--export", str(evidence), home=home))
    ok(vrm("verify", str(evidence), home=None))  # as exported: verifies
    doc = json.loads(evidence.read_text())
    shares = [i for i, e in enumerate(doc["entries"]) if e["type"] == "data.share"]
    assert len(shares) == 2, [e["type"] for e in doc["entries"]]
    del doc["entries"][shares[0] : shares[0] + 2]  # the first share and its receipt
    before = GENESIS
    for i, e in enumerate(doc["entries"]):  # the links and indexes made whole again
        e["index"], before = i, link(before, bytes.fromhex(e["hash"]))
        e["link"] = before.hex()
    evidence.write_text(json.dumps(doc))
    fails(vrm("verify", str(evidence), home=None), 1, "does not verify", "§4.5-6")


def test_evidence_across_a_key_rotation_verifies(
    tmp_path: Path, vendors: VendorHost
) -> None:
    """The party check follows a ``key.rotate`` (§2.6): a real history with one verifies."""
    home = connected(tmp_path, vendors["outfitters"].url)
    ok(vrm("share", "Wasatch Outfitters", "email=doc@example.org", "--purpose",
           "contracted-service", home=home))  # fmt: skip
    ok(vrm("rotate", "Wasatch Outfitters", home=home))
    ok(vrm("share", "Wasatch Outfitters", "email=doc@example.com", "--purpose",
           "contracted-service", home=home))  # fmt: skip
    evidence = tmp_path / "evidence.json"
    ok(vrm("history", "Wasatch Outfitters", "--export", str(evidence), home=home))
    types = [e["type"] for e in json.loads(evidence.read_text())["entries"]]
    assert "key.rotate" in types, types
    ok(vrm("verify", str(evidence), home=None))


def test_a_file_too_large_to_be_an_export_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """It was read whole and parsed (memory several times its size) whatever its size."""
    from vrmproto.cli._cmd_history import MAX_EVIDENCE_BYTES  # noqa: PLC0415

    big = tmp_path / "big.json"
    with big.open("wb") as f:  # sparse: no disk used
        f.truncate(MAX_EVIDENCE_BYTES + 1)
    fails(vrm("verify", str(big), home=tmp_path), 2, "not an evidence file", "bytes")
