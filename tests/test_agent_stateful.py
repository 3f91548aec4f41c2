"""The customer's agent under arbitrary interleavings (issue #11, acceptance): a stateful
property test.

A real :class:`~vrmproto.client.Agent` on a :class:`~vrmproto.store.SQLiteStore` in a temporary
directory, and two reference vendors (:func:`vrmproto.server.make_app`) on 127.0.0.1, driven by
a hypothesis :class:`~hypothesis.stateful.RuleBasedStateMachine`: connect, share, withdraw, data
request, address update, rotate, end, intentcast and accept, outbox run — with a vendor going
down and coming back, the agent restarted from its store, and days passing (on one clock that
the agent and the vendors read: queued messages outlive their lifetime), at any point.

The invariant, once every vendor is up and the outbox has run once: nothing waits; every
message the person was told was confirmed or queued is in our history exactly once — or it was
refused or dropped, and the person was shown why; and each vendor relationship's history is
the vendor's, entry for entry (§8.2-§8.3).

Each example runs its own event loop (the machine's rules are synchronous). The default profile
is modest (a few seconds); ``VRM_HYPOTHESIS_PROFILE=long`` runs many longer interleavings.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vrmproto import Identity, Money, VrmError
from vrmproto.client import Agent, Delivery, OutboxRun, Queued, RetryPolicy
from vrmproto.client._ledger import ThreadKind
from vrmproto.client._own import own_header
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy, make_app
from vrmproto.store import MemoryStore, SQLiteStore

T = TypeVar("T")
DAY_MS = 86_400_000
ACCEPTS = ("vrm.no-tracking", "vrm.no-third-party")
LONG = os.environ.get("VRM_HYPOTHESIS_PROFILE") == "long"
ONCE = RetryPolicy(attempts=1)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Clock:
    """The time the agent and the vendors read: the machine's, moved on by whole days."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return now_ms() + self.offset_ms


class Vendor:
    """A reference vendor on 127.0.0.1 that can go down and come back on the same port."""

    def __init__(self, name: str, clock: Clock) -> None:
        catalogue = (CatalogueItem(f"{name} bike", ("bike",), Money(100, "USD")),)
        self.endpoint = Endpoint(
            Identity(os.urandom(32)), store=MemoryStore(), name=name, clock=clock,
            policy=ReferencePolicy(accepts_terms=ACCEPTS, name=name, catalogue=catalogue),
        )  # fmt: skip
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        if self.runner is not None:
            return
        self.runner = web.AppRunner(make_app(self.endpoint), access_log=None,
                                    shutdown_timeout=0.1)  # fmt: skip
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.port = self.runner.addresses[0][1]

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class AgentMachine(RuleBasedStateMachine):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="vrm-stateful-"))
        self.seed = os.urandom(32)
        self.clock = Clock()
        self.vendors = [Vendor("Acme", self.clock), Vendor("Bolt", self.clock)]
        self.told: dict[bytes, bytes] = {}  # msg id → thread: told confirmed or queued
        self.shown: set[bytes] = set()  # msg ids shown refused or dropped
        self.store: SQLiteStore | None = None
        self.agent: Agent | None = None
        self.run(self._start())

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    async def _start(self) -> None:
        for v in self.vendors:
            await v.up()
        await self._open()
        for v in self.vendors:  # most rules need a relationship: start with one per vendor
            c = await self.a.connect(v.url)
            assert c.delivery is not None
            self._heard(c.delivery)

    async def _open(self) -> None:
        self.store = await SQLiteStore.open(self.dir / "agent.db")
        self.agent = await Agent.open(self.store, self.seed, retry=ONCE, fanout_retry=ONCE,
                                      timeout_s=5.0, clock=self.clock)  # fmt: skip

    async def _close(self) -> None:
        if self.agent is not None:
            await self.agent.close()
        if self.store is not None:
            await self.store.close()
        self.agent = self.store = None

    @property
    def a(self) -> Agent:
        assert self.agent is not None
        return self.agent

    def teardown(self) -> None:
        try:
            self.run(self._settle_and_check())
        finally:
            self.run(self._close())
            for v in self.vendors:
                self.run(v.down())
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- what the person was told ------------------------------------------------------------

    def _heard(self, d: Delivery) -> None:
        for e in d.earlier:  # what went, or was given up, before it in the same call
            if e.status in ("refused", "dropped"):
                self.shown.add(e.msg_id)
        if d.status in ("confirmed", "queued"):
            self.told[d.msg_id] = d.thread
        else:
            self.shown.add(d.msg_id)

    def _ran(self, run: OutboxRun) -> None:
        for d in run.deliveries:
            if d.status in ("refused", "dropped"):
                self.shown.add(d.msg_id)

    async def _queued_now(self, before: set[bytes]) -> None:
        """A message the person was told waits (``Queued``): whatever newly waits."""
        for w in await self.a.waiting():
            if w.msg_id not in before:
                self.told[w.msg_id] = w.thread

    async def _waiting_ids(self) -> set[bytes]:
        return {w.msg_id for w in await self.a.waiting()}

    async def _do(self, ref: str, op: str) -> None:
        before = await self._waiting_ids()
        try:
            if op == "data":
                d = (await self.a.request_data(ref)).delivery
            elif op == "share":
                d = await self.a.share(ref, {"email": "ada@example.org"}, purposes=["delivery"],
                                       categories=["contact"],
                                       expires_ms=self.clock() + 30 * DAY_MS)
            elif op == "withdraw":
                d = await self.a.withdraw(ref)
            elif op == "rotate":
                d = await self.a.rotate_key(ref)
            else:
                d = await self.a.end(ref)
        except Queued as queued:
            if queued.delivery is not None:
                self._heard(queued.delivery)
            await self._queued_now(before)
            return
        except (VrmError, LookupError):  # refused, signed or here: shown, nothing told
            return
        if d is not None:
            self._heard(d)

    # -- rules -------------------------------------------------------------------------------

    vendor = st.integers(min_value=0, max_value=1)

    @rule(i=vendor)
    def connect(self, i: int) -> None:
        async def go() -> None:
            try:
                c = await self.a.connect(self.vendors[i].url)
            except VrmError:
                return
            if c.delivery is not None:
                self._heard(c.delivery)

        self.run(go())

    @rule(i=vendor, op=st.sampled_from(["data", "share", "withdraw", "rotate", "end"]))
    def operate(self, i: int, op: str) -> None:
        self.run(self._do(self.vendors[i].url, op))

    @rule()
    def address(self) -> None:
        async def go() -> None:
            report = await self.a.update_address({"city": "Paris"})
            for r in report.results:
                if r.delivery is not None:
                    self._heard(r.delivery)

        self.run(go())

    @rule(take=st.booleans())
    def intentcast(self, take: bool) -> None:
        async def go() -> None:
            result = await self.a.intentcast("a bike", vendors=[v.url for v in self.vendors],
                                             deadline_ms=3_000)  # fmt: skip
            for r in result.report.results:
                if r.delivery is not None:
                    self._heard(r.delivery)
            if take and result.offers:
                try:
                    c = await self.a.take_offer(result.offers[0])
                except VrmError:
                    return
                if c.delivery is not None:
                    self._heard(c.delivery)

        self.run(go())

    @rule()
    def outbox_run(self) -> None:
        self._ran(self.run(self.a.retry_waiting()))

    @rule(i=vendor)
    def vendor_down(self, i: int) -> None:
        self.run(self.vendors[i].down())

    @rule(i=vendor)
    def vendor_up(self, i: int) -> None:
        self.run(self.vendors[i].up())

    @rule(days=st.sampled_from([1, 8]))
    def time_passes(self, days: int) -> None:
        """A day, or more than a message's lifetime (7 days, §10): what waits expires."""
        self.clock.offset_ms += days * DAY_MS

    @precondition(lambda self: self.agent is not None)
    @rule()
    def restart(self) -> None:
        self.run(self._close())
        self.run(self._open())

    @invariant()
    def histories_verify(self) -> None:
        async def go() -> None:
            for v in await self.a.relationships():
                await self.a.history(v.thread)  # every link and signature (§8.2)

        self.run(go())

    # -- the invariant, once everything could be delivered -----------------------------------

    async def _settle_and_check(self) -> None:
        for v in self.vendors:
            await v.up()
        self._ran(await self.a.retry_waiting())
        assert await self.a.waiting() == [], await self.a.waiting()
        ours: dict[bytes, list[bytes]] = {}
        for view in await self.a.relationships():
            ours[view.thread] = [h.id for e in await self.a.history(view.thread)
                                 if e.outgoing and (h := own_header(e.envelope)) is not None]
            if view.thread_kind is ThreadKind.VENDOR and view.peer_key:
                assert await self.a.compare_history(view.thread) is None, view
        for msg_id, thread in self.told.items():
            count = ours.get(thread, []).count(msg_id)
            if msg_id in self.shown:
                assert count == 0, (msg_id.hex(), "shown refused, yet in the history")
            else:
                assert count == 1, (msg_id.hex(), thread.hex(), count)


AgentMachine.TestCase.settings = settings(
    max_examples=300 if LONG else 12,
    stateful_step_count=50 if LONG else 20,
    deadline=None,
)
TestAgentStateful = AgentMachine.TestCase
