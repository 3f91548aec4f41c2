"""The spec's tables are generated from the code, and its clauses are the ones the code cites.

``scripts/gen_spec.py`` rewrites every ``<!-- BEGIN GENERATED: … -->`` block of ``spec/*.md``
from the code; these tests fail when a block is stale (run the script to fix it), when a message
type or problem code is missing from the spec, or when a clause that the code, the vectors or the
conformance cases cite is missing from sections 5, 7, 8, 9 and 10, or numbered out of sequence.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import pytest

from vrmproto import MESSAGE_TYPES, TRANSITIONS, Problem, State
from vrmproto._messages import Money

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "spec"
OWNED = {
    "5": SPEC / "05-messages.md",
    "7": SPEC / "07-state-machine.md",
    "8": SPEC / "08-history.md",
    "9": SPEC / "09-problem-codes.md",
    "10": SPEC / "10-limits.md",
}
HEADING = re.compile(r"^#{1,6} (\d+(?:\.\d+)*)\.? ")
CLAUSE_DEF = re.compile(r"^\*\*§(\d+(?:\.\d+)*)-(\d+)\*\*")
CITED = re.compile(r"§((?:5|7|8|9|10)(?:\.\d+)*-\d+)(?!\d)")
ANY_CITED = re.compile(r"§(\d+(?:\.\d+)*-\d+)(?!\d)")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_spec", ROOT / "scripts" / "gen_spec.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_spec"] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def clauses(path: Path) -> list[tuple[str, str, int, int]]:
    """(enclosing heading number, clause section, clause number, line) for each clause defined."""
    out = []
    heading = ""
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if (h := HEADING.match(line)) is not None:
            heading = h.group(1)
        elif (c := CLAUSE_DEF.match(line)) is not None:
            out.append((heading, c.group(1), int(c.group(2)), lineno))
    return out


def defined_clauses(paths: list[Path]) -> set[str]:
    return {f"{sec}-{n}" for path in paths for _, sec, n, _ in clauses(path)}


# -- generated blocks ---------------------------------------------------------------------------


def test_generated_blocks_are_current() -> None:
    found = gen.problems()
    assert not found, "the spec is stale; run `python scripts/gen_spec.py`:\n" + "\n".join(found)


def test_generation_is_idempotent() -> None:
    generators = gen.blocks()
    for path in OWNED.values():
        once = gen.render(path.read_text(encoding="utf-8"), generators, path.name)
        assert gen.render(once, generators, path.name) == once


def test_a_stale_block_is_reported_with_a_diff(tmp_path: Path) -> None:
    page = tmp_path / "x.md"
    page.write_text(
        "intro\n<!-- BEGIN GENERATED: limits -->\n| old |\n<!-- END GENERATED: limits -->\nend\n",
        encoding="utf-8",
    )
    found = gen.problems([page], require_all=False)
    assert len(found) == 1
    assert "-| old |" in found[0]
    assert "+| `max_envelope_bytes` |" in found[0]
    assert gen.write([page]) == [page]
    assert gen.problems([page], require_all=False) == []
    assert page.read_text(encoding="utf-8").startswith("intro\n")
    assert page.read_text(encoding="utf-8").endswith("<!-- END GENERATED: limits -->\nend\n")


@pytest.mark.parametrize(
    "text",
    [
        "<!-- BEGIN GENERATED: no-such-block -->\n<!-- END GENERATED: no-such-block -->\n",
        "<!-- BEGIN GENERATED: limits -->\nnever closed\n",
        "<!-- BEGIN GENERATED: limits -->\n<!-- END GENERATED: states -->\n",
    ],
)
def test_a_bad_marker_is_an_error(tmp_path: Path, text: str) -> None:
    page = tmp_path / "x.md"
    page.write_text(text, encoding="utf-8")
    found = gen.problems([page], require_all=False)
    assert len(found) == 1
    assert "x.md" in found[0]


def test_every_block_is_required_somewhere(tmp_path: Path) -> None:
    page = tmp_path / "x.md"
    page.write_text("nothing generated here\n", encoding="utf-8")
    (missing,) = gen.problems([page])
    for name in ("fields:terms.offer", "problem-codes", "limits", "transitions"):
        assert name in missing


def test_the_check_command_passes() -> None:
    assert gen.main(["--check"]) == 0


# -- everything in the code is in the spec --------------------------------------------------------


def _block_headings(path: Path) -> dict[str, str]:
    """The number of the heading under which each generated block stands."""
    out = {}
    heading = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if (h := HEADING.match(line)) is not None:
            heading = h.group(1)
        elif (b := re.match(r"<!-- BEGIN GENERATED: (\S+) -->", line)) is not None:
            out[b.group(1)] = heading
    return out


def test_every_message_type_has_its_subsection() -> None:
    text = OWNED["5"].read_text(encoding="utf-8")
    where = _block_headings(OWNED["5"])
    for name, cls in MESSAGE_TYPES.items():
        section = gen._docstring_section(cls)
        assert f"`{name}`" in text
        assert where.get(f"fields:{name}") == section, (
            f"{cls.__name__}'s docstring cites §{section}, but its field table is under "
            f"{where.get(f'fields:{name}')}"
        )
        assert re.search(rf"^### {re.escape(section)} `{re.escape(name)}`$", text, re.M)
    assert where["record:Money"] == gen._docstring_section(Money)


def test_every_problem_code_is_in_the_registry() -> None:
    text = OWNED["9"].read_text(encoding="utf-8")
    for problem in Problem:
        assert f"| `{problem.value}` | {problem.status} |" in text


def _spec_retry_column() -> dict[str, bool]:
    """The retry column of Table 9-1 as the spec file holds it: code -> "yes"."""
    rows = re.findall(r"^\| `([a-z_]+)` \| \d{3} \| (yes|no) \|", OWNED["9"].read_text(
        encoding="utf-8"), re.M)
    return {code: retry == "yes" for code, retry in rows}


def test_both_nodes_retry_exactly_the_problems_the_registry_calls_retryable() -> None:
    """§9.2-3: a message refused with a retryable code stays queued (the agent's outbox) and
    refuses nothing for good (the vendor endpoint); every other code is final. The registry says
    which codes those are, the spec's Table 9-1 says the same, and both nodes use the registry."""
    from vrmproto._errors import RETRYABLE as REGISTRY  # noqa: PLC0415
    from vrmproto.client._outbox import RETRYABLE  # noqa: PLC0415
    from vrmproto.server._endpoint import _RETRYABLE  # noqa: PLC0415

    spec = _spec_retry_column()
    assert set(spec) == {p.value for p in Problem}
    assert {p for p in Problem if spec[p.value]} == REGISTRY
    assert {p for p in Problem if p.retryable} == REGISTRY
    assert set(RETRYABLE) == REGISTRY
    assert set(_RETRYABLE) - {None} == REGISTRY


def test_every_state_and_event_is_in_section_7() -> None:
    text = OWNED["7"].read_text(encoding="utf-8")
    for state in State:
        assert f"| `{state.value}` |" in text
    events = {event for (_, _, event) in TRANSITIONS}
    assert events == (set(MESSAGE_TYPES) - {"problem"}) | {"terms.counter"}
    for event in events:
        assert f"`{event}`" in text


# -- clauses --------------------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["5", "7", "8", "9", "10"])
def test_clauses_are_numbered_in_sequence_under_their_heading(section: str) -> None:
    numbers: dict[str, list[int]] = defaultdict(list)
    for heading, sec, n, line in clauses(OWNED[section]):
        assert sec == heading, f"§{sec}-{n} (line {line}) stands under heading {heading}"
        numbers[sec].append(n)
    assert numbers, "the section defines no clauses"
    for sec, found in numbers.items():
        assert found == list(range(1, len(found) + 1)), f"§{sec}: clauses numbered {found}"


def _citing_files() -> list[Path]:
    files = [*sorted((ROOT / "vrmproto").rglob("*.py")), *sorted((ROOT / "scripts").glob("*.py"))]
    files += sorted((SPEC / "vectors").glob("*.json"))
    files += sorted(SPEC.glob("*.md"))
    return files


def test_every_clause_cited_is_defined() -> None:
    """Code, vectors, conformance cases and the spec itself cite only clauses §5–§10 define."""
    defined = defined_clauses(list(OWNED.values()))
    missing: dict[str, list[str]] = defaultdict(list)
    for path in _citing_files():
        for cited in CITED.findall(path.read_text(encoding="utf-8")):
            if cited not in defined:
                missing[cited].append(str(path.relative_to(ROOT)))
    assert not missing, f"clauses cited but not defined: {dict(missing)}"


def test_the_clauses_the_code_relies_on_exist() -> None:
    defined = defined_clauses(list(OWNED.values()))
    needed = [
        "5.1-1", "5.1-2", "5.1-3", "5.1-4", "5.2.2-1", "5.2.2-2", "5.3-1", "5.3.1-3",
        "5.3.2-1", "5.3.3-1", "5.3.3-2", "5.3.5-1", "5.4.1-2", "5.4.2-1",
        *(f"5.5-{n}" for n in range(1, 7)), "5.6.1-1", "5.6.2-1", "7-1", "7-2",
        "8.2-1", "8.2-2", "8.2-3", "8.2-4", "8.3-1", *(f"10-{n}" for n in range(1, 9)),
    ]  # fmt: skip
    assert [c for c in needed if c not in defined] == []


def test_limit_comments_name_the_clauses_of_section_10() -> None:
    defined = defined_clauses([OWNED["10"]])
    comments = gen.limit_comments()
    numbers = [int(clause.removeprefix("§10-")) for clause, _ in comments.values()]
    # One clause per limit, in the order of the table. The first eight are §10-1 to §10-8; the
    # first-contact limits follow the general clauses §10-9 to §10-12, whose ids cases cite.
    assert numbers[:8] == list(range(1, 9))
    assert numbers == sorted(set(numbers))
    for clause, _ in comments.values():
        assert clause.removeprefix("§") in defined


def test_cross_references_in_sections_5_to_10_resolve() -> None:
    """A clause these sections cite in another section exists, once that section is written."""
    written = {}
    for path in SPEC.glob("*.md"):
        if (m := re.match(r"(\d+)-", path.name)) is not None:
            written[str(int(m.group(1)))] = path
    defined = defined_clauses(list(written.values()))
    dangling = []
    for path in OWNED.values():
        for cited in ANY_CITED.findall(path.read_text(encoding="utf-8")):
            top = re.split(r"[.-]", cited)[0]
            if top in written and cited not in defined:
                dangling.append(f"{path.name}: §{cited}")
    assert dangling == []


def test_section_references_in_sections_5_to_10_resolve() -> None:
    """A section these sections (or the code's field docs) cite exists, once it is written."""
    headings: set[str] = set()
    written: set[str] = set()
    for path in SPEC.glob("*.md"):
        if (m := re.match(r"(\d+)-", path.name)) is not None:
            written.add(str(int(m.group(1))))
        for line in path.read_text(encoding="utf-8").splitlines():
            if (h := HEADING.match(line)) is not None:
                headings.add(h.group(1))
    section_ref = re.compile(r"§(\d+(?:\.\d+)*)(?![\d.]*-\d)")
    dangling = [
        f"{path.name}: §{cited}"
        for path in OWNED.values()
        for cited in section_ref.findall(path.read_text(encoding="utf-8"))
        if cited.split(".")[0] in written and cited not in headings
    ]
    assert dangling == []
