"""What a person types, read into protocol values: terms, money, dates, durations, fields.

Each parser raises :class:`click.BadParameter` (or ``ValueError``) with a sentence saying what
was expected, so the command line reports it as a usage error (exit code 2).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import click

from vrmproto._errors import ProtocolError
from vrmproto._fields import check_fields, dump_record, load_record
from vrmproto._messages import FieldsContent, Intentcast, Money, TermsOffer
from vrmproto._vocab import ROSTER, ParamValue, Term, TermRef, get_term, latest
from vrmproto.cli._currencies import check_currency
from vrmproto.cli._errors import EXIT_USAGE, CliError

T = TypeVar("T")

#: The fewest leading characters of an id (an offer's, an intentcast's) a person may type.
MIN_ID_PREFIX = 4

__all__ = [
    "MIN_ID_PREFIX",
    "TIME_MAX_MS",
    "by_prefix",
    "check_intentcast",
    "check_note",
    "check_text",
    "fields_problem",
    "intentcast_problem",
    "parse_date",
    "parse_duration",
    "parse_fields",
    "parse_money",
    "parse_term",
    "parse_terms",
    "parse_until",
    "term_spec",
    "text_problem",
    "utc_text",
]

_FIELD_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
_DAY_MS = 86_400_000
#: 400 Gregorian years, in ms: the calendar repeats after them (see :func:`utc_text`).
_CYCLE_MS = 146_097 * _DAY_MS
#: 10000-01-01T00:00:00Z in ms, the first moment :mod:`datetime` cannot hold.
_DATETIME_END_MS = 253_402_300_800_000
#: The latest time a message can carry: its ints stop at 2^53 - 1 (§3.2, §5.1).
TIME_MAX_MS = 2**53 - 1
#: Unit words → ms; a month is 30 days and a year 365 (a duration, not a calendar step).
_UNITS: dict[str, int] = {
    **dict.fromkeys(("ms", "msec", "millisecond", "milliseconds"), 1),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1000),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60_000),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3_600_000),
    **dict.fromkeys(("d", "day", "days"), _DAY_MS),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), 7 * _DAY_MS),
    **dict.fromkeys(("mo", "month", "months"), 30 * _DAY_MS),
    **dict.fromkeys(("y", "yr", "yrs", "year", "years"), 365 * _DAY_MS),
}
_PART_RE = re.compile(r"(\d+)\s*([a-z]*)\s*,?\s*")
_ISO_RE = re.compile(
    r"p(?:(?P<y>\d+)y)?(?:(?P<mo>\d+)m)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?"
    r"(?:t(?:(?P<h>\d+)h)?(?:(?P<mi>\d+)m)?(?:(?P<s>\d+(?:[.,]\d{1,3})?)s)?)?"
)
_ISO_MS = {"y": 365 * _DAY_MS, "mo": 30 * _DAY_MS, "w": 7 * _DAY_MS, "d": _DAY_MS,
           "h": 3_600_000, "mi": 60_000}  # fmt: skip
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[t ].*)?")
_MONEY_RE = re.compile(
    r"(?:(?P<c1>[A-Za-z]{3})\s*)?(?P<amount>\d+(?:\.\d+)?)(?:\s*(?P<c2>[A-Za-z]{3}))?"
)


def _iso_duration(text: str) -> int | None:
    """``P30D``, ``PT1H30M``, ``P1W``, ``P1Y2M10DT2H`` (ISO 8601) → ms; None if not one."""
    m = _ISO_RE.fullmatch(text)
    if m is None or text in ("p", "pt") or text.endswith("t"):
        return None
    total = sum(int(m.group(k)) * unit for k, unit in _ISO_MS.items() if m.group(k))
    if m.group("s"):
        total += round(float(m.group("s").replace(",", ".")) * 1000)
    return total


def _compound(text: str, default_unit: str) -> int | None:
    """``1h30m``, ``2 weeks``, ``1 day, 12 hours``, ``90`` (in ``default_unit``) → ms."""
    total, pos, parts = 0, 0, 0
    while pos < len(text):
        m = _PART_RE.match(text, pos)
        if m is None:
            return None
        unit = _UNITS.get(m.group(2) or default_unit)
        if unit is None or (not m.group(2) and parts):  # a bare number only on its own
            return None
        total, pos, parts = total + int(m.group(1)) * unit, m.end(), parts + 1
    return total if parts else None


def parse_duration(text: str, *, default_unit: str = "s", now_ms: int | None = None) -> int:
    """How long, in ms: ``30d``, ``12h``, ``1h30m``, ``2 weeks``, ``P30D``, ``PT1H30M``, a bare
    number of ``default_unit``, or a date (``2027-01-01``, an ISO 8601 date-time): the time from
    now until then.
    """
    raw = text.strip().lower()
    now = now_ms if now_ms is not None else int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    if _DATE_RE.fullmatch(raw):
        left = parse_date(text) - now
        if left <= 0:
            raise click.BadParameter(f"{text!r} is not in the future")
        return left
    total = _iso_duration(raw) if raw.startswith("p") else _compound(raw, default_unit)
    if total == 0:  # it said "'0s' is not a duration"
        raise click.BadParameter(f"{text!r} is no time at all: give more than 0")
    if total is None or total < 0:
        raise click.BadParameter(
            f"{text!r} is not a duration; write it like 30d, 1h30m, 2 weeks, P30D or a date "
            "(2027-01-01)"
        )
    if total > TIME_MAX_MS - now:  # else the message could not carry it (§5.1)
        raise click.BadParameter(
            f"{text!r} is too long: it ends after {format_date(TIME_MAX_MS)}, the last day "
            "a message can name"
        )
    return total


def parse_until(text: str, now_ms: int, *, default_unit: str = "s") -> int:
    """When a time given as in :func:`parse_duration` ends, in ms since the epoch: a date is
    that very moment, whenever it is read; a duration runs from ``now_ms``."""
    if _DATE_RE.fullmatch(text.strip().lower()):
        parse_duration(text, default_unit=default_unit, now_ms=now_ms)  # in the future?
        return parse_date(text)
    return now_ms + parse_duration(text, default_unit=default_unit, now_ms=now_ms)


def parse_money(text: str) -> Money:
    """``300USD``, ``300 USD``, ``289.50 usd``, ``USD 300`` or ``5000 JPY`` →
    :class:`~vrmproto.Money`, in the currency's minor unit (§5.4.4-1); the currency must be an
    ISO 4217 code (``300UDS`` is refused, suggesting USD)."""
    m = _MONEY_RE.fullmatch(text.strip())
    currency = m and (m.group("c1") or m.group("c2"))
    if m is None or not currency or (m.group("c1") and m.group("c2")):
        raise click.BadParameter(
            f"{text!r} is not an amount; write it like 300USD or 289.50 EUR"
        )
    try:
        return Money.parse(m.group("amount"), check_currency(currency))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def parse_date(text: str, *, end_of_day: bool = False) -> int:
    """``YYYY-MM-DD`` (UTC) or an ISO 8601 date-time → ms since the epoch.

    A bare date means the start of that day, or its last millisecond with ``end_of_day``.
    """
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            if end_of_day:
                moment += dt.timedelta(days=1, milliseconds=-1)
        else:
            moment = dt.datetime.fromisoformat(raw)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date; write it as YYYY-MM-DD") from None
    return int(moment.timestamp() * 1000)


def utc_text(ms: int, form: str = "%Y-%m-%d %H:%M UTC") -> str:
    """A moment (ms since the epoch) in ``form``, a ``strftime`` form whose only year is
    ``%Y``, in UTC — for every time the protocol can carry, not only those of years 1 to 9999
    that :mod:`datetime` holds: a share may last until 2^53 - 1 ms (year 287,396, §5.3.1),
    and a vendor may sign an offer valid that long (§5.4.4). The Gregorian calendar repeats
    every 400 years, so a time out of that range is moved by whole cycles into it and the
    cycles are added back to the year."""
    cycles = 0
    if not 0 <= ms < _DATETIME_END_MS:
        cycles, ms = divmod(ms, _CYCLE_MS)
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    if not cycles:
        return moment.strftime(form)
    year = f"{moment.year + 400 * cycles:04d}"
    return year.join(moment.strftime(part) for part in form.split("%Y"))


def format_time(ms: int) -> str:
    """A moment as ``YYYY-MM-DD HH:MM UTC``: every time ``vrm`` prints names its zone."""
    return utc_text(ms)


def format_date(ms: int) -> str:
    return utc_text(ms, "%Y-%m-%d")


def parse_fields(items: Iterable[str]) -> dict[str, str]:
    """``FIELD=VALUE`` arguments → a dict; the field names are checked by the protocol later."""
    fields: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not FIELD=VALUE (e.g. city='Park City')")
        if len(name) > 64 or not _FIELD_RE.fullmatch(name):
            raise click.BadParameter(
                f"{name!r} is not a field name: lower-case letters, digits and _ (spec §6.8-2)"
            )
        if name in fields:
            raise click.BadParameter(f"field {name!r} is given twice")
        fields[name] = value
    if not fields:
        raise click.BadParameter("give at least one FIELD=VALUE")
    if (problem := fields_problem(fields)) is not None:
        raise click.BadParameter(problem)
    return fields


#: The option each intentcast field comes from, for :func:`check_intentcast`'s message.
_INTENT_OPTIONS = {"what": "WHAT", "where": "--where", "constraints": "--constraint",
                   "memberships": "--member"}  # fmt: skip
_WIRE_PATH = re.compile(r"\$\.(?P<top>[a-z_]+)(?:\[\d+\])?(?:\.(?P<rest>.+))?")


def wire_problem(value: object, options: Mapping[str, str]) -> str | None:
    """What the receiver will refuse in ``value`` (a body or sealed content, §5.1), in a
    sentence naming the option (``options``: field → option), or None. Checked before anything
    is signed or sent: a value longer than the protocol carries is the person's to fix, not a
    message every vendor refuses with ``invalid_field``."""
    try:
        load_record(type(value), dump_record(value), "$")
    except ProtocolError as exc:
        m = _WIRE_PATH.fullmatch(exc.path or "")
        top, rest = (m["top"], m["rest"]) if m else ("", None)
        where = options.get(top, top) if rest is None else rest
        return f"{where}: {exc.detail}" if where else exc.detail
    return None


def fields_problem(fields: Mapping[str, str]) -> str | None:
    """What breaks the wire's limits in shared fields (values ≤ 4096 characters, 1..64 fields)."""
    return wire_problem(FieldsContent(fields), {"fields": "FIELD=VALUE"})


def intentcast_problem(what: str, *, where: str | None, constraints: Sequence[str],
                       memberships: Sequence[str],
                       labels: Mapping[str, str] = _INTENT_OPTIONS) -> str | None:  # fmt: skip
    """What breaks the wire's limits in an intentcast of these words (§5.4.1: ``what`` ≤ 500
    characters, ``where`` and each rule or membership ≤ 200, at most 32 of each); ``labels``:
    what the person calls each field."""
    return wire_problem(Intentcast(what=what, reply_by=0, where=where,
                                   constraints=tuple(constraints),
                                   memberships=tuple(memberships)), labels)  # fmt: skip


def check_intentcast(what: str, *, where: str | None, constraints: Sequence[str],
                     memberships: Sequence[str]) -> None:
    """:func:`intentcast_problem` as a usage error."""
    problem = intentcast_problem(what, where=where, constraints=constraints,
                                 memberships=memberships)  # fmt: skip
    if problem is not None:
        raise click.BadParameter(problem)


def text_problem(value: str, message: type[Any], field: str) -> str | None:
    """What ``message``'s receiver will refuse in free text a person gives for its ``field`` (a
    terms offer's note, §5.2.1; a withdrawal's or an end's reason, §5.3.2, §5.6.4: each
    1..1000 characters), or None."""
    try:
        check_fields(message, "$.body", **{field: value})
    except ProtocolError as exc:
        return exc.detail
    return None


def check_text(value: str | None, message: type[Any], field: str, option: str) -> None:
    """:func:`text_problem` as a usage error naming ``option``: checked before anything is
    signed, stored or sent, not refused by the vendor with ``invalid_field``."""
    problem = text_problem(value, message, field) if value is not None else None
    if problem is not None:
        raise click.BadParameter(f"{option}: {problem}")


def check_note(note: str | None) -> None:
    """``vrm connect --note``: :func:`check_text` of a terms offer's note."""
    check_text(note, TermsOffer, "note", "--note")


def _term(term_id: str, version: str | None) -> Term:
    try:
        return latest(term_id) if version is None else get_term(term_id, int(version))
    except (KeyError, ValueError):
        known = ", ".join(sorted({i for i, _ in ROSTER}))
        raise click.BadParameter(
            f"no term {term_id!r}{'' if version is None else ' version ' + version} in the "
            f"roster; `vrm terms list` shows them ({known})"
        ) from None


def parse_terms(specs: Iterable[str], option: str = "") -> tuple[TermRef, ...]:
    """Several :func:`parse_term` specs; a term given twice is a usage error (an offer cites
    each term once, §6.2-6), naming ``option`` where the specs came from one."""
    refs = tuple(parse_term(s) for s in specs)
    ids = [r.id for r in refs]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        where = f"{option}: " if option else ""
        raise click.BadParameter(f"{where}{', '.join(twice)} given more than once")
    return refs


def parse_term(spec: str) -> TermRef:
    """``ID[@VERSION][:name=value[,name=value…]]`` → a checked :class:`~vrmproto.TermRef`.

    A parameter with exactly one allowed value (``format`` of ``vrm.return-on-request``) is
    filled in when left out.
    """
    head, _, param_text = spec.strip().partition(":")
    term_id, _, version = head.partition("@")
    term = _term(term_id, version or None)
    params: dict[str, ParamValue] = {}
    specs = {p.name: p for p in term.params}
    for part in filter(None, (p.strip() for p in param_text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise click.BadParameter(f"{part!r} in {spec!r} is not name=value")
        if name in params:
            raise click.BadParameter(f"{name} is given twice in {spec!r}")
        p = specs.get(name)
        if p is None:
            have = ", ".join(specs) or "none"
            raise click.BadParameter(f"{term.id} has no parameter {name!r} (it has: {have})")
        if p.type == "int":
            try:
                params[name] = int(value)
            except ValueError:
                raise click.BadParameter(f"{name} of {term.id} is a whole number") from None
        else:
            params[name] = value
    for p in term.params:
        if p.name not in params and p.type == "str" and len(p.values) == 1:
            params[p.name] = p.values[0]
    try:
        return TermRef.of(term, **params)
    except ValueError as exc:
        detail = getattr(exc, "detail", str(exc))
        raise click.BadParameter(f"{term.id}: {detail}") from None


def term_spec(ref: TermRef) -> str:
    """The inverse of :func:`parse_term`: ``vrm.delete-after:days=30``."""
    params = ",".join(f"{k}={v}" for k, v in ref.params.items())
    return ref.id + (f":{params}" if params else "")


def term_to_json(ref: TermRef) -> dict[str, object]:
    out: dict[str, object] = {"id": ref.id, "version": ref.version}
    if ref.params:
        out["params"] = dict(ref.params)
    return out


def term_from_json(obj: Mapping[str, object]) -> TermRef:
    """A term stored by :func:`term_to_json`, checked against the roster again."""
    term_id, version, params = obj["id"], obj["version"], obj.get("params", {})
    if not isinstance(term_id, str) or not isinstance(version, int):
        raise ValueError("a stored term needs a string id and an integer version")
    if not isinstance(params, Mapping):
        raise ValueError("a stored term's params are a map")
    term = get_term(term_id, version)
    return TermRef.of(term, **{str(k): v for k, v in params.items()})


def by_prefix(text: str, items: Sequence[T], key: Callable[[T], str], *, noun: str,
              where: str) -> T:  # fmt: skip
    """The one item whose id (``key``, lower-case hex) starts with ``text``.

    ``text`` needs :data:`MIN_ID_PREFIX` characters or more; fewer, none or several matching is
    a usage error that says which (``where`` names the command that lists the ids).
    """
    wanted = text.strip().lower()
    if len(wanted) < MIN_ID_PREFIX:
        raise CliError(f"an {noun} id needs at least {MIN_ID_PREFIX} characters, and {text!r} "
                       f"has {len(wanted)}; {where} shows the ids", EXIT_USAGE,
                       kind="short_id")  # fmt: skip
    hits = [i for i in items if key(i).startswith(wanted)]
    if not hits:
        raise CliError(f"no {noun} with id {text!r}; {where} shows the ids", EXIT_USAGE,
                       kind=f"unknown_{noun}")  # fmt: skip
    if len(hits) > 1:
        ids = ", ".join(sorted(key(i)[:12] for i in hits))
        raise CliError(f"several {noun}s have ids starting with {text!r} ({ids}); give more "
                       "characters", EXIT_USAGE, kind="ambiguous")  # fmt: skip
    return hits[0]
