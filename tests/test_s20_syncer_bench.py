"""``bench/inline_sync.py`` runs with tiny parameters and ends with its JSON line: every durable
step got its fsync, and the CPU is split by thread. The figures themselves are not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "inline_sync.py"


def test_inline_sync_bench_runs_and_prints_its_json_line() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--stores", "3", "--m", "4",
                           "--work-us", "0"], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["stores"], result["m"]) == (3, 4)
    assert result["steps_per_s"] > 0
    assert 0 < result["syncs"] <= 1  # at most one fsync per durable commit, lazy ones none
    assert set(result["cpu_us"]) == {"total", "loop", "other"}
