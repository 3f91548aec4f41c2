"""Relationship cases: terms, data, address, intentcast, keys, chain and history (§2.6, §5,
§7, §8, §12.5)."""

from __future__ import annotations

from typing import Any

from vrmproto._envelope import Signed, open_sealed
from vrmproto._errors import ProtocolError
from vrmproto._keys import Context, Identity
from vrmproto._messages import (
    AddressUpdate,
    DataErased,
    DataRequest,
    DataReturn,
    DataShare,
    DataWithdraw,
    FieldsContent,
    Intentcast,
    IntentDecline,
    IntentOffer,
    KeyRotate,
    Money,
    RecordsContent,
    TermsAccept,
    TermsOffer,
)
from vrmproto._state import State
from vrmproto._vocab import DATA_FORMAT, TermRef, latest
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    Customer,
    expect_history,
    expect_problem,
    expect_receipt,
    fetch_history,
    identity,
    new_id,
    now_ms,
    post,
    read_answer,
    share_body,
    sign,
    target,
)

M, S = Level.MUST, Level.SHOULD
DAY = 86_400_000


def _share(c: Customer, ctx: CaseContext, fields: dict[str, str], *,
           recipient: bytes | None = None, enc_key: bytes | None = None,
           agreement: bytes | None = None) -> tuple[DataShare, bytes]:
    return share_body(ctx, c, fields, recipient=recipient, enc_key=enc_key, agreement=agreement)


def _reply(answer_replies: tuple[Signed[Any], ...], kind: type[Any]) -> Any:
    for r in answer_replies:
        if isinstance(r.body, kind):
            return r
    return None


# -- terms (§5.2) ----------------------------------------------------------------------------------


@case(id="TRM-001", clause="§5.2.2-1", level=M, tags=("terms",), covers=("§5.2.2-2", "§7-4"),
      requirement="A vendor accepting an offer MUST answer terms.accept naming the offer's hash "
      "and repeating its terms; both sides then hold the same agreement.",
      accepts="a receipt, then terms.accept (offer = hash, same terms) for terms the vendor "
      "lists in accepts_terms")
async def terms_accepted(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    ctx.expect(c.rel.agreement is not None, expected="an agreement", actual="none")


@case(id="TRM-002", clause="§5.2.3-1", level=M, tags=("terms",),
      covers=("§5.2.3-3", "§6.2-1", "§6.3-2"),
      requirement="A vendor that does not accept an offer MUST answer with a signed terms.reject "
      "(optionally with a counter-offer) naming the offer's hash — never silence.",
      accepts="terms.accept, or terms.reject naming the offer (a counter must cite known terms)")
async def terms_answer_is_signed(ctx: CaseContext) -> None:
    c = Customer(ctx)
    terms = (TermRef.of(latest("vrm.no-tracking")), TermRef.of(latest("vrm.no-third-party")),
             TermRef.of(latest("vrm.delete-after"), days=1),
             TermRef.of(latest("myterms.PDC-AI")))
    msg, answer = await c.send(TermsOffer(terms=terms, enc_key=c.identity.enc_public_key))
    expect_receipt(ctx, answer, msg)
    ctx.expect(c.rel.state in (State.AGREED, State.REJECTED, State.COUNTERED) and not answer.error,
               expected="terms.accept or terms.reject answering the offer",
               actual=answer.describe())


@case(id="TRM-003", clause="§6.2-3", level=M, tags=("terms",), covers=("§5.2.1-1",),
      requirement="A receiver MUST refuse a term reference whose hash matches no text it knows.",
      accepts="problem unknown_term")
async def unknown_term_hash(ctx: CaseContext) -> None:
    c = Customer(ctx)
    good = TermRef.of(latest("vrm.no-tracking"))
    bad = TermRef(good.id, good.version, bytes(32))
    # built by hand: our own Relationship.send would refuse the unknown term
    msg = sign(ctx, TermsOffer(terms=(bad,), enc_key=c.identity.enc_public_key), c.identity)
    expect_problem(ctx, await post(ctx, msg.envelope), ["unknown_term"])


@case(id="TRM-004", clause="§7-2", level=M, tags=("terms", "state"),
      requirement="A message type sent by the wrong role (a customer sending terms.accept) MUST "
      "be refused as an illegal transition.",
      accepts="problem illegal_transition")
async def accept_from_customer(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body = TermsAccept(offer=c.rel.agreement or bytes(32), terms=c.rel.terms)
    msg = c.unchecked(body)
    expect_problem(ctx, await post(ctx, msg.envelope), ["illegal_transition"])


@case(id="TRM-005", clause="§7-1", level=M, tags=("terms", "state"),
      requirement="A message the state table does not allow in the relationship's state (an "
      "intentcast inside an agreed relationship) MUST be refused.",
      accepts="problem illegal_transition")
async def not_in_table(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body = Intentcast(what="anything", reply_by=now_ms() + 60_000, constraints=(),
                      memberships=())
    msg = c.unchecked(body)
    expect_problem(ctx, await post(ctx, msg.envelope), ["illegal_transition"])


@case(id="CHN-001", clause="§4.5-6", level=M, tags=("state", "history"),
      requirement="A message whose prev does not link to the sender's last message MUST be "
      "refused.",
      accepts="problem chain_broken")
async def broken_chain(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    fields = {"email": "chain@example.org"}
    body, msg_id = _share(c, ctx, fields)
    msg = sign(ctx, body, c.identity, thread=c.rel.thread, prev=bytes(32), msg_id=msg_id)
    expect_problem(ctx, await post(ctx, msg.envelope), ["chain_broken"])


# -- data (§5.3, §5.5) -----------------------------------------------------------------------------


@case(id="DAT-001", clause="§5.6.1-2", level=M, tags=("data",),
      requirement="A data share under an agreement, sealed to the vendor's published key, MUST "
      "be acknowledged with a receipt.",
      accepts="a receipt")
async def share_under_agreement(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body, msg_id = _share(c, ctx, {"email": "doc@example.org"})
    msg, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, msg)


@case(id="DAT-002", clause="§5.5-4", level=M, tags=("data", "sealed"),
      requirement="Sealed content the vendor cannot open with its key MUST be refused.",
      accepts="problem cannot_decrypt")
async def share_to_wrong_key(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    other = identity(ctx)
    body, msg_id = _share(c, ctx, {"email": "x@example.org"}, enc_key=other.enc_public_key)
    msg = c.unchecked(body, msg_id=msg_id)
    expect_problem(ctx, await post(ctx, msg.envelope), ["cannot_decrypt"])


@case(id="DAT-003", clause="§5.5-5", level=M, tags=("data", "sealed", "forwarding"),
      requirement="Sealed content whose signed inner recipient is someone else (surreptitious "
      "forwarding) MUST be refused.",
      accepts="problem wrong_recipient")
async def share_forwarded(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    other = identity(ctx)
    body, msg_id = _share(c, ctx, {"email": "x@example.org"}, recipient=other.public_key)
    msg = c.unchecked(body, msg_id=msg_id)
    expect_problem(ctx, await post(ctx, msg.envelope), ["wrong_recipient"])


@case(id="DAT-004", clause="§5.3-1", level=M, tags=("data", "state"),
      requirement="A data share citing no agreement of the relationship MUST be refused.",
      accepts="problem no_agreement")
async def share_without_agreement(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body, msg_id = _share(c, ctx, {"email": "x@example.org"}, agreement=bytes(range(32)))
    msg = c.unchecked(body, msg_id=msg_id)
    expect_problem(ctx, await post(ctx, msg.envelope), ["no_agreement"])


async def _records(ctx: CaseContext, c: Customer) -> tuple[list[Any], str]:
    msg, answer = await c.send(DataRequest(agreement=c.rel.agreement or bytes(32),
                                           format=DATA_FORMAT))
    expect_receipt(ctx, answer, msg)
    ret = _reply(answer.replies, DataReturn)
    ctx.expect(ret is not None, expected="a data.return reply", actual=answer.describe())
    try:
        content = open_sealed(ret, identity=c.identity, content_type=RecordsContent)
    except ProtocolError as exc:
        ctx.fail(expected="data.return sealed to the customer's key", actual=str(exc))
    return list(content.records), answer.describe()


@case(id="DAT-005", clause="§5.3.5-2", level=M, tags=("data", "return"),
      covers=("§12.10-3", "§5.3.5-1", "§5.5-1", "§6.8-1", "§6.8-2", "§6.8-3", "§6.8-4",
              "§6.8-5", "§6.8-6", "§6.8-7", "§6.8-8"),
      requirement="On data.request a vendor MUST return the data it holds about the customer in "
      "the standard form, sealed to the customer.",
      accepts="data.return whose records include every field the customer shared")
async def data_returned(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body, msg_id = _share(c, ctx, {"email": "ret@example.org", "city": "Park City"})
    msg, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, msg)
    records, seen = await _records(ctx, c)
    fields = {r.field: r.value for r in records}
    ctx.expect(fields.get("email") == "ret@example.org" and fields.get("city") == "Park City",
               expected="records with email and city", actual=f"{fields} ({seen})")


@case(id="DAT-006", clause="§5.3.3-2", level=M, tags=("data", "withdraw"),
      covers=("§5.3.2-2", "§12.10-2"),
      requirement="On data.withdraw a vendor MUST delete the data and confirm with data.erased "
      "naming exactly the withdrawn shares; a later data.return MUST NOT contain it.",
      accepts="data.erased for the share; no withdrawn field in a later data.return")
async def withdraw_erases(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body, msg_id = _share(c, ctx, {"phone": "+1 555 0100"})
    share, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, share)
    msg, answer = await c.send(DataWithdraw(agreement=c.rel.agreement or bytes(32),
                                            shares=(share.hash,)))
    expect_receipt(ctx, answer, msg)
    erased = _reply(answer.replies, DataErased)
    ctx.expect(erased is not None and tuple(erased.body.shares) == (share.hash,),
               expected="data.erased naming the share", actual=answer.describe())
    records, seen = await _records(ctx, c)
    ctx.expect(all(r.value != "+1 555 0100" for r in records),
               expected="no withdrawn data returned", actual=seen)


@case(id="DAT-007", clause="§5.6.1-2", level=M, tags=("data", "address"),
      requirement="An address update under an agreement MUST be acknowledged.",
      accepts="a receipt")
async def address_update(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    msg_id = new_id(ctx)
    sealed = c.rel.seal(FieldsContent(fields={"street": "1 Main St", "city": "Park City"}),
                        msg_id=msg_id)
    msg, answer = await c.send(AddressUpdate(agreement=c.rel.agreement or bytes(32),
                                             sealed=sealed), msg_id=msg_id)
    expect_receipt(ctx, answer, msg)


# -- intentcast (§5.4) -----------------------------------------------------------------------------


def _intentcast() -> Intentcast:
    return Intentcast(
        what="4-wheel-drive SUV", where="Park City, UT", reply_by=now_ms() + 60_000,
        start=now_ms() + 30 * DAY, end=now_ms() + 35 * DAY,
        constraints=("no prepaid gas", "no insurance"),
        memberships=("Avis Wizard", "Budget FastBreak", "Hertz 1 Club"),
        max_price=Money(amount=100_000, currency="USD"),
    )


@case(id="INT-001", clause="§5.4.2-1", level=M, tags=("intentcast",), covers=("§7-1",),
      requirement="An intentcast MUST be acknowledged with a receipt; an intent.offer or "
      "intent.decline that answers it MUST name the intentcast's hash.",
      accepts="a receipt, and any intent.offer or intent.decline naming this intentcast (a "
      "vendor may also stay silent: INT-004)")
async def intentcast_answered(ctx: CaseContext) -> None:
    c = Customer(ctx)
    msg, answer = await c.send(_intentcast())
    expect_receipt(ctx, answer, msg)
    answers = [r for r in answer.replies if isinstance(r.body, IntentOffer | IntentDecline)]
    ctx.expect(all(r.body.intent == msg.hash for r in answers),
               expected="every answer naming the intentcast", actual=answer.describe())


@case(id="INT-004", clause="§5.4.3-2", level=S, tags=("intentcast",),
      requirement="A vendor SHOULD answer each intentcast it receives before its reply_by, with "
      "an offer or a decline.",
      accepts="an intent.offer or intent.decline in the response to the intentcast")
async def intentcast_gets_an_answer(ctx: CaseContext) -> None:
    c = Customer(ctx)
    msg, answer = await c.send(_intentcast())
    expect_receipt(ctx, answer, msg)
    reply = _reply(answer.replies, IntentOffer) or _reply(answer.replies, IntentDecline)
    ctx.expect(reply is not None, expected="intent.offer or intent.decline",
               actual=answer.describe())


# -- keys (§2.6) -----------------------------------------------------------------------------------


async def _rotate(ctx: CaseContext, c: Customer, reason: str) -> Identity:
    old = c.identity
    msg, answer = await c.rotate(identity(ctx), reason=reason)
    expect_receipt(ctx, answer, msg)
    return old


@case(id="KEY-001", clause="§2.6-1", level=M, tags=("keys",),
      requirement="After a key.rotate signed by the old key and proved by the new one, messages "
      "from the new key MUST be accepted.",
      accepts="receipts for the rotation and for a data share signed by the new key")
async def rotation_accepted(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    await _rotate(ctx, c, "rotate")
    body, msg_id = _share(c, ctx, {"email": "new-key@example.org"})
    msg, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, msg)


@case(id="KEY-002", clause="§2.6-2", level=M, tags=("keys", "signature"), covers=("§5.6.3-1",),
      requirement="A key.rotate whose proof is not the new key's signature MUST be refused.",
      accepts="problem bad_signature")
async def rotation_bad_proof(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    new = identity(ctx)
    body = KeyRotate(new_key=new.public_key, new_enc_key=new.enc_public_key,
                     proof=c.identity.sign(Context.KEY_ROTATION, b"not the proof"),
                     reason="rotate")
    msg = c.unchecked(body)
    expect_problem(ctx, await post(ctx, msg.envelope), ["bad_signature"])


@case(id="KEY-003", clause="§2.6-3", level=M, tags=("keys",), covers=("§5.6.3-2",),
      requirement="After a rotation, a message from the old key MUST be refused with "
      "key_rotated.",
      accepts="problem key_rotated")
async def old_key_after_rotation(ctx: CaseContext) -> None:
    await _old_key_refused(ctx, "rotate", "key_rotated")


@case(id="KEY-004", clause="§2.6-4", level=M, tags=("keys",),
      requirement="After a rotation for compromise, a message from the old key MUST be refused "
      "with key_revoked.",
      accepts="problem key_revoked")
async def revoked_key(ctx: CaseContext) -> None:
    await _old_key_refused(ctx, "compromise", "key_revoked")


async def _old_key_refused(ctx: CaseContext, reason: str, code: str) -> None:
    """Rotate for ``reason``, then send a share signed by the old key: refused with ``code``."""
    c = Customer(ctx)
    await c.agree()
    old = await _rotate(ctx, c, reason)
    body, msg_id = _share(c, ctx, {"email": "old@example.org"})
    msg = sign(ctx, body, old, thread=c.rel.thread, prev=c.rel.our_head, msg_id=msg_id)
    expect_problem(ctx, await post(ctx, msg.envelope), [code])


# -- history (§8, §12.5) ---------------------------------------------------------------------------


@case(id="HIST-001", clause="§8.3-1", level=M, tags=("history",),
      covers=("§8.1-1", "§8.2-1", "§8.2-3", "§12.5-3"),
      requirement="The endpoint's history of a relationship MUST hold exactly the messages "
      "exchanged, in order, with intact hash links, so both sides' logs compare equal.",
      accepts="a history export that verifies and compares equal to the suite's own log")
async def history_matches(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body, msg_id = _share(c, ctx, {"email": "hist@example.org"})
    msg, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, msg)
    await expect_history(ctx, c)


@case(id="HIST-002", clause="§12.5-4", level=M, tags=("history", "privacy"),
      requirement="Only the relationship's current peer may fetch its history: a receiver "
      "MUST refuse a verified request signed by any other key with 403 and not_a_party.",
      accepts="HTTP 403, problem not_a_party, for a stranger's request")
async def history_for_strangers(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    ex = await fetch_history(ctx, c, who=identity(ctx))
    expect_problem(ctx, read_answer(ex, target(ctx)), ["not_a_party"])
