"""End to end: customers' agents, through the public API, messaging a vendor in a subprocess.

What a user runs, measured the way they run it. ``--k`` customers' :class:`~vrmproto.client.Agent`
s live in this process, each on its own store (``--agent-store memory|sqlite``) and its own HTTP
client; the reference vendor (:class:`~vrmproto.server.Endpoint` behind
:func:`~vrmproto.server.serve`, ``--vendor-store sqlite|memory``, receipts only after its commit)
runs in a subprocess (this file with ``--serve``), so on a 2-core machine each side gets a core.
Every customer first ``connect``\\ s (not timed); then, per ``--kind``:

- ``share`` (default): each customer sends ``--m`` ``data.share``\\ s one after another (a
  ~300-byte sealed field set), all customers at once. A message's latency is one
  ``Agent.share`` call.
- ``address``: each customer is connected to ``--vendors`` (default 200) vendor endpoints (all
  in the one subprocess) and sends ``--m`` ``address.update`` fan-outs to all of them. Latency
  is one whole fan-out (``Agent.update_address``).
- ``intentcast``: each customer sends ``--m`` intentcasts to ``--vendors`` (default 20) vendor
  endpoints, each of which answers with an offer. Latency is one whole intentcast round.

The last line is one JSON object:

- ``msgs_per_s``: messages (shares, address copies, intentcast copies) over the timed wall time;
  ``p50_ms``, ``p99_ms``: the latencies above.
- ``cpu_us``: CPU per message from ``/proc`` — ``vendor`` (every thread of the subprocess),
  split into ``vendor_loop`` (its event loop's thread) and ``vendor_other_threads`` (the
  store's writer thread, its readers, executors); ``agent`` (this process, all threads: the
  agents, their HTTP clients and store writers), split the same way into ``agent_loop`` and
  ``agent_other_threads`` (the SQLite stores' writer threads, with ``--agent-store sqlite``).
- ``floor_us``: the libsodium work one message needs on each side, timed in this run with
  exactly the calls that message needs (:data:`FLOORS`, via ``nacl.bindings``);
  ``vendor_floor_ratio`` and ``agent_floor_ratio`` = CPU / floor.
- ``growth``: CPU per message (both sides) with ``--growth-m`` messages per customer over the
  same with 8, same total (``share`` only; ``null`` with ``--no-growth``); ``growth_vendor`` and
  ``growth_agent`` per side. The short run has 32 times the customers of the long one, all
  sending at once, so it also batches more (group commit, event-loop wake-ups) than the long
  one: ``growth_same_flight`` is the same ratio with the short run's customers taking turns, as
  many sending at once as in the long run - what the relationship's size alone costs. Each
  is the median of ``--growth-rounds`` (default 3) rounds of the three runs, in turn;
  ``growth_rounds`` lists each round's ``growth`` (on a shared 2-core machine one run's CPU
  figures move 10-15 %, and one pair of runs moved ``growth`` from 1.22 to 1.52).
- ``--in-flight N``: at most N customers send at once (each sends all its messages, then the
  next starts); default all.

``--loop``: the event loop of both processes — ``auto`` (default) as the ``vrm`` runners pick
it: uvloop where it is installed (``vrmproto[speed]``), else asyncio's; ``asyncio`` or
``uvloop`` to compare the two.

Run ``python bench/e2e.py`` (defaults: 16 customers x 125 shares, agents on MemoryStore, vendor on
SQLite). Linux only for the CPU figures (``null`` elsewhere). ``--vendor-store postgres`` starts
a private PostgreSQL cluster (as ``bench/inbox.py --store postgres`` does: Debian's
``postgresql`` package, asyncpg) with a schema per vendor; ``cpu_us`` then also has
``database`` (the server's processes, per message) and ``vendor_db_floor_ratio`` counts it with
the vendor's.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl import bindings as sodium

from vrmproto import Identity, Limits, Money, _loop
from vrmproto.client import DEFAULT_TERMS, Agent
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy, serve
from vrmproto.store import MemoryStore, PostgresConfig, PostgresStore, SQLiteStore, Store
from vrmproto.store._pg_cluster import PrivateCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbox import start_cluster, thread_cpu_s, tree_cpu_s  # the sibling bench's helpers

KINDS = ("share", "address", "intentcast")
LOOPS = {"auto": None, "asyncio": False, "uvloop": True}
DEFAULT_VENDORS = {"share": 1, "address": 200, "intentcast": 20}
# The bench measures the message path, not the rate limiter or first-contact admission: every
# customer here comes from 127.0.0.1. Allow far more than it sends.
LIMITS = Limits(
    rate_per_sender_per_minute=10**9, rate_per_address_per_minute=10**9,
    first_contacts_per_address_per_day=10**9, open_relationships_per_address=10**9,
)  # fmt: skip
#: ~300 bytes of fields once sealed, as in the issue's measurement.
FIELDS = {
    "name": "Ada Lovelace", "email": "ada@example.org", "phone": "+44 20 7946 0958",
    "street": "12 St James's Square", "city": "London", "postcode": "SW1Y 4JH",
    "country": "GB", "note": "deliveries after 6pm, ring twice",
}  # fmt: skip
SUV = CatalogueItem("Jeep Grand Cherokee 4x4", ("suv",), Money(28_900, "USD"))
YEAR_MS = 365 * 86_400_000


# -- the vendor (subprocess) ------------------------------------------------------------------


async def open_store(kind: str, path: Path | str, *, inline: bool = False) -> Store:
    """``path``: a file (sqlite), or a PostgreSQL URL naming the schema (postgres).
    ``inline``: a customer's agent's SQLite store, as ``vrm`` opens it (commits on the event
    loop's thread, fsynced together; :mod:`vrmproto.store._sqlite_durable`)."""
    if kind == "sqlite":
        return await SQLiteStore.open(path, inline=inline)
    if kind == "postgres":
        return await PostgresStore.open(PostgresConfig.from_url(str(path)))
    return MemoryStore()


async def serve_vendors(store_kind: str, db: str, count: int) -> None:
    """``count`` reference vendor endpoints, each on its own port and store; prints the ports
    (one JSON list) and serves until stdin closes."""
    accepts = [t.id for t in DEFAULT_TERMS]
    stores, servers = [], []
    for i in range(count):
        # postgres: ``db`` is a URL ending with its vrm_schema, made the vendor's own here
        where = f"{db}_{i}" if store_kind == "postgres" else Path(db) / f"vendor{i}.db"
        store = await open_store(store_kind, where)
        policy = ReferencePolicy(accepts_terms=accepts, catalogue=(SUV,), name=f"Vendor {i}")
        endpoint = Endpoint(Identity(os.urandom(32)), store=store, policy=policy, limits=LIMITS,
                            name=f"Vendor {i}")  # fmt: skip
        stores.append(store)
        servers.append(await serve(endpoint))
    print(json.dumps([s.port for s in servers]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for server in servers:
        await server.close()
    for store in stores:
        await store.close()


# -- the libsodium floor ------------------------------------------------------------------------


def _floor_calls() -> dict[str, Callable[[], object]]:
    """One libsodium call each, on inputs the size the protocol's are."""
    pk, sk = sodium.crypto_sign_seed_keypair(os.urandom(32))
    epk, esk = sodium.crypto_box_keypair()
    header = os.urandom(220)  # a signed message header, with its context prefix
    payload = os.urandom(330)  # a sealed field set's signed payload
    signed_hdr = sodium.crypto_sign(header, sk)
    signed_payload = sodium.crypto_sign(payload, sk)
    sealed = sodium.crypto_box_seal(payload + bytes(64), epk)
    return {
        "sign": lambda: sodium.crypto_sign(header, sk),
        "verify": lambda: sodium.crypto_sign_open(signed_hdr, pk),
        "sign_payload": lambda: sodium.crypto_sign(payload, sk),
        "verify_payload": lambda: sodium.crypto_sign_open(signed_payload, pk),
        "seal": lambda: sodium.crypto_box_seal(payload + bytes(64), epk),
        "unseal": lambda: sodium.crypto_box_seal_open(sealed, epk, esk),
        "key_check": lambda: sodium.crypto_core_ed25519_is_valid_point(pk),
    }


#: What one message needs, per kind and side (the calls of :func:`_floor_calls`).
#: share / address.update — agent: sign the sealed payload, seal it, sign the envelope, verify
#: the receipt; vendor: verify the envelope, unseal, verify the sealed payload, sign the receipt.
#: intentcast (per vendor) — agent: verify the discovery document (and check its key), sign the
#: intentcast, verify the receipt and the offer, sign the receipt for the offer; vendor: verify
#: the intentcast (a first contact: check the sender's key), sign the receipt and the offer,
#: verify the customer's receipt for the offer.
FLOORS: dict[str, dict[str, tuple[str, ...]]] = {
    "share": {
        "agent": ("sign_payload", "seal", "sign", "verify"),
        "vendor": ("verify", "unseal", "verify_payload", "sign"),
    },
    "intentcast": {
        "agent": ("key_check", "verify", "sign", "verify", "verify", "sign"),
        "vendor": ("key_check", "verify", "sign", "sign", "verify"),
    },
}
FLOORS["address"] = FLOORS["share"]


def floor_us(kind: str, rounds: int = 1000) -> dict[str, float]:
    """Microseconds of libsodium work per message on each side (best of 3 timings)."""
    calls = _floor_calls()
    per_call: dict[str, float] = {}
    for name, call in calls.items():
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(rounds):
                call()
            best = min(best, (time.perf_counter() - t0) / rounds * 1e6)
        per_call[name] = best
    return {side: round(sum(per_call[c] for c in needs), 1)
            for side, needs in FLOORS[kind].items()}  # fmt: skip


# -- the customers (this process) -------------------------------------------------------------


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, every thread) of ``pid`` so far, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


@dataclass
class Run:
    """One measured run."""

    messages: int
    elapsed_s: float
    latencies_ms: list[float]
    cpu_us: dict[str, float] | None


async def open_agents(k: int, store_kind: str, tmp: str) -> list[tuple[Agent, Store]]:
    out = []
    for i in range(k):
        store = await open_store(store_kind, Path(tmp) / f"agent{i}.db", inline=True)
        out.append((await Agent.open(store, os.urandom(32)), store))
    return out


async def one_customer(agent: Agent, kind: str, m: int, urls: list[str],
                       latencies: list[float]) -> int:  # fmt: skip
    """Send ``m`` messages (or rounds) of ``kind``; returns how many messages went out."""
    sent = 0
    for i in range(m):
        t0 = time.perf_counter()
        if kind == "share":
            d = await agent.share(urls[0], FIELDS, purposes=["delivery"], categories=["contact"],
                                  expires_ms=int(time.time() * 1000) + YEAR_MS)  # fmt: skip
            if not d.confirmed:
                raise RuntimeError(f"a share was not confirmed: {d.status} {d.error}")
            sent += 1
        elif kind == "address":
            report = await agent.update_address({**FIELDS, "street": f"{i} New Street"})
            if len(report.confirmed) != len(urls):
                raise RuntimeError(f"{len(report.confirmed)} of {len(urls)} vendors confirmed")
            sent += len(urls)
        else:
            result = await agent.intentcast("an suv for a week", vendors=urls, deadline_ms=60_000)
            if len(result.offers) != len(urls):
                raise RuntimeError(f"{len(result.offers)} offers from {len(urls)} vendors")
            sent += len(urls)
        latencies.append((time.perf_counter() - t0) * 1000)
    return sent


async def drive(args: argparse.Namespace, k: int, m: int, urls: list[str], vendor_pid: int, *,
                in_flight: int = 0, db_pid: int | None = None) -> Run:  # fmt: skip
    """Open ``k`` agents, connect them (untimed), then time ``m`` messages each, at most
    ``in_flight`` customers at once (0: all)."""
    with tempfile.TemporaryDirectory(prefix="vrm-e2e-") as tmp:
        agents = await open_agents(k, args.agent_store, tmp)
        try:
            if args.kind != "intentcast":
                for agent, _ in agents:
                    done = await asyncio.gather(*(agent.connect(u) for u in urls))
                    if any(c.status != "accepted" for c in done):
                        raise RuntimeError("a vendor did not accept the terms")
            latencies: list[float] = []
            vendor0, agent0 = proc_cpu_s(vendor_pid), time.process_time()
            loop0 = time.thread_time()  # the agents' event loop runs on this thread
            threads0 = thread_cpu_s(vendor_pid)
            db0 = tree_cpu_s(db_pid) if db_pid is not None else None
            t0 = time.perf_counter()
            turns = asyncio.Semaphore(in_flight or k)

            async def customer(agent: Agent) -> int:
                async with turns:
                    return await one_customer(agent, args.kind, m, urls, latencies)

            counts = await asyncio.gather(*(customer(a) for a, _ in agents))
            elapsed = time.perf_counter() - t0
            vendor1, agent1 = proc_cpu_s(vendor_pid), time.process_time()
            loop1 = time.thread_time()
            threads1 = thread_cpu_s(vendor_pid)
            db1 = tree_cpu_s(db_pid) if db_pid is not None else None
        finally:
            for agent, store in agents:
                await agent.close()
                await store.close()
    n = sum(counts)
    cpu = None
    if vendor0 is not None and vendor1 is not None:
        cpu = {"vendor": round((vendor1 - vendor0) / n * 1e6, 1),
               "agent": round((agent1 - agent0) / n * 1e6, 1),
               # the agents' event loop's thread and the others (SQLite stores' writers)
               "agent_loop": round((loop1 - loop0) / n * 1e6, 1),
               "agent_other_threads": round(((agent1 - agent0) - (loop1 - loop0)) / n * 1e6,
                                            1)}  # fmt: skip
        if db0 is not None and db1 is not None:
            cpu["database"] = round((db1 - db0) / n * 1e6, 1)
        if threads0 is not None and threads1 is not None:
            # the event loop's thread (the process's main one) and the others (the store's
            # writer thread, its readers, executors): where the vendor's CPU goes
            loop_s = threads1.get(vendor_pid, 0.0) - threads0.get(vendor_pid, 0.0)
            other_s = sum(threads1.values()) - sum(threads0.values()) - loop_s
            cpu["vendor_loop"] = round(loop_s / n * 1e6, 1)
            cpu["vendor_other_threads"] = round(other_s / n * 1e6, 1)
    return Run(n, elapsed, latencies, cpu)


def start_vendors(store_kind: str, db: str, count: int, loop: str
                  ) -> tuple[subprocess.Popen[str], list[int]]:  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--vendor-store", store_kind, "--db", db,
         "--vendors", str(count), "--loop", loop],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the vendor process did not start")
    return proc, [int(p) for p in json.loads(line)]


def measure(args: argparse.Namespace, k: int, m: int, in_flight: int = 0) -> Run:
    """One run against a fresh vendor subprocess."""
    vendors = args.vendors or DEFAULT_VENDORS[args.kind]
    cluster: PrivateCluster | None = args.cluster
    with tempfile.TemporaryDirectory(prefix="vrm-e2e-vendor-") as tmp:
        # on PostgreSQL each run's vendors get schemas of their own: vendor<i> under a new name
        db = tmp if cluster is None else f"{cluster.dsn}&vrm_schema=e2e_{os.urandom(4).hex()}"
        proc, ports = start_vendors(args.vendor_store, db, vendors, args.loop)
        try:
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            db_pid = cluster.postmaster_pid() if cluster is not None else None
            return _loop.run(drive(args, k, m, urls, proc.pid, in_flight=in_flight,
                                   db_pid=db_pid), fast=LOOPS[args.loop])  # fmt: skip
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=60)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def growth(args: argparse.Namespace) -> dict[str, Any]:
    """CPU per message at ``--growth-m`` messages per customer over the same at 8, with the
    same number of messages in all (share only): the median over ``--growth-rounds`` rounds,
    each of the three runs in turn, so that a slow minute of a shared machine moves one round's
    ratios, not the figure."""
    none: dict[str, Any] = {"growth": None, "growth_vendor": None, "growth_agent": None,
                            "growth_same_flight": None, "growth_rounds": []}  # fmt: skip
    if args.no_growth or args.kind != "share":
        return none
    total = 4 * args.growth_m
    rounds: list[dict[str, float]] = []
    for r in range(args.growth_rounds):
        long_run = measure(args, total // args.growth_m, args.growth_m)
        short_run = measure(args, total // 8, 8)
        turns_run = measure(args, total // 8, 8, in_flight=total // args.growth_m)
        if long_run.cpu_us is None or short_run.cpu_us is None or turns_run.cpu_us is None:
            return none
        lc, sc, tc = long_run.cpu_us, short_run.cpu_us, turns_run.cpu_us
        print(f"growth round {r + 1}: {total // args.growth_m} x {args.growth_m}: vendor "
              f"{lc['vendor']:.0f} us, agent {lc['agent']:.0f} us; {total // 8} x 8: vendor "
              f"{sc['vendor']:.0f} us, agent {sc['agent']:.0f} us per message; {total // 8} x "
              f"8, {total // args.growth_m} at once: vendor {tc['vendor']:.0f} us, "
              f"agent {tc['agent']:.0f} us")  # fmt: skip
        rounds.append({
            "growth": (lc["vendor"] + lc["agent"]) / (sc["vendor"] + sc["agent"]),
            "growth_same_flight": (lc["vendor"] + lc["agent"]) / (tc["vendor"] + tc["agent"]),
            "growth_vendor": lc["vendor"] / sc["vendor"],
            "growth_agent": lc["agent"] / sc["agent"],
        })  # fmt: skip
    out: dict[str, Any] = {key: round(statistics.median(r[key] for r in rounds), 3)
                           for key in rounds[0]}  # fmt: skip
    out["growth_rounds"] = [round(r["growth"], 3) for r in rounds]
    return out


def report(args: argparse.Namespace, run: Run, floor: dict[str, float]) -> dict[str, Any]:
    rate = run.messages / run.elapsed_s
    p50, p99 = percentile(run.latencies_ms, 0.5), percentile(run.latencies_ms, 0.99)
    result: dict[str, Any] = {
        "kind": args.kind, "k": args.k, "m": args.m,
        "vendors": args.vendors or DEFAULT_VENDORS[args.kind],
        "agent_store": args.agent_store, "vendor_store": args.vendor_store,
        "loop": "uvloop" if _loop.loop_factory(LOOPS[args.loop]) else "asyncio",
        "messages": run.messages, "msgs_per_s": round(rate, 1),
        "latency_of": "message" if args.kind == "share" else "round",
        "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
        "cpu_us": run.cpu_us, "floor_us": floor,
        "vendor_floor_ratio": None, "agent_floor_ratio": None,
    }  # fmt: skip
    print(
        f"{args.k} customers x {args.m} {args.kind}: {rate:.0f} msg/s, p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms (per {result['latency_of']})"
    )
    if run.cpu_us is not None and "database" in run.cpu_us:
        with_db = run.cpu_us["vendor"] + run.cpu_us["database"]
        result["vendor_db_floor_ratio"] = round(with_db / floor["vendor"], 2)
        print(f"database: {run.cpu_us['database']:.0f} us CPU per message (vendor and its "
              f"database: ratio {result['vendor_db_floor_ratio']:.2f})")
    if run.cpu_us is not None:
        for side in ("vendor", "agent"):
            result[f"{side}_floor_ratio"] = round(run.cpu_us[side] / floor[side], 2)
            print(
                f"{side}: {run.cpu_us[side]:.0f} us CPU per message, libsodium floor "
                f"{floor[side]:.0f} us, ratio {result[f'{side}_floor_ratio']:.2f}"
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, default="share")
    parser.add_argument("--k", type=int, default=16, help="customers (agents) in this process")
    parser.add_argument(
        "--m",
        type=int,
        default=125,
        help="messages (share) or rounds (address, intentcast) per customer",
    )
    parser.add_argument(
        "--vendors",
        type=int,
        default=0,
        help="vendor endpoints (default: 1, 200 for address, 20 for intentcast)",
    )
    parser.add_argument("--agent-store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--vendor-store", choices=("sqlite", "memory", "postgres"),
                        default="sqlite",
                        help="postgres: a private cluster on a Unix socket, started here")
    parser.add_argument("--in-flight", type=int, default=0,
                        help="at most this many customers send at once (default: all)")
    parser.add_argument("--loop", choices=tuple(LOOPS), default="auto",
                        help="event loop of both processes (auto: uvloop if installed)")
    parser.add_argument("--no-growth", action="store_true", help="skip the growth runs")
    parser.add_argument("--floor-rounds", type=int, default=1000,
                        help="calls of each libsodium function per timing of the floor")
    parser.add_argument(
        "--growth-m",
        type=int,
        default=256,
        help="messages per customer of the long growth run (against 8)",
    )
    parser.add_argument("--growth-rounds", type=int, default=3,
                        help="rounds of the growth runs; each growth figure is their median")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _loop.run(serve_vendors(args.vendor_store, args.db, args.vendors or 1),
                  fast=LOOPS[args.loop])
        return
    print(
        f"e2e bench: {args.k} customers x {args.m} {args.kind}, agents on {args.agent_store}, "
        f"vendor on {args.vendor_store} in a subprocess, {os.cpu_count()} cores"
    )
    args.cluster = start_cluster() if args.vendor_store == "postgres" else None
    try:
        run = measure(args, args.k, args.m, args.in_flight)
        floor = floor_us(args.kind, args.floor_rounds)
        result = report(args, run, floor)
        result.update(growth(args))
    finally:
        if args.cluster is not None:
            args.cluster.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
