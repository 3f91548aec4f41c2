"""The conformance suite covers every MUST clause of the specification (issue 5, spec §14).

- every clause a case names (its ``clause`` and its ``covers``) is defined in ``spec/*.md``;
- every MUST clause — a clause ``**§N.M-K**`` whose text, up to the next clause or heading,
  contains "MUST" — is named by at least one case, or is listed with a reason in a table headed
  "Requirements not testable from outside" (``spec/14-conformance.md``, and
  ``spec/README.md``);
- every row of those tables names a defined MUST clause and gives a reason;
- the table of cases in ``spec/14-conformance.md`` is exactly the suite (``--list``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vrmproto.testing import Registry
from vrmproto.testing._case import load_default_cases

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "spec"
CONFORMANCE = SPEC / "14-conformance.md"
# In 14-conformance.md the heading carries its subsection number: "## 14.6 Requirements …".
_NOT_TESTABLE = re.compile(r"^##\s+(?:[\d.]+\s+)?Requirements not testable from outside\s*$",
                           re.MULTILINE)
_DEFINITION = re.compile(r"\*\*(§\d+(?:\.\d+)*-\d+)\*\*")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_SECTION_FILE = re.compile(r"^\d\d-[a-z0-9-]+\.md$")
_CLAUSE = re.compile(r"§\d+(?:\.\d+)*-\d+")
_TABLE_START = "<!-- BEGIN GENERATED: conformance-cases -->"
_TABLE_END = "<!-- END GENERATED: conformance-cases -->"


def spec_clauses() -> dict[str, str]:
    """Every clause defined in a section file: id -> its text, up to the next clause or
    heading (fenced examples left out), as tests/test_spec_clauses.py reads them."""
    found: dict[str, str] = {}
    for path in sorted(SPEC.glob("*.md")):
        if not _SECTION_FILE.match(path.name):
            continue
        text = _FENCE.sub("", path.read_text(encoding="utf-8"))
        marks = list(_DEFINITION.finditer(text))
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            heading = re.search(r"^#", text[m.end():end], re.MULTILINE)
            if heading:
                end = m.end() + heading.start()
            found[m.group(1)] = text[m.end():end]
    return found


def must_clauses() -> set[str]:
    return {clause for clause, text in spec_clauses().items() if "MUST" in text}


def not_testable() -> dict[str, list[tuple[str, str]]]:
    """clause -> [(file, reason), …] from every "Requirements not testable" table."""
    rows: dict[str, list[tuple[str, str]]] = {}
    for path in (SPEC / "README.md", CONFORMANCE):
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        heading = _NOT_TESTABLE.search(text)
        if heading is None:
            continue
        for line in text[heading.end():].splitlines():
            if line.startswith("#"):
                break
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|") and _CLAUSE.fullmatch(cells[0]):
                rows.setdefault(cells[0], []).append((path.name, " | ".join(cells[1:])))
    return rows


def covered_by(registry: Registry) -> dict[str, list[str]]:
    """clause -> ids of the cases that name it (as their clause or in covers)."""
    cases: dict[str, list[str]] = {}
    for c in registry:
        for clause in c.clauses:
            cases.setdefault(clause, []).append(c.id)
    return cases


def cases_table(registry: Registry) -> str:
    """Table 14-2 of spec/14-conformance.md, as the suite defines it."""
    lines = ["| case | clause | also covers | level |", "|---|---|---|---|"]
    lines += [f"| {c.id} | {c.clause} | {', '.join(c.covers)} | {c.level.value} |"
              for c in registry]
    return "\n".join(lines)


def test_every_clause_a_case_names_is_defined() -> None:
    defined = spec_clauses()
    missing = [f"{c.id}: {clause}" for c in load_default_cases() for clause in c.clauses
               if clause not in defined]
    assert not missing, f"cases name clauses the spec does not define: {missing}"


def test_every_must_clause_is_tested_or_listed_as_not_testable() -> None:
    cases = covered_by(load_default_cases())
    listed = not_testable()
    uncovered = sorted(must_clauses() - cases.keys() - listed.keys(),
                       key=lambda c: [int(n) for n in re.findall(r"\d+", c)])
    assert not uncovered, (
        f"{len(uncovered)} MUST clauses have no case and are not listed as not testable "
        f"(spec/14-conformance.md §14.6): {uncovered}"
    )


def test_not_testable_rows_name_must_clauses_and_give_reasons() -> None:
    musts = must_clauses()
    rows = not_testable()
    assert rows, "no table of requirements not testable from outside"
    for clause, entries in rows.items():
        assert clause in musts, f"{clause} is listed as not testable but is not a MUST clause"
        for where, why in entries:
            assert len(why) > 20, f"{where}: {clause} gives no real reason"
        files = [where for where, _ in entries]
        assert len(files) == len(set(files)), f"{clause} is listed twice in one table"


def test_the_cases_table_in_section_14_is_the_suite() -> None:
    text = CONFORMANCE.read_text(encoding="utf-8")
    start, end = text.index(_TABLE_START), text.index(_TABLE_END)
    written = text[start + len(_TABLE_START):end].strip()
    expected = cases_table(load_default_cases())
    assert written == expected, (
        "spec/14-conformance.md's table of cases differs from the suite; replace it with:\n"
        + expected
    )


def test_coverage_numbers_add_up() -> None:
    """Every MUST clause is counted once: by a case, or else as not testable."""
    musts = must_clauses()
    cases = covered_by(load_default_cases())
    by_case = musts & cases.keys()
    only_listed = (musts - by_case) & not_testable().keys()
    assert len(by_case) + len(only_listed) == len(musts)
    assert len(by_case) > len(only_listed)


def test_state_cases_are_generated_from_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18: one SM case per (state, event) the suite reaches, each expecting what Table 7-2
    and the order of checks say; a new row changes its cell's expectation."""
    from vrmproto._messages import MESSAGE_TYPES  # noqa: PLC0415
    from vrmproto._state import TRANSITIONS, Role, State  # noqa: PLC0415
    from vrmproto.testing.cases import states  # noqa: PLC0415

    events = {t for t in MESSAGE_TYPES if t != "problem"} | {"terms.counter"}
    assert set(states.EVENTS) == events, "add the new event at the end of states.EVENTS"
    assert {e for (_, _, e) in TRANSITIONS} <= events
    registry = load_default_cases()
    for cell in states.cells():
        c = registry.get(cell.case_id)
        assert (c.clause, c.covers) == (cell.clause, cell.covers)
    assert len(states.cells()) == len(states.STATES) * len(events)
    # every customer row of a reached state is a cell the suite expects to be accepted
    accepted = {(c.state, c.event) for c in states.cells() if c.code is None}
    assert {(s, e) for (s, r, e) in TRANSITIONS if r is Role.CUSTOMER
            and s in states.STATES} <= accepted
    cell = states.expectation(State.AGREED, "terms.offer", agreed=True)
    assert (cell.code, cell.clause, cell.case_id) == ("illegal_transition", "§7-1", "SM-201")
    monkeypatch.setattr(states, "TRANSITIONS", {
        **TRANSITIONS, (State.AGREED, Role.CUSTOMER, "terms.offer"): State.OFFERED})
    assert states.expectation(State.AGREED, "terms.offer", agreed=True).code is None
    assert states.expectation(State.AGREED, "terms.accept", agreed=True).clause == "§7-2"
    assert states.expectation(State.NONE, "receipt", agreed=False).code == "no_relationship"
    assert states.expectation(State.REJECTED, "data.share", agreed=False).code == "no_agreement"
