"""A reference vendor from a TOML file, for the command line: what ``vrm vendor serve
--config vendor.toml`` runs. The file and its schema are described in
:mod:`vrmproto.server._config`; here a mistake becomes a :class:`CliError` (exit code 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vrmproto._files import private_data_dir
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
