"""``vrm ui``: the relationships at a glance, in a local web page (:mod:`vrmproto.ui`).

Prints the page's address — with this launch's token — and opens it in the browser unless
``--no-browser``; serves until SIGINT or SIGTERM. ``--json`` prints
``{"event": "listening", "url": …, "port": …}`` as its one line.

The browser is not given the address itself: a program's arguments are in the process list,
which every user of the computer can read, and the token is all that keeps the page the
person's (127.0.0.1 is every local user's). It is given a file in the data directory that only
the person can read (0600, spec §11.13-1), which sends it on to the address; the file goes when
``vrm ui`` stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import signal
import webbrowser
from pathlib import Path

import click

from vrmproto._files import atomic_write_text
from vrmproto.cli._context import Env, common_options, open_node, pass_env, run
from vrmproto.cli._errors import EXIT_USAGE, CliError

__all__ = ["ui"]


async def _serve(env: Env, port: int, browser: bool) -> None:
    from vrmproto.ui import UiServer  # noqa: PLC0415 -- jinja2 only for this command

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    launcher: Path | None = None
    async with open_node(env) as node:
        server = UiServer(node, port=port)
        try:
            url = await server.start()
        except OSError as exc:
            raise CliError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}",
                           EXIT_USAGE, kind="listen") from None  # fmt: skip
        try:
            if env.json:
                click.echo(json.dumps({"event": "listening", "url": url, "port": server.port}))
            else:
                click.echo(f"⊂ ⊃ your relationships: {url}\n(only this computer can open it; "
                           "the address is for this launch only. Ctrl-C stops.)")  # fmt: skip
            if browser:
                launcher = env.home.path.absolute() / f"ui-open-{server.port}.html"
                await asyncio.to_thread(atomic_write_text, launcher, _redirect(url))
                await asyncio.to_thread(webbrowser.open, launcher.as_uri())
            await stop.wait()
        finally:
            if launcher is not None:
                launcher.unlink(missing_ok=True)
            await server.close()


def _redirect(url: str) -> str:
    """A page that sends the browser on to ``url`` (see the module docstring)."""
    href = html.escape(url, quote=True)
    return (f'<!doctype html>\n<meta charset="utf-8">\n<meta http-equiv="refresh" '
            f'content="0;url={href}">\n<title>vrm ui</title>\n'
            f'<p><a href="{href}">Open your relationships</a></p>\n')


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free one).")
@click.option("--no-browser", is_flag=True, help="Print the address; don't open a browser.")
@common_options
@pass_env
def ui(env: Env, port: int, no_browser: bool) -> None:
    """Your relationships in a local web page: cards, history, data, address, intentcasts."""
    run(_serve(env, port, not no_browser))
