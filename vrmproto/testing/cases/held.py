"""How a vendor holds the fields it receives: the category a dotted name suggests, purposes
listed out of order or twice, and values counted in bytes, not characters (§12.10-1, §6.8-2,
§6.8-3, §6.8-7, §5.3-2)."""

from __future__ import annotations

from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import Customer, expect_problem, expect_receipt, now_ms, post, share_body
from .returns import Want, expect_exactly, marker, records_of, share

M = Level.MUST


@case(id="RET-005", clause="§12.10-1", level=M, tags=("data", "return"),
      covers=("§6.8-2", "§6.8-7", "§5.3-2"),
      requirement="A field with a dotted name takes the category its last part suggests when "
      "that part is a standard name and the share lists the category; a share may list its "
      "purposes out of order and more than once, and each record holds them sorted, each once.",
      accepts="for a share (categories [1, 2], purposes [5, 2, 5]) of billing.street, "
      "work.email and pet.nickname: the records billing.street 2, work.email 2 and "
      "pet.nickname 1, each with purposes [2, 5], source provided")
async def dotted_names_and_purposes(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    since = now_ms()
    m = marker(ctx)
    fields = {"billing.street": f"{m} Main Street", "work.email": f"{m}@example.org",
              "pet.nickname": f"Rex {m}"}
    await share(ctx, c, fields, purposes=(5, 2, 5), categories=(1, 2))
    wants = [Want("billing.street", fields["billing.street"], 2, (2, 5)),
             Want("work.email", fields["work.email"], 2, (2, 5)),
             Want("pet.nickname", fields["pet.nickname"], 1, (2, 5))]
    expect_exactly(ctx, await records_of(ctx, c), wants, set(fields.values()), since)


@case(id="RET-006", clause="§12.10-1", level=M, tags=("data",), covers=("§6.8-3",),
      requirement="A field value within Table 5-15 (at most 4096 characters) but longer than a "
      "record's value may be (4096 UTF-8 bytes, §6.8-3) cannot be held: the vendor MUST refuse "
      "the message with invalid_field; a value of exactly 4096 bytes is held.",
      accepts="problem invalid_field for a share of note = 2049 × 'é' (2049 characters, 4098 "
      "bytes); a receipt for note = 2048 × 'é' (4096 bytes)")
async def value_bytes_not_characters(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body, msg_id = share_body(ctx, c, {"note": "é" * 2049})
    msg = c.unchecked(body, msg_id=msg_id)
    expect_problem(ctx, await post(ctx, msg.envelope), ["invalid_field"])
    body, msg_id = share_body(ctx, c, {"note": "é" * 2048})
    sent, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, sent)
