"""``bench/inbox_phases.py`` runs end to end with tiny parameters.

The figures are not asserted (no timed assertions): only that every phase was timed, and that
the durable commit of the steps' Commits was measured at each group size asked for, with as
one transaction per Commit when they come one at a time and fewer when they come eight at a
time (on Linux, where ``/proc`` tells the store threads' CPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "inbox_phases.py"


def test_inbox_phases_times_each_phase_and_the_durable_commit() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--n", "24", "--batches", "1,8"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["step_us"] > 0
    assert result["phases_us"]["open_envelope"] > 0
    if not Path("/proc/self/task").is_dir():  # the store's CPU is read from /proc
        assert result["store_us"] == {}
        return
    assert set(result["store_us"]) == {"1", "8"}
    assert result["store_transactions"]["1"] == 24  # one at a time: a transaction each
    assert result["store_transactions"]["8"] < 24  # eight at a time: group commits
    assert result["per_transaction_us"] is not None
