"""Run the suite against one endpoint and grade every case.

The runner fetches ``{base}/.well-known/vrm`` first; if that fails there is nothing to test and
:class:`SuiteCannotRun` is raised (exit code 2). Cases then run one at a time, in an order shuffled
with the run's seed (the rate cases first, :data:`RUN_FIRST_TAG`), each under its own time limit
and with its own seeded ``rng``, so any case can be rerun alone (``--only ID --seed N``) and
behave the same.

Exit codes (:meth:`SuiteResult.exit_code`): 0 when every MUST passed (and every SHOULD, under
``--strict``), 1 when one did not or a case crashed, 2 when the suite could not run at all.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import shlex
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ._case import (
    Case,
    CaseFailed,
    CaseRecord,
    Info,
    Outcome,
    Registry,
    Tally,
    Unimplemented,
    grade_miss,
    grade_pass,
    grade_unimplemented,
    load_default_cases,
)
from ._context import CaseContext
from ._exchange import DecodeBody

__all__ = ["DISCOVERY_PATH", "SuiteCannotRun", "SuiteResult", "run_suite", "tool_version"]

DISCOVERY_PATH = "/.well-known/vrm"

#: Cases with this tag run before all others (in the seed's order among themselves): they
#: measure the endpoint's rate limits, and the room left under the per-address limit must not
#: depend on how many requests the cases before them happened to make — so that they give the
#: same verdict whatever the seed.
RUN_FIRST_TAG = "rate"

Progress = Callable[[CaseRecord], None]


class SuiteCannotRun(Exception):  # noqa: N818 - names the condition, like h2spec's messages
    """The suite could not test the target at all (exit code 2): bad URL, no discovery document."""


def tool_version() -> str:
    """The installed vrmproto version."""
    from vrmproto import __version__  # noqa: PLC0415 - avoid a cycle at import time

    return __version__


@dataclass(frozen=True)
class SuiteResult:
    """Everything one run produced; reports are rendered from this."""

    target: str
    seed: int
    strict: bool
    started: datetime
    finished: datetime
    discovery: Mapping[str, Any]
    records: tuple[CaseRecord, ...]
    """In the order the cases ran; cases left out by ``--only``/``--skip`` come last."""
    tool_version: str
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()

    def counts(self) -> dict[Outcome, int]:
        """How many cases got each outcome (every outcome present, zeros included)."""
        found = Counter(r.outcome for r in self.records)
        return {outcome: found[outcome] for outcome in Outcome}

    def tally(self, strict: bool | None = None) -> dict[Tally, int]:
        """The three summary counts: passed, failed, skipped (see :meth:`Outcome.tally`)."""
        mode = self.strict if strict is None else strict
        found = Counter(r.outcome.tally(mode) for r in self.records)
        return {"passed": found["passed"], "failed": found["failed"], "skipped": found["skipped"]}

    def failures(self, strict: bool | None = None) -> list[CaseRecord]:
        """The records that make the run fail, in run order."""
        mode = self.strict if strict is None else strict
        return [r for r in self.records if r.is_failure(mode)]

    def exit_code(self, strict: bool | None = None) -> int:
        """0 when nothing failed, 1 otherwise (``strict`` defaults to the run's own setting)."""
        return 1 if self.failures(strict) else 0

    def summary_line(self, strict: bool | None = None) -> str:
        """``N passed, N failed, N skipped``: the last line of the terminal output."""
        t = self.tally(strict)
        return f"{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped"

    def rerun_command(self, case_id: str) -> str:
        """The command that runs one case again, alone, exactly as in this run."""
        parts = ["vrm", "conformance", shlex.quote(self.target), "--only", case_id]
        parts += ["--seed", str(self.seed)]
        if self.strict:
            parts.append("--strict")
        return " ".join(parts)


async def run_suite(
    base_url: str,
    *,
    registry: Registry | None = None,
    strict: bool = False,
    only: Iterable[str] = (),
    skip: Iterable[str] = (),
    seed: int | None = None,
    timeout_per_case: float = 30.0,
    progress: Progress | None = None,
    decode_body: DecodeBody | None = None,
) -> SuiteResult:
    """Run the selected cases of ``registry`` (default: the conformance suite) against a URL.

    ``only``/``skip`` are globs matched against case ids and tags. ``seed`` fixes the case order
    and every case's ``rng``; without it one is drawn and stored in the result. ``progress`` is
    called with each record as its case finishes. ``decode_body`` overrides the registry's body
    renderer. Raises :class:`SuiteCannotRun` when the target cannot be tested at all.
    """
    reg = load_default_cases() if registry is None else registry
    only, skip = tuple(only), tuple(skip)
    try:
        selected, left_out = reg.select(only, skip)
    except ValueError as exc:
        raise SuiteCannotRun(str(exc)) from exc
    base = _check_url(base_url)
    run_seed = secrets.randbelow(2**32) if seed is None else seed
    order = list(selected)
    random.Random(run_seed).shuffle(order)  # noqa: S311 - reproducible order, not secrecy
    order.sort(key=lambda c: RUN_FIRST_TAG not in c.tags)  # stable: the seed's order within each
    decoder = decode_body or reg.decode_body
    started = datetime.now(UTC)

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_per_case)
    # A connection idle for half a second is not reused: a receiver may close idle ones after
    # its idle_timeout_ms (§10.1-2), and a request sent on one it is closing would be lost.
    connector = aiohttp.TCPConnector(limit=32, force_close=False, keepalive_timeout=0.5)
    async with aiohttp.ClientSession(
        timeout=timeout,
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": f"vrmproto-conformance/{tool_version()}"},
        auto_decompress=True,
    ) as session:
        discovery = await _fetch_discovery(session, base, timeout_per_case)
        state: dict[str, Any] = {}
        records: list[CaseRecord] = []
        for position, c in enumerate(order):
            ctx = CaseContext(
                case=c,
                base_url=base,
                discovery=discovery,
                session=session,
                rng=random.Random(f"{run_seed}:{c.id}"),  # noqa: S311 - reproducible
                state=state,
                decode_body=decoder,
            )
            record = await _run_one(c, ctx, timeout_per_case, position)
            records.append(record)
            if progress is not None:
                progress(record)

    records.extend(
        CaseRecord(
            case=c,
            outcome=Outcome.SKIPPED,
            expected=c.accepts,
            actual="not selected (--only/--skip)",
            duration_ms=0.0,
        )
        for c in left_out
    )
    return SuiteResult(
        target=base,
        seed=run_seed,
        strict=strict,
        started=started,
        finished=datetime.now(UTC),
        discovery=discovery,
        records=tuple(records),
        tool_version=tool_version(),
        only=only,
        skip=skip,
    )


def _check_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SuiteCannotRun(f"{base_url!r} is not an http:// or https:// URL")
    return base_url.rstrip("/")


async def _fetch_discovery(
    session: aiohttp.ClientSession, base: str, time_limit: float
) -> Mapping[str, Any]:
    url = base + DISCOVERY_PATH
    try:
        async with asyncio.timeout(time_limit), session.get(url, allow_redirects=False) as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise SuiteCannotRun(f"cannot fetch the discovery document {url}: {reason}") from exc
    if status != 200:
        raise SuiteCannotRun(f"GET {url} answered HTTP {status}; expected 200 and a JSON object")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise SuiteCannotRun(f"the discovery document at {url} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise SuiteCannotRun(f"the discovery document at {url} is not a JSON object")
    return doc


async def _run_one(c: Case, ctx: CaseContext, time_limit: float, position: int) -> CaseRecord:
    started = time.perf_counter()
    info: Info | None = None
    trace: str | None = None
    actual: str | None
    limit = asyncio.timeout(time_limit)
    try:
        async with limit:
            returned: object = await c.run(ctx)
    except CaseFailed as exc:
        outcome, expected, actual = grade_miss(c.level), exc.expected, exc.actual
    except Unimplemented as exc:
        outcome, expected = grade_unimplemented(c.level), c.accepts
        actual = f"unimplemented: {exc.reason}"
    except TimeoutError as exc:
        if limit.expired():
            outcome, expected = grade_miss(c.level), c.accepts
            actual = f"no result within the case time limit of {time_limit:g} s"
        else:
            outcome, expected, actual, trace = _harness_error(c, exc)
    except Exception as exc:
        outcome, expected, actual, trace = _harness_error(c, exc)
    else:
        expected = ctx.expected or c.accepts
        actual = ctx.actual
        if returned is None or isinstance(returned, Info):
            outcome = grade_pass(c.level)
            info = returned
            if info is not None and actual is None:
                actual = info.text
        else:
            outcome = Outcome.ERROR
            actual = f"harness error: the case returned {returned!r}, not None or Info"
    return CaseRecord(
        case=c,
        outcome=outcome,
        expected=expected,
        actual=actual,
        duration_ms=(time.perf_counter() - started) * 1000.0,
        exchanges=tuple(ctx.exchanges),
        info=info,
        traceback=trace,
        order=position,
    )


def _harness_error(c: Case, exc: BaseException) -> tuple[Outcome, str, str, str]:
    trace = "".join(traceback.format_exception(exc))
    return Outcome.ERROR, c.accepts, f"harness error: {type(exc).__name__}: {exc}", trace
