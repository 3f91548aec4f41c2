"""Conformance cases: what they are, how they signal a result, and where they are registered.

A case is an async function tied to one numbered spec clause::

    from vrmproto.testing import CaseContext, Level, case

    @case(id="WIRE-001", clause="§3.4-2", level=Level.MUST,
          requirement="A receiver MUST refuse a body larger than its advertised limit.",
          accepts="HTTP 413 or problem too_large", tags=("wire", "limits"))
    async def oversized_body(ctx: CaseContext) -> None:
        ex = await ctx.post("/inbox", b"\\x00" * (2 * ctx.limits["max_body"]))
        ctx.expect(ex.status == 413, expected="HTTP 413", actual=ex.describe())

How a case signals its result, and how the runner grades it (``level`` → outcome):

=========================  =========  ===========  ==============  =============
the case…                  MUST       SHOULD       OPTIONAL        INFO
=========================  =========  ===========  ==============  =============
returns (None or ``Info``) PASSED     PASSED       PASSED          INFORMATIONAL
raises ``CaseFailed``      FAILED     NON_STRICT   FAILED          INFORMATIONAL
raises ``Unimplemented``   FAILED     NON_STRICT   UNIMPLEMENTED   UNIMPLEMENTED
exceeds its time limit     FAILED     NON_STRICT   FAILED          INFORMATIONAL
raises anything else       ERROR      ERROR        ERROR           ERROR
=========================  =========  ===========  ==============  =============

A required feature cannot be "unimplemented": a MUST case that raises ``Unimplemented`` fails.
``NoResponse`` (the peer reset the connection, timed out, …) is a ``CaseFailed``. ERROR
means the case itself crashed: a bug in the suite or the case, shown with its traceback, and
counted as a failure so that CI never passes on a broken harness. SKIPPED marks cases left out
by ``--only``/``--skip``.
"""

from __future__ import annotations

import enum
import fnmatch
import importlib
import pkgutil
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ._exchange import DecodeBody, Exchange

if TYPE_CHECKING:
    from ._context import CaseContext

__all__ = [
    "DEFAULT_REGISTRY",
    "Case",
    "CaseFailed",
    "CaseRecord",
    "CaseResult",
    "CaseRun",
    "Info",
    "Level",
    "NoResponse",
    "Outcome",
    "Registry",
    "Unimplemented",
    "case",
    "load_default_cases",
]


class Level(enum.Enum):
    """How strongly the spec requires what a case checks (RFC 2119 keywords, plus INFO)."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    OPTIONAL = "OPTIONAL"
    INFO = "INFO"


Tally = Literal["passed", "failed", "skipped"]


class Outcome(enum.Enum):
    """The graded result of one case (Autobahn's grades, plus ERROR and SKIPPED)."""

    PASSED = "PASSED"
    FAILED = "FAILED"
    NON_STRICT = "NON_STRICT"
    """A SHOULD was missed: a failure only under ``--strict``."""
    UNIMPLEMENTED = "UNIMPLEMENTED"
    """An optional feature is absent."""
    INFORMATIONAL = "INFORMATIONAL"
    """A measurement; never a failure."""
    SKIPPED = "SKIPPED"
    """Not run (left out by ``--only``/``--skip``)."""
    ERROR = "ERROR"
    """The case itself crashed: a harness error, counted as a failure."""

    def tally(self, strict: bool) -> Tally:
        """Which of the summary's three counts this outcome goes into."""
        if self in (Outcome.PASSED, Outcome.INFORMATIONAL):
            return "passed"
        if self in (Outcome.FAILED, Outcome.ERROR):
            return "failed"
        if self is Outcome.NON_STRICT:
            return "failed" if strict else "skipped"
        return "skipped"

    def is_failure(self, strict: bool) -> bool:
        """True when this outcome makes the run exit 1."""
        return self.tally(strict) == "failed"


class CaseFailed(Exception):  # noqa: N818 - a signal, named for what the case reports
    """Raised by a case when the peer's behaviour is not among the accepted outcomes.

    ``expected`` says what would have passed, ``actual`` what was observed; both are shown
    verbatim in every report, so make them specific ("HTTP 413 or problem too_large" /
    "HTTP 200, receipt for id 01J…").
    """

    def __init__(self, *, expected: str, actual: str) -> None:
        super().__init__(f"expected {expected}; actual {actual}")
        self.expected = expected
        self.actual = actual


class NoResponse(CaseFailed):
    """The request got no HTTP response (connection refused or reset, timeout, bad framing).

    Not :class:`vrmproto.TransportError` (a client's failure to deliver): this one is a case's
    verdict about the peer under test, and fails the case like any :class:`CaseFailed`.

    Raised by :meth:`CaseContext.post` / :meth:`CaseContext.get` after recording the attempt.
    Uncaught, it fails the case; a case for which a dropped connection is acceptable catches it.
    """

    def __init__(self, *, expected: str, actual: str, exchange: Exchange) -> None:
        super().__init__(expected=expected, actual=actual)
        self.exchange = exchange


class Unimplemented(Exception):  # noqa: N818 - a signal, like CaseFailed
    """Raised by a case when the peer does not offer the (optional) feature under test."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Info:
    """A measurement a case returns: a sentence for people, and data for machines (JSON-able)."""

    text: str
    data: Mapping[str, Any] = field(default_factory=dict)


#: What a case's coroutine may return: an informational measurement, or nothing.
CaseResult: TypeAlias = Info
CaseRun: TypeAlias = "Callable[[CaseContext], Awaitable[CaseResult | None]]"

_ID_RE = re.compile(r"^[A-Z][A-Z0-9]*-[0-9]{3,}$")


@dataclass(frozen=True)
class Case:
    """One conformance case, tied to one spec clause.

    ``id`` is stable and never reused (``ENV-004``); ``clause`` names the spec clause
    (``§3.4-2``); ``requirement`` quotes it; ``accepts`` lists, for people, the outcomes that
    pass ("HTTP 413 or problem too_large"); ``tags`` are extra names ``--only``/``--skip``
    match. ``covers`` names further clauses the same observation also checks (a case about an
    expired message also checks the problem's HTTP status, §12.4-1): the coverage test counts
    them, and ``--list`` and the reports show them. ``clause`` stays the one the case is about.
    """

    id: str
    clause: str
    requirement: str
    level: Level
    accepts: str
    run: CaseRun = field(repr=False, compare=False)
    tags: tuple[str, ...] = ()
    covers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _ID_RE.match(self.id):
            raise ValueError(f"case id {self.id!r} must look like ENV-004 (PREFIX-NNN)")
        if not self.clause.strip():
            raise ValueError(f"case {self.id}: clause is empty")
        if not self.requirement.strip():
            raise ValueError(f"case {self.id}: requirement is empty")
        if not isinstance(self.level, Level):
            raise TypeError(f"case {self.id}: level must be a Level, not {self.level!r}")
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "covers", tuple(self.covers))
        if any(not c.strip() or c == self.clause for c in self.covers):
            raise ValueError(f"case {self.id}: covers repeats its clause or names an empty one")

    @property
    def clauses(self) -> tuple[str, ...]:
        """Every clause the case checks: its own ``clause`` first, then ``covers``."""
        return (self.clause, *self.covers)

    @property
    def section(self) -> str:
        """The clause's section (``§3.4`` for ``§3.4-2``): the JUnit class name."""
        match = re.match(r"§?\s*\d+(?:\.\d+)*", self.clause)
        return match.group(0).replace(" ", "") if match else self.clause

    def matches(self, pattern: str) -> bool:
        """Whether a glob matches this case's id or one of its tags (case-insensitive)."""
        pat = pattern.lower()
        return any(fnmatch.fnmatchcase(name.lower(), pat) for name in (self.id, *self.tags))


@dataclass(frozen=True)
class CaseRecord:
    """What happened when a case ran: its outcome, the evidence, and the transcript."""

    case: Case
    outcome: Outcome
    expected: str
    actual: str | None
    duration_ms: float
    exchanges: tuple[Exchange, ...] = ()
    info: Info | None = None
    traceback: str | None = None
    order: int | None = None
    """Position in the run (0-based); ``None`` for a case that did not run."""

    def is_failure(self, strict: bool) -> bool:
        """True when this record makes the run exit 1."""
        return self.outcome.is_failure(strict)


class Registry:
    """A set of cases, by id. ``DEFAULT_REGISTRY`` holds the suite; tests make their own.

    ``decode_body`` renders body bytes in transcripts; the protocol layer sets it on the
    default registry so that envelopes are shown field by field.
    """

    def __init__(self, *, decode_body: DecodeBody | None = None) -> None:
        self._cases: dict[str, Case] = {}
        self.decode_body = decode_body

    def add(self, new: Case) -> Case:
        """Register a case; an id may be registered once only."""
        if new.id in self._cases:
            raise ValueError(f"duplicate conformance case id {new.id}")
        self._cases[new.id] = new
        return new

    def case(
        self,
        *,
        id: str,
        clause: str,
        requirement: str,
        level: Level,
        accepts: str,
        tags: Iterable[str] = (),
        covers: Iterable[str] = (),
    ) -> Callable[[CaseRun], Case]:
        """Decorator: turn an ``async def (ctx) -> Info | None`` into a registered :class:`Case`."""

        def register(run: CaseRun) -> Case:
            return self.add(
                Case(
                    id=id,
                    clause=clause,
                    requirement=requirement,
                    level=level,
                    accepts=accepts,
                    run=run,
                    tags=tuple(tags),
                    covers=tuple(covers),
                )
            )

        return register

    def get(self, case_id: str) -> Case:
        """The case with this id (``KeyError`` if none)."""
        return self._cases[case_id]

    def __contains__(self, case_id: object) -> bool:
        return case_id in self._cases

    def __iter__(self) -> Iterator[Case]:
        return iter(sorted(self._cases.values(), key=lambda c: c.id))

    def __len__(self) -> int:
        return len(self._cases)

    def select(
        self, only: Iterable[str] = (), skip: Iterable[str] = ()
    ) -> tuple[list[Case], list[Case]]:
        """Split the cases into (selected, left out), both sorted by id.

        A case is selected when ``only`` is empty or one of its globs matches the case's id or a
        tag, and no ``skip`` glob does. Raises ``ValueError`` for an ``only`` glob that matches
        no case at all (a typo should not turn into a green run of zero cases).
        """
        only = tuple(only)
        skip = tuple(skip)
        cases = list(self)
        for pattern in only:
            if not any(c.matches(pattern) for c in cases):
                raise ValueError(f"--only {pattern!r} matches no case id or tag")
        selected: list[Case] = []
        left_out: list[Case] = []
        for c in cases:
            wanted = not only or any(c.matches(p) for p in only)
            if wanted and not any(c.matches(p) for p in skip):
                selected.append(c)
            else:
                left_out.append(c)
        return selected, left_out


#: The conformance suite. Its cases live in :mod:`vrmproto.testing.cases`, imported by
#: :func:`load_default_cases` when a run starts (so ``import vrmproto.testing`` stays cheap).
DEFAULT_REGISTRY = Registry()

_CASES_PACKAGE = "vrmproto.testing.cases"


def case(
    *,
    id: str,
    clause: str,
    requirement: str,
    level: Level,
    accepts: str,
    tags: Iterable[str] = (),
    covers: Iterable[str] = (),
    registry: Registry | None = None,
) -> Callable[[CaseRun], Case]:
    """Decorator: register a case in ``registry`` (default: :data:`DEFAULT_REGISTRY`)."""
    target = DEFAULT_REGISTRY if registry is None else registry
    return target.case(
        id=id,
        clause=clause,
        requirement=requirement,
        level=level,
        accepts=accepts,
        tags=tags,
        covers=covers,
    )


def load_default_cases() -> Registry:
    """Import :mod:`vrmproto.testing.cases` and every module in it; return the default registry.

    Case modules register themselves with :func:`case` when imported, so a new file in that
    package is picked up without further wiring. Importing twice is harmless.
    """
    try:
        package = importlib.import_module(_CASES_PACKAGE)
    except ModuleNotFoundError as exc:
        if exc.name != _CASES_PACKAGE:
            raise
        return DEFAULT_REGISTRY
    for module in pkgutil.walk_packages(getattr(package, "__path__", []), _CASES_PACKAGE + "."):
        importlib.import_module(module.name)
    return DEFAULT_REGISTRY


def grade_miss(level: Level) -> Outcome:
    """The outcome of a case at ``level`` whose peer missed the requirement (or timed out)."""
    return {
        Level.MUST: Outcome.FAILED,
        Level.SHOULD: Outcome.NON_STRICT,
        Level.OPTIONAL: Outcome.FAILED,
        Level.INFO: Outcome.INFORMATIONAL,
    }[level]


def grade_unimplemented(level: Level) -> Outcome:
    """The outcome of a case at ``level`` whose feature is absent: only optional ones may be."""
    if level in (Level.MUST, Level.SHOULD):
        return grade_miss(level)
    return Outcome.UNIMPLEMENTED


def grade_pass(level: Level) -> Outcome:
    """The outcome of a case at ``level`` that returned normally."""
    return Outcome.INFORMATIONAL if level is Level.INFO else Outcome.PASSED
