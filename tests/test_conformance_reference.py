"""The conformance suite against the reference vendor: every case passes, as issue 5 requires
(spec §14). Also the ``conformance`` command's ``--list`` and ``--report DIR``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from subprocess import PIPE, Popen

import pytest
from _broken_vendor import CONNECTION_LIMITS, make_endpoint
from click.testing import CliRunner

from vrmproto.server import Server, serve
from vrmproto.store import MemoryStore
from vrmproto.testing import Outcome, SuiteResult, run_suite
from vrmproto.testing._case import load_default_cases
from vrmproto.testing._cli import conformance

HERE = Path(__file__).resolve().parent
SEED = 1_767_225_600


async def _start() -> Server:
    return await serve(make_endpoint(MemoryStore()), connection_limits=CONNECTION_LIMITS)


#: How many runs the determinism test compares: 3 in ``make test``; the acceptance of issue 18
#: asks for 5 (``VRM_CONFORMANCE_RUNS=5 pytest tests/test_conformance_reference.py``).
RUNS = max(2, int(os.environ.get("VRM_CONFORMANCE_RUNS", "3")))


async def _runs() -> list[SuiteResult]:
    # Each run against a reference vendor of its own (their floods would otherwise share one
    # per-address rate limit), all at once: a run mostly waits out deadlines (CONN-*, WIRE-014,
    # WIRE-016, RATE-001).
    servers = [await _start() for _ in range(RUNS)]
    try:
        return list(await asyncio.gather(*(
            run_suite(s.url, seed=SEED + i, strict=i == 1) for i, s in enumerate(servers))))
    finally:
        for server in servers:
            await server.close()


@pytest.fixture(scope="module")
def runs() -> list[SuiteResult]:
    """:data:`RUNS` whole-suite runs, each with a seed of its own (so in a different order, with
    different keys and choices); the second with ``strict``, which changes only how a run is
    graded (a NON_STRICT case fails it), not what any case does."""
    return asyncio.run(_runs())


def _check(result: SuiteResult, *, strict: bool) -> None:
    registry = load_default_cases()
    assert {r.case.id for r in result.records} == {c.id for c in registry}
    wrong = {r.case.id: (r.outcome.value, r.actual, r.traceback) for r in result.records
             if r.outcome not in (Outcome.PASSED, Outcome.INFORMATIONAL)}
    assert not wrong, wrong
    assert result.strict is strict
    assert result.exit_code() == 0


def test_every_case_passes_against_the_reference_vendor(runs: list[SuiteResult]) -> None:
    plain, strict = runs[0], runs[1]
    _check(plain, strict=False)
    _check(strict, strict=True)


def test_verdicts_are_the_same_on_every_run(runs: list[SuiteResult]) -> None:
    """Issue 18: the whole suite, run several times with different seeds (so in different
    orders, with different keys and choices), gives every case the same verdict; and the state
    cells the reference vendor does not lead to are the same ones every time."""
    assert len({r.seed for r in runs}) == len(runs) == RUNS

    def verdicts(result: SuiteResult) -> dict[str, str]:
        return {r.case.id: r.outcome.value for r in result.records}

    def unreached(result: SuiteResult) -> set[str]:
        return {r.case.id for r in result.records if "not reached" in (r.actual or "")}

    first = runs[0]
    for other in runs[1:]:
        differ = {k: (v, verdicts(other)[k]) for k, v in verdicts(first).items()
                  if verdicts(other)[k] != v}
        assert not differ, f"seed {first.seed} vs {other.seed}: {differ}"
        assert unreached(other) == unreached(first)
    assert set(verdicts(first).values()) <= {"PASSED", "INFORMATIONAL"}


def test_list_shows_every_case_clause_level_and_covers() -> None:
    registry = load_default_cases()
    runner = CliRunner()
    listed = runner.invoke(conformance, ["--list", "--json"])
    assert listed.exit_code == 0, listed.output
    data = {row["id"]: row for row in json.loads(listed.output)}
    assert data.keys() == {c.id for c in registry}
    for c in registry:
        row = data[c.id]
        assert (row["clause"], row["level"], row.get("covers", [])) == (
            c.clause, c.level.value, list(c.covers))
    table = runner.invoke(conformance, ["--list"], env={"COLUMNS": "400"})
    assert table.exit_code == 0, table.output
    for c in registry:
        line = next((ln for ln in table.output.splitlines() if f" {c.id} " in ln), "")
        assert c.clause in line, (c.id, line)
        assert c.level.value in line, (c.id, line)
        assert all(clause in table.output for clause in c.covers)
    # issue 18: for each clause, the cases that check it
    assert "clauses and the cases that check them" in table.output
    by_clause = runner.invoke(conformance, ["--list", "--by-clause", "--json"])
    assert by_clause.exit_code == 0, by_clause.output
    rows = {row["clause"]: row for row in json.loads(by_clause.output)}
    assert rows.keys() == {cl for c in registry for cl in c.clauses}
    for clause, row in rows.items():
        assert row["cases"] == [c.id for c in registry if c.clause == clause]
        assert row["also_covered_by"] == [c.id for c in registry if clause in c.covers]
    assert "SM-201" in rows["§7-1"]["cases"]


@pytest.fixture
def vendor_url() -> Iterator[str]:
    """The reference vendor in a subprocess (the CLI runs its own event loop)."""
    with Popen([sys.executable, str(HERE / "_broken_vendor.py"), "reference"],
               stdin=PIPE, stdout=PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        port = proc.stdout.readline().strip()
        assert port.isdigit(), port
        yield f"http://127.0.0.1:{port}"
        proc.stdin.close()
        proc.wait(timeout=10)


def test_report_dir_gets_json_junit_and_html(vendor_url: str, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(
        conformance, [vendor_url, "--only", "ENV-*", "--only", "DISC-*", "--seed", "7",
                      "--report", str(out)])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"\d+ passed, 0 failed, \d+ skipped",
                        result.output.rstrip().splitlines()[-1])
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    cases = {c["id"]: c for c in data["cases"]}
    assert data["summary"]["exit_code"] == 0
    assert data["seed"] == 7
    assert cases["ENV-001"]["outcome"] == "PASSED"
    assert "§12.3-1" in cases["ENV-001"]["covers"]
    junit = ET.parse(out / "junit.xml").getroot()
    names = {tc.get("name") for tc in junit.iter("testcase")}
    assert {"ENV-001", "DISC-002"} <= names
    assert not list(junit.iter("failure"))
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "ENV-001" in html
    assert "§12.3-1" in html
    # issue 18: coverage by section, in the JSON and the HTML report
    sections = {s["section"]: s for s in data["coverage"]}
    assert "ENV-001" in sections["§12.3"]["cases"]
    assert "§12.3-1" in sections["§12.3"]["clauses"]
    assert all(s["failed"] == 0 and s["passed"] == len(s["cases"]) for s in sections.values()
               if not set(s["cases"]) & {r["id"] for r in data["cases"]
                                         if r["outcome"] == "SKIPPED"})
    assert "Coverage by section" in html
