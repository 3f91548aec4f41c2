"""Key rotation details, erasure in the history, and the history export's own checks (§2.6,
§5.2.2-3, §8.4, §12.5)."""

from __future__ import annotations

from vrmproto import _codec
from vrmproto._binding import decode_history
from vrmproto._errors import Problem, ProtocolError
from vrmproto._history import verify_entries
from vrmproto._keys import Context
from vrmproto._messages import DataWithdraw, KeyRotate
from vrmproto._relationship import sign_problem
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    Customer,
    expect_history,
    expect_problem,
    expect_receipt,
    fetch_history,
    history_entries,
    identity,
    new_id,
    now_ms,
    post,
    read_answer,
    share_body,
    target,
)
from .data import returned
from .envelope import SMALL_ORDER_KEY
from .returns import update, withdraw

M = Level.MUST


@case(id="KEY-005", clause="§5.6.3-1", level=M, tags=("keys",), covers=("§2.1-2",),
      requirement="A receiver MUST refuse a key.rotate whose new_key is not a valid Ed25519 "
      "key with bad_key.",
      accepts="problem bad_key for a rotation to a small-order key")
async def rotate_to_bad_key(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body = KeyRotate(new_key=SMALL_ORDER_KEY, new_enc_key=bytes(range(32)),
                     proof=c.identity.sign(Context.KEY_ROTATION, b"any"), reason="rotate")
    msg = c.unchecked(body)
    expect_problem(ctx, await post(ctx, msg.envelope), ["bad_key"])


@case(id="KEY-006", clause="§2.6-5", level=M, tags=("keys", "sealed", "history"),
      covers=("§5.6.3-2", "§12.5-4"),
      requirement="After accepting a key.rotate a receiver MUST address its messages to new_key "
      "and seal content to new_enc_key; the history then belongs to the new key only.",
      accepts="receipts and a data.return addressed and sealed to the new keys; the history "
      "export refused to the old key (403 not_a_party)")
async def after_rotation(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    old = c.identity
    msg, answer = await c.rotate(identity(ctx))
    expect_receipt(ctx, answer, msg)
    body, msg_id = share_body(ctx, c, {"email": "rotated@example.org"})
    msg, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, msg)
    records = await returned(ctx, c)  # opened with the new identity only
    ctx.expect("email" in records, expected="the share returned", actual=repr(sorted(records)))
    ex = await fetch_history(ctx, c, who=old)
    answer = read_answer(ex, target(ctx))
    expect_problem(ctx, answer, ["not_a_party"])


@case(id="HIST-003", clause="§8.4-1", level=M, tags=("history", "erasure", "withdraw"),
      covers=("§5.2.2-3", "§8.4-3", "§8.1-4", "§5.3.2-2", "§12.10-2", "§3.4-6"),
      requirement="A vendor that accepts a data.withdraw MUST erase the withdrawn shares' bodies "
      "from its history, as the erased form {hdr, sig} with index, msg_hash and link unchanged; "
      "it MUST NOT erase the agreement's offer and accept, or change any other entry.",
      accepts="a history export equal to the suite's log except the withdrawn share, which is "
      "its exact erased form; the offer, the accept and the other share intact")
async def withdrawn_bodies_erased(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    shares = []
    for fields in ({"email": "gone@example.org"}, {"city": "Park City"}):
        body, msg_id = share_body(ctx, c, fields)
        msg, answer = await c.send(body, msg_id=msg_id)
        expect_receipt(ctx, answer, msg)
        shares.append(msg)
    msg, answer = await c.send(DataWithdraw(agreement=c.rel.agreement or bytes(32),
                                            shares=(shares[0].hash,)))
    expect_receipt(ctx, answer, msg)
    theirs = await expect_history(ctx, c)  # same indexes, hashes and links
    ours = c.rel.history.entries()
    erased = shares[0].without_body().envelope
    wrong = [
        e.index for e, o in zip(theirs, ours, strict=True)
        if e.envelope != (erased if o.msg_hash == shares[0].hash else o.envelope)
    ]
    ctx.expect(not wrong, expected="only the withdrawn share erased, in its exact erased form",
               actual=f"entries {wrong} differ from the suite's "
               "(the withdrawn share not erased, or another entry changed)")


@case(id="HIST-011", clause="§5.3.2-2", level=M,
      tags=("history", "erasure", "withdraw", "address", "privacy"),
      covers=("§12.10-2", "§5.3.6-2", "§8.4-3"),
      requirement="A vendor that accepts a data.withdraw MUST delete every copy of the "
      "withdrawn data it holds: an address.update that put a value in place of a withdrawn "
      "share's (§5.3.6-2) carries a copy in its body, which it MUST erase from its history "
      "with the share's.",
      accepts="for a share A of email, an address.update of email and a withdrawal of A: a "
      "history export equal to the suite's log but for A and the update, each its exact erased "
      "form; the offer and the accept intact")
async def withdrawn_values_erased_from_updates(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body, msg_id = share_body(ctx, c, {"email": "shared@example.org"})
    share, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, share)
    updated = await update(ctx, c, {"email": "updated@example.org"})
    await withdraw(ctx, c, (share.hash,), (share.hash,))
    theirs = await expect_history(ctx, c)  # same indexes, hashes and links
    erased = {m.hash: m.without_body().envelope for m in (share, updated)}
    wrong = [e.index for e, o in zip(theirs, c.rel.history.entries(), strict=True)
             if e.envelope != erased.get(o.msg_hash, o.envelope)]
    ctx.expect(not wrong, expected="the withdrawn share and the update that replaced its email "
               "erased, in their exact erased forms; nothing else changed",
               actual=f"entries {wrong} differ from the suite's (the update's body, holding the "
               "withdrawn email's new value, kept?)")


@case(id="HIST-004", clause="§12.5-1", level=M, tags=("history",),
      requirement="A receiver MUST answer a history request body that is not a map of exactly "
      "req (bin) and sig (64-byte bin) with 401 and unauthorized, and a req that is not the "
      "request map with 400 (malformed, or invalid_field for a field of the wrong type).",
      accepts="401 unauthorized for a request without sig; 400 malformed for a req that is not "
      "a map; 400 malformed or invalid_field for a str created")
async def history_request_shape(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    t = target(ctx)
    req = {"created": now_ms(), "from": c.identity.public_key, "nonce": new_id(ctx),
           "start": 0, "thread": c.rel.thread, "to": t.key}
    bodies: list[tuple[bytes, list[str]]] = [
        (_codec.encode({"req": _codec.encode(req)}), ["unauthorized"]),
    ]
    for raw, codes in ((b"\x93\x01\x02\x03", ["malformed"]),
                       (_codec.encode(req | {"created": "now"}), ["malformed", "invalid_field"])):
        sig = c.identity.sign(Context.REQUEST, raw)
        bodies.append((_codec.encode({"req": raw, "sig": sig}), codes))
    for body, codes in bodies:
        answer = read_answer(await ctx.post(t.history, body), t)
        expect_problem(ctx, answer, codes)


@case(id="HIST-005", clause="§12.5-2", level=M, tags=("history", "signature"),
      requirement="The receiver of a history request MUST check, in order, that to is its key "
      "(wrong_recipient), that created is within max_clock_skew_ms of its clock (expired), and "
      "that the signature verifies (bad_signature).",
      accepts="wrong_recipient, expired and bad_signature for the three faults")
async def history_request_checks(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    t = target(ctx)
    skew = t.limits.max_clock_skew_ms
    base = {"created": now_ms(), "from": c.identity.public_key, "nonce": new_id(ctx),
            "start": 0, "thread": c.rel.thread, "to": t.key}
    other = identity(ctx).public_key
    for change, code, flip in (({"to": other}, "wrong_recipient", False),
                               ({"created": now_ms() - skew - 60_000}, "expired", False),
                               ({}, "bad_signature", True)):
        raw = _codec.encode(base | change)
        sig = c.identity.sign(Context.REQUEST, raw)
        if flip:
            sig = bytes([sig[0] ^ 1]) + sig[1:]
        ex = await ctx.post(t.history, _codec.encode({"req": raw, "sig": sig}))
        expect_problem(ctx, read_answer(ex, t), [code])


@case(id="HIST-006", clause="§12.5-4", level=M, tags=("history",),
      requirement="A receiver MUST refuse a verified history request for a thread it does not "
      "hold with 404 and no_relationship.",
      accepts="HTTP 404, problem no_relationship")
async def history_of_unknown_thread(ctx: CaseContext) -> None:
    c = Customer(ctx)  # never sends: the endpoint holds no such thread
    ex = await fetch_history(ctx, c)
    expect_problem(ctx, read_answer(ex, target(ctx)), ["no_relationship"])


@case(id="HIST-007", clause="§8.1-5", level=M, tags=("history", "problem", "state"),
      requirement="When the peer refuses a message with a problem whose ref is its hash and "
      "whose code may not be retried, the sender MUST drop that message, and every message of "
      "its own logged after it, from its history, and restore the relationship's state.",
      accepts="after the customer refuses the vendor's terms.accept (problem invalid_field, "
      "ref = its hash): the history export ends before the accept, and a data.share under the "
      "dropped agreement is refused")
async def refused_reply_dropped(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    entries = c.rel.history.entries()
    accept = entries[-1]
    problem = sign_problem(Problem.INVALID_FIELD, "the suite refuses this terms.accept",
                           identity=c.identity, now=now_ms(), msg_id=new_id(ctx),
                           to=target(ctx).key, thread=c.rel.thread, ref=accept.msg_hash)
    answer = await post(ctx, problem.envelope)
    ctx.expect(answer.status == 204, expected="HTTP 204 for the problem",
               actual=answer.describe())
    theirs = history_entries(ctx, await fetch_history(ctx, c))
    ctx.expect([e.msg_hash for e in theirs] == [e.msg_hash for e in entries[:-1]],
               expected=f"the history without the refused terms.accept ({len(entries) - 1} "
               "entries)", actual=f"{len(theirs)} entries, the accept "
               + ("still there" if any(e.msg_hash == accept.msg_hash for e in theirs)
                  else "gone"))
    body, msg_id = share_body(ctx, c, {"email": "dropped@example.org"},
                              agreement=accept.msg_hash)
    msg = c.unchecked(body, msg_id=msg_id)
    expect_problem(ctx, await post(ctx, msg.envelope), ["no_agreement", "illegal_transition"])


@case(id="HIST-008", clause="§12.5-3", level=M, tags=("history",),
      requirement="A history export MUST start at the entry the request's start names.",
      accepts="for start = 2 on a thread of at least four entries: entries from index 2 on, "
      "equal to the suite's own")
async def export_from_start(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    body, msg_id = share_body(ctx, c, {"city": "Park City"})
    msg, answer = await c.send(body, msg_id=msg_id)
    expect_receipt(ctx, answer, msg)
    ours = c.rel.history.entries()
    ex = await fetch_history(ctx, c, start=2)
    ctx.expect(ex.status == 200, expected="HTTP 200 with the history export",
               actual=read_answer(ex, target(ctx)).describe())
    try:
        entries = decode_history(ex.response_body)
        verify_entries(entries, start_link=ours[1].link,
                       parties=(c.identity.public_key, target(ctx).key))
    except ProtocolError as exc:
        ctx.fail(expected="entries from index 2 that verify, linked to entry 1 (§8.2)",
                 actual=str(exc))
    ctx.expect(bool(entries) and entries[0].index == 2
               and [e.envelope for e in entries] == [e.envelope for e in ours[2:len(entries) + 2]],
               expected=f"entries 2 to {len(ours) - 1}, as the suite holds them",
               actual=f"indexes {[e.index for e in entries]}")
