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
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from vrmproto import Identity, Relationship, Role, TermRef, TermsOffer, latest, open_envelope
from vrmproto._keys import Context, check_key, verify
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore

_T = TypeVar("_T")
VENDOR = Identity(bytes(range(32)))
TERMS = ("vrm.no-tracking",)


class ReviewPolicy(ReferencePolicy):
    """Leaves every offer open: the endpoint only receipts it, as in bench/inbox.py."""

    async def on_terms_offer(self, rel: Any, msg: Any) -> None:  # type: ignore[override]
        return None


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
    args = parser.parse_args()
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

    endpoint = Endpoint(VENDOR, store=MemoryStore(), policy=ReviewPolicy(accepts_terms=TERMS))
    fresh = offers(args.n, now)

    async def whole() -> float:
        start = time.perf_counter_ns()
        for e in fresh:
            response = await endpoint.handle_inbox(e)
            assert response.status == 200, response
        return (time.perf_counter_ns() - start) / len(fresh) / 1000

    us["handle_inbox (whole step)"] = asyncio.run(whole())
    gc.enable()
    crypto = sum(v for k, v in us.items() if "libsodium" in k)
    step = us["handle_inbox (whole step)"]
    for name, value in us.items():
        print(f"{name:32s} {value:7.1f} us")
    print(f"cryptography the protocol requires: {crypto:.1f} us of {step:.1f} us "
          f"({crypto / step:.0%}); the rest is Python")  # fmt: skip
    print(json.dumps({
        "phases_us": {k.strip(): round(v, 1) for k, v in us.items()},
        "crypto_us": round(crypto, 1), "step_us": round(step, 1),
        "crypto_share": round(crypto / step, 3), "n": args.n,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
