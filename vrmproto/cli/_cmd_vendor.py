"""``vrm vendor serve`` (run a reference vendor from its TOML file) and ``vrm vendor
check-config`` (check that file without running anything).

The file (:mod:`vrmproto.server._config`) sets everything: the policy, every ``Limits`` field,
the connections, the listener (TLS, public URL, trusted proxies), the store, logging and
metrics; ``VRM_<SECTION>_<FIELD>`` environment variables and the command's options override it.
``serve`` logs with stdlib ``logging`` to stdout: one line when it listens (with ``--json``,
or ``[logging] format = "json"``, one JSON object per line, the first
``{"event": "listening", "url": …, "port": …}``), then one line per request it answers (every
refusal once), and it stops cleanly on SIGINT, SIGTERM or SIGHUP (unless under nohup).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import click

from vrmproto._keys import Identity, fingerprint, key_to_text
from vrmproto.cli import _cmd_events, _cmd_tryton
from vrmproto.cli._cmd_serve import _until_signalled
from vrmproto.cli._context import run
from vrmproto.cli._errors import EXIT_USAGE, CliError
from vrmproto.cli._home import default_home
from vrmproto.cli._vendor import (
    check_vendor_file,
    claim_vendor_dir,
    default_vendor_dir,
    vendor_data_dir,
)
from vrmproto.nostr._vendor import vendor_on_relays
from vrmproto.server import (
    DEFAULT_CONNECTION_LIMITS,
    ConnectionLimits,
    Server,
    VendorConfig,
    serve,
)
from vrmproto.server._config import ConfigError, VendorFile, parse_vendor_file
from vrmproto.server._endpoint import Endpoint
from vrmproto.server._logging import configure_logging
from vrmproto.server._metrics import MeteredStore, Metrics, metrics_site
from vrmproto.server._webhooks import running, webhooks
from vrmproto.server._workers import Supervisor, listening_socket, share_rate_limits
from vrmproto.store import MemoryStore, PostgresStore, SQLiteStore, Store, StoreError

fcntl: Any
try:
    import fcntl
except ImportError:  # pragma: no cover -- not POSIX: nothing keeps a second server out
    fcntl = None

__all__ = ["serve_vendor", "vendor"]

log = logging.getLogger("vrmproto.server.vendor")


#: Log lines of the vendor's own that are warnings or errors, not news: a worker that failed
#: to start (and so stopped the service) was logged at INFO, unseen by a level filter.
_WARNINGS = frozenset({"worker_killed", "worker_exited"})
_ERRORS = frozenset({"worker_failed"})


def _event(event: str, human: str, **fields: Any) -> None:
    level = (logging.ERROR if event in _ERRORS else
             logging.WARNING if event in _WARNINGS else logging.INFO)  # fmt: skip
    log.log(level, human, extra={"event": event, "fields": fields})


def _tls(file: VendorFile, base: Path) -> ssl.SSLContext | None:
    server = file.server
    if server.tls_cert is None or server.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # A client's TLS 1.2 renegotiation mid-connection is refused (an alert), not served: the
    # endpoint's own TLS layer (server/_tls.py) cannot write while one is in progress.
    context.options |= ssl.OP_NO_RENEGOTIATION
    cert, key = base / server.tls_cert, base / server.tls_key
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if not path.is_file():
            raise CliError(f"server.{name}: no such file {path}", EXIT_USAGE, kind="config")
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot load the TLS certificate {cert} with its key {key}: "
                       f"{getattr(exc, 'strerror', None) or exc}", EXIT_USAGE,
                       kind="config") from None  # fmt: skip
    return context


def _sqlite_path(file: VendorFile, data_dir: Path | None) -> Path | None:
    """The SQLite database the vendor serves from; None for PostgreSQL or memory."""
    if file.store.kind == "postgresql" and file.store.url is not None:
        return None
    if data_dir is None or file.store.kind == "memory":
        return None
    path = Path(file.store.path)
    return path if path.is_absolute() else data_dir / path


async def _open_store(file: VendorFile, data_dir: Path | None) -> Store:
    if file.store.kind == "postgresql" and file.store.url is not None:
        try:
            return await PostgresStore.open(file.store.url)
        except StoreError as exc:
            raise CliError(f"cannot open the store: {exc}", kind="store") from None
    path = _sqlite_path(file, data_dir)
    if path is None:
        return MemoryStore()
    try:
        return await SQLiteStore.open(path)
    except StoreError as exc:
        raise CliError(f"cannot open the store {path}: {exc}", kind="store") from None


def _check_sqlite_path(path: Path | None) -> None:
    """Refuse a ``[store] path`` that cannot be a database file (exit 2), naming it, before
    anything is made or tightened there: a directory at the path was chmod-ed 0600, and a
    missing directory was reported as its lock file's."""
    if path is None:
        return
    if path.is_dir():
        raise CliError(f"store.path: {path} is a directory, not a database file; name a file "
                       "in it", EXIT_USAGE, kind="config")  # fmt: skip
    if not path.parent.is_dir():
        raise CliError(f"store.path: {path}: no such directory {path.parent}; make it first",
                       EXIT_USAGE, kind="config")  # fmt: skip


@contextlib.contextmanager
def _sole_server(path: Path | None) -> Iterator[None]:
    """Hold ``<database>-serve.lock`` while serving from the SQLite database ``path``: a
    second ``vrm vendor serve`` on it is refused. Two processes on one SQLite store each check
    a message against what they read and append it after what the other wrote — both accept
    two messages that link to the same one, and the history forks — and each keeps its own
    rate limits (§12.9-8). Several processes need ``--store postgresql://…`` and
    ``--workers``. The kernel drops the lock when the process ends, however it ends."""
    if path is None or fcntl is None:
        yield
        return
    lock = path.with_name(path.name + "-serve.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(
                f"another vrm vendor serve is serving from {path}; stop it first (several "
                "processes need --store postgresql://… and --workers)", EXIT_USAGE,
                kind="busy",
            ) from None  # fmt: skip
        yield
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def _metrics_listener(file: VendorFile, metrics: Metrics | None,
                            store: Store) -> AsyncIterator[str | None]:  # fmt: skip
    """A listener of its own for ``/metrics`` when ``[metrics] port`` is set."""
    port = file.metrics.port
    if metrics is None or port is None:
        yield None
        return
    host = file.metrics.host or file.server.host
    stack = contextlib.AsyncExitStack()
    try:
        url = await stack.enter_async_context(metrics_site(metrics, store, host, port))
    except OSError as exc:  # was told as the main port's: "error while attempting to bind…"
        raise CliError(f"cannot listen for /metrics (metrics.port) on {host}:{port}: "
                       f"{exc.strerror or exc}", EXIT_USAGE, kind="listen") from None  # fmt: skip
    async with stack:
        yield url


@dataclasses.dataclass(frozen=True, slots=True)
class _Worker:
    """One of ``--workers``: which, the supervisor's socket, and what to call once serving."""

    index: int
    sock: socket.socket
    ready: Callable[[], None]


async def serve_vendor(config: VendorConfig, *, identity: Identity, data_dir: Path | None,
                       base: Path = Path(), worker: _Worker | None = None) -> None:  # fmt: skip
    """Run the vendor of ``config`` (its ``file`` settings) until SIGINT/SIGTERM/SIGHUP
    (``data_dir`` None: in memory; the directory must exist); ``worker``: as one of several
    processes on its supervisor's socket."""
    file = config.file if config.file is not None else VendorFile(name=config.name)
    tls = _tls(file, base)
    metrics = Metrics() if file.metrics.enabled else None
    _check_sqlite_path(_sqlite_path(file, data_dir))
    with _sole_server(_sqlite_path(file, data_dir)):
        await _serve_from(config, file, identity=identity, data_dir=data_dir, tls=tls,
                          metrics=metrics, worker=worker)


async def _serve_from(config: VendorConfig, file: VendorFile, *, identity: Identity,
                      data_dir: Path | None, tls: ssl.SSLContext | None,
                      metrics: Metrics | None, worker: _Worker | None) -> None:  # fmt: skip
    store = await _open_store(file, data_dir)
    try:
        metered = store if metrics is None else MeteredStore.wrap(store, metrics)
        endpoint = config.endpoint(identity, metered)
        share_rate_limits(endpoint, store)  # a database store: across processes (§12.9-8)
        limits = file.connection_limits()
        same = None if file.metrics.port is not None else metrics
        server = await _listen(endpoint, file, limits, tls=tls, metrics=same, worker=worker)
        hooks = webhooks(file, server.url)
        if metrics is not None:
            metrics.webhooks = tuple(h.name for h in hooks)
        async with server, _metrics_listener(file, metrics, store) as apart, \
                _until_signalled() as stop:  # fmt: skip
            if worker is None:
                _listening(config, identity, server, limits,
                           apart or (f"{server.url}/metrics" if same else None))  # fmt: skip
            else:
                worker.ready()
            async with contextlib.AsyncExitStack() as stack:
                first = worker is None or worker.index == 0
                if first:  # one deliverer per vendor: the others' commits wake it (NOTIFY)
                    await stack.enter_async_context(running(
                        endpoint, hooks, poll_s=file.server.feed_poll_s,
                        retention=file.feed.retention()))
                if file.server.advertise and first:
                    await _advertise(stack, name=config.name, port=server.port,
                                     identity=identity, host=file.server.host,
                                     https=tls is not None)  # fmt: skip
                if file.relays and first:  # intentcasts through Nostr relays (spec §15)
                    await stack.enter_async_context(vendor_on_relays(
                        config, identity, file.server.public_url or server.url))  # fmt: skip
                await stop.wait()
        if worker is None:
            _event("stopped", f"⊃ {config.name} stopped")
    finally:
        await store.close()


async def _listen(endpoint: Endpoint, file: VendorFile, limits: ConnectionLimits, *,
                  tls: ssl.SSLContext | None, metrics: Metrics | None,
                  worker: _Worker | None) -> Server:  # fmt: skip
    host, port = file.server.host, file.server.port
    try:
        return await serve(endpoint, host, port, connection_limits=limits, ssl_context=tls,
                           deployment=file.server.deployment(), metrics=metrics,
                           sock=None if worker is None else worker.sock)  # fmt: skip
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_USAGE,
                       kind="listen") from None  # fmt: skip


def _serve_workers(config: VendorConfig, *, identity: Identity, data_dir: Path | None,
                   base: Path) -> int:  # fmt: skip
    """``--workers N``: a supervisor forking N processes onto one socket
    (:mod:`vrmproto.server._workers`); the exit status."""
    file = config.file
    assert file is not None
    try:
        sock = listening_socket(file.server.host, file.server.port)
    except OSError as exc:
        raise CliError(f"cannot listen on {file.server.host}:{file.server.port}: "
                       f"{exc.strerror or exc}", EXIT_USAGE, kind="listen") from None  # fmt: skip

    def work(index: int, sock: socket.socket, ready: Callable[[], None]) -> int:
        try:
            run(serve_vendor(config, identity=identity, data_dir=data_dir, base=base,
                             worker=_Worker(index, sock, ready)))  # fmt: skip
        except CliError as exc:
            _event("worker_failed", f"  worker {index}: {exc.message}", worker=index,
                   error=exc.message)  # fmt: skip
            return 1
        return 0

    def listening(pids: list[int]) -> None:
        port = sock.getsockname()[1]
        scheme = "https" if file.server.tls_cert else "http"
        host = file.server.host
        url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
        fp = fingerprint(identity.public_key)
        _event("listening", f"⊃ {config.name} listening on {url} with {len(pids)} workers "
               f"(key {fp})", name=config.name, url=url, port=port, fingerprint=fp,
               key=key_to_text(identity.public_key), workers=len(pids), pids=pids,
               metrics=f"{url}/metrics" if file.metrics.enabled else None)  # fmt: skip

    supervisor = Supervisor(file.server.workers, sock, work,
                            lambda event, human, fields: _event(event, human, **fields),
                            stop_timeout_s=file.server.stop_timeout_s)
    try:
        status = supervisor.run(listening)
    finally:
        sock.close()
    _event("stopped", f"⊃ {config.name} stopped", status=status)
    return status


def _listening(config: VendorConfig, identity: Identity, server: Server,
               limits: ConnectionLimits, metrics_url: str | None) -> None:  # fmt: skip
    fp = fingerprint(identity.public_key)
    _event("listening", f"⊃ {config.name} listening on {server.url}  (key {fp})",
           name=config.name, url=server.url, port=server.port, fingerprint=fp,
           key=key_to_text(identity.public_key), metrics=metrics_url,
           connections={"max": server.connections.cap,
                        "per_address": limits.max_connections_per_address,
                        "header_timeout_ms": limits.header_timeout_ms,
                        "idle_timeout_ms": limits.idle_timeout_ms})  # fmt: skip


async def _advertise(stack: contextlib.AsyncExitStack, *, name: str, port: int,
                     identity: Identity, host: str, https: bool) -> None:  # fmt: skip
    """Advertise the endpoint with zeroconf on ``host`` (§13.2-1), where an agent can use it:
    what an agent hears is a host and a port, whose document it fetches over plain HTTP
    (§13.2-4), so an endpoint serving HTTPS there is not advertised."""
    from vrmproto.discovery import SERVICE_TYPE, advertise  # noqa: PLC0415

    if host in ("0.0.0.0", "::", ""):  # noqa: S104 -- compared, not bound
        _event("not_advertised", "  (not advertised: give --host an interface address to "
               "advertise on)", reason="wildcard host")  # fmt: skip
        return
    if https:
        _event("not_advertised", "  (not advertised with zeroconf: it serves HTTPS, and an "
               "agent that finds an endpoint on the local network asks it over plain HTTP; "
               "give customers its https:// URL)", reason="https")  # fmt: skip
        return
    try:
        await stack.enter_async_context(advertise(name, port, identity.public_key, host))
    except (OSError, ValueError) as exc:
        _event("not_advertised", f"  (not advertised with zeroconf: {exc})", reason=str(exc))
        return
    _event("advertised", f"  advertised as {SERVICE_TYPE} on {host}", host=host)


@click.group()
def vendor() -> None:
    """Run a reference vendor endpoint, to try the protocol with."""


def _overrides(file: VendorFile, options: dict[str, Any]) -> VendorFile:
    """The file's settings with the command line's options over them (None: not given)."""
    server = {k: options[k] for k in ("host", "port", "advertise", "public_url", "tls_cert",
                                      "tls_key", "workers")
              if options.get(k) is not None}  # fmt: skip
    if options.get("trusted_proxies"):
        server["trusted_proxies"] = list(options["trusted_proxies"])
    connections = {k: v for k, v in options.items() if v is not None and k in
                   {f.name for f in dataclasses.fields(ConnectionLimits)}}  # fmt: skip
    data = file.model_dump()
    data["server"].update(server)
    data["connections"].update(connections)
    if options.get("relays"):
        data["relays"] = list(options["relays"])
    if options.get("as_json"):
        data["logging"]["format"] = "json"
    if options.get("metrics"):
        data["metrics"]["enabled"] = True
    if options.get("metrics_port") is not None:
        data["metrics"].update(enabled=True, port=options["metrics_port"])
    if options.get("store"):
        data["store"] = {"kind": "postgresql", "url": options["store"]}
    if options.get("memory") and data["store"]["kind"] != "postgresql":
        data["store"] = {"kind": "memory"}
    try:  # the file's checks, all of them: --tls-cert without --tls-key served plain HTTP
        return parse_vendor_file(data, source="the command line")
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE, kind="usage") from None


def _serve_options(f: Callable[..., Any]) -> Callable[..., Any]:
    d = DEFAULT_CONNECTION_LIMITS
    options = [
        click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                     help="The vendor's TOML file (see examples/vendors/)."),
        click.option("--host", help="Address to listen on [file, else 127.0.0.1]."),
        click.option("--port", type=click.IntRange(0, 65535),
                     help="Port to listen on (0: any free port) [file, else 0]."),
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="The vendor's own directory (default $VRM_HOME/vendors/<name>)."),
        click.option("--memory", is_flag=True, help="Keep nothing on this machine's disk (a "
                     "postgresql store is still used; the seed must be in the file)."),
        click.option("--store", metavar="URL", help="Serve from PostgreSQL at this "
                     "postgresql:// URL instead of the data directory's SQLite."),
        click.option("--advertise/--no-advertise", default=None,
                     help="Advertise with zeroconf on --host (not over HTTPS) "
                          "[default: advertise]."),
        click.option("--public-url", help="The base URL customers reach it at, advertised "
                     "in discovery (spec §12.13-3)."),
        click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="NETWORK",
                     help="A proxy network whose Forwarded / X-Forwarded-For headers count "
                     "(repeatable; spec §12.13-1)."),
        click.option("--tls-cert", help="Serve HTTPS with this PEM certificate (chain)."),
        click.option("--tls-key", help="The PEM private key of --tls-cert."),
        click.option("--metrics", is_flag=True, help="Serve GET /metrics (Prometheus)."),
        click.option("--metrics-port", type=click.IntRange(0, 65535),
                     help="Serve /metrics on a listener of its own, on this port."),
        click.option("--max-connections", type=click.IntRange(min=1),
                     help=f"Open HTTP connections in total, in each worker process "
                     f"[{d.max_connections}]."),
        click.option("--max-connections-per-address", type=click.IntRange(min=1),
                     help=f"Open HTTP connections per client address or prefix, in each "
                     f"worker process [{d.max_connections_per_address}]."),
        click.option("--ipv4-prefix", type=click.IntRange(1, 32),
                     help=f"Count IPv4 clients together by this prefix [{d.ipv4_prefix}]."),
        click.option("--ipv6-prefix", type=click.IntRange(1, 128),
                     help=f"Count IPv6 clients together by this prefix [{d.ipv6_prefix}]."),
        click.option("--json", "as_json", is_flag=True, help="Log one JSON object per line."),
        click.option("--workers", type=click.IntRange(1, 256), help="Processes serving the "
                     "port, each with its own database pool; above 1 needs --store "
                     "postgresql://… (spec §12.9-8) [file, else 1]. The rate limits and "
                     "first-contact budgets hold over all of them together; the connection "
                     "caps hold in each (N workers: up to N times as many connections)."),
        click.option("--relay", "relays", multiple=True, metavar="URL", help="Answer "
                     "intentcasts from this Nostr relay (repeatable; spec §15)."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


vendor.add_command(_cmd_events.vendor_events)  # vrm vendor events (the event feed, issue 14)
vendor.add_command(_cmd_tryton.vendor_tryton)  # vrm vendor tryton (the feed into Tryton, issue 14)


@vendor.command("serve")
@_serve_options
def vendor_serve(*, config_path: str, data_dir: Path | None, **options: Any) -> None:
    """Serve a reference vendor from a TOML file: its terms, counter-offers and catalogue.

    Slow and idle HTTP connections are closed after 10 and 20 seconds, and connections are
    capped in total and per client address (spec §10.1), in each process: with --workers N
    the service holds up to N times the caps (the rate limits hold over all the processes
    together, §12.9-8). The file's sections (limits,
    connections, server, store, logging, metrics, feed: how long the event feed keeps its
    events, and [[webhooks]]: docs/events.md) and VRM_<SECTION>_<FIELD> environment
    variables set the rest; options given here win.
    """
    file, config = check_vendor_file(config_path, os.environ)
    file = _overrides(file, options)
    config = dataclasses.replace(config, file=file)
    memory = file.store.kind == "memory"
    directory = None if memory else (data_dir or default_vendor_dir(default_home(), config.name))
    if directory is not None:
        vendor_data_dir(directory)  # 0700, its files 0600 (§11.13-1)
        if data_dir is None:
            claim_vendor_dir(directory, config.name)
    identity = config.identity(directory)
    handler = configure_logging(vendor=config.name, json_lines=file.logging.format == "json",
                                level=file.logging.level,
                                queue_size=file.logging.queue_size)  # fmt: skip
    base = Path(config_path).parent
    _tls(file, base)  # a bad certificate: exit 2 here, not exit 1 from each worker
    try:
        if file.server.workers > 1:
            status = _serve_workers(config, identity=identity, data_dir=directory, base=base)
            if status:
                raise SystemExit(status)
        else:
            run(serve_vendor(config, identity=identity, data_dir=directory, base=base))
    finally:
        logging.getLogger("vrmproto").removeHandler(handler)
        handler.close()  # what is still queued, written (its writer thread: _logwriter)


@vendor.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the checked settings as JSON.")
def check_config(path: str, as_json: bool) -> None:
    """Check a vendor TOML file (and the VRM_* environment variables) without serving it."""
    file, config = check_vendor_file(path, os.environ)
    if as_json:
        data = {"ok": True, "path": path, **file.model_dump(mode="json", exclude={"seed"})}
        data["limits"] = config.limits.to_wire()  # every limit, the defaults filled in
        data["connections"] = dataclasses.asdict(file.connection_limits())
        click.echo(json.dumps(data))
        return
    click.echo(f"{path}: ok — {config.name}, {len(config.catalogue)} catalogue items, "
               f"store {file.store.kind}, logging {file.logging.format}, metrics "
               f"{'on' if file.metrics.enabled else 'off'}")
