"""What the protocol cases share: keys, clocks, sending, and reading the endpoint's answers.

The suite plays a customer agent. Everything it signs is built with the reference core, so a
case can make exactly one thing wrong and leave the rest valid.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import msgpack

from vrmproto import _codec
from vrmproto._binding import CONTENT_TYPE, WELL_KNOWN_PATH
from vrmproto._envelope import Signed, open_envelope, sign_message
from vrmproto._errors import ProtocolError
from vrmproto._keys import Context, Identity, key_from_text
from vrmproto._limits import Limits
from vrmproto._messages import Body, ProblemReport, Receipt, TermsOffer
from vrmproto._relationship import Relationship
from vrmproto._state import Role, State
from vrmproto._vocab import ROSTER, ParamSpec, TermRef, latest
from vrmproto.testing._context import CaseContext
from vrmproto.testing._exchange import Exchange


def now_ms() -> int:
    """The suite's clock: real time, since it talks to a real endpoint."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Target:
    """The endpoint under test, as its discovery document describes it (§13.1)."""

    key: bytes
    enc_key: bytes
    inbox: str
    history: str
    limits: Limits
    accepts_terms: tuple[str, ...]
    raw: dict[str, Any] = field(default_factory=dict)


def target(ctx: CaseContext) -> Target:
    """Read the endpoint's keys, URLs and limits from the discovery document."""
    cached = ctx.state.get("target")
    if isinstance(cached, Target):
        return cached
    d = ctx.discovery
    doc_url = ctx.url(WELL_KNOWN_PATH)
    known = set(Limits.__dataclass_fields__)
    limits = Limits(**{k: int(v) for k, v in dict(d.get("limits", {})).items() if k in known})
    t = Target(
        key=key_from_text(str(d["key"])),
        enc_key=key_from_text(str(d["enc_key"]), "x25519"),
        inbox=urljoin(doc_url, str(d["inbox"])),
        history=urljoin(doc_url, str(d.get("history", "/vrm/history"))),
        limits=limits,
        accepts_terms=tuple(str(t) for t in d.get("accepts_terms", ())),
        raw=dict(d),
    )
    ctx.state["target"] = t
    return t


def identity(ctx: CaseContext) -> Identity:
    """A fresh customer identity, drawn from the case's seeded randomness."""
    return Identity(ctx.rng.randbytes(32))


def new_id(ctx: CaseContext) -> bytes:
    return ctx.rng.randbytes(16)


def acceptable_terms(ctx: CaseContext) -> tuple[TermRef, ...]:
    """Terms this endpoint says it accepts (§13.1), cited from the roster; at least one."""
    refs = []
    for term_id in target(ctx).accepts_terms:
        versions = [t for (i, _), t in ROSTER.items() if i == term_id]
        if not versions:
            continue
        term = max(versions, key=lambda t: t.version)
        params = {p.name: _example(p) for p in term.params if p.required}
        try:
            refs.append(TermRef.of(term, **params))
        except (ValueError, TypeError):
            continue
    if not refs:
        refs.append(TermRef.of(latest("vrm.no-tracking")))
    return tuple(refs)


def _example(spec: ParamSpec) -> int | str:
    """A valid value for a term parameter (30 days, say, for ``vrm.delete-after``)."""
    if spec.type == "str":
        return spec.values[0] if spec.values else "x"
    lo = spec.minimum if spec.minimum is not None else 0
    hi = spec.maximum if spec.maximum is not None else lo + 30
    return min(max(30, lo), hi)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the endpoint answered one envelope with."""

    exchange: Exchange
    replies: tuple[Signed[Any], ...] = ()
    problem: Signed[ProblemReport] | None = None
    error: str = ""

    @property
    def status(self) -> int | None:
        return self.exchange.status

    @property
    def code(self) -> str | None:
        """The problem code, if the endpoint answered with a verifiable problem."""
        return self.problem.body.code if self.problem is not None else None

    @property
    def receipt(self) -> Signed[Receipt] | None:
        if self.replies and isinstance(self.replies[0].body, Receipt):
            return self.replies[0]
        return None

    def describe(self) -> str:
        what = self.exchange.describe()
        if self.code:
            detail = self.problem.body.detail if self.problem is not None else ""
            return f"{what}, problem {self.code} ({detail})"
        if self.replies:
            return f"{what}, replies: {', '.join(r.type for r in self.replies)}"
        return f"{what}{', ' + self.error if self.error else ''}"


async def post(ctx: CaseContext, body: bytes, *, content_type: str = CONTENT_TYPE,
               recipient_key: bytes | None = None) -> Answer:
    """POST bytes to the inbox and read the answer: verified replies or a verified problem."""
    t = target(ctx)
    ex = await ctx.post(t.inbox, body, content_type=content_type)
    return read_answer(ex, t, recipient_key=recipient_key)


def read_answer(ex: Exchange, t: Target, *, recipient_key: bytes | None = None) -> Answer:
    if ex.status is None:
        return Answer(ex, error=ex.error or "no response")
    now = now_ms()
    if ex.status == 200:
        try:
            value = _codec.decode(ex.response_body, max_depth=1)
            if type(value) is not list or not all(type(v) is bytes for v in value):
                return Answer(ex, error="a 200 body is not an array of envelopes")
            replies = tuple(
                open_envelope(v, now=now, limits=t.limits, recipients=None) for v in value
            )
        except ProtocolError as exc:
            return Answer(ex, error=f"replies do not verify: {exc}")
        if any(r.sender != t.key for r in replies):
            return Answer(ex, replies, error="a reply is signed by another key")
        if recipient_key is not None and any(r.recipient != recipient_key for r in replies):
            return Answer(ex, replies, error="a reply is addressed to someone else")
        return Answer(ex, replies)
    try:
        problem = open_envelope(ex.response_body, now=now, limits=t.limits)
    except ProtocolError as exc:
        return Answer(ex, error=f"the error body is not a signed problem: {exc}")
    if not isinstance(problem.body, ProblemReport):
        return Answer(ex, error=f"the error body is a {problem.type}, not a problem")
    if problem.sender != t.key:
        return Answer(ex, problem=problem, error="the problem is signed by another key")
    return Answer(ex, problem=problem)


def expect_problem(ctx: CaseContext, answer: Answer, codes: Sequence[str],
                   statuses: Sequence[int] = ()) -> None:
    """Pass when the endpoint refused with one of ``codes`` (or, if given, one of ``statuses``)."""
    want = " or ".join([*(f"problem {c}" for c in codes), *(f"HTTP {s}" for s in statuses)])
    ok = answer.code in codes or (answer.status in statuses and answer.status != 200)
    if answer.status is not None and answer.status >= 500:
        ok = False
    ctx.expect(ok, expected=want, actual=answer.describe())


def expect_receipt(ctx: CaseContext, answer: Answer, message: Signed[Any]) -> Signed[Receipt]:
    """Pass when the endpoint answered 200 with a signed receipt acknowledging ``message``."""
    receipt = answer.receipt
    ok = answer.status == 200 and receipt is not None and receipt.body.ack == message.hash
    ctx.expect(ok and not answer.error,
               expected=f"HTTP 200 with a signed receipt acknowledging {message.hash.hex()[:16]}…",
               actual=answer.describe())
    assert receipt is not None
    return receipt


def sign(ctx: CaseContext, body: Body, who: Identity, *, thread: bytes | None = None,
         prev: bytes | None = None, now: int | None = None, to: bytes | None = None,
         lifetime_ms: int = 600_000, msg_id: bytes | None = None) -> Signed[Any]:
    """A valid message from ``who`` to the endpoint (override any header field)."""
    return sign_message(
        body,
        identity=who,
        recipient=target(ctx).key if to is None else to,
        thread=thread if thread is not None else new_id(ctx),
        prev=prev,
        now=now_ms() if now is None else now,
        msg_id=msg_id if msg_id is not None else new_id(ctx),
        lifetime_ms=lifetime_ms,
    )


def offer_body(ctx: CaseContext, who: Identity,
               terms: tuple[TermRef, ...] | None = None) -> TermsOffer:
    return TermsOffer(terms=terms or acceptable_terms(ctx), enc_key=who.enc_public_key)


class Customer:
    """A customer-side relationship with the endpoint, driven over HTTP."""

    def __init__(self, ctx: CaseContext) -> None:
        self.ctx = ctx
        t = target(ctx)
        self.identity = identity(ctx)
        self.rel = Relationship(
            role=Role.CUSTOMER,
            identity=self.identity,
            thread=new_id(ctx),
            peer_key=t.key,
            peer_enc_key=t.enc_key,
            limits=t.limits,
        )

    async def send(self, body: Body, *, msg_id: bytes | None = None) -> tuple[Signed[Any], Answer]:
        """Sign the next message of the relationship, post it, and take in the replies."""
        sent = self.rel.send(body, now=now_ms(), msg_id=msg_id or new_id(self.ctx))
        return sent.message, await self._deliver(sent.message)

    async def rotate(self, new: Identity, *, reason: str = "rotate"
                     ) -> tuple[Signed[Any], Answer]:
        """Rotate this customer's key in the relationship (§2.6) and post the key.rotate."""
        sent = self.rel.rotate(new, now=now_ms(), msg_id=new_id(self.ctx), reason=reason)
        self.identity = new
        return sent.message, await self._deliver(sent.message)

    async def _deliver(self, message: Signed[Any]) -> Answer:
        answer = await post(self.ctx, message.envelope, recipient_key=self.identity.public_key)
        for reply in answer.replies:
            try:
                self.rel.receive(reply, now=now_ms())
            except ProtocolError as exc:
                return Answer(answer.exchange, answer.replies,
                              error=f"reply {reply.type} breaks a rule: {exc}")
        return answer

    async def agree(self, terms: tuple[TermRef, ...] | None = None) -> None:
        """Offer terms the endpoint accepts; the case fails unless they are accepted."""
        msg, answer = await self.send(offer_body(self.ctx, self.identity, terms))
        expect_receipt(self.ctx, answer, msg)
        self.ctx.expect(self.rel.state is State.AGREED,
                        expected="terms.accept for terms listed in accepts_terms",
                        actual=answer.describe())


# -- building wrong envelopes on purpose -------------------------------------------------------


def raw_map(pairs: Sequence[tuple[str, Any]]) -> bytes:
    """A msgpack map of ``pairs`` exactly as given: order, duplicates and all."""
    out = bytearray()
    n = len(pairs)
    out += bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
    for k, v in pairs:
        out += msgpack.packb(k) + msgpack.packb(v, use_bin_type=True)
    return bytes(out)


def envelope_bytes(hdr: bytes, sig: bytes, body: bytes | None, **routing: Any) -> bytes:
    """A canonical envelope around the given parts (§3.4)."""
    env: dict[str, Any] = {"hdr": hdr, "sig": sig}
    if body is not None:
        env["body"] = body
    env.update(routing)
    return _codec.encode(env)


def resign_header(header: dict[str, Any], who: Identity, *, context: bytes | None = None,
                  raw: bytes | None = None) -> tuple[bytes, bytes]:
    """Header bytes (canonical, or ``raw`` as given) and a signature by ``who`` over them."""
    hdr = raw if raw is not None else _codec.encode(header)
    ctx_bytes = Context.MESSAGE if context is None else context
    return hdr, who.sign(ctx_bytes, hdr)


def header_of(msg: Signed[Any]) -> dict[str, Any]:
    """The decoded header map of a message, to alter and re-sign."""
    value: dict[str, Any] = _codec.decode(msg.hdr_bytes)
    return value
