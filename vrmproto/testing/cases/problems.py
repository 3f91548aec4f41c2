"""Problem reports and receipts, both ways (§5.6.1, §5.6.2, §9.1, §12.3).

What the endpoint sends when it refuses (a signed problem with the right fields and status), and
what it does with problems and receipts the customer sends it (accepts them with 204, outside the
state machine; refuses a receipt that acknowledges nothing).
"""

from __future__ import annotations

import re

from vrmproto import _codec
from vrmproto._binding import CONTENT_TYPE
from vrmproto._envelope import sign_message
from vrmproto._keys import Identity
from vrmproto._messages import ProblemReport, Receipt
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    Customer,
    expect_history,
    expect_problem,
    forged,
    identity,
    new_id,
    now_ms,
    offer_body,
    post,
    sign,
    status_of,
    target,
)

M = Level.MUST


def _problem(ctx: CaseContext, who: Identity, *, thread: bytes, code: str,
             ref: bytes | None = None) -> bytes:
    body = ProblemReport(code=code, detail="the suite reports a problem", ref=ref)
    msg = sign_message(body, identity=who, recipient=target(ctx).key, thread=thread, prev=None,
                       now=now_ms(), msg_id=new_id(ctx), lifetime_ms=300_000)
    return msg.envelope


@case(id="PRB-001", clause="§4.5-9", level=M, tags=("problem", "state"),
      covers=("§5.6.2-1", "§12.3-3", "§9.1-8"),
      requirement="A problem is outside every chain and state machine: the receiver accepts it "
      "(204, empty body), even with a code it does not know or in a thread it does not know; "
      "it is not logged, not acknowledged and changes no state.",
      accepts="HTTP 204 with an empty body for a problem of unknown code in the relationship "
      "and for one in an unknown thread; the history unchanged; the next message still chains")
async def problem_accepted_quietly(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    for thread in (c.rel.thread, new_id(ctx)):
        answer = await post(ctx, _problem(ctx, c.identity, thread=thread, code="x_future_code"))
        ex = answer.exchange
        ctx.expect(ex.status == 204 and not ex.response_body,
                   expected="HTTP 204, empty body", actual=answer.describe())
    await expect_history(ctx, c)
    _, answer = await c.send(Receipt(ack=_owed(ctx, c)))
    ctx.expect(answer.status == 204, expected="the next message chains (204 for a receipt)",
               actual=answer.describe())
    await expect_history(ctx, c)


def _owed(ctx: CaseContext, c: Customer) -> bytes:
    """The hash of a vendor message the customer has not acknowledged yet (its terms.accept)."""
    ctx.expect(bool(c.rel.owed_receipts), expected="a vendor message to acknowledge",
               actual="none")
    return next(iter(c.rel.owed_receipts))


@case(id="PRB-002", clause="§12.3-4", level=M, tags=("problem",),
      covers=("§9.1-1", "§9.1-2", "§9.1-3", "§9.1-4", "§5.6.2-1", "§12.4-1", "§9.2-2"),
      requirement="A refusal MUST be answered with the status Table 12-1 gives its code and, as "
      "the body, exactly one problem signed by the receiver, addressed to the refused message's "
      "sender, in its thread, naming it in ref, with prev nil and a detail for people.",
      accepts="for a chain_broken refusal: HTTP 409, application/vnd.vrmproto+msgpack, a "
      "problem signed by the endpoint with to = sender, thread = the thread, ref = the message "
      "hash, prev nil, a non-empty detail")
async def problem_fields(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    head_before = c.rel.our_head
    msg = sign(ctx, offer_body(ctx, c.identity), c.identity, thread=c.rel.thread,
               prev=bytes(32))
    answer = await post(ctx, msg.envelope)
    expect_problem(ctx, answer, ["chain_broken"])
    p = answer.problem
    assert p is not None
    ctx.expect(answer.exchange.response_content_type == CONTENT_TYPE,
               expected=f"Content-Type {CONTENT_TYPE}",
               actual=str(answer.exchange.response_content_type))
    checks = {
        "signed by the endpoint": p.sender == target(ctx).key,
        "to = the sender": p.recipient == c.identity.public_key,
        "thread = the message's": p.thread == c.rel.thread,
        "ref = the message hash": p.body.ref == msg.hash,
        "prev nil": p.header.prev is None,
        "a detail": bool(p.body.detail.strip()),
        "status of its code": answer.status == status_of(p.body.code),
    }
    wrong = [name for name, ok in checks.items() if not ok]
    ctx.expect(not wrong, expected=", ".join(checks), actual=f"not so: {', '.join(wrong)}")
    ctx.expect(c.rel.our_head == head_before, expected="nothing changed here",
               actual="the suite's own state moved")


@case(id="PRB-003", clause="§9.1-6", level=M, tags=("problem", "signature"),
      covers=("§12.3-5", "§9.1-7"),
      requirement="A party MUST NOT answer a problem with a problem, even one it cannot verify, "
      "and MUST verify a problem as any message: a forged problem is refused with the status of "
      "its code and an empty body.",
      accepts="HTTP 401 (bad_signature) with an empty body for a problem whose signature does "
      "not verify")
async def forged_problem(ctx: CaseContext) -> None:
    who, forger = identity(ctx), identity(ctx)
    good = sign_message(ProblemReport(code="malformed", detail="forged"), identity=who,
                        recipient=target(ctx).key, thread=new_id(ctx), prev=None, now=now_ms(),
                        msg_id=new_id(ctx), lifetime_ms=300_000)
    env = forged(ctx, forger, body=good.body, header={"from": who.public_key})
    answer = await post(ctx, env)
    ex = answer.exchange
    ctx.expect(ex.status == status_of("bad_signature") and not ex.response_body,
               expected="HTTP 401 and an empty body", actual=ex.describe()
               + (f", {len(ex.response_body)}-byte body" if ex.response_body else ""))


@case(id="RCT-001", clause="§5.6.1-1", level=M, tags=("receipt",),
      requirement="A receiver MUST refuse a receipt whose ack is not the hash of an "
      "unacknowledged message it sent in the thread with invalid_field.",
      accepts="problem invalid_field for a receipt of an unknown hash and for a second receipt "
      "of the same message")
async def receipt_for_nothing(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    bogus = sign(ctx, Receipt(ack=bytes(range(32))), c.identity, thread=c.rel.thread,
                 prev=c.rel.our_head)
    expect_problem(ctx, await post(ctx, bogus.envelope), ["invalid_field"])
    acked = _owed(ctx, c)
    first, answer = await c.send(Receipt(ack=acked))
    ctx.expect(answer.status == 204, expected="204 for the first receipt",
               actual=answer.describe())
    again = sign(ctx, Receipt(ack=acked), c.identity, thread=c.rel.thread, prev=first.hash)
    expect_problem(ctx, await post(ctx, again.envelope), ["invalid_field"])


@case(id="RCT-002", clause="§12.3-3", level=M, tags=("receipt", "history"),
      covers=("§5.6.1-2", "§8.1-1"),
      requirement="A receipt is owed no receipt: when the receiver accepts one it MUST answer "
      "204 with an empty body, and log the receipt in its history like any message.",
      accepts="HTTP 204, empty body, for the customer's receipt of the vendor's terms.accept; "
      "the receipt in the endpoint's history")
async def receipt_accepted(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    accept = _owed(ctx, c)
    msg, answer = await c.send(Receipt(ack=accept))
    ex = answer.exchange
    ctx.expect(ex.status == 204 and not ex.response_body, expected="HTTP 204, empty body",
               actual=answer.describe())
    entries = await expect_history(ctx, c)
    ctx.expect(entries[-1].msg_hash == msg.hash, expected="the receipt last in the history",
               actual=f"{len(entries)} entries")


# -- what a problem SHOULD carry (§9.1-3, §9.1-5, §5.1-2) -----------------------------------------


@case(id="PRB-004", clause="§9.1-5", level=Level.SHOULD, tags=("problem", "time"),
      requirement="A problem with the code clock_skew or expired SHOULD carry server_time, the "
      "receiver's clock in ms.",
      accepts="server_time within a minute of the suite's clock, on an expired and on a "
      "clock_skew problem")
async def server_time(ctx: CaseContext) -> None:
    who = identity(ctx)
    skew = target(ctx).limits.max_clock_skew_ms
    expired = sign(ctx, offer_body(ctx, who), who, now=now_ms() - 20_000, lifetime_ms=10_000)
    early = sign(ctx, offer_body(ctx, who), who, now=now_ms() + skew + 60_000)
    for msg, code in ((expired, "expired"), (early, "clock_skew")):
        answer = await post(ctx, msg.envelope)
        expect_problem(ctx, answer, [code])
        assert answer.problem is not None
        told = answer.problem.body.server_time
        ctx.expect(told is not None and abs(told - now_ms()) < 60_000,
                   expected=f"{code} with server_time", actual=f"server_time {told}")


@case(id="PRB-005", clause="§9.1-3", level=Level.SHOULD, tags=("problem",),
      covers=("§5.1-2",),
      requirement="A problem's clause SHOULD name the clause the message broke, and its path "
      "SHOULD locate the offending value, as in $.body.terms[1].",
      accepts="for a terms.offer without enc_key: a clause of the form §N.M-K and a path "
      "starting with $.body")
async def clause_and_path(ctx: CaseContext) -> None:
    who = identity(ctx)
    raw = _codec.encode({"terms": [t.to_wire() for t in offer_body(ctx, who).terms]})
    answer = await post(ctx, forged(ctx, who, raw_body=raw))
    expect_problem(ctx, answer, ["invalid_field"])
    assert answer.problem is not None
    body = answer.problem.body
    ctx.expect(bool(body.clause) and bool(re.fullmatch(r"§\d+(\.\d+)*-\d+", body.clause or "")),
               expected="a clause like §5.1-1", actual=f"clause {body.clause!r}")
    ctx.expect((body.path or "").startswith("$.body"), expected="a path under $.body",
               actual=f"path {body.path!r}")
