"""Reports a run leaves behind: ``report.json``, ``junit.xml``, ``index.html`` and replay files.

``write_reports(result, DIR)`` writes:

- ``report.json``: everything, following the versioned schema shipped beside this module
  (``report.schema.json``, ``"schema": "vrmproto-conformance-report/1"``). Request hex is capped
  at 64 KiB and response hex at 4 KiB; the replay files keep the full request bytes.
- ``junit.xml``: one ``testsuite``, one ``testcase`` per case (class name = clause section);
  FAILED and ERROR are ``failure`` elements (ERROR with ``type="ERROR"``: the case crashed), so is
  NON_STRICT under ``--strict``; SKIPPED, UNIMPLEMENTED and (without ``--strict``) NON_STRICT are
  ``skipped``, so the counts match the terminal's summary line.
- ``index.html``: one self-contained page (inline CSS, no scripts, no external resources).
- ``replay/<case-id>-<n>.bin``: the exact body of the case's n-th request, for the replay
  command ``curl … --data-binary @replay/<file> …`` (run it from the report directory).
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from ._case import CaseRecord, Outcome
from ._coverage import by_section
from ._exchange import Exchange, hexdump
from ._runner import EXIT_CANNOT_RUN, SuiteResult, tool_version

__all__ = [
    "REPORT_SCHEMA",
    "ReportPaths",
    "Transcripts",
    "cannot_run_data",
    "render_html",
    "render_junit",
    "replay_command",
    "replay_file_name",
    "report_data",
    "schema_path",
    "trimmed",
    "write_reports",
]

REPORT_SCHEMA = "vrmproto-conformance-report/1"
REQUEST_HEX_LIMIT = 64 * 1024
RESPONSE_HEX_LIMIT = 4 * 1024
_INLINE_REPLAY_LIMIT = 2 * 1024
# Headers the HTTP client adds on its own; a replay command leaves them to curl.
_CLIENT_HEADERS = frozenset(
    {"host", "content-length", "user-agent", "accept", "accept-encoding", "connection"}
)


def schema_path() -> Path:
    """Where the JSON Schema of ``report.json`` is installed."""
    return Path(__file__).with_name("report.schema.json")


def replay_file_name(case_id: str, n: int) -> str:
    """The replay file of a case's ``n``-th exchange (1-based)."""
    return f"{case_id}-{n}.bin"


def replay_command(exchange: Exchange, body_file: str | None) -> str | None:
    """A shell command that sends the exchange's request again and shows the answer's bytes.

    ``body_file`` is the path of a file holding the request body. Without one, a body of up to
    2 KiB is inlined as hex (``xxd -r -p``); a larger one cannot be replayed (``None``).
    """
    parts = ["curl", "-sS"]
    if exchange.method != "GET" or exchange.request_body:
        parts += ["-X", exchange.method]
    source = None
    if exchange.request_body:
        if body_file is not None:
            parts += ["--data-binary", shlex.quote("@" + body_file)]
        elif len(exchange.request_body) <= _INLINE_REPLAY_LIMIT:
            source = f"printf '%s' {exchange.request_body.hex()} | xxd -r -p | "
            parts += ["--data-binary", "@-"]
        else:
            return None
    for name, value in exchange.request_headers.items():
        if name.lower() not in _CLIENT_HEADERS:
            parts += ["-H", shlex.quote(f"{name}: {value}")]
    parts.append(shlex.quote(exchange.url))
    return (source or "") + " ".join(parts) + " | xxd | head"


def _replay_files(record: CaseRecord) -> list[str | None]:
    return [
        replay_file_name(record.case.id, n) if ex.request_body else None
        for n, ex in enumerate(record.exchanges, start=1)
    ]


# -- report.json -------------------------------------------------------------------------------


def report_data(result: SuiteResult, *, with_replay_files: bool = True) -> dict[str, Any]:
    """The ``report.json`` document as a dict.

    With ``with_replay_files``, replay commands read ``replay/<file>`` (as written by
    :func:`write_reports`); otherwise they inline small bodies as hex.
    """
    counts = result.counts()
    tally = result.tally()
    return {
        "schema": REPORT_SCHEMA,
        "tool": {"name": "vrmproto", "version": result.tool_version},
        "target": result.target,
        "seed": result.seed,
        "strict": result.strict,
        "only": list(result.only),
        "skip": list(result.skip),
        "started": result.started.isoformat(),
        "finished": result.finished.isoformat(),
        "discovery": _jsonable(result.discovery),
        "summary": {
            **tally,
            "total": len(result.records),
            "outcomes": {o.value: counts[o] for o in Outcome},
            "exit_code": result.exit_code(),
            "line": result.summary_line(),
        },
        "coverage": _coverage_data(result),
        "cases": [_case_data(result, r, with_replay_files) for r in _by_id(result)],
    }


def cannot_run_data(target: str, *, seed: int, strict: bool, only: Sequence[str],
                    skip: Sequence[str], error: str, at: datetime) -> dict[str, Any]:  # fmt: skip
    """The ``report.json`` document of a run that could not start (exit code 2: the target
    unreachable, or no discovery document): no case ran, and ``error`` says why — so that a
    CI job reading ``--json`` always gets one document."""
    return {
        "schema": REPORT_SCHEMA,
        "tool": {"name": "vrmproto", "version": tool_version()},
        "target": target,
        "seed": seed,
        "strict": strict,
        "only": list(only),
        "skip": list(skip),
        "started": at.isoformat(),
        "finished": at.isoformat(),
        "discovery": {},
        "error": error,
        "summary": {
            "passed": 0, "failed": 0, "skipped": 0, "total": 0,
            "outcomes": {o.value: 0 for o in Outcome},
            "exit_code": EXIT_CANNOT_RUN,
            "line": "0 passed, 0 failed, 0 skipped",  # as summary_line(): error says why
        },
        "coverage": [],
        "cases": [],
    }  # fmt: skip


def _coverage_data(result: SuiteResult) -> list[dict[str, Any]]:
    """Coverage by section: for each spec section the run's cases name, its clauses, its cases
    and how they went (counted as in the summary line; a case counts in every section it
    names)."""
    return [
        {
            "section": s.section,
            "clauses": s.clauses,
            "cases": s.cases,
            "passed": s.passed,
            "failed": s.failed,
            "skipped": s.skipped,
            "failing": s.failing,
        }
        for s in by_section(result.records, strict=result.strict)
    ]


def _by_id(result: SuiteResult) -> list[CaseRecord]:
    return sorted(result.records, key=lambda r: r.case.id)


def _case_data(result: SuiteResult, record: CaseRecord, with_files: bool) -> dict[str, Any]:
    c = record.case
    files = _replay_files(record) if with_files else [None] * len(record.exchanges)
    return {
        "id": c.id,
        "clause": c.clause,
        "covers": list(c.covers),
        "section": c.section,
        "requirement": c.requirement,
        "level": c.level.value,
        "accepts": c.accepts,
        "tags": list(c.tags),
        "outcome": record.outcome.value,
        "counts_as": record.outcome.tally(result.strict),
        "harness_error": record.outcome is Outcome.ERROR,
        "expected": record.expected,
        "actual": record.actual,
        "duration_ms": round(record.duration_ms, 3),
        "order": record.order,
        "info": (
            {"text": record.info.text, "data": _jsonable(record.info.data)}
            if record.info is not None
            else None
        ),
        "traceback": record.traceback,
        "exchanges": [
            _exchange_data(ex, None if f is None else f"replay/{f}", f)
            for ex, f in zip(record.exchanges, files, strict=True)
        ],
        "rerun": result.rerun_command(c.id),
    }


def _exchange_data(ex: Exchange, body_ref: str | None, file: str | None) -> dict[str, Any]:
    return {
        "method": ex.method,
        "url": ex.url,
        "status": ex.status,
        "error": ex.error,
        "elapsed_ms": round(ex.elapsed_ms, 3),
        "request_headers": dict(ex.request_headers),
        "request_length": len(ex.request_body),
        "request_hex": ex.request_body[:REQUEST_HEX_LIMIT].hex(),
        "request_hex_truncated": len(ex.request_body) > REQUEST_HEX_LIMIT,
        "request_decoded": ex.request_decoded,
        "response_headers": dict(ex.response_headers),
        "response_length": len(ex.response_body),
        "response_hex": ex.response_body[:RESPONSE_HEX_LIMIT].hex(),
        "response_hex_truncated": len(ex.response_body) > RESPONSE_HEX_LIMIT,
        "response_decoded": ex.response_decoded,
        "replay": replay_command(ex, body_ref),
        "replay_file": None if file is None else f"replay/{file}",
    }


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (anything unknown becomes its ``str``)."""
    return json.loads(json.dumps(value, default=str))


# -- junit.xml ---------------------------------------------------------------------------------

_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot carry (shown as ``\\xNN``)."""
    return _XML_INVALID.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def render_junit(result: SuiteResult) -> str:
    """The JUnit XML document (see the module docstring for how outcomes map)."""
    records = _by_id(result)
    failures = sum(1 for r in records if r.is_failure(result.strict))
    skipped = sum(1 for r in records if r.outcome.tally(result.strict) == "skipped")
    total_s = (result.finished - result.started).total_seconds()
    suites = ET.Element("testsuites", name="vrmproto conformance")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="vrmproto conformance",
        tests=str(len(records)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{total_s:.3f}",
        timestamp=result.started.isoformat(),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("target", result.target),
        ("seed", str(result.seed)),
        ("strict", str(result.strict).lower()),
        ("tool_version", result.tool_version),
    ):
        ET.SubElement(props, "property", name=name, value=_xml_text(value))
    for r in records:
        c = r.case
        tc = ET.SubElement(
            suite,
            "testcase",
            name=c.id,
            classname=_xml_text(c.section),
            time=f"{r.duration_ms / 1000.0:.3f}",
        )
        if r.is_failure(result.strict):
            label = "harness error" if r.outcome is Outcome.ERROR else r.outcome.value
            failure = ET.SubElement(
                tc,
                "failure",
                type=r.outcome.value,
                message=_xml_text(f"{label}: expected {r.expected}; actual {r.actual}"),
            )
            failure.text = _xml_text(_failure_text(result, r))
        elif r.outcome.tally(result.strict) == "skipped":
            reason = r.actual or r.outcome.value
            if r.outcome is Outcome.NON_STRICT:
                reason = f"NON_STRICT (a SHOULD missed; fails with --strict): {r.actual}"
            ET.SubElement(tc, "skipped", message=_xml_text(f"{r.outcome.value}: {reason}"))
        out = ET.SubElement(tc, "system-out")
        extra = f"\n{r.info.text}" if r.info is not None else ""
        also = f" (also covers {', '.join(c.covers)})" if c.covers else ""
        out.text = _xml_text(f"{c.clause}{also} [{c.level.value}] {c.requirement}{extra}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode")


def _failure_text(result: SuiteResult, r: CaseRecord) -> str:
    lines = [
        f"{r.case.clause} [{r.case.level.value}] {r.case.requirement}",
        f"accepts:  {r.case.accepts}",
        f"expected: {r.expected}",
        f"actual:   {r.actual}",
    ]
    files = _replay_files(r)
    for n, (ex, f) in enumerate(zip(r.exchanges, files, strict=True), start=1):
        lines.append(f"exchange {n}: {ex.describe()}")
        if ex.request_body:
            lines.append(hexdump(ex.request_body, limit=256))
        cmd = replay_command(ex, None if f is None else f"replay/{f}")
        if cmd:
            lines.append(f"replay: {cmd}")
    if r.traceback:
        lines.append(r.traceback)
    lines.append(f"rerun: {result.rerun_command(r.case.id)}")
    return "\n".join(lines)


# -- index.html --------------------------------------------------------------------------------

_COLOURS = {
    Outcome.PASSED: "#1a7f37",
    Outcome.INFORMATIONAL: "#0969da",
    Outcome.FAILED: "#cf222e",
    Outcome.ERROR: "#8250df",
    Outcome.NON_STRICT: "#bc4c00",
    Outcome.UNIMPLEMENTED: "#6e7781",
    Outcome.SKIPPED: "#afb8c1",
}

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 72em; padding: 0 1em; color: #1f2328; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
.meta { color: #59636e; margin: 0 0 1em; }
.meta code { color: #1f2328; }
.bar { display: flex; height: 1.6em; border-radius: 4px; overflow: hidden; margin: 1em 0 .4em; }
.bar span { color: #fff; font-size: .8em; line-height: 2em; text-align: center;
            white-space: nowrap; overflow: hidden; min-width: 2px; }
.totals { font-weight: 600; margin: 0 0 1.5em; }
.legend span { margin-right: 1em; font-size: .85em; }
table { border-collapse: collapse; width: 100%; margin-bottom: 2em; }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid #d1d9e0;
         vertical-align: top; }
th { background: #f6f8fa; }
td.id { white-space: nowrap; font-family: ui-monospace, monospace; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 3px; color: #fff;
         font-size: .8em; font-weight: 600; white-space: nowrap; }
details { border: 1px solid #d1d9e0; border-radius: 6px; margin: 0 0 1em; padding: .5em 1em; }
details[open] { background: #fbfbfc; }
summary { cursor: pointer; font-weight: 600; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; }
dt { color: #59636e; }
dd { margin: 0; white-space: pre-wrap; }
pre { background: #f6f8fa; border: 1px solid #d1d9e0; border-radius: 4px; padding: .6em;
      overflow-x: auto; font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
h3 { font-size: 1em; margin: 1em 0 .3em; }
h4 { font-size: .9em; margin: .8em 0 .2em; color: #59636e; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _badge(outcome: Outcome) -> str:
    return f'<span class="badge" style="background:{_COLOURS[outcome]}">{_e(outcome.value)}</span>'


def render_html(result: SuiteResult, *, with_replay_files: bool = True) -> str:
    """The self-contained HTML report (every value escaped)."""
    records = _by_id(result)
    counts = result.counts()
    total = max(len(records), 1)
    bar = (
        "".join(
            f'<span style="background:{_COLOURS[o]};flex-grow:{n}" '
            f'title="{_e(o.value)}: {n}">{_e(o.value)} {n}</span>'
            for o, n in counts.items()
            if n
        )
        or '<span style="background:#d1d9e0;flex-grow:1">no cases</span>'
    )
    legend = "".join(
        f"<span>{_badge(o)} {n} ({100 * n / total:.0f}%)</span>" for o, n in counts.items() if n
    )
    mode = "strict" if result.strict else "not strict (SHOULD misses are NON_STRICT)"
    rows = []
    for r in records:
        c = r.case
        short = r.actual if r.is_failure(result.strict) else c.requirement
        rows.append(
            "<tr>"
            f'<td class="id"><a href="#case-{_e(c.id)}">{_e(c.id)}</a></td>'
            f"<td>{_e(c.clause)}</td><td>{_e(c.level.value)}</td>"
            f"<td>{_badge(r.outcome)}</td><td>{_e(short or '')}</td>"
            f"<td>{r.duration_ms:.0f}&nbsp;ms</td>"
            "</tr>"
        )
    coverage_rows = "".join(
        "<tr>"
        f"<td>{_e(sec.section)}</td><td>{len(sec.clauses)}</td>"
        f'<td class="clauses">{_e(", ".join(sec.clauses))}</td><td>{len(sec.cases)}</td>'
        f"<td>{sec.passed}</td><td>{sec.failed}</td><td>{sec.skipped}</td>"
        f"<td>{_e(', '.join(sec.failing))}</td>"
        "</tr>"
        for sec in by_section(records, strict=result.strict)
    )
    shown_first = (Outcome.FAILED, Outcome.ERROR, Outcome.NON_STRICT)
    failing = [r for r in records if r.outcome in shown_first]
    others = [r for r in records if r not in failing and r.outcome is not Outcome.SKIPPED]
    details_failing = "".join(_details(result, r, True, with_replay_files) for r in failing)
    details_others = "".join(_details(result, r, False, with_replay_files) for r in others)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vrmproto conformance: {_e(result.target)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>vrmproto conformance report</h1>
<p class="meta">Target <code>{_e(result.target)}</code> · seed <code>{result.seed}</code> ·
{_e(mode)} · vrmproto {_e(result.tool_version)} ·
{_e(result.started.isoformat(timespec="seconds"))} to
{_e(result.finished.isoformat(timespec="seconds"))}</p>
<div class="bar">{bar}</div>
<p class="legend">{legend}</p>
<p class="totals" id="summary">{_e(result.summary_line())} · exit code {result.exit_code()}</p>
<h2 id="coverage">Coverage by section</h2>
<p class="meta">Each spec section the cases name: its clauses checked, the cases that check them
(a case counts in every section it names), and how they went.</p>
<table>
<thead><tr><th>Section</th><th>Clauses</th><th>Which</th><th>Cases</th><th>Passed</th>
<th>Failed</th><th>Skipped</th><th>Failing cases</th></tr></thead>
<tbody>
{coverage_rows}
</tbody>
</table>
<h2>Cases</h2>
<table>
<thead><tr><th>Id</th><th>Clause</th><th>Level</th><th>Outcome</th><th>Requirement or
failure</th><th>Time</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody>
</table>
<h2>Failures</h2>
{details_failing or "<p>None.</p>"}
<h2>Other cases</h2>
{details_others or "<p>None.</p>"}
</body>
</html>
"""


def _details(result: SuiteResult, r: CaseRecord, open_: bool, with_files: bool) -> str:
    c = r.case
    files = _replay_files(r) if with_files else [None] * len(r.exchanges)
    info = f"<dt>Info</dt><dd>{_e(r.info.text)}</dd>" if r.info is not None else ""
    parts = [
        f'<details id="case-{_e(c.id)}"{" open" if open_ else ""}>',
        f"<summary>{_e(c.id)} {_badge(r.outcome)} {_e(c.clause)}</summary>",
        "<dl>",
        f"<dt>Clause</dt><dd>{_e(c.clause)} ({_e(c.level.value)})</dd>",
        f"<dt>Also covers</dt><dd>{_e(', '.join(c.covers))}</dd>" if c.covers else "",
        f"<dt>Requirement</dt><dd>{_e(c.requirement)}</dd>",
        f"<dt>Accepts</dt><dd>{_e(c.accepts)}</dd>",
        f"<dt>Expected</dt><dd>{_e(r.expected)}</dd>",
        f"<dt>Actual</dt><dd>{_e(r.actual or '')}</dd>",
        info,
        f"<dt>Rerun</dt><dd><code>{_e(result.rerun_command(c.id))}</code></dd>",
        "</dl>",
    ]
    if r.traceback:
        parts.append(f"<h3>Harness error (the case crashed)</h3><pre>{_e(r.traceback)}</pre>")
    for n, (ex, f) in enumerate(zip(r.exchanges, files, strict=True), start=1):
        parts.append(f"<h3>Exchange {n}: {_e(ex.describe())}</h3>")
        headers = "\n".join(f"{k}: {v}" for k, v in ex.request_headers.items())
        parts.append(f"<h4>Request headers</h4><pre>{_e(headers)}</pre>")
        if ex.request_body:
            dump = hexdump(ex.request_body, limit=REQUEST_HEX_LIMIT)
            parts.append(
                f"<h4>Request body ({len(ex.request_body)} bytes), hex</h4><pre>{_e(dump)}</pre>"
            )
            parts.append(f"<h4>Request body, decoded</h4><pre>{_e(ex.request_decoded)}</pre>")
        if ex.status is not None:
            rheaders = "\n".join(f"{k}: {v}" for k, v in ex.response_headers.items())
            parts.append(
                f"<h4>Response: HTTP {ex.status}</h4><pre>{_e(rheaders)}</pre>"
                f"<h4>Response body, decoded</h4><pre>{_e(ex.response_decoded)}</pre>"
            )
            if ex.response_body:
                rdump = hexdump(ex.response_body, limit=RESPONSE_HEX_LIMIT)
                parts.append(
                    f"<h4>Response body ({len(ex.response_body)} bytes), hex</h4>"
                    f"<pre>{_e(rdump)}</pre>"
                )
        if ex.error:
            parts.append(f"<h4>Transport</h4><pre>{_e(ex.error)}</pre>")
        cmd = replay_command(ex, None if f is None else f"replay/{f}")
        if cmd:
            where = " (from the report directory)" if f is not None else ""
            parts.append(f"<h4>Replay{where}</h4><pre>{_e(cmd)}</pre>")
    parts.append("</details>\n")
    return "".join(parts)


# -- writing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportPaths:
    """The files :func:`write_reports` wrote."""

    directory: Path
    json: Path
    junit: Path
    html: Path
    replay: tuple[Path, ...]


#: Which cases keep their full transcript (exchanges, hex, replay files) in a report.
Transcripts = Literal["failures", "all"]


def trimmed(result: SuiteResult, transcripts: Transcripts) -> SuiteResult:
    """``result`` with the transcripts of passed, informational and skipped cases left out
    (``"failures"``): an all-green report stays small enough to attach to a ticket."""
    if transcripts == "all":
        return result
    quiet = (Outcome.PASSED, Outcome.INFORMATIONAL, Outcome.SKIPPED)
    records = tuple(dataclasses.replace(r, exchanges=()) if r.outcome in quiet else r
                    for r in result.records)  # fmt: skip
    return dataclasses.replace(result, records=records)


def write_reports(result: SuiteResult, directory: str | Path, *,
                  transcripts: Transcripts = "failures") -> ReportPaths:  # fmt: skip
    """Write ``report.json``, ``junit.xml``, ``index.html`` and ``replay/*.bin`` into a directory.

    The directory is created if needed; files from an earlier run are overwritten. Only the
    cases that did not pass keep their transcripts, unless ``transcripts="all"``.
    """
    result = trimmed(result, transcripts)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    replay_dir = out / "replay"
    written: list[Path] = []
    for r in result.records:
        for ex, f in zip(r.exchanges, _replay_files(r), strict=True):
            if f is None:
                continue
            replay_dir.mkdir(exist_ok=True)
            path = replay_dir / f
            path.write_bytes(ex.request_body)
            written.append(path)
    json_path = out / "report.json"
    json_path.write_text(
        json.dumps(report_data(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    junit_path = out / "junit.xml"
    junit_path.write_text(render_junit(result), encoding="utf-8")
    html_path = out / "index.html"
    html_path.write_text(render_html(result), encoding="utf-8")
    return ReportPaths(out, json_path, junit_path, html_path, tuple(written))
