"""What the inline SQLite store's fsync hand-off costs, without HTTP or a vendor (#12).

``--stores`` inline :class:`~vrmproto.store.SQLiteStore`\\ s in this process (16: the customers
of ``bench/e2e.py --agent-store sqlite``), each on its own file, each running ``--m`` steps one
after another, all stores at once on one event loop. A step is what an agent's ``data.share``
does to its store: a durable Commit (a relationship row with a ``--blob`` byte state, a history
entry, an outbox row's worth of meta), then ``--work-us`` of Python on the loop's thread
holding the GIL (the agent's own work: crypto, HTTP), then a lazy Commit (``durable=False``).

The last line is JSON: ``steps_per_s``; ``cpu_us`` per step — ``total`` (the process),
``loop`` (the event loop's thread, the work included) and ``other`` (every other thread: the
stores' writer threads, the syncer); ``syncs`` (fsyncs of the WAL per step).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from vrmproto.store import Commit, SQLiteStore
from vrmproto.testing.store_contract import T1, entry, rel


def thread_cpu_s() -> dict[int, float]:
    """CPU seconds of each thread of this process so far, from /proc."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def spin(us: float) -> None:
    """Hold the GIL for about ``us`` microseconds of CPU, as the agent's own work does."""
    end = time.thread_time() + us / 1e6
    while time.thread_time() < end:
        pass


async def one_store(store: SQLiteStore, m: int, blob: int, work_us: float) -> None:
    state = rel(T1)
    for i in range(m):
        record = rel(T1, state=os.urandom(blob // 2).hex()) if blob else state
        await store.commit(Commit(relationships=(record,), history=(entry(T1, i),),
                                  meta=((f"out{i % 4}", os.urandom(300)),)))  # fmt: skip
        spin(work_us)
        await store.commit(Commit(meta=((f"closed{i % 4}", b"1"),)), durable=False)


async def main(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="vrm-inline-sync-") as tmp:
        stores = [await SQLiteStore.open(Path(tmp) / f"a{i}.db", inline=True)
                  for i in range(args.stores)]  # fmt: skip
        try:
            for s in stores:
                await s.commit(Commit(relationships=(rel(T1),)))
            syncs0 = sum(s.stats.syncs for s in stores)
            me, t0, cpu0 = os.getpid(), time.perf_counter(), thread_cpu_s()
            await asyncio.gather(*(one_store(s, args.m, args.blob, args.work_us)
                                   for s in stores))  # fmt: skip
            elapsed, cpu1 = time.perf_counter() - t0, thread_cpu_s()
            syncs = sum(s.stats.syncs for s in stores) - syncs0
        finally:
            for s in stores:
                await s.close()
    n = args.stores * args.m
    loop_s = cpu1.get(me, 0.0) - cpu0.get(me, 0.0)
    total_s = sum(cpu1.values()) - sum(v for k, v in cpu0.items() if k in cpu1)
    return {"stores": args.stores, "m": args.m, "work_us": args.work_us,
            "steps_per_s": round(n / elapsed, 1),
            "cpu_us": {"total": round(total_s / n * 1e6, 1), "loop": round(loop_s / n * 1e6, 1),
                       "other": round((total_s - loop_s) / n * 1e6, 1)},
            "syncs": round(syncs / n, 3)}  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=16)
    parser.add_argument("--m", type=int, default=200, help="steps per store")
    parser.add_argument("--blob", type=int, default=5000, help="bytes of relationship state")
    parser.add_argument("--work-us", type=float, default=400.0,
                        help="Python work per step on the loop's thread")  # fmt: skip
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
