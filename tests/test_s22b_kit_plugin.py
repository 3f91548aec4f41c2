"""The pytest plugin in a builder's own suite (vrmproto/testing/pytest_plugin.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

from vrmproto.testing import _runner

HEAVY = ("aiohttp", "vrmproto.server", "vrmproto.client", "vrmproto.testing._runner")


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    """pytest loads the plugin (entry point ``pytest11``) in every run of every suite in an
    environment where vrmproto is installed. Without ``--vrm-conformance`` it "imports nothing
    heavy": not the HTTP stack, the server, the client or the suite runner — half a second
    added to each ``pytest`` start of a builder's unrelated suite, before."""
    code = (
        "import sys, vrmproto.testing.pytest_plugin\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    assert out.stdout.strip() == ""


def test_the_testing_package_still_exports_its_names_on_use() -> None:
    code = (
        "import vrmproto.testing as t\n"
        "from vrmproto.testing import MemoryTransport, run_suite, case\n"
        "assert t.MemoryTransport is MemoryTransport and callable(run_suite) and callable(case)\n"
        "assert set(t.__all__) <= set(dir(t))\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    assert out.stdout.strip() == "ok"


pytest_plugins = ["pytester"]

CONFTEST = textwrap.dedent(
    """
    from vrmproto.testing import CaseContext, Level, Registry

    REG = Registry()

    for n in range(3):
        @REG.case(id=f"K-00{n}", clause="§1-1", requirement="Echo.", level=Level.MUST,
                  accepts="anything")
        async def ok(ctx: CaseContext) -> None:
            await ctx.post("/echo", b"hi")

    def pytest_vrm_conformance_registry(config):
        return REG
    """
)


def test_a_suite_that_fails_to_start_fails_each_item_with_the_reason_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL the suite cannot use (``http://[::1`` — a typo) must fail each item with the
    reason, as "the suite cannot run" does. Before, an error other than SuiteCannotRun was
    not kept: every item ran the whole suite again and failed with its traceback — with the
    default suite, 312 runs and 90 s for one typo."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(CONFTEST)
    runs: list[str] = []
    real = _runner.run_suite

    async def counted(url: str, **kwargs: Any) -> _runner.SuiteResult:
        runs.append(url)
        return await real(url, **kwargs)

    monkeypatch.setattr(_runner, "run_suite", counted)
    result = pytester.runpytest_inprocess("-q", "--vrm-conformance", "http://[::1")
    result.assert_outcomes(failed=3)
    assert runs == ["http://[::1"]
    result.stdout.fnmatch_lines(["*the suite cannot run: *Invalid IPv6 URL*"])
