"""Strict decoding, limits, replay, idempotency, time window and recipient cases (§3.3, §4.5,
§10, §12)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import msgpack

from vrmproto import _codec
from vrmproto._binding import CONTENT_TYPE
from vrmproto._errors import ProtocolError
from vrmproto._keys import Identity, sha256
from vrmproto.testing._case import Info, Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    Answer,
    Customer,
    buildable,
    buildable_depth,
    envelope_bytes,
    expect_history,
    expect_problem,
    expect_receipt,
    forged,
    header_of,
    identity,
    new_id,
    note_requests,
    now_ms,
    offer_body,
    open_stream,
    post,
    raw_map,
    raw_request,
    read_answer,
    recent_requests,
    resign_header,
    share_body,
    sign,
    signed_offer,
    target,
)

M, S, INFO = Level.MUST, Level.SHOULD, Level.INFO
MAX_FLOOD = 20_000  # the most requests a rate-limit case sends


async def _still_serving(ctx: CaseContext) -> bool:
    who, msg = signed_offer(ctx)
    answer = await post(ctx, msg.envelope, recipient_key=who.public_key)
    return answer.status == 200 and answer.receipt is not None


# -- size, nesting and encoding (§3.3, §10) -------------------------------------------------------


@case(id="WIRE-001", clause="§10-1", level=M, tags=("wire", "limits"),
      covers=("§10-12", "§12.9-2"),
      requirement="A receiver MUST refuse a body larger than its advertised max_envelope_bytes, "
      "and keep serving.",
      accepts="HTTP 413 or problem too_large; the next valid message gets a receipt")
async def oversize(ctx: CaseContext) -> None:
    size = 2 * target(ctx).limits.max_envelope_bytes
    buildable(ctx, size, limit="max_envelope_bytes")
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


@case(id="WIRE-003", clause="§3.3-1", level=M, tags=("wire", "limits"), covers=("§11.8-1",),
      requirement="A declared length larger than the input MUST be refused as malformed without "
      "allocating it.",
      accepts="problem malformed for array32, map32, bin32 and str32 headers claiming 2^32-1")
async def huge_declared_lengths(ctx: CaseContext) -> None:
    for prefix in (b"\xdd", b"\xdf", b"\xc6", b"\xdb"):
        answer = await post(ctx, prefix + b"\xff\xff\xff\xff" + b"\x00" * 8)
        expect_problem(ctx, answer, ["malformed"])


@case(id="WIRE-004", clause="§3.3-7", level=M, tags=("wire", "canonical"),
      covers=("§3.3-3", "§4.1-1"),
      requirement="A map with a duplicate key MUST be refused as malformed, even when signed.",
      accepts="problem malformed")
async def duplicate_header_key(ctx: CaseContext) -> None:
    who, msg = signed_offer(ctx)
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
    _, msg = signed_offer(ctx)
    expect_problem(ctx, await post(ctx, msg.envelope + b"\x00"), ["malformed"])


@case(id="WIRE-006", clause="§3.3-5", level=M, tags=("wire", "canonical"),
      requirement="Text that is not valid UTF-8 MUST be refused as malformed, even when signed.",
      accepts="problem malformed")
async def bad_utf8(ctx: CaseContext) -> None:
    who, msg = signed_offer(ctx)
    good = msg.hdr_bytes
    i = good.index(b"terms.offer")
    raw = good[:i] + b"terms.\xffffer" + good[i + len(b"terms.offer"):]
    hdr, sig = resign_header({}, who, raw=raw)
    expect_problem(ctx, await post(ctx, envelope_bytes(hdr, sig, msg.body_bytes)),
                   ["malformed"])


@case(id="WIRE-007", clause="§3.3-7", level=M, tags=("wire", "canonical"), covers=("§3.3-3",),
      requirement="An integer in a longer form than needed (or keys out of order) MUST be "
      "refused: input that does not re-encode to the same bytes is malformed.",
      accepts="problem malformed for a non-minimal integer and for unsorted keys")
async def non_canonical(ctx: CaseContext) -> None:
    who, msg = signed_offer(ctx)
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


@case(id="WIRE-008", clause="§12.2-3", level=M, tags=("wire", "http"),
      requirement="A receiver MUST answer a request whose Content-Type is missing or names "
      "another media type with 415 and the problem unsupported_media_type.",
      accepts="HTTP 415 with problem unsupported_media_type, for application/json and for no "
      "Content-Type")
async def wrong_content_type(ctx: CaseContext) -> None:
    _, msg = signed_offer(ctx)
    answer = await post(ctx, msg.envelope, content_type="application/json")
    expect_problem(ctx, answer, ["unsupported_media_type"])
    t = target(ctx)
    ex = await ctx.request("POST", t.inbox, body=msg.envelope)  # aiohttp adds no Content-Type
    expect_problem(ctx, read_answer(ex, t), ["unsupported_media_type"])


@case(id="WIRE-009", clause="§5.1-3", level=M, tags=("wire", "extensibility"),
      requirement="A receiver MUST ignore a body key this version does not define (and keep "
      "the exact bytes).",
      accepts="HTTP 200 with a receipt")
async def unknown_body_field(ctx: CaseContext) -> None:
    who = identity(ctx)
    body = offer_body(ctx, who).to_wire()
    body["x_loyalty_tier"] = "gold"
    env = forged(ctx, who, raw_body=_codec.encode(body))
    answer = await post(ctx, env, recipient_key=who.public_key)
    ctx.expect(answer.status == 200 and answer.receipt is not None,
               expected="a receipt", actual=answer.describe())


# -- replay and idempotency (§4.5, §12) ----------------------------------------------------------


@case(id="RPL-001", clause="§12.6-2", level=M, tags=("replay", "idempotency"),
      covers=("§4.4-4", "§4.4-3", "§12.6-1", "§8.1-1"),
      requirement="When a message arrives whose (from, id) is recorded with the same hash, the "
      "receiver MUST answer with the recorded response, byte for byte, and MUST NOT apply the "
      "message again.",
      accepts="two HTTP 200 responses with byte-identical bodies; the message once in the "
      "history")
async def same_bytes_again(ctx: CaseContext) -> None:
    c = Customer(ctx)
    msg, first = await c.send(offer_body(ctx, c.identity))
    second = await post(ctx, msg.envelope, recipient_key=c.identity.public_key)
    expect_receipt(ctx, first, msg)
    ctx.expect(second.status == 200
               and second.exchange.response_body == first.exchange.response_body,
               expected="the identical response", actual=second.describe())
    await expect_history(ctx, c)


@case(id="RPL-002", clause="§12.6-3", level=M, tags=("replay", "idempotency"),
      covers=("§4.4-4",),
      requirement="When a message arrives whose (from, id) is recorded with another message "
      "hash, the receiver MUST refuse it with 409 and id_conflict.",
      accepts="problem id_conflict")
async def same_id_other_bytes(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg_id = new_id(ctx)
    first = sign(ctx, offer_body(ctx, who), who, msg_id=msg_id)
    expect_receipt(ctx, await post(ctx, first.envelope, recipient_key=who.public_key), first)
    # another message under the same id: created one ms later, so its header always differs
    second = sign(ctx, offer_body(ctx, who), who, msg_id=msg_id, thread=first.thread,
                  now=first.header.created + 1)
    expect_problem(ctx, await post(ctx, second.envelope), ["id_conflict"])


@case(id="RPL-005", clause="§12.6-2", level=M, tags=("replay", "idempotency"),
      covers=("§4.4-4", "§8.1-1"),
      requirement="A replay of a later message of a relationship (not its opening) MUST be "
      "answered with the recorded response too: the replay is found before the chain or the "
      "state would refuse it.",
      accepts="for an accepted data.share sent again, byte for byte: HTTP 200 with the "
      "identical response body, and the share once in the history")
async def later_message_again(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body, msg_id = share_body(ctx, c, {"email": "again@example.org"})
    msg, first = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, first, msg)
    second = await post(ctx, msg.envelope, recipient_key=c.identity.public_key)
    ctx.expect(second.status == 200
               and second.exchange.response_body == first.exchange.response_body,
               expected="the identical response", actual=second.describe())
    await expect_history(ctx, c)


@case(id="RPL-006", clause="§12.6-3", level=M, tags=("replay", "idempotency"),
      covers=("§4.4-4",),
      requirement="Another message under a (from, id) already recorded MUST be refused with "
      "id_conflict, whatever else is wrong with it — also for a later message of a "
      "relationship, whose prev no longer links once the first is accepted.",
      accepts="problem id_conflict for a second data.share with the id and prev of an "
      "accepted one")
async def later_message_same_id(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    prev = c.rel.our_head
    body, msg_id = share_body(ctx, c, {"email": "first@example.org"})
    first, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, first)
    other, _ = share_body(ctx, c, {"email": "second@example.org"}, msg_id=msg_id)
    second = sign(ctx, other, c.identity, thread=c.rel.thread, prev=prev, msg_id=msg_id)
    expect_problem(ctx, await post(ctx, second.envelope), ["id_conflict"])


@case(id="RPL-003", clause="§12.6-4", level=M, tags=("replay", "idempotency", "concurrency"),
      covers=("§8.2-2",),
      requirement="Duplicates that arrive while the first delivery is still being processed "
      "MUST get the same answer: the message is applied once.",
      accepts="ten HTTP 200 with identical bodies; the message once in the history")
async def ten_concurrent(ctx: CaseContext) -> None:
    c = Customer(ctx)
    sent = c.rel.send(offer_body(ctx, c.identity), now=now_ms(), msg_id=new_id(ctx))
    msg = sent.message
    answers = await asyncio.gather(*(post(ctx, msg.envelope) for _ in range(10)))
    bodies = {a.exchange.response_body for a in answers}
    ok = all(a.status == 200 for a in answers) and len(bodies) == 1
    ctx.expect(ok, expected="10 × HTTP 200, one distinct body",
               actual=f"statuses {[a.status for a in answers]}, {len(bodies)} distinct bodies")
    expect_receipt(ctx, answers[0], msg)
    for reply in answers[0].replies:
        try:
            c.rel.receive(reply, now=now_ms())
        except ProtocolError as exc:
            ctx.fail(expected="replies that follow the rules of §5",
                     actual=f"reply {reply.type} breaks a rule: {exc}")
    await expect_history(ctx, c)


@case(id="RPL-004", clause="§4.4-2", level=M, tags=("replay", "routing"),
      covers=("§3.6-2",),
      requirement="Two envelopes with the same header bytes are the same message, whatever "
      "their routing copies: the second delivery is a replay.",
      accepts="the same HTTP 200 body for the envelope with routing copies and without them")
async def replay_without_routing(ctx: CaseContext) -> None:
    who, msg = signed_offer(ctx)
    first = await post(ctx, msg.envelope, recipient_key=who.public_key)
    expect_receipt(ctx, first, msg)
    bare = envelope_bytes(msg.hdr_bytes, msg.signature, msg.body_bytes)
    ctx.expect(bare != msg.envelope, expected="a different envelope", actual="the same bytes")
    second = await post(ctx, bare, recipient_key=who.public_key)
    ctx.expect(second.status == 200
               and second.exchange.response_body == first.exchange.response_body,
               expected="the stored response again", actual=second.describe())


# -- time window and recipient (§4.5) -------------------------------------------------------------


@case(id="TIME-001", clause="§4.5-3", level=M, tags=("time", "replay"),
      requirement="A message past its expiry MUST be refused.", accepts="problem expired")
async def expired(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, offer_body(ctx, who), who, now=now_ms() - 20_000, lifetime_ms=10_000)
    expect_problem(ctx, await post(ctx, msg.envelope), ["expired"])


@case(id="TIME-002", clause="§4.5-4", level=M, tags=("time",), covers=("§10-3",),
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
    other = identity(ctx).public_key
    msg = sign(ctx, offer_body(ctx, who), who, to=other)
    expect_problem(ctx, await post(ctx, msg.envelope), ["wrong_recipient"])


# -- load (§12) ------------------------------------------------------------------------------------


@case(id="RATE-001", clause="§12.9-5", level=M, tags=("rate", "limits", "slow"),
      covers=("§10-6", "§9.1-5", "§10-9"),
      requirement="A receiver MUST limit the rate of messages per sender key to the published "
      "rate_per_sender_per_minute: over the limit it answers 429 with rate_limited, "
      "retry_after and a Retry-After header; it MUST NOT refuse a sender within the limit, nor "
      "let one through beyond it.",
      accepts="of 2 × quota + 10 offers from one key: at least quota accepted (fewer only "
      "when the address limit leaves less room) and at most quota plus what a minute's "
      "allowance refills while the flood lasts (quota × seconds / 60, and one), then 429s with "
      "Retry-After equal to the problem's retry_after; no 5xx (not checked for a quota above "
      "10,000)")
async def flood(ctx: CaseContext) -> None:
    t = target(ctx)
    quota = t.limits.rate_per_sender_per_minute
    if 2 * quota + 10 > MAX_FLOOD:
        ctx.expect(True, expected="a flood over the quota",
                   actual=f"not checked: a quota of {quota} a minute needs too many requests")
        return
    room = t.limits.rate_per_address_per_minute - recent_requests(ctx)
    who = identity(ctx)
    msgs = [sign(ctx, offer_body(ctx, who), who) for _ in range(2 * quota + 10)]
    sem = asyncio.Semaphore(32)

    async def one(env: bytes) -> Answer:
        async with sem:
            return read_answer(await ctx.post(t.inbox, env, content_type=CONTENT_TYPE), t)

    note_requests(ctx, len(msgs))
    started = time.monotonic()
    answers = await asyncio.gather(*(one(m.envelope) for m in msgs))
    ceiling = quota + int(quota * (time.monotonic() - started) / 60) + 1
    fives = [a for a in answers if a.status is not None and a.status >= 500]
    accepted = [a for a in answers if a.status == 200]
    limited = [a for a in answers if a.status == 429]
    floor = min(quota, max(0, room))
    ctx.expect(not fives and bool(limited) and floor <= len(accepted) <= ceiling,
               expected=f"{floor} to {ceiling} accepted, then 429s; no 5xx",
               actual=f"{len(accepted)} × 200, {len(limited)} × 429, {len(fives)} × 5xx "
               f"of {len(answers)}")
    bad = [a for a in limited
           if a.code != "rate_limited" or a.problem is None
           or a.problem.body.retry_after is None
           or a.exchange.header("Retry-After") != str(a.problem.body.retry_after)]
    ctx.expect(not bad, expected="each 429 a rate_limited problem with retry_after equal to "
               "its Retry-After header", actual=bad[0].describe() if bad else "")


@case(id="ROB-001", clause="§12.9-4", level=INFO, tags=("robustness", "slow"),
      requirement="Slow clients (trickling bodies) should not delay other clients.",
      accepts="informational: latency of a normal request while 20 slow uploads are open")
async def slow_clients(ctx: CaseContext) -> Info:
    t = target(ctx)
    parts = urlsplit(t.inbox)
    host = parts.hostname or "127.0.0.1"

    async def trickle(opened: asyncio.Event) -> None:
        try:
            _, writer = await open_stream(t.inbox)
        except OSError:
            opened.set()
            return
        try:
            writer.write(
                f"POST {parts.path} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: {CONTENT_TYPE}\r\nContent-Length: 1000\r\n\r\n".encode()
            )
            await writer.drain()
            opened.set()
            for _ in range(3):  # a slow client: one byte every 300 ms
                writer.write(b"\x00")
                await writer.drain()
                await asyncio.sleep(0.3)
        except OSError:
            opened.set()
        finally:  # also when cancelled: never leave the socket to the garbage collector
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


# -- more decoding and limits (§3.3, §10, §12.9) ---------------------------------------------------


@case(id="WIRE-010", clause="§3.3-1", level=M, tags=("wire",),
      requirement="A receiver MUST refuse bytes that end inside an item, or that use the "
      "reserved format byte 0xc1, with malformed.",
      accepts="problem malformed for a truncated envelope and for 0xc1")
async def truncated_and_reserved(ctx: CaseContext) -> None:
    _, msg = signed_offer(ctx)
    for raw in (msg.envelope[:-7], b"\x81\xa3hdr\xc1"):
        expect_problem(ctx, await post(ctx, raw), ["malformed"])


@case(id="WIRE-011", clause="§3.3-5", level=M, tags=("wire", "canonical"),
      covers=("§3.3-8",),
      requirement="An item MUST NOT contain a value of an extension type; a receiver MUST refuse "
      "one with malformed (the form stage of §3.3-8), even when signed.",
      accepts="problem malformed for a header whose created is an extension-type value")
async def extension_type(ctx: CaseContext) -> None:
    who = identity(ctx)
    value = msgpack.ExtType(5, now_ms().to_bytes(8, "big"))
    expect_problem(ctx, await post(ctx, forged(ctx, who, header={"created": value})),
                   ["malformed"])


@case(id="WIRE-017", clause="§3.3-5", level=M, tags=("wire", "canonical"),
      requirement="The timestamp extension (type -1) is an extension type like any other: a "
      "receiver MUST refuse it with malformed, even though msgpack libraries decode it natively.",
      accepts="problem malformed for a header whose created is a msgpack timestamp")
async def timestamp_extension(ctx: CaseContext) -> None:
    who = identity(ctx)
    stamp = msgpack.Timestamp(now_ms() // 1000)  # packed as extension type -1
    expect_problem(ctx, await post(ctx, forged(ctx, who, header={"created": stamp})),
                   ["malformed"])


def _padded_offer(ctx: CaseContext, who: Identity, size: int) -> bytes:
    """A valid offer whose body carries an unknown key padded so the envelope is ``size``."""
    msg = sign(ctx, offer_body(ctx, who), who)
    body = _codec.decode(msg.body_bytes or b"")
    pad = 0
    for _ in range(4):  # the bin's length prefix grows with it: converge in a few steps
        body["x_padding"] = bytes(pad)
        raw = _codec.encode(body)
        env = forged(ctx, who, raw_body=raw, header=header_of(msg) | {"body": sha256(raw)})
        if len(env) == size:
            return env
        pad = max(0, pad + size - len(env))
    return env


@case(id="WIRE-012", clause="§10-1", level=M, tags=("wire", "limits"),
      requirement="A receiver MUST accept an envelope of up to max_envelope_bytes bytes.",
      accepts="a receipt for a valid offer exactly max_envelope_bytes long")
async def largest_accepted(ctx: CaseContext) -> None:
    who = identity(ctx)
    size = buildable(ctx, target(ctx).limits.max_envelope_bytes, limit="max_envelope_bytes")
    env = _padded_offer(ctx, who, size)
    answer = await post(ctx, env, recipient_key=who.public_key)
    ctx.expect(answer.status == 200 and answer.receipt is not None and len(env) == size,
               expected=f"a receipt for an envelope of {size} bytes",
               actual=f"{len(env)} bytes: {answer.describe()}")


@case(id="WIRE-013", clause="§10-2", level=M, tags=("wire", "limits"),
      covers=("§3.3-6", "§3.3-8"),
      requirement="A receiver MUST refuse with malformed a body in which arrays and maps nest "
      "more than max_depth deep, counting the body map as depth 1, even under a key it ignores.",
      accepts="problem malformed for a body nesting max_depth + 1 deep; a receipt at max_depth")
async def body_depth(ctx: CaseContext) -> None:
    who = identity(ctx)
    depth = buildable_depth(ctx)
    msg = sign(ctx, offer_body(ctx, who), who)
    for levels, ok in ((depth, False), (depth - 1, True)):
        body = _codec.decode(msg.body_bytes or b"")
        nested: list[object] = []
        for _ in range(levels - 1):
            nested = [nested]
        body["x_nested"] = nested  # the body is depth 1, so this reaches depth 1 + levels
        raw = _codec.encode(body)
        env = forged(ctx, who, raw_body=raw)
        answer = await post(ctx, env, recipient_key=who.public_key)
        if ok:
            ctx.expect(answer.status == 200 and answer.receipt is not None,
                       expected=f"a receipt for nesting {depth} deep", actual=answer.describe())
        else:
            expect_problem(ctx, answer, ["malformed"])


#: How much of body_read_timeout_ms the slow body of WIRE-014 takes to arrive: enough that an
#: endpoint enforcing a shorter timeout than it publishes refuses it, with room for a loaded host.
SLOW_BODY_SHARE = 0.6
#: A refused slow body is sent again, this many times in all: an endpoint that enforces a
#: shorter timeout refuses every try, one starved by a loaded host (its own or the suite's) does
#: not refuse them all.
SLOW_BODY_TRIES = 3
#: A try whose last piece the suite itself sent later than this share of body_read_timeout_ms
#: after the first (its own event loop was busy) proves nothing when refused: it is not counted
#: among SLOW_BODY_TRIES, and another is made, up to twice SLOW_BODY_TRIES tries in all.
SLOW_BODY_LATE_SHARE = 0.8


@case(id="WIRE-014", clause="§10-8", level=M, tags=("wire", "http", "limits", "slow"),
      requirement="A receiver MUST give the whole body of a request at least "
      "body_read_timeout_ms to arrive — the published value, not a shorter one.",
      accepts="a receipt for a valid offer whose body arrives in four pieces, the last "
      "0.6 × body_read_timeout_ms after the first (the case waits that long; a refused body "
      "is sent again, three tries in all, and one receipt passes; a try whose last piece the "
      "suite sent later than 0.8 × body_read_timeout_ms is not counted, six tries at most)")
async def slow_body_accepted(ctx: CaseContext) -> None:
    t = target(ctx)
    timeout_s = t.limits.body_read_timeout_ms / 1000
    pause = timeout_s * SLOW_BODY_SHARE / 3
    counted = 0
    for _ in range(2 * SLOW_BODY_TRIES):
        who, msg = signed_offer(ctx)
        env = msg.envelope
        step = len(env) // 4 + 1
        chunks = [env[i:i + step] for i in range(0, len(env), step)]
        head = (f"POST {urlsplit(t.inbox).path} HTTP/1.1\r\nContent-Type: {CONTENT_TYPE}\r\n"
                f"Content-Length: {len(env)}\r\nConnection: close")
        note_requests(ctx)
        raw = await raw_request(ctx, t.inbox, head, chunks, pause_s=pause,
                                read_timeout_s=timeout_s + 10.0)
        if raw.status == 200:
            break
        counted += raw.sent_s <= timeout_s * SLOW_BODY_LATE_SHARE
        if counted == SLOW_BODY_TRIES:
            break
    answer = read_answer(ctx.exchanges[-1], t, recipient_key=who.public_key)
    ctx.expect(raw.status == 200 and answer.receipt is not None,
               expected="a receipt",
               actual=f"{raw.error or answer.describe()} (last piece sent after "
               f"{raw.sent_s:.2f} s)")


@case(id="WIRE-015", clause="§12.9-3", level=M, tags=("wire", "http", "limits"),
      requirement="A receiver MUST stop reading a body without a Content-Length (chunked) as "
      "soon as it exceeds max_envelope_bytes, and answer 413 and too_large.",
      accepts="HTTP 413 with problem too_large for a chunked body twice the limit")
async def chunked_oversize(ctx: CaseContext) -> None:
    t = target(ctx)
    size = t.limits.max_envelope_bytes
    buildable(ctx, 2 * size, limit="max_envelope_bytes")
    piece = 16 * 1024
    chunk = f"{piece:x}\r\n".encode() + bytes(piece) + b"\r\n"
    chunks = [chunk] * (2 * size // piece + 1) + [b"0\r\n\r\n"]
    head = (f"POST {urlsplit(t.inbox).path} HTTP/1.1\r\nContent-Type: {CONTENT_TYPE}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close")
    note_requests(ctx)
    raw = await raw_request(ctx, t.inbox, head, chunks)
    answer = read_answer(ctx.exchanges[-1], t)
    ctx.expect(raw.status == 413 and answer.code == "too_large",
               expected="HTTP 413, problem too_large", actual=raw.error or answer.describe())


@case(id="WIRE-018", clause="§12.9-2", level=S, tags=("wire", "http", "limits"),
      requirement="After answering 413 to a Content-Length larger than max_envelope_bytes, a "
      "receiver SHOULD close the connection.",
      accepts="HTTP 413 before the body is sent, then the connection closed (Connection: "
      "close, or the socket shut)")
async def oversize_closes(ctx: CaseContext) -> None:
    t = target(ctx)
    size = t.limits.max_envelope_bytes + 1
    head = (f"POST {urlsplit(t.inbox).path} HTTP/1.1\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {size}")
    note_requests(ctx)
    raw = await raw_request(ctx, t.inbox, head, [], probe_close=True)
    ctx.expect(raw.status == 413 and raw.closed,
               expected="HTTP 413, then the connection closed",
               actual=raw.error or f"HTTP {raw.status}, connection "
               + ("closed" if raw.closed else "kept open"))


#: Tries of WIRE-016 in all: an endpoint starved by a loaded host may answer one late; one that
#: enforces a longer timeout than it publishes answers every one late.
BODY_TIMEOUT_TRIES = 2


def timeout_bound_s(timeout_ms: int) -> float:
    """How long after the start of a body WIRE-016 waits for the 408 at most: the published
    timeout, half of it again, and a second for a loaded host. An endpoint whose real timeout
    is longer than this does not enforce the limit it publishes."""
    return timeout_ms / 1000 * 1.5 + 1.0


@case(id="WIRE-016", clause="§12.9-4", level=M, tags=("wire", "http", "limits", "slow"),
      covers=("§10-8",),
      requirement="A receiver MUST answer 408 and request_timeout, and close the connection, "
      "when the whole body has not arrived within body_read_timeout_ms — the published value, "
      "not a longer one.",
      accepts="HTTP 408 with problem request_timeout, then the connection closed (Connection: "
      "close, or the socket shut), for a body that stops half way, within 1.5 × "
      "body_read_timeout_ms + 1 s (two tries; one in time passes)")
async def body_timeout(ctx: CaseContext) -> None:
    t = target(ctx)
    bound = timeout_bound_s(t.limits.body_read_timeout_ms)
    head = (f"POST {urlsplit(t.inbox).path} HTTP/1.1\r\nContent-Type: {CONTENT_TYPE}\r\n"
            "Content-Length: 1000")
    for _ in range(BODY_TIMEOUT_TRIES):
        note_requests(ctx)
        raw = await raw_request(ctx, t.inbox, head, [bytes(500)], read_timeout_s=bound,
                                probe_close=True)
        answer = read_answer(ctx.exchanges[-1], t)
        if raw.status == 408:
            break
    ctx.expect(raw.status == 408 and answer.code == "request_timeout",
               expected=f"HTTP 408, problem request_timeout, within {bound:g} s",
               actual=raw.error or answer.describe())
    ctx.expect(raw.closed, expected="the connection closed after the answer",
               actual="Connection: keep-alive, and the socket stayed open")


# -- time (§4.5) ----------------------------------------------------------------------------------


@case(id="TIME-003", clause="§4.5-4", level=M, tags=("time",),
      requirement="A receiver MUST NOT refuse a message only because created lies in the past: "
      "an old message is refused only once it has expired.",
      accepts="a receipt for a message created half of max_lifetime_ms ago and not yet expired")
async def old_but_valid(ctx: CaseContext) -> None:
    who = identity(ctx)
    longest = target(ctx).limits.max_lifetime_ms
    msg = sign(ctx, offer_body(ctx, who), who, now=now_ms() - longest // 2, lifetime_ms=longest)
    expect_receipt(ctx, await post(ctx, msg.envelope, recipient_key=who.public_key), msg)


# -- rate limits (§10-6, §10-7, §12.9) -------------------------------------------------------------


#: Seconds of refill RATE-002 adds to its flood, for the time between its last forgery and its
#: valid message.
FORGERY_SLACK_S = 1.0


@case(id="RATE-002", clause="§12.9-6", level=M, tags=("rate", "limits", "signature", "slow"),
      requirement="A receiver MUST count a message against the sender's allowance only once its "
      "signature has verified, so that forged messages cannot use up another sender's "
      "allowance.",
      accepts="forgeries naming a key — quota + 10, and as many more as a minute's allowance "
      "refills while they are sent and for one second after — are refused (bad_signature or "
      "429); then a valid message from that key gets a receipt (not checked when the flood "
      "would exceed the address limit, or for a quota above 10,000)")
async def forgeries_do_not_count(ctx: CaseContext) -> None:
    t = target(ctx)
    quota = t.limits.rate_per_sender_per_minute
    n = quota + 10
    room = t.limits.rate_per_address_per_minute - recent_requests(ctx)
    if 2 * n > MAX_FLOOD or n + 50 > room:
        ctx.expect(True, expected="a flood over the sender quota within the address limit",
                   actual=f"not checked: {n} requests with {room} left of the address limit")
        return
    victim, forger = identity(ctx), identity(ctx)

    def forgery() -> bytes:
        h = header_of(sign(ctx, offer_body(ctx, victim), victim))
        hdr, sig = resign_header(h, forger)
        return envelope_bytes(hdr, sig, sign(ctx, offer_body(ctx, victim), victim).body_bytes)

    sem = asyncio.Semaphore(32)

    async def one(env: bytes) -> int | None:
        async with sem:
            return (await ctx.post(t.inbox, env, content_type=CONTENT_TYPE)).status

    # An endpoint that charged forgeries would have refilled quota/60 a second meanwhile: send
    # until the forgeries exceed the quota by 10 even counting that refill.
    statuses: list[int | None] = []
    batch = [forgery() for _ in range(n)]
    started = time.monotonic()
    while batch and len(statuses) < 2 * n:
        note_requests(ctx, len(batch))
        statuses += await asyncio.gather(*(one(env) for env in batch))
        refill = quota * (time.monotonic() - started + FORGERY_SLACK_S) / 60
        batch = [forgery() for _ in range(max(0, int(n + refill) + 1 - len(statuses)))]
    accepted = [s for s in statuses if s is None or s < 400 or s >= 500]
    ctx.expect(not accepted, expected="every forgery refused with a 4xx",
               actual=f"statuses {sorted(set(statuses), key=str)}")
    msg = sign(ctx, offer_body(ctx, victim), victim)
    expect_receipt(ctx, await post(ctx, msg.envelope, recipient_key=victim.public_key), msg)


@case(id="RATE-003", clause="§10-7", level=M, tags=("rate", "limits"),
      requirement="A receiver MUST NOT refuse with rate_limited a client address that makes no "
      "more than rate_per_address_per_minute requests in any minute.",
      accepts="no 429 for a burst of valid offers from distinct keys that keeps the run's "
      "requests of the last minute under the address limit")
async def address_burst(ctx: CaseContext) -> Info | None:
    t = target(ctx)
    limit = t.limits.rate_per_address_per_minute
    burst = min(100, limit // 4)
    if recent_requests(ctx) + burst + 200 > limit:  # 200: requests the suite did not count
        return Info(f"not checked: this run already sent {recent_requests(ctx)} requests in "
                    f"the last minute, too close to the address limit of {limit}")
    offers = []
    for _ in range(burst):
        who = identity(ctx)
        offers.append(sign(ctx, offer_body(ctx, who), who).envelope)
    answers = await asyncio.gather(*(post(ctx, env) for env in offers))
    limited = [a for a in answers if a.status == 429]
    ctx.expect(not limited and all(a.status == 200 for a in answers),
               expected=f"{burst} receipts, no 429",
               actual=f"statuses {sorted({a.status or 0 for a in answers})}, "
               f"{len(limited)} × 429")
    return None
