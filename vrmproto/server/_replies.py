"""The replies to an accepted message, chained after its receipt (§12.3-2).

:data:`REPLIES` is keyed by message body class: each entry asks the endpoint's
:class:`~vrmproto.server.Policy` the method that decides its answer (or, for a withdrawal,
answers as the rules require) and adds what it sends to the step. A message type the endpoint
answers adds one entry here and its method to ``Policy``. A policy that fails, or an answer our
own rules refuse, is logged and dropped: the peer still gets its receipt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from vrmproto._envelope import Signed
from vrmproto._errors import ProtocolError
from vrmproto._messages import (
    Body,
    DataErased,
    DataRequest,
    DataReturn,
    DataWithdraw,
    Intentcast,
    RecordsContent,
    TermsOffer,
)
from vrmproto._vocab import DATA_FORMAT, DataRecord
from vrmproto.server._held import live_held, to_data

if TYPE_CHECKING:
    from vrmproto.server._accept import Step
    from vrmproto.server._endpoint import Endpoint

__all__ = ["REPLIES", "Reply", "reply"]

log = logging.getLogger("vrmproto.server")

#: One entry of :data:`REPLIES`: ``await answer(endpoint, step, msg, now)`` adds the replies.
Reply = Callable[["Endpoint", "Step", Signed[Any], int], Awaitable[None]]


async def reply(ep: Endpoint, step: Step, msg: Signed[Any], now: int) -> None:
    """The replies to ``msg``, added to ``step`` after its receipt (§12.3-2)."""
    answer = REPLIES.get(type(msg.body))
    if answer is None:
        return
    try:
        await answer(ep, step, msg, now)
    except Exception:
        log.exception("policy failed on %s %s", msg.type, msg.hash.hex())
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise  # the step itself is cancelled: the server stops, say
        # a future the policy awaited was cancelled elsewhere: a failure of the policy, not
        # a reason to leave the peer without its receipt
        log.exception("policy failed on %s %s", msg.type, msg.hash.hex())


def send(step: Step, body: Body, now: int, msg_id: bytes) -> None:
    """Sign ``body`` as our next message in the step, unless our own rules refuse it."""
    try:
        step.replies.append(step.rel.send(body, now=now, msg_id=msg_id))
    except (ProtocolError, ValueError):
        log.exception("dropping a %s reply our own rules refuse", body.TYPE)


async def _terms_offer(ep: Endpoint, step: Step, msg: Signed[TermsOffer], now: int) -> None:
    """Accept, reject or counter, as the policy decides (§5.2, §6.5)."""
    answer = await ep.policy.on_terms_offer(step.rel, msg)
    if answer is not None:
        send(step, answer, now, ep.random_id())


async def _intentcast(ep: Endpoint, step: Step, msg: Signed[Intentcast], now: int) -> None:
    """An offer or a decline, as the policy decides, while the intentcast takes answers."""
    if now <= msg.body.reply_by:
        answer = await ep.policy.on_intentcast(step.rel, msg)
        if answer is not None:
            send(step, answer, now, ep.random_id())


async def _data_withdraw(ep: Endpoint, step: Step, msg: Signed[DataWithdraw], now: int) -> None:
    """Confirm the erasure of every withdrawn share (§5.3.3-2, §12.10-2): no decision."""
    rel = step.rel
    answer = DataErased(withdraw=msg.hash, shares=rel.pending_withdraws[msg.hash])
    send(step, answer, now, ep.random_id())


async def _data_request(ep: Endpoint, step: Step, msg: Signed[DataRequest], now: int) -> None:
    """What the customer provided, plus what the policy adds, sealed to them (§12.10-3)."""
    rel = step.rel
    held = [to_data(h) for h in await live_held(ep.store, msg.thread, now)]
    extra: Sequence[DataRecord] = await ep.policy.on_data_request(rel, msg, held)
    msg_id = ep.random_id()
    try:
        sealed = rel.seal(RecordsContent(records=(*held, *extra)), msg_id=msg_id)
        answer = DataReturn(request=msg.hash, format=DATA_FORMAT, sealed=sealed)
    except (ProtocolError, ValueError):
        log.exception("cannot build the data.return for %s", msg.hash.hex())
        return
    send(step, answer, now, msg_id)


#: The reply to each message body class the endpoint answers beyond its receipt (§12.3-2).
REPLIES: dict[type[Body], Reply] = {
    TermsOffer: _terms_offer,
    Intentcast: _intentcast,
    DataWithdraw: _data_withdraw,
    DataRequest: _data_request,
}
