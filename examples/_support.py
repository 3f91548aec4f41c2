"""What the examples share: reference vendors from ``examples/vendors/*.toml`` on 127.0.0.1.

Each vendor is the library's own reference endpoint — an :class:`~vrmproto.server.Endpoint`
with the :class:`~vrmproto.server.ReferencePolicy` its TOML file describes — served on a free
loopback port. A vendor can be stopped and started again on the same port, to show what happens
to messages sent while it is down.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from vrmproto.server import LocalVendor, load_vendor_config

VENDORS = Path(__file__).resolve().parent / "vendors"


@contextlib.asynccontextmanager
async def running_vendors(*names: str) -> AsyncIterator[dict[str, LocalVendor]]:
    """Start the vendors of ``examples/vendors/<name>.toml``; stop them all afterwards."""
    vendors: dict[str, LocalVendor] = {}
    try:
        for name in names:
            vendor = LocalVendor.of(load_vendor_config(VENDORS / f"{name}.toml"))
            await vendor.start()
            vendors[name] = vendor
        yield vendors
    finally:
        for vendor in vendors.values():
            await vendor.stop()
