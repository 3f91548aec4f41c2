"""Honest customers while the vendor is under attack (issue 10's benchmark).

The reference vendor endpoint runs in a subprocess (``SQLiteStore`` in a temporary directory,
the reference policy, its default limits). Honest customers are :class:`vrmproto.client.Agent`s
on the public API, each bound to its own loopback address (``127.1.0.k``), as separate people
behind separate addresses would be. Each connects once (terms offer, agreed) and then shares
data in that existing relationship, one share after another.

The honest run is measured twice in one invocation: first on a quiet vendor, then while a flood
runs from another process bound to ``127.2.0.1`` (one attacker address). The flood mixes, at
once:

- ``garbage``: random bytes posted to the inbox;
- ``forged``: well-formed envelopes whose signature does not verify;
- ``first-contact``: valid, signed terms offers, each from a fresh key (a new relationship each);
- ``padded``: the same, with an unknown body key padding the envelope to near the size limit;
- ``slow-headers``: connections that send part of a request line and never finish, held open.

Reported: the honest customers' success rate, p50 and p99 in both runs and the ratio of the
p99s (target: success 100%, ``p99_ratio`` <= 5), what the flood got back (status counts per
kind), how many slow connections the vendor still held at the end, and the growth of the
vendor's data directory per attacker address per minute of flood (target: bounded by the
first-contact budget the vendor publishes, whatever the flood's length).

Prints human lines, then one JSON object on the last line::

    .venv/bin/python bench/hostile.py [--customers 8] [--seconds 10] [--slow 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import msgpack

from vrmproto import Identity, Relationship, Role, TermRef, TermsOffer, _rules, latest
from vrmproto._keys import key_from_text
from vrmproto.client import Agent
from vrmproto.server import Endpoint, ReferencePolicy, serve
from vrmproto.store import MemoryStore, SQLiteStore

VENDOR_SEED = bytes(range(32))
TERMS = ("vrm.no-tracking", "vrm.no-third-party")
CONTENT_TYPE = "application/vnd.vrmproto+msgpack"
ATTACKER = "127.2.0.1"
DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


# -- the vendor (subprocess) ---------------------------------------------------------------------


async def serve_vendor(db_dir: str) -> None:
    raise_nofile()
    store = await SQLiteStore.open(Path(db_dir) / "vendor.db")
    endpoint = Endpoint(
        Identity(VENDOR_SEED), store=store, name="hostile bench vendor",
        policy=ReferencePolicy(accepts_terms=TERMS, name="hostile bench vendor"),
    )  # fmt: skip
    server = await serve(endpoint)
    print(server.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close()
    await store.close()


# -- the flood (subprocess) ----------------------------------------------------------------------


class PaddedOffer(TermsOffer):
    """A terms offer carrying one unknown body key of ``pad`` bytes (kept by §5.1-3)."""

    pad = 200 * 1024

    def to_wire(self) -> dict[str, Any]:
        wire = super().to_wire()
        wire["zz-padding"] = bytes(self.pad)
        return wire


# The rules table is keyed by each message class itself (vrmproto._rules): the padded offer is a
# terms offer to every rule, only its wire form carries more.
_rules.RULES[PaddedOffer] = _rules.RULES[TermsOffer]


def first_contact(vendor_key: bytes, *, padded: bool) -> bytes:
    me = Identity(os.urandom(32))
    rel = Relationship(role=Role.CUSTOMER, identity=me, thread=os.urandom(16),
                       peer_key=vendor_key)  # fmt: skip
    terms = tuple(TermRef.of(latest(t)) for t in TERMS)
    cls = PaddedOffer if padded else TermsOffer
    sent = rel.send(cls(terms=terms, enc_key=me.enc_public_key), now=now_ms(),
                    msg_id=os.urandom(16), lifetime_ms=3_600_000)  # fmt: skip
    return sent.message.envelope


def forged(vendor_key: bytes) -> bytes:
    env = msgpack.unpackb(first_contact(vendor_key, padded=False))
    env["sig"] = os.urandom(64)
    return bytes(msgpack.packb(env, use_bin_type=True))


async def flood(port: int, seconds: float, slow: int) -> dict[str, Any]:
    raise_nofile()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as s, s.get(f"{base}/.well-known/vrm") as r:
        doc = json.loads(await r.read())
    inbox = base + doc["inbox"]
    vendor_key = key_from_text(doc["key"])
    statuses: dict[str, Counter[str]] = {k: Counter() for k in
                                         ("garbage", "forged", "first-contact", "padded")}
    stop = time.monotonic() + seconds
    makers = {
        "garbage": lambda: os.urandom(300),
        "forged": lambda: forged(vendor_key),
        "first-contact": lambda: first_contact(vendor_key, padded=False),
        "padded": lambda: first_contact(vendor_key, padded=True),
    }

    async def poster(kind: str, session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            body = makers[kind]()
            try:
                async with session.post(inbox, data=body,
                                        headers={"Content-Type": CONTENT_TYPE}) as resp:
                    await resp.read()
                    statuses[kind][str(resp.status)] += 1
                    if resp.status == 429:  # a real attacker would go on; so do we, a bit slower
                        await asyncio.sleep(0.01)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                statuses[kind][type(exc).__name__] += 1
                await asyncio.sleep(0.01)

    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    slow_refused = Counter[str]()

    async def slow_headers() -> None:
        for _ in range(slow):
            if time.monotonic() >= stop:
                return
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                               local_addr=(ATTACKER, 0))
                writer.write(b"POST " + doc["inbox"].encode() + b" HTTP/1.1\r\nHost: x\r\n")
                held.append((reader, writer))
            except OSError as exc:
                slow_refused[type(exc).__name__] += 1
                await asyncio.sleep(0.005)

    connector = aiohttp.TCPConnector(limit=64, local_addr=(ATTACKER, 0))
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=15)) as session:
        tasks = [poster(kind, session) for kind in makers for _ in range(4)]

        async def announce() -> None:  # the honest run starts once the flood is in full swing
            await asyncio.sleep(min(1.0, seconds / 4))
            print("flooding", flush=True)

        await asyncio.gather(slow_headers(), announce(), *tasks)
    # open as far as the attacker can tell: the vendor has not closed it (no EOF, no reset)
    still_open = sum(1 for r, w in held if not r.at_eof() and not w.transport.is_closing())
    limits = doc.get("limits", {})
    for _, w in held:
        w.close()
    return {
        "statuses": {k: dict(v) for k, v in statuses.items()},
        "slow_opened": len(held),
        "slow_refused": dict(slow_refused),
        "slow_still_open_at_end": still_open,
        "limits": limits,
    }


# -- honest customers (this process) -------------------------------------------------------------


async def honest(url: str, customers: int, shares: int) -> tuple[list[float], int, int]:
    """Latencies (ms) of every confirmed share, and (confirmed, attempted)."""
    latencies: list[float] = []
    confirmed = attempted = 0

    async def one(k: int) -> None:
        nonlocal confirmed, attempted
        connector = aiohttp.TCPConnector(local_addr=(f"127.1.0.{k + 1}", 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            agent = await Agent.open(MemoryStore(), os.urandom(32), session=session)
            try:
                agreed = await agent.connect(url)
                if agreed.status != "accepted":
                    attempted += shares
                    return
                for i in range(shares):
                    attempted += 1
                    t0 = time.perf_counter()
                    d = await agent.share(
                        agreed.thread, {"email": f"person{k}.{i}@example.org"},
                        purposes=["contracted-service"], categories=["contact"],
                        expires_ms=now_ms() + DAY_MS,
                    )  # fmt: skip
                    if d.status == "confirmed":
                        confirmed += 1
                        latencies.append((time.perf_counter() - t0) * 1000)
            finally:
                await agent.close()

    await asyncio.gather(*(one(k) for k in range(customers)))
    return latencies, confirmed, attempted


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def dir_bytes(path: str) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{args[0]} did not start")
    return proc, line.strip()


def stop(proc: subprocess.Popen[str]) -> str:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.close()
    out = proc.stdout.read()
    proc.wait(timeout=60)
    return out


def budget_bytes(limits: dict[str, int]) -> int | None:
    """What one address prefix may make the vendor store in any 24 hours, by its published
    first-contact limits (spec §11.8: a relationship costs its first message + ~5 KiB, and a
    day's bucket may be spent twice within 24 hours); None if it publishes no such limits."""
    try:
        per_day = limits["first_contacts_per_address_per_day"]
        large = limits["large_first_contacts_per_address_per_day"]
        small_max, large_max = limits["max_first_contact_bytes"], limits["max_envelope_bytes"]
    except KeyError:
        return None
    return 2 * (per_day * (small_max + 5 * 1024) + large * (large_max + 5 * 1024))


def summary(latencies: list[float], confirmed: int, attempted: int) -> dict[str, float]:
    return {"success": round(confirmed / attempted, 4) if attempted else 0.0,
            "p50_ms": round(percentile(latencies, 0.5), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=8, help="honest customers (default 8)")
    parser.add_argument("--shares", type=int, default=40, help="shares per customer (default 40)")
    parser.add_argument("--seconds", type=float, default=10.0, help="flood length (default 10)")
    parser.add_argument("--slow", type=int, default=2000,
                        help="slow-header connections to try to hold (default 2000)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--flood", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_vendor(args.db))
        return
    if args.flood:
        result = asyncio.run(flood(args.flood, args.seconds, args.slow))
        sys.stdin.read()
        print(json.dumps(result))
        return

    raise_nofile()
    with tempfile.TemporaryDirectory() as db_dir:
        vendor, port = start(["--serve", "--db", db_dir])
        url = f"http://127.0.0.1:{port}"
        try:
            quiet = asyncio.run(honest(url, args.customers, args.shares))
            q = summary(*quiet)
            print(f"quiet:  success {q['success']:.2%}, p50 {q['p50_ms']} ms, "
                  f"p99 {q['p99_ms']} ms")  # fmt: skip
            before = dir_bytes(db_dir)
            t0 = time.monotonic()
            attacker, _ = start(["--flood", port, "--seconds", str(args.seconds),
                                 "--slow", str(args.slow)])  # fmt: skip
            loud = asyncio.run(honest(url, args.customers, args.shares))
            f = summary(*loud)
            flood_result = json.loads(stop(attacker).strip().splitlines()[-1])
            flood_s = time.monotonic() - t0
            after = dir_bytes(db_dir)
            print(f"flood:  success {f['success']:.2%}, p50 {f['p50_ms']} ms, "
                  f"p99 {f['p99_ms']} ms")  # fmt: skip
            print(f"flood got: {flood_result['statuses']}")
            print(f"slow-header connections: {flood_result['slow_opened']} opened, "
                  f"{flood_result['slow_still_open_at_end']} still open at the end, refused "
                  f"{flood_result['slow_refused']}")  # fmt: skip
        finally:
            stop(vendor)
    growth = max(0, after - before)
    per_min = growth / (flood_s / 60)
    budget = budget_bytes(flood_result["limits"])
    print(f"vendor storage grew {growth / 2**20:.1f} MiB in {flood_s:.1f} s from one address: "
          f"{per_min / 2**20:.1f} MiB per address per minute; the published first-contact "
          f"limits bound one address at "
          f"{'(none)' if budget is None else f'{budget / 2**20:.0f} MiB'} in any 24 hours")
    ratio = f["p99_ms"] / q["p99_ms"] if q["p99_ms"] else float("inf")
    print(json.dumps({
        "customers": args.customers, "shares_each": args.shares,
        "quiet": q, "flood": f, "p99_ratio": round(ratio, 2),
        "flood_seconds": round(flood_s, 1),
        "storage_growth_bytes": growth,
        "storage_bytes_per_address_per_min": round(per_min),
        "storage_budget_bytes_per_address_per_day": budget,
        "within_budget": budget is not None and growth <= budget,
        "flood_statuses": flood_result["statuses"],
        "slow_opened": flood_result["slow_opened"],
        "slow_still_open_at_end": flood_result["slow_still_open_at_end"],
    }))


if __name__ == "__main__":
    main()
