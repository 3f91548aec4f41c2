"""``bench/inbox.py`` runs end to end with tiny parameters, on each event loop it offers.

The figures are not asserted (no timed assertions): only that every server kind answered, that
the JSON line names the loop the servers and the client ran on, and that ``--loop asyncio``
really runs asyncio's loop (``auto`` picks uvloop where ``vrmproto[speed]`` installed it, as
``vrm vendor serve`` does).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vrmproto import _loop

BENCH = Path(__file__).resolve().parent.parent / "bench" / "inbox.py"


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_inbox_bench_runs_on_the_chosen_loop(loop: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--n", "40", "--concurrency", "4", "--rounds", "1",
         "--no-fanout", "--loop", loop],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = "uvloop" if loop == "auto" and _loop.loop_factory() else "asyncio"
    assert result["loop"] == expected
    assert result["server_loops"] == [expected]  # what each server process said it ran on
    assert result["client_loops"] == [expected]
    for rate in ("inbox_msgs_per_s", "baseline_req_per_s", "memory_msgs_per_s",
                 "accept_msgs_per_s"):  # fmt: skip
        assert result[rate] > 0, (rate, result)
    assert result["inbox_ratio"] > 0
