"""The protocol core stays readable: no function in it is longer than 60 lines (issue 9,
acceptance; STYLE). The core is every private module directly under ``vrmproto/`` (``_*.py``):
the sans-IO layer of messages, encoding, signatures, validation, the state machine, the rules
and the history. And no module of the library compares a role or state as a string, or keeps
per-thread state in store meta (issue 9, acceptance)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "vrmproto"
MAX_LINES = 60
#: Known exceptions, each with the work that removes it (none now).
KNOWN: dict[str, set[str]] = {}


def long_functions(path: Path, limit: int = MAX_LINES) -> list[str]:
    """``name (n lines)`` for each function or method in ``path`` longer than ``limit``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - start + 1
            if length > limit:
                found.append(f"{node.name} ({length} lines)")
    return found


@pytest.mark.parametrize("name", sorted(p.name for p in CORE.glob("_*.py")))
def test_no_function_in_the_core_is_over_60_lines(name: str) -> None:
    long = [f for f in long_functions(CORE / name) if f.split(" ")[0] not in KNOWN.get(name, ())]
    assert long == [], f"vrmproto/{name}: split these up: {long}"


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    page = tmp_path / "m.py"
    body = "\n".join(f"        x{i} = {i}" for i in range(60))
    page.write_text(f"def short():\n    return 1\n\n\nclass A:\n    def long(self):\n{body}\n")
    assert long_functions(page) == ["long (61 lines)"]


# -- typed state (issue 9, acceptance) ------------------------------------------------------------

LIBRARY = sorted(p for p in CORE.rglob("*.py") if "testing" not in p.parts)
_TYPED = {"state", "role"}


def _is_text(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_is_text(e) for e in node.elts)
    return False


def string_compares(path: Path) -> list[str]:
    """``line: source`` of each comparison of a ``.state`` or ``.role`` with text: roles and
    states are compared as enums (``State(r.state) is State.AGREED``), never as strings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        typed = any(isinstance(s, ast.Attribute) and s.attr in _TYPED for s in sides)
        if typed and any(_is_text(s) for s in sides):
            found.append((node.lineno, f"{node.lineno}: {ast.unparse(node)}"))
    return [text for _, text in sorted(found)]


def per_thread_meta_keys(path: Path) -> list[str]:
    """``line: key`` of each store ``meta`` key built at run time (an f-string, a ``+`` or a
    call) outside the store: per-thread state is a typed record, ``meta`` holds only the
    store-level settings, whose keys are constants."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    keys: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            if name in {"get_meta", "set_meta"} and node.args:
                keys.append(node.args[0])
            for kw in node.keywords:
                if kw.arg == "meta" and isinstance(kw.value, ast.Tuple | ast.List):
                    keys += [e.elts[0] for e in kw.value.elts
                             if isinstance(e, ast.Tuple) and e.elts]  # fmt: skip
    return [f"{k.lineno}: {ast.unparse(k)}" for k in sorted(keys, key=lambda k: k.lineno)
            if not isinstance(k, ast.Constant | ast.Name | ast.Attribute)]  # fmt: skip


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(CORE)))
def test_no_role_or_state_is_compared_as_a_string(path: Path) -> None:
    assert string_compares(path) == []


@pytest.mark.parametrize("path", [p for p in LIBRARY if "store" not in p.parts],
                         ids=lambda p: str(p.relative_to(CORE)))  # fmt: skip
def test_no_per_thread_state_is_kept_in_store_meta(path: Path) -> None:
    assert per_thread_meta_keys(path) == []


def test_the_checks_see_a_string_compare_and_a_per_thread_meta_key(tmp_path: Path) -> None:
    page = tmp_path / "m.py"
    page.write_text(
        'ok = r.state is State.AGREED\nbad = view.state != "agreed"\n'
        'also = rec.role in ("customer", "vendor")\n'
        'await store.get_meta(f"held:{t.hex()}")\nCommit(meta=((KEY, b""), ("x" + t, b"")))\n'
    )
    assert string_compares(page) == [
        "2: view.state != 'agreed'", "3: rec.role in ('customer', 'vendor')",
    ]
    assert per_thread_meta_keys(page) == ["4: f'held:{t.hex()}'", "5: 'x' + t"]


#: Issue 9: the vendor's engine and the customer node's modules each stay under 500 lines.
NODE_MODULES = [CORE / "server" / "_endpoint.py", *sorted((CORE / "client").glob("*.py"))]


@pytest.mark.parametrize("path", NODE_MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_engines_modules_stay_under_500_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    where = path.relative_to(CORE.parent)
    assert lines < 500, f"{where} has {lines} lines: split it by what it owns"
