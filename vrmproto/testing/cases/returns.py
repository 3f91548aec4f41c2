"""A data.return checked record by record against what the suite shared (§12.10-1, §12.10-3,
§5.3.6-2).

Every value the suite shares here is new in every run (it carries a random marker), so a record
can be traced to the share it came from, and a record the suite never shared in this
relationship — another relationship's, another customer's — is recognised whatever else the
endpoint holds. The cases open every relationship they compare themselves, so they see the same
thing on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vrmproto._envelope import Signed, open_sealed
from vrmproto._errors import ProtocolError
from vrmproto._messages import (
    AddressUpdate,
    DataErased,
    DataRequest,
    DataReturn,
    DataWithdraw,
    FieldsContent,
    RecordsContent,
)
from vrmproto._vocab import DATA_FORMAT, DataRecord, suggest_category
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import Customer, expect_receipt, new_id, now_ms, share_body, target

M, S = Level.MUST, Level.SHOULD


@dataclass(frozen=True)
class Want:
    """A provided record the endpoint must return: field, value, category, purposes."""

    field: str
    value: str
    category: int
    purposes: tuple[int, ...]

    def matches(self, r: DataRecord) -> bool:
        return (r.field, r.value, r.category, tuple(r.purposes), r.source) == (
            self.field, self.value, self.category, self.purposes, "provided")

    def __str__(self) -> str:
        return (f"{self.field}={self.value!r} category {self.category} purposes "
                f"{list(self.purposes)} provided")


def _show(r: DataRecord) -> str:
    return (f"{r.field}={r.value!r} category {r.category} purposes {list(r.purposes)} "
            f"{r.source}")


def marker(ctx: CaseContext) -> str:
    return new_id(ctx).hex()[:12]


async def share(ctx: CaseContext, c: Customer, fields: dict[str, str], *,
                purposes: tuple[int, ...] = (2,), categories: tuple[int, ...] = (2,)
                ) -> Signed[Any]:  # fmt: skip
    """Share ``fields`` and expect its receipt; the message sent."""
    body, msg_id = share_body(ctx, c, fields, purposes=purposes, categories=categories)
    msg, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, msg)
    return msg


async def update(ctx: CaseContext, c: Customer, fields: dict[str, str]) -> Signed[Any]:
    """Send an address.update of ``fields`` and expect its receipt; the message sent."""
    msg_id = new_id(ctx)
    body = AddressUpdate(agreement=c.rel.agreement or bytes(32),
                         sealed=c.rel.seal(FieldsContent(fields=fields), msg_id=msg_id))
    msg, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, msg)
    return msg


async def withdraw(ctx: CaseContext, c: Customer, shares: tuple[bytes, ...],
                   erased: tuple[bytes, ...]) -> None:  # fmt: skip
    """Withdraw ``shares`` (none: all) and expect the receipt, and a data.erased naming
    ``erased``, in the answer (§5.3.2, §5.3.3)."""
    msg, answer = await c.send(DataWithdraw(agreement=c.rel.agreement or bytes(32),
                                            shares=shares))
    expect_receipt(ctx, answer, msg)
    got = next((r for r in answer.replies if isinstance(r.body, DataErased)), None)
    ctx.expect(got is not None and tuple(got.body.shares) == erased,
               expected=f"data.erased naming the {len(erased)} withdrawn share(s)",
               actual=answer.describe() if got is None else
               f"data.erased of {len(got.body.shares)} shares")


async def records_of(ctx: CaseContext, c: Customer) -> list[DataRecord]:
    """The records of a data.return answering a data.request of ``c`` (§5.3.4, §5.3.5)."""
    msg, answer = await c.send(DataRequest(agreement=c.rel.agreement or bytes(32),
                                           format=DATA_FORMAT))
    expect_receipt(ctx, answer, msg)
    ret = next((r for r in answer.replies if isinstance(r.body, DataReturn)), None)
    if ret is None:
        ctx.fail(expected="a data.return reply", actual=answer.describe())
    try:
        content = open_sealed(ret, identity=c.identity, content_type=RecordsContent)
    except ProtocolError as exc:
        ctx.fail(expected="data.return sealed to the customer", actual=str(exc))
    return list(content.records)


def expect_exactly(ctx: CaseContext, records: list[DataRecord], wants: list[Want],
                   ours: set[str], since: int) -> None:
    """Each wanted record once, field by field; no other provided record with a value this
    case shared (``ours``) or any value at all unless observed/derived; ``collected`` between
    ``since`` (less the clock skew) and now (plus the skew)."""
    for want in wants:
        found = [r for r in records if r.field == want.field and r.source == "provided"]
        ctx.expect(len(found) == 1 and want.matches(found[0]),
                   expected=f"one record {want}",
                   actual="; ".join(map(_show, found)) or f"no provided {want.field} record")
    wanted = {(w.field, w.value) for w in wants}
    extra = [r for r in records if r.source == "provided" and (r.field, r.value) not in wanted]
    ctx.expect(not extra, expected="no provided record but those this customer shared",
               actual="; ".join(map(_show, extra)))
    strays = [r for r in records if r.source != "provided" and any(v in r.value for v in ours)]
    ctx.expect(not strays, expected="no value this case shared under another source",
               actual="; ".join(map(_show, strays)))
    skew = target(ctx).limits.max_clock_skew_ms
    late = [r for r in records if r.source == "provided"
            and not since - skew <= r.collected <= now_ms() + skew]
    ctx.expect(not late, expected="collected: when the endpoint received the share",
               actual="; ".join(f"{_show(r)} collected {r.collected}" for r in late))


@case(id="RET-001", clause="§12.10-1", level=M, tags=("data", "return"),
      covers=("§12.10-3", "§5.3.5-2", "§6.8-4", "§6.8-7"),
      requirement="A field from a data.share becomes a provided record with that share's "
      "purposes and the category §6.8-2 suggests for its name when the share lists that "
      "category, else the share's first category; a data.return holds each such record.",
      accepts="for shares (categories [1, 2, 7], purposes [2, 5]: email, iban, nickname, "
      "passport_number) and (categories [2, 14], purposes [3]: phone): exactly the records "
      "email 2, iban 7, nickname 1, passport_number 1 (8 not listed) with purposes [2, 5], and "
      "phone 2 with purposes [3], each with its value, source provided")
async def records_field_by_field(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    since = now_ms()
    m = marker(ctx)
    first = {"email": f"{m}@example.org", "iban": f"DE{m}", "nickname": f"nick {m}",
             "passport_number": f"P{m}"}
    second = {"phone": f"+1 555 {m}"}
    await share(ctx, c, first, purposes=(2, 5), categories=(1, 2, 7))
    await share(ctx, c, second, purposes=(3,), categories=(2, 14))
    wants = [Want(f, v, suggest_category(f) if suggest_category(f) in (1, 2, 7) else 1, (2, 5))
             for f, v in first.items()]
    wants.append(Want("phone", second["phone"], 2, (3,)))
    expect_exactly(ctx, await records_of(ctx, c), wants,
                   {*first.values(), *second.values()}, since)


@case(id="RET-002", clause="§12.10-3", level=M, tags=("data", "return", "privacy"),
      covers=("§5.3.5-2",),
      requirement="A data.return holds the records the vendor holds about the customer in the "
      "relationship — and no other relationship's, however many the vendor holds.",
      accepts="two customers share the same field names with different values; each one's "
      "data.return holds its own values and none of the other's")
async def only_the_requesters_records(ctx: CaseContext) -> None:
    since = now_ms()
    customers = [Customer(ctx), Customer(ctx)]
    values: list[dict[str, str]] = []
    for c in customers:
        await c.agree()
        m = marker(ctx)
        fields = {"email": f"{m}@example.org", "city": f"City {m}"}
        await share(ctx, c, fields, purposes=(2,), categories=(2,))
        values.append(fields)
    for i, c in enumerate(customers):
        mine, theirs = values[i], values[1 - i]
        records = await records_of(ctx, c)
        leaked = [r for r in records if any(v in r.value for v in theirs.values())]
        ctx.expect(not leaked, expected=f"customer {i + 1}: none of customer {2 - i}'s records",
                   actual="; ".join(map(_show, leaked)))
        expect_exactly(ctx, records, [Want(f, v, 2, (2,)) for f, v in mine.items()],
                       set(mine.values()), since)


@case(id="RET-003", clause="§5.3.6-2", level=S, tags=("data", "return", "address"),
      covers=("§12.10-1",),
      requirement="A vendor SHOULD replace the value it holds under each field an "
      "address.update gives; the record keeps its purposes and category, and a field not held "
      "before gets the category §6.8-2 suggests and purpose 1.",
      accepts="after a share of email (purposes [2, 5], categories [1, 9]: email is held with "
      "category 1, not the 2 it suggests) and an address.update of email and city: one email "
      "record with the new value, purposes [2, 5], category 1; city with category 2, purposes "
      "[1]")
async def address_update_replaces(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    since = now_ms()
    m = marker(ctx)
    await share(ctx, c, {"email": f"old-{m}@example.org"}, purposes=(2, 5), categories=(1, 9))
    new = {"email": f"new-{m}@example.org", "city": f"Town {m}"}
    await update(ctx, c, new)
    expect_exactly(ctx, await records_of(ctx, c),
                   [Want("email", new["email"], 1, (2, 5)), Want("city", new["city"], 2, (1,))],
                   {f"old-{m}@example.org", *new.values()}, since)


@case(id="RET-004", clause="§12.10-2", level=M, tags=("data", "return", "withdraw"),
      covers=("§5.3.3-2", "§12.10-3"),
      requirement="A data.withdraw removes the data of the shares it names and no other: the "
      "data.erased lists exactly those shares, and the data of the shares not withdrawn is "
      "still held and returned.",
      accepts="for shares A (email) and B (city) and a withdrawal of A: data.erased naming A "
      "alone; then a data.return holding B's city record, unchanged, and no email")
async def withdrawal_removes_only_its_shares(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    since = now_ms()
    m = marker(ctx)
    first = await share(ctx, c, {"email": f"gone-{m}@example.org"})
    kept = {"city": f"Kept {m}"}
    await share(ctx, c, kept, purposes=(3,), categories=(2,))
    msg, answer = await c.send(DataWithdraw(agreement=c.rel.agreement or bytes(32),
                                            shares=(first.hash,)))
    expect_receipt(ctx, answer, msg)
    erased = next((r for r in answer.replies if isinstance(r.body, DataErased)), None)
    ctx.expect(erased is not None and erased.body.withdraw == msg.hash
               and tuple(erased.body.shares) == (first.hash,),
               expected="data.erased naming the withdrawal and share A alone",
               actual=answer.describe() if erased is None else
               f"data.erased of {len(erased.body.shares)} shares")
    expect_exactly(ctx, await records_of(ctx, c), [Want("city", kept["city"], 2, (3,))],
                   {f"gone-{m}@example.org", kept["city"]}, since)


@case(id="RET-007", clause="§12.10-2", level=M, tags=("data", "return", "withdraw", "address"),
      covers=("§5.3.6-2", "§12.10-3"),
      requirement="A value an address.update put in place of a field held from a data.share is "
      "held as that field was: withdrawing the share deletes it, so the update does not let "
      "the vendor keep the field for longer than the customer shared it.",
      accepts="for a share A of email, an address.update of email and a withdrawal of A: "
      "data.erased naming A; then a data.return with neither the old nor the new email")
async def withdrawal_removes_updated_values(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    since = now_ms()
    m = marker(ctx)
    old, new = f"shared-{m}@example.org", f"updated-{m}@example.org"
    first = await share(ctx, c, {"email": old})
    await update(ctx, c, {"email": new})
    await withdraw(ctx, c, (first.hash,), (first.hash,))
    expect_exactly(ctx, await records_of(ctx, c), [], {old, new}, since)


@case(id="RET-008", clause="§5.3.2-1", level=M,
      tags=("data", "return", "withdraw", "address", "privacy"),
      covers=("§12.10-2", "§12.10-1", "§5.3.3-2"),
      requirement="A data.withdraw with an empty shares withdraws every live share and every "
      "field held from an address.update (one the vendor did not hold before it, which no "
      "data.withdraw can name): what the customer gave, it takes back whole.",
      accepts="for a share A of email and an address.update of city: after a data.withdraw "
      "naming no share, a data.erased naming A; then a data.return with neither the email nor "
      "the city")
async def withdrawing_all_takes_update_fields(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    since = now_ms()
    m = marker(ctx)
    email, city = f"all-{m}@example.org", f"Town {m}"
    first = await share(ctx, c, {"email": email})
    await update(ctx, c, {"city": city})
    await withdraw(ctx, c, (), (first.hash,))
    expect_exactly(ctx, await records_of(ctx, c), [], {email, city}, since)
