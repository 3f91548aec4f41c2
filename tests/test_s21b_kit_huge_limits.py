"""The cases that size what they send by a published limit fail, naming the limit, when it asks
for more than the suite builds (spec 14.2: 64 MiB in one request, 256 levels deep), instead of
trying to build it.

Before, an endpoint publishing ``max_envelope_bytes`` of 8 GiB made WIRE-001, WIRE-012,
WIRE-015, WIRE-019, WIRE-021 and WIRE-022 allocate up to 16 GB (ERROR, MemoryError, where a
memory limit stopped them; the out-of-memory killer where none did), WIRE-001 end in ERROR with
OverflowError, and ``max_depth`` of 1,000,000 made WIRE-013 end in ERROR with RecursionError.
"""

from __future__ import annotations

import resource
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.test_s21b_kit_bad_discovery import GOOD, serving
from vrmproto.testing import Outcome, run_suite
from vrmproto.testing.cases._support import MAX_SENT_BYTES, MAX_SENT_DEPTH

SIZED = ["WIRE-001", "WIRE-012", "WIRE-015", "WIRE-019", "WIRE-021", "WIRE-022"]


def _endpoint(limits: dict[str, int]) -> AbstractAsyncContextManager[str]:
    """An endpoint publishing ``limits``, refusing every POST."""
    return serving({**GOOD, "limits": limits})


@pytest.fixture
def capped_memory() -> Any:
    """The test process may not grow past 3 GB more: an attempt to build 8 GiB fails fast."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + 3 * 2**30, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


async def test_a_huge_max_envelope_bytes_fails_the_sized_cases(capped_memory: Any) -> None:
    async with _endpoint({"max_envelope_bytes": 8 * 2**30}) as url:
        result = await run_suite(url, only=SIZED, seed=1, timeout_per_case=5)
    ran = {r.case.id: r for r in result.records if r.outcome is not Outcome.SKIPPED}
    assert sorted(ran) == SIZED
    for record in ran.values():
        assert record.outcome is Outcome.FAILED, (record.case.id, record.actual)
        assert f"at most {MAX_SENT_BYTES} bytes" in (record.expected or ""), record.expected
        assert "max_envelope_bytes 8589934592" in (record.actual or ""), record.actual
        assert not record.exchanges  # nothing was sent


async def test_a_huge_max_depth_fails_the_nesting_case() -> None:
    async with _endpoint({"max_depth": 1_000_000}) as url:
        result = await run_suite(url, only=["WIRE-013"], seed=1, timeout_per_case=5)
    record = result.records[0]
    assert record.case.id == "WIRE-013"
    assert record.outcome is Outcome.FAILED, record.actual
    assert f"at most {MAX_SENT_DEPTH} deep" in (record.expected or "")
    assert record.actual == "the published max_depth is 1000000"


async def test_limits_within_the_bounds_are_still_tested() -> None:
    async with _endpoint({"max_depth": MAX_SENT_DEPTH}) as url:
        result = await run_suite(url, only=["WIRE-001", "WIRE-013"], seed=1, timeout_per_case=10)
    for record in result.records[:2]:
        assert record.exchanges, record.case.id  # sent, and judged on the answer
        assert "the suite can test" not in (record.expected or "")
