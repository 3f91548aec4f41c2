"""Where one inbox step spends its time: the vendor endpoint's work on one terms.offer, by phase.

``bench/inbox.py`` measures the endpoint over HTTP against a bare baseline; this script explains
the gap. It runs the same steps as :meth:`vrmproto.server.Endpoint.handle_inbox` one at a time,
in this process, with no HTTP and no storage (``MemoryStore``), the garbage collector off, and
times each phase over ``--n`` first-contact offers:

- ``open_envelope``: decode under the canonical rules and verify the signature (§3, §4.5);
- ``receive``: the relationship engine, including the first-contact check that the sender's key
  lies in the prime-order subgroup (§2.1-2);
- ``send receipt``: sign the receipt and log it (§5.6.1, §8.2);
- ``to_state``: the relationship's state, as stored;
- ``handle_inbox``: the whole step, serially.

Beside each phase, the raw libsodium call it contains, so the last line's JSON says how much
of a step is the cryptography the protocol requires (``crypto_share``) and how much is Python.

``--batches 1,8,32`` (default): then the durable commit, which the endpoint over HTTP adds on
its store's writer thread. The Commits the whole steps made are written again into a fresh
SQLiteStore (WAL, ``synchronous=FULL``), so many at once that the writer takes them in groups of
each size, and the CPU of the store's threads (from ``/proc``, Linux) is divided by the
messages: ``store_us`` per size. With ``us = per_commit + per_transaction / size`` fitted to
them, ``per_transaction_us`` is what each group commit costs whatever it holds (BEGIN, COMMIT,
the fsync, the WAL pages they share, the wake-ups) and ``per_commit_us`` what each message's own
rows cost: how far larger groups can take the endpoint, and which of the two to cut.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from vrmproto import Identity, Relationship, Role, TermRef, TermsOffer, latest, open_envelope
from vrmproto._keys import Context, check_key, verify
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import Commit, MemoryStore, SQLiteStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbox import thread_cpu_s  # the sibling bench's /proc reader

_T = TypeVar("_T")
VENDOR = Identity(bytes(range(32)))
TERMS = ("vrm.no-tracking",)


class ReviewPolicy(ReferencePolicy):
    """Leaves every offer open: the endpoint only receipts it, as in bench/inbox.py."""

    async def on_terms_offer(self, rel: Any, msg: Any) -> None:  # type: ignore[override]
        return None


class RecordingStore(MemoryStore):
    """A MemoryStore that also keeps every Commit it is given, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: list[Commit] = []

    async def commit(self, c: Commit, **kw: Any) -> None:
        self.commits.append(c)
        await super().commit(c, **kw)


async def store_us(commits: list[Commit], size: int) -> tuple[float, int] | None:
    """CPU microseconds per Commit of a fresh SQLiteStore's own threads writing ``commits``,
    ``size`` at a time (each group awaited whole before the next: one transaction each), and
    the transactions it made; None where ``/proc`` does not tell."""
    with tempfile.TemporaryDirectory() as tmp:
        store = await SQLiteStore.open(Path(tmp) / "vendor.db")
        try:
            before = thread_cpu_s(os.getpid())
            for i in range(0, len(commits), size):
                await asyncio.gather(*(store.commit(c) for c in commits[i : i + size]))
            after = thread_cpu_s(os.getpid())
            transactions = store.stats.transactions
        finally:
            await store.close()
    if before is None or after is None:
        return None
    main = threading.get_native_id()
    spent = sum(t - before.get(tid, 0.0) for tid, t in after.items() if tid != main)
    return spent / len(commits) * 1e6, transactions


def fit(points: dict[int, float]) -> tuple[float, float]:
    """``(per_commit, per_transaction)`` of ``us = per_commit + per_transaction / size``, by
    least squares over ``points`` (size -> us)."""
    xs, ys = [1 / size for size in points], list(points.values())
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return my - slope * mx, slope


def offers(n: int, now: int) -> list[bytes]:
    terms = tuple(TermRef.of(latest(t)) for t in TERMS)
    out = []
    for _ in range(n):
        me = Identity(os.urandom(32))
        rel = Relationship(role=Role.CUSTOMER, identity=me, thread=os.urandom(16),
                           peer_key=VENDOR.public_key)  # fmt: skip
        sent = rel.send(TermsOffer(terms=terms, enc_key=me.enc_public_key), now=now,
                        msg_id=os.urandom(16))  # fmt: skip
        out.append(sent.message.envelope)
    return out


def timed(f: Callable[[Any], _T], items: Sequence[Any]) -> tuple[float, list[_T]]:
    """Microseconds per item of ``f`` over ``items``, and its results."""
    start = time.perf_counter_ns()
    results = [f(x) for x in items]
    return (time.perf_counter_ns() - start) / len(items) / 1000, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="offers per phase (default 3000)")
    parser.add_argument("--batches", default="1,8,32", metavar="SIZES",
                        help="group sizes of the durable commit ('' to skip)")  # fmt: skip
    args = parser.parse_args()
    sizes = [int(x) for x in args.batches.split(",") if x]
    now = time.time_ns() // 1_000_000
    envs = offers(args.n, now)
    gc.collect()
    gc.disable()
    us: dict[str, float] = {}
    us["open_envelope"], msgs = timed(
        lambda e: open_envelope(e, now=now, recipients=(VENDOR.public_key,)), envs
    )
    us["  verify (libsodium)"], _ = timed(
        lambda m: verify(Context.MESSAGE, m.hdr_bytes, m.signature, m.sender), msgs
    )
    rels = [Relationship(role=Role.VENDOR, identity=VENDOR, thread=m.thread) for m in msgs]
    pairs = list(zip(rels, msgs, strict=True))
    us["receive"], _ = timed(lambda p: p[0].receive(p[1], now=now), pairs)
    us["  subgroup check (libsodium)"], _ = timed(lambda m: check_key(m.sender), msgs)
    ids = [os.urandom(16) for _ in msgs]
    steps = list(zip(rels, msgs, ids, strict=True))
    us["send receipt"], _ = timed(lambda p: p[0].send(p[1].receipt(), now=now, msg_id=p[2]), steps)
    us["  sign (libsodium)"], _ = timed(lambda m: VENDOR.sign(Context.MESSAGE, m.hdr_bytes), msgs)
    us["to_state"], _ = timed(lambda r: r.to_state(), rels)

    recording = RecordingStore()
    endpoint = Endpoint(VENDOR, store=recording, policy=ReviewPolicy(accepts_terms=TERMS))
    fresh = offers(args.n, now)

    async def whole() -> float:
        start = time.perf_counter_ns()
        for e in fresh:
            response = await endpoint.handle_inbox(e)
            assert response.status == 200, response
        return (time.perf_counter_ns() - start) / len(fresh) / 1000

    us["handle_inbox (whole step)"] = asyncio.run(whole())
    gc.enable()
    stored: dict[int, float] = {}
    transactions: dict[int, int] = {}
    lines = []
    for size in sizes:
        got = asyncio.run(store_us(recording.commits, size))
        if got is not None:
            stored[size], transactions[size] = got
            lines.append(f"durable commit, groups of {size:3d}: {got[0]:7.1f} us per message on "
                         f"the store's threads ({got[1]} transactions)")  # fmt: skip
    per_commit, per_transaction = fit(stored) if len(stored) >= 2 else (None, None)
    if per_commit is not None and per_transaction is not None:
        lines.append(f"durable commit, fitted: {per_transaction:.0f} us per transaction + "
                     f"{per_commit:.0f} us per message")  # fmt: skip
    crypto = sum(v for k, v in us.items() if "libsodium" in k)
    step = us["handle_inbox (whole step)"]
    for name, value in us.items():
        print(f"{name:32s} {value:7.1f} us")
    print(f"cryptography the protocol requires: {crypto:.1f} us of {step:.1f} us "
          f"({crypto / step:.0%}); the rest is Python")  # fmt: skip
    for line in lines:
        print(line)
    print(json.dumps({
        "phases_us": {k.strip(): round(v, 1) for k, v in us.items()},
        "crypto_us": round(crypto, 1), "step_us": round(step, 1),
        "crypto_share": round(crypto / step, 3), "n": args.n,
        "store_us": {str(k): round(v, 1) for k, v in stored.items()},
        "store_transactions": {str(k): v for k, v in transactions.items()},
        "per_transaction_us": None if per_transaction is None else round(per_transaction, 1),
        "per_commit_us": None if per_commit is None else round(per_commit, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
