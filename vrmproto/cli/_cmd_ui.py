"""``vrm ui``: the relationships at a glance, in a local web page (:mod:`vrmproto.ui`).

Prints the page's address — with this launch's token — and opens it in the browser unless
``--no-browser``; serves until SIGINT or SIGTERM. ``--json`` prints
``{"event": "listening", "url": …, "port": …}`` as its one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import webbrowser

import click

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
                await asyncio.to_thread(webbrowser.open, url)
            await stop.wait()
        finally:
            await server.close()


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free one).")
@click.option("--no-browser", is_flag=True, help="Print the address; don't open a browser.")
@common_options
@pass_env
def ui(env: Env, port: int, no_browser: bool) -> None:
    """Your relationships in a local web page: cards, history, data, address, intentcasts."""
    run(_serve(env, port, not no_browser))
