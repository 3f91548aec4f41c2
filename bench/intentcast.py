"""Relayed intentcast benchmark (spec §15): from publishing to the last of N vendors' offers
through one Nostr relay on 127.0.0.1, and what the proof of work costs on this machine.

Run: ``.venv/bin/python bench/intentcast.py [--vendors 20] [--pow 16] [--rounds 3]``

Setup: one ``nostr-relay`` (vrmproto/nostr/_local.py) with its own database; N reference vendors
on 127.0.0.1, each offering an "suv", each listening on the relay with a connection of its own
(``RelayVendor``); one customer agent on a MemoryStore. A round: ``publish_intentcast`` with
``expect_answers=N`` — mine and sign the event, publish, wait for N sealed answers, then the
HTTP intentcast to the N vendors and their signed offers. Reported: the wall time of each round
(publish → the last offer stored), and the split at the last answer. The proof of work is
timed apart: mining and signing an intentcast event at 8, 12, 16 and 20 bits, CPU time of this
thread, median of ``--pow-samples`` runs with different keys (the cost is geometric: each run's
nonce count varies widely, so the median of several is the figure to read).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from vrmproto import MasterSeed, Money
from vrmproto.client import Agent
from vrmproto.nostr import NostrKey, sign_event
from vrmproto.nostr._customer import publish_intentcast
from vrmproto.nostr._local import local_relay
from vrmproto.nostr._vendor import RelayVendor, relay_vendor
from vrmproto.server import CatalogueItem, LocalVendor, VendorConfig
from vrmproto.store import MemoryStore


def _config(i: int) -> VendorConfig:
    item = CatalogueItem(f"SUV {i}", ("suv",), Money(20000 + 100 * i, "USD"))
    return VendorConfig(name=f"vendor {i:02}", seed=os.urandom(32),
                        accepts_terms=("vrm.no-tracking",), counter=(), catalogue=(item,),
                        observed=())  # fmt: skip


async def _round(url: str, n: int, pow_bits: int) -> dict[str, float]:
    agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)))
    async with agent:
        t0 = time.perf_counter()
        out = await publish_intentcast(agent, "SUV rental", relays=[url], pow_difficulty=pow_bits,
                                       answer_wait_ms=60_000, expect_answers=n,
                                       deadline_ms=120_000)  # fmt: skip
        total = time.perf_counter() - t0
    assert len(out.answers) == n, f"{len(out.answers)} of {n} answered"
    assert len(out.result.offers) == n, f"{len(out.result.offers)} of {n} offers"
    return {"total_s": total}


async def _offers(url: str, n: int, pow_bits: int, rounds: int) -> list[dict[str, float]]:
    vendors = [LocalVendor.of(_config(i)) for i in range(n)]
    for v in vendors:
        await v.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            for v in vendors:
                listener = RelayVendor(v.config.policy(), v.identity, v.url, ["suv"])
                await stack.enter_async_context(relay_vendor(listener, [url]))
            return [await _round(url, n, pow_bits) for _ in range(rounds)]
    finally:
        for v in vendors:
            await v.stop()


def _pow_cost(bits: int, samples: int) -> float:
    times = []
    content = "A" * 1200  # about the base64 of a Park City envelope
    for _ in range(samples):
        key = NostrKey(os.urandom(32))
        t0 = time.thread_time()
        sign_event(key, int(time.time()), 7390, [["t", "suv"]], content, aux=os.urandom(32),
                   pow_difficulty=bits)  # fmt: skip
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--vendors", type=int, default=20)
    p.add_argument("--pow", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pow-samples", type=int, default=9)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, local_relay(Path(tmp)) as url:
        rounds = asyncio.run(_offers(url, a.vendors, a.pow, a.rounds))
    for i, r in enumerate(rounds, 1):
        print(f"round {i}: publish → last of {a.vendors} offers: {r['total_s']:.2f} s")
    pow_s = {bits: _pow_cost(bits, a.pow_samples if bits < 20 else 3) for bits in (8, 12, 16, 20)}
    for bits, s in pow_s.items():
        print(f"proof of work {bits:2} bits: {s * 1000:8.1f} ms (median CPU)")
    print(json.dumps({"vendors": a.vendors, "pow": a.pow,
                      "total_s": [round(r["total_s"], 3) for r in rounds],
                      "median_total_s": round(statistics.median(r["total_s"] for r in rounds), 3),
                      "pow_ms": {b: round(s * 1000, 1) for b, s in pow_s.items()}}))  # fmt: skip


if __name__ == "__main__":
    main()
