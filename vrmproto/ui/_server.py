"""Serving ``vrm ui``: the page server on 127.0.0.1, and the node's outbox kept moving.

:class:`UiServer` listens on the loopback address only (never a wildcard: the page controls the
person's relationships), makes the launch token, and runs the node's outbox rounds in the
background (:meth:`~vrmproto.client.CustomerNode.run`), telling the page of every delivery so
the queued vendors of a change of address are shown as they get their copy.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from vrmproto._closing import AsyncClosing
from vrmproto.client import CustomerNode, Delivery
from vrmproto.ui._actions import delivered
from vrmproto.ui._app import Ui, make_app
from vrmproto.ui._guard import Guard, new_token
from vrmproto.ui._pages import fresh

__all__ = ["HOST", "UiServer"]

#: The one address the page is served on.
HOST = "127.0.0.1"


class UiServer(AsyncClosing):
    """The page server of one launch; :attr:`url` (with the token) once :meth:`start` ran."""

    def __init__(self, node: CustomerNode, *, port: int = 0, token: str | None = None,
                 outbox_interval_s: float = 30.0) -> None:  # fmt: skip
        self.ui = Ui(node, Guard(token or new_token()))
        self.port = port
        self._interval_s = outbox_interval_s
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.ui.guard.prefix}"

    async def start(self) -> str:
        """Listen (``OSError`` if the port is taken) and start the outbox rounds; the URL.

        Before it listens, the templates are compiled and every relationship is read once into
        the node's cache, so the first page a person opens is as quick as the next ones.
        """
        for name in self.ui.templates.list_templates(extensions=["html"]):
            self.ui.templates.get_template(name)
        await fresh(self.ui)  # what the node reads now is what the first page will show
        await self.ui.agent.relationships()
        runner = web.AppRunner(make_app(self.ui), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, HOST, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = self.ui.guard.port = int(runner.addresses[0][1])
        self._loop = asyncio.create_task(self.ui.node.run(
            self._stop, interval_s=self._interval_s, on_delivery=self._delivered))  # fmt: skip
        return self.url

    def _delivered(self, d: Delivery) -> None:
        delivered(self.ui, d)

    async def close(self) -> None:
        """Stop the outbox rounds, the followed jobs and the server (the node is the
        caller's)."""
        self._stop.set()
        if self._loop is not None:
            with contextlib.suppress(Exception):
                await self._loop
        await self.ui.jobs.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
