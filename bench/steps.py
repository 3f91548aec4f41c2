"""Each side's CPU per data.share without HTTP: a steadier figure than the end-to-end bench.

``bench/e2e.py`` measures the real path (aiohttp on both sides, the vendor in a subprocess), and
on a shared 2-core machine its CPU figures move 10-15% from run to run. This bench keeps only
what our code does per message: one :class:`~vrmproto.client.Agent` (``--agent-store
memory|sqlite``) talks to one reference :class:`~vrmproto.server.Endpoint` (``--vendor-store
memory|sqlite``) in the same process through :class:`~vrmproto.testing.transport.MemoryTransport`
(no sockets), sending ``--m`` ``data.share``\\ s one after another (``--warm`` first, untimed).

The vendor's CPU is what its ``handle_inbox`` calls took (one customer, one message at a time:
nothing else runs meanwhile but the store's threads, which are counted to the agent); the agent's
is the rest of the process's. With ``--agent-store sqlite`` the agent's store writer thread is
included, as it is in ``bench/e2e.py``. The floors are those of ``bench/e2e.py`` (the libsodium
calls one share needs on each side, timed in this run).

Compare two trees by running each in turn, several times, interleaved (``PYTHONPATH=<tree>``).
The last line is one JSON object: ``cpu_us`` per side, ``floor_us``, ``*_floor_ratio``, and
``wall_us`` per share (both sides, one at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from e2e import FIELDS, LIMITS, YEAR_MS, floor_us, open_store

from vrmproto import Identity
from vrmproto.client import DEFAULT_TERMS, Agent
from vrmproto.server import Endpoint, ReferencePolicy, Response
from vrmproto.testing.transport import MemoryTransport

URL = "http://vendor.test"


async def measure(agent_store: str, vendor_store: str, m: int, warm: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="vrm-steps-") as tmp:
        vstore = await open_store(vendor_store, Path(tmp) / "vendor.db")
        policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Vendor")
        endpoint = Endpoint(Identity(os.urandom(32)), store=vstore, policy=policy, limits=LIMITS,
                            name="Vendor")  # fmt: skip
        vendor_s = 0.0
        handle: Callable[..., Awaitable[Response]] = endpoint.handle_inbox

        async def timed(data: bytes, *, client: str = "") -> Response:
            nonlocal vendor_s
            t0 = time.process_time()
            try:
                return await handle(data, client=client)
            finally:
                vendor_s += time.process_time() - t0

        endpoint.handle_inbox = timed  # type: ignore[method-assign]
        transport = MemoryTransport()
        transport.add(URL, endpoint)
        # the agent's store as `vrm` opens it (inline commits on SQLite, as bench/e2e.py)
        astore = await open_store(agent_store, Path(tmp) / "agent.db", inline=True)
        agent = await Agent.open(astore, os.urandom(32), client=transport)
        try:
            if (await agent.connect(URL)).status != "accepted":
                raise RuntimeError("the vendor did not accept the terms")
            expires = int(time.time() * 1000) + YEAR_MS

            async def share() -> None:
                d = await agent.share(URL, FIELDS, purposes=["delivery"],
                                      categories=["contact"], expires_ms=expires)  # fmt: skip
                if not d.confirmed:
                    raise RuntimeError(f"a share was not confirmed: {d.status} {d.error}")

            for _ in range(warm):
                await share()
            vendor_s = 0.0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(m):
                await share()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        finally:
            await agent.close()
            await astore.close()
            await vstore.close()
    return {"agent": round((cpu - vendor_s) / m * 1e6, 1), "vendor": round(vendor_s / m * 1e6, 1),
            "wall": round(wall / m * 1e6, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent-store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--vendor-store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--m", type=int, default=400, help="timed shares")
    parser.add_argument("--warm", type=int, default=20, help="untimed shares first")
    parser.add_argument("--floor-rounds", type=int, default=1000,
                        help="calls of each libsodium function per timing of the floor")
    args = parser.parse_args()
    us = asyncio.run(measure(args.agent_store, args.vendor_store, args.m, args.warm))
    floor = floor_us("share", args.floor_rounds)
    result = {
        "agent_store": args.agent_store, "vendor_store": args.vendor_store, "m": args.m,
        "cpu_us": {"vendor": us["vendor"], "agent": us["agent"]}, "floor_us": floor,
        "vendor_floor_ratio": round(us["vendor"] / floor["vendor"], 2),
        "agent_floor_ratio": round(us["agent"] / floor["agent"], 2),
        "wall_us": us["wall"],
    }  # fmt: skip
    print(f"{args.m} shares, agent on {args.agent_store}, vendor on {args.vendor_store}, no HTTP: "
          f"agent {us['agent']:.0f} us, vendor {us['vendor']:.0f} us CPU per share "
          f"(floors {floor['agent']:.0f} / {floor['vendor']:.0f} us)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
