"""``bench/hostile.py`` runs end to end with tiny parameters and ends with its JSON line.

No test ran it, and it broke unseen: its padded first contact (a ``TermsOffer`` subclass) had
no entry in the rules table, so every flood process died with ``KeyError`` before it sent
anything. The figures are not asserted (no timed assertions), only that the honest customers
and every kind of flood ran and were answered.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "hostile.py"


def test_hostile_bench_runs_every_kind_of_flood_and_prints_its_json_line() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--customers", "2", "--shares", "3", "--seconds", "1",
         "--slow", "20"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["quiet"]["success"] == 1.0
    assert isinstance(result["flood"]["success"], float)
    statuses = result["flood_statuses"]
    for kind in ("garbage", "forged", "first-contact", "padded"):
        assert sum(statuses[kind].values()) > 0, (kind, statuses)
    assert result["slow_opened"] > 0
