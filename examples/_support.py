"""What the examples share: reference vendors from ``examples/vendors/*.toml`` on 127.0.0.1.

Each vendor is the library's own reference endpoint — an :class:`~vrmproto.server.Endpoint`
with the :class:`~vrmproto.server.ReferencePolicy` its TOML file describes — served on a free
loopback port. A vendor can be stopped and started again on the same port, to show what happens
to messages sent while it is down.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from vrmproto import Identity
from vrmproto.cli import VendorConfig, load_vendor_config
from vrmproto.server import Endpoint, Server, serve
from vrmproto.store import MemoryStore

VENDORS = Path(__file__).resolve().parent / "vendors"


@dataclass
class RunningVendor:
    """One reference vendor: its configuration, key, store and (while up) its server."""

    config: VendorConfig
    identity: Identity
    store: MemoryStore
    server: Server | None = None
    port: int = 0

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
            await self.server.close()
            self.server = None


@contextlib.asynccontextmanager
async def running_vendors(*names: str) -> AsyncIterator[dict[str, RunningVendor]]:
    """Start the vendors of ``examples/vendors/<name>.toml``; stop them all afterwards."""
    vendors: dict[str, RunningVendor] = {}
    try:
        for name in names:
            config = load_vendor_config(VENDORS / f"{name}.toml")
            assert config.seed is not None, "the example vendors carry their (public) seeds"
            vendor = RunningVendor(config, Identity(config.seed), MemoryStore())
            await vendor.start()
            vendors[name] = vendor
        yield vendors
    finally:
        for vendor in vendors.values():
            await vendor.stop()
