"""Several server processes on one PostgreSQL database (spec §12.7-4, §12.6, §12.9-8): real
``vrm vendor serve`` processes — two separate ones on ports of their own, as on two machines,
and one supervisor with ``--workers 2`` on one port — on the session's private cluster."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _postgres
import aiohttp
import pytest
from _vendor_proc import ACCEPTED, Customer, post
from aiohttp import web

from tests._cli_helpers import AsyncProcess, vrm, vrm_process
from vrmproto import Identity
from vrmproto._binding import CONTENT_TYPE, DEFAULT_INBOX_PATH
from vrmproto.server._events import Wakeup, follow
from vrmproto.store import PostgresConfig, PostgresStore
from vrmproto.testing import Outcome, run_suite

pytest.importorskip("asyncpg", reason="asyncpg is not installed (pip install -e '.[dev]')")

SEED = "42" * 32
VENDOR = Identity(bytes.fromhex(SEED))

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config


@dataclass
class Vendor:
    """A running ``vrm vendor serve`` process and what it logged. Its lines are read as they
    come (a process whose stdout pipe fills up stops answering)."""

    proc: AsyncProcess
    listening: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    lines: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    reader: asyncio.Task[None] | None = None

    def start_reading(self) -> None:
        async def read() -> None:
            assert self.proc.stdout is not None
            while line := await self.proc.stdout.readline():
                self.lines.put_nowait(line)
            self.lines.put_nowait(b"")

        self.reader = asyncio.get_running_loop().create_task(read())

    @property
    def url(self) -> str:
        return str(self.listening["url"])

    @property
    def inbox(self) -> str:
        return self.url + DEFAULT_INBOX_PATH

    async def next_event(self, wanted: str) -> dict[str, Any]:
        """Read log lines until one with ``event == wanted``."""
        while True:
            line = await asyncio.wait_for(self.lines.get(), 60)
            assert line, f"the vendor exited before logging {wanted}"
            event: dict[str, Any] = json.loads(line)
            self.events.append(event)
            if event.get("event") == wanted:
                return event

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 60)


def _vendor_file(tmp_path: Path, config: PostgresConfig, limits: dict[str, int],
                 extra: str = "") -> Path:  # fmt: skip
    url = f"{config.dsn}&vrm_schema={config.schema}&vrm_pool_size=2&vrm_writers=1"
    path = tmp_path / "vendor.toml"
    lines = [f'name = "Many Workers"\nseed = "{SEED}"\naccepts_terms = "all"\n',
             f'store = "{url}"\n', "[limits]\n", *(f"{k} = {v}\n" for k, v in limits.items()),
             extra]
    path.write_text("".join(lines))
    return path


#: How long the cleanup of :func:`vendor_process` lets the vendor's processes stop on SIGTERM
#: before it kills them (a bound on a hang, not a measurement).
STOP_WAIT_S = 30


async def end_session(proc: AsyncProcess) -> None:
    """Stop every process of ``proc``'s process group — the vendor and, with ``--workers``, the
    workers it forked, which hold its stdout too: SIGTERM to the group, then SIGKILL to whatever
    is left of it once ``proc`` has exited or :data:`STOP_WAIT_S` have passed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), STOP_WAIT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


@asynccontextmanager
async def vendor_process(config_file: Path, *args: str) -> AsyncIterator[Vendor]:
    """``vrm vendor serve`` in a session of its own (its process group: the supervisor and its
    workers), all of which the cleanup stops (:func:`end_session`), so that a failing test
    fails instead of waiting on a worker that still holds the output pipe. The process is
    forked from the tests' fork server (``tests/_cli_helpers.vrm_process``), the supervisor's
    pid its own, or with ``VRM_TEST_CLI=subprocess`` a fresh interpreter."""
    async with vrm_process("vendor", "serve", "--config", str(config_file), "--memory",
                           "--no-advertise", "--json", *args, session=True) as proc:  # fmt: skip
        vendor = Vendor(proc, {})
        vendor.start_reading()
        try:
            vendor.listening = await vendor.next_event("listening")
            yield vendor
        finally:
            await end_session(proc)
            if vendor.reader is not None:
                await vendor.reader  # ends once no process holds the pipe


@asynccontextmanager
async def two_processes(
    tmp_path: Path, config: PostgresConfig, **limits: int
) -> AsyncIterator[tuple[Vendor, Vendor]]:
    """Two vendor processes on ports of their own, one database schema."""
    file = _vendor_file(tmp_path, config, limits)
    async with vendor_process(file) as a, vendor_process(file) as b:
        yield a, b
        assert await a.stop() == 0
        assert await b.stop() == 0


async def _post_bytes(session: aiohttp.ClientSession, url: str, data: bytes) -> tuple[int, bytes]:
    async with session.post(url, data=data, headers={"Content-Type": CONTENT_TYPE}) as resp:
        return resp.status, await resp.read()


# -- §12.7-4 and §12.6: one answer per (from, id), replay records shared -------------------------


async def test_two_processes_receiving_the_same_message_at_once_give_one_answer(
    postgres_config: PostgresConfig, tmp_path: Path
) -> None:
    """Raced 50 times: one history entry each, the same receipt bytes to both deliveries."""
    async with two_processes(tmp_path, postgres_config) as (a, b), \
            aiohttp.ClientSession() as session:  # fmt: skip
        customers = [Customer(VENDOR) for _ in range(50)]
        offers = [c.offer("vrm.no-tracking") for c in customers]
        for offer in offers:
            got = await asyncio.gather(_post_bytes(session, a.inbox, offer.envelope),
                                       _post_bytes(session, b.inbox, offer.envelope))
            assert [status for status, _ in got] == [200, 200]
            assert got[0][1] == got[1][1]  # one answer, stored once, given to both
    async with await PostgresStore.open(postgres_config) as store:
        for customer, offer in zip(customers, offers, strict=True):
            history = await store.history(customer.thread)
            assert [h.msg_hash for h in history].count(offer.hash) == 1


async def test_a_message_stored_by_one_process_is_a_replay_at_the_other(
    postgres_config: PostgresConfig, tmp_path: Path
) -> None:
    """§12.6-2 across processes: the replay record is the database's, not a process's."""
    async with two_processes(tmp_path, postgres_config) as (a, b), \
            aiohttp.ClientSession() as session:  # fmt: skip
        customer = Customer(VENDOR, base_url=a.url)
        offer = customer.offer("vrm.no-tracking")
        first = await _post_bytes(session, a.inbox, offer.envelope)
        again = await _post_bytes(session, b.inbox, offer.envelope)
        assert first[0] == again[0] == 200
        assert again[1] == first[1]


# -- §12.9-8: the rate limits hold across processes ----------------------------------------------


async def _alternate(
    vendors: Sequence[Vendor], requests: int, send: Callable[[str, int], Any]
) -> list[int]:
    return [await send(vendors[n % len(vendors)].inbox, n) for n in range(requests)]


async def test_the_sender_rate_limit_counts_messages_stored_by_any_process(
    postgres_config: PostgresConfig, tmp_path: Path
) -> None:
    """Four messages a minute from one key, sent alternately to two processes: the fifth is
    refused, wherever it goes (each process alone would take four)."""
    async with two_processes(tmp_path, postgres_config, rate_per_sender_per_minute=4) as pair, \
            aiohttp.ClientSession() as session:  # fmt: skip
        key = Identity(os.urandom(32))

        async def send(inbox: str, n: int) -> int:
            offer = Customer(VENDOR, identity=key).offer("vrm.no-tracking")
            return (await post(session, inbox, offer.envelope)).status

        assert await _alternate(pair, 6, send) == [200, 200, 200, 200, 429, 429]
        other = Customer(VENDOR).offer("vrm.no-tracking")  # another key is not limited
        assert (await post(session, pair[0].inbox, other.envelope)).status == 200


async def test_the_address_rate_limit_counts_requests_to_any_process(
    postgres_config: PostgresConfig, tmp_path: Path
) -> None:
    """Six requests a minute from one address, alternately to two processes: the seventh gets
    429 with Retry-After (each process alone would take six)."""
    async with two_processes(tmp_path, postgres_config, rate_per_address_per_minute=6) as pair, \
            aiohttp.ClientSession() as session:  # fmt: skip

        async def send(inbox: str, n: int) -> int:
            reply = await post(session, inbox, b"\x80")  # not an envelope: refused, but counted
            if reply.status == 429:
                assert int(reply.headers["Retry-After"]) >= 1
            return reply.status

        statuses = await _alternate(pair, 8, send)
        assert statuses[:6] == [400] * 6
        assert statuses[6:] == [429, 429]


# -- the event feed across processes: LISTEN/NOTIFY wake-ups -------------------------------------

#: The feed's poll in these tests: far longer than any wait below, which only a wake-up meets.
HOUR_S = 3600
WAKE_S = 30.0
SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1: its URL, and the CloudEvents it got, in order."""
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        got.put_nowait(json.loads(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", got
    finally:
        await runner.cleanup()


async def test_the_feed_wakes_every_process_on_a_commit_in_any_of_them(
    postgres_config: PostgresConfig, tmp_path: Path
) -> None:
    """Two server processes, each with the same webhook and a feed poll of an hour (one of them
    delivers, the other waits on its lock), and a follower of the feed in this process on
    connections of its own. Messages accepted alternately by the two processes reach the
    follower, and the webhook, each within a wait the poll could not meet: the commit's NOTIFY
    woke them. (The follower read everything before each message was sent, so only a wake-up
    brings it the next; the webhook's deliverer too, but for a moment after each delivery.)"""
    async with webhook_receiver() as (url, delivered), \
            await PostgresStore.open(postgres_config) as store:  # fmt: skip
        extra = (f"[server]\nfeed_poll_s = {HOUR_S}\n"
                 f'[[webhooks]]\nurl = "{url}"\nsecret = "{SECRET}"\nname = "crm"\n')  # fmt: skip
        file = _vendor_file(tmp_path, postgres_config, {}, extra)
        wakeup = Wakeup(poll_s=HOUR_S).watch(store)
        await store.notices.listening()
        feed = follow(store, wakeup)
        async with vendor_process(file) as a, vendor_process(file) as b, \
                aiohttp.ClientSession() as session:  # fmt: skip
            for vendor in (a, b, a, b):
                customer = Customer(VENDOR, base_url=vendor.url)
                offer = customer.offer("vrm.no-tracking")
                await customer.deliver(session, offer)  # accepted: opened, then accepted
                kinds = [(await asyncio.wait_for(anext(feed), WAKE_S)).kind for _ in range(2)]
                assert kinds == ["relationship.opened", "terms.accepted"]
                pushed = [await asyncio.wait_for(delivered.get(), WAKE_S) for _ in range(2)]
                assert [e["data"]["kind"] for e in pushed] == kinds
                assert pushed[0]["id"] == "evt_" + offer.hash.hex()
            await feed.aclose()
            assert await a.stop() == 0
            assert await b.stop() == 0


# -- `--workers N`: one port, a supervisor, restarts, SIGTERM -------------------------------------


async def _offer_accepted(session: aiohttp.ClientSession, vendor: Vendor) -> None:
    customer = Customer(VENDOR, base_url=vendor.url)
    await customer.deliver(session, customer.offer("vrm.no-tracking"))


async def test_workers_serve_one_port_are_restarted_when_killed_and_stop_on_sigterm(
    postgres_config: PostgresConfig, tmp_path: Path
) -> None:
    file = _vendor_file(tmp_path, postgres_config, {})
    async with vendor_process(file, "--workers", "2") as vendor, \
            aiohttp.ClientSession() as session:  # fmt: skip
        pids = vendor.listening["pids"]
        assert vendor.listening["workers"] == 2
        assert len(set(pids)) == 2
        assert vendor.proc.pid not in pids
        await asyncio.gather(*(_offer_accepted(session, vendor) for _ in range(20)))
        os.kill(pids[0], signal.SIGKILL)
        exited = await vendor.next_event("worker_exited")
        assert exited["pid"] == pids[0]
        assert exited["status"] == -signal.SIGKILL
        started = await vendor.next_event("worker_started")
        assert started["worker"] == exited["worker"]
        assert started["pid"] not in pids
        await asyncio.gather(*(_offer_accepted(session, vendor) for _ in range(20)))
        assert await vendor.stop() == 0
        assert (await vendor.next_event("stopped"))["status"] == 0
    for pid in (pids[1], started["pid"]):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped by the supervisor: gone


#: Customers, and the shares each delivers after its offer, while one worker is killed.
CRASH_CUSTOMERS, CRASH_SHARES = 8, 15
#: Receipts the customers have before each of the three kills (of 8 × 16 messages in all).
KILL_AFTER = (10, 30, 50)


async def _exited(pid: int) -> None:
    """Wait until process ``pid`` has terminated (a pidfd turns readable; it may be a zombie of
    its stopped parent then, which ``os.kill(pid, 0)`` would not tell)."""
    loop = asyncio.get_running_loop()
    fd = os.pidfd_open(pid)
    gone: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: gone.done() or gone.set_result(None))
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_sigkill_of_one_worker_three_times_under_load_loses_nothing_and_doubles_nothing(
    postgres_config: PostgresConfig, tmp_path: Path
) -> None:
    """Issue 15 (§12.7, §12.6-5): customers deliver an offer and shares each through
    ``--workers 2`` while one worker is killed with SIGKILL three times. From each kill the
    supervisor is stopped (SIGSTOP) until a new customer has been served, so the other worker
    keeps serving — not a replacement. A delivery cut off by a kill goes again, the same
    bytes; each customer keeps its last share until the third kill, so every kill is under
    load. Afterwards every receipted message is stored once, in each customer's order."""
    file = _vendor_file(tmp_path, postgres_config, {})
    customers = [Customer(VENDOR) for _ in range(CRASH_CUSTOMERS)]
    total = CRASH_CUSTOMERS * (1 + CRASH_SHARES)
    acknowledged: list[bytes] = []
    receipts = asyncio.Condition()
    interrupted = 0
    async with vendor_process(file, "--workers", "2") as vendor, \
            aiohttp.ClientSession() as session:  # fmt: skip
        supervisor = vendor.proc.pid

        async def deliver(c: Customer, msg: Any) -> None:
            nonlocal interrupted
            for _ in range(20):
                try:
                    reply = await post(session, vendor.inbox, msg.envelope)
                except (aiohttp.ClientError, ConnectionError):
                    interrupted += 1
                    continue  # cut off by a kill: the same bytes again (§12.6-5)
                c.absorb(reply, msg)  # a verified receipt for this message
                async with receipts:
                    acknowledged.append(msg.hash)
                    receipts.notify_all()
                return
            pytest.fail("a message found no worker to take it in 20 attempts")

        async def customer_life(c: Customer) -> None:
            await deliver(c, c.offer(*ACCEPTED))
            for step in range(CRASH_SHARES):
                if step == CRASH_SHARES - 1:  # each kill is under load: none has finished
                    await kills_done.wait()
                await deliver(c, c.share({"email": f"c{step}@example.org"}))

        kills_done = asyncio.Event()

        async def killer() -> None:
            try:
                await kill_three_times()
            finally:
                kills_done.set()

        async def kill_three_times() -> None:
            pids = list(vendor.listening["pids"])
            for n, threshold in enumerate(KILL_AFTER):
                async with receipts:
                    await receipts.wait_for(lambda: len(acknowledged) >= threshold)  # noqa: B023
                victim = pids[n % 2]
                os.kill(supervisor, signal.SIGSTOP)  # no replacement until SIGCONT
                try:
                    os.kill(victim, signal.SIGKILL)
                    assert len(acknowledged) < total  # under load: customers still sending
                    await _exited(victim)
                    newcomer = Customer(VENDOR)
                    customers.append(newcomer)  # served by the survivor alone
                    await deliver(newcomer, newcomer.offer(*ACCEPTED))
                finally:
                    os.kill(supervisor, signal.SIGCONT)
                exited = await vendor.next_event("worker_exited")
                assert (exited["pid"], exited["status"]) == (victim, -signal.SIGKILL)
                pids[n % 2] = (await vendor.next_event("worker_started"))["pid"]

        await asyncio.gather(killer(), *(customer_life(c) for c in customers))
        assert await vendor.stop() == 0
    assert len(acknowledged) == len(set(acknowledged)) == total + len(KILL_AFTER)
    assert interrupted > 0  # the kills cut deliveries off, and they went again
    stored_in: list[bytes] = []
    async with await PostgresStore.open(postgres_config) as store:
        for c in customers:
            history = await store.history(c.thread)
            assert [h.index for h in history] == list(range(len(history)))
            assert [h.msg_hash for h in history] == [e.msg_hash for e in c.rel.history.entries()]
            stored_in += [h.msg_hash for h in history if h.direction == "in"]
    assert sorted(stored_in) == sorted(acknowledged)  # each receipted message once, no other


class _Failed(Exception):
    """A test failing inside :func:`vendor_process`."""


async def test_a_failure_inside_vendor_process_stops_the_workers_too(
    postgres_config: PostgresConfig, tmp_path: Path
) -> None:
    """A test that fails while ``--workers 2`` serve ends with its failure, and the supervisor
    and both workers are gone (reaped: their pids no longer exist). Before, the cleanup killed the
    supervisor alone and then waited for the end of its output, which the workers kept open.
    (The bound turns such a hang into a failure; it measures nothing.)"""
    file = _vendor_file(tmp_path, postgres_config, {})
    pids: list[int] = []

    async def fail_while_serving() -> None:
        async with vendor_process(file, "--workers", "2") as vendor:
            pids.extend([vendor.proc.pid, *vendor.listening["pids"]])
            raise _Failed

    async with asyncio.timeout(STOP_WAIT_S * 4):
        with pytest.raises(_Failed):
            await fail_while_serving()
    assert len(pids) == 3
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


#: The open negotiations budget per address prefix (§10-17, kept in the database: §12.9-8),
#: checked by a test of its own below rather than twice.
ADMISSION = ("ADM-001",)


async def _suite_against_two_workers(
    config: PostgresConfig, tmp_path: Path, *, only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
) -> dict[str, tuple[str, str | None]]:
    """Run the suite (strict) against ``--workers 2`` on PostgreSQL, with the deadlines of
    tests/_broken_vendor.py so that the connection cases wait seconds, not tens; what failed."""
    deadlines = "[connections]\nheader_timeout_ms = 1000\nidle_timeout_ms = 2000\n"
    file = _vendor_file(tmp_path, config, {"body_read_timeout_ms": 2000}, deadlines)
    async with vendor_process(file, "--workers", "2") as vendor:
        result = await run_suite(vendor.url, seed=1_767_225_600, strict=True, only=only,
                                 skip=skip)  # fmt: skip
        assert await vendor.stop() == 0
    ran = [r for r in result.records
           if r.case.id not in skip and (not only or r.case.id in only)]  # fmt: skip
    assert ran
    return {r.case.id: (r.outcome.value, r.actual) for r in ran
            if r.outcome not in (Outcome.PASSED, Outcome.INFORMATIONAL)}  # fmt: skip


@pytest.mark.integration
async def test_the_conformance_suite_passes_strict_against_two_workers(
    postgres_config: PostgresConfig, tmp_path: Path
) -> None:
    """Spec §14, SHOULDs included, against ``--workers 2``: every case but :data:`ADMISSION`."""
    assert await _suite_against_two_workers(postgres_config, tmp_path, skip=ADMISSION) == {}


async def test_the_open_negotiations_budget_holds_across_two_workers(
    postgres_config: PostgresConfig, tmp_path: Path
) -> None:
    """ADM-001 against ``--workers 2``: open_relationships_per_address intentcasts from one
    prefix, spread over both workers, are admitted and the next one is refused (each worker
    alone would admit the whole budget)."""
    assert await _suite_against_two_workers(postgres_config, tmp_path, only=ADMISSION) == {}


def test_workers_need_a_postgresql_store(tmp_path: Path) -> None:
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "Solo"\nseed = "{SEED}"\n[server]\nworkers = 2\n')
    r = vrm("vendor", "serve", "--config", str(config), "--memory", "--no-advertise", home=None)
    assert r.code != 0
    assert "postgresql store" in r.stdout + r.stderr


def test_a_worker_that_exits_before_it_serves_stops_the_service() -> None:
    """The supervisor alone: a worker that exits before it serves stops the service (1)."""
    from vrmproto.server._workers import Supervisor, listening_socket  # noqa: PLC0415

    sock = listening_socket("127.0.0.1", 0)
    events: list[str] = []
    try:
        supervisor = Supervisor(2, sock, lambda index, sock, ready: 3,
                                lambda event, human, fields: events.append(event))
        assert supervisor.run(lambda pids: events.append("listening")) == 1
    finally:
        sock.close()
    assert "listening" not in events
    assert events[-1] == "workers_stopped"
