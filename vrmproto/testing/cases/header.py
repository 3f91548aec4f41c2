"""Header field cases: each field of §4.2 with a wrong type, length or value (§4.2, §3.3-8).

Every envelope here is a valid terms.offer whose header has one field changed and is then
signed again, so that the field is the only thing wrong: a receiver that skips the field's check
accepts it (or answers with another code).
"""

from __future__ import annotations

from typing import Any

from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import expect_problem, forged, identity, now_ms, post, target

M = Level.MUST


async def _refused(ctx: CaseContext, code: str, *variants: dict[str, Any],
                   drop: tuple[str, ...] = ()) -> None:
    who = identity(ctx)
    for header in variants or ({},):
        answer = await post(ctx, forged(ctx, who, header=header, drop=drop))
        expect_problem(ctx, answer, [code])


@case(id="HDR-001", clause="§4.2-1", level=M, tags=("header", "version"),
      covers=("§4.5-1",),
      requirement="A receiver MUST refuse a header whose v is absent or not an int with "
      "invalid_field, and MUST check v before any other header field.",
      accepts="invalid_field for v = \"1\" and for no v; unsupported_version for v = 2 in a "
      "header that also lacks its thread")
async def version_field(ctx: CaseContext) -> None:
    await _refused(ctx, "invalid_field", {"v": "1"})
    await _refused(ctx, "invalid_field", drop=("v",))
    await _refused(ctx, "unsupported_version", {"v": 2}, drop=("thread",))


@case(id="HDR-002", clause="§4.2-2", level=M, tags=("header",),
      requirement="The header MUST have exactly the ten keys; a receiver MUST refuse a header "
      "with an additional key with invalid_field (the header is closed).",
      accepts="problem invalid_field")
async def extra_header_key(ctx: CaseContext) -> None:
    await _refused(ctx, "invalid_field", {"x_priority": 1})


@case(id="HDR-003", clause="§4.2-3", level=M, tags=("header",),
      requirement="A receiver MUST refuse a type that is not a str with invalid_field.",
      accepts="problem invalid_field")
async def type_not_text(ctx: CaseContext) -> None:
    await _refused(ctx, "invalid_field", {"type": 7})


@case(id="HDR-004", clause="§4.2-4", level=M, tags=("header",),
      requirement="A receiver MUST refuse an id of another type or length than bin 16 with "
      "invalid_field.",
      accepts="problem invalid_field for a 15-byte id and for a str id")
async def id_field(ctx: CaseContext) -> None:
    await _refused(ctx, "invalid_field", {"id": bytes(15)}, {"id": "0" * 16})


@case(id="HDR-005", clause="§4.2-5", level=M, tags=("header",),
      requirement="A receiver MUST refuse a from of another type or length than bin 32 with "
      "invalid_field.",
      accepts="problem invalid_field for a 31-byte from")
async def from_field(ctx: CaseContext) -> None:
    await _refused(ctx, "invalid_field", {"from": identity(ctx).public_key[:31]})


@case(id="HDR-006", clause="§4.2-6", level=M, tags=("header",),
      requirement="A receiver MUST refuse a nil to in any type but problem, and a to of another "
      "type or length, with invalid_field.",
      accepts="problem invalid_field for a nil to and for a 33-byte to")
async def to_field(ctx: CaseContext) -> None:
    await _refused(ctx, "invalid_field", {"to": None}, {"to": target(ctx).key + b"\x00"})


@case(id="HDR-007", clause="§4.2-7", level=M, tags=("header",),
      requirement="A receiver MUST refuse a thread of another type or length than bin 16 with "
      "invalid_field.",
      accepts="problem invalid_field")
async def thread_field(ctx: CaseContext) -> None:
    await _refused(ctx, "invalid_field", {"thread": bytes(15)})


@case(id="HDR-008", clause="§4.2-8", level=M, tags=("header",),
      requirement="A receiver MUST refuse a prev of another type or length than nil or bin 32 "
      "with invalid_field.",
      accepts="problem invalid_field for a 31-byte prev and for a str prev")
async def prev_field(ctx: CaseContext) -> None:
    await _refused(ctx, "invalid_field", {"prev": bytes(31)}, {"prev": "none"})


@case(id="HDR-009", clause="§4.2-9", level=M, tags=("header",),
      requirement="A receiver MUST refuse a body field of another type or length than bin 32 "
      "with invalid_field.",
      accepts="problem invalid_field")
async def body_hash_field(ctx: CaseContext) -> None:
    await _refused(ctx, "invalid_field", {"body": bytes(31)})


@case(id="HDR-010", clause="§4.2-10", level=M, tags=("header", "wire"),
      covers=("§3.3-4", "§3.3-8"),
      requirement="created MUST be an int from 0 to 2^53-1; a receiver MUST refuse any other "
      "value (negative, beyond the wire's int range, a float) with invalid_field.",
      accepts="problem invalid_field for -1, for 2^53 and for a float")
async def created_field(ctx: CaseContext) -> None:
    now = now_ms()
    await _refused(ctx, "invalid_field", {"created": -1}, {"created": 2**53},
                   {"created": float(now)})


@case(id="HDR-011", clause="§4.2-11", level=M, tags=("header", "time"), covers=("§10-4",),
      requirement="expires MUST satisfy created < expires <= created + max_lifetime_ms; a "
      "receiver MUST refuse any other value with invalid_field.",
      accepts="problem invalid_field for expires = created and for a lifetime one ms over "
      "max_lifetime_ms")
async def expires_field(ctx: CaseContext) -> None:
    now = now_ms()
    longest = target(ctx).limits.max_lifetime_ms
    await _refused(ctx, "invalid_field", {"created": now, "expires": now},
                   {"created": now, "expires": now + longest + 1})


@case(id="HDR-012", clause="§9.1-3", level=Level.SHOULD, tags=("header", "problem"),
      covers=("§4.2-4", "§4.2-5", "§4.2-7", "§4.2-8", "§4.2-10", "§4.2-11"),
      requirement="A problem's path SHOULD locate the offending value: a refused header field "
      "is named as $.hdr.<field>, so that a sender can tell which check failed even where two "
      "checks give the same code.",
      accepts="invalid_field with path $.hdr.id, $.hdr.from, $.hdr.thread, $.hdr.prev, "
      "$.hdr.created (created = −1) and $.hdr.expires (expires = created), each for its field")
async def header_paths(ctx: CaseContext) -> None:
    who = identity(ctx)
    now = now_ms()
    variants: list[tuple[str, dict[str, Any]]] = [
        ("id", {"id": bytes(15)}), ("from", {"from": bytes(31)}),
        ("thread", {"thread": bytes(15)}), ("prev", {"prev": bytes(31)}),
        ("created", {"created": -1}), ("expires", {"created": now, "expires": now}),
    ]
    for field, header in variants:
        answer = await post(ctx, forged(ctx, who, header=header))
        expect_problem(ctx, answer, ["invalid_field"])
        path = answer.problem.body.path if answer.problem is not None else None
        ctx.expect(path == f"$.hdr.{field}", expected=f"path $.hdr.{field}",
                   actual=f"path {path!r} for {header}")
