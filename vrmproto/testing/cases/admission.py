"""Admission control for first contact: the budget of relationships without an agreement that one
client address may hold open (§10-17, §11.8-2).

Filling a budget from the suite's own address would refuse the first contacts of every case that
runs after it. So the case speaks from an address of its own: on a loopback target it binds its
connections to a random 127.x.y.1, outside the suite's /24; elsewhere it is not checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from vrmproto._messages import Intentcast
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext
from vrmproto.testing._context import suite_session as new_session

from ._support import (
    Answer,
    expect_problem,
    identity,
    new_id,
    now_ms,
    post,
    sign,
    target,
)

M = Level.MUST
#: Largest budget the case fills (one intentcast per relationship); above, it is not checked.
MAX_BUDGET = 512
#: Intentcasts in flight at once while filling the budget.
CONCURRENCY = 8


def _own_loopback_source(ctx: CaseContext) -> str | None:
    """A loopback address in a /24 of its own to connect from, or None when the target is not
    on IPv4 loopback or the system cannot bind such an address (only Linux routes all of
    127.0.0.0/8 to loopback by default)."""
    host = urlsplit(target(ctx).inbox).hostname or ""
    try:
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            return None
        if host != "localhost" and ipaddress.ip_address(host).version != 4:
            return None
    except ValueError:
        return None
    salt = new_id(ctx)
    source = f"127.{1 + salt[0] % 254}.{salt[1]}.1"  # never 127.0.0.x, the suite's /24
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind((source, 0))
    except OSError:
        return None
    finally:
        probe.close()
    return source


@case(id="ADM-001", clause="§10-17", level=M, tags=("admission", "limits", "rate"),
      covers=("§11.8-2",),
      requirement="A vendor receiver that answers over HTTP MUST refuse a first contact from a "
      "client address prefix that already holds open_relationships_per_address open "
      "negotiations with 429, the problem rate_limited and a Retry-After header, and MUST NOT "
      "refuse one while it holds fewer.",
      accepts="from an address of a /24 of its own, open_relationships_per_address intentcasts "
      "whose reply_by has passed (the endpoint owes them no answer, §5.4.1-3, so they stay "
      "intent_open) get receipts and the next gets 429, problem rate_limited, Retry-After (not "
      "checked on a target that is not on IPv4 loopback, for a budget above "
      f"{MAX_BUDGET}, or where the endpoint settles such intentcasts at once)")
async def open_relationship_budget(ctx: CaseContext) -> None:
    t = target(ctx)
    budget = t.limits.open_relationships_per_address
    source = _own_loopback_source(ctx)
    if source is None or budget > MAX_BUDGET:
        ctx.expect(True, expected="an address of its own to fill the budget from",
                   actual=f"not checked: budget {budget}, target {t.inbox}")
        return
    suite_session = ctx.session
    # A session like the suite's (kept-alive connections reused as briefly, a request lost to
    # the idle-close race of §10.1-2 sent again), from the case's own address.
    async with new_session(suite_session.timeout, local_addr=(source, 0)) as session:
        ctx.session = session
        try:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def first_contact() -> Answer:
                # Past its reply_by, an intentcast is owed no answer: the negotiation stays open
                # (intent_open), which is what the budget counts (§10-17).
                who = identity(ctx)
                cast = Intentcast(what="a 4-wheel-drive SUV in Park City, March 20-25",
                                  reply_by=now_ms() - 1, constraints=(),
                                  memberships=())  # fmt: skip
                msg = sign(ctx, cast, who)
                async with gate:
                    return await post(ctx, msg.envelope, recipient_key=who.public_key)

            answers = await asyncio.gather(*(first_contact() for _ in range(budget)))
            last = await first_contact()  # the budget is full now
        finally:
            ctx.session = suite_session
    admitted = [a for a in answers if a.status == 200 and a.receipt is not None]
    settled = [a for a in admitted if len(a.replies) > 1]
    if len(admitted) == budget and settled and last.status == 200:
        ctx.expect(True, expected="negotiations the endpoint leaves open, to fill the budget",
                   actual=f"not checked: the endpoint answered {len(settled)} of {budget} late "
                   "intentcasts at once, which settles them")  # fmt: skip
        return
    others = sorted({a.describe() for a in answers if a not in admitted})
    ctx.expect(len(admitted) == budget,
               expected=f"receipts for all {budget} intentcasts from {source}",
               actual=f"{len(admitted)} receipts; also {'; '.join(others)[:500]}")
    expect_problem(ctx, last, ["rate_limited"])
    header = last.exchange.header("Retry-After") or ""
    retry = last.problem.body.retry_after if last.problem is not None else None
    ctx.expect(header.isdigit() and int(header) > 0 and retry == int(header),
               expected="a Retry-After header of whole seconds, equal to the problem's "
               "retry_after", actual=f"Retry-After {header!r}, retry_after {retry}")
