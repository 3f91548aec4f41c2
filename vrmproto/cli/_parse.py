"""What a person types, read into protocol values: terms, money, dates, durations, fields.

Each parser raises :class:`click.BadParameter` (or ``ValueError``) with a sentence saying what
was expected, so the command line reports it as a usage error (exit code 2).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import click

from vrmproto._messages import Money
from vrmproto._vocab import ROSTER, ParamValue, Term, TermRef, get_term, latest
from vrmproto.cli._errors import EXIT_USAGE, CliError

T = TypeVar("T")

#: The fewest leading characters of an id (an offer's, an intentcast's) a person may type.
MIN_ID_PREFIX = 4

__all__ = [
    "MIN_ID_PREFIX",
    "by_prefix",
    "parse_date",
    "parse_duration",
    "parse_fields",
    "parse_money",
    "parse_term",
    "term_spec",
]

_FIELD_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
_DURATION_RE = re.compile(r"(\d+)\s*(ms|s|m|h|d|w|y)?")
_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 7 * 86_400_000,
    "y": 365 * 86_400_000,
}
_MONEY_RE = re.compile(
    r"(?:(?P<c1>[A-Za-z]{3})\s*)?(?P<amount>\d+(?:\.\d+)?)(?:\s*(?P<c2>[A-Za-z]{3}))?"
)


def parse_duration(text: str, *, default_unit: str = "s") -> int:
    """``30d``, ``12h``, ``90s``, ``500ms`` or a bare number of ``default_unit`` → ms."""
    m = _DURATION_RE.fullmatch(text.strip().lower())
    if m is None or int(m.group(1)) <= 0:
        raise click.BadParameter(
            f"{text!r} is not a duration; write it like 30d, 12h, 90s or 500ms"
        )
    return int(m.group(1)) * _UNIT_MS[m.group(2) or default_unit]


def parse_money(text: str) -> Money:
    """``300USD``, ``300 USD``, ``289.50 usd``, ``USD 300`` or ``5000 JPY`` →
    :class:`~vrmproto.Money`, in the currency's minor unit (§5.4.4-1)."""
    m = _MONEY_RE.fullmatch(text.strip())
    currency = m and (m.group("c1") or m.group("c2"))
    if m is None or not currency or (m.group("c1") and m.group("c2")):
        raise click.BadParameter(
            f"{text!r} is not an amount; write it like 300USD or 289.50 EUR"
        )
    try:
        return Money.parse(m.group("amount"), currency)
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


def format_time(ms: int) -> str:
    """A moment as ``YYYY-MM-DD HH:MM UTC``: every time ``vrm`` prints names its zone."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_date(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d")


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
    return fields


def _term(term_id: str, version: str | None) -> Term:
    try:
        return latest(term_id) if version is None else get_term(term_id, int(version))
    except (KeyError, ValueError):
        known = ", ".join(sorted({i for i, _ in ROSTER}))
        raise click.BadParameter(
            f"no term {term_id!r}{'' if version is None else ' version ' + version} in the "
            f"roster; `vrm terms list` shows them ({known})"
        ) from None


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
