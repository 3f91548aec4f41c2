"""``vrm ui`` with many relationships: how long the relationships page takes to render.

An agent on a SQLiteStore (as ``vrm`` keeps it) opens ``--n`` relationships, one with each of
``--n`` reference vendors (each its own key, on its own port on 127.0.0.1: an agent keeps one
live relationship per vendor key), each sharing one field; then ``vrm ui``'s server (the real
:class:`~vrmproto.ui.UiServer`) is started on that node and its relationships page is fetched
over HTTP, as the browser does. ``launch_ms``: opening the node afresh on the store and starting
the server, which compiles the templates and reads every relationship once before it listens;
``first_ms``: the first fetch after that; ``warm_ms``: the median of ``--rounds`` more. The
issue's target: 200 relationships render in < 300 ms.

Prints human lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vrmproto import Identity  # noqa: E402
from vrmproto.client import DEFAULT_TERMS, CustomerNode, RetryPolicy  # noqa: E402
from vrmproto.server import Endpoint, ReferencePolicy, make_app  # noqa: E402
from vrmproto.store import MemoryStore, SQLiteStore  # noqa: E402
from vrmproto.ui import UiServer  # noqa: E402

DAY_MS = 86_400_000


async def _populate(store: SQLiteStore, seed: bytes, urls: list[str]) -> int:
    sem = asyncio.Semaphore(16)
    async with await CustomerNode.open(store, seed, retry=RetryPolicy(attempts=3)) as node:
        agent = node.agent

        async def one(i: int, url: str) -> bool:
            async with sem:
                result = await agent.connect(url)
                await agent.share(result.thread, {"email": f"me+{i}@example.org"},
                                  purposes=["core-function"], categories=["contact"],
                                  expires_ms=agent.clock() + 30 * DAY_MS)  # fmt: skip
                return not result.existing

        return sum(await asyncio.gather(*(one(i, u) for i, u in enumerate(urls))))


async def _vendors(n: int) -> tuple[list[str], list[web.AppRunner]]:
    """``n`` reference vendors, each with a key of its own, each on a port of its own."""
    accepts = [t.id for t in DEFAULT_TERMS]
    runners: list[web.AppRunner] = []
    for i in range(n):
        name = f"Vendor {i:03d}"
        endpoint = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name=name,
                            policy=ReferencePolicy(accepts_terms=accepts, name=name))  # fmt: skip
        runner = web.AppRunner(make_app(endpoint), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
    return [f"http://127.0.0.1:{r.addresses[0][1]}" for r in runners], runners


async def _measure(store: SQLiteStore, seed: bytes, rounds: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    async with await CustomerNode.open(store, seed) as node:
        server = UiServer(node)
        url = await server.start()
        launch = (time.perf_counter() - t0) * 1000
        try:
            async with aiohttp.ClientSession() as session:

                async def fetch() -> tuple[float, str]:
                    t0 = time.perf_counter()
                    async with session.get(url) as r:
                        text = await r.text()
                        assert r.status == 200, text
                    return (time.perf_counter() - t0) * 1000, text

                cold, html = await fetch()
                warm = [(await fetch())[0] for _ in range(rounds)]
        finally:
            await server.close()
    return {"launch_ms": round(launch, 1), "first_ms": round(cold, 1),
            "warm_ms": round(statistics.median(warm), 1), "warm_max_ms": round(max(warm), 1),
            "cards": html.count('class="card ')}  # fmt: skip


async def main(n: int, rounds: int) -> dict[str, Any]:
    urls, runners = await _vendors(n)
    seed = os.urandom(32)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = await SQLiteStore.open(Path(tmp) / "agent.db")
            try:
                t0 = time.perf_counter()
                opened = await _populate(store, seed, urls)
                assert opened == n, f"{opened} relationships opened, {n} asked"
                print(f"{n} relationships opened in {time.perf_counter() - t0:.1f} s")
                figures = await _measure(store, seed, rounds)
            finally:
                await store.close()
    finally:
        await asyncio.gather(*(r.cleanup() for r in runners))
    return {"relationships": n, "rounds": rounds, **figures, "target_ms": 300}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="relationships (default 200)")
    parser.add_argument("--rounds", type=int, default=20, help="warm fetches (default 20)")
    args = parser.parse_args()
    result = asyncio.run(main(args.n, args.rounds))
    print(f"vrm ui launched (node opened, templates compiled, relationships read) in "
          f"{result['launch_ms']} ms")
    print(f"relationships page with {result['cards']} cards: first {result['first_ms']} ms, "
          f"then {result['warm_ms']} ms (median of {args.rounds}; target < 300 ms)")
    print(json.dumps(result))
