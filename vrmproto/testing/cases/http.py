"""The HTTP binding around the messages: transport, routes, methods and the error contract
(§12.1, §12.2, §12.4)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from vrmproto._binding import CONTENT_TYPE, WELL_KNOWN_PATH
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    expect_problem,
    note_requests,
    post,
    read_answer,
    signed_offer,
    target,
)

M = Level.MUST


def _local(host: str) -> bool:
    """Loopback, a private or link-local address, or a multicast DNS ``.local`` name."""
    if host == "localhost" or host.endswith((".local", ".local.")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


@case(id="HTTP-001", clause="§12.1-1", level=M, tags=("http", "transport"),
      requirement="A receiver MUST serve its routes over HTTPS, except on a loopback interface "
      "and on a local network (found by zeroconf), where it MAY serve plain HTTP.",
      accepts="https, or http on a loopback, private or link-local address or a .local name; "
      "the inbox and history URLs likewise")
async def https_unless_local(ctx: CaseContext) -> None:
    t = target(ctx)
    for url in (ctx.base_url, t.inbox, t.history):
        parts = urlsplit(url)
        ok = parts.scheme == "https" or (parts.scheme == "http" and _local(parts.hostname or ""))
        ctx.expect(ok, expected="https, or http on a local network", actual=url)


@case(id="HTTP-002", clause="§12.2-4", level=M, tags=("http",),
      requirement="A receiver MUST answer any method but POST on the inbox and history URLs, "
      "and any but GET and HEAD on the discovery URL, with 405, method_not_allowed and an "
      "Allow header listing the methods the route serves.",
      accepts="405, problem method_not_allowed and an Allow header naming POST (inbox, history) "
      "or GET (discovery)")
async def wrong_methods(ctx: CaseContext) -> None:
    t = target(ctx)
    for method, url, allowed in (("GET", t.inbox, "POST"), ("PUT", t.history, "POST"),
                                 ("POST", ctx.url(WELL_KNOWN_PATH), "GET")):
        body = b"\x80" if method != "GET" else b""
        headers = {"Content-Type": CONTENT_TYPE} if body else {}
        note_requests(ctx)
        ex = await ctx.request(method, url, body=body, headers=headers)
        expect_problem(ctx, read_answer(ex, t), ["method_not_allowed"])
        allow = ex.header("Allow") or ""
        ctx.expect(allowed in {m.strip().upper() for m in allow.split(",")},
                   expected=f"Allow naming {allowed}", actual=f"Allow: {allow}")


@case(id="HTTP-003", clause="§12.2-5", level=M, tags=("http",), covers=("§12.4-2",),
      requirement="A receiver MUST answer a request for any other path with 404 and the "
      "problem not_found — a signed problem, not an HTML page.",
      accepts="HTTP 404 with a signed problem not_found, for GET and for POST")
async def unknown_path(ctx: CaseContext) -> None:
    t = target(ctx)
    for method in ("GET", "POST"):
        body = b"\x80" if method == "POST" else b""
        headers = {"Content-Type": CONTENT_TYPE} if body else {}
        note_requests(ctx)
        ex = await ctx.request(method, "/vrm/no-such-route", body=body, headers=headers)
        expect_problem(ctx, read_answer(ex, t), ["not_found"])


def _mutations(ctx: CaseContext, envelope: bytes, n: int) -> list[bytes]:
    """``n`` seeded variants: random bytes, and the envelope with bytes flipped, cut or added."""
    rng = ctx.rng
    out: list[bytes] = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(1, 600)))
        elif kind == 1:
            data = bytearray(envelope)
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            out.append(bytes(data))
        elif kind == 2:
            out.append(envelope[: rng.randrange(len(envelope))])
        else:
            at = rng.randrange(len(envelope))
            out.append(envelope[:at] + rng.randbytes(rng.randrange(1, 9)) + envelope[at:])
    return out


@case(id="HTTP-004", clause="§12.4-2", level=M, tags=("http", "robustness", "fuzz"),
      covers=("§12.3-4",),
      requirement="A receiver MUST answer every request that reaches it, whatever its bytes, "
      "with a status below 500 and a signed problem body (or a 200/204 of §12.3).",
      accepts="for 48 seeded random and mutated envelopes: every answer a 4xx with a signed "
      "problem whose status is its code's, or a 200 with a receipt")
async def hostile_bytes(ctx: CaseContext) -> None:
    _, msg = signed_offer(ctx)
    for data in _mutations(ctx, msg.envelope, 48):
        answer = await post(ctx, data)
        if answer.status == 200 and answer.receipt is not None:
            continue
        ctx.expect(answer.problem is not None and answer.status is not None
                   and 400 <= answer.status < 500,
                   expected="a 4xx with a signed problem", actual=answer.describe())
        expect_problem(ctx, answer, [answer.code or ""])
