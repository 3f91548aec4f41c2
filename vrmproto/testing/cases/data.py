"""Data under an agreement, sealed content, and intentcast fields (§5.3, §5.4, §5.5, §6.6–§6.8,
§12.10).

The sealed-content cases build the content by hand (the core would never seal something wrong),
seal it to the endpoint's published X25519 key, and put it in an otherwise valid data.share of an
agreed relationship, so that the sealed content is the only thing wrong.
"""

from __future__ import annotations

import asyncio
from typing import Any

from vrmproto import _codec
from vrmproto._envelope import Signed, open_sealed
from vrmproto._errors import ProtocolError
from vrmproto._keys import Context, Identity, seal, sha256
from vrmproto._messages import (
    DataErased,
    DataRequest,
    DataReturn,
    DataShare,
    DataWithdraw,
    RecordsContent,
    TermsOffer,
)
from vrmproto._vocab import DATA_FORMAT, DataRecord
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    DAY_MS,
    Customer,
    acceptable_terms,
    expect_problem,
    expect_receipt,
    forged,
    identity,
    new_id,
    now_ms,
    post,
    share_body,
    sign,
    target,
)

M = Level.MUST


def reply_of(replies: tuple[Signed[Any], ...], kind: type[Any]) -> Signed[Any] | None:
    """The first reply whose body is a ``kind``."""
    return next((r for r in replies if isinstance(r.body, kind)), None)


async def returned(ctx: CaseContext, c: Customer) -> dict[str, list[DataRecord]]:
    """Ask for the data the endpoint holds (§5.3.4); its records by field name."""
    msg, answer = await c.send(DataRequest(agreement=c.rel.agreement or bytes(32),
                                           format=DATA_FORMAT))
    expect_receipt(ctx, answer, msg)
    ret = reply_of(answer.replies, DataReturn)
    ctx.expect(ret is not None, expected="a data.return reply", actual=answer.describe())
    assert ret is not None
    try:
        content: RecordsContent = open_sealed(ret, identity=c.identity,
                                              content_type=RecordsContent)
    except ProtocolError as exc:
        ctx.fail(expected="data.return sealed to the customer", actual=str(exc))
    by_field: dict[str, list[DataRecord]] = {}
    for record in content.records:
        by_field.setdefault(record.field, []).append(record)
    return by_field


async def _share(ctx: CaseContext, c: Customer, fields: dict[str, str], **kw: Any
                 ) -> Signed[DataShare]:
    body, msg_id = share_body(ctx, c, fields, **kw)
    msg, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, msg)
    return msg


# -- data.share, data.withdraw, data.return (§5.3, §12.10) ----------------------------------------


@case(id="DAT-008", clause="§5.2.1-2", level=M, tags=("data", "sealed"),
      covers=("§5.5-2",),
      requirement="The vendor MUST seal content for the customer to the enc_key of the latest "
      "terms.offer it received in the thread.",
      accepts="a data.return that opens with the X25519 key named in the offer (which is not "
      "the one the customer's signing seed would give)")
async def sealed_to_offered_key(ctx: CaseContext) -> None:
    c = Customer(ctx)
    box = identity(ctx)  # the offer names this identity's X25519 key
    msg = sign(ctx, TermsOffer(terms=acceptable_terms(ctx), enc_key=box.enc_public_key),
               c.identity, thread=c.rel.thread)
    answer = await post(ctx, msg.envelope)
    expect_receipt(ctx, answer, msg)
    accept = answer.replies[1] if len(answer.replies) > 1 else None
    ctx.expect(accept is not None and accept.type == "terms.accept",
               expected="terms.accept", actual=answer.describe())
    assert accept is not None
    request = sign(ctx, DataRequest(agreement=msg.hash, format=DATA_FORMAT), c.identity,
                   thread=c.rel.thread, prev=msg.hash)
    answer = await post(ctx, request.envelope)
    expect_receipt(ctx, answer, request)
    ret = reply_of(answer.replies, DataReturn)
    ctx.expect(ret is not None, expected="a data.return", actual=answer.describe())
    assert ret is not None
    try:
        box.unseal(ret.body.sealed)
        opened = "opens with the offered key"
    except ProtocolError as exc:
        opened = f"does not open with the offered key: {exc}"
    ctx.expect(opened.startswith("opens"), expected="sealed to the offer's enc_key",
               actual=opened)


@case(id="DAT-009", clause="§5.3.1-3", level=M, tags=("data",),
      requirement="A receiver MUST refuse a data.share whose expires is not later than its "
      "current time with invalid_field.",
      accepts="problem invalid_field for a share that expired a minute ago")
async def share_already_expired(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body, msg_id = share_body(ctx, c, {"email": "late@example.org"}, expires=now_ms() - 60_000)
    msg = c.unchecked(body, msg_id=msg_id)
    expect_problem(ctx, await post(ctx, msg.envelope), ["invalid_field"])


#: How many relationships DAT-010 opens at most, when a loaded host delays its short share.
SHORT_SHARE_TRIES = 3


@case(id="DAT-010", clause="§12.10-4", level=M, tags=("data", "return", "slow"),
      covers=("§12.10-1", "§12.10-3", "§5.3.4-1", "§6.8-9"),
      requirement="Data from a share whose expires has passed MUST NOT be returned or kept; "
      "data still live MUST be returned, as provided records with the share's purposes.",
      accepts="after a share with a one-second lifetime has expired, data.return holds the "
      "live share's field (source provided, purposes [2]) and not the expired one's (the case "
      "waits for the expiry; when the short share itself arrives too late to be accepted, it "
      "starts again in a new relationship, three times at most)")
async def expired_share_not_returned(ctx: CaseContext) -> None:
    for attempt in range(SHORT_SHARE_TRIES):
        c = Customer(ctx)
        await c.agree()
        await _share(ctx, c, {"email": "kept@example.org"})
        short = now_ms() + 1_000
        body, msg_id = share_body(ctx, c, {"phone": "+1 555 0199"}, expires=short)
        msg, answer = await c.send(body, msg_id=msg_id)
        late = now_ms() >= short - 250  # our own delay, not the endpoint's rule, refused it
        if answer.receipt is not None or not late or attempt == SHORT_SHARE_TRIES - 1:
            expect_receipt(ctx, answer, msg)
            break
    await asyncio.sleep(max(0.0, (short - now_ms()) / 1000) + 0.1)
    records = await returned(ctx, c)
    kept = records.get("email", [])
    ctx.expect(any(r.value == "kept@example.org" and r.source == "provided"
                   and tuple(r.purposes) == (2,) for r in kept),
               expected="the live email, source provided, purposes [2]", actual=repr(kept))
    ctx.expect(all(r.value != "+1 555 0199" for rs in records.values() for r in rs),
               expected="no expired phone", actual=repr(records.get("phone")))


@case(id="DAT-011", clause="§5.3.2-1", level=M, tags=("data", "withdraw"),
      requirement="Each entry of a data.withdraw's shares MUST be the hash of a live data.share "
      "of the relationship; a receiver MUST refuse any other hash with invalid_field.",
      accepts="problem invalid_field for a withdrawal of an unknown share")
async def withdraw_unknown(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    await _share(ctx, c, {"email": "w@example.org"})
    body = DataWithdraw(agreement=c.rel.agreement or bytes(32), shares=(sha256(b"nothing"),))
    msg = c.unchecked(body)
    expect_problem(ctx, await post(ctx, msg.envelope), ["invalid_field"])


@case(id="DAT-012", clause="§5.3.3-2", level=M, tags=("data", "withdraw"),
      covers=("§5.3.2-2", "§5.3.3-1"),
      requirement="A data.erased MUST list exactly the shares the data.withdraw covered: with an "
      "empty shares, every share live when it was accepted.",
      accepts="for a withdrawal naming no share: data.erased naming this withdrawal and both "
      "live shares; neither field in a later data.return")
async def withdraw_everything(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    first = await _share(ctx, c, {"email": "all@example.org"})
    second = await _share(ctx, c, {"city": "Park City"})
    msg, answer = await c.send(DataWithdraw(agreement=c.rel.agreement or bytes(32), shares=()))
    expect_receipt(ctx, answer, msg)
    erased = reply_of(answer.replies, DataErased)
    ok = (erased is not None and erased.body.withdraw == msg.hash
          and set(erased.body.shares) == {first.hash, second.hash})
    ctx.expect(ok, expected="data.erased naming both shares", actual=answer.describe())
    records = await returned(ctx, c)
    ctx.expect("email" not in records and "city" not in records,
               expected="no withdrawn field returned", actual=repr(sorted(records)))


@case(id="DAT-013", clause="§12.10-1", level=M, tags=("data",), covers=("§6.8-2",),
      requirement="A vendor that cannot represent a field as a vrm-data/1 record (its name is "
      "not of the form of §6.8-2) MUST refuse the message with invalid_field.",
      accepts="problem invalid_field for a share of the field 'Email Address'")
async def field_cannot_be_held(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body, msg_id = share_body(ctx, c, {"Email Address": "x@example.org"})
    msg = c.unchecked(body, msg_id=msg_id)
    expect_problem(ctx, await post(ctx, msg.envelope), ["invalid_field"])


@case(id="DAT-014", clause="§6.6-1", level=M, tags=("data",),
      covers=("§6.7-1", "§5.3-2", "§5.1-2"),
      requirement="Purposes and personal-data categories are ints from 1 to 16; a receiver MUST "
      "refuse any other value (0, 17, a name) with invalid_field.",
      accepts="problem invalid_field for purposes [0], purposes [\"Marketing\"] and categories "
      "[17]")
async def purpose_numbers(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    for change in ({"purposes": [0]}, {"purposes": ["Marketing"]}, {"categories": [17]}):
        body, msg_id = share_body(ctx, c, {"email": "p@example.org"})
        wire = body.to_wire() | change
        raw = _codec.encode(wire)
        env = forged(ctx, c.identity, body=body, raw_body=raw, msg_id=msg_id,
                     thread=c.rel.thread, prev=c.rel.our_head)
        expect_problem(ctx, await post(ctx, env), ["invalid_field"])


@case(id="DAT-015", clause="§5.1-4", level=M, tags=("data", "body"),
      requirement="A receiver MUST refuse with invalid_field a body in which a field, optional "
      "or required, has the value nil.",
      accepts="problem invalid_field for a data.withdraw whose optional reason is nil")
async def nil_field(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body = DataWithdraw(agreement=c.rel.agreement or bytes(32), shares=())
    raw = _codec.encode(body.to_wire() | {"reason": None})
    env = forged(ctx, c.identity, body=body, raw_body=raw, thread=c.rel.thread,
                 prev=c.rel.our_head)
    expect_problem(ctx, await post(ctx, env), ["invalid_field"])


# -- sealed content (§5.5) -------------------------------------------------------------------------


def _sealed(ctx: CaseContext, c: Customer, msg_id: bytes, *, content: Any = None,
            to: bytes | None = None, msg: bytes | None = None, signer: Identity | None = None,
            payload: bytes | None = None, plaintext: bytes | None = None) -> bytes:
    """Sealed content built by hand (§5.5 steps 1–4), with any part replaced."""
    t = target(ctx)
    if plaintext is None:
        if payload is None:
            payload = _codec.encode({
                "content": {"fields": {"email": "s@example.org"}} if content is None else content,
                "msg": msg_id if msg is None else msg,
                "to": t.key if to is None else to,
            })
        sig = (signer or c.identity).sign(Context.SEALED, payload)
        plaintext = _codec.encode({"payload": payload, "sig": sig})
    return seal(plaintext, t.enc_key)


async def _share_sealed(ctx: CaseContext, c: Customer, msg_id: bytes, sealed: bytes,
                        agreement: bytes | None = None) -> Any:
    body = DataShare(agreement=agreement or c.rel.agreement or bytes(32), purposes=(2,),
                     categories=(2,), expires=now_ms() + DAY_MS, sealed=sealed)
    msg = c.unchecked(body, msg_id=msg_id)
    return await post(ctx, msg.envelope)


async def _agreed(ctx: CaseContext) -> Customer:
    c = Customer(ctx)
    await c.agree()
    return c


@case(id="SEAL-001", clause="§5.5-8", level=M, tags=("sealed",),
      covers=("§5.3.1-1", "§5.3.6-1"),
      requirement="A receiver MUST check sealed content against its table and refuse content "
      "that breaks it with invalid_field: a data.share holds a FieldsContent.",
      accepts="problem invalid_field for fields = {} and for a RecordsContent in a data.share")
async def sealed_content_fields(ctx: CaseContext) -> None:
    c = await _agreed(ctx)
    contents: tuple[dict[str, Any], ...] = ({"fields": {}}, {"records": []})
    for content in contents:
        msg_id = new_id(ctx)
        answer = await _share_sealed(ctx, c, msg_id, _sealed(ctx, c, msg_id, content=content))
        expect_problem(ctx, answer, ["invalid_field"])


@case(id="SEAL-002", clause="§5.5-3", level=M, tags=("sealed",),
      requirement="A receiver MUST refuse with malformed sealed content whose plaintext is not a "
      "map of exactly payload and sig, or whose payload is not a map of exactly content, msg "
      "and to.",
      accepts="problem malformed for an extra key beside payload and sig, and for a payload "
      "without to")
async def sealed_content_shape(ctx: CaseContext) -> None:
    c = await _agreed(ctx)
    msg_id = new_id(ctx)
    payload = _codec.encode({"content": {"fields": {"email": "s@example.org"}}, "msg": msg_id,
                             "to": target(ctx).key})
    sig = c.identity.sign(Context.SEALED, payload)
    extra = _codec.encode({"payload": payload, "sig": sig, "x": 1})
    answer = await _share_sealed(ctx, c, msg_id, _sealed(ctx, c, msg_id, plaintext=extra))
    expect_problem(ctx, answer, ["malformed"])
    msg_id = new_id(ctx)
    no_to = _codec.encode({"content": {"fields": {"email": "s@example.org"}}, "msg": msg_id})
    answer = await _share_sealed(ctx, c, msg_id, _sealed(ctx, c, msg_id, payload=no_to))
    expect_problem(ctx, answer, ["malformed"])


@case(id="SEAL-003", clause="§5.5-6", level=M, tags=("sealed", "forwarding"),
      requirement="A receiver MUST refuse with envelope_mismatch sealed content whose msg is not "
      "the id of the message that carries it.",
      accepts="problem envelope_mismatch")
async def sealed_for_other_message(ctx: CaseContext) -> None:
    c = await _agreed(ctx)
    msg_id = new_id(ctx)
    answer = await _share_sealed(ctx, c, msg_id, _sealed(ctx, c, msg_id, msg=new_id(ctx)))
    expect_problem(ctx, answer, ["envelope_mismatch"])


@case(id="SEAL-004", clause="§5.5-7", level=M, tags=("sealed", "signature"),
      requirement="A receiver MUST verify the sealed content's sig under the key that signed "
      "the message, and refuse content whose signature does not verify with bad_signature.",
      accepts="problem bad_signature for content signed by another key")
async def sealed_signed_by_other(ctx: CaseContext) -> None:
    c = await _agreed(ctx)
    msg_id = new_id(ctx)
    other = identity(ctx)
    answer = await _share_sealed(ctx, c, msg_id, _sealed(ctx, c, msg_id, signer=other))
    expect_problem(ctx, answer, ["bad_signature"])


@case(id="SEAL-005", clause="§5.5-9", level=M, tags=("sealed", "order"),
      requirement="A receiver MUST open sealed content only after every other check has passed, "
      "then check seal, shape, signature, shape, to, msg and content in this order.",
      accepts="no_agreement (undecryptable content + another agreement); bad_signature (bad "
      "signature + another to); wrong_recipient (another to + another msg); envelope_mismatch "
      "(another msg + bad content)")
async def sealed_order(ctx: CaseContext) -> None:
    c = await _agreed(ctx)
    other = identity(ctx)
    msg_id = new_id(ctx)
    answer = await _share_sealed(ctx, c, msg_id, bytes(80), agreement=sha256(b"other"))
    expect_problem(ctx, answer, ["no_agreement"])
    cases: list[tuple[dict[str, Any], str]] = [
        ({"signer": other, "to": other.public_key}, "bad_signature"),
        ({"to": other.public_key, "msg": new_id(ctx)}, "wrong_recipient"),
        ({"msg": new_id(ctx), "content": {"fields": {}}}, "envelope_mismatch"),
    ]
    for parts, code in cases:
        msg_id = new_id(ctx)
        answer = await _share_sealed(ctx, c, msg_id, _sealed(ctx, c, msg_id, **parts))
        expect_problem(ctx, answer, [code])


# -- intentcast fields (§5.4) ----------------------------------------------------------------------


@case(id="INT-002", clause="§5.4.1-2", level=M, tags=("intentcast",),
      requirement="A receiver MUST refuse an intentcast whose end is earlier than its start "
      "with invalid_field.",
      accepts="problem invalid_field")
async def intent_ends_before_start(ctx: CaseContext) -> None:
    who = identity(ctx)
    start = now_ms() + 30 * DAY_MS
    raw = _codec.encode({"constraints": [], "end": start - DAY_MS, "memberships": [],
                         "reply_by": now_ms() + 60_000, "start": start, "what": "a car"})
    env = forged(ctx, who, raw_body=raw, header={"type": "intentcast"})
    expect_problem(ctx, await post(ctx, env), ["invalid_field"])


@case(id="INT-003", clause="§5.4.4-1", level=M, tags=("intentcast",), covers=("§5.1-2",),
      requirement="currency MUST be an ISO 4217 alphabetic code ([A-Z]{3}); a receiver refuses "
      "a Money that breaks its table with invalid_field.",
      accepts="problem invalid_field for max_price in 'usd' and in 'DOLLARS'")
async def intent_currency(ctx: CaseContext) -> None:
    who = identity(ctx)
    for currency in ("usd", "DOLLARS"):
        raw = _codec.encode({"constraints": [], "max_price": {"amount": 100,
                                                              "currency": currency},
                             "memberships": [], "reply_by": now_ms() + 60_000, "what": "a car"})
        env = forged(ctx, who, raw_body=raw, header={"type": "intentcast"})
        expect_problem(ctx, await post(ctx, env), ["invalid_field"])

