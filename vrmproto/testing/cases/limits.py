"""Limits enforced exactly as published, in both directions, for declared and chunked bodies
alike (§10-1, §10-8, §12.9-2, §12.9-3).

An endpoint must accept everything within a published limit (not stricter) and refuse what is
one step beyond it (not looser): an envelope of exactly ``max_envelope_bytes`` is accepted and one
of ``max_envelope_bytes + 1`` refused, whether its length is declared or the body is chunked; a
chunked body is refused as soon as it passes the limit, not read to its end.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from vrmproto._binding import CONTENT_TYPE
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    buildable,
    expect_problem,
    identity,
    note_requests,
    post,
    raw_request,
    read_answer,
    target,
)
from .wire import _padded_offer

M = Level.MUST

#: The size of the chunks the chunked cases send.
PIECE = 16 * 1024


def chunked(data: bytes, *, end: bool = True) -> list[bytes]:
    """``data`` in HTTP/1.1 chunks of :data:`PIECE` bytes, with the last chunk unless ``end``
    is False (a body that never ends)."""
    out = [f"{len(data[i:i + PIECE]):x}\r\n".encode() + data[i:i + PIECE] + b"\r\n"
           for i in range(0, len(data), PIECE)]
    return [*out, b"0\r\n\r\n"] if end else out


def _head(ctx: CaseContext, *, length: int | None) -> str:
    t = target(ctx)
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (f"POST {urlsplit(t.inbox).path} HTTP/1.1\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"{framing}\r\nConnection: close")


@case(id="WIRE-019", clause="§10-1", level=M, tags=("wire", "limits"), covers=("§12.9-2",),
      requirement="A receiver MUST refuse an envelope larger than max_envelope_bytes: one byte "
      "over is too large, however close (a limit looser than published is not the limit).",
      accepts="HTTP 413 or problem too_large for a valid offer of max_envelope_bytes + 1 bytes")
async def one_byte_over(ctx: CaseContext) -> None:
    size = buildable(ctx, target(ctx).limits.max_envelope_bytes + 1, limit="max_envelope_bytes")
    env = _padded_offer(ctx, identity(ctx), size)
    ctx.expect(len(env) == size, expected=f"an envelope of {size} bytes",
               actual=f"{len(env)} bytes")
    expect_problem(ctx, await post(ctx, env), ["too_large"], statuses=[413])


@case(id="WIRE-020", clause="§12.9-2", level=M, tags=("wire", "http", "limits"),
      requirement="A receiver MUST answer a Content-Length larger than max_envelope_bytes with "
      "413 and too_large before reading the body.",
      accepts="HTTP 413, problem too_large, for a Content-Length of max_envelope_bytes + 1 with "
      "no body sent (within body_read_timeout_ms + 2 s)")
async def declared_over_before_body(ctx: CaseContext) -> None:
    t = target(ctx)
    note_requests(ctx)
    raw = await raw_request(ctx, t.inbox,
                            _head(ctx, length=t.limits.max_envelope_bytes + 1), [],
                            read_timeout_s=t.limits.body_read_timeout_ms / 1000 + 2.0)
    answer = read_answer(ctx.exchanges[-1], t)
    ctx.expect(raw.status == 413 and answer.code == "too_large",
               expected="HTTP 413, problem too_large, before the body",
               actual=raw.error or answer.describe())


@case(id="WIRE-021", clause="§12.9-3", level=M, tags=("wire", "http", "limits"),
      covers=("§10-1",),
      requirement="A chunked body is limited like a declared one, not more strictly: an "
      "envelope of exactly max_envelope_bytes sent chunked MUST be accepted.",
      accepts="a receipt for a valid offer of max_envelope_bytes bytes in 16 KiB chunks")
async def chunked_at_limit(ctx: CaseContext) -> None:
    t = target(ctx)
    who = identity(ctx)
    env = _padded_offer(ctx, who, buildable(ctx, t.limits.max_envelope_bytes,
                                            limit="max_envelope_bytes"))
    note_requests(ctx)
    raw = await raw_request(ctx, t.inbox, _head(ctx, length=None), chunked(env))
    answer = read_answer(ctx.exchanges[-1], t, recipient_key=who.public_key)
    ctx.expect(raw.status == 200 and answer.receipt is not None,
               expected=f"a receipt for a chunked envelope of {len(env)} bytes",
               actual=raw.error or answer.describe())


@case(id="WIRE-022", clause="§12.9-3", level=M, tags=("wire", "http", "limits"),
      covers=("§10-1",),
      requirement="A receiver MUST stop reading a chunked body as soon as it exceeds "
      "max_envelope_bytes and answer 413 and too_large — not read it to its end first.",
      accepts="HTTP 413, problem too_large, for a chunked body one byte over the limit whose "
      "last chunk never comes (within body_read_timeout_ms + 2 s; a 408 means the body was "
      "read on)")
async def chunked_over_never_ends(ctx: CaseContext) -> None:
    t = target(ctx)
    body = bytes(buildable(ctx, t.limits.max_envelope_bytes + 1, limit="max_envelope_bytes"))
    note_requests(ctx)
    raw = await raw_request(ctx, t.inbox, _head(ctx, length=None), chunked(body, end=False),
                            read_timeout_s=t.limits.body_read_timeout_ms / 1000 + 2.0)
    answer = read_answer(ctx.exchanges[-1], t)
    ctx.expect(raw.status == 413 and answer.code == "too_large",
               expected="HTTP 413, problem too_large, while the body is still open",
               actual=raw.error or answer.describe())
