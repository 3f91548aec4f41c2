"""Strict decoding, limits, replay, idempotency, time window and recipient cases (§3.3, §4.5,
§10, §12)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from vrmproto import _codec
from vrmproto._binding import CONTENT_TYPE
from vrmproto._keys import Identity, sha256
from vrmproto.testing._case import Info, Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    envelope_bytes,
    expect_problem,
    expect_receipt,
    header_of,
    identity,
    now_ms,
    offer_body,
    post,
    raw_map,
    resign_header,
    sign,
    target,
)

M, S, INFO = Level.MUST, Level.SHOULD, Level.INFO


async def _still_serving(ctx: CaseContext) -> bool:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    answer = await post(ctx, msg.envelope, recipient_key=who.public_key)
    return answer.status == 200 and answer.receipt is not None


# -- size, nesting and encoding (§3.3, §10) -------------------------------------------------------


@case(id="WIRE-001", clause="§10-1", level=M, tags=("wire", "limits"),
      requirement="A receiver MUST refuse a body larger than its advertised max_envelope_bytes, "
      "and keep serving.",
      accepts="HTTP 413 or problem too_large; the next valid message gets a receipt")
async def oversize(ctx: CaseContext) -> None:
    size = 2 * target(ctx).limits.max_envelope_bytes
    answer = await post(ctx, b"\x91" + b"\xc6" + size.to_bytes(4, "big") + bytes(size))
    expect_problem(ctx, answer, ["too_large"], statuses=[413])
    serving = await _still_serving(ctx)
    ctx.expect(serving, expected="a receipt afterwards",
               actual="a receipt" if serving else "the endpoint stopped answering valid messages")


@case(id="WIRE-002", clause="§3.3-6", level=M, tags=("wire", "limits"),
      requirement="Input nested deeper than the limit MUST be refused as malformed, quickly.",
      accepts="problem malformed (or invalid_field) within 1 s")
async def deep_nesting(ctx: CaseContext) -> None:
    started = time.monotonic()
    answer = await post(ctx, b"\x91" * 1000 + b"\xc0")
    expect_problem(ctx, answer, ["malformed", "invalid_field"])
    ctx.expect(time.monotonic() - started < 1.0, expected="answered within 1 s",
               actual=f"{time.monotonic() - started:.2f} s")


@case(id="WIRE-003", clause="§3.3-2", level=M, tags=("wire", "limits"),
      requirement="A declared length larger than the input MUST be refused as malformed without "
      "allocating it.",
      accepts="problem malformed for array32, map32, bin32 and str32 headers claiming 2^32-1")
async def huge_declared_lengths(ctx: CaseContext) -> None:
    for prefix in (b"\xdd", b"\xdf", b"\xc6", b"\xdb"):
        answer = await post(ctx, prefix + b"\xff\xff\xff\xff" + b"\x00" * 8)
        expect_problem(ctx, answer, ["malformed"])


@case(id="WIRE-004", clause="§3.3-7", level=M, tags=("wire", "canonical"),
      requirement="A map with a duplicate key MUST be refused as malformed, even when signed.",
      accepts="problem malformed")
async def duplicate_header_key(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    h = header_of(msg)
    pairs = sorted(h.items())
    pairs.insert(1, ("created", h["created"] + 1))
    hdr, sig = resign_header({}, who, raw=raw_map(pairs))
    expect_problem(ctx, await post(ctx, envelope_bytes(hdr, sig, msg.body_bytes)),
                   ["malformed"])


@case(id="WIRE-005", clause="§3.3-2", level=M, tags=("wire", "canonical"),
      requirement="Bytes after the encoded item MUST be refused as malformed.",
      accepts="problem malformed")
async def trailing_bytes(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    expect_problem(ctx, await post(ctx, msg.envelope + b"\x00"), ["malformed"])


@case(id="WIRE-006", clause="§3.3-5", level=M, tags=("wire", "canonical"),
      requirement="Text that is not valid UTF-8 MUST be refused as malformed, even when signed.",
      accepts="problem malformed")
async def bad_utf8(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    good = msg.hdr_bytes
    i = good.index(b"terms.offer")
    raw = good[:i] + b"terms.\xffffer" + good[i + len(b"terms.offer"):]
    hdr, sig = resign_header({}, who, raw=raw)
    expect_problem(ctx, await post(ctx, envelope_bytes(hdr, sig, msg.body_bytes)),
                   ["malformed"])


@case(id="WIRE-007", clause="§3.3-7", level=M, tags=("wire", "canonical"),
      requirement="An integer in a longer form than needed (or keys out of order) MUST be "
      "refused: input that does not re-encode to the same bytes is malformed.",
      accepts="problem malformed for a non-minimal integer and for unsorted keys")
async def non_canonical(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    h = header_of(msg)
    pairs = sorted(h.items())
    # 'v': 1 written as uint64
    fixed = raw_map([p for p in pairs if p[0] != "v"])
    long_v = bytes([fixed[0] + 1]) + fixed[1:] + b"\xa1v" + b"\xcf" + (1).to_bytes(8, "big")
    unsorted = raw_map(list(reversed(pairs)))
    for raw in (long_v, unsorted):
        hdr, sig = resign_header({}, who, raw=raw)
        expect_problem(ctx, await post(ctx, envelope_bytes(hdr, sig, msg.body_bytes)),
                       ["malformed"])


@case(id="WIRE-008", clause="§12.2-1", level=M, tags=("wire", "http"),
      requirement="The inbox MUST refuse a content type other than "
      "application/vnd.vrmproto+msgpack, with a 4xx and never a 5xx.",
      accepts="HTTP 415 or problem unsupported_media_type")
async def wrong_content_type(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    answer = await post(ctx, msg.envelope, content_type="application/json")
    expect_problem(ctx, answer, ["unsupported_media_type"], statuses=[415])


@case(id="WIRE-009", clause="§5.1-3", level=S, tags=("wire", "extensibility"),
      requirement="A receiver SHOULD accept a body with an unknown extra field (and keep the "
      "exact bytes).",
      accepts="HTTP 200 with a receipt")
async def unknown_body_field(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    body = _codec.decode(msg.body_bytes or b"")
    body["x_loyalty_tier"] = "gold"
    raw = _codec.encode(body)
    h = header_of(msg)
    h["body"] = sha256(raw)
    hdr, sig = resign_header(h, who)
    answer = await post(ctx, envelope_bytes(hdr, sig, raw), recipient_key=who.public_key)
    ctx.expect(answer.status == 200 and answer.receipt is not None,
               expected="a receipt", actual=answer.describe())


# -- replay and idempotency (§4.5, §12) ----------------------------------------------------------


@case(id="RPL-001", clause="§12.4-1", level=M, tags=("replay", "idempotency"),
      requirement="The same message sent again MUST get the identical stored answer.",
      accepts="two HTTP 200 responses with byte-identical bodies")
async def same_bytes_again(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    first = await post(ctx, msg.envelope, recipient_key=who.public_key)
    second = await post(ctx, msg.envelope, recipient_key=who.public_key)
    expect_receipt(ctx, first, msg)
    ctx.expect(second.status == 200
               and second.exchange.response_body == first.exchange.response_body,
               expected="the identical response", actual=second.describe())


@case(id="RPL-002", clause="§12.4-2", level=M, tags=("replay", "idempotency"),
      requirement="Another message reusing a sender's message id MUST be refused.",
      accepts="problem id_conflict")
async def same_id_other_bytes(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg_id = ctx.rng.randbytes(16)
    first = sign(ctx, offer_body(ctx, who), who, msg_id=msg_id)
    expect_receipt(ctx, await post(ctx, first.envelope, recipient_key=who.public_key), first)
    second = sign(ctx, offer_body(ctx, who), who, msg_id=msg_id, thread=first.thread)
    expect_problem(ctx, await post(ctx, second.envelope), ["id_conflict"])


@case(id="RPL-003", clause="§12.4-3", level=M, tags=("replay", "idempotency", "concurrency"),
      requirement="Concurrent identical sends MUST be answered identically and stored once.",
      accepts="ten HTTP 200 with identical bodies")
async def ten_concurrent(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    answers = await asyncio.gather(*(post(ctx, msg.envelope) for _ in range(10)))
    bodies = {a.exchange.response_body for a in answers}
    ok = all(a.status == 200 for a in answers) and len(bodies) == 1
    ctx.expect(ok, expected="10 × HTTP 200, one distinct body",
               actual=f"statuses {[a.status for a in answers]}, {len(bodies)} distinct bodies")
    expect_receipt(ctx, answers[0], msg)


# -- time window and recipient (§4.5) -------------------------------------------------------------


@case(id="TIME-001", clause="§4.5-3", level=M, tags=("time", "replay"),
      requirement="A message past its expiry MUST be refused.", accepts="problem expired")
async def expired(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who, now=now_ms() - 20_000, lifetime_ms=10_000)
    expect_problem(ctx, await post(ctx, msg.envelope), ["expired"])


@case(id="TIME-002", clause="§4.5-4", level=M, tags=("time",),
      requirement="A message created further in the future than the allowed clock skew MUST be "
      "refused; one just within it MUST be accepted.",
      accepts="problem clock_skew at skew + 5 s; a receipt at skew − 5 s")
async def clock_skew(ctx: CaseContext) -> None:
    skew = target(ctx).limits.max_clock_skew_ms
    who = identity(ctx)
    late = sign(ctx, offer_body(ctx, who), who, now=now_ms() + skew + 5_000)
    expect_problem(ctx, await post(ctx, late.envelope), ["clock_skew"])
    ok = sign(ctx, offer_body(ctx, who), who, now=now_ms() + skew - 5_000)
    expect_receipt(ctx, await post(ctx, ok.envelope, recipient_key=who.public_key), ok)


@case(id="RCPT-001", clause="§4.5-2", level=M, tags=("recipient",),
      requirement="A message addressed to another key MUST be refused.",
      accepts="problem wrong_recipient")
async def wrong_recipient(ctx: CaseContext) -> None:
    who = identity(ctx)
    other = Identity(ctx.rng.randbytes(32)).public_key
    msg = sign(ctx, offer_body(ctx, who), who, to=other)
    expect_problem(ctx, await post(ctx, msg.envelope), ["wrong_recipient"])


# -- load (§12) ------------------------------------------------------------------------------------


@case(id="RATE-001", clause="§12.6-1", level=S, tags=("rate", "limits"),
      requirement="Under a flood from one sender a receiver SHOULD answer 429 with Retry-After, "
      "and MUST NOT answer 5xx.",
      accepts="at least one HTTP 429 carrying Retry-After; no 5xx")
async def flood(ctx: CaseContext) -> None:
    quota = target(ctx).limits.rate_per_sender_per_minute
    who = identity(ctx)
    msgs = [sign(ctx, offer_body(ctx, who), who) for _ in range(min(2 * quota + 10, 2000))]
    sem = asyncio.Semaphore(32)

    async def one(env: bytes) -> tuple[int | None, str | None]:
        async with sem:
            ex = await ctx.post(target(ctx).inbox, env, content_type=CONTENT_TYPE)
            return ex.status, ex.header("Retry-After")

    results = await asyncio.gather(*(one(m.envelope) for m in msgs))
    fives = [s for s, _ in results if s is not None and s >= 500]
    limited = [(s, r) for s, r in results if s == 429]
    ctx.expect(not fives and any(r for _, r in limited),
               expected="429 with Retry-After, no 5xx",
               actual=f"{len(limited)} × 429, {len(fives)} × 5xx of {len(results)}")


@case(id="ROB-001", clause="§12.2-3", level=INFO, tags=("robustness",),
      requirement="Slow clients (trickling bodies) should not delay other clients.",
      accepts="informational: latency of a normal request while 20 slow uploads are open")
async def slow_clients(ctx: CaseContext) -> Info:
    t = target(ctx)
    parts = urlsplit(t.inbox)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80

    async def trickle(opened: asyncio.Event) -> None:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            opened.set()
            return
        writer.write(
            f"POST {parts.path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {CONTENT_TYPE}\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
        )
        try:
            await writer.drain()
            opened.set()
            for _ in range(3):  # a slow client: one byte every 300 ms
                writer.write(b"\x00")
                await writer.drain()
                await asyncio.sleep(0.3)
        except OSError:
            pass
        writer.close()

    events = [asyncio.Event() for _ in range(20)]
    tasks = [asyncio.create_task(trickle(e)) for e in events]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout=10)
    started = time.monotonic()
    ok = await _still_serving(ctx)
    elapsed = time.monotonic() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return Info(f"normal request took {elapsed * 1000:.0f} ms with 20 slow uploads open "
                f"({'receipt' if ok else 'no receipt'})", {"latency_ms": elapsed * 1000})
