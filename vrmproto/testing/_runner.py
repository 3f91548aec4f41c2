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
import re
import secrets
import shlex
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from vrmproto.client._http import describe_failure

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
from ._context import (
    MAX_RESPONSE_BYTES,
    RATE_TAG,
    Attempt,
    CaseContext,
    RateBudget,
    read_capped,
    suite_session,
)
from ._exchange import DecodeBody

__all__ = ["DISCOVERY_PATH", "EXIT_CANNOT_RUN", "SuiteCannotRun", "SuiteResult", "run_suite",
           "tool_version"]

DISCOVERY_PATH = "/.well-known/vrm"

#: Cases with this tag run before all others (in the seed's order among themselves): they
#: measure the endpoint's rate limits, and the room left under the per-address limit must not
#: depend on how many requests the cases before them happened to make — so that they give the
#: same verdict whatever the seed.
RUN_FIRST_TAG = RATE_TAG

Progress = Callable[[CaseRecord], None]
#: Called once the target answered discovery and the preflight, before the first case.
Ready = Callable[[], None]

_CONTENT_TYPE = "application/vnd.vrmproto+msgpack"
# ``host:port`` (and ``host:port/path``): http://, as ``vrm connect`` reads it.
_HOSTPORT = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}(?:/\S*)?")


#: The exit code of a run that could not test the target at all (:class:`SuiteCannotRun`).
EXIT_CANNOT_RUN = 2


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
    rate_waits: int = 0
    """How often the run waited out the target's ``Retry-After`` (a 429 to a case not about
    rate limits), and for how many seconds in all: the target was limiting this address."""
    rate_waited_s: float = 0.0

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
    on_ready: Ready | None = None,
    rate_wait_s: float = 120.0,
) -> SuiteResult:
    """Run the selected cases of ``registry`` (default: the conformance suite) against a URL.

    ``only``/``skip`` are globs matched against case ids and tags. ``seed`` fixes the case order
    and every case's ``rng``; without it one is drawn and stored in the result. ``progress`` is
    called with each record as its case finishes. ``decode_body`` overrides the registry's body
    renderer. Raises :class:`SuiteCannotRun` when the target cannot be tested at all: no
    discovery document, or an advertised inbox or history URL that is not a vrm route, or a
    target still rate limiting this address for longer than ``rate_wait_s`` (the time the run
    may spend, in all, waiting out ``Retry-After``). ``on_ready`` is called before the first case.
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
    async with suite_session(
        timeout, headers={"User-Agent": f"vrmproto-conformance/{tool_version()}"}
    ) as session:
        budget = RateBudget(rate_wait_s)
        preflight: list[str] = []  # the URL of each request before the first case
        discovery = await _fetch_discovery(session, base, timeout_per_case, budget, preflight)
        await _preflight(session, base, discovery, timeout_per_case, budget, sent=preflight)
        if on_ready is not None:
            on_ready()
        # What the cases count against the per-address limit includes the requests so far.
        state: dict[str, Any] = {"request_times": [time.monotonic()] * len(preflight)}
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
                rate_budget=budget,
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
        rate_waits=budget.waits,
        rate_waited_s=budget.waited_s,
    )


def _check_url(base_url: str) -> str:
    """The target's base URL; ``host:port`` is read as ``http://host:port``, like ``vrm
    connect`` does."""
    text = base_url.strip()
    if _HOSTPORT.fullmatch(text):
        text = "http://" + text
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # "http://[::1": an unclosed bracket
        raise SuiteCannotRun(f"{base_url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SuiteCannotRun(f"{base_url!r} is not an http:// or https:// URL (or host:port)")
    try:
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        raise SuiteCannotRun(f"{base_url!r} has an invalid port") from None
    return text.rstrip("/")


async def _probe(session: aiohttp.ClientSession, url: str, time_limit: float) -> tuple[
    int, str | None
]:  # fmt: skip
    """POST an empty body to ``url``: (status, Retry-After). Sent again when the target
    closed the connection as it was sent, as :meth:`CaseContext.request` does (§10.1-2). The
    answer is read up to :data:`MAX_RESPONSE_BYTES`, and not kept."""
    new_lost = deliveries = 0
    while True:
        attempt = Attempt()
        deliveries += 1
        try:
            async with asyncio.timeout(time_limit), session.post(
                url, data=b"", headers={"Content-Type": _CONTENT_TYPE}, allow_redirects=False,
                trace_request_ctx=attempt,
            ) as resp:
                await read_capped(resp)
                return resp.status, resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if attempt.deliver_again(exc, new_lost, deliveries):
                new_lost += not attempt.reused
                continue
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise SuiteCannotRun(f"cannot reach {url}: {reason}") from exc


async def _preflight(session: aiohttp.ClientSession, base: str, doc: Mapping[str, Any],
                     time_limit: float, budget: RateBudget, *,
                     sent: list[str]) -> None:  # fmt: skip
    """The advertised inbox and history URLs are routes of the target: each answers a POST
    with something other than 404 or 405 (§13.1-7, §12.13-3); a 429 is waited out within the
    budget, or reported as the target still limiting this address. A document without them is
    left to the discovery cases to judge."""
    doc_url = base + DISCOVERY_PATH
    for name in ("inbox", "history"):
        ref = doc.get(name)
        if not isinstance(ref, str) or not ref:
            continue
        try:
            url = urljoin(doc_url, ref)
            urlsplit(url).port  # noqa: B018 -- raises ValueError for a port out of range
        except ValueError as exc:  # "Invalid IPv6 URL", a port that is no number
            raise SuiteCannotRun(f"the {name} URL {ref!r} of {doc_url} is not a URL: "
                                 f"{exc}") from exc
        if urlsplit(url).scheme not in ("http", "https"):
            raise SuiteCannotRun(f"the {name} URL {url!r} of {doc_url} is not http(s)")
        sent.append(url)
        status, retry_after = await _probe(session, url, time_limit)
        while status == 429:
            await _wait_out(url, retry_after, budget)
            sent.append(url)
            status, retry_after = await _probe(session, url, time_limit)
        if status in (404, 405):
            raise SuiteCannotRun(
                f"the {name} URL {url} (the discovery document says {ref!r}) answers HTTP "
                f"{status}: it is not the target's {name}. Under a path or behind a proxy, the "
                "document must advertise the URLs the routes have there (spec §12.13-3)")


def _seconds(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


async def _get(session: aiohttp.ClientSession, url: str, time_limit: float) -> tuple[
    int, bytes, str | None
]:  # fmt: skip
    """GET the discovery document: (status, body, Retry-After). A body beyond
    :data:`MAX_RESPONSE_BYTES` is not read on: the suite cannot run on it."""
    try:
        async with asyncio.timeout(time_limit), session.get(url, allow_redirects=False) as resp:
            body, truncated = await read_capped(resp)
            if truncated:
                raise SuiteCannotRun(
                    f"the discovery document at {url} is larger than {MAX_RESPONSE_BYTES} "
                    "bytes (a document has at most 65,536, spec §13.1-5)")
            return resp.status, body, resp.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise SuiteCannotRun(f"cannot fetch the discovery document {url}: "
                             f"{describe_failure(exc)}") from exc


async def _wait_out(url: str, retry_after: str | None, budget: RateBudget) -> None:
    """A 429 before the first case: wait out ``Retry-After`` within the budget, or say the
    target is still limiting this address (§12.9-5)."""
    wait = _seconds(retry_after)
    if wait is None or wait > budget.left_s:
        raise SuiteCannotRun(
            f"{url} answers 429 rate_limited (Retry-After {retry_after or '?'} s): the target is "
            "still limiting this address, most likely after an earlier run; wait that long and "
            "run the suite again")
    budget.left_s -= wait
    await asyncio.sleep(wait)  # the target asked for it


async def _fetch_discovery(
    session: aiohttp.ClientSession, base: str, time_limit: float, budget: RateBudget,
    sent: list[str],
) -> Mapping[str, Any]:  # fmt: skip
    url = base + DISCOVERY_PATH
    sent.append(url)
    status, body, retry_after = await _get(session, url, time_limit)
    while status == 429:
        await _wait_out(url, retry_after, budget)
        sent.append(url)
        status, body, retry_after = await _get(session, url, time_limit)
    if status != 200:
        raise SuiteCannotRun(f"GET {url} answered HTTP {status}; expected 200 and a JSON object")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise SuiteCannotRun(f"the discovery document at {url} is not JSON: {exc}") from exc
    except RecursionError as exc:  # the parser's, on [[[[…]]]] nested past the stack
        raise SuiteCannotRun(f"the discovery document at {url} is not JSON: nested too "
                             "deeply to parse") from exc
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
