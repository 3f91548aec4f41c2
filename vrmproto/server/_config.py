"""A vendor's TOML file, read and checked against one schema (pydantic), with ``VRM_*``
environment variables over it: what ``vrm vendor serve`` and ``vrm vendor check-config`` read.

::

    name = "Avis Park City"
    seed = "…64 hex digits…"          # or seed_file = "avis.seed"; or neither: kept in the data dir
    accepts_terms = ["vrm.no-tracking", "vrm.delete-after"]   # or "all"
    counter = ["vrm.no-tracking", "vrm.delete-after:days=365"] # optional: offered instead

    [[catalogue]]                     # what it can offer in answer to an intentcast
    description = "Jeep Grand Cherokee 4x4, Park City pick-up"
    keywords = ["suv"]                # all must appear as words in the intentcast
    price = "289 USD"
    conditions = ["return with a full tank: no prepaid fuel"]

    [[observed]]                      # data it already holds about its customers (optional)
    field = "rental_count"
    value = "3"
    collected = 2026-01-01            # a TOML date or date-time (UTC), or ms since the epoch

    [limits]                          # any field of spec §10 Table 1 (vrmproto.Limits)
    rate_per_address_per_minute = 6000
    [connections]                     # any field of spec Table 10-2 (ConnectionLimits),
    max_connections_per_address = 64  # held by each worker process (below)
    [server]
    host = "0.0.0.0"
    port = 8701
    public_url = "https://shop.example/vrm"      # what discovery advertises (§12.13-3)
    trusted_proxies = ["10.0.0.0/8", "127.0.0.1"] # whose Forwarded headers count (§12.13-1)
    tls_cert = "cert.pem"                        # serve HTTPS directly
    tls_key = "key.pem"
    workers = 4                       # processes serving the port (needs a postgresql store);
                                      # the rate limits and first-contact budgets hold over
                                      # all of them (§12.9-8), [connections] in each one
    feed_poll_s = 1.0                 # the event feed's poll when nothing wakes it
    stop_timeout_s = 30.0             # workers still running this long after SIGTERM are killed
    [store]
    kind = "sqlite"                   # or "memory", or "postgresql" with url = "postgresql://…"
    path = "vendor.db"                # relative to the data directory
    # or, in short, at the top: store = "postgresql://vrm@db1/vrm" (docs/deployment.md)
    [logging]
    format = "json"                   # or "human"
    level = "info"
    queue_size = 8192                 # lines waiting for a slow log stream; more are dropped
    [metrics]
    enabled = true                    # GET /metrics (off by default)
    port = 9464                       # a listener of its own (default: the same one)
    [feed]                            # retention of the event feed (docs/events.md)
    keep_days = 30                    # kept this long, and until every consumer has it
    max_days = 365                    # then trimmed whoever has not had it (0: never)
    consumers = ["crm"]               # in-process consumers' cursors to keep events for

    [[webhooks]]                      # the event feed, pushed to a CRM (docs/events.md)
    url = "https://crm.example/vrm-events"
    secret = "whsec_…"                # Standard Webhooks: whsec_ and base64 of the key
    purposes = [1, 2]                 # optional: personal data only of shares for these
    refused_after_s = 600             # optional: an event answered 400/413/415/422 is set
                                      # aside after this (others: dead_after_s, 3 days)
    batched = false                   # optional: one POST per batch (CloudEvents JSON batch)

Every section's field can also be set as ``VRM_<SECTION>_<FIELD>`` (``VRM_LIMITS_MAX_DEPTH=8``,
``VRM_SERVER_TRUSTED_PROXIES=10.0.0.0/8,::1``, ``VRM_METRICS_ENABLED=true``); the environment
wins over the file. The fields outside the sections (``name``, ``seed``, ``relays``, …) are the
file's alone: ``VRM_SEED`` or ``VRM_STORE`` is refused, not ignored (``VRM_STORE_URL`` sets the
store). Every mistake names the file (or the variable), the field, and the field
meant when the name is a near miss.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from vrmproto._codec import MAX_SAFE_INT
from vrmproto._hosts import relay_url
from vrmproto._limits import Limits
from vrmproto._messages import Money
from vrmproto._vocab import (
    ROSTER,
    DataRecord,
    TermRef,
    get_term,
    latest,
    parse_category,
    parse_purpose,
)
from vrmproto.server._connections import ConnectionLimits
from vrmproto.server._logwriter import DEFAULT_QUEUE_SIZE
from vrmproto.server._policy import CatalogueItem
from vrmproto.server._proxy import Deployment
from vrmproto.server._retention import DAY_S, Retention
from vrmproto.server._runner import VendorConfig, seed_hex
from vrmproto.server._webhook_http import Poster
from vrmproto.server._webhooks import Webhook, parse_secret

__all__ = [
    "ConfigError",
    "VendorFile",
    "load_vendor_config",
    "load_vendor_file",
    "parse_vendor_file",
    "vendor_config",
]

ENV_PREFIX = "VRM_"


class ConfigError(ValueError):
    """A vendor file (or a ``VRM_*`` variable) that does not check: ``where`` names the file
    or the variable, ``field`` the dotted field."""

    def __init__(self, where: str, field: str, message: str) -> None:
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")
        self.where = where
        self.field = field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _from_dataclass(name: str, cls: type[Any]) -> type[_Section]:
    """A section whose fields are those of a limits dataclass, each optional (its default), a
    positive integer the protocol can carry: at most 2^53 − 1 (§5's ``int`` range; the
    discovery document publishes the limits, §13.1-3). A larger one overflowed the 64-bit
    integers of the store (every message answered 500) or the float of a timer (a
    traceback at start)."""
    fields: Any = {f.name: (int | None, Field(default=None, gt=0, le=MAX_SAFE_INT, strict=False))
                   for f in dataclasses.fields(cls)}  # fmt: skip
    model: type[_Section] = create_model(name, __base__=_Section, **fields)
    return model


LimitsSection = _from_dataclass("LimitsSection", Limits)
ConnectionsSection = _from_dataclass("ConnectionsSection", ConnectionLimits)

_MONEY = re.compile(r"(?:([A-Za-z]{3})\s*)?(\d+(?:\.\d+)?)(?:\s*([A-Za-z]{3}))?")


def _money(text: str) -> Money:
    m = _MONEY.fullmatch(text.strip())
    if m is None or bool(m.group(1)) == bool(m.group(3)):
        raise ValueError(f"{text!r} is not an amount; write it like 289 USD")
    money = Money.parse(m.group(2), m.group(1) or m.group(3))
    if money.amount > MAX_SAFE_INT:  # an offer's amount is int(0..2^53-1) (§5, Money)
        raise ValueError(f"{text!r} is more than an offer can carry")
    return money


def _term(spec: str) -> TermRef:
    """``ID[@VERSION][:name=value,…]``, as in ``vrm connect --term``."""
    head, _, param_text = spec.strip().partition(":")
    term_id, _, version = head.partition("@")
    try:
        term = latest(term_id) if not version else get_term(term_id, int(version))
    except (KeyError, ValueError):
        raise ValueError(f"no term {head!r} in the roster") from None
    specs = {p.name: p for p in term.params}
    params: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in param_text.split(","))):
        name, _, value = part.partition("=")
        if name not in specs:
            raise ValueError(f"{term.id} has no parameter {name!r}")
        params[name] = int(value) if specs[name].type == "int" else value
    for p in term.params:
        if p.name not in params and p.type == "str" and len(p.values) == 1:
            params[p.name] = p.values[0]
    return TermRef.of(term, **params)


def _relay_url(text: str) -> str:
    """A relay URL, by the rule of ``vrm relay add`` (:func:`vrmproto._hosts.relay_url`):
    ``ws://`` alone passed the old ``^wss?://`` and was found only as a relay "down"."""
    return relay_url(text)


class CatalogueEntry(_Section):
    description: str = Field(min_length=1)
    keywords: list[str] = Field(min_length=1)
    price: str
    conditions: list[str] = []

    @field_validator("price")
    @classmethod
    def _price(cls, value: str) -> str:
        _money(value)
        return value

    def item(self) -> CatalogueItem:
        keywords = tuple(k.lower() for k in self.keywords)
        return CatalogueItem(self.description, keywords, _money(self.price),
                             tuple(self.conditions))  # fmt: skip


def _epoch_ms(value: int | dt.datetime | dt.date) -> int:
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, dt.date):
        return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp()
                   * 1000)  # fmt: skip
    return value


class ObservedEntry(_Section):
    field: str = Field(min_length=1)
    value: str | int | float | bool
    category: str = "behavioral"
    source: Literal["provided", "observed", "derived"] = "observed"
    collected: dt.datetime | dt.date | int = 0
    purposes: list[str] = ["core-function"]

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        parse_category(value)
        return value

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, value: list[str]) -> list[str]:
        for purpose in value:
            parse_purpose(purpose)
        return value

    @model_validator(mode="after")
    def _a_record(self) -> ObservedEntry:
        """The record it makes checks too (``collected`` at or after the epoch, …), so that a
        mistake names the entry (``observed[3]``), not only the file."""
        self.record()
        return self

    def record(self) -> DataRecord:
        return DataRecord(field=self.field, value=str(self.value),
                          category=parse_category(self.category), source=self.source,
                          collected=_epoch_ms(self.collected),
                          purposes=tuple(parse_purpose(p) for p in self.purposes))  # fmt: skip


class ServerSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    advertise: bool = True
    public_url: str | None = None
    trusted_proxies: list[str] = []
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Processes serving the port, each with its own database pool (vrmproto.server._workers);
    #: more than one needs a postgresql store (spec §12.7-4, §12.9-8).
    workers: int = Field(default=1, ge=1, le=256)
    #: Seconds between the event feed's reads of the store when nothing woke it: the latency
    #: of other processes' events on a store that does not announce them (on PostgreSQL,
    #: LISTEN/NOTIFY does; docs/events.md).
    feed_poll_s: float = Field(default=1.0, gt=0, le=86_400)
    #: With ``workers`` above 1: seconds the supervisor gives its workers after it first sends
    #: them SIGTERM (again every second) before it kills those still running (SIGKILL).
    stop_timeout_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"{text!r} is not a network (10.0.0.0/8) or address") from None
        return value

    def deployment(self) -> Deployment:
        return Deployment.of(self.public_url, self.trusted_proxies)


_PG_SCHEMES = ("postgresql://", "postgres://")


#: The store's own parameters of a PostgreSQL URL (:meth:`vrmproto.store.PostgresConfig.from_url`,
#: docs/deployment.md "Connecting"), and what each is.
_PG_PARAMETERS: dict[str, type[str | int | float]] = {
    "vrm_schema": str, "vrm_pool_size": int, "vrm_writers": int, "vrm_batch_cap": int,
    "vrm_lock_timeout_ms": int, "vrm_command_timeout_s": float,
}  # fmt: skip


def _pg_parameters(url: str) -> None:
    """Check the ``vrm_*`` parameters of a store URL as the store will read them (no I/O):
    a mistake there said ``invalid literal for int() with base 10: 'abc'`` when the vendor
    started (and ``check-config`` said ok), and a misspelt one reached PostgreSQL as a server
    setting it refused at each connection. Only the parameter is named, never the URL (it
    may hold a password)."""
    from vrmproto.store import PostgresConfig, StoreError  # noqa: PLC0415

    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if not key.startswith("vrm_"):
            continue
        kind = _PG_PARAMETERS.get(key)
        if kind is None:
            raise ValueError(f"the URL's {key} is not a parameter of the store"
                             + _did_you_mean(key, _PG_PARAMETERS))  # fmt: skip
        try:
            kind(value)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise ValueError(f"the URL's {key} must be {what}, not {value!r}") from None
    try:
        PostgresConfig.from_url(url)
    except (ValueError, StoreError) as exc:
        raise ValueError(f"the URL's vrm_* parameters: {exc}") from None


class StoreSection(_Section):
    kind: Literal["sqlite", "memory", "postgresql"] = "sqlite"
    path: str = "vendor.db"
    #: The database of a ``postgresql`` store (:class:`vrmproto.store.PostgresStore`,
    #: docs/deployment.md); giving it alone chooses that kind.
    url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _url_chooses(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("url") is not None and "kind" not in data:
            return {**data, "kind": "postgresql"}
        return data

    @model_validator(mode="after")
    def _url_fits(self) -> StoreSection:
        if self.kind == "postgresql" and not (self.url or "").startswith(_PG_SCHEMES):
            raise ValueError("a postgresql store needs url = \"postgresql://…\"")
        if self.url is not None and self.kind == "postgresql":
            _pg_parameters(self.url)
        if self.kind != "postgresql" and self.url is not None:
            raise ValueError(f"url is for a postgresql store, not {self.kind}")
        return self


class LoggingSection(_Section):
    format: Literal["human", "json"] = "human"
    level: Literal["debug", "info", "warning", "error"] = "info"
    queue_size: int = Field(default=DEFAULT_QUEUE_SIZE, gt=0, le=1_000_000)


class MetricsSection(_Section):
    enabled: bool = False
    host: str | None = None
    port: int | None = Field(default=None, ge=0, le=65535)


class FeedSection(_Section):
    """``[feed]``: how long the event feed keeps its events (:mod:`vrmproto.server._retention`,
    docs/events.md "Retention"). The webhooks' cursors (and dead letters) and the Tryton
    bridges' are kept for without being named here."""

    trim: bool = True  # false: the feed keeps every event for ever
    keep_days: float = Field(default=30.0, ge=0, le=36_500)
    max_days: float = Field(default=365.0, ge=0, le=36_500)  # 0: no hard maximum
    trim_every_s: float = Field(default=3_600.0, gt=0, le=7 * 86_400)
    consumers: list[Annotated[str, Field(min_length=1, max_length=200)]] = []

    @model_validator(mode="after")
    def _max_after_keep(self) -> FeedSection:
        if self.max_days and self.max_days < self.keep_days:
            raise ValueError("max_days (the hard maximum) must be at least keep_days, or 0")
        return self

    def retention(self) -> Retention | None:
        """What ``vrm vendor serve`` trims the feed by (None: ``trim = false``)."""
        if not self.trim:
            return None
        return Retention(self.keep_days * DAY_S, self.max_days * DAY_S or None,
                         self.trim_every_s, tuple(self.consumers))  # fmt: skip


class WebhookEntry(_Section):
    """One ``[[webhooks]]`` receiver of the event feed (:mod:`vrmproto.server._webhooks`)."""

    url: str = Field(pattern=r"^https?://")
    secret: SecretStr
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # default: url
    purposes: list[int] | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    dead_after_s: float = Field(default=3 * 86_400.0, gt=0)
    refused_after_s: float = Field(default=600.0, gt=0)  # an event answered 400/413/415/422
    batched: bool = False  # one POST per batch of events (a CloudEvents JSON batch)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        parse_secret(value.get_secret_value())
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        Poster(value)  # a host to connect to, a port that is a number (no I/O)
        return value

    @model_validator(mode="after")
    def _usable(self) -> WebhookEntry:
        """What ``vrm vendor serve`` would refuse (an infinite ``timeout_s``…: ``Webhook``'s own
        checks) is refused by ``vrm vendor check-config`` too, not said to be ok."""
        self.webhook("urn:check")
        return self

    def webhook(self, source: str) -> Webhook:
        purposes = None if self.purposes is None else frozenset(self.purposes)
        key = parse_secret(self.secret.get_secret_value())
        return Webhook(self.name or self.url, self.url, key, source, purposes, self.timeout_s,
                       self.dead_after_s, refused_after_s=self.refused_after_s,
                       batched=self.batched)  # fmt: skip


class VendorFile(_Section):
    """The whole vendor file."""

    name: str = Field(min_length=1)
    seed: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    seed_file: str | None = None
    accepts_terms: list[str] | Literal["all"] = []
    counter: list[str] = []
    catalogue: list[CatalogueEntry] = []
    observed: list[ObservedEntry] = []
    # Intentcasts through Nostr relays (spec §15; vrmproto/nostr): the relays to listen on, the
    # proof of work required (bits, §15.1-4), and the geohash prefixes it serves (§15.5-3).
    relays: list[Annotated[str, AfterValidator(_relay_url)]] = []
    relay_min_pow: int = Field(default=0, ge=0, le=32)
    relay_geohashes: list[Annotated[str, Field(pattern=r"^[0-9b-hjkmnp-z]{1,12}$")]] = []
    limits: LimitsSection = LimitsSection()  # type: ignore[valid-type]
    connections: ConnectionsSection = ConnectionsSection()  # type: ignore[valid-type]
    server: ServerSection = ServerSection()
    store: StoreSection = StoreSection()
    logging: LoggingSection = LoggingSection()
    metrics: MetricsSection = MetricsSection()
    feed: FeedSection = FeedSection()
    webhooks: list[WebhookEntry] = []

    @model_validator(mode="after")
    def _workers_share_a_database(self) -> VendorFile:
        if self.server.workers > 1 and self.store.kind != "postgresql":
            raise ValueError("server.workers above 1 needs a postgresql store: the processes "
                             "share what they store and their rate limits through it")  # fmt: skip
        if self.server.workers > 1 and self.metrics.port is not None:
            raise ValueError("metrics.port is one listener, not one per worker: with "
                             "server.workers above 1 serve /metrics on the main port")  # fmt: skip
        return self

    @field_validator("store", mode="before")
    @classmethod
    def _store_url(cls, value: Any) -> Any:
        """``store = "postgresql://…"``: the short form of a ``[store]`` table with that url."""
        if isinstance(value, str):
            if not value.startswith(_PG_SCHEMES):
                raise ValueError("a postgresql:// URL, or a [store] table")
            return {"kind": "postgresql", "url": value}
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name the vendor")
        return value.strip()

    @field_validator("accepts_terms")
    @classmethod
    def _accepts(cls, value: list[str] | str) -> list[str] | str:
        known = {term_id for term_id, _ in ROSTER}
        unknown = [t for t in value if t not in known] if isinstance(value, list) else []
        if unknown:
            raise ValueError(f"names terms not in the roster: {', '.join(unknown)}")
        return value

    @field_validator("counter")
    @classmethod
    def _counter(cls, value: list[str]) -> list[str]:
        for spec in value:
            _term(spec)
        return value

    def limits_value(self) -> Limits:
        section: _Section = self.limits
        return Limits(**section.model_dump(exclude_none=True))

    def connection_limits(self) -> ConnectionLimits:
        section: _Section = self.connections
        return ConnectionLimits(**section.model_dump(exclude_none=True))

    def accepted(self) -> tuple[str, ...]:
        if self.accepts_terms == "all":
            return tuple(sorted({term_id for term_id, _ in ROSTER}))
        return tuple(self.accepts_terms)

    def counter_terms(self) -> tuple[TermRef, ...]:
        return tuple(_term(s) for s in self.counter)


_SECTIONS: dict[str, type[BaseModel]] = {
    name: info.annotation for name, info in VendorFile.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, _Section)
}  # fmt: skip
_ITEMS: dict[str, type[BaseModel]] = {"catalogue": CatalogueEntry, "observed": ObservedEntry,
                                      "webhooks": WebhookEntry}  # fmt: skip


#: The file's fields outside any section, which no ``VRM_*`` variable sets (a hint for each).
_TOP_LEVEL: dict[str, str] = {
    name: " (or seed_file, or neither: the data directory keeps it)" if name == "seed" else ""
    for name in VendorFile.model_fields if name not in _SECTIONS
}  # fmt: skip


def _env_overlay(data: dict[str, Any], environ: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """Put ``VRM_<SECTION>_<FIELD>`` values into ``data``; returns which field came from which
    variable. A known section with an unknown field is an error (with a did-you-mean), and so
    is a variable naming a field outside the sections (``VRM_SEED``)."""
    origin: dict[tuple[str, str], str] = {}
    for var, text in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX):
            continue
        key = var[len(ENV_PREFIX):].lower()
        if key in _TOP_LEVEL:  # VRM_SEED, VRM_STORE: were ignored, and a fresh key made
            raise ConfigError(f"environment variable {var}", key, "only a section's fields "
                              "are set from the environment; give it in the file"
                              + _TOP_LEVEL[key])  # fmt: skip
        if key in _SECTIONS:
            hint = " (VRM_STORE_URL=postgresql://…)" if key == "store" else ""
            raise ConfigError(f"environment variable {var}", key, "is a section: set its "
                              f"fields, as {var}_<FIELD>{hint}")  # fmt: skip
        section, _, name = key.partition("_")
        model = _SECTIONS.get(section)
        if model is None or not name:
            continue  # VRM_HOME and the like belong to others
        info = model.model_fields.get(name)
        if info is None:
            hint = _did_you_mean(name, model.model_fields)
            raise ConfigError(f"environment variable {var}", f"{section}.{name}",
                              "unknown field" + hint)  # fmt: skip
        value: Any = text
        if "list" in str(info.annotation):
            value = [v.strip() for v in text.split(",") if v.strip()]
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"environment variable {var}", section, "is not a table in the file")
        table[name] = value
        origin[(section, name)] = var
    return origin


def _did_you_mean(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known_fields(loc: tuple[int | str, ...]) -> Mapping[str, Any]:
    """The field names allowed where ``loc`` ends (for a did-you-mean)."""
    if not loc:
        return VendorFile.model_fields
    head = str(loc[0])
    if head in _SECTIONS:
        return _SECTIONS[head].model_fields
    if head in _ITEMS:
        return _ITEMS[head].model_fields
    return {}


def _first_error(exc: ValidationError, source: str,
                 origin: Mapping[tuple[str, str], str]) -> ConfigError:  # fmt: skip
    errors = exc.errors(include_url=False)
    # A misspelt field also leaves the one meant missing: the misspelling is the mistake.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(err["loc"])
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field" + _did_you_mean(str(loc[-1]), _known_fields(loc[:-1]))
    where = origin.get((str(loc[0]), str(loc[1]))) if len(loc) >= 2 else None
    return ConfigError(f"environment variable {where}" if where else source, field, message)


def parse_vendor_file(data: Mapping[str, Any], *, source: str = "<config>",
                      environ: Mapping[str, str] | None = None) -> VendorFile:  # fmt: skip
    """Check a decoded vendor TOML table, with ``environ``'s ``VRM_*`` variables over it
    (``None``: none); :class:`ConfigError` naming the first mistake."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    store = merged.get("store")
    if isinstance(store, str) and store.startswith(_PG_SCHEMES):  # the short form, as a table
        merged["store"] = {"kind": "postgresql", "url": store}
    origin = _env_overlay(merged, environ or {})
    try:
        parsed = VendorFile.model_validate(merged)
        parsed.limits_value()
        parsed.connection_limits()
        parsed.server.deployment()
    except ValidationError as exc:
        raise _first_error(exc, source, origin) from None
    except ValueError as exc:  # the limits' own cross-checks (§10, §10.1)
        raise ConfigError(source, "", str(exc)) from None
    if parsed.seed is not None and parsed.seed_file is not None:
        raise ConfigError(source, "seed", "give seed or seed_file, not both")
    if (parsed.server.tls_cert is None) != (parsed.server.tls_key is None):
        raise ConfigError(source, "server.tls_cert", "give tls_cert and tls_key together")
    return parsed


def load_vendor_file(path: str | os.PathLike[str], *,
                     environ: Mapping[str, str] | None = None) -> VendorFile:  # fmt: skip
    """Read and check a vendor TOML file (and ``environ``'s ``VRM_*`` variables)."""
    import tomllib  # noqa: PLC0415

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), "", f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(str(p), "", f"cannot read it: {exc.strerror or exc}") from None
    return parse_vendor_file(data, source=str(p), environ=environ)


def vendor_config(file: VendorFile, *, source: str = "<config>",
                  base: Path | None = None) -> VendorConfig:  # fmt: skip
    """The :class:`VendorConfig` a checked file describes (``base``: where ``seed_file`` is
    relative to)."""
    seed: bytes | None = None
    if file.seed is not None:
        seed = bytes.fromhex(file.seed)
    elif file.seed_file is not None:
        path = Path(file.seed_file).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        try:
            seed = seed_hex(path.read_text("utf-8").strip(), str(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(source, "seed_file", str(exc)) from None
    try:
        config = VendorConfig(
            name=file.name, seed=seed, accepts_terms=file.accepted(),
            counter=file.counter_terms(),
            catalogue=tuple(c.item() for c in file.catalogue),
            observed=tuple(o.record() for o in file.observed),
            source=source, limits=file.limits_value(), file=file,
        )  # fmt: skip
        config.policy()  # the policy checks its counter terms too
    except ValueError as exc:
        raise ConfigError(source, "", str(getattr(exc, "detail", exc))) from None
    return config


def load_vendor_config(path: str | os.PathLike[str], *,
                       environ: Mapping[str, str] | None = None) -> VendorConfig:  # fmt: skip
    """Read a vendor TOML file into a :class:`VendorConfig` (see the module's docstring)."""
    p = Path(path)
    return vendor_config(load_vendor_file(p, environ=environ), source=str(p), base=p.parent)
