"""The stateful agent machine of ``tests/test_agent_stateful.py`` with what a person's week
adds: a second ``vrm`` process on the same data directory working at the same time (a cron
``vrm outbox run`` while the person shares), answers lost on the way back after the vendor
stored the message, and each vendor's clock a little off the agent's (within
``max_clock_skew_ms``).

Days pass only while no message the vendor may hold unanswered waits: a recorded answer's
receipt is valid one day, and a message of ours dropped when it expires may be one the vendor
holds (``tests/test_hunt_s12_lifetimes.py``, ``tests/test_hunt_s12_expired_accepted.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule
from test_agent_stateful import LONG, ONCE, AgentMachine, Clock, Vendor

from vrmproto import VrmError
from vrmproto.client import Agent, Queued
from vrmproto.server import make_app
from vrmproto.store import SQLiteStore

DAY_MS = 86_400_000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SkewedClock:
    """A vendor's clock: the agent's, off by ``skew_ms``."""

    def __init__(self, base: Clock) -> None:
        self.base = base
        self.skew_ms = 0

    def __call__(self) -> int:
        return self.base() + self.skew_ms


class LossyVendor(Vendor):
    """A vendor whose next ``lose`` inbox answers are lost after it stored the message."""

    def __init__(self, name: str, clock: Clock) -> None:
        self.clock = SkewedClock(clock)
        super().__init__(name, self.clock)  # type: ignore[arg-type]
        self.lose = 0

    async def up(self) -> None:
        if self.runner is not None:
            return

        @web.middleware
        async def lossy(request: web.Request, handler: Handler) -> web.StreamResponse:
            response = await handler(request)
            if self.lose > 0 and request.method == "POST" and request.path.endswith("/inbox"):
                self.lose -= 1
                assert request.transport is not None
                request.transport.abort()  # stored and answered, the answer lost
            return response

        app = make_app(self.endpoint)
        app.middlewares.append(lossy)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.port = self.runner.addresses[0][1]


class WeekMachine(AgentMachine):
    """See the module docstring."""

    def __init__(self) -> None:
        self.second: Agent | None = None
        self.second_store: SQLiteStore | None = None
        self.maybe_held = False  # a message the vendor may hold unanswered may wait
        super().__init__()

    async def _start(self) -> None:
        self.vendors = [LossyVendor("Acme", self.clock), LossyVendor("Bolt", self.clock)]
        await super()._start()
        self.second_store = await SQLiteStore.open(self.dir / "agent.db")
        self.second = await Agent.open(self.second_store, self.seed, retry=ONCE,
                                       fanout_retry=ONCE, timeout_s=5.0, clock=self.clock)

    async def _settle_and_check(self) -> None:
        for v in self.vendors:
            v.lose = 0
        try:
            await super()._settle_and_check()
        finally:
            if self.second is not None:
                await self.second.close()
            if self.second_store is not None:
                await self.second_store.close()

    async def _do_on(self, agent: Agent, ref: str, op: str) -> None:
        before = {w.msg_id for w in await agent.waiting()}
        try:
            if op == "outbox":
                self._ran(await agent.retry_waiting())
                return
            if op == "share":
                d = await agent.share(ref, {"email": "ada@example.org"}, purposes=["delivery"],
                                      categories=["contact"],
                                      expires_ms=self.clock() + 30 * DAY_MS)
            elif op == "withdraw":
                d = await agent.withdraw(ref)
            elif op == "rotate":
                d = await agent.rotate_key(ref)
            else:
                d = await agent.end(ref)
        except Queued as queued:
            if queued.delivery is not None:
                self._heard(queued.delivery)
            for w in await agent.waiting():
                if w.msg_id not in before:
                    self.told[w.msg_id] = w.thread
            return
        except (VrmError, LookupError):
            return
        self._heard(d)

    ops = st.sampled_from(["share", "withdraw", "rotate", "end", "outbox"])

    @precondition(lambda self: self.agent is not None and self.second is not None)
    @rule(i=AgentMachine.vendor, first=ops, second=ops, j=AgentMachine.vendor)
    def two_processes(self, i: int, first: str, second: str, j: int) -> None:
        """Two ``vrm`` processes on one data directory, each doing something, at once."""
        assert self.second is not None
        a, b = self.a, self.second

        async def go() -> None:
            await asyncio.gather(self._do_on(a, self.vendors[i].url, first),
                                 self._do_on(b, self.vendors[j].url, second))

        self.run(go())

    @rule(i=AgentMachine.vendor, n=st.integers(min_value=1, max_value=2))
    def answers_lost(self, i: int, n: int) -> None:
        self.vendors[i].lose = n
        self.maybe_held = True

    @rule(i=AgentMachine.vendor, skew_s=st.integers(min_value=-90, max_value=90))
    def vendor_clock(self, i: int, skew_s: int) -> None:
        self.vendors[i].clock.skew_ms = skew_s * 1000

    @rule(days=st.sampled_from([1, 8]))
    def time_passes(self, days: int) -> None:
        if self.maybe_held:
            async def clear() -> bool:
                for v in self.vendors:
                    v.lose = 0
                    await v.up()
                self._ran(await self.a.retry_waiting())
                return not await self.a.waiting()

            if not self.run(clear()):
                return
            self.maybe_held = False
        self.clock.offset_ms += days * DAY_MS


WeekMachine.TestCase.settings = settings(
    max_examples=300 if LONG else 12,
    stateful_step_count=50 if LONG else 20,
    deadline=None,
)
TestWeekStateful = WeekMachine.TestCase
