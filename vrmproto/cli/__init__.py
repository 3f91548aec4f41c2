"""``vrm``: the command line of a person's own agent, and of a reference vendor to try it with.

The console script ``vrm`` runs :func:`main`. ``vrm --help`` lists the commands; every command
takes ``--json`` for scripts and ``--data-dir`` (default ``$VRM_HOME`` or ``~/.vrm``).

:func:`load_vendor_config` reads the vendor TOML files ``vrm vendor serve`` runs, for programs
(the examples) that start reference vendors themselves.
"""

import typing

from vrmproto.cli._app import cli, main

if typing.TYPE_CHECKING:
    from vrmproto.cli._vendor import (
        LocalVendor,
        VendorConfig,
        load_vendor_config,
        parse_vendor_config,
    )

#: Loaded when first used: the console script need not load the vendor's configuration.
_LAZY = {"LocalVendor", "VendorConfig", "load_vendor_config", "parse_vendor_config"}


def __getattr__(name: str) -> typing.Any:
    if name in _LAZY:
        from vrmproto.cli import _vendor  # noqa: PLC0415

        return getattr(_vendor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "LocalVendor", "VendorConfig", "cli", "load_vendor_config", "main", "parse_vendor_config",
]
