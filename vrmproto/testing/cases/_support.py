"""What the protocol cases share: keys, clocks, sending, and reading the endpoint's answers.

The suite plays a customer agent. Everything it signs is built with the reference core, so a
case can make exactly one thing wrong and leave the rest valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import msgpack

from vrmproto import _codec
from vrmproto._binding import (
    CONTENT_TYPE,
    WELL_KNOWN_PATH,
    decode_history,
    sign_history_request,
)
from vrmproto._envelope import Signed, open_envelope, seal_content, sign_message
from vrmproto._errors import Problem, ProtocolError
from vrmproto._history import Entry, compare, verify_entries
from vrmproto._keys import Context, Identity, key_from_text, sha256
from vrmproto._limits import Limits
from vrmproto._messages import (
    Body,
    DataShare,
    FieldsContent,
    ProblemReport,
    Receipt,
    TermsOffer,
)
from vrmproto._relationship import Relationship
from vrmproto._state import Role, State
from vrmproto._vocab import ROSTER, ParamSpec, Term, TermRef, latest
from vrmproto.testing._context import MAX_RESPONSE_BYTES, CaseContext
from vrmproto.testing._exchange import Exchange


def now_ms() -> int:
    """The suite's clock: real time, since it talks to a real endpoint."""
    return time.time_ns() // 1_000_000


#: The TLS context of the suite's own connections, by the variables that choose the trusted CAs
#: when it was made (they are read when a context loads them).
_TLS: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def host_port(url: str) -> tuple[str, int]:
    """The host and port a URL names, the scheme's default port if it names none."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def tls_for(url: str) -> ssl.SSLContext | None:
    """What the suite's own connections to ``url`` speak TLS with: for ``https``, a context
    that verifies the endpoint's certificate as the suite's HTTP client does (the system's
    trusted CAs, or those of ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``); None for ``http``."""
    if urlsplit(url).scheme != "https":
        return None
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    if key not in _TLS:
        _TLS[key] = ssl.create_default_context()
    return _TLS[key]


async def open_stream(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection of the suite's own to the endpoint of ``url``, for what aiohttp's client
    cannot send (hand-written heads, bodies that trickle or never end): over TLS where ``url``
    is ``https``, so that a case tests the endpoint as its clients reach it, not how it answers
    plain HTTP sent to its TLS port."""
    host, port = host_port(url)
    tls = tls_for(url)
    return await asyncio.open_connection(host, port, ssl=tls,
                                         server_hostname=host if tls is not None else None)


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
    """Read the endpoint's keys, URLs and limits from the discovery document; the case fails,
    naming the field, when the document has none the suite can use (§13.1-3)."""
    cached = ctx.state.get("target")
    if isinstance(cached, Target):
        return cached
    try:
        t = _read_target(ctx.discovery, ctx.url(WELL_KNOWN_PATH))
    except _Unusable as exc:
        ctx.fail(expected="a discovery document with the key, enc_key, inbox, history and "
                 "limits the suite tests the endpoint by (§13.1-3)", actual=str(exc))
    ctx.state["target"] = t
    return t


class _Unusable(Exception):  # noqa: N818 - names the condition; never leaves this module
    """What makes a discovery document one the suite cannot test the endpoint by."""


def _read_target(d: Mapping[str, Any], doc_url: str) -> Target:
    def text(name: str, default: str | None = None) -> str:
        value = d.get(name, default)
        if value is None:
            raise _Unusable(f"the document has no {name}")
        if not isinstance(value, str):
            raise _Unusable(f"its {name} is {value!r}, not a string")
        return value

    def key(name: str, kind: str) -> bytes:
        try:
            return key_from_text(text(name), kind)
        except ValueError as exc:
            raise _Unusable(f"its {name} {d[name]!r:.80} is not a key: {exc}") from None

    published = d.get("limits", {})
    if not isinstance(published, Mapping):
        raise _Unusable(f"its limits are {published!r:.80}, not an object")
    values: dict[str, int] = {}
    for name, value in published.items():
        if name not in Limits.__dataclass_fields__:
            continue
        try:
            values[name] = int(value)
        except (TypeError, ValueError, OverflowError):
            raise _Unusable(f"its limit {name} is {value!r:.80}, not a number") from None
    try:
        limits = Limits(**values)
    except ValueError as exc:
        raise _Unusable(f"its limits {values} are not limits: {exc}") from None
    accepts = d.get("accepts_terms", ())
    return Target(
        key=key("key", "ed25519"),
        enc_key=key("enc_key", "x25519"),
        inbox=urljoin(doc_url, text("inbox")),
        history=urljoin(doc_url, text("history", "/vrm/history")),
        limits=limits,
        accepts_terms=tuple(str(t) for t in accepts) if isinstance(accepts, list) else (),
        raw=dict(d),
    )


#: The largest request the suite builds, and the deepest nesting it builds (spec 14.2): the
#: cases that size what they send by a published limit need at most twice max_envelope_bytes
#: and max_depth levels, and an endpoint must not make the suite allocate what it asks.
MAX_SENT_BYTES = 64 * 1024 * 1024
MAX_SENT_DEPTH = 256


def buildable(ctx: CaseContext, size: int, *, limit: str) -> int:
    """``size``, the bytes a case is about to build by the published ``limit``; the case fails,
    naming the limit, when that is more than the suite sends (:data:`MAX_SENT_BYTES`)."""
    if size > MAX_SENT_BYTES:
        ctx.fail(expected=f"a {limit} the suite can test: it sends at most {MAX_SENT_BYTES} "
                 "bytes in one request (spec 14.2)",
                 actual=f"the published {limit} {getattr(target(ctx).limits, limit)} needs a "
                 f"request of {size} bytes")
    return size


def buildable_depth(ctx: CaseContext) -> int:
    """The published max_depth, which a case nests a body by; the case fails when that is more
    than the suite nests (:data:`MAX_SENT_DEPTH`)."""
    depth = target(ctx).limits.max_depth
    if depth > MAX_SENT_DEPTH:
        ctx.fail(expected=f"a max_depth the suite can test: it nests at most {MAX_SENT_DEPTH} "
                 "deep (spec 14.2)", actual=f"the published max_depth is {depth}")
    return depth


def _fresh(ctx: CaseContext, n: int) -> bytes:
    """``n`` bytes from the case's seeded randomness, salted once per run.

    The seed fixes every choice a case makes (which bit it flips, which bytes it mutates), but
    keys and message ids must be new in every run: an endpoint that kept an earlier run's
    messages refuses the same (sender, id) for another message with id_conflict (§12.6-3), so
    a rerun with ``--seed`` would otherwise fail against it.
    """
    salt: bytes = ctx.state.setdefault("run_salt", os.urandom(16))
    return sha256(salt + ctx.rng.randbytes(32))[:n]


def identity(ctx: CaseContext) -> Identity:
    """A fresh customer identity, new in every run (see :func:`_fresh`)."""
    return Identity(_fresh(ctx, 32))


def new_id(ctx: CaseContext) -> bytes:
    """A fresh 16-byte message or thread id, new in every run (see :func:`_fresh`)."""
    return _fresh(ctx, 16)


def acceptable_terms(ctx: CaseContext) -> tuple[TermRef, ...]:
    """Terms this endpoint says it accepts (§13.1), cited from the roster; at least one."""
    refs = []
    for term_id in target(ctx).accepts_terms:
        versions = [t for (i, _), t in ROSTER.items() if i == term_id]
        if not versions:
            continue
        term = max(versions, key=lambda t: t.version)
        try:
            refs.append(TermRef.of(term, **example_params(term)))
        except (ValueError, TypeError):
            continue
    if not refs:
        refs.append(TermRef.of(latest("vrm.no-tracking")))
    return tuple(refs)


def example_params(term: Term) -> dict[str, int | str]:
    """Valid values for the required parameters of a roster term."""
    return {p.name: _example(p) for p in term.params if p.required}


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
    note_requests(ctx)
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


def status_of(code: str) -> int | None:
    """The HTTP status Table 12-1 gives a problem code (None for a code it does not list)."""
    try:
        return Problem(code).status
    except ValueError:
        return None


def expect_problem(ctx: CaseContext, answer: Answer, codes: Sequence[str],
                   statuses: Sequence[int] = ()) -> None:
    """Pass when the endpoint refused with one of ``codes`` (or, if given, one of ``statuses``).

    A problem must come with the HTTP status Table 12-1 gives its code (§12.4-1), and nothing
    is ever answered with a 5xx (§12.4-2).
    """
    want = " or ".join([*(f"problem {c} (HTTP {status_of(c)})" for c in codes),
                        *(f"HTTP {s}" for s in statuses)])
    by_code = answer.code in codes and answer.status == status_of(answer.code or "")
    ok = by_code or (answer.status in statuses and answer.status != 200)
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


def signed_offer(ctx: CaseContext) -> tuple[Identity, Signed[Any]]:
    """A fresh customer and a valid terms.offer it signed: the opening most cases send."""
    who = identity(ctx)
    return who, sign(ctx, offer_body(ctx, who), who)


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

    def unchecked(self, body: Body, *, msg_id: bytes | None = None) -> Signed[Any]:
        """``body`` signed as our next message in the thread, without our own engine's checks
        or state change: how a case sends what a conforming endpoint must refuse."""
        return sign(self.ctx, body, self.identity, thread=self.rel.thread,
                    prev=self.rel.our_head, msg_id=msg_id)

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


def forged(ctx: CaseContext, who: Identity, *, body: Body | None = None,
           raw_body: bytes | None = None, header: dict[str, Any] | None = None,
           drop: Sequence[str] = (), **sign_kw: Any) -> bytes:
    """The envelope of a valid message from ``who`` (a terms.offer unless ``body`` says
    otherwise) with header fields changed or dropped and the header signed again, so that the
    one change is the only thing wrong. ``raw_body`` replaces the body bytes (the header's body
    hash follows them). Values are packed as given, in key order: a float stays a float."""
    msg = sign(ctx, body or offer_body(ctx, who), who, **sign_kw)
    h = header_of(msg)
    content = msg.body_bytes if raw_body is None else raw_body
    if raw_body is not None:
        h["body"] = sha256(raw_body)
    h.update(header or {})
    for key in drop:
        h.pop(key, None)
    hdr, sig = resign_header({}, who, raw=raw_map(sorted(h.items(), key=lambda kv: kv[0])))
    return envelope_bytes(hdr, sig, content)


async def fetch_history(ctx: CaseContext, c: Customer, who: Identity | None = None, *,
                        start: int = 0) -> Exchange:
    """POST a signed history request for ``c``'s thread (by ``who``, default the customer)."""
    t = target(ctx)
    req = sign_history_request(who or c.identity, thread=c.rel.thread, recipient=t.key,
                               now=now_ms(), nonce=new_id(ctx), start=start)
    return await ctx.post(t.history, req)


def history_entries(ctx: CaseContext, ex: Exchange) -> list[Entry]:
    """The verified entries of a history export (§12.5-3, §8.2); the case fails otherwise."""
    ctx.expect(ex.status == 200, expected="HTTP 200 with the history export",
               actual=read_answer(ex, target(ctx)).describe())
    try:
        entries = decode_history(ex.response_body)
        verify_entries(entries)
    except ProtocolError as exc:
        ctx.fail(expected="a history export that verifies (§8.2)", actual=str(exc))
    return entries


def ref(term_id: str, **params: Any) -> TermRef:
    """A reference to the latest roster version of ``term_id``."""
    return TermRef.of(latest(term_id), **params)


async def expect_history(ctx: CaseContext, c: Customer) -> list[Entry]:
    """Pass when the endpoint's history of ``c``'s thread equals the suite's own (§8.1-1,
    §8.3-1): every message exchanged, once, in order, with intact links."""
    entries = history_entries(ctx, await fetch_history(ctx, c))
    divergence = compare(c.rel.history.entries(), entries)
    ctx.expect(divergence is None, expected="the endpoint's history equal to the suite's",
               actual=f"they diverge at index {divergence.index} ({divergence.kind}); the "
               f"endpoint holds {len(entries)} entries, the suite {len(c.rel.history)}"
               if divergence else "")
    return entries


def note_requests(ctx: CaseContext, n: int = 1) -> None:
    """Count requests toward the run's per-address total (see :func:`recent_requests`)."""
    times: list[float] = ctx.state.setdefault("request_times", [])
    times.extend([time.monotonic()] * n)


def recent_requests(ctx: CaseContext, window_s: float = 60.0) -> int:
    """How many requests this run noted in the last ``window_s`` seconds (a lower bound: only
    requests made through :func:`post` and the floods are noted)."""
    times: list[float] = ctx.state.get("request_times", [])
    since = time.monotonic() - window_s
    return sum(1 for t in times if t >= since)


@dataclass(frozen=True, slots=True)
class RawResponse:
    """What came back on a hand-written HTTP/1.1 connection."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    error: str = ""
    closed: bool = False
    """The server closed the connection after its answer: it said ``Connection: close``, or
    (when probed) the socket reached its end."""
    sent_s: float = 0.0
    """Seconds from the first byte of the request to the last chunk handed to the socket: how
    late the suite itself was (a loaded host delays its pauses)."""


async def raw_request(ctx: CaseContext, url: str, head: str, chunks: Sequence[bytes], *,
                      pause_s: float = 0.0, read_timeout_s: float = 10.0,
                      probe_close: bool = False) -> RawResponse:
    """Send ``head`` (request line and headers, without the blank line) and then ``chunks``,
    the ``i``-th ``i × pause_s`` after the first (or as soon as the loop can, when it was busy
    then), on a connection of our own; read the response.

    For what aiohttp's client cannot do: bodies that trickle, that never end, or that are
    chunked past a limit. The exchange is added to the case's transcript by hand. With
    ``probe_close``, wait up to 3 s after the answer for the server to close the connection.
    """
    host, port = host_port(url)
    request = f"{head}\r\nHost: {host}:{port}\r\n\r\n".encode() + b"".join(chunks)
    started = time.perf_counter()
    result = await _raw_exchange(url, f"{head}\r\nHost: {host}:{port}\r\n\r\n", chunks,
                                 pause_s=pause_s, read_timeout_s=read_timeout_s,
                                 probe_close=probe_close)
    ctx.exchanges.append(Exchange(
        method=head.split(" ", 1)[0], url=url, request_headers={"(raw)": head},
        request_body=request, status=result.status, response_headers=result.headers,
        response_body=result.body, elapsed_ms=(time.perf_counter() - started) * 1000.0,
        error=result.error or None,
        request_decoded=f"(hand-written HTTP request, {len(request)} bytes)",
        response_decoded=ctx.decode_body(result.body) if ctx.decode_body else "",
    ))
    return result


async def _raw_exchange(url: str, head: str, chunks: Sequence[bytes], *,
                        pause_s: float, read_timeout_s: float, probe_close: bool) -> RawResponse:
    try:
        reader, writer = await open_stream(url)
    except OSError as exc:
        return RawResponse(None, {}, b"", f"cannot connect: {exc}")
    started = time.monotonic()
    try:
        writer.write(head.encode())
        for i, chunk in enumerate(chunks):
            if i and pause_s:  # each piece at its own time: a late one delays no other
                await asyncio.sleep(max(0.0, started + i * pause_s - time.monotonic()))
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass  # the server may answer and close before it has read everything: read below
    sent_s = time.monotonic() - started
    try:
        async with asyncio.timeout(read_timeout_s):
            response = dataclasses.replace(await _read_response(reader), sent_s=sent_s)
        if probe_close and not response.closed and response.status is not None:
            with contextlib.suppress(TimeoutError, OSError):
                async with asyncio.timeout(3.0):
                    # the server lingers a little reading what it refused, then shuts
                    while await reader.read(64 * 1024):
                        pass
                    response = dataclasses.replace(response, closed=True)
        return response
    except TimeoutError:
        return RawResponse(None, {}, b"", f"no response within {read_timeout_s:g} s")
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        return RawResponse(None, {}, b"", f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


#: The most of an answer's head (status line, headers, a chunked body's trailers) that the
#: suite's own connections read, in bytes and in header lines: an endpoint that sends more is
#: not answering HTTP the suite can judge, and must not make the suite hold what it sends.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 128

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-9][0-9]{2})(?:[ \t][^\r\n]*)?\r?\n")


class _Unreadable(Exception):  # noqa: N818 - names the condition; never leaves this module
    """The answer on a connection of the suite's own is not HTTP/1 it can read, and why."""


async def _read_response(reader: asyncio.StreamReader) -> RawResponse:
    """Read one HTTP/1 answer (RFC 9112) within bounds: a head of at most
    :data:`MAX_HEAD_BYTES` and :data:`MAX_HEADERS` lines, a body of at most
    :data:`~vrmproto.testing._context.MAX_RESPONSE_BYTES` (the rest is dropped and the error
    says so), framed by ``Transfer-Encoding: chunked``, ``Content-Length`` or the close."""
    status_line = await reader.readline()
    if not status_line:
        return RawResponse(None, {}, b"", "the connection closed without a response")
    try:
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise _Unreadable(f"not an HTTP/1 status line: {status_line[:80]!r}")
        status = int(match[1])
        headers = await _read_fields(reader, len(status_line))
        body, truncated = await _read_body(reader, status, headers)
    except _Unreadable as exc:
        return RawResponse(None, {}, b"", str(exc))
    closing = _field(headers, "connection") or ""
    return RawResponse(status, headers, body, closed=closing.lower() == "close",
                       error=f"response truncated at {MAX_RESPONSE_BYTES} bytes"
                       if truncated else "")


def _field(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


async def _head_line(reader: asyncio.StreamReader, used: int) -> bytes:
    too_long = _Unreadable(f"the response head is longer than {MAX_HEAD_BYTES} bytes")
    try:
        line = await reader.readline()
    except ValueError:  # one line beyond the stream's limit (64 KiB)
        raise too_long from None
    if used + len(line) > MAX_HEAD_BYTES:
        raise too_long
    if not line:
        raise _Unreadable("the connection closed in the middle of the response head")
    return line


async def _read_fields(reader: asyncio.StreamReader, used: int) -> dict[str, str]:
    """Header (or trailer) lines up to the blank line; ``used``: head bytes read before."""
    headers: dict[str, str] = {}
    while (line := await _head_line(reader, used)) not in (b"\r\n", b"\n"):
        used += len(line)
        if len(headers) >= MAX_HEADERS:
            raise _Unreadable(f"the response has more than {MAX_HEADERS} header lines")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip()] = value.strip()
    return headers


async def _read_body(reader: asyncio.StreamReader, status: int,
                     headers: dict[str, str]) -> tuple[bytes, bool]:
    """The body and whether it was cut at the cap (RFC 9112 §6.3)."""
    if status < 200 or status in (204, 304):
        return b"", False
    if "chunked" in (_field(headers, "transfer-encoding") or "").lower():
        return await _read_chunked(reader)
    length_text = _field(headers, "content-length")
    if length_text is None:
        if (_field(headers, "connection") or "").lower() != "close":
            return b"", False  # unframed and kept open: nothing the suite can wait for
        read = bytearray()
        while len(read) <= MAX_RESPONSE_BYTES and (
                more := await reader.read(MAX_RESPONSE_BYTES + 1 - len(read))):
            read += more
        return bytes(read[:MAX_RESPONSE_BYTES]), len(read) > MAX_RESPONSE_BYTES
    if not length_text.isdigit() or not length_text.isascii():
        raise _Unreadable(f"the response's Content-Length {length_text!r} is not a number")
    length = int(length_text)
    want = min(length, MAX_RESPONSE_BYTES)
    try:
        body = await reader.readexactly(want)
    except asyncio.IncompleteReadError as exc:
        raise _Unreadable(f"the connection closed after {len(exc.partial)} of the {length} "
                          "bytes of the response body") from None
    return body, length > want


async def _read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    body = bytearray()
    while True:
        size_line = await _head_line(reader, 0)
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _Unreadable(f"not a chunk size: {size_line[:80]!r}") from None
        if size < 0:
            raise _Unreadable(f"not a chunk size: {size_line[:80]!r}")
        if size == 0:
            await _read_fields(reader, 0)  # the trailers
            return bytes(body), False
        if len(body) + size > MAX_RESPONSE_BYTES:
            try:
                body += await reader.readexactly(MAX_RESPONSE_BYTES - len(body))
            except asyncio.IncompleteReadError as exc:
                body += exc.partial
            return bytes(body), True
        try:
            body += await reader.readexactly(size)
            await reader.readuntil(b"\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise _Unreadable("the connection closed in the middle of a chunk of the "
                              "response body") from None


DAY_MS = 86_400_000


def share_body(ctx: CaseContext, c: Customer, fields: dict[str, str], *,
               recipient: bytes | None = None, enc_key: bytes | None = None,
               agreement: bytes | None = None, expires: int | None = None,
               msg_id: bytes | None = None, purposes: tuple[int, ...] = (2,),
               categories: tuple[int, ...] = (2,)) -> tuple[DataShare, bytes]:
    """A data.share body sealed for the message id it returns (§5.3.1, §5.5); override any
    part to make it wrong on purpose."""
    t = target(ctx)
    msg_id = msg_id or new_id(ctx)
    sealed = seal_content(
        FieldsContent(fields=fields),
        identity=c.identity,
        recipient=recipient or t.key,
        recipient_enc_key=enc_key or t.enc_key,
        msg_id=msg_id,
    )
    body = DataShare(agreement=agreement or c.rel.agreement or bytes(32), purposes=purposes,
                     categories=categories, expires=expires or now_ms() + 30 * DAY_MS,
                     sealed=sealed)
    return body, msg_id
