"""vrmproto.testing: the conformance suite, and the kit to write and run its cases.

Point it at an endpoint with ``vrm conformance URL`` (or ``python -m vrmproto.testing URL``, or
``pytest --vrm-conformance URL``). Each case is tied to one numbered spec clause and graded by
level: a MUST miss fails the run, a SHOULD miss is NON_STRICT (a failure only with ``--strict``),
an absent optional feature is UNIMPLEMENTED, a measurement is INFORMATIONAL. Reports:
``report.json`` (versioned schema), ``junit.xml`` and a self-contained ``index.html``.

Writing a case::

    from vrmproto.testing import CaseContext, Level, case

    @case(id="WIRE-001", clause="§3.4-2", level=Level.MUST,
          requirement="A receiver MUST refuse a body larger than its advertised limit.",
          accepts="HTTP 413 or problem too_large", tags=("wire", "limits"))
    async def oversized_body(ctx: CaseContext) -> None:
        ex = await ctx.post("/inbox", b"\\x00" * (2 * ctx.limits["max_body"]))
        ctx.expect(ex.status == 413, expected="HTTP 413", actual=ex.describe())

The cases of the suite live in :mod:`vrmproto.testing.cases`, imported when a run starts.

For testing a client without sockets, :class:`MemoryTransport` delivers a customer's requests to
in-process vendor endpoints (:mod:`vrmproto.testing.transport`); for the two protocol engines
back to back without any endpoint, :mod:`vrmproto.testing.pair`.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from ._case import (
        DEFAULT_REGISTRY,
        Case,
        CaseFailed,
        CaseRecord,
        Info,
        Level,
        NoResponse,
        Outcome,
        Registry,
        Unimplemented,
        case,
    )
    from ._context import CaseContext
    from ._exchange import Exchange
    from ._report import write_reports
    from ._runner import SuiteCannotRun, SuiteResult, run_suite
    from .transport import MemoryTransport

__all__ = [
    "DEFAULT_REGISTRY",
    "Case",
    "CaseContext",
    "CaseFailed",
    "CaseRecord",
    "Exchange",
    "Info",
    "Level",
    "MemoryTransport",
    "NoResponse",
    "Outcome",
    "Registry",
    "SuiteCannotRun",
    "SuiteResult",
    "Unimplemented",
    "case",
    "run_suite",
    "write_reports",
]

#: Where each public name lives. They are imported on first use (PEP 562): pytest loads
#: :mod:`vrmproto.testing.pytest_plugin`, and so this package, in every run of every suite where
#: vrmproto is installed, and without ``--vrm-conformance`` it must not pay for the HTTP stack,
#: the server and the client.
_HOMES = {
    **dict.fromkeys(("DEFAULT_REGISTRY", "Case", "CaseFailed", "CaseRecord", "Info", "Level",
                     "NoResponse", "Outcome", "Registry", "Unimplemented", "case"), "._case"),
    "CaseContext": "._context",
    "Exchange": "._exchange",
    "write_reports": "._report",
    **dict.fromkeys(("SuiteCannotRun", "SuiteResult", "run_suite"), "._runner"),
    "MemoryTransport": ".transport",
}  # fmt: skip


def __getattr__(name: str) -> _Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
