"""Long-running and network-wide commands: ``vrm discover``, ``vrm agent serve``
(``vrm vendor serve`` is in :mod:`vrmproto.cli._cmd_vendor`).

The agent server prints one line when they listen (``--json``: one JSON object per line, the first
``{"event": "listening", "url": …, "port": …}``), then one line per message they accept, and
stop cleanly on SIGINT, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import click

from vrmproto._keys import fingerprint, key_to_text
from vrmproto.cli._cmd_connect import interface_option, unavailable
from vrmproto.cli._context import Env, common_options, json_option, open_node, pass_env, run
from vrmproto.cli._errors import EXIT_USAGE, CliError
from vrmproto.cli._home import SERVE_LOCK, Home
from vrmproto.cli._output import Out, printable, safe, table
from vrmproto.cli._streams import json_text
from vrmproto.client import CustomerNode, Delivery
from vrmproto.client._node import EVERY_INTERFACE, CatchUp, origin_url
from vrmproto.server import Event
from vrmproto.server._metrics import Metrics, metrics_site
from vrmproto.store import Store

fcntl: Any
try:
    import fcntl
except ImportError:  # pragma: no cover -- not POSIX: nothing keeps a second agent out
    fcntl = None

__all__ = ["SERVE_LOCK", "agent", "discover"]

#: The settings key of the port ``vrm agent serve`` last listened on.
LAST_PORT = "agent_port"


def _emit(out: Out, human: str, **data: Any) -> None:
    """One line now (flushed), for people or as a JSON object."""
    if out.json_mode:
        click.echo(json_text(data))
    else:
        click.echo(printable(human))


def _stop_signals() -> list[signal.Signals]:
    """SIGINT, SIGTERM, and SIGHUP (the terminal closed) unless it is ignored (``nohup``)."""
    signals = [signal.SIGINT, signal.SIGTERM]
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is not None and signal.getsignal(hangup) is not signal.SIG_IGN:
        signals.append(hangup)
    return signals


@contextlib.asynccontextmanager
async def _until_signalled() -> AsyncIterator[asyncio.Event]:
    """An event set by SIGINT, SIGTERM or SIGHUP (:func:`_stop_signals`) while the block
    runs: the agent then stops cleanly, its URL taken out of the settings, instead of dying
    by the default action wherever it was (a terminal closed under it sends SIGHUP)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in _stop_signals():
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
@interface_option("Interface address to browse on (repeatable).")
@json_option
@pass_env
def discover(env: Env, timeout: float, interfaces: tuple[str, ...]) -> None:
    """Find vendor endpoints on the local network (zeroconf `_vrm._tcp`), each one checked.

    An endpoint is verified when its signed discovery document checks and is signed by the key
    whose fingerprint it advertises. Unverified ones are listed with the reason; don't use them
    without checking the fingerprint another way.
    """
    from vrmproto.discovery import _rivals, browse  # noqa: PLC0415 -- zeroconf only when needed

    try:
        found = run(browse(timeout, interfaces))
    except OSError as exc:  # no multicast on these interfaces: say where, and why
        raise CliError(unavailable(exc, interfaces), EXIT_USAGE, kind="environment") from None
    rows: list[dict[str, Any]] = [
        {
            "name": f.name,
            "url": f.url,
            "fingerprint": f.fingerprint,
            "verified": f.verified,
            "key": key_to_text(f.key) if f.key else None,
            "document_name": f.document.name if f.document else None,
            "renamed": f.document_name is not None,  # advertised under another name
            "accepts_terms": list(f.document.accepts_terms) if f.document else [],
            "problem": f.problem,
            # other keys that go by its name here: at most one of them is the vendor (§13.2-7)
            "rivals": [r.fingerprint for r in _rivals(found, f)],
        }
        for f in found
    ]
    out = env.out
    if out.json_mode:
        out.json({"found": rows})
        return
    if not rows:
        out.print(f"No vrm endpoints answered on {safe(', '.join(interfaces))} within "
                  f"{timeout:g} s.")
        return
    t = table("⊃ vendors on the local network", "name", "address", "key fingerprint", "verified")
    # addresses and fingerprints are what a person compares (§11.10-2): never cut ("3nv4-hogl-
    # 3ft4-x…" in an 80-column terminal); the other columns wrap, folding a long word
    for column, values in ((t.columns[1], [r["url"] for r in rows]),
                           (t.columns[2], [r["fingerprint"] for r in rows])):  # fmt: skip
        column.no_wrap = True
        column.min_width = max(len(printable(v)) for v in values)
    for column in (t.columns[0], t.columns[3]):
        column.overflow = "fold"
    for r in rows:
        if not r["verified"]:
            check = f"[red]✗ {safe(r['problem'])}[/]"
        elif r["rivals"]:
            check = (f"[yellow]✓ signature checks, key matches; but another key goes by its "
                     f"name here ({safe(', '.join(r['rivals']))}): compare with one the vendor "
                     "publishes[/]")  # fmt: skip
        else:
            check = "[green]✓ signature checks, key matches[/]"
        name = safe(r["name"])
        if r["renamed"]:
            name += f"\n[dim](its document: {safe(r['document_name'])})[/]"
        t.add_row(name, safe(r["url"]), safe(r["fingerprint"]), check)
    out.print(t)


# -- agent serve -----------------------------------------------------------------------------


@click.group()
def agent() -> None:
    """Run your agent as a node: an endpoint vendors can reach, and the outbox loop."""


@agent.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (0: any free port). Default: the port it listened on "
                   "last time, where the vendors you connected to reach it; any free port "
                   "the first time.")
@click.option("--url", "public_url", metavar="URL",
              help="The URL vendors reach your agent at, told to each vendor you connect to "
                   "(https://host[:port], no path): a router's forwarded port, a reverse "
                   "proxy, a tunnel. Needed with --host 0.0.0.0 or ::. Default: "
                   "http://HOST:PORT.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=30.0, show_default=True,
              help="Most seconds between outbox rounds.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics (your outbox depth, relationships by state) on "
                   "127.0.0.1 at this port (0: any free port); off unless given.")
@common_options
@pass_env
def agent_serve(env: Env, host: str, port: int | None, public_url: str | None, *, interval: float,
                metrics_port: int | None) -> None:  # fmt: skip
    """Serve your agent endpoint (for vendor-initiated messages) and deliver queued messages.

    One per data directory. A vendor that refuses a message because your history lacks what
    it holds (chain_broken: a data directory restored from a backup) is reconciled with at
    once, as `vrm history VENDOR --reconcile` does; send again what it refused."""
    if public_url is not None:
        try:
            public_url = origin_url(public_url)
        except ValueError as exc:
            raise CliError(f"--url: {exc}", EXIT_USAGE, kind="bad_url") from None
    elif host in EVERY_INTERFACE:
        raise CliError(f"--host {host or repr(host)} listens on every interface, an address no "
                       "vendor can reach your agent at: say where they reach it with --url "
                       "(https://host[:port])", EXIT_USAGE, kind="bad_url")  # fmt: skip
    run(_serve_agent(env, host=host, port=port, interval=interval, metrics_port=metrics_port,
                     public_url=public_url))  # fmt: skip


def _why_not(exc: OSError) -> str:
    """Why a port could not be listened on, in the system's words ("address already in
    use"), not aiohttp's, which repeat the address ("error while attempting to bind on …")."""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


@contextlib.asynccontextmanager
async def _agent_metrics(store: Store, port: int | None) -> AsyncIterator[str | None]:
    """``--metrics-port``: the agent's store families on loopback only — how many
    relationships a person has is nobody else's business, so never on the public listener."""
    if port is None:
        yield None
        return
    stack = contextlib.AsyncExitStack()
    try:
        url = await stack.enter_async_context(metrics_site(Metrics(), store, "127.0.0.1", port))
    except OSError as exc:  # was aiohttp's "error while attempting to bind…": which port?
        raise CliError(f"cannot listen for metrics (--metrics-port) on 127.0.0.1:{port}: "
                       f"{_why_not(exc)}", EXIT_USAGE, kind="listen") from None  # fmt: skip
    async with stack:
        yield url


async def _serve_agent(env: Env, *, host: str, port: int | None, interval: float,
                       metrics_port: int | None = None,
                       public_url: str | None = None) -> None:  # fmt: skip
    """The person's :class:`~vrmproto.client.CustomerNode`, listening, running its outbox
    rounds until SIGINT/SIGTERM; its URL is kept in the settings meanwhile (for the commands
    run beside it)."""
    out = env.out
    home = env.home
    settings = home.settings()
    settings.extra.pop("agent_url", None)  # another serve's, or stale: it tells its own
    # SIGTERM is ours before the URL is written, so a stop at any point after clears it
    async with open_node(env, settings=settings) as node, _until_signalled() as stop:
        with _sole_agent(home):
            await _serve_node(env, node, stop, host=host, port=port, interval=interval,
                              metrics_port=metrics_port, public_url=public_url)  # fmt: skip
    _emit(out, "⊂ your agent stopped", event="stopped")


@contextlib.contextmanager
def _sole_agent(home: Home) -> Iterator[None]:
    """Hold :data:`SERVE_LOCK` while serving: a second ``vrm agent serve`` on the data
    directory is refused. Two both listened, the second wrote its URL over the first's, and
    the first to stop erased it while the other still ran, so every command after told
    vendors no endpoint. The kernel drops the lock when the process ends, however it ends."""
    if fcntl is None:
        yield
        return
    fd = os.open(home.path / SERVE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            url = home.settings().extra.get("agent_url")
            raise CliError(
                f"another vrm agent serve is running on the data directory {home.path}"
                + (f" (listening on {url})" if url else "") + "; stop it first, or use it",
                EXIT_USAGE, kind="busy",
            ) from None  # fmt: skip
        yield
    finally:
        os.close(fd)


async def _serve_node(env: Env, node: CustomerNode, stop: asyncio.Event, *, host: str,
                      port: int | None, interval: float, metrics_port: int | None,
                      public_url: str | None) -> None:  # fmt: skip
    """``node`` listening, its URL in the settings, running until ``stop``.

    Without ``port``, on the one it listened on last time (``agent_port`` in the settings):
    every vendor connected while it ran was told its URL, port included (§12.11-3), and
    knows no other."""
    out = env.out
    home = env.home
    settings = home.settings()
    last = settings.extra.get(LAST_PORT)
    kept: int | None = (last if port is None and type(last) is int and 0 < last <= 65535
                        else None)  # fmt: skip
    chosen = kept if kept is not None else (port or 0)
    node.subscribe(_printer(out, "←"))
    try:
        server = await node.listen(host, chosen, url=public_url)
    except OSError as exc:
        why = ("; your agent listened there last time, and the vendors you connected to "
               "while it ran reach it only there: free that port, or choose another with "
               "--port (0: any free one), which those vendors will not know of"
               if kept is not None else "")  # fmt: skip
        raise CliError(f"cannot listen on {host}:{chosen}: {_why_not(exc)}{why}",
                       EXIT_USAGE, kind="listen") from None  # fmt: skip
    url = node.agent.endpoint
    settings.extra["agent_url"] = url
    settings.extra[LAST_PORT] = server.port
    home.write_settings(settings)
    try:
        async with _agent_metrics(node.agent.store, metrics_port) as metrics_url:
            _emit(out, f"⊂ your agent is listening on {url} (each vendor is told a "
                  "path of its own under it)" + (f"; metrics on {metrics_url}"
                                                 if metrics_url else ""),
                  event="listening", url=url, port=server.port,
                  metrics=metrics_url)  # fmt: skip
            await node.run(stop, interval_s=interval, on_delivery=_delivery_printer(out),
                           on_catch_up=_catch_up_printer(out))  # fmt: skip
    finally:
        settings = home.settings()
        settings.extra.pop("agent_url", None)
        home.write_settings(settings)


_CAUGHT_UP = {
    "adopted": "took {n} entries your history lacked from the vendor's copy; send again what "
               "it refused",
    "equal": "your history and the vendor's copy are the same",
    "ahead": "the vendor's copy lacks entries yours holds (§8.3-5)",
    "crossing": "you and the vendor sent at the same time: both copies hold the same messages",
    "fork": "your history and the vendor's fork: nothing past the fork was taken (`vrm history "
            "VENDOR --compare` shows where)",
}  # fmt: skip


def _catch_up_printer(out: Out) -> Callable[[CatchUp], None]:
    """A vendor refused a message ``chain_broken`` and the node reconciled (§12.8-2)."""

    def show(c: CatchUp) -> None:
        kind: str = c.result.kind if c.result is not None else "failed"
        why = (_CAUGHT_UP[kind].format(n=c.result.adopted) if c.result is not None
               else f"could not compare with the vendor's copy: {c.error}")  # fmt: skip
        _emit(out, f"  ↻ reconciled {c.thread.hex()[:12]} (the vendor said your history is "
              f"behind): {why}", event="reconciled", thread=c.thread.hex(), kind=kind,
              adopted=c.result.adopted if c.result else 0, refused=c.refused.msg_hash.hex(),
              reason=why)  # fmt: skip

    return show


def _delivery_printer(out: Out) -> Callable[[Delivery], None]:
    """One line per delivery, naming the message by the id `vrm outbox` lists and `vrm outbox
    retry/drop ID` take (the hash is ``message`` in JSON)."""

    def show(d: Delivery) -> None:
        why = str(d.error) if d.error is not None and d.status != "confirmed" else ""
        what = " ".join(filter(None, (d.type, d.msg_id.hex()[:12])))
        _emit(out, f"  → outbox: {d.status} {what}" + (f": {why}" if why else ""),
              event="delivery", status=d.status, id=d.msg_id.hex(), type=d.type or None,
              message=d.msg_hash.hex(), thread=d.thread.hex(), reason=why)  # fmt: skip

    return show
