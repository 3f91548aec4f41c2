"""A request line is the record ``REQUEST_LOG.info`` made, formatted as before — built without
the look for its caller, its timestamp formatted once a second (vrmproto/server/_logging.py)."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

from _logger_reset import logging_as_it_was  # noqa: F401 -- autouse
from hypothesis import given
from hypothesis import strategies as st

from vrmproto.server._logging import (
    REQUEST_LOG,
    JsonFormatter,
    LineFormatter,
    RequestLine,
    Summary,
    _timestamp,
    configure_logging,
)


def _old_timestamp(created: float) -> str:
    moment = dt.datetime.fromtimestamp(created, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.integers(min_value=0, max_value=4_102_444_800_000), st.integers(0, 999),
       st.floats(min_value=0, max_value=4_102_444_800))  # fmt: skip
def test_a_timestamp_is_the_one_formatted_before(ms: int, micros: int, any_time: float) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    for created in (ms / 1000, (ms * 1000 + micros) / 1_000_000, any_time, 1.001, 0.9999996):
        record.created = created
        assert _timestamp(record) == _old_timestamp(created)


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _line(status: int = 200, problem: str | None = None) -> RequestLine:
    summary = Summary("data.share", "ab" * 16, "fp-1234")
    return RequestLine("Corner Shop", "/vrm/inbox", "10.0.0.7", status, 1.25, summary, problem)


def test_a_request_line_is_the_record_logger_info_made() -> None:
    keep = _Keep()
    REQUEST_LOG.addHandler(keep)
    level = REQUEST_LOG.level
    REQUEST_LOG.setLevel(logging.INFO)
    try:
        line = _line(400, "malformed")
        line.log()
        REQUEST_LOG.info("reference", extra={"vendor": "Corner Shop", "event": "refused"})
    finally:
        REQUEST_LOG.removeHandler(keep)
        REQUEST_LOG.setLevel(level)
    got, reference = keep.records
    assert got.getMessage() == (
        "✗ data.share       thread abababababab  from fp-1234  400 malformed  1.2 ms"
    )
    for name in ("name", "levelno", "levelname", "args", "exc_info", "exc_text", "stack_info",
                 "process", "thread", "threadName"):  # fmt: skip
        assert getattr(got, name) == getattr(reference, name), name
    assert got.filename == "_logging.py"
    assert got.funcName == "log"
    assert got.vendor == "Corner Shop"  # type: ignore[attr-defined]
    assert got.event == "refused"  # type: ignore[attr-defined]
    assert got.fields == {  # type: ignore[attr-defined]
        "kind": "data.share", "thread": "ab" * 16, "sender": "fp-1234", "status": 400,
        "problem": "malformed", "latency_ms": 1.25, "client": "10.0.0.7", "path": "/vrm/inbox",
    }  # fmt: skip


def test_a_request_line_is_not_made_below_its_level() -> None:
    keep = _Keep()
    REQUEST_LOG.addHandler(keep)
    level = REQUEST_LOG.level
    REQUEST_LOG.setLevel(logging.WARNING)
    try:
        _line().log()
    finally:
        REQUEST_LOG.removeHandler(keep)
        REQUEST_LOG.setLevel(level)
    assert keep.records == []


def test_json_and_human_lines_as_before() -> None:
    stream = io.StringIO()
    handler = configure_logging(vendor="Corner Shop", json_lines=True, stream=stream)
    try:
        _line().log()
    finally:
        logging.getLogger("vrmproto").removeHandler(handler)
        handler.close()  # writes what its thread still holds
    data = json.loads(stream.getvalue())
    assert data.pop("ts").endswith("Z")
    assert data == {
        "level": "info", "logger": "vrmproto.server.requests", "vendor": "Corner Shop",
        "event": "message", "kind": "data.share", "thread": "ab" * 16, "sender": "fp-1234",
        "status": 200, "latency_ms": 1.25, "client": "10.0.0.7", "path": "/vrm/inbox",
        "message": "← data.share       thread abababababab  from fp-1234  200  1.2 ms",
    }  # fmt: skip
    record = logging.LogRecord("vrmproto.x", logging.INFO, __file__, 1, "é ☎ %s", ("x",), None)
    record.created = 1_700_000_000.5
    assert json.loads(JsonFormatter("V").format(record))["message"] == "é ☎ x"
    assert "é ☎ x" in JsonFormatter("V").format(record)  # not escaped, as before
    assert LineFormatter("V").format(record) == "2023-11-14T22:13:20.500Z INFO [V] é ☎ x"
