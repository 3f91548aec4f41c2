"""Term references, the roster, what a vendor accepts, and who may speak in a thread (§4.5-5,
§5.2, §6.2–§6.5, §12.2-6)."""

from __future__ import annotations

from typing import Any

from vrmproto import _codec
from vrmproto._messages import DataRequest, Intentcast, TermsOffer, TermsReject
from vrmproto._state import State
from vrmproto._vocab import DATA_FORMAT, ROSTER, Term, TermRef
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    Answer,
    Customer,
    acceptable_terms,
    example_params,
    expect_problem,
    expect_receipt,
    forged,
    identity,
    now_ms,
    post,
    ref,
    sign,
    target,
)

M = Level.MUST


async def _offer_raw(ctx: CaseContext, terms: list[Any]) -> None:
    """Post a terms.offer whose terms array is ``terms`` as given, and expect invalid_field."""
    who = identity(ctx)
    raw = _codec.encode({"enc_key": who.enc_public_key, "terms": terms})
    expect_problem(ctx, await post(ctx, forged(ctx, who, raw_body=raw)), ["invalid_field"])


@case(id="TRM-006", clause="§6.2-4", level=M, tags=("terms",), covers=("§6.2-1", "§5.2.1-1"),
      requirement="A receiver MUST refuse with invalid_field a term reference that is not a map, "
      "has a key other than hash, id, params and version, lacks id, version or hash, or has a "
      "value of the wrong type or size (a hex hash, a bool version).",
      accepts="problem invalid_field for a bare id, an extra key, no hash, a hex hash and a "
      "bool version")
async def ill_formed_references(ctx: CaseContext) -> None:
    good: dict[str, Any] = ref("vrm.no-tracking").to_wire()
    no_hash = {k: v for k, v in good.items() if k != "hash"}
    for term in ("vrm.no-tracking", good | {"url": "https://example.org"}, no_hash,
                 good | {"hash": good["hash"].hex()}, good | {"version": True}):
        await _offer_raw(ctx, [term])


@case(id="TRM-007", clause="§6.2-5", level=M, tags=("terms",),
      requirement="A receiver MUST refuse an empty params map with invalid_field.",
      accepts="problem invalid_field")
async def empty_params(ctx: CaseContext) -> None:
    await _offer_raw(ctx, [ref("vrm.no-tracking").to_wire() | {"params": {}}])


@case(id="TRM-008", clause="§6.2-6", level=M, tags=("terms",),
      requirement="A list of term references MUST NOT cite the same id twice; a receiver MUST "
      "refuse such a list with invalid_field.",
      accepts="problem invalid_field")
async def same_term_twice(ctx: CaseContext) -> None:
    term = ref("vrm.no-tracking").to_wire()
    await _offer_raw(ctx, [term, term])


@case(id="TRM-009", clause="§6.3-3", level=M, tags=("terms",), covers=("§6.3-4",),
      requirement="A receiver MUST refuse with invalid_field a term reference that names an "
      "undeclared parameter, lacks a required one, gives a value of the wrong type (\"90\" for "
      "90) or outside the allowed range; parameter names MUST match [a-z][a-z0-9_]*.",
      accepts="problem invalid_field for each of: days missing, days = \"90\", days = 0, an "
      "undeclared parameter, a parameter named Days")
async def bad_parameters(ctx: CaseContext) -> None:
    base = ref("vrm.delete-after", days=90).to_wire()
    without_days = {k: v for k, v in base.items() if k != "params"}
    for term in (without_days, *(base | {"params": params} for params in (
            {"days": "90"}, {"days": 0}, {"days": 90, "hours": 1}, {"Days": 90}))):
        await _offer_raw(ctx, [term])


def _roster_offers(ctx: CaseContext) -> list[tuple[TermRef, ...]]:
    """Every (id, version) of the roster, in offers of one version of each id (§6.4-1)."""
    by_version: dict[int, list[TermRef]] = {}
    for (_, version), term in sorted(ROSTER.items()):
        by_version.setdefault(version, []).append(TermRef.of(term, **example_params(term)))
    return [tuple(refs[i:i + 32]) for refs in by_version.values() for i in range(0, len(refs), 32)]


@case(id="TRM-010", clause="§6.4-1", level=M, tags=("terms", "roster"),
      requirement="An implementation MUST know every term of Tables 6-1 and 6-2, with exactly "
      "the text and hash given there.",
      accepts="for offers citing every roster term: a receipt and a terms.accept or "
      "terms.reject — never unknown_term")
async def knows_the_roster(ctx: CaseContext) -> None:
    for terms in _roster_offers(ctx):
        c = Customer(ctx)
        msg, answer = await c.send(TermsOffer(terms=terms, enc_key=c.identity.enc_public_key))
        expect_receipt(ctx, answer, msg)
        ctx.expect(c.rel.state in (State.AGREED, State.REJECTED, State.COUNTERED),
                   expected="terms.accept or terms.reject", actual=answer.describe())


#: Term id segments reserved to this specification (§6.4-2): in this version, a term under them
#: is one of the roster's, so an endpoint cannot know one the roster lacks.
RESERVED_PREFIXES = ("vrm.", "myterms.")


@case(id="TRM-011", clause="§6.5-2", level=M, tags=("terms", "discovery"),
      requirement="A vendor MUST list in accepts_terms only ids of terms it knows.",
      accepts="each listed id of the roster, offered alone, gets a receipt (never unknown_term); "
      "a listed id under a reserved prefix (vrm., myterms.) that the roster lacks fails; other "
      "ids the suite does not know are reported, not judged (§14.6)")
async def lists_known_terms(ctx: CaseContext) -> None:
    known = {term_id for term_id, _ in ROSTER}
    for term_id in target(ctx).accepts_terms:
        if term_id not in known:
            ctx.expect(not term_id.startswith(RESERVED_PREFIXES),
                       expected=f"{term_id}: a roster term, or an id outside vrm. and myterms.",
                       actual=f"{term_id} is listed but no term of this version has that id")
            ctx.expect(True, expected=f"{term_id}: not judged", actual="not in the suite's roster")
            continue
        c = Customer(ctx)
        term = ref(term_id, **example_params(ROSTER[max(k for k in ROSTER if k[0] == term_id)]))
        msg, answer = await c.send(TermsOffer(terms=(term,), enc_key=c.identity.enc_public_key))
        expect_receipt(ctx, answer, msg)


@case(id="TRM-014", clause="§6.2-3", level=M, tags=("terms",), covers=("§5.2.1-1", "§6.4-2"),
      requirement="A receiver MUST refuse with unknown_term a reference to an (id, version) it "
      "does not know, and MUST NOT accept a reference on its id alone or its hash alone.",
      accepts="problem unknown_term for: a listed id at version 999 with its version-1 hash; a "
      "listed id at its version with another term's hash; an unknown reserved id with a listed "
      "term's hash")
async def unknown_id_or_version(ctx: CaseContext) -> None:
    good = acceptable_terms(ctx)[0]
    other = next(t for (i, _), t in sorted(ROSTER.items()) if i != good.id)
    wrong = (
        TermRef(good.id, 999, good.hash, good.params),
        TermRef(good.id, good.version, TermRef.of(other, **example_params(other)).hash,
                good.params),
        TermRef("vrm.not-a-roster-term", 1, good.hash),
    )
    for term in wrong:
        who = identity(ctx)
        # built by hand: our own Relationship.send would refuse the unknown term
        msg = sign(ctx, TermsOffer(terms=(term,), enc_key=who.enc_public_key), who)
        answer = await post(ctx, msg.envelope)
        if answer.code != "unknown_term":
            ctx.fail(expected=f"problem unknown_term for {term.id} version {term.version} "
                     f"hash {term.hash.hex()[:16]}…", actual=answer.describe())
        expect_problem(ctx, answer, ["unknown_term"])


async def _offer_with_one_unlisted(ctx: CaseContext) -> tuple[Customer, Term, Answer] | None:
    """Offer the vendor's own accepted terms plus the first roster term it does not list; the
    customer, that term and the answer (receipt checked), or None if it lists every term."""
    listed = set(target(ctx).accepts_terms)
    extra = [term for (term_id, _), term in sorted(ROSTER.items()) if term_id not in listed]
    if not extra:
        ctx.expect(True, expected="a term the vendor does not list", actual="it lists them all")
        return None
    c = Customer(ctx)
    terms = (*acceptable_terms(ctx), TermRef.of(extra[0], **example_params(extra[0])))
    msg, answer = await c.send(TermsOffer(terms=terms, enc_key=c.identity.enc_public_key))
    expect_receipt(ctx, answer, msg)
    return c, extra[0], answer


@case(id="TRM-012", clause="§6.5-5", level=M, tags=("terms",), covers=("§5.2.3-2",),
      requirement="A vendor MUST NOT accept an offer that contains a term reference that does "
      "not match (whose id is not in its accepts_terms); its terms.reject gives a reason.",
      accepts="terms.reject (with a reason) for the vendor's own accepted terms plus one it does "
      "not list; passes without a check if it lists every roster term")
async def no_accept_beyond_list(ctx: CaseContext) -> None:
    offered = await _offer_with_one_unlisted(ctx)
    if offered is None:
        return
    c, extra, answer = offered
    ctx.expect(c.rel.state in (State.REJECTED, State.COUNTERED),
               expected=f"terms.reject: {extra.id} is not in accepts_terms",
               actual=answer.describe())


@case(id="TRM-015", clause="§6.5-5", level=Level.SHOULD, tags=("terms",),
      requirement="The reasons of a terms.reject or counter SHOULD name the ids of the "
      "references that did not match.",
      accepts="a terms.reject whose refused list (or reason) names the one term the vendor does "
      "not list; passes without a check if it lists every roster term")
async def reject_names_refused(ctx: CaseContext) -> None:
    offered = await _offer_with_one_unlisted(ctx)
    if offered is None:
        return
    _, extra, answer = offered
    reject = next((r.body for r in answer.replies if isinstance(r.body, TermsReject)), None)
    named = reject is not None and (extra.id in reject.refused or extra.id in reject.reason)
    others = [] if reject is None else [i for i in reject.refused if i != extra.id]
    ctx.expect(named and not others,
               expected=f"terms.reject naming {extra.id} (and no other id) as refused",
               actual=answer.describe() if reject is None else
               f"refused {list(reject.refused)}, reason {reject.reason!r}")


@case(id="TRM-013", clause="§2.1-5", level=M, tags=("terms", "keys", "sealed"),
      requirement="A receiver MUST refuse a terms.offer whose enc_key is an X25519 point of "
      "small order, with bad_key: nothing sealed to it would be secret.",
      accepts="problem bad_key for enc_key = 1 (a point of order 4) and for p + 1 with the top "
      "bit set")
async def small_order_enc_key(ctx: CaseContext) -> None:
    who = identity(ctx)
    for enc_key in (bytes([1]) + bytes(31),
                    bytes.fromhex("ee" + "ff" * 30 + "ff")):  # p + 1, top bit set
        msg = sign(ctx, TermsOffer(terms=acceptable_terms(ctx), enc_key=enc_key), who)
        expect_problem(ctx, await post(ctx, msg.envelope), ["bad_key"])


# -- who may speak in a thread (§4.5-5, §12.2-6, §12.2-7) -----------------------------------------


@case(id="REL-001", clause="§12.2-6", level=M, tags=("state",), covers=("§4.5-5",),
      requirement="A vendor that holds no relationship with a thread id MUST refuse any message "
      "but a terms.offer or an intentcast in it with 404 and no_relationship.",
      accepts="HTTP 404, problem no_relationship, for a data.request in a new thread")
async def no_such_thread(ctx: CaseContext) -> None:
    who = identity(ctx)
    msg = sign(ctx, DataRequest(agreement=bytes(32), format=DATA_FORMAT), who)
    expect_problem(ctx, await post(ctx, msg.envelope), ["no_relationship"])


@case(id="REL-002", clause="§4.5-5", level=M, tags=("state",), covers=("§12.2-7",),
      requirement="Once the receiver knows the peer's key it MUST refuse a message from any "
      "other key with not_a_party — a terms.offer that would open the thread again included.",
      accepts="problem not_a_party for a stranger's terms.offer and for a stranger's intentcast "
      "in an agreed thread")
async def stranger_in_thread(ctx: CaseContext) -> None:
    c = Customer(ctx)
    await c.agree()
    stranger = identity(ctx)
    cast = Intentcast(what="anything", reply_by=now_ms() + 60_000, constraints=(),
                      memberships=())
    offer = TermsOffer(terms=acceptable_terms(ctx), enc_key=stranger.enc_public_key)
    for body in (offer, cast):
        msg = sign(ctx, body, stranger, thread=c.rel.thread)
        expect_problem(ctx, await post(ctx, msg.envelope), ["not_a_party"])
