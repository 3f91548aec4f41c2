"""``bench/e2e.py`` runs end to end with tiny parameters and ends with its JSON line.

The figures themselves are not asserted (no timed assertions): only that the bench drives the
real path — customers' agents connecting and sharing with a vendor in a subprocess — to the end,
and reports every figure it promises.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vrmproto.store._pg_cluster import missing_reason

BENCH = Path(__file__).resolve().parent.parent / "bench" / "e2e.py"
#: Calls of each libsodium function per timing of the floor: every call is still made and timed
#: (the default 1000, three times over seven functions, is 1.5-2 s of one core).
FLOOR_ROUNDS = "20"

KEYS = {
    "msgs_per_s", "p50_ms", "p99_ms", "cpu_us", "floor_us", "vendor_floor_ratio",
    "agent_floor_ratio", "growth", "growth_same_flight", "messages",
}  # fmt: skip


def run_bench(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize("agent_store", ["memory", "sqlite"])
def test_e2e_bench_runs_and_prints_its_json_line(agent_store: str) -> None:
    result = run_bench("--k", "2", "--m", "3", "--agent-store", agent_store, "--no-growth",
                       "--floor-rounds", FLOOR_ROUNDS)
    assert result.keys() >= KEYS
    assert result["messages"] == 6
    assert isinstance(result["msgs_per_s"], float)
    assert result["msgs_per_s"] > 0
    floor = result["floor_us"]
    assert isinstance(floor, dict)
    assert floor["agent"] > 0
    assert floor["vendor"] > 0
    if sys.platform == "linux":
        assert isinstance(result["vendor_floor_ratio"], float)
        assert isinstance(result["agent_floor_ratio"], float)
        cpu = result["cpu_us"]
        assert isinstance(cpu, dict)
        assert cpu["agent_loop"] > 0
        assert cpu["agent_loop"] + cpu["agent_other_threads"] == pytest.approx(cpu["agent"],
                                                                               abs=0.2)


def test_e2e_bench_growth_is_the_median_of_its_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each growth figure is the median of the rounds' (the runs faked: their aggregation is
    what is checked here; the runs themselves are the path the test above drives)."""
    sys.path.insert(0, str(BENCH.parent))
    try:
        e2e = importlib.import_module("e2e")
    finally:
        sys.path.remove(str(BENCH.parent))
    # per round: the long run, the short one, the short one taking turns (vendor, agent us)
    cpu = iter([(300, 200), (200, 200), (250, 200),
                (900, 600), (200, 200), (250, 200),   # one slow minute: growth 3.75
                (330, 220), (200, 200), (250, 200)])  # fmt: skip

    def measure(args: object, k: int, m: int, in_flight: int = 0) -> object:
        vendor, agent = next(cpu)
        return e2e.Run(k * m, 1.0, [1.0], {"vendor": vendor, "agent": agent})

    monkeypatch.setattr(e2e, "measure", measure)
    args = argparse.Namespace(no_growth=False, kind="share", growth_m=16, growth_rounds=3)
    got = e2e.growth(args)
    assert got["growth_rounds"] == [1.25, 3.75, 1.375]
    assert got["growth"] == 1.375
    assert got["growth_vendor"] == 1.65
    assert got["growth_agent"] == 1.1
    assert got["growth_same_flight"] == pytest.approx(550 / 450, abs=1e-3)


def test_e2e_bench_runs_on_postgresql_and_counts_the_database() -> None:
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    result = run_bench("--k", "2", "--m", "3", "--vendor-store", "postgres", "--no-growth",
                       "--floor-rounds", FLOOR_ROUNDS)
    assert result["vendor_store"] == "postgres"
    assert result["messages"] == 6
    if sys.platform == "linux":
        cpu = result["cpu_us"]
        assert isinstance(cpu, dict)
        assert isinstance(cpu["database"], float)  # 6 messages may take under a clock tick
        assert cpu["database"] >= 0
        assert isinstance(result["vendor_db_floor_ratio"], float)


STEPS = BENCH.with_name("steps.py")


@pytest.mark.parametrize("stores", [("memory", "memory"), ("sqlite", "sqlite")])
def test_steps_bench_runs_and_prints_its_json_line(stores: tuple[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, str(STEPS), "--m", "3", "--warm", "1", "--agent-store", stores[0],
         "--vendor-store", stores[1], "--floor-rounds", FLOOR_ROUNDS],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result.keys() >= {"cpu_us", "floor_us", "vendor_floor_ratio", "agent_floor_ratio"}
    assert result["cpu_us"].keys() == {"vendor", "agent"}
