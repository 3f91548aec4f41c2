"""Terminal output of a conformance run, with ``rich``.

One line per case as it finishes (outcome, id, clause, short text); then, for every failure and
every SHOULD miss, the clause, the requirement, expected vs actual, the bytes sent (hex and
decoded, cut to a screenful) and commands to replay the request and rerun the case; then the
last line, always exactly::

    N passed, N failed, N skipped

where the three counts cover every case once:

- passed  = PASSED + INFORMATIONAL;
- failed  = FAILED + ERROR, plus NON_STRICT under ``--strict``;
- skipped = SKIPPED + UNIMPLEMENTED, plus NON_STRICT without ``--strict``.

The run exits 1 exactly when "failed" is not zero.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._case import Case, CaseRecord, Outcome
from ._coverage import by_clause
from ._exchange import hexdump
from ._report import ReportPaths, replay_command, replay_file_name
from ._runner import SuiteResult

__all__ = ["TerminalReporter", "print_case_list"]

STYLES = {
    Outcome.PASSED: "bold green",
    Outcome.INFORMATIONAL: "bold blue",
    Outcome.FAILED: "bold red",
    Outcome.ERROR: "bold magenta",
    Outcome.NON_STRICT: "bold yellow",
    Outcome.UNIMPLEMENTED: "dim",
    Outcome.SKIPPED: "dim",
}

_HEX_SHOWN = 256
_DECODED_LINES = 24
_EXCHANGES_SHOWN = 3


def _clip_lines(text: str, n: int) -> str:
    lines = text.splitlines()
    if len(lines) <= n:
        return text
    return "\n".join([*lines[:n], f"… ({len(lines) - n} more lines)"])


def _short(text: str, width: int = 100) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


class TerminalReporter:
    """Prints a run as it goes. Pass :meth:`case_finished` to ``run_suite(progress=…)``."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        strict: bool = False,
        report_dir: Path | None = None,
    ) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.strict = strict
        self.report_dir = report_dir

    def _plain(self, text: str, style: str | None = None) -> None:
        self.console.print(text, markup=False, highlight=False, style=style, soft_wrap=True)

    def start(self, target: str, seed: int, n_cases: int) -> None:
        """The header: what is tested, how, and the seed that reproduces the run."""
        mode = "strict" if self.strict else "not strict"
        self._plain(f"vrmproto conformance: {target}")
        self._plain(f"{n_cases} cases, {mode}, seed {seed} (rerun this order with --seed {seed})")

    def case_finished(self, record: CaseRecord) -> None:
        """One line for a finished case."""
        c = record.case
        if record.outcome in (Outcome.PASSED, Outcome.SKIPPED):
            note = c.requirement
        elif record.outcome is Outcome.INFORMATIONAL and record.info is not None:
            note = record.info.text
        else:
            note = record.actual or c.requirement
        line = Text()
        line.append(f"{record.outcome.value:<13}", style=STYLES[record.outcome])
        line.append(f" {c.id:<9} {c.clause:<10} ")
        line.append(_short(note))
        self.console.print(line, soft_wrap=True)

    def details(self, result: SuiteResult, record: CaseRecord) -> None:
        """Everything an engineer needs to act on one failure."""
        c = record.case
        title = Text()
        title.append(f"── {c.id} ")
        title.append(record.outcome.value, style=STYLES[record.outcome])
        title.append(f" {c.clause} [{c.level.value}]")
        if record.outcome is Outcome.ERROR:
            title.append("  (harness error: the case itself crashed)", style="magenta")
        self.console.print(title, soft_wrap=True)
        self._plain(f"   requirement: {c.requirement}")
        if c.accepts != record.expected:
            self._plain(f"   accepts:     {c.accepts}")
        self._plain(f"   expected:    {record.expected}")
        self._plain(f"   actual:      {record.actual}", style="red")
        shown = record.exchanges[-_EXCHANGES_SHOWN:]
        first = len(record.exchanges) - len(shown) + 1
        if first > 1:
            self._plain(f"   ({first - 1} earlier exchanges: see the report)")
        for n, ex in enumerate(shown, start=first):
            self._plain(f"   exchange {n}: {ex.describe()}")
            if ex.request_body:
                self._plain(f"     request body, {len(ex.request_body)} bytes:")
                self._plain(_indent(hexdump(ex.request_body, limit=_HEX_SHOWN), "       "))
                self._plain("     decoded:")
                self._plain(_indent(_clip_lines(ex.request_decoded, _DECODED_LINES), "       "))
            if ex.status is not None:
                self._plain(f"     response HTTP {ex.status}, {len(ex.response_body)} bytes:")
                self._plain(_indent(_clip_lines(ex.response_decoded, _DECODED_LINES), "       "))
            body_file = None
            if self.report_dir is not None and ex.request_body:
                body_file = str(self.report_dir / "replay" / replay_file_name(c.id, n))
            cmd = replay_command(ex, body_file)
            if cmd:
                self._plain(f"     replay: {cmd}")
        if record.traceback:
            self._plain(_indent(record.traceback.rstrip(), "   | "), style="magenta")
        self._plain(f"   rerun: {result.rerun_command(c.id)}")

    def finish(self, result: SuiteResult, paths: ReportPaths | None = None) -> None:
        """Failure details, where the reports are, and the summary as the very last line."""
        to_show = [
            r
            for r in sorted(result.records, key=lambda r: r.order or 0)
            if r.outcome in (Outcome.FAILED, Outcome.ERROR, Outcome.NON_STRICT)
        ]
        if to_show:
            self._plain("")
            self._plain("Failures" + ("" if self.strict else " and SHOULD misses (NON_STRICT)"))
            for r in to_show:
                self.details(result, r)
        self._plain("")
        if paths is not None:
            self._plain(f"reports: {paths.html}  {paths.json}  {paths.junit}")
        if result.rate_waits:
            self._plain(f"the target rate limited this address: waited out Retry-After "
                        f"{result.rate_waits} times ({result.rate_waited_s:g} s in all)")
        self._plain(f"seed {result.seed}; exit code {result.exit_code(self.strict)}")
        style = "bold red" if result.exit_code(self.strict) else "bold green"
        self._plain(result.summary_line(self.strict), style=style)


def print_case_list(cases: Iterable[Case], console: Console, *, as_json: bool = False) -> None:
    """``--list``: every case's id, clause (and the clauses it also covers), level and
    requirement (a table, or JSON)."""
    cases = list(cases)
    if as_json:
        data = [
            {
                "id": c.id,
                "clause": c.clause,
                "level": c.level.value,
                "requirement": c.requirement,
                "accepts": c.accepts,
                "tags": list(c.tags),
                # the further clauses the case checks; absent when it has none
                **({"covers": list(c.covers)} if c.covers else {}),
            }
            for c in cases
        ]
        console.out(json.dumps(data, indent=2, ensure_ascii=False), highlight=False)
        return
    table = Table(title=f"{len(cases)} conformance cases", title_justify="left")
    table.add_column("Id", no_wrap=True)
    table.add_column("Clause", no_wrap=True)
    table.add_column("Level", no_wrap=True)
    table.add_column("Requirement")
    table.add_column("Also covers")
    table.add_column("Tags")
    for c in cases:
        table.add_row(
            c.id, c.clause, c.level.value, c.requirement, ", ".join(c.covers), ", ".join(c.tags)
        )
    console.print(table)


def print_clause_list(cases: Iterable[Case], console: Console, *, as_json: bool = False) -> None:
    """``--list --by-clause`` (and the end of ``--list``): for each clause the cases name, in
    spec order, the cases about it and the cases that also cover it (a table, or JSON)."""
    rows = by_clause(cases)
    if as_json:
        data = [{"clause": r.clause, "cases": r.about, "also_covered_by": r.also,
                 "levels": sorted(lv.value for lv in r.levels)} for r in rows]
        console.out(json.dumps(data, indent=2, ensure_ascii=False), highlight=False)
        return
    table = Table(title=f"{len(rows)} clauses and the cases that check them",
                  title_justify="left")
    table.add_column("Clause", no_wrap=True)
    table.add_column("Cases about it")
    table.add_column("Also covered by")
    for r in rows:
        table.add_row(r.clause, ", ".join(r.about), ", ".join(r.also))
    console.print(table)
