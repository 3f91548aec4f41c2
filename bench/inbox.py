"""Inbox throughput: the reference vendor endpoint against a bare verify-and-answer baseline.

Each of ``--n`` customers (own key, own thread) posts one prebuilt terms.offer; the vendor
verifies it, records it, signs a receipt, stores everything durably (SQLiteStore in a temp dir:
WAL, synchronous=FULL, group commit) and answers only after the commit. The vendor's policy
leaves each offer open for a person to review (``on_terms_offer`` returns None), so the work is
exactly "verify, store durably, sign a receipt". The client verifies each receipt (signature,
addressed to the customer, acknowledges the offer). One more round measures the reference
policy that also accepts the offer (a second signature per message): ``accept_msgs_per_s``.

The fan-out figures come from ``bench/fanout.py``: an address update to 200
reference vendor endpoints in this process, each answering 50 ms late, done in parallel and then
one after another.

The baseline is a bare aiohttp handler that parses the envelope only enough to do the
cryptography the protocol requires for a first-contact terms.offer, with PyNaCl: verify its
signature, check that the sender's key — the one the new relationship will trust — is a
prime-order point (§2.1-2, libsodium's ``crypto_core_ed25519_is_valid_point``), and sign a fixed
receipt for each request: the cost of HTTP plus the cryptography, the floor any receiver pays.
``inbox_ratio`` = endpoint / baseline; the target is 0.6.

Two more figures say where the endpoint's time goes. A control runs the same endpoint over
:class:`~vrmproto.store.MemoryStore` (no durability at all): ``memory_ratio`` is what the
protocol work alone leaves of the baseline, and ``storage_cost`` = 1 - endpoint / control is what
durable storage with group commit costs on top. On Linux the CPU time per message of each side
is read from ``/proc`` (``cpu_us``: the server's event-loop thread, its other threads — the
store writer — and the client). ``--sweep`` also measures both servers at several concurrencies
and reports each one's best (``peak``): a server that commits in groups needs requests in flight
to fill its groups, so one concurrency alone can under- or over-state it.

The server runs in a subprocess (this file with ``--serve``) and the client in this process, so
on a 2-core machine each gets a core, as a deployed server and its remote clients would.

``--store postgres`` also runs the endpoint on :class:`~vrmproto.store.PostgresStore` in every
round, beside SQLite: a private PostgreSQL cluster is started for the run (on a Unix socket in a
temporary directory, durable settings, one fresh schema per run). ``--workers 1,2`` runs that
many server processes on the one database, the client spreading its connections over them;
``cpu_us`` then sums the server processes' CPU per message and adds ``postgresql``: the database
server's own (the postmaster and every process it forked). On 2 cores the client, the server
processes and PostgreSQL share the same two cores, so more workers cannot go faster here; the
figures say what each message costs, from which the scaling on more cores follows:
``postgres_per_core_msgs_per_s`` is what one core could carry of the server processes (all of
them) and of the database server at that cost.

``--loop``: the event loop of the servers (baseline and endpoint alike) and of the client —
``auto`` (default), as ``vrm vendor serve`` picks it: uvloop where it is installed
(``vrmproto[speed]``), else asyncio's; ``asyncio`` or ``uvloop`` to compare the two. The last
line names the one used (``loop``).

Prints human lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
from aiohttp import web
from fanout import measure_fanout  # bench/fanout.py, beside this file
from nacl.bindings import crypto_core_ed25519_is_valid_point, crypto_sign_open
from nacl.signing import SigningKey

from vrmproto import (
    Identity,
    Limits,
    Relationship,
    Role,
    TermRef,
    TermsOffer,
    _loop,
    latest,
    open_envelope,
    sign_message,
)
from vrmproto._binding import CONTENT_TYPE, DEFAULT_INBOX_PATH, decode_replies
from vrmproto._keys import Context
from vrmproto._messages import Receipt
from vrmproto.server import Endpoint, ReferencePolicy, serve
from vrmproto.server._workers import share_rate_limits
from vrmproto.store import MemoryStore, PostgresStore, SQLiteStore, Store
from vrmproto.store._pg_cluster import PrivateCluster, missing_reason

VENDOR_SEED = bytes(range(32))
TERMS = ("vrm.no-tracking", "vrm.no-third-party")
# The bench measures the inbox path, not the rate limiter or first-contact admission (every
# customer here is a new one, all from 127.0.0.1): allow far more than it sends.
LIMITS = Limits(
    rate_per_sender_per_minute=10**9, rate_per_address_per_minute=10**9,
    first_contacts_per_address_per_day=10**9, open_relationships_per_address=10**9,
)  # fmt: skip


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- servers (subprocess) ------------------------------------------------------------------------


class ReviewPolicy(ReferencePolicy):
    """Leaves every offer open for a person to decide: the endpoint only receipts it."""

    async def on_terms_offer(self, rel: Any, msg: Any) -> None:  # type: ignore[override]
        return None


async def open_store(kind: str, db: str) -> Store:
    """``db`` is a directory for SQLite, a ``postgresql://`` URL (with ``vrm_schema``) for
    PostgreSQL."""
    if kind == "sqlite":
        return await SQLiteStore.open(Path(db) / "vendor.db")
    if kind == "postgres":
        return await PostgresStore.open(db)
    return MemoryStore()


async def serve_endpoint(db: str, *, accept: bool, store_kind: str = "sqlite") -> None:
    store = await open_store(store_kind, db)
    policy = ReferencePolicy(accepts_terms=TERMS) if accept else ReviewPolicy(accepts_terms=TERMS)
    endpoint = Endpoint(
        Identity(VENDOR_SEED),
        store=store,
        policy=policy,
        limits=LIMITS,
        name="bench vendor",
    )
    share_rate_limits(endpoint, store)  # on PostgreSQL, as `vrm vendor serve` (spec §12.9-8)
    server = await serve(endpoint)
    await announce_and_wait(server.port, name_loop=True)
    await server.close()
    await store.close()


async def serve_baseline() -> None:
    vendor = Identity(VENDOR_SEED)
    receipt = sign_message(
        Receipt(ack=bytes(32)), identity=vendor, recipient=bytes(32), thread=bytes(16),
        prev=None, now=now_ms(), msg_id=bytes(16),
    )  # fmt: skip
    signer = SigningKey(vendor.seed)  # a PyNaCl key: the receipt's header names it as sender
    header = msgpack.unpackb(receipt.hdr_bytes)
    header["from"] = bytes(signer.verify_key)
    hdr_bytes = msgpack.packb(header, use_bin_type=True)
    signed_part = Context.MESSAGE + hdr_bytes

    async def inbox(request: web.Request) -> web.Response:
        data = await request.read()
        env = msgpack.unpackb(data)
        hdr, sig = env["hdr"], env["sig"]
        sender = msgpack.unpackb(hdr)["from"]
        try:
            crypto_sign_open(sig + Context.MESSAGE + hdr, sender)
        except Exception:
            return web.Response(status=401)
        # A first contact: the key the relationship will trust must be a prime-order point
        # (§2.1-2), which verifying the signature alone does not establish.
        if not crypto_core_ed25519_is_valid_point(sender):
            return web.Response(status=401)
        # the fixed receipt, signed with PyNaCl for this request: the cryptography alone
        receipt_sig = signer.sign(signed_part).signature
        envelope = msgpack.packb(
            {"body": receipt.body_bytes, "hdr": hdr_bytes, "sig": receipt_sig},
            use_bin_type=True,
        )
        return web.Response(body=msgpack.packb([envelope], use_bin_type=True),
                            content_type=CONTENT_TYPE)

    app = web.Application()
    app.router.add_post(DEFAULT_INBOX_PATH, inbox)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    await announce_and_wait(int(runner.addresses[0][1]), name_loop=True)
    await runner.cleanup()


async def announce_and_wait(port: int, *, name_loop: bool = False) -> None:
    """Print the port (and, if ``name_loop``, the kind of event loop serving it, as this
    bench's own servers do for ``start_server``); serve until stdin closes."""
    loop = asyncio.get_running_loop()
    print(f"{port} {loop_name(loop)}" if name_loop else port, flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


# -- client ----------------------------------------------------------------------------------


def build_offers(n: int) -> list[tuple[Identity, bytes, bytes]]:
    """(customer identity, envelope, message hash) for ``n`` customers."""
    vendor = Identity(VENDOR_SEED)
    terms = tuple(TermRef.of(latest(t)) for t in TERMS)
    out = []
    for _ in range(n):
        me = Identity(os.urandom(32))
        rel = Relationship(
            role=Role.CUSTOMER, identity=me, thread=os.urandom(16), peer_key=vendor.public_key
        )
        sent = rel.send(TermsOffer(terms=terms, enc_key=me.enc_public_key), now=now_ms(),
                        msg_id=os.urandom(16), lifetime_ms=3_600_000)  # fmt: skip
        out.append((me, sent.message.envelope, sent.message.hash))
    return out


async def run_client(
    urls: list[str], offers: list[tuple[Identity, bytes, bytes]], concurrency: int,
    check_ack: bool,
) -> tuple[float, list[float]]:
    """Post every offer; worker ``k`` posts to ``urls[k % len(urls)]`` (one per server
    process)."""
    client_loops.add(loop_name(asyncio.get_running_loop()))
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[Identity, bytes, bytes]] = asyncio.Queue()
    for item in offers:
        queue.put_nowait(item)
    limits = Limits()
    headers = {"Content-Type": CONTENT_TYPE}

    async def worker(session: aiohttp.ClientSession, url: str) -> None:
        while not queue.empty():
            me, envelope, msg_hash = queue.get_nowait()
            t0 = time.perf_counter()
            async with session.post(url, data=envelope, headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"status {resp.status}")
            receipt = open_envelope(
                decode_replies(body, limits=limits)[0], now=now_ms(),
                recipients=(me.public_key,) if check_ack else None,
            )  # fmt: skip
            if check_ack and receipt.body.ack != msg_hash:
                raise RuntimeError("the receipt acknowledges another message")
            latencies.append((time.perf_counter() - t0) * 1000)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session, urls[k % len(urls)]) for k in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return elapsed, latencies


#: ``--loop``: the event loop of the servers and the client, as in ``bench/e2e.py``.
LOOPS = {"auto": None, "asyncio": False, "uvloop": True}
#: The one chosen for this run (``main`` sets it from ``--loop``).
loop_choice = "auto"


#: The kinds of loop the servers said they run on (``start_server`` records them) and the
#: client ran on.
server_loops: set[str] = set()
client_loops: set[str] = set()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(coro: Any) -> Any:
    """``coro`` on a fresh event loop of the kind ``--loop`` chose."""
    return _loop.run(coro, fast=LOOPS[loop_choice])


def start_server(mode: str, db: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, "--db", db, "--loop", loop_choice],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the {mode} server did not start")
    port, kind = line.split()
    server_loops.add(kind)
    return proc, int(port)


def stop_server(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


def thread_cpu_s(pid: int) -> dict[int, float] | None:
    """CPU seconds (user + system) of each thread of ``pid``, from /proc; None elsewhere."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError):
        return None
    return out


def tree_cpu_s(root: int) -> float | None:
    """CPU seconds of process ``root`` and its children (a PostgreSQL server: the postmaster
    and every backend and helper process it forked), from /proc; None elsewhere."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(entry) == root or int(fields[1]) == root:
                total += (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError):
        return None
    return total


@dataclass
class Run:
    """One measured run: its rate, latencies and CPU microseconds per message (if known)."""

    rate: float
    latencies: list[float]
    cpu_us: dict[str, float] | None


def _db_for(mode: str, db_dir: str, cluster: PrivateCluster | None) -> str:
    if SERVER_MODES.get(mode, {}).get("store_kind") != "postgres":
        return db_dir
    assert cluster is not None, "--store postgres starts a cluster first"
    return f"{cluster.dsn}&vrm_schema=bench_{os.urandom(6).hex()}"


def measure(
    mode: str, n: int, concurrency: int, *, workers: int = 1,
    cluster: PrivateCluster | None = None,
) -> Run:
    """One run against ``workers`` server processes of ``mode`` sharing one store (the
    client spreads its connections over them); CPU per message of each process kind."""
    with tempfile.TemporaryDirectory() as db_dir:
        db = _db_for(mode, db_dir, cluster)
        procs = [start_server(mode, db) for _ in range(workers)]
        on_postgres = SERVER_MODES.get(mode, {}).get("store_kind") == "postgres"
        database = cluster.postmaster_pid() if cluster is not None and on_postgres else None
        try:
            urls = [f"http://127.0.0.1:{port}{DEFAULT_INBOX_PATH}" for _, port in procs]
            warm = build_offers(min(200, n))
            check = mode != "baseline"
            run(run_client(urls, warm, concurrency, check))
            offers = build_offers(n)
            server0 = [thread_cpu_s(p.pid) for p, _ in procs]
            db0, client0 = tree_cpu_s(database) if database else None, time.process_time()
            elapsed, latencies = run(run_client(urls, offers, concurrency, check))
            server1 = [thread_cpu_s(p.pid) for p, _ in procs]
            db1, client1 = tree_cpu_s(database) if database else None, time.process_time()
        finally:
            for proc, _ in procs:
                stop_server(proc)
    cpu: dict[str, float] | None = {"client": client1 - client0}
    for (proc, _), before, after in zip(procs, server0, server1, strict=True):
        if cpu is None or before is None or after is None:
            cpu = None
            break
        loop_s = after.get(proc.pid, 0.0) - before.get(proc.pid, 0.0)
        cpu["server_loop"] = cpu.get("server_loop", 0.0) + loop_s
        other_s = sum(after.values()) - sum(before.values()) - loop_s
        cpu["server_other_threads"] = cpu.get("server_other_threads", 0.0) + other_s
    if cpu is not None and db0 is not None and db1 is not None:
        cpu["postgresql"] = db1 - db0  # every backend and helper of the one database server
    if cpu is not None:
        cpu = {k: round(v / n * 1e6, 1) for k, v in cpu.items()}
    return Run(n / elapsed, latencies, cpu)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sweep(n: int, levels: list[int]) -> dict[str, Any]:
    """Each server's best rate over ``levels`` of concurrency, and the level it came at."""
    best: dict[str, tuple[float, int]] = {}
    for level in levels:
        for mode in ("baseline", "endpoint"):
            rate = measure(mode, n, level).rate
            print(f"  concurrency {level:4d}: {mode:8s} {rate:7.0f}/s")
            if rate > best.get(mode, (0.0, 0))[0]:
                best[mode] = (rate, level)
    return {
        "peak_baseline_req_per_s": round(best["baseline"][0], 1),
        "peak_baseline_concurrency": best["baseline"][1],
        "peak_inbox_msgs_per_s": round(best["endpoint"][0], 1),
        "peak_inbox_concurrency": best["endpoint"][1],
        "peak_inbox_ratio": round(best["endpoint"][0] / best["baseline"][0], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="messages per run (default 3000)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best is kept")
    parser.add_argument("--sweep", default="", metavar="LEVELS",
                        help="also find each server's peak over these concurrencies, e.g. "
                             "32,64,128,256")  # fmt: skip
    parser.add_argument("--serve", choices=(*SERVER_MODES, "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--no-fanout", action="store_true", help="skip the fan-out figures")
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite",
                        help="postgres: also run the vendor on PostgresStore (a private cluster "
                             "started here), beside SQLite in the same rounds")  # fmt: skip
    parser.add_argument("--workers", default="1", metavar="COUNTS",
                        help="with --store postgres: server processes sharing the database, "
                             "e.g. 1,2 (the first one runs in every round)")  # fmt: skip
    parser.add_argument("--loop", choices=tuple(LOOPS), default="auto",
                        help="event loop of the servers and the client: auto (as the "
                             "vrm runners pick it: uvloop where installed), asyncio, uvloop")
    args = parser.parse_args()
    global loop_choice  # noqa: PLW0603 - one setting for the run, read by run/start_server
    loop_choice = args.loop
    if args.serve in SERVER_MODES:
        run(serve_endpoint(args.db, **SERVER_MODES[args.serve]))
        return
    if args.serve == "baseline":
        run(serve_baseline())
        return

    print(f"inbox bench: {args.n} terms.offer from {args.n} customers, concurrency "
          f"{args.concurrency}, server in a subprocess, {os.cpu_count()} cores, best of "
          f"{args.rounds} alternating rounds")  # fmt: skip
    cluster = start_cluster() if args.store == "postgres" else None
    try:
        run_all(args, cluster)
    finally:
        if cluster is not None:
            cluster.stop()


def alternate(
    args: argparse.Namespace, cluster: PrivateCluster | None, workers: int
) -> tuple[dict[str, Run], list[float]]:
    """The alternating rounds: each server's best run, and in each round the PostgreSQL
    endpoint's rate over the SQLite endpoint's (the fairer comparison on a busy machine)."""
    modes = ["baseline", "endpoint", "endpoint-memory"]
    modes += ["endpoint-postgres"] if cluster is not None else []
    best = {mode: Run(0.0, [0.0], None) for mode in modes}
    same_round: list[float] = []
    for i in range(args.rounds):
        runs = {mode: measure(mode, args.n, args.concurrency, cluster=cluster,
                              workers=workers if mode == "endpoint-postgres" else 1)
                for mode in modes}  # fmt: skip
        print(f"round {i + 1}: baseline {runs['baseline'].rate:7.0f} req/s, endpoint "
              f"{runs['endpoint'].rate:7.0f} msg/s, control without durability "
              f"{runs['endpoint-memory'].rate:7.0f} msg/s")  # fmt: skip
        if cluster is not None:
            pg = runs["endpoint-postgres"]
            same_round.append(pg.rate / runs["endpoint"].rate)
            print(f"round {i + 1}: endpoint on PostgreSQL, {workers} process(es): "
                  f"{pg.rate:7.0f} msg/s ({same_round[-1]:.2f} x SQLite this round)")
        best = {mode: max(best[mode], runs[mode], key=_rate) for mode in modes}
    return best, same_round


def run_all(args: argparse.Namespace, cluster: PrivateCluster | None) -> None:
    """The rounds, the PostgreSQL figures, the sweep and the fan-out; prints the results."""
    workers = [int(w) for w in args.workers.split(",")]
    runs, same_round = alternate(args, cluster, workers[0])
    base, best, memory = runs["baseline"], runs["endpoint"], runs["endpoint-memory"]
    accept = measure("endpoint-accept", args.n, args.concurrency)
    rate, latencies = best.rate, best.latencies
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(f"baseline (parse, verify, key check, fixed signed receipt): {base.rate:8.0f} req/s")
    print(f"vendor endpoint (verify, sign receipt, durable SQLite commit): "
          f"{rate:8.0f} msg/s  p50 {p50:.1f} ms  p99 {p99:.1f} ms")  # fmt: skip
    print(f"the same endpoint over MemoryStore (control, no durability): {memory.rate:8.0f} msg/s")
    print(f"vendor endpoint that also accepts each offer (2 signatures): {accept.rate:8.0f} msg/s")
    print(f"ratio {rate / base.rate:.2f} (target >= 0.6); without durability "
          f"{memory.rate / base.rate:.2f}; durable storage costs "
          f"{1 - rate / memory.rate:.0%}; mean latency {statistics.fmean(latencies):.1f} ms")
    for name, run in (("baseline", base), ("endpoint", best), ("control", memory)):
        if run.cpu_us is not None:
            print(f"CPU us per message, {name}: " + ", ".join(
                f"{k} {v:.0f}" for k, v in run.cpu_us.items()))  # fmt: skip
    result: dict[str, Any] = {
        "inbox_msgs_per_s": round(rate, 1),
        "baseline_req_per_s": round(base.rate, 1),
        "inbox_ratio": round(rate / base.rate, 3),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "n": args.n,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "accept_msgs_per_s": round(accept.rate, 1),
        "memory_msgs_per_s": round(memory.rate, 1),
        "memory_ratio": round(memory.rate / base.rate, 3),
        "storage_cost": round(1 - rate / memory.rate, 3),
        "cpu_us": {"baseline": base.cpu_us, "endpoint": best.cpu_us, "control": memory.cpu_us},
        "server": "subprocess",
        "loop": "uvloop" if _loop.loop_factory(LOOPS[loop_choice]) else "asyncio",
        "server_loops": sorted(server_loops),
        "client_loops": sorted(client_loops),
    }
    if cluster is not None:
        result.update(postgres_report(args, cluster, workers, best, runs["endpoint-postgres"]))
        result["postgres_to_sqlite_same_round"] = [round(r, 3) for r in same_round]
    if args.sweep:
        print("sweep (one run per level):")
        result.update(sweep(args.n, [int(x) for x in args.sweep.split(",")]))
        print(f"peak ratio {result['peak_inbox_ratio']:.2f}: endpoint "
              f"{result['peak_inbox_msgs_per_s']:.0f}/s at {result['peak_inbox_concurrency']}, "
              f"baseline {result['peak_baseline_req_per_s']:.0f}/s at "
              f"{result['peak_baseline_concurrency']}")
    if not args.no_fanout:
        fan = measure_fanout(200, 50)
        print(f"fan-out to 200 vendors (50 ms each): parallel {fan['fanout_parallel_s']:.2f} s, "
              f"one after another {fan['fanout_serial_s']:.2f} s")
        result.update({k: fan[k] for k in ("fanout_parallel_s", "fanout_serial_s",
                                            "fanout_ratio")})
    print(json.dumps(result))


def _rate(run: Run) -> float:
    return run.rate


def start_cluster() -> PrivateCluster:
    reason = missing_reason()
    if reason is not None:
        sys.exit(f"--store postgres: {reason}")
    cluster = PrivateCluster.start()
    print(f"PostgreSQL: a private cluster on a Unix socket in {cluster.root} (durable: fsync, "
          "synchronous_commit on)")  # fmt: skip
    return cluster


def postgres_report(
    args: argparse.Namespace, cluster: PrivateCluster, workers: list[int], sqlite: Run, pg: Run
) -> dict[str, Any]:
    """Print and return the PostgreSQL figures: the best round beside SQLite's, then one run
    for each further worker count."""
    by_workers = {workers[0]: pg}
    for count in workers[1:]:
        by_workers[count] = measure("endpoint-postgres", args.n, args.concurrency,
                                    workers=count, cluster=cluster)  # fmt: skip
    for count, run in by_workers.items():
        p50, p99 = percentile(run.latencies, 0.5), percentile(run.latencies, 0.99)
        print(f"vendor endpoint on PostgreSQL, {count} process(es): {run.rate:8.0f} msg/s  "
              f"p50 {p50:.1f} ms  p99 {p99:.1f} ms  ({run.rate / sqlite.rate:.2f} x SQLite)")
        by_cpu = _by_cpu(sqlite, run)
        if by_cpu is not None:
            print(f"  by CPU per message (client, server processes and PostgreSQL): {by_cpu:.2f} "
                  "x SQLite")  # fmt: skip
        if run.cpu_us is not None:
            print(f"CPU us per message, postgres x{count}: " + ", ".join(
                f"{k} {v:.0f}" for k, v in run.cpu_us.items()))  # fmt: skip
        per_core = _per_core(run)
        if per_core:
            print(f"  messages a second one core could carry, {count} process(es): "
                  + ", ".join(f"{k} {v:.0f}" for k, v in per_core.items()))  # fmt: skip
    return {
        "postgres_msgs_per_s": {str(k): round(v.rate, 1) for k, v in by_workers.items()},
        "postgres_to_sqlite": {
            str(k): round(v.rate / sqlite.rate, 3) for k, v in by_workers.items()
        },
        "postgres_cpu_us": {str(k): v.cpu_us for k, v in by_workers.items()},
        "postgres_per_core_msgs_per_s": {str(k): _per_core(v) for k, v in by_workers.items()},
        "postgres_to_sqlite_by_cpu": {
            str(k): _by_cpu(sqlite, v) for k, v in by_workers.items()
        },
    }


def _by_cpu(sqlite: Run, pg: Run) -> float | None:
    """SQLite's CPU per message over PostgreSQL's, every process of each run counted (the
    client, the server processes, the database server): the throughput ratio where both are
    CPU-bound on the same cores with nothing else running — steadier than the measured rates
    on a machine that others share."""
    if not sqlite.cpu_us or not pg.cpu_us:
        return None
    return round(sum(sqlite.cpu_us.values()) / sum(pg.cpu_us.values()), 3)


def _per_core(run: Run) -> dict[str, float]:
    """What one core could carry of each side, from its CPU per message: the server processes
    (all of them together) and the database server. On more cores than here, the side that
    runs out of cores first bounds the throughput (docs/deployment.md)."""
    cpu = run.cpu_us or {}
    server = cpu.get("server_loop", 0.0) + cpu.get("server_other_threads", 0.0)
    sides = {"server_processes": server, "postgresql": cpu.get("postgresql", 0.0)}
    return {k: round(1e6 / v, 1) for k, v in sides.items() if v > 0}


#: --serve modes of the endpoint: the arguments of serve_endpoint.
SERVER_MODES: dict[str, dict[str, Any]] = {
    "endpoint": {"accept": False},
    "endpoint-accept": {"accept": True},
    "endpoint-memory": {"accept": False, "store_kind": "memory"},
    "endpoint-postgres": {"accept": False, "store_kind": "postgres"},
}


if __name__ == "__main__":
    main()
