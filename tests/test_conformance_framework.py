"""The conformance suite's machinery, proved with synthetic cases against a live aiohttp server.

The protocol's own cases live in ``vrmproto/testing/cases``; here every case is made up, in an
explicit :class:`Registry`, so that each outcome, exit code and report can be produced on purpose.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import jsonschema
import msgpack
import pytest
from aiohttp import web
from click.testing import CliRunner

import vrmproto.testing
from vrmproto.testing import (
    Case,
    CaseContext,
    CaseFailed,
    CaseRecord,
    Info,
    Level,
    NoResponse,
    Outcome,
    Registry,
    SuiteCannotRun,
    SuiteResult,
    Unimplemented,
    run_suite,
    write_reports,
)
from vrmproto.testing._cli import make_command
from vrmproto.testing._exchange import Exchange, default_decode_body, hexdump
from vrmproto.testing._report import render_junit, replay_command, report_data, schema_path

pytest_plugins = ["pytester"]

DISCOVERY = {"vrm": "1", "endpoints": {"inbox": "/inbox"}, "limits": {"max_body": 1024}}
# A msgpack body whose ASCII part needs HTML escaping: {"html": "<b>&"}.
FAIL_BODY = msgpack.packb({"html": "<b>&"})
# The time limit of the cases that wait for it (the discovery fetch must fit in it too).
TIME_LIMIT = 0.5
LAST_LINE = re.compile(r"^\d+ passed, \d+ failed, \d+ skipped$")


# -- a live server on 127.0.0.1, in its own thread (usable by sync and async tests alike) -------


def _make_app() -> web.Application:
    never = asyncio.Event()

    async def discovery(_: web.Request) -> web.Response:
        return web.json_response(DISCOVERY)

    async def not_json(_: web.Request) -> web.Response:
        return web.Response(text="this is not json", content_type="application/json")

    async def not_object(_: web.Request) -> web.Response:
        return web.json_response(["a", "list"])

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=body, content_type=request.content_type)

    async def hang(_: web.Request) -> web.Response:
        await never.wait()
        return web.Response(status=204)  # pragma: no cover

    app = web.Application()
    app.router.add_get("/good/.well-known/vrm", discovery)
    app.router.add_post("/good/echo", echo)
    app.router.add_post("/good/hang", hang)
    app.router.add_get("/badjson/.well-known/vrm", not_json)
    app.router.add_get("/array/.well-known/vrm", not_object)
    return app


class LiveServer:
    """An aiohttp app served from a background thread's event loop."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        self.url = ""

    async def _start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The server's root URL; the endpoint under test is at ``{root}/good``."""
    with LiveServer(_make_app()) as live:
        yield live.url


@pytest.fixture
def base(server: str) -> str:
    return server + "/good"


def closed_port_url() -> str:
    """The URL of a port that was just closed: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- synthetic cases --------------------------------------------------------------------------


def grading_registry() -> Registry:
    """One case per grade: PASSED, FAILED, NON_STRICT, UNIMPLEMENTED, INFORMATIONAL, ERROR."""
    reg = Registry()

    @reg.case(
        id="T-001",
        clause="§1.1-1",
        requirement="An endpoint MUST echo the bytes it receives.",
        level=Level.MUST,
        accepts="the same bytes back",
        tags=("echo", "fast"),
    )
    async def echo_ok(ctx: CaseContext) -> None:
        body = bytes(ctx.rng.randrange(256) for _ in range(8))
        ex = await ctx.post("/echo", body)
        ctx.expect(
            ex.status == 200 and ex.response_body == body,
            expected="HTTP 200 and the same bytes back",
            actual=f"HTTP {ex.status}, {len(ex.response_body)} bytes",
        )

    @reg.case(
        id="T-002",
        clause="§2.3-1",
        requirement="A receiver MUST refuse a body larger than its limit.",
        level=Level.MUST,
        accepts="HTTP 413 or problem too_large",
        tags=("limits",),
    )
    async def must_miss(ctx: CaseContext) -> None:
        ex = await ctx.post("/echo", FAIL_BODY)
        ctx.expect(
            ex.status == 413,
            expected="HTTP 413 or problem too_large",
            actual=f"HTTP {ex.status} <with the body echoed>",
        )

    @reg.case(
        id="T-003",
        clause="§2.4-2",
        requirement="A receiver SHOULD send Retry-After with 429.",
        level=Level.SHOULD,
        accepts="a Retry-After header",
        tags=("limits", "slow"),
    )
    async def should_miss(ctx: CaseContext) -> None:
        ctx.fail(expected="a Retry-After header", actual="no Retry-After header")

    @reg.case(
        id="T-004",
        clause="§5.1-1",
        requirement="An endpoint MAY announce itself on the local network.",
        level=Level.OPTIONAL,
        accepts="a zeroconf record",
    )
    async def optional_absent(ctx: CaseContext) -> None:
        raise Unimplemented("no local discovery advertised")

    @reg.case(
        id="T-005",
        clause="§9.1",
        requirement="Latency of one echo is measured.",
        level=Level.INFO,
        accepts="any answer",
    )
    async def measure(ctx: CaseContext) -> Info:
        ex = await ctx.post("/echo", b"x")
        return Info(f"echo took {ex.elapsed_ms:.1f} ms", {"ms": ex.elapsed_ms})

    @reg.case(
        id="T-006",
        clause="§1.2-1",
        requirement="An endpoint MUST do something the case gets wrong.",
        level=Level.MUST,
        accepts="anything",
    )
    async def crashes(ctx: CaseContext) -> None:
        _ = {}["no such key"]

    return reg


def single(level: Level, body: Any, *, case_id: str = "T-100") -> Registry:
    """A registry holding one case at ``level`` whose run is ``body``."""
    reg = Registry()
    reg.add(
        Case(
            id=case_id,
            clause="§7.7-7",
            requirement="Synthetic requirement.",
            level=level,
            accepts="the synthetic outcome",
            run=body,
        )
    )
    return reg


def outcomes(result: SuiteResult) -> dict[str, Outcome]:
    return {r.case.id: r.outcome for r in result.records}


# -- grading and exit codes -------------------------------------------------------------------


async def test_each_signal_gets_its_outcome(base: str) -> None:
    result = await run_suite(base, registry=grading_registry(), seed=7)
    assert outcomes(result) == {
        "T-001": Outcome.PASSED,
        "T-002": Outcome.FAILED,
        "T-003": Outcome.NON_STRICT,
        "T-004": Outcome.UNIMPLEMENTED,
        "T-005": Outcome.INFORMATIONAL,
        "T-006": Outcome.ERROR,
    }
    by_id = {r.case.id: r for r in result.records}
    assert by_id["T-001"].actual == "HTTP 200, 8 bytes"  # evidence kept for a pass
    assert by_id["T-002"].expected == "HTTP 413 or problem too_large"
    assert by_id["T-002"].actual == "HTTP 200 <with the body echoed>"
    assert by_id["T-002"].exchanges[0].request_body == FAIL_BODY
    assert by_id["T-002"].exchanges[0].status == 200
    assert by_id["T-004"].actual == "unimplemented: no local discovery advertised"
    info = by_id["T-005"].info
    assert info is not None
    assert info.text.startswith("echo took")
    assert "ms" in info.data
    assert by_id["T-006"].traceback is not None
    assert "KeyError" in by_id["T-006"].traceback
    assert by_id["T-006"].actual is not None
    assert by_id["T-006"].actual.startswith("harness error: KeyError")
    assert result.exit_code(strict=False) == 1
    assert result.summary_line(strict=False) == "2 passed, 2 failed, 2 skipped"
    assert result.summary_line(strict=True) == "2 passed, 3 failed, 1 skipped"


async def _should_miss(ctx: CaseContext) -> None:
    raise CaseFailed(expected="a Retry-After header", actual="none")


async def _passes(ctx: CaseContext) -> None:
    return None


async def test_should_miss_fails_only_under_strict(base: str) -> None:
    reg = single(Level.SHOULD, _should_miss)
    reg.add(Case("T-101", "§7.7-8", "Passes.", Level.MUST, "anything", _passes))
    result = await run_suite(base, registry=reg, seed=1)
    assert outcomes(result) == {"T-100": Outcome.NON_STRICT, "T-101": Outcome.PASSED}
    assert result.exit_code() == 0
    assert result.exit_code(strict=True) == 1
    strict_result = await run_suite(base, registry=reg, seed=1, strict=True)
    assert strict_result.exit_code() == 1
    assert [r.case.id for r in strict_result.failures()] == ["T-100"]


async def _absent(ctx: CaseContext) -> None:
    raise Unimplemented("not offered")


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (Level.MUST, Outcome.FAILED),
        (Level.SHOULD, Outcome.NON_STRICT),
        (Level.OPTIONAL, Outcome.UNIMPLEMENTED),
        (Level.INFO, Outcome.UNIMPLEMENTED),
    ],
)
async def test_unimplemented_is_a_miss_for_required_features(
    base: str, level: Level, expected: Outcome
) -> None:
    result = await run_suite(base, registry=single(level, _absent))
    assert outcomes(result) == {"T-100": expected}


async def test_info_level_never_fails(base: str) -> None:
    result = await run_suite(base, registry=single(Level.INFO, _should_miss))
    assert outcomes(result) == {"T-100": Outcome.INFORMATIONAL}
    assert result.exit_code(strict=True) == 0


async def _returns_junk(ctx: CaseContext) -> Any:
    return 42


async def test_a_case_returning_junk_is_a_harness_error(base: str) -> None:
    result = await run_suite(base, registry=single(Level.MUST, _returns_junk))
    assert outcomes(result) == {"T-100": Outcome.ERROR}
    assert result.exit_code() == 1


async def _waits_forever(ctx: CaseContext) -> None:
    await asyncio.Event().wait()


async def _request_hangs(ctx: CaseContext) -> None:
    await ctx.post("/hang", b"\x01\x02")


@pytest.mark.parametrize(
    ("level", "expected"), [(Level.MUST, Outcome.FAILED), (Level.SHOULD, Outcome.NON_STRICT)]
)
async def test_a_case_over_its_time_limit_misses(
    base: str, level: Level, expected: Outcome
) -> None:
    reg = single(level, _waits_forever)
    result = await run_suite(base, registry=reg, timeout_per_case=TIME_LIMIT)
    (record,) = result.records
    assert record.outcome is expected
    assert record.actual == f"no result within the case time limit of {TIME_LIMIT:g} s"


async def test_a_hanging_request_stays_in_the_transcript(base: str) -> None:
    reg = single(Level.MUST, _request_hangs)
    result = await run_suite(base, registry=reg, timeout_per_case=TIME_LIMIT)
    (record,) = result.records
    assert record.outcome is Outcome.FAILED
    (ex,) = record.exchanges
    assert ex.status is None
    assert ex.request_body == b"\x01\x02"
    assert ex.error == "no response before the case's time limit"


async def test_no_http_response_is_a_transport_failure(base: str) -> None:
    dead = closed_port_url()
    seen: list[NoResponse] = []

    async def post_to_dead_port(ctx: CaseContext) -> None:
        try:
            await ctx.post(dead + "/inbox", b"abc")
        except NoResponse as exc:
            seen.append(exc)
            raise

    result = await run_suite(base, registry=single(Level.MUST, post_to_dead_port))
    (record,) = result.records
    assert record.outcome is Outcome.FAILED
    assert record.actual is not None
    assert record.actual.startswith(f"no HTTP response to POST {dead}/inbox")
    assert seen[0].exchange.status is None
    assert record.exchanges == (seen[0].exchange,)


# -- selection --------------------------------------------------------------------------------


def test_only_and_skip_match_ids_and_tags() -> None:
    reg = grading_registry()

    def ids(only: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> list[str]:
        return [c.id for c in reg.select(only, skip)[0]]

    assert ids() == ["T-001", "T-002", "T-003", "T-004", "T-005", "T-006"]
    assert ids(only=("T-00[12]",)) == ["T-001", "T-002"]
    assert ids(only=("limits",)) == ["T-002", "T-003"]
    assert ids(only=("t-001", "echo")) == ["T-001"]  # case-insensitive, no duplicates
    assert ids(skip=("slow", "T-00[56]")) == ["T-001", "T-002", "T-004"]
    assert ids(only=("limits",), skip=("slow",)) == ["T-002"]
    with pytest.raises(ValueError, match="matches no case"):
        reg.select(only=("NOPE-*",))


async def test_left_out_cases_are_reported_skipped(base: str) -> None:
    result = await run_suite(base, registry=grading_registry(), only=("echo",), seed=3)
    assert outcomes(result)["T-001"] is Outcome.PASSED
    skipped = [r for r in result.records if r.outcome is Outcome.SKIPPED]
    assert [r.case.id for r in skipped] == ["T-002", "T-003", "T-004", "T-005", "T-006"]
    assert all(r.order is None and not r.exchanges for r in skipped)
    assert result.exit_code() == 0
    assert result.summary_line() == "1 passed, 0 failed, 5 skipped"


async def test_an_only_glob_matching_nothing_cannot_run(base: str) -> None:
    with pytest.raises(SuiteCannotRun, match="matches no case"):
        await run_suite(base, registry=grading_registry(), only=("ENV-*",))


def test_registry_refuses_duplicate_and_malformed_ids() -> None:
    reg = single(Level.MUST, _passes)
    with pytest.raises(ValueError, match="duplicate"):
        reg.add(Case("T-100", "§1", "Again.", Level.MUST, "anything", _passes))
    with pytest.raises(ValueError, match="must look like"):
        Case("env4", "§1", "Bad id.", Level.MUST, "anything", _passes)
    assert Case("T-200", "§3.4-2", "R.", Level.MUST, "x", _passes).section == "§3.4"


# -- seeds ------------------------------------------------------------------------------------


def seeded_registry() -> Registry:
    reg = Registry()
    for n in range(1, 11):

        async def draw(ctx: CaseContext) -> None:
            ctx.state.setdefault("draws", []).append((ctx.case.id, ctx.rng.random()))

        reg.add(Case(f"S-{n:03d}", f"§8.{n}", "Draws.", Level.MUST, "anything", draw))
    return reg


def _order(result: SuiteResult) -> list[str]:
    return [r.case.id for r in result.records]


async def test_a_seed_reproduces_order_and_random_values(base: str) -> None:
    reg = seeded_registry()
    runs = []
    for seed in (11, 11, 12):
        result = await run_suite(base, registry=reg, seed=seed)
        assert result.seed == seed
        runs.append(result)
    assert _order(runs[0]) == _order(runs[1])
    assert _order(runs[0]) != _order(runs[2])
    assert sorted(_order(runs[2])) == sorted(_order(runs[0]))

    async def capture(seed: int, only: tuple[str, ...] = ()) -> dict[str, float]:
        log: list[tuple[str, float]] = []
        local = Registry()
        for c in reg:

            async def draw(ctx: CaseContext) -> None:
                log.append((ctx.case.id, ctx.rng.random()))

            local.add(Case(c.id, c.clause, c.requirement, c.level, c.accepts, draw))
        await run_suite(base, registry=local, seed=seed, only=only)
        return dict(log)

    draws = [await capture(11), await capture(11), await capture(12)]
    assert draws[0] == draws[1]
    assert draws[0]["S-004"] != draws[2]["S-004"]
    # A case gets the same values when run alone: independent of what ran before it.
    alone = await capture(11, only=("S-004",))
    assert alone == {"S-004": draws[0]["S-004"]}


async def test_rate_cases_run_first_in_the_seeds_order(base: str) -> None:
    """Issue 18: the cases that measure rate limits run before the others, so the room they find
    under the per-address limit is the same whatever the seed."""
    reg = Registry()

    async def nothing(ctx: CaseContext) -> None:
        return None

    for i in range(8):
        tags = ("rate",) if i in (2, 5) else ()
        reg.add(Case(f"R-00{i}", "§1-1", "r", Level.MUST, "a", nothing, tags=tags))
    orders = [_order(await run_suite(base, registry=reg, seed=seed)) for seed in range(6)]
    assert all(set(order[:2]) == {"R-002", "R-005"} for order in orders)
    assert len({tuple(order[:2]) for order in orders}) == 2  # shuffled among themselves
    assert len({tuple(order[2:]) for order in orders}) > 1


async def test_without_a_seed_one_is_drawn_and_kept(base: str) -> None:
    result = await run_suite(base, registry=seeded_registry())
    again = await run_suite(base, registry=seeded_registry(), seed=result.seed)
    assert _order(result) == _order(again)
    assert f"--seed {result.seed}" in result.rerun_command("S-001")


# -- the suite cannot run ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/nothing-here", "answered HTTP 404"),
        ("/badjson", "is not JSON"),
        ("/array", "is not a JSON object"),
    ],
)
async def test_a_bad_discovery_document_cannot_run(server: str, path: str, message: str) -> None:
    with pytest.raises(SuiteCannotRun, match=message):
        await run_suite(server + path, registry=grading_registry())


async def test_an_unreachable_target_cannot_run() -> None:
    with pytest.raises(SuiteCannotRun, match="cannot fetch the discovery document"):
        await run_suite(closed_port_url(), registry=grading_registry())
    with pytest.raises(SuiteCannotRun, match="not an http"):
        await run_suite("ftp://example.org", registry=grading_registry())
    with pytest.raises(SuiteCannotRun, match="is not a URL"):  # was ValueError: a traceback
        await run_suite("http://[::1", registry=grading_registry())


def test_cli_exits_2_when_the_suite_cannot_run(server: str) -> None:
    runner = CliRunner()
    command = make_command(grading_registry())
    unreachable = runner.invoke(command, [closed_port_url()])
    assert unreachable.exit_code == 2, unreachable.output
    assert "cannot fetch the discovery document" in unreachable.stderr
    missing = runner.invoke(command, [server + "/nothing-here"])
    assert missing.exit_code == 2, missing.output
    assert "HTTP 404" in missing.stderr
    assert runner.invoke(command, []).exit_code == 2  # no URL: a usage error


# -- the command line and the terminal ---------------------------------------------------------


def test_cli_terminal_output_and_exit_codes(base: str) -> None:
    runner = CliRunner()
    command = make_command(grading_registry())
    result = runner.invoke(command, [base, "--seed", "5"])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[-1] == "2 passed, 2 failed, 2 skipped"
    assert LAST_LINE.match(lines[-1])
    assert "seed 5" in lines[1]
    # one line per case as it finishes
    for case_id, outcome in [("T-001", "PASSED"), ("T-002", "FAILED"), ("T-006", "ERROR")]:
        assert any(line.startswith(outcome) and case_id in line for line in lines)
    # failure details: clause, requirement, expected/actual, bytes and a replay command
    out = result.stdout
    assert "── T-002 FAILED §2.3-1 [MUST]" in out
    assert "requirement: A receiver MUST refuse a body larger than its limit." in out
    assert "expected:    HTTP 413 or problem too_large" in out
    assert "actual:      HTTP 200 <with the body echoed>" in out
    assert hexdump(FAIL_BODY).splitlines()[0] in out
    assert '"html": "<b>&"' in out
    assert f"printf '%s' {FAIL_BODY.hex()} | xxd -r -p | curl" in out
    assert "harness error" in out
    assert f"rerun: vrm conformance {base} --only T-002 --seed 5" in out

    strict = runner.invoke(command, [base, "--seed", "5", "--strict"])
    assert strict.exit_code == 1
    assert strict.stdout.splitlines()[-1] == "2 passed, 3 failed, 1 skipped"

    passing = runner.invoke(command, [base, "--only", "echo", "--only", "T-005"])
    assert passing.exit_code == 0, passing.output
    assert passing.stdout.splitlines()[-1] == "2 passed, 0 failed, 4 skipped"

    should_only = runner.invoke(command, [base, "--only", "T-003"])
    assert should_only.exit_code == 0
    assert runner.invoke(command, [base, "--only", "T-003", "--strict"]).exit_code == 1
    assert runner.invoke(command, [base, "--only", "NOPE-*"]).exit_code == 2


def test_cli_list(base: str) -> None:
    runner = CliRunner()
    command = make_command(grading_registry())
    table = runner.invoke(command, ["--list"])
    assert table.exit_code == 0, table.output
    for case_id in ("T-001", "T-006"):
        assert case_id in table.stdout
    assert "MUST" in table.stdout
    assert "SHOULD" in table.stdout
    listed = runner.invoke(command, ["--list", "--json", "--only", "limits"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert [d["id"] for d in data] == ["T-002", "T-003"]
    assert data[0] == {
        "id": "T-002",
        "clause": "§2.3-1",
        "level": "MUST",
        "requirement": "A receiver MUST refuse a body larger than its limit.",
        "accepts": "HTTP 413 or problem too_large",
        "tags": ["limits"],
    }


def test_cli_json_output_follows_the_schema(base: str) -> None:
    result = CliRunner().invoke(make_command(grading_registry()), [base, "--json", "--seed", "9"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    _validate(data)
    assert data["seed"] == 9
    assert data["summary"]["line"] == "2 passed, 2 failed, 2 skipped"


# -- reports ----------------------------------------------------------------------------------


def _validate(data: dict[str, Any]) -> None:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(data)


@pytest.fixture
def report_dir(base: str, tmp_path: Path) -> Path:
    result = CliRunner().invoke(
        make_command(grading_registry()), [base, "--seed", "5", "--report", str(tmp_path / "r")]
    )
    assert result.exit_code == 1, result.output
    assert f"--data-binary @{tmp_path / 'r'}/replay/T-002-1.bin" in result.stdout
    return tmp_path / "r"


def test_report_json_validates_against_its_schema(report_dir: Path, base: str) -> None:
    data = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    _validate(data)
    assert data["schema"] == "vrmproto-conformance-report/1"
    assert data["target"] == base
    assert data["seed"] == 5
    assert data["strict"] is False
    assert data["discovery"] == DISCOVERY
    assert data["summary"]["outcomes"]["FAILED"] == 1
    assert data["summary"]["exit_code"] == 1
    cases = {c["id"]: c for c in data["cases"]}
    failed = cases["T-002"]
    assert failed["outcome"] == "FAILED"
    assert failed["section"] == "§2.3"
    assert failed["exchanges"][0]["request_hex"] == FAIL_BODY.hex()
    assert failed["exchanges"][0]["status"] == 200
    assert failed["exchanges"][0]["replay"] == (
        f"curl -sS -X POST --data-binary @replay/T-002-1.bin "
        f"-H 'Content-Type: application/vnd.vrmproto+msgpack' {base}/echo | xxd | head"
    )
    assert failed["rerun"] == f"vrm conformance {base} --only T-002 --seed 5"
    assert cases["T-006"]["harness_error"] is True
    assert cases["T-003"]["counts_as"] == "skipped"
    assert (report_dir / "replay" / "T-002-1.bin").read_bytes() == FAIL_BODY


def test_report_json_caps_response_hex_at_4_kib() -> None:
    big = Exchange("POST", "http://x/", {}, b"\x00" * 70_000, 200, {}, b"\xff" * 10_000)

    async def run(ctx: CaseContext) -> None:
        return None

    c = Case("T-300", "§1", "R.", Level.MUST, "x", run)
    now = datetime.now(UTC)
    record = CaseRecord(c, Outcome.PASSED, "x", None, 1.0, (big,))
    result = SuiteResult("http://x", 1, False, now, now, {}, (record,), "0")
    data = report_data(result)
    _validate(data)
    ex = data["cases"][0]["exchanges"][0]
    assert len(ex["response_hex"]) == 8192
    assert ex["response_hex_truncated"] is True
    assert ex["request_hex_truncated"] is True
    assert ex["request_length"] == 70_000


def test_junit_xml_counts_failures_and_skips(report_dir: Path) -> None:
    root = ET.parse(report_dir / "junit.xml").getroot()
    (suite,) = root.findall("testsuite")
    assert suite.get("tests") == "6"
    assert suite.get("failures") == "2"
    assert suite.get("skipped") == "2"
    cases = {tc.get("name"): tc for tc in suite.findall("testcase")}
    assert set(cases) == {"T-001", "T-002", "T-003", "T-004", "T-005", "T-006"}
    assert len(suite.findall("testcase/failure")) == 2
    assert len(suite.findall("testcase/skipped")) == 2
    failure = cases["T-002"].find("failure")
    assert failure is not None
    assert failure.get("type") == "FAILED"
    assert "HTTP 413 or problem too_large" in (failure.get("message") or "")
    assert cases["T-002"].get("classname") == "§2.3"
    error = cases["T-006"].find("failure")
    assert error is not None
    assert error.get("type") == "ERROR"
    assert (error.get("message") or "").startswith("harness error")
    out = cases["T-001"].find("system-out")
    assert out is not None
    assert "An endpoint MUST echo the bytes it receives." in (out.text or "")


async def test_junit_counts_non_strict_as_failure_under_strict(base: str) -> None:
    result = await run_suite(base, registry=grading_registry(), strict=True, seed=1)
    suite = ET.fromstring(render_junit(result)).find("testsuite")
    assert suite is not None
    assert (suite.get("failures"), suite.get("skipped")) == ("3", "1")
    types = sorted(f.get("type") or "" for f in suite.findall("testcase/failure"))
    assert types == ["ERROR", "FAILED", "NON_STRICT"]


def test_index_html_shows_failures_escaped(report_dir: Path) -> None:
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "T-002" in page
    assert "HTTP 413 or problem too_large" in page
    assert "HTTP 200 &lt;with the body echoed&gt;" in page  # actual, escaped
    assert html.escape(hexdump(FAIL_BODY)) in page  # request bytes, escaped
    assert "&lt;b&gt;&amp;" in page
    assert "<b>&" not in page
    assert "<with the body" not in page
    assert "--data-binary @replay/T-002-1.bin" in page
    assert "2 passed, 2 failed, 2 skipped" in page
    # self-contained: no scripts, no external resources
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_index_html_renders_in_headless_chromium(report_dir: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip(
            "chromium not installed (apt-get install chromium; .ci/run installs it): "
            "HTML report not rendered"
        )
    page = (report_dir / "index.html").resolve()
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    dom = proc.stdout
    assert "T-002" in dom
    assert "FAILED" in dom
    assert "HTTP 413 or problem too_large" in dom


def test_replay_command_sends_the_same_bytes(base: str, tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("xxd") is None:
        pytest.skip("curl and xxd are needed to run a replay command")
    body = b"\x00\x01<&>'\"\xff" * 3
    ex = Exchange("POST", base + "/echo", {"Content-Type": "application/msgpack"}, body, 200)
    inline = replay_command(ex, None)
    (tmp_path / "body.bin").write_bytes(body)
    from_file = replay_command(ex, "body.bin")
    assert inline is not None
    assert from_file is not None
    expected = subprocess.run(["xxd"], input=body, capture_output=True, check=True).stdout.decode()
    for command in (inline, from_file):
        out = subprocess.run(
            command,
            shell=True,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert out.stdout == expected


# -- body rendering ---------------------------------------------------------------------------


def test_default_decoder() -> None:
    assert default_decode_body(b"") == "(empty body)"
    assert default_decode_body(b'{"problem":"too_large"}') == '{\n  "problem": "too_large"\n}'
    assert default_decode_body(b"plain text") == "plain text"
    packed = msgpack.packb({"id": b"\x01\x02", "n": [1, True, None]})
    rendered = default_decode_body(packed)
    assert rendered.startswith("msgpack {")
    assert "\"id\": h'0102' (2 bytes)" in rendered
    # a duplicate key must stay visible (plain dicts would hide it)
    dup = b"\x82\xa1a\x01\xa1a\x02"
    assert default_decode_body(dup).count("# DUPLICATE KEY") == 2
    # trailing bytes, deep nesting and length bombs are reported, never raised
    assert "ExtraData" in default_decode_body(packed + b"\xc0")
    assert "not decodable" in default_decode_body(b"\x91" * 5000)
    assert "not decodable" in default_decode_body(b"\xdd\xff\xff\xff\xff")
    assert "not decodable" in default_decode_body(b"\xff\xfe\xfd")


async def test_the_registry_decoder_renders_transcripts(base: str) -> None:
    reg = single(Level.MUST, _posts)
    reg.decode_body = lambda data: f"<{len(data)} protocol bytes>"
    result = await run_suite(base, registry=reg)
    (ex,) = result.records[0].exchanges
    assert ex.request_decoded == "<3 protocol bytes>"
    assert ex.response_decoded == "<3 protocol bytes>"


async def _posts(ctx: CaseContext) -> None:
    await ctx.post("/echo", b"abc")


# -- the public surface -----------------------------------------------------------------------


def test_public_api() -> None:
    assert set(vrmproto.testing.__all__) == {
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
    }
    assert callable(write_reports)
    for name in vrmproto.testing.__all__:
        assert hasattr(vrmproto.testing, name)


def test_python_dash_m_lists_the_default_suite() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vrmproto.testing", "--list", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), list)


# -- the pytest plugin ------------------------------------------------------------------------


def test_plugin_is_inert_without_its_option(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    assert manager.has_plugin("vrmproto")  # loaded through the pytest11 entry point…
    assert not manager.has_plugin("vrmproto-conformance-items")  # …and doing nothing


PLUGIN_CONFTEST = textwrap.dedent(
    """
    from vrmproto.testing import CaseContext, Info, Level, Registry, Unimplemented

    REG = Registry()

    @REG.case(id="P-001", clause="§1-1", requirement="Echo.", level=Level.MUST,
              accepts="bytes back", tags=("echo",))
    async def ok(ctx: CaseContext) -> None:
        ex = await ctx.post("/echo", b"hi")
        ctx.expect(ex.response_body == b"hi", expected="hi", actual=repr(ex.response_body))

    @REG.case(id="P-002", clause="§1-2", requirement="Must fail.", level=Level.MUST,
              accepts="HTTP 413")
    async def bad(ctx: CaseContext) -> None:
        ctx.fail(expected="HTTP 413", actual="HTTP 200")

    @REG.case(id="P-003", clause="§1-3", requirement="Should.", level=Level.SHOULD,
              accepts="a header")
    async def should(ctx: CaseContext) -> None:
        ctx.fail(expected="a header", actual="none")

    @REG.case(id="P-004", clause="§1-4", requirement="May.", level=Level.OPTIONAL,
              accepts="a feature")
    async def absent(ctx: CaseContext) -> None:
        raise Unimplemented("not offered")

    @REG.case(id="P-005", clause="§1-5", requirement="Measured.", level=Level.INFO,
              accepts="anything")
    async def info(ctx: CaseContext) -> Info:
        return Info("measured", {"n": 1})

    def pytest_vrm_conformance_registry(config):
        return REG
    """
)


@pytest.fixture
def plugin_dir(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project that uses the plugin. Its pytest runs in this process (``runpytest_inprocess``:
    a run in a subprocess spends a second starting Python and pytest), and loads the plugin
    through its ``pytest11`` entry point as a subprocess would."""
    # pytest-asyncio, installed beside, warns about this option when the project leaves it unset
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    return pytester


def test_plugin_collects_nothing_without_its_option(plugin_dir: pytest.Pytester) -> None:
    result = plugin_dir.runpytest_inprocess("--collect-only", "-q")
    result.assert_outcomes()
    collected = [line for line in result.outlines if "::" in line]
    assert collected == ["test_plain.py::test_plain"]
    run = plugin_dir.runpytest_inprocess("-q")
    run.assert_outcomes(passed=1)


def test_plugin_turns_cases_into_items(plugin_dir: pytest.Pytester, base: str) -> None:
    listing = plugin_dir.runpytest_inprocess("--collect-only", "-q", "--vrm-conformance", base)
    collected = [line for line in listing.outlines if "::" in line]
    assert collected == [
        "test_plain.py::test_plain",
        *[f"vrm-conformance::P-00{n}" for n in range(1, 6)],
    ]
    result = plugin_dir.runpytest_inprocess("-rA", "--vrm-conformance", base)
    result.assert_outcomes(passed=3, failed=1, skipped=2)
    result.stdout.fnmatch_lines(["*P-002 FAILED*", "*expected:    HTTP 413*", "*NON_STRICT*"])
    strict = plugin_dir.runpytest_inprocess("--vrm-conformance", base, "--vrm-strict")
    strict.assert_outcomes(passed=3, failed=2, skipped=1)
    selected = plugin_dir.runpytest_inprocess("--vrm-conformance", base, "-k", "echo")
    selected.assert_outcomes(passed=1, deselected=5)


def test_plugin_items_fail_when_the_suite_cannot_run(plugin_dir: pytest.Pytester) -> None:
    result = plugin_dir.runpytest_inprocess("--vrm-conformance", closed_port_url(), "-k", "P-001")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["*the suite cannot run*"])
