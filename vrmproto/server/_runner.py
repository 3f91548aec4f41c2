"""The reference vendor runner: a :class:`VendorConfig` (who the vendor is and what its
:class:`~vrmproto.server.ReferencePolicy` decides) and :class:`LocalVendor`, which serves one
on 127.0.0.1 — what ``vrm demo``, the examples and the tests start, stop and start again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vrmproto._keys import Identity
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._vocab import DataRecord, TermRef
from vrmproto.server._app import Server, serve
from vrmproto.server._endpoint import Endpoint
from vrmproto.server._policy import CatalogueItem, ReferencePolicy
from vrmproto.store import MemoryStore, Store

if TYPE_CHECKING:
    from vrmproto.server._config import VendorFile

__all__ = ["LocalVendor", "VendorConfig"]


@dataclass(frozen=True, slots=True)
class VendorConfig:
    """A parsed vendor file. ``seed`` is None when the data directory is to keep the key.
    ``file``: the whole checked file (its server, store, logging and metrics settings)."""

    name: str
    seed: bytes | None
    accepts_terms: tuple[str, ...]
    counter: tuple[TermRef, ...]
    catalogue: tuple[CatalogueItem, ...]
    observed: tuple[DataRecord, ...]
    source: str = "<config>"
    limits: Limits = DEFAULT_LIMITS
    file: VendorFile | None = None

    def endpoint(self, identity: Identity, store: Store) -> Endpoint:
        """The endpoint this vendor runs, with its limits and policy."""
        return Endpoint(identity, store=store, name=self.name, policy=self.policy(),
                        limits=self.limits)  # fmt: skip

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
            raise ValueError(f"{self.source} gives no seed and there is no data directory to "
                             "keep one in")  # fmt: skip
        return Identity(_data_dir_seed(data_dir))


def seed_hex(text: str, where: str) -> bytes:
    """A seed written as 64 hexadecimal digits; ``ValueError`` naming ``where`` otherwise."""
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ValueError(f"{where}: a seed is 64 hexadecimal digits")
    return seed


def _data_dir_seed(data_dir: Path) -> bytes:
    from vrmproto._files import atomic_write_text  # noqa: PLC0415 -- only here

    path = data_dir / "seed"
    if path.exists():
        return seed_hex(path.read_text("utf-8").strip(), str(path))
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    seed = os.urandom(32)
    atomic_write_text(path, seed.hex() + "\n", mode=0o600)
    return seed


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
        endpoint = self.config.endpoint(self.identity, self.store)
        self.server = await serve(endpoint, "127.0.0.1", self.port)
        self.port = self.server.port

    async def stop(self) -> None:
        """Stop serving: the vendor is down, its data kept."""
        if self.server is not None:
            server, self.server = self.server, None
            await server.close()
