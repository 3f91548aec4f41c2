"""One customer node: the outgoing API and the inbound agent endpoint on one ledger.

A person's node does two things at once on one store: it sends (:class:`~vrmproto.client.Agent`:
connect, share, intentcast, the outbox) and it receives what vendors send first (the agent
endpoint, §12.11: a terms change, a data return, a relationship's end). Both work under ONE
:class:`~vrmproto.client._ledger.Ledger` — one lock registry, one cache, one record of our key in
each thread — so a vendor's message and the node's own sending in the same relationship take
turns (§12.8-1; with other processes on the store, §11.11-2), and nothing either side caches
outlives what the other changed.

:meth:`CustomerNode.run` is the node's loop: deliver what is due in the outbox, sleep until the
next item is due (at most ``interval_s``), again, until told to stop. ``vrm agent serve`` is
this, plus printing. A vendor that refuses a message of ours ``chain_broken`` holds more of the
relationship than we do (a store restored from a backup, §11.11): the round then fetches its
history and reconciles (§12.8-2, §8.3), so that what the person sends next links to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from vrmproto._closing import AsyncClosing
from vrmproto._errors import PeerProblemError, Problem, VrmError
from vrmproto._keys import MasterSeed
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto.client._agent import Agent
from vrmproto.client._agent_base import check_master
from vrmproto.client._delivery import Delivery, OutboxRun
from vrmproto.client._inbound import InboundEndpoint
from vrmproto.client._ledger import Ledger
from vrmproto.client._views import Reconciliation
from vrmproto.server import Event, Server, serve_app
from vrmproto.store import Store

__all__ = ["EVERY_INTERFACE", "STOP_GRACE_S", "CatchUp", "CustomerNode", "origin_url"]

T = TypeVar("T")

#: The shortest pause between two outbox rounds, in seconds.
MIN_PAUSE_S = 0.2

#: How long a round under way may still take once the node is told to stop, in seconds.
STOP_GRACE_S = 3.0


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What a round did about a relationship whose vendor refused a message of ours
    ``chain_broken`` (``refused``): :meth:`Agent.reconcile`'s ``result``, or the ``error`` that
    stopped it (the vendor unreachable, its copy not verifying)."""

    thread: bytes
    refused: Delivery
    result: Reconciliation | None = None
    error: VrmError | None = None


def _chain_broken(outcome: OutboxRun) -> Iterator[Delivery]:
    for d in outcome.deliveries:
        for one in (*d.earlier, d):
            if (one.status == "refused" and isinstance(one.error, PeerProblemError)
                    and one.error.problem is Problem.CHAIN_BROKEN):  # fmt: skip
                yield one


class CustomerNode(AsyncClosing):
    """One customer's node: see the module docstring. Open with :meth:`open`.

    ``agent`` is the outgoing API, ``inbound`` the agent endpoint, ``ledger`` what they share.
    """

    def __init__(self, agent: Agent, *, discovery_lifetime_ms: int = 86_400_000) -> None:
        self.agent = agent
        self.ledger: Ledger = agent.ledger
        self._lifetime_ms = discovery_lifetime_ms
        self._inbound: InboundEndpoint | None = None
        self._server: Server | None = None

    @classmethod
    async def open(
        cls,
        store: Store,
        master_seed: MasterSeed | bytes,
        *,
        limits: Limits = DEFAULT_LIMITS,
        discovery_lifetime_ms: int = 86_400_000,
        **agent_options: Any,
    ) -> CustomerNode:
        """Open the node of ``master_seed`` on ``store``; ``agent_options`` are
        :meth:`Agent.open`'s. ``ValueError`` if the store belongs to another master seed."""
        master = master_seed if isinstance(master_seed, MasterSeed) else MasterSeed(master_seed)
        await check_master(store, master)
        ledger = Ledger(store, master, limits=limits)
        agent = await Agent.open(store, master, ledger=ledger, limits=limits, **agent_options)
        return cls(agent, discovery_lifetime_ms=discovery_lifetime_ms)

    @property
    def store(self) -> Store:
        return self.ledger.store

    @property
    def inbound(self) -> InboundEndpoint:
        """The inbound agent endpoint (made when first used: a command that only sends
        needs none)."""
        if self._inbound is None:
            self._inbound = InboundEndpoint(self.ledger, lifetime_ms=self._lifetime_ms)
        return self._inbound

    def subscribe(self, hook: Callable[[Event], Awaitable[None]]) -> Callable[[], None]:
        """Call ``hook`` for every message a vendor sends to the inbound endpoint."""
        return self.inbound.engine.subscribe(hook)

    async def listen(self, host: str = "127.0.0.1", port: int = 0, *,
                     url: str | None = None) -> Server:  # fmt: skip
        """Serve the inbound endpoint on ``host:port`` (``OSError`` if it cannot listen), with
        a vendor's connection limits: the node is on the same open network (§10.1). Vendors
        are told its URL from now on (:attr:`Agent.endpoint`, the ``endpoint`` of our terms
        offers, §12.11-3): ``url``, where vendors reach it (a router's forwarded port, a
        reverse proxy, a tunnel: an origin, :func:`origin_url`), else ``http://host:port``.
        ``ValueError`` for a ``url`` that is no origin, and for a ``host`` that names every
        interface (``0.0.0.0``, ``::``) without ``url``: no vendor reaches that address."""
        told = origin_url(url) if url is not None else None
        if told is None and host in EVERY_INTERFACE:
            raise ValueError(f"listening on every interface ({host or 'all'}) needs the URL "
                             "vendors reach the agent at: no machine has that address")  # fmt: skip
        await self.inbound.refresh()
        server = await serve_app(self.inbound.app(), self.inbound.engine, host, port)
        self._server = server
        self.agent.endpoint = told or _url(host, server.port)
        return server

    async def round(self, *, on_catch_up: Callable[[CatchUp], None] | None = None
                    ) -> tuple[OutboxRun, int | None]:  # fmt: skip
        """One outbox round: deliver what is due, and catch up (:meth:`catch_up`) with each
        vendor that refused a message ``chain_broken``; and when the next waiting item is due
        (ms), None if nothing waits."""
        outcome = await self.agent.run_outbox()
        for done in await self.catch_up(outcome):
            if on_catch_up is not None:
                on_catch_up(done)
        if self._inbound is not None:  # relationships opened meanwhile get their paths
            await self._inbound.refresh()
        pending = await self.agent.pending()
        return outcome, min((i.next_attempt_ms for i in pending), default=None)

    async def catch_up(self, outcome: OutboxRun) -> list[CatchUp]:
        """Reconcile (§8.3) each relationship in which ``outcome`` holds a ``chain_broken``
        refusal: the vendor holds messages our history lacks (§11.11), and the sender "fetches
        the history export and reconciles" (§12.8-2) — or every later message of ours is
        refused the same way. The refused message stays refused (it left our chain, §8.1-5):
        the person sends it again. A fork is not adopted past (§8.3-6), only reported. The
        relationships are reconciled concurrently, each bounded as :meth:`Agent.reconcile`."""
        refused: dict[bytes, Delivery] = {}
        for d in _chain_broken(outcome):
            refused.setdefault(d.thread, d)

        async def one(thread: bytes, d: Delivery) -> CatchUp:
            try:
                return CatchUp(thread, d, result=await self.agent.reconcile(thread))
            except VrmError as exc:
                return CatchUp(thread, d, error=exc)

        return list(await asyncio.gather(*(one(t, d) for t, d in refused.items())))

    async def run(
        self,
        stop: asyncio.Event,
        *,
        interval_s: float = 30.0,
        on_delivery: Callable[[Delivery], None] | None = None,
        on_catch_up: Callable[[CatchUp], None] | None = None,
        grace_s: float = STOP_GRACE_S,
    ) -> None:
        """Run outbox rounds until ``stop`` is set: each waits for the next item due, at most
        ``interval_s`` and at least :data:`MIN_PAUSE_S`.

        A round under way when ``stop`` is set has ``grace_s`` more to finish, and is then
        cancelled: a vendor that takes a request and never answers would hold it for the
        client's timeout, every retry and the §8.1-8 check — past a service manager's stop
        timeout, whose SIGKILL cuts the delivery short anyway. What it was delivering stays
        in the outbox, stored before it was sent (§8.1-2), and goes on the next start."""
        while not stop.is_set():
            finished = await _unless_stopped(self.round(on_catch_up=on_catch_up), stop, grace_s)
            if finished is None:
                return
            outcome, due = finished
            for d in outcome.deliveries:
                if on_delivery is not None:
                    on_delivery(d)
            now = self.agent.clock()
            delay = interval_s if due is None else min(interval_s, (due - now) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(MIN_PAUSE_S, delay))

    async def close(self) -> None:
        """Stop serving (if :meth:`listen` was called) and close the agent's HTTP client; the
        store is the caller's."""
        try:
            if self._server is not None:
                await self._server.close()
                self._server = None
        finally:
            await self.agent.close()


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event, grace_s: float) -> T | None:
    """``work``'s result; or None if it had not finished ``grace_s`` after ``stop`` was set
    (it is then cancelled, and waited for)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait((task,), timeout=grace_s)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    finally:
        stopping.cancel()
        if not task.done():  # we were cancelled ourselves
            task.cancel()


#: Hosts that bind every interface: an address no vendor can reach the node at.
EVERY_INTERFACE = frozenset({"", "0.0.0.0", "::", "[::]", "0:0:0:0:0:0:0:0"})  # noqa: S104


def origin_url(text: str) -> str:
    """``text`` as the base URL vendors are told (§12.11-3): ``http(s)://host[:port]``, no
    path, query, fragment or user; else ``ValueError``. A path would be lost: the discovery
    document names the inbox by an absolute path (``/r/<token>/vrm/inbox``, §12.11-4)."""
    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        parts = None
    if (parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname
            or parts.path not in ("", "/") or parts.query or parts.fragment
            or parts.username is not None or "@" in parts.netloc
            or any(c.isspace() or not c.isprintable() for c in text.strip())):  # fmt: skip
        raise ValueError(f"{text!r} is not a URL of the form http(s)://host[:port]")
    return f"{parts.scheme.lower()}://{parts.netloc}"


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"
