"""A reference vendor from a TOML file: what ``vrm vendor serve --config vendor.toml`` runs.

The file says who the vendor is and what it decides (its
:class:`~vrmproto.server.ReferencePolicy`)::

    name = "Avis Park City"
    seed = "…64 hex digits…"          # or seed_file = "avis.seed"; or neither: kept in the data dir
    accepts_terms = ["vrm.no-tracking", "vrm.delete-after"]   # or "all"
    counter = ["vrm.no-tracking", "vrm.delete-after:days=365"] # optional: offered instead
    store = "postgresql://vrm@db1/vrm"  # optional: PostgresStore (docs/deployment.md), not SQLite

    [[catalogue]]                     # what it can offer in answer to an intentcast
    description = "Jeep Grand Cherokee 4x4, Park City pick-up"
    keywords = ["suv"]                # all must appear as words in the intentcast
    price = "289 USD"
    conditions = ["return with a full tank: no prepaid fuel"]

    [[observed]]                      # data it already holds about its customers (optional)
    field = "rental_count"
    value = "3"
    category = "behavioral"
    source = "observed"
    purposes = ["core-function"]

Every mistake is reported with the file, the entry and what was expected.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from vrmproto._files import private_data_dir
from vrmproto._keys import Identity
from vrmproto._vocab import (
    ROSTER,
    DataRecord,
    TermRef,
    parse_category,
    parse_purpose,
)
from vrmproto.cli._errors import EXIT_USAGE, CliError
from vrmproto.cli._home import show_warnings
from vrmproto.cli._parse import parse_money, parse_term
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy, Server, serve
from vrmproto.store import MemoryStore

__all__ = ["VendorConfig", "load_vendor_config", "parse_vendor_config"]

_KEYS = frozenset(
    {"name", "seed", "seed_file", "accepts_terms", "counter", "catalogue", "observed", "store"}
)
_ITEM_KEYS = frozenset({"description", "keywords", "price", "conditions"})
_OBSERVED_KEYS = frozenset({"field", "value", "category", "source", "purposes", "collected"})


@dataclass(frozen=True, slots=True)
class VendorConfig:
    """A parsed vendor file. ``seed`` is None when the data directory is to keep the key."""

    name: str
    seed: bytes | None
    accepts_terms: tuple[str, ...]
    counter: tuple[TermRef, ...]
    catalogue: tuple[CatalogueItem, ...]
    observed: tuple[DataRecord, ...]
    source: str = "<config>"
    store: str | None = None  # a postgresql:// URL: PostgresStore instead of the directory's SQLite

    def policy(self) -> ReferencePolicy:
        return ReferencePolicy(
            accepts_terms=self.accepts_terms,
            counter=self.counter,
            catalogue=self.catalogue,
            name=self.name,
            observed=self.observed,
        )

    def identity(self, data_dir: Path | None) -> Identity:
        """The vendor's identity: from the file, else from ``data_dir/seed`` (made once)."""
        if self.seed is not None:
            return Identity(self.seed)
        if data_dir is None:
            raise CliError(f"{self.source} gives no seed and there is no data directory to "
                           "keep one in", EXIT_USAGE)  # fmt: skip
        return Identity(_data_dir_seed(data_dir))


def vendor_data_dir(directory: Path) -> Path:
    """The vendor's data directory, only the vendor's to read (§11.13-1): its database holds
    customers' shared data in clear. Created 0700; a looser directory, and its seed and
    database files, are tightened (0700, 0600) with a warning on stderr."""
    show_warnings()
    private_data_dir(directory)
    return directory


def _data_dir_seed(data_dir: Path) -> bytes:
    from vrmproto._files import atomic_write_text  # noqa: PLC0415 -- only here

    path = data_dir / "seed"
    if path.exists():
        return _seed_hex(path.read_text("utf-8").strip(), str(path))
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    seed = os.urandom(32)
    atomic_write_text(path, seed.hex() + "\n", mode=0o600)
    return seed


class _ConfigError(ValueError):
    pass


def _seed_hex(text: str, where: str) -> bytes:
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise _ConfigError(f"{where}: a seed is 64 hexadecimal digits")
    return seed


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _ConfigError(f"{where} must be a list of strings")
    return tuple(value)


def _table(value: Any, where: str, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _ConfigError(f"{where} must be a table")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise _ConfigError(f"{where} has unknown keys: {', '.join(unknown)}")
    return value


def _catalogue_item(value: Any, where: str) -> CatalogueItem:
    item = _table(value, where, _ITEM_KEYS)
    description = item.get("description")
    if not isinstance(description, str) or not description:
        raise _ConfigError(f"{where}.description must be a non-empty string")
    price = item.get("price")
    if not isinstance(price, str):
        raise _ConfigError(f"{where}.price must be a string like \"289 USD\"")
    try:
        money = parse_money(price)
    except click.BadParameter as exc:
        raise _ConfigError(f"{where}.price: {exc.message}") from None
    keywords = _strings(item.get("keywords", []), f"{where}.keywords")
    if not keywords:
        raise _ConfigError(f"{where}.keywords must name at least one word")
    conditions = _strings(item.get("conditions", []), f"{where}.conditions")
    return CatalogueItem(description, tuple(k.lower() for k in keywords), money, conditions)


def _observed(value: Any, where: str) -> DataRecord:
    rec = _table(value, where, _OBSERVED_KEYS)
    try:
        category = rec.get("category", "behavioral")
        purposes = rec.get("purposes", ["core-function"])
        if not isinstance(purposes, list):
            raise _ConfigError(f"{where}.purposes must be a list")
        return DataRecord(
            field=str(rec["field"]),
            value=str(rec["value"]),
            category=parse_category(category),
            source=rec.get("source", "observed"),
            collected=int(rec.get("collected", 0)),
            purposes=tuple(parse_purpose(p) for p in purposes),
        )
    except KeyError as exc:
        raise _ConfigError(f"{where} needs {exc.args[0]!r}") from None
    except ValueError as exc:
        raise _ConfigError(f"{where}: {getattr(exc, 'detail', exc)}") from None


def _accepts(value: Any, where: str) -> tuple[str, ...]:
    if value == "all":
        return tuple(sorted({term_id for term_id, _ in ROSTER}))
    ids = _strings(value, where)
    known = {term_id for term_id, _ in ROSTER}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise _ConfigError(f"{where} names terms not in the roster: {', '.join(unknown)}")
    return ids


def _counter(value: Any, where: str) -> tuple[TermRef, ...]:
    specs = _strings(value, where)
    out = []
    for spec in specs:
        try:
            out.append(parse_term(spec))
        except click.BadParameter as exc:
            raise _ConfigError(f"{where}: {exc.message}") from None
    return tuple(out)


def parse_vendor_config(
    data: Mapping[str, Any], *, source: str = "<config>", base: Path | None = None
) -> VendorConfig:
    """Check a decoded vendor TOML table; :class:`CliError` (exit 2) naming the mistake."""
    try:
        table = _table(dict(data), "the file", _KEYS)
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _ConfigError("name must be a non-empty string")
        seed: bytes | None = None
        if "seed" in table and "seed_file" in table:
            raise _ConfigError("give seed or seed_file, not both")
        if "seed" in table:
            if not isinstance(table["seed"], str):
                raise _ConfigError("seed must be a string of 64 hexadecimal digits")
            seed = _seed_hex(table["seed"], "seed")
        elif "seed_file" in table:
            if not isinstance(table["seed_file"], str):
                raise _ConfigError("seed_file must be a path")
            path = Path(table["seed_file"]).expanduser()
            if not path.is_absolute() and base is not None:
                path = base / path
            seed = _seed_hex(path.read_text("utf-8").strip(), str(path))
        store = table.get("store")
        if store is not None and not (
            isinstance(store, str) and store.startswith(("postgresql://", "postgres://"))
        ):
            raise _ConfigError("store must be a postgresql:// URL")
        catalogue = table.get("catalogue", [])
        observed = table.get("observed", [])
        if not isinstance(catalogue, list) or not isinstance(observed, list):
            raise _ConfigError("catalogue and observed are arrays of tables ([[catalogue]])")
        config = VendorConfig(
            name=name.strip(),
            seed=seed,
            accepts_terms=_accepts(table.get("accepts_terms", []), "accepts_terms"),
            counter=_counter(table.get("counter", []), "counter"),
            catalogue=tuple(
                _catalogue_item(v, f"catalogue[{i}]") for i, v in enumerate(catalogue)
            ),
            observed=tuple(_observed(v, f"observed[{i}]") for i, v in enumerate(observed)),
            source=source,
            store=store,
        )
        config.policy()  # the policy checks its counter terms too
    except (_ConfigError, OSError, ValueError) as exc:
        raise CliError(f"{source}: {getattr(exc, 'detail', exc)}", EXIT_USAGE,
                       kind="config") from None  # fmt: skip
    return config


def load_vendor_config(path: str | os.PathLike[str]) -> VendorConfig:
    """Read and check a vendor TOML file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"{p} is not valid TOML: {exc}", EXIT_USAGE, kind="config") from None
    except OSError as exc:
        raise CliError(f"cannot read {p}: {exc.strerror or exc}", EXIT_USAGE,
                       kind="config") from None  # fmt: skip
    return parse_vendor_config(data, source=str(p), base=p.parent)



@dataclass(slots=True)
class LocalVendor:
    """A reference vendor from a :class:`VendorConfig`, served on 127.0.0.1 from an in-memory
    store: what ``vrm demo``, the examples and the tests start, stop and start again (a restart
    reuses the port and the store, so the vendor is "back up" with what it held)."""

    config: VendorConfig
    identity: Identity
    store: MemoryStore = field(default_factory=MemoryStore)
    server: Server | None = None
    port: int = 0

    @classmethod
    def of(cls, config: VendorConfig) -> LocalVendor:
        if config.seed is None:
            raise ValueError(f"{config.name}: a local vendor needs the seed in its configuration")
        return cls(config, Identity(config.seed))

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Serve (again, on the same port if it served before), with the same store."""
        endpoint = Endpoint(self.identity, store=self.store, name=self.name,
                            policy=self.config.policy())
        self.server = await serve(endpoint, "127.0.0.1", self.port)
        self.port = self.server.port

    async def stop(self) -> None:
        """Stop serving: the vendor is down, its data kept."""
        if self.server is not None:
            server, self.server = self.server, None
            await server.close()
