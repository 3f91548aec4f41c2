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

The baseline is a bare aiohttp handler that only parses the envelope enough to verify its
signature with PyNaCl and returns a fixed receipt that it signs with PyNaCl for each request:
the cost of HTTP plus the cryptography, the floor any receiver pays.
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
from nacl.bindings import crypto_sign_open
from nacl.signing import SigningKey

from vrmproto import (
    Identity,
    Limits,
    Relationship,
    Role,
    TermRef,
    TermsOffer,
    latest,
    open_envelope,
    sign_message,
)
from vrmproto._binding import CONTENT_TYPE, DEFAULT_INBOX_PATH, decode_replies
from vrmproto._keys import Context
from vrmproto._messages import Receipt
from vrmproto.server import Endpoint, ReferencePolicy, serve
from vrmproto.store import MemoryStore, SQLiteStore, Store

VENDOR_SEED = bytes(range(32))
TERMS = ("vrm.no-tracking", "vrm.no-third-party")
# The bench measures the inbox path, not the rate limiter: allow far more than it sends.
LIMITS = Limits(rate_per_sender_per_minute=10**9, rate_per_address_per_minute=10**9)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- servers (subprocess) ------------------------------------------------------------------------


class ReviewPolicy(ReferencePolicy):
    """Leaves every offer open for a person to decide: the endpoint only receipts it."""

    async def on_terms_offer(self, rel: Any, msg: Any) -> None:  # type: ignore[override]
        return None


async def serve_endpoint(db_dir: str, *, accept: bool, durable: bool = True) -> None:
    store: Store = await SQLiteStore.open(Path(db_dir) / "vendor.db") if durable else MemoryStore()
    policy = ReferencePolicy(accepts_terms=TERMS) if accept else ReviewPolicy(accepts_terms=TERMS)
    endpoint = Endpoint(
        Identity(VENDOR_SEED),
        store=store,
        policy=policy,
        limits=LIMITS,
        name="bench vendor",
    )
    server = await serve(endpoint)
    await announce_and_wait(server.port)
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
    await announce_and_wait(int(runner.addresses[0][1]))
    await runner.cleanup()


async def announce_and_wait(port: int) -> None:
    print(port, flush=True)
    loop = asyncio.get_running_loop()
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
    url: str, offers: list[tuple[Identity, bytes, bytes]], concurrency: int, check_ack: bool
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[Identity, bytes, bytes]] = asyncio.Queue()
    for item in offers:
        queue.put_nowait(item)
    limits = Limits()
    headers = {"Content-Type": CONTENT_TYPE}

    async def worker(session: aiohttp.ClientSession) -> None:
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
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return elapsed, latencies


def start_server(mode: str, db_dir: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, "--db", db_dir],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the {mode} server did not start")
    return proc, int(line)


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


@dataclass
class Run:
    """One measured run: its rate, latencies and CPU microseconds per message (if known)."""

    rate: float
    latencies: list[float]
    cpu_us: dict[str, float] | None


def measure(mode: str, n: int, concurrency: int) -> Run:
    with tempfile.TemporaryDirectory() as db_dir:
        proc, port = start_server(mode, db_dir)
        try:
            url = f"http://127.0.0.1:{port}{DEFAULT_INBOX_PATH}"
            warm = build_offers(min(200, n))
            check = mode != "baseline"
            asyncio.run(run_client(url, warm, concurrency, check))
            offers = build_offers(n)
            server0, client0 = thread_cpu_s(proc.pid), time.process_time()
            elapsed, latencies = asyncio.run(run_client(url, offers, concurrency, check))
            server1, client1 = thread_cpu_s(proc.pid), time.process_time()
        finally:
            stop_server(proc)
    cpu = None
    if server0 is not None and server1 is not None:
        loop_s = server1.get(proc.pid, 0.0) - server0.get(proc.pid, 0.0)
        other_s = sum(server1.values()) - sum(server0.values()) - loop_s
        cpu = {"server_loop": loop_s, "server_other_threads": other_s,
               "client": client1 - client0}  # fmt: skip
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
    args = parser.parse_args()
    if args.serve in SERVER_MODES:
        asyncio.run(serve_endpoint(args.db, **SERVER_MODES[args.serve]))
        return
    if args.serve == "baseline":
        asyncio.run(serve_baseline())
        return

    print(f"inbox bench: {args.n} terms.offer from {args.n} customers, concurrency "
          f"{args.concurrency}, server in a subprocess, {os.cpu_count()} cores, best of "
          f"{args.rounds} alternating rounds")  # fmt: skip
    base, best, memory = Run(0.0, [0.0], None), Run(0.0, [0.0], None), Run(0.0, [0.0], None)
    for i in range(args.rounds):
        b = measure("baseline", args.n, args.concurrency)
        r = measure("endpoint", args.n, args.concurrency)
        m = measure("endpoint-memory", args.n, args.concurrency)
        print(f"round {i + 1}: baseline {b.rate:7.0f} req/s, endpoint {r.rate:7.0f} msg/s, "
              f"control without durability {m.rate:7.0f} msg/s")  # fmt: skip
        base, best, memory = max(base, b, key=_rate), max(best, r, key=_rate), max(
            memory, m, key=_rate)
    accept = measure("endpoint-accept", args.n, args.concurrency)
    rate, latencies = best.rate, best.latencies
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(f"baseline (parse, verify, fixed signed receipt): {base.rate:8.0f} req/s")
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
    }
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


#: --serve modes of the endpoint: the arguments of serve_endpoint.
SERVER_MODES: dict[str, dict[str, bool]] = {
    "endpoint": {"accept": False},
    "endpoint-accept": {"accept": True},
    "endpoint-memory": {"accept": False, "durable": False},
}


if __name__ == "__main__":
    main()
