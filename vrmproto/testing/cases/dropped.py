"""What a refusal does not undo (§8.1-6): a message the peer has receipted stays, and the
stored answer that carried a dropped reply is answered again byte for byte."""

from __future__ import annotations

from collections.abc import Sequence

from vrmproto._errors import Problem
from vrmproto._history import Entry
from vrmproto._messages import Receipt
from vrmproto._relationship import sign_problem
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    Customer,
    expect_receipt,
    fetch_history,
    history_entries,
    new_id,
    now_ms,
    offer_body,
    post,
    share_body,
    target,
)

M = Level.MUST


async def refuse(ctx: CaseContext, c: Customer, entry: Entry) -> None:
    """Post a final problem (invalid_field) whose ref is ``entry``'s message; expect 204."""
    problem = sign_problem(Problem.INVALID_FIELD, "the suite refuses this message",
                           identity=c.identity, now=now_ms(), msg_id=new_id(ctx),
                           to=target(ctx).key, thread=c.rel.thread, ref=entry.msg_hash)
    answer = await post(ctx, problem.envelope)
    ctx.expect(answer.status == 204, expected="HTTP 204 for the problem",
               actual=answer.describe())


async def expect_history(ctx: CaseContext, c: Customer, want: Sequence[Entry],
                         what: str) -> None:
    theirs = history_entries(ctx, await fetch_history(ctx, c))
    ctx.expect([e.msg_hash for e in theirs] == [e.msg_hash for e in want],
               expected=f"{what} ({len(want)} entries)",
               actual=f"{len(theirs)} entries: {[e.msg_hash.hex()[:8] for e in theirs]}")


@case(id="HIST-009", clause="§8.1-6", level=M, tags=("history", "problem", "state"),
      covers=("§8.1-5",),
      requirement="A sender MUST NOT drop a message for a problem once the peer's receipt for "
      "it is logged after it: the receipt is the peer's word that it accepted the message.",
      accepts="after the customer receipts the vendor's terms.accept and then refuses it "
      "(problem invalid_field, ref = its hash): HTTP 204, the history export still holds the "
      "accept and the receipt, and a data.share under the agreement is receipted")
async def receipted_message_kept(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    accept = c.rel.history.entries()[-1]
    _, answer = await c.send(Receipt(ack=accept.msg_hash))
    ctx.expect(answer.status == 204, expected="HTTP 204 for the receipt",
               actual=answer.describe())
    await refuse(ctx, c, accept)
    await expect_history(ctx, c, c.rel.history.entries(),
                         "the history with the accept and the suite's receipt for it")
    body, msg_id = share_body(ctx, c, {"email": "kept@example.org"})
    msg, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, msg)


@case(id="HIST-010", clause="§8.1-6", level=M, tags=("history", "problem", "replay"),
      covers=("§12.6-2",),
      requirement="Dropping a refused reply does not change the stored response that carried "
      "it: a repeated delivery of the message it answered MUST get that response byte for "
      "byte, and applies nothing again.",
      accepts="after the customer refuses the vendor's terms.accept: the terms.offer delivered "
      "again gets HTTP 200 and the very bytes of the first answer, and the history export "
      "still ends before the accept")
async def stored_answer_unchanged(ctx: CaseContext) -> None:
    c = Customer(ctx)
    offer, first = await c.send(offer_body(ctx, c.identity))
    expect_receipt(ctx, first, offer)
    entries = c.rel.history.entries()
    await refuse(ctx, c, entries[-1])
    again = await post(ctx, offer.envelope, recipient_key=c.identity.public_key)
    ctx.expect(again.status == 200
               and again.exchange.response_body == first.exchange.response_body,
               expected="HTTP 200 with the first answer, byte for byte",
               actual=again.describe())
    await expect_history(ctx, c, entries[:-1], "the history without the refused terms.accept")
