"""What a running vendor tells its operator: one log line per request, with stdlib ``logging``.

Every inbox and history request is logged once, when it is answered, on the logger
``vrmproto.server.requests``: ``event`` (``message`` for an accepted one, ``history``,
``refused`` for a 4xx answer, ``failed`` for a 5xx one), the vendor's name, the message type,
thread and sender fingerprint (as claimed: read before anything is verified), the HTTP status,
the problem code of a refusal and the latency. A refusal is an expected outcome: it is logged at
INFO, without a traceback. :func:`configure_logging` writes these (and everything else of
``vrmproto``) as human lines or JSON lines, each with a UTC timestamp, from a writer thread
of their own through a bounded queue (:mod:`vrmproto.server._logwriter`): a log stream that
stops reading never stalls the event loop; what does not fit is dropped and counted.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, TextIO

import msgpack

from vrmproto._keys import fingerprint
from vrmproto.server._logwriter import DEFAULT_QUEUE_SIZE, QueuedLines

__all__ = [
    "REQUEST_LOG",
    "JsonFormatter",
    "LineFormatter",
    "RequestLine",
    "configure_logging",
    "problem_code",
    "summarize",
]

REQUEST_LOG = logging.getLogger("vrmproto.server.requests")

#: The structured fields a request line carries (``extra={"fields": …}`` of its record).
FIELDS = ("kind", "thread", "sender", "status", "problem", "latency_ms", "client", "path")


#: At most this much of a claimed type is logged: the sender chooses it, up to the whole body.
MAX_KIND = 64


@dataclass(frozen=True, slots=True)
class Summary:
    """What a request body claims to be, read leniently; nothing here is verified."""

    kind: str | None = None
    thread: str | None = None
    sender: str | None = None


def _unpack(data: bytes) -> dict[str, Any] | None:
    try:
        value = msgpack.unpackb(data, raw=False)
    except Exception:
        return None
    return value if type(value) is dict else None


def summarize(body: bytes) -> Summary:
    """The type, thread and sender fingerprint an envelope (or a history request) claims."""
    outer = _unpack(body)
    if outer is None:
        return Summary()
    inner = outer.get("hdr", outer.get("req"))
    fields = _unpack(inner) if type(inner) is bytes else None
    if fields is None:
        return Summary()
    kind = fields.get("type")
    thread = fields.get("thread")
    sender = fields.get("from")
    return Summary(
        kind[:MAX_KIND] if type(kind) is str else ("history" if "req" in outer else None),
        thread.hex() if type(thread) is bytes else None,
        fingerprint(sender) if type(sender) is bytes and len(sender) == 32 else None,
    )


def problem_code(body: bytes) -> str | None:
    """The ``code`` of a signed problem we answered with (our own bytes; §12.3-4)."""
    outer = _unpack(body)
    inner = outer.get("body") if outer is not None else None
    fields = _unpack(inner) if type(inner) is bytes else None
    code = fields.get("code") if fields is not None else None
    return code if type(code) is str else None


@dataclass(frozen=True, slots=True)
class RequestLine:
    """One answered request, as logged."""

    vendor: str
    path: str
    client: str
    status: int
    latency_ms: float
    summary: Summary
    problem: str | None

    @property
    def event(self) -> str:
        if self.status >= 500:
            return "failed"
        if self.status >= 400:
            return "refused"
        return "history" if self.summary.kind == "history" else "message"

    def log(self) -> None:
        if not REQUEST_LOG.isEnabledFor(logging.INFO):
            return
        s = self.summary
        arrow = "✗" if self.status >= 400 else "←"
        text = (f"{arrow} {s.kind or '?':<16} thread {(s.thread or '?')[:12]}  from "
                f"{s.sender or '?'}  {self.status}"
                + (f" {self.problem}" if self.problem else "")
                + f"  {self.latency_ms:.1f} ms")  # fmt: skip
        # REQUEST_LOG.info(text, extra=…) without its look for the caller (a walk up the stack,
        # for a place that is always this one: the record names this file and function, line
        # 0): the same record otherwise, handled as Logger.info handles it.
        record = REQUEST_LOG.makeRecord(
            REQUEST_LOG.name, logging.INFO, __file__, 0, text, (), None, "log",
            extra={"vendor": self.vendor, "event": self.event, "fields": {
                "kind": s.kind, "thread": s.thread, "sender": s.sender, "status": self.status,
                "problem": self.problem, "latency_ms": round(self.latency_ms, 3),
                "client": self.client, "path": self.path,
            }},
        )  # fmt: skip
        REQUEST_LOG.handle(record)


_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text to the "."


def _timestamp(record: logging.LogRecord) -> str:
    """``2026-01-01T12:00:00.000Z``: the record's time in UTC, to the millisecond (each second
    formatted once: a busy vendor logs many lines in one). The time is cut as
    ``datetime.fromtimestamp`` cuts it: the fraction rounded to the microsecond (half to even),
    then the milliseconds of that."""
    global _second  # noqa: PLW0603 - a memo of one pure formatting
    fraction, whole = math.modf(record.created)
    micros = round(fraction * 1e6)
    seconds = int(whole)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    if _second[0] != seconds:
        moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
        _second = (seconds, moment.strftime("%Y-%m-%dT%H:%M:%S."))
    return f"{_second[1]}{micros // 1000:03d}Z"


def _traceback(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    """The record's traceback: formatted here, or already (``exc_text``: when the record was
    queued for the writer thread)."""
    if record.exc_info:
        return formatter.formatException(record.exc_info)
    return record.exc_text or None


#: What a human line must not carry as it is: C0 and C1 controls, DEL, and the Unicode line and
#: paragraph separators. A request line shows what a sender claims (its message type): a newline
#: there would forge a line of its own, an escape sequence rewrite the operator's terminal.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def one_line(text: str) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\x1b``…): one line."""
    return _CONTROLS.sub(_escape, text) if _CONTROLS.search(text) else text


class LineFormatter(logging.Formatter):
    """``2026-01-01T12:00:00.000Z INFO [Avis] ← terms.offer thread … from … 200 1.2 ms``.

    The message is one line whatever it holds (:func:`one_line`); only a traceback, which
    follows it, has lines of its own."""

    def __init__(self, vendor: str = "") -> None:
        super().__init__()
        self.vendor = vendor

    def format(self, record: logging.LogRecord) -> str:
        vendor = getattr(record, "vendor", None) or self.vendor
        where = f" [{vendor}]" if vendor else ""
        line = f"{_timestamp(record)} {record.levelname}{where} {one_line(record.getMessage())}"
        trace = _traceback(self, record)
        return line if trace is None else f"{line}\n{trace}"


#: The characters other than CR and LF at which a reader's ``splitlines`` ends a line, which
#: JSON (not ASCII-only) keeps as they are: a sender's claimed type must not cut a JSON line.
_BREAKS = re.compile("[\x85\u2028\u2029]")

#: json.dumps with arguments makes an encoder per call: one, made once.
_JSON = json.JSONEncoder(ensure_ascii=False, default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``vendor``, ``event``,
    ``message`` and the request fields that apply."""

    def __init__(self, vendor: str = "") -> None:
        super().__init__()
        self.vendor = vendor

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "vendor": getattr(record, "vendor", None) or self.vendor,
            "event": getattr(record, "event", None) or "log",
            "message": record.getMessage(),
        }
        for name, value in getattr(record, "fields", {}).items():
            if value is not None:
                data.setdefault(name, value)
        trace = _traceback(self, record)
        if trace is not None:
            data["traceback"] = trace
        line = _JSON.encode(data)
        if _BREAKS.search(line):  # JSON leaves these as they are; line readers split at them
            line = _BREAKS.sub(_json_escape, line)
        return line


def configure_logging(*, vendor: str, json_lines: bool = False, level: str = "INFO",
                      stream: TextIO | None = None, queue_size: int = DEFAULT_QUEUE_SIZE
                      ) -> logging.Handler:  # fmt: skip
    """Send ``vrmproto``'s log records to ``stream`` (default stdout), one line each, written
    by a thread of their own; at most ``queue_size`` records wait for it, more are dropped
    (and counted: :func:`vrmproto.server._logwriter.dropped_records`). Returns the handler: to
    undo, remove it from ``logging.getLogger("vrmproto")`` and ``close()`` it (which writes
    what is still queued)."""
    handler = QueuedLines(stream, queue_size)
    handler.setFormatter(JsonFormatter(vendor) if json_lines else LineFormatter(vendor))
    root = logging.getLogger("vrmproto")
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    return handler
