"""pytest plugin: run the conformance suite as pytest items (``pytest --vrm-conformance URL``).

Installed with vrmproto (entry point ``pytest11``). Without ``--vrm-conformance`` it only adds its
options and does nothing else: it collects nothing, imports nothing heavy and changes no other
test. With it, every case becomes one item named by its id (``-k ENV-`` selects as usual). The
suite runs once, when the first of these items runs, in one event loop; each item then reports
its case:

- PASSED, INFORMATIONAL: pass;
- FAILED, ERROR: fail, with the clause, expected vs actual and the rerun command;
- NON_STRICT: fail under ``--vrm-strict``, else skip;
- UNIMPLEMENTED: skip.

A ``conftest.py`` may supply its own cases by implementing the hook
``pytest_vrm_conformance_registry(config)`` and returning a :class:`vrmproto.testing.Registry`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._case import Case, CaseRecord, Registry
    from ._runner import SuiteResult

_PLUGIN_NAME = "vrmproto-conformance-items"


class _HookSpecs:
    @pytest.hookspec(firstresult=True)
    def pytest_vrm_conformance_registry(self, config: pytest.Config) -> Registry | None:
        """Return the registry of cases to run (default: the vrmproto conformance suite)."""
        raise NotImplementedError


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(_HookSpecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vrmproto", "vrmproto conformance suite")
    group.addoption(
        "--vrm-conformance",
        metavar="URL",
        default=None,
        help="Run the vrmproto conformance suite against URL, one item per case.",
    )
    group.addoption(
        "--vrm-strict",
        action="store_true",
        default=False,
        help="With --vrm-conformance: fail SHOULD misses (NON_STRICT) instead of skipping them.",
    )
    group.addoption(
        "--vrm-seed",
        type=int,
        default=None,
        metavar="N",
        help="With --vrm-conformance: the seed that fixes case order and random data.",
    )


def pytest_configure(config: pytest.Config) -> None:
    url = config.getoption("--vrm-conformance")
    if url:
        config.pluginmanager.register(_ConformanceItems(config, url), _PLUGIN_NAME)


class _ConformanceItems:
    """Registered only when ``--vrm-conformance`` is given."""

    def __init__(self, config: pytest.Config, url: str) -> None:
        self.config = config
        self.url = url
        self.strict: bool = bool(config.getoption("--vrm-strict"))
        self.seed: int | None = config.getoption("--vrm-seed")
        self.registry: Registry | None = None
        self.result: SuiteResult | None = None
        self.cannot_run: str | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        from ._case import load_default_cases  # noqa: PLC0415 - only when the option is given

        registry = config.hook.pytest_vrm_conformance_registry(config=config)
        self.registry = load_default_cases() if registry is None else registry
        suite = ConformanceSuite.from_parent(
            session, name="vrm-conformance", nodeid="vrm-conformance", plugin=self
        )
        # genitems reports each item as collected, so pytest's counts include them.
        items.extend(session.genitems(suite))

    def pytest_report_header(self, config: pytest.Config) -> str:
        mode = "strict" if self.strict else "not strict"
        return f"vrmproto conformance: {self.url} ({mode})"

    def run(self, wanted: list[str]) -> None:
        """Run the wanted cases once; items read their records from the result."""
        from ._runner import SuiteCannotRun, run_suite  # noqa: PLC0415

        assert self.registry is not None
        try:
            self.result = asyncio.run(
                run_suite(
                    self.url,
                    registry=self.registry,
                    strict=self.strict,
                    only=wanted,
                    seed=self.seed,
                )
            )
        except SuiteCannotRun as exc:
            self.cannot_run = str(exc)
        except Exception as exc:  # the suite failed to start (a URL it cannot parse, say):
            # kept, so that each item fails with the reason instead of running it again
            self.cannot_run = f"{type(exc).__name__}: {exc}"

    def record(self, item: ConformanceItem) -> CaseRecord:
        if self.result is None and self.cannot_run is None:
            wanted = [i.case.id for i in item.session.items if isinstance(i, ConformanceItem)]
            self.run(wanted)
        if self.cannot_run is not None:
            raise ConformanceError(f"the suite cannot run: {self.cannot_run}")
        assert self.result is not None
        for r in self.result.records:
            if r.case.id == item.case.id:
                return r
        raise ConformanceError(f"{item.case.id} did not run")  # pragma: no cover


class ConformanceSuite(pytest.Collector):
    """The collector holding one item per conformance case."""

    def __init__(self, *, plugin: _ConformanceItems, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plugin = plugin

    def collect(self) -> list[pytest.Item]:
        assert self.plugin.registry is not None
        return [
            ConformanceItem.from_parent(self, name=c.id, case=c, plugin=self.plugin)
            for c in self.plugin.registry
        ]


class ConformanceError(Exception):
    """A conformance case failed; its message is the whole explanation."""


class ConformanceItem(pytest.Item):
    """One conformance case as a pytest item."""

    def __init__(self, *, case: Case, plugin: _ConformanceItems, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.plugin = plugin
        for tag in case.tags:
            self.extra_keyword_matches.add(tag)
        self.extra_keyword_matches.add(case.level.value)

    def runtest(self) -> None:
        from ._case import Outcome  # noqa: PLC0415

        record = self.plugin.record(self)
        strict = self.plugin.strict
        if record.outcome in (Outcome.PASSED, Outcome.INFORMATIONAL):
            return
        c = record.case
        if record.outcome is Outcome.NON_STRICT and not strict:
            pytest.skip(
                f"{c.id} NON_STRICT {c.clause} (a SHOULD missed; fails with --vrm-strict): "
                f"{record.actual}"
            )
        if record.outcome in (Outcome.UNIMPLEMENTED, Outcome.SKIPPED):
            reason = (record.actual or "").removeprefix("unimplemented: ")
            pytest.skip(f"{c.id} {record.outcome.value} {c.clause}: {reason}")
        raise ConformanceError(self._explain(record))

    def _explain(self, record: CaseRecord) -> str:
        c = record.case
        label = record.outcome.value
        if label == "ERROR":
            label = "ERROR (harness error: the case itself crashed)"
        lines = [
            f"{c.id} {label}",
            f"clause:      {c.clause} [{c.level.value}]",
            f"requirement: {c.requirement}",
            f"accepts:     {c.accepts}",
            f"expected:    {record.expected}",
            f"actual:      {record.actual}",
        ]
        lines.extend(f"exchange:    {ex.describe()}" for ex in record.exchanges[-3:])
        if record.traceback:
            lines.append(record.traceback.rstrip())
        if self.plugin.result is not None:
            lines.append(f"rerun:       {self.plugin.result.rerun_command(c.id)}")
        return "\n".join(lines)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str:
        if isinstance(excinfo.value, ConformanceError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.case.id} {self.case.clause}"
