"""``vrm verify FILE`` on files someone else made (session 22): a file that is not evidence at
all is a usage error (2, "not an evidence file"), never a crash that reads as "does not verify"
(1) with a Python exception's name — deep JSON nesting was a ``RecursionError``, an ``entries``
that is not a list a ``TypeError``, an index of 1e999 an ``OverflowError``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._cli_helpers import fails, vrm

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
