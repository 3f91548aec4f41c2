"""Long-running and network-wide commands: ``vrm discover``, ``vrm agent serve``,
``vrm vendor serve``.

Both servers print one line when they listen (``--json``: one JSON object per line, the first
``{"event": "listening", "url": …, "port": …}``), then one line per message they accept, and
stop cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import click

from vrmproto._keys import Identity, MasterSeed, fingerprint, key_to_text, sha256
from vrmproto.cli._agent_endpoint import AgentRoutes
from vrmproto.cli._context import CLI_RETRY, Env, common_options, open_agent, pass_env, run
from vrmproto.cli._errors import EXIT_USAGE, CliError
from vrmproto.cli._home import default_home
from vrmproto.cli._output import Out, table
from vrmproto.cli._vendor import VendorConfig, load_vendor_config, vendor_data_dir
from vrmproto.client import Agent
from vrmproto.server import (
    DEFAULT_CONNECTION_LIMITS,
    ConnectionLimits,
    Endpoint,
    Event,
    serve,
    serve_app,
)
from vrmproto.store import (
    MemoryStore,
    PostgresStore,
    RelationshipRecord,
    SQLiteStore,
    Store,
    StoreError,
)

__all__ = ["AgentIdentities", "agent", "discover", "serve_vendor", "vendor"]


def _emit(out: Out, human: str, **data: Any) -> None:
    """One line now (flushed), for people or as a JSON object."""
    if out.json_mode:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        click.echo(human)


@contextlib.asynccontextmanager
async def _until_signalled() -> AsyncIterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM while the block runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield stop
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _printer(out: Out, side: str) -> Callable[[Event], Any]:
    async def hook(event: Event) -> None:
        sender = fingerprint(event.message.sender)
        _emit(out, f"  {side} {event.kind:<16} thread {event.thread.hex()[:12]}  from {sender}",
              event="message", kind=event.kind, thread=event.thread.hex(),
              sender=sender, hash=event.message.hash.hex())  # fmt: skip

    return hook


# -- discover --------------------------------------------------------------------------------


@click.command()
@click.option("--timeout", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Seconds to listen.")
@click.option("--interface", "interfaces", multiple=True, default=("127.0.0.1",),
              show_default=True, help="Interface address to browse on (repeatable).")
@common_options
@pass_env
def discover(env: Env, timeout: float, interfaces: tuple[str, ...]) -> None:
    """Find vendor endpoints on the local network (zeroconf `_vrm._tcp`), each one checked.

    An endpoint is verified when its signed discovery document checks and is signed by the key
    whose fingerprint it advertises. Unverified ones are listed with the reason; don't use them
    without checking the fingerprint another way.
    """
    from vrmproto.discovery import browse  # noqa: PLC0415 -- zeroconf only when needed

    found = run(browse(timeout, interfaces))
    rows: list[dict[str, Any]] = [
        {
            "name": f.name,
            "url": f.url,
            "fingerprint": f.fingerprint,
            "verified": f.verified,
            "key": key_to_text(f.key) if f.key else None,
            "document_name": f.document.name if f.document else None,
            "accepts_terms": list(f.document.accepts_terms) if f.document else [],
            "problem": f.problem,
        }
        for f in found
    ]
    out = env.out
    if out.json_mode:
        out.json({"found": rows})
        return
    if not rows:
        out.print(f"No vrm endpoints answered on {', '.join(interfaces)} within {timeout:g} s.")
        return
    t = table("⊃ vendors on the local network", "name", "address", "key fingerprint", "verified")
    for r in rows:
        check = "[green]✓ signature checks, key matches[/]" if r["verified"] else \
            f"[red]✗ {r['problem']}[/]"  # fmt: skip
        t.add_row(str(r["name"]), str(r["url"]), str(r["fingerprint"]), check)
    out.print(t)


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
    if config.store is not None:
        try:
            store = await PostgresStore.open(config.store)
        except StoreError as exc:
            raise CliError(f"cannot open the store: {exc}", kind="store") from None
    elif data_dir is None:
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


# -- agent serve -----------------------------------------------------------------------------


class AgentIdentities:
    """Adapter: the agent endpoint's ``identity_for`` (sync) from the agent's ledger (async).

    The server asks, for each incoming message, which of our keys the thread uses; the agent
    derives it from the master seed and the thread's meta. :meth:`refresh` loads them all
    (call it at start and after each outbox round); a thread opened since is found by trying
    the pairwise keys of its vendor (§2.3), generation by generation.
    """

    def __init__(self, master: MasterSeed) -> None:
        self._master = master
        self._by_key: dict[bytes, Identity] = {}

    async def refresh(self, agent: Agent) -> None:
        for record in await agent.store.relationships():
            if record.role != "customer" or record.local_key in self._by_key:
                continue
            try:
                t = await agent.ledger.load(record.thread)
            except LookupError:
                continue
            self._by_key[record.local_key] = t.rel.identity

    def __call__(self, record: RelationshipRecord) -> Identity:
        known = self._by_key.get(record.local_key)
        if known is not None:
            return known
        for generation in range(16):
            candidate = self._master.pairwise(record.peer_key, generation)
            if candidate.public_key == record.local_key:
                self._by_key[record.local_key] = candidate
                return candidate
        # Not ours: any identity makes the endpoint refuse the message as wrong_recipient.
        return Identity(sha256(b"vrmproto/cli/unknown-thread\x00" + record.thread))


@click.group()
def agent() -> None:
    """Run your agent as a node: an endpoint vendors can reach, and the outbox loop."""


@agent.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--interval", type=click.FloatRange(min=0.2), default=30.0, show_default=True,
              help="Most seconds between outbox rounds.")
@common_options
@pass_env
def agent_serve(env: Env, host: str, port: int, interval: float) -> None:
    """Serve your agent endpoint (for vendor-initiated messages) and deliver queued messages."""
    run(_serve_agent(env, host=host, port=port, interval=interval))


async def _serve_agent(env: Env, *, host: str, port: int, interval: float) -> None:
    out = env.out
    home = env.home
    settings = home.settings()
    master = home.master()
    async with open_agent(env, settings=settings) as node:
        identities = AgentIdentities(master)
        await identities.refresh(node)
        routes = AgentRoutes(master, node.store, identities)
        await routes.refresh()
        routes.engine.subscribe(_printer(out, "←"))
        try:  # the limits of a vendor's server: the agent is on the same open network (§10.1)
            server = await serve_app(routes.app(), routes.engine, host, port)
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                           EXIT_USAGE, kind="listen") from None  # fmt: skip
        try:
            bound = server.port
            url = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
            settings.extra["agent_url"] = url
            home.write_settings(settings)
            node.endpoint = url  # counter-offers accepted by the outbox rounds name it
            try:
                async with _until_signalled() as stop:
                    _emit(out, f"⊂ your agent is listening on {url} (each vendor is told a "
                          "path of its own under it)", event="listening", url=url,
                          port=bound)  # fmt: skip
                    await _outbox_loop(node, out, identities=identities, routes=routes,
                                       stop=stop, interval=interval)  # fmt: skip
            finally:
                settings = home.settings()
                settings.extra.pop("agent_url", None)
                home.write_settings(settings)
        finally:
            await server.close()
    _emit(out, "⊂ your agent stopped", event="stopped")


async def _outbox_loop(base: Agent, out: Out, *, identities: AgentIdentities,
                       routes: AgentRoutes, stop: asyncio.Event,
                       interval: float) -> None:  # fmt: skip
    while not stop.is_set():
        # A fresh agent per round, on the same store: its cache never outlives what the endpoint
        # changed meanwhile.
        async with await Agent.open(base.store, base.ledger.master, terms=base.terms,
                                    endpoint=base.endpoint, retry=CLI_RETRY) as node:
            outcome = await node.run_outbox()
            for d in outcome.deliveries:
                _emit(out, f"  → outbox: {d.status} {d.msg_hash.hex()[:12]}", event="delivery",
                      status=d.status, message=d.msg_hash.hex(), thread=d.thread.hex())  # fmt: skip
            await identities.refresh(node)
            await routes.refresh()
            pending = await node.pending()
            now = time.time_ns() // 1_000_000
            soonest = min((i.next_attempt_ms for i in pending), default=now + int(interval * 1000))
        delay = min(interval, max(0.2, (soonest - now) / 1000))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
