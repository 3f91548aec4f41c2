"""Codec benchmark: our encode+sign and verify+decode against raw PyNaCl on the same bytes.

Run: ``.venv/bin/python bench/codec.py [--rounds N] [--number N] [--batch N]``

Baselines, measured in the same run:
- sign:   ``nacl.signing.SigningKey.sign(payload)`` where payload is exactly the bytes our
          envelope signs (context ‖ header bytes);
- verify: ``nacl.signing.VerifyKey.verify(payload, signature)`` on the same payload.
Ours:
- sign:   ``sign_message(body, ...)`` — encode the body, hash it, encode the header, sign,
          build the envelope;
- verify: ``open_envelope(envelope, ...)`` — strict decode of envelope and header, every header
          rule, the signature, the body hash, strict decode and validation of the body.
Three message types are measured: a receipt (the most frequent message), a terms.offer with
three terms, and a data.share. Every call encodes, hashes, signs or verifies and decodes afresh;
what the library keeps across calls is what it keeps in a live process too: term references —
decoded ones by their encoding, the encodings of those it signs — alone and as lists, never a
message, a header or a body.

Measurement: times are this thread's CPU time (``time.thread_time``), so time the scheduler
gives to other processes on a shared machine is not counted. Each round times baseline and ours
in short interleaved batches (in the order A B B A …, so linear drift hits both alike) and
yields one ratio ours/baseline from the same stretch of time. The ratio reported is the median of
the rounds' ratios; the µs figures are the medians of the rounds' mean times per operation.
The last line is one JSON object with per-type figures; its top-level ``sign_ratio`` and
``verify_ratio`` are the worst over the types. Targets: both ≤ 1.2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import timeit
from collections.abc import Callable

from nacl.signing import SigningKey, VerifyKey

from vrmproto import (
    Body,
    Context,
    DataShare,
    FieldsContent,
    Identity,
    MasterSeed,
    Receipt,
    TermRef,
    TermsOffer,
    latest,
    open_envelope,
    seal_content,
    sign_message,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--number", type=int, default=3000, help="calls per side per round")
    parser.add_argument("--batch", type=int, default=250, help="calls per interleaved batch")
    args = parser.parse_args()

    vendor = Identity(bytes([1]) * 32)
    customer = MasterSeed(bytes(range(32))).pairwise(vendor.public_key)
    thread, now = bytes(range(16)), 1_800_000_000_000
    offer = TermsOffer(
        terms=(
            TermRef.of(latest("vrm.no-tracking")),
            TermRef.of(latest("vrm.no-third-party")),
            TermRef.of(latest("vrm.delete-after"), days=30),
        ),
        enc_key=customer.enc_public_key,
        note="Please don't track me outside your own site.",
    )
    share_id = bytes(range(40, 56))
    sealed = seal_content(
        FieldsContent(fields={"email": "doc@example.org", "phone": "+1 555 0100"}),
        identity=customer,
        recipient=vendor.public_key,
        recipient_enc_key=vendor.enc_public_key,
        msg_id=share_id,
    )
    bodies: dict[str, Body] = {
        "receipt": Receipt(ack=bytes(32)),
        "terms.offer": offer,
        "data.share": DataShare(
            agreement=bytes(32), purposes=(2,), categories=(2,), expires=now + 10**9,
            sealed=sealed,
        ),
    }
    results: dict[str, object] = {}
    worst_sign = worst_verify = 0.0
    for name, body in bodies.items():
        sign_us, verify_us, size = measure(
            body, signer=customer, vendor=vendor, thread=thread, now=now, args=args
        )
        s_ratio, v_ratio = sign_us["ratio"], verify_us["ratio"]
        worst_sign, worst_verify = max(worst_sign, s_ratio), max(worst_verify, v_ratio)
        print(
            f"{name:12s} {size:5d} B  sign {sign_us['ours']:6.2f} vs {sign_us['baseline']:6.2f}"
            f" µs (x{s_ratio:.3f})   verify {verify_us['ours']:6.2f} vs"
            f" {verify_us['baseline']:6.2f} µs (x{v_ratio:.3f})"
        )
        results[name] = {
            "envelope_bytes": size,
            "sign_ours_us": round(sign_us["ours"], 2),
            "sign_baseline_us": round(sign_us["baseline"], 2),
            "verify_ours_us": round(verify_us["ours"], 2),
            "verify_baseline_us": round(verify_us["baseline"], 2),
            "sign_ratio": round(s_ratio, 3),
            "verify_ratio": round(v_ratio, 3),
        }
    results["sign_ratio"] = round(worst_sign, 3)  # the worst over the message types
    results["verify_ratio"] = round(worst_verify, 3)
    print(json.dumps(results))


def measure(
    body: Body,
    *,
    signer: Identity,
    vendor: Identity,
    thread: bytes,
    now: int,
    args: argparse.Namespace,
) -> tuple[dict[str, float], dict[str, float], int]:
    """Median µs/op of ours and PyNaCl, and median paired ratio, for signing and verifying."""
    msg_id = bytes(range(40, 56))
    msg = sign_message(
        body, identity=signer, recipient=vendor.public_key, thread=thread, prev=None,
        now=now, msg_id=msg_id,
    )
    payload = Context.MESSAGE + msg.hdr_bytes
    sk = SigningKey(signer.seed)  # any key: signing cost does not depend on it
    vk = VerifyKey(signer.public_key)
    recipients = (vendor.public_key,)
    later = now + 1000

    def ours_sign() -> object:
        return sign_message(
            body, identity=signer, recipient=vendor.public_key, thread=thread, prev=None,
            now=now, msg_id=msg_id,
        )

    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "sign": (lambda: sk.sign(payload), ours_sign),
        "verify": (
            lambda: vk.verify(payload, msg.signature),
            lambda: open_envelope(msg.envelope, now=later, recipients=recipients),
        ),
    }
    for baseline, ours in pairs.values():  # warm up (and fill the caches, as in a live server)
        timeit.timeit(baseline, number=200)
        timeit.timeit(ours, number=200)
    batches = max(1, args.number // args.batch)
    figures: dict[str, dict[str, float]] = {}
    for op, (baseline, ours) in pairs.items():
        base_timer = timeit.Timer(baseline, timer=time.thread_time)
        ours_timer = timeit.Timer(ours, timer=time.thread_time)
        base_means: list[float] = []
        ours_means: list[float] = []
        ratios: list[float] = []
        for _ in range(args.rounds):
            t_base = t_ours = 0.0
            for i in range(batches):  # A B, B A, A B, …
                if i % 2 == 0:
                    t_base += base_timer.timeit(number=args.batch)
                    t_ours += ours_timer.timeit(number=args.batch)
                else:
                    t_ours += ours_timer.timeit(number=args.batch)
                    t_base += base_timer.timeit(number=args.batch)
            calls = batches * args.batch
            base_means.append(t_base / calls)
            ours_means.append(t_ours / calls)
            ratios.append(t_ours / t_base)
        figures[op] = {
            "ours": statistics.median(ours_means) * 1e6,
            "baseline": statistics.median(base_means) * 1e6,
            "ratio": statistics.median(ratios),
        }
    return figures["sign"], figures["verify"], len(msg.envelope)


if __name__ == "__main__":
    main()
