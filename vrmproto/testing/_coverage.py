"""Which cases check which clause, and how a run went section by section.

A case is *about* its ``clause`` and *also covers* the clauses in ``covers`` (:class:`Case`).
:func:`by_clause` turns the cases into the clause's view — what ``vrm conformance --list`` prints
after the cases, and ``--list --by-clause`` alone — and :func:`by_section` groups a run's records by
the spec section of every clause they name, for the reports' "coverage by section".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._case import Case, CaseRecord, Level

__all__ = ["ClauseCoverage", "SectionCoverage", "by_clause", "by_section", "clause_key",
           "section_of"]


def clause_key(clause: str) -> tuple[int, ...]:
    """Sort key: ``§3.3-7`` before ``§12.9-1`` before ``§12.10-1``."""
    return tuple(int(n) for n in re.findall(r"\d+", clause))


def section_of(clause: str) -> str:
    """``§3.3`` for ``§3.3-7``, ``§7`` for ``§7-1``."""
    match = re.match(r"§?\s*\d+(?:\.\d+)*", clause)
    return match.group(0).replace(" ", "") if match else clause


@dataclass
class ClauseCoverage:
    """One clause: the cases about it, the cases that also cover it, and their levels."""

    clause: str
    about: list[str] = field(default_factory=list)
    also: list[str] = field(default_factory=list)
    levels: set[Level] = field(default_factory=set)

    @property
    def cases(self) -> list[str]:
        return [*self.about, *self.also]


def by_clause(cases: Iterable[Case]) -> list[ClauseCoverage]:
    """Every clause the cases name, in spec order, with the ids of the cases that check it."""
    found: dict[str, ClauseCoverage] = {}
    for c in sorted(cases, key=lambda c: c.id):
        for clause in c.clauses:
            entry = found.setdefault(clause, ClauseCoverage(clause))
            (entry.about if clause == c.clause else entry.also).append(c.id)
            entry.levels.add(c.level)
    return [found[k] for k in sorted(found, key=clause_key)]


@dataclass
class SectionCoverage:
    """One section of the spec in a run: the clauses its cases name, and how those cases went."""

    section: str
    clauses: list[str] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failing: list[str] = field(default_factory=list)


def by_section(records: Iterable[CaseRecord], *, strict: bool) -> list[SectionCoverage]:
    """The run's records grouped by the section of every clause each names (a case covering
    clauses of two sections counts in both), in spec order; counts as in the summary line."""
    sections: dict[str, SectionCoverage] = {}
    for r in sorted(records, key=lambda r: r.case.id):
        for name in dict.fromkeys(section_of(cl) for cl in r.case.clauses):
            s = sections.setdefault(name, SectionCoverage(name))
            s.cases.append(r.case.id)
            tally = r.outcome.tally(strict)
            if tally == "passed":
                s.passed += 1
            elif tally == "failed":
                s.failed += 1
                s.failing.append(r.case.id)
            else:
                s.skipped += 1
        for clause in r.case.clauses:
            s = sections[section_of(clause)]
            if clause not in s.clauses:
                s.clauses.append(clause)
    for s in sections.values():
        s.clauses.sort(key=clause_key)
    return [sections[k] for k in sorted(sections, key=clause_key)]
