"""What a vendor still holds of what the person gave it, as the agent knows it: the live shares,
and the fields an address update gave since the last withdrawal of all (§5.3.2-1, §12.10-1) —
what ``vrm withdraw`` takes back and what ``vrm end`` (and the page's End) would leave with the
vendor (§5.6.4-2)."""

from __future__ import annotations

from typing import Any

from vrmproto import _codec
from vrmproto._messages import AddressUpdate, DataErased, DataWithdraw
from vrmproto._state import State
from vrmproto.client import Agent, Delivery, RelationshipView

__all__ = ["erased_of", "holds_ours", "updated"]


def erased_of(d: Delivery) -> Any:
    """The data.erased among the replies of ``d`` (a withdrawal's), or None."""
    for r in d.replies:
        if isinstance(r.message.body, DataErased):
            return r.message
    return None


async def holds_ours(agent: Agent, view: RelationshipView) -> bool:
    """Whether the vendor holds something the person gave it: a live share, or fields from an
    address.update since the last withdrawal of all (what ending leaves with it, §5.6.4-2)."""
    return bool(view.shares) or (State(view.state) is State.AGREED
                                 and await updated(agent, view.thread))  # fmt: skip


async def updated(agent: Agent, thread: bytes) -> bool:
    """Whether the vendor may hold fields from an address.update of ours: one sent since our
    last withdrawal of all, which takes them back (§5.3.2-1), with or without a share live."""
    gave = False
    for e in await agent.history(thread):
        env = _codec.decode_form(e.envelope) if e.outgoing else {}
        if env.get("type") == AddressUpdate.TYPE:
            gave = True
        elif env.get("type") == DataWithdraw.TYPE and not _codec.decode_form(env["body"])["shares"]:
            gave = False
    return gave
