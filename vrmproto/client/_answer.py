"""A vendor's answer to one of our messages, applied to the relationship: the receipt for it
first, then the replies that came with it (§12.3-1, §5.6.1)."""

from __future__ import annotations

from vrmproto._errors import ProtocolError
from vrmproto._messages import Receipt
from vrmproto._relationship import Received
from vrmproto.client._delivery import MAX_REPLIES
from vrmproto.client._errors import InvalidResponse
from vrmproto.client._ledger import Thread

__all__ = ["apply_answer"]


def apply_answer(t: Thread, msg_hash: bytes, envelopes: list[bytes], now: int
                 ) -> tuple[Received, tuple[Received, ...]]:  # fmt: skip
    """Apply a 200's envelopes to ``t``: a receipt for ``msg_hash`` first (§12.3-1), then at
    most MAX_REPLIES replies; InvalidResponse when the answer is not one (a reply that breaks a
    rule is recorded in the thread's ``last_problem``, not applied: the receipt stands)."""
    rel = t.rel
    if not envelopes:
        raise InvalidResponse("a message other than a receipt was answered 204", status=204)
    try:
        first = rel.open(envelopes[0], now=now)
    except ProtocolError as exc:
        raise InvalidResponse(f"the receipt does not verify: {exc}", status=200) from None
    if first.type != Receipt.TYPE or first.body.ack != msg_hash:
        raise InvalidResponse("the first reply is not a receipt for this message", status=200)
    try:
        receipt = rel.receive(first, now=now)
    except ProtocolError as exc:
        raise InvalidResponse(f"the receipt is not acceptable: {exc}", status=200) from None
    replies: list[Received] = []
    for env in envelopes[1:]:
        if len(replies) == MAX_REPLIES:
            t.meta.last_problem = f"more than {MAX_REPLIES} replies; the rest not applied"
            break
        try:
            replies.append(rel.receive(env, now=now))
        except ProtocolError as exc:
            t.meta.last_problem = f"a reply was refused: {exc}"
            break
    return receipt, tuple(replies)
