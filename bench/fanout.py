"""The fan-out benchmark: one address update to many vendors, in parallel and one by one.

Run ``python bench/fanout.py`` (``--vendors``, ``--delay-ms``); ``bench/inbox.py`` reports the
same figures beside its own. It drives the public :class:`vrmproto.client.Agent` against
reference vendor endpoints (:mod:`vrmproto.server`) in this process: a benchmark, not part of
the client library.

:func:`measure_fanout` starts ``n_vendors`` reference vendor endpoints (:mod:`vrmproto.server`)
on 127.0.0.1, each answering ``delay_ms`` late (simulated latency, an aiohttp middleware), opens
an agent on a fresh SQLite store, as ``vrm`` opens its own (``inline=True``), connects to every
vendor, then times the same address update sent concurrently (the agent's fan-out) and
sequentially (concurrency 1), in the same process.
Wall time is :func:`time.perf_counter` around each whole fan-out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from vrmproto import Identity
from vrmproto.client import DEFAULT_TERMS, Agent
from vrmproto.server import Endpoint, ReferencePolicy, make_app
from vrmproto.store import MemoryStore, SQLiteStore

__all__ = ["ameasure_fanout", "measure_fanout"]


async def ameasure_fanout(
    n_vendors: int = 200,
    delay_ms: int = 50,
    *,
    concurrency: int = 64,
    serial: bool = True,
) -> dict[str, Any]:
    """Measure the address-update fan-out (see the module docstring); ``await`` form."""
    delay_s = delay_ms / 1000

    @web.middleware
    async def latency(request: web.Request, handler: Any) -> web.StreamResponse:
        await asyncio.sleep(delay_s)  # simulated network and server latency
        response: web.StreamResponse = await handler(request)
        return response

    accepts = [t.id for t in DEFAULT_TERMS]
    runners: list[web.AppRunner] = []
    urls: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vrm-bench-") as tmp:
        store = await SQLiteStore.open(Path(tmp) / "agent.db", inline=True)  # as vrm's
        agent = await Agent.open(store, os.urandom(32), concurrency=concurrency)
        try:
            for i in range(n_vendors):
                endpoint = Endpoint(
                    Identity(os.urandom(32)), store=MemoryStore(), name=f"Vendor {i:03d}",
                    policy=ReferencePolicy(accepts_terms=accepts, name=f"Vendor {i:03d}"),
                )
                app = make_app(endpoint)
                app.middlewares.insert(0, latency)
                runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", 0).start()
                runners.append(runner)
                urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
            connected = await asyncio.gather(*(agent.connect(u) for u in urls))
            agreed = sum(c.status == "accepted" for c in connected)
            parallel = await agent.update_address({"street": "1 Parallel Way"})
            result: dict[str, Any] = {
                "fanout_vendors": n_vendors,
                "fanout_delay_ms": delay_ms,
                "fanout_concurrency": concurrency,
                "fanout_agreed": agreed,
                "fanout_confirmed": len(parallel.confirmed),
                "fanout_parallel_s": round(parallel.elapsed_s, 4),
            }
            if serial:
                one_by_one = await agent.update_address({"street": "2 Serial Road"},
                                                        concurrency=1)
                result["fanout_serial_s"] = round(one_by_one.elapsed_s, 4)
                result["fanout_ratio"] = round(parallel.elapsed_s / one_by_one.elapsed_s, 4)
            return result
        finally:
            await agent.close()
            await store.close()
            await asyncio.gather(*(r.cleanup() for r in runners))


def measure_fanout(n_vendors: int = 200, delay_ms: int = 50) -> dict[str, Any]:
    """``fanout_parallel_s``, ``fanout_serial_s`` and ``fanout_ratio`` (parallel / serial) of
    an address update to ``n_vendors`` endpoints each ``delay_ms`` late; runs its own loop."""
    return asyncio.run(ameasure_fanout(n_vendors, delay_ms))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vendors", type=int, default=200, help="vendor endpoints to start")
    parser.add_argument("--delay-ms", type=int, default=50, help="each vendor's added latency")
    args = parser.parse_args()
    print(json.dumps(measure_fanout(args.vendors, args.delay_ms), indent=2))


if __name__ == "__main__":
    main()
