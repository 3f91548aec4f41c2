"""A reference vendor from a TOML file, for the command line: what ``vrm vendor serve
--config vendor.toml`` runs. The file and its schema are described in
:mod:`vrmproto.server._config`; here a mistake becomes a :class:`CliError` (exit code 2).
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vrmproto._files import atomic_write_text, private_data_dir
from vrmproto.cli._errors import EXIT_USAGE, CliError
from vrmproto.cli._home import show_warnings
from vrmproto.server import LocalVendor, VendorConfig
from vrmproto.server._config import (
    ConfigError,
    VendorFile,
    load_vendor_file,
    parse_vendor_file,
    vendor_config,
)

__all__ = [
    "LocalVendor",
    "VendorConfig",
    "check_vendor_file",
    "claim_vendor_dir",
    "default_vendor_dir",
    "load_vendor_config",
    "parse_vendor_config",
    "vendor_data_dir",
]


def vendor_data_dir(directory: Path) -> Path:
    """The vendor's data directory, only the vendor's to read (§11.13-1): its database holds
    customers' shared data in clear. Created 0700; a looser directory, and its seed and
    database files, are tightened (0700, 0600) with a warning on stderr."""
    show_warnings()
    private_data_dir(directory)
    return directory


#: The file in a vendor's default data directory that says whose it is (:func:`default_vendor_dir`).
NAME_FILE = "vendor-name"


def _ascii_slug(name: str) -> str:
    """The directory name vrm gave a vendor before it kept the letters of every script."""
    return "-".join(re.findall(r"[a-z0-9]+", name.lower())) or "vendor"


#: Longest slug in UTF-8 bytes: a file name is at most 255 bytes on Linux's file systems.
SLUG_BYTES = 200


def vendor_slug(name: str) -> str:
    """``name``'s letters and digits, of any script, lower-case, joined by ``-``; a slug
    longer than :data:`SLUG_BYTES` is cut there and ends with a digest of the whole name (so
    two long names that differ only past the cut stay apart)."""
    words = re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", name).casefold())
    slug = "-".join(words) or "vendor"
    if len(slug.encode()) <= SLUG_BYTES:
        return slug
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    cut = slug.encode()[:SLUG_BYTES - len(digest) - 1].decode(errors="ignore").rstrip("-")
    return f"{cut}-{digest}"


def default_vendor_dir(home: Path, name: str) -> Path:
    """Where the vendor ``name`` keeps its seed and database unless told (``--data-dir``):
    ``home/vendors/<slug>``, the slug keeping the letters of every script — "日本の店" and
    "Магазин" are no longer both ``vendor``, nor "Café Zoë" and "Café Zoé" both ``caf-zo``,
    which made two vendors share one seed (one key) and one database. A directory an earlier
    vrm made under the ASCII-only slug is still used while it names no other vendor."""
    vendors = home / "vendors"
    own, legacy = vendors / vendor_slug(name), vendors / _ascii_slug(name)
    if own == legacy or own.exists() or not legacy.is_dir():
        return own
    owner = legacy / NAME_FILE
    if owner.exists() and owner.read_text("utf-8").strip() != name:
        return own
    return legacy


def claim_vendor_dir(directory: Path, name: str) -> None:
    """Write in ``directory`` whose it is (once): :func:`default_vendor_dir` reads it."""
    path = directory / NAME_FILE
    if not path.exists():
        atomic_write_text(path, name + "\n", mode=0o600)


def _cli_error(exc: ConfigError) -> CliError:
    return CliError(str(exc), EXIT_USAGE, kind="config")


def parse_vendor_config(
    data: Mapping[str, Any], *, source: str = "<config>", base: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> VendorConfig:  # fmt: skip
    """Check a decoded vendor TOML table; :class:`CliError` (exit 2) naming the mistake."""
    try:
        return vendor_config(parse_vendor_file(data, source=source, environ=environ),
                             source=source, base=base)  # fmt: skip
    except ConfigError as exc:
        raise _cli_error(exc) from None


def check_vendor_file(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> tuple[VendorFile, VendorConfig]:
    """Read and check a vendor TOML file (with ``environ``'s ``VRM_*`` variables)."""
    p = Path(path)
    try:
        file = load_vendor_file(p, environ=environ)
        return file, vendor_config(file, source=str(p), base=p.parent)
    except ConfigError as exc:
        raise _cli_error(exc) from None


def load_vendor_config(path: str | os.PathLike[str],
                       environ: Mapping[str, str] | None = None) -> VendorConfig:  # fmt: skip
    """Read and check a vendor TOML file."""
    return check_vendor_file(path, environ)[1]
