"""The order of checks, one step per relationship, refusals that change nothing, and receipts
that mean "stored" (§4.5, §7-3, §12.7, §12.8)."""

from __future__ import annotations

import asyncio

from vrmproto import _codec
from vrmproto._keys import sha256
from vrmproto._messages import DataRequest, Intentcast, TermsOffer
from vrmproto._vocab import DATA_FORMAT, TermRef
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    Customer,
    acceptable_terms,
    envelope_bytes,
    expect_history,
    expect_problem,
    expect_receipt,
    fetch_history,
    forged,
    history_entries,
    identity,
    new_id,
    now_ms,
    offer_body,
    post,
    share_body,
    sign,
)

M = Level.MUST


def _flip(sig: bytes) -> bytes:
    return bytes([sig[0] ^ 0x01]) + sig[1:]


@case(id="ORD-001", clause="§4.5-1", level=M, tags=("order", "signature"),
      covers=("§4.3-2", "§4.1-2", "§9.1-2"),
      requirement="A receiver MUST apply the checks of §4.5-1 in their order and refuse with "
      "the code of the first that fails; it MUST NOT decode the body, or act on a header value, "
      "before the signature and the body digest have been checked.",
      accepts="envelope_mismatch (routing type wrong + addressed elsewhere); wrong_recipient "
      "(addressed elsewhere + expired); expired (bad signature + expired); bad_signature (bad "
      "signature + body swapped); bad_signature (bad signature + an unparsable body); "
      "bad_signature (bad signature + a thread the endpoint does not hold); malformed (the "
      "unparsable body, correctly signed)")
async def order_of_checks(ctx: CaseContext) -> None:
    who = identity(ctx)
    other = identity(ctx).public_key
    body = offer_body(ctx, who)
    elsewhere = sign(ctx, body, who, to=other)
    then = now_ms() - 20_000
    lost = sign(ctx, body, who, to=other, now=then, lifetime_ms=10_000)
    expired = sign(ctx, body, who, now=then, lifetime_ms=10_000)
    fresh = sign(ctx, body, who)
    swapped = sign(ctx, offer_body(ctx, identity(ctx)), who)
    garbage = forged(ctx, who, raw_body=b"\xc1")
    g = _parts(garbage)
    request = sign(ctx, DataRequest(agreement=bytes(32), format=DATA_FORMAT), who)
    steps = [
        (envelope_bytes(elsewhere.hdr_bytes, elsewhere.signature, elsewhere.body_bytes,
                        to=other, type="receipt"), "envelope_mismatch"),
        (lost.envelope, "wrong_recipient"),
        (envelope_bytes(expired.hdr_bytes, _flip(expired.signature), expired.body_bytes),
         "expired"),
        (envelope_bytes(fresh.hdr_bytes, _flip(fresh.signature), swapped.body_bytes),
         "bad_signature"),
        (envelope_bytes(g[0], _flip(g[1]), g[2]), "bad_signature"),
        (envelope_bytes(request.hdr_bytes, _flip(request.signature), request.body_bytes),
         "bad_signature"),
        (garbage, "malformed"),
    ]
    for env, code in steps:
        expect_problem(ctx, await post(ctx, env), [code])


#: A term reference no roster holds (§6.2-3), and an X25519 key of small order (§2.1-5).
_UNKNOWN_TERM = TermRef("x.conformance-unknown", 1, bytes(32))
_SMALL_ORDER = bytes(32)


@case(id="ORD-003", clause="§4.5-1", level=M, tags=("order", "state", "terms"),
      covers=("§12.2-7", "§4.5-6"),
      requirement="The relationship steps of §4.5-1 (23 to 29) come before the rules of the "
      "message type (step 30), also for a message that could open a relationship: in a thread "
      "the vendor holds, a stranger's terms.offer or intentcast is not_a_party and the peer's "
      "second message with prev nil is chain_broken, whatever its terms or keys.",
      accepts="not_a_party for a stranger's terms.offer citing an unknown term, one with a "
      "small-order enc_key, and an intentcast citing an unknown term, in an agreed thread; "
      "chain_broken for the peer's terms.offer citing an unknown term with prev nil")
async def relationship_before_rules(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    stranger = identity(ctx)
    cast = Intentcast(what="anything", reply_by=now_ms() + 60_000, constraints=(),
                      memberships=(), terms=(_UNKNOWN_TERM,))  # fmt: skip
    for body in (
        offer_body(ctx, stranger, (_UNKNOWN_TERM,)),
        TermsOffer(terms=acceptable_terms(ctx), enc_key=_SMALL_ORDER),
        cast,
    ):
        msg = sign(ctx, body, stranger, thread=c.rel.thread)
        expect_problem(ctx, await post(ctx, msg.envelope), ["not_a_party"])
    again = sign(ctx, offer_body(ctx, c.identity, (_UNKNOWN_TERM,)), c.identity,
                 thread=c.rel.thread)  # fmt: skip
    expect_problem(ctx, await post(ctx, again.envelope), ["chain_broken"])


def _parts(env: bytes) -> tuple[bytes, bytes, bytes]:
    m = _codec.decode(env)
    return m["hdr"], m["sig"], m["body"]


@case(id="ORD-002", clause="§12.8-1", level=M, tags=("order", "concurrency"),
      requirement="A receiver MUST apply the messages of one relationship one at a time, each "
      "checked against the history as the previous one left it.",
      accepts="of two different data.share messages sent at once with the same prev, exactly "
      "one gets a receipt and the other chain_broken; the history holds only the first")
async def one_at_a_time(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    msgs = []
    for value in ("a@example.org", "b@example.org"):
        body, msg_id = share_body(ctx, c, {"email": value})
        msgs.append(c.unchecked(body, msg_id=msg_id))
    answers = await asyncio.gather(*(post(ctx, m.envelope) for m in msgs))
    accepted = [m for m, a in zip(msgs, answers, strict=True) if a.status == 200]
    ctx.expect(len(accepted) == 1, expected="exactly one accepted",
               actual="; ".join(a.describe() for a in answers))
    refused = next(a for a in answers if a.status != 200)
    expect_problem(ctx, refused, ["chain_broken"])
    entries = history_entries(ctx, await fetch_history(ctx, c))
    logged = {e.msg_hash for e in entries} & {m.hash for m in msgs}
    ctx.expect(logged == {accepted[0].hash}, expected="only the accepted share in the history",
               actual=f"{len(logged)} of the two shares logged")


@case(id="STATE-001", clause="§4.5-8", level=M, tags=("state", "problem"),
      covers=("§7-3", "§9.1-1", "§12.6-5"),
      requirement="A refused message MUST change nothing: not the history, the state, the "
      "replay records or any other stored value; delivered again, corrected, under the same "
      "id, it is checked afresh.",
      accepts="problem no_agreement for a share naming another agreement; the history "
      "unchanged; then a receipt for a correct share under the same message id")
async def refusal_changes_nothing(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    msg_id = new_id(ctx)
    bad, _ = share_body(ctx, c, {"email": "x@example.org"}, agreement=sha256(b"another"),
                        msg_id=msg_id)
    refused = c.unchecked(bad, msg_id=msg_id)
    expect_problem(ctx, await post(ctx, refused.envelope), ["no_agreement"])
    await expect_history(ctx, c)
    good, _ = share_body(ctx, c, {"email": "x@example.org"}, msg_id=msg_id)
    msg, answer = await c.send(good, msg_id=msg_id)
    expect_receipt(ctx, answer, msg)
    await expect_history(ctx, c)


@case(id="DUR-001", clause="§12.7-1", level=M, tags=("durability", "history"),
      covers=("§8.1-2", "§12.3-2", "§7.4-1"),
      requirement="A receiver MUST NOT send a receipt before everything the message changed is "
      "stored: the message and every reply in the history, the state and the replay record. "
      "A receipt is proof that the receiver stored the message.",
      accepts="straight after the receipts: the history export holds the offer, the receipt "
      "and the terms.accept, and a data.share chained on the agreement gets a receipt")
async def receipt_means_stored(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    await expect_history(ctx, c)
    body, msg_id = share_body(ctx, c, {"email": "durable@example.org"})
    msg, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, msg)
