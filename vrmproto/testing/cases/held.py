"""How a vendor holds the fields it receives: the category a dotted name suggests, and purposes
listed out of order or twice (§12.10-1, §6.8-2, §6.8-7, §5.3-2)."""

from __future__ import annotations

from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import Customer, now_ms
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
