"""``vrm vendor serve``: run a reference vendor from its TOML file.

It prints one line when it listens (``--json``: one JSON object per line, the first
``{"event": "listening", "url": …, "port": …}``), then one line per message it accepts, and
stops cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from vrmproto._keys import Identity, fingerprint, key_to_text
from vrmproto.cli._cmd_serve import _emit, _printer, _until_signalled
from vrmproto.cli._context import run
from vrmproto.cli._errors import EXIT_USAGE, CliError
from vrmproto.cli._home import default_home
from vrmproto.cli._output import Out
from vrmproto.cli._vendor import load_vendor_config, vendor_data_dir
from vrmproto.server import (
    DEFAULT_CONNECTION_LIMITS,
    ConnectionLimits,
    Endpoint,
    VendorConfig,
    serve,
)
from vrmproto.store import MemoryStore, SQLiteStore, Store

__all__ = ["serve_vendor", "vendor"]


# -- vendor serve ----------------------------------------------------------------------------


def _slug(name: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", name.lower())) or "vendor"


async def serve_vendor(
    config: VendorConfig,
    out: Out,
    *,
    identity: Identity,
    host: str,
    port: int,
    data_dir: Path | None,
    advertise_it: bool,
    connection_limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS,
) -> None:
    """Run the vendor of ``config`` until SIGINT/SIGTERM (``data_dir`` None: in memory; the
    directory must exist). ``connection_limits``: its HTTP connections (spec §10.1)."""
    store: Store
    if data_dir is None:
        store = MemoryStore()
    else:
        store = await SQLiteStore.open(data_dir / "vendor.db")
    try:
        endpoint = Endpoint(identity, store=store, name=config.name, policy=config.policy())
        endpoint.subscribe(_printer(out, "←"))
        try:
            server = await serve(endpoint, host, port, connection_limits=connection_limits)
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_USAGE,
                           kind="listen") from None  # fmt: skip
        async with server, _until_signalled() as stop:
            fp = fingerprint(identity.public_key)
            limits = connection_limits
            _emit(out, f"⊃ {config.name} listening on {server.url}  (key {fp})",
                  event="listening", name=config.name, url=server.url, port=server.port,
                  fingerprint=fp, key=key_to_text(identity.public_key),
                  connections={"max": server.connections.cap,
                               "per_address": limits.max_connections_per_address,
                               "header_timeout_ms": limits.header_timeout_ms,
                               "idle_timeout_ms": limits.idle_timeout_ms})  # fmt: skip
            async with contextlib.AsyncExitStack() as stack:
                if advertise_it:
                    await _advertise(stack, out, name=config.name, port=server.port,
                                     identity=identity, host=host)  # fmt: skip
                await stop.wait()
        _emit(out, f"⊃ {config.name} stopped", event="stopped")
    finally:
        await store.close()


async def _advertise(stack: contextlib.AsyncExitStack, out: Out, *, name: str, port: int,
                     identity: Identity, host: str) -> None:  # fmt: skip
    from vrmproto.discovery import SERVICE_TYPE, advertise  # noqa: PLC0415

    if host in ("0.0.0.0", "::", ""):  # noqa: S104 -- compared, not bound
        _emit(out, "  (not advertised: give --host an interface address to advertise on)",
              event="not_advertised", reason="wildcard host")  # fmt: skip
        return
    try:
        await stack.enter_async_context(advertise(name, port, identity.public_key, host))
    except (OSError, ValueError) as exc:
        _emit(out, f"  (not advertised with zeroconf: {exc})", event="not_advertised",
              reason=str(exc))  # fmt: skip
        return
    _emit(out, f"  advertised as {SERVICE_TYPE} on {host}", event="advertised", host=host)


def _json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON object per line.")(f)  # fmt: skip


@click.group()
def vendor() -> None:
    """Run a reference vendor endpoint, to try the protocol with."""


@vendor.command("serve")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The vendor's TOML file (see examples/vendors/).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The vendor's own directory (default $VRM_HOME/vendors/<name>).")
@click.option("--memory", is_flag=True, help="Keep nothing on disk.")
@click.option("--advertise/--no-advertise", default=True, show_default=True,
              help="Advertise with zeroconf on --host.")
@click.option("--max-connections", type=click.IntRange(min=1),
              default=DEFAULT_CONNECTION_LIMITS.max_connections, show_default=True,
              help="Open HTTP connections in total (lowered to fit the open-file limit).")
@click.option("--max-connections-per-address", type=click.IntRange(min=1),
              default=DEFAULT_CONNECTION_LIMITS.max_connections_per_address, show_default=True,
              help="Open HTTP connections per client address or prefix.")
@click.option("--ipv4-prefix", type=click.IntRange(1, 32),
              default=DEFAULT_CONNECTION_LIMITS.ipv4_prefix, show_default=True,
              help="Count IPv4 clients together by this prefix (24: per /24).")
@click.option("--ipv6-prefix", type=click.IntRange(1, 128),
              default=DEFAULT_CONNECTION_LIMITS.ipv6_prefix, show_default=True,
              help="Count IPv6 clients together by this prefix.")
@_json_option
def vendor_serve(*, config_path: str, host: str, port: int, data_dir: Path | None, memory: bool,
                 advertise: bool, as_json: bool, max_connections: int,
                 max_connections_per_address: int, ipv4_prefix: int,
                 ipv6_prefix: int) -> None:  # fmt: skip
    """Serve a reference vendor from a TOML file: its terms, counter-offers and catalogue.

    Slow and idle HTTP connections are closed after 10 and 20 seconds, and connections are
    capped in total and per client address (spec §10.1).
    """
    limits = ConnectionLimits(
        max_connections=max_connections, max_connections_per_address=max_connections_per_address,
        ipv4_prefix=ipv4_prefix, ipv6_prefix=ipv6_prefix,
    )  # fmt: skip
    config = load_vendor_config(config_path)
    directory = None if memory else (data_dir or default_home() / "vendors" / _slug(config.name))
    if directory is not None:
        vendor_data_dir(directory)  # 0700, its files 0600 (§11.13-1)
    identity = config.identity(directory)
    run(serve_vendor(config, Out(json_mode=as_json), identity=identity, host=host, port=port,
                     data_dir=directory, advertise_it=advertise,
                     connection_limits=limits))  # fmt: skip


