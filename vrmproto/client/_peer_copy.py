"""Whether the vendor accepted a message of ours whose answer we never had (§8.1-8).

A message delivered once without an answer — the connection broke after the request went out —
may be in the vendor's history. If it then expires in our outbox, or the vendor refuses it
``expired`` when we deliver it again (the time checks come before the replay record, §4.5-1),
dropping it (§8.1-7, §8.1-5) would fork the histories: the vendor would refuse every later
message of ours with ``chain_broken``. So before such a message is given up, the vendor's copy
of the history is asked (§12.5) and checked (§8.3-2): only a vendor that does not hold the
message lets it be dropped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from vrmproto._envelope import Signed, open_envelope
from vrmproto._errors import RETRYABLE, PeerProblemError, ProtocolError
from vrmproto._history import Entry, verify_entries
from vrmproto._messages import Receipt
from vrmproto._relationship import Received
from vrmproto.client._delivery import Delivery
from vrmproto.client._errors import Unreachable
from vrmproto.client._ledger import Ledger, Thread, to_row
from vrmproto.client._transport import Transport
from vrmproto.store import HistoryEntry, OutboxItem

__all__ = ["Accepted", "accepted_by_vendor", "delivered_after_all"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """The vendor holds our message: its receipt, then the entries of its history we lack
    after the message (the receipt first), to adopt (§8.3-3)."""

    receipt: Signed[Receipt]
    after: tuple[Entry, ...]


async def accepted_by_vendor(client: Transport, ledger: Ledger, t: Thread, msg_hash: bytes,
                             *, deadline: float | None = None) -> Accepted | None:  # fmt: skip
    """What the vendor's history holds after ``msg_hash``, if it holds it where ours does and
    follows it with its receipt for it (§8.1-8); None if it does not.

    None without asking for the first message of the thread: dropping it leaves nothing of
    ours to link to it. None too when our history goes on after the message (a receipt of ours
    logged behind it): the two then fork at the entry after it, not for this check to settle.
    Raises :class:`~vrmproto.TransportError` when the vendor cannot be asked, its subclass
    :class:`~vrmproto.PeerProblemError` when it refuses, and :class:`~vrmproto.ProtocolError`
    when its copy does not verify. ``deadline`` (the running loop's time; None: no bound)
    bounds the whole read, every page and retry: past it, :class:`Unreachable` (timed out).
    """
    head = await ledger.store.history_head(t.id)
    if t.rel.peer_key is None or head is None or head.msg_hash != msg_hash or head.index < 1:
        return None  # the first message of the thread is exempt (§8.1-8)
    at = head.index
    (before,) = await ledger.store.history(t.id, start=at - 1, limit=1)
    try:
        async with asyncio.timeout_at(deadline):  # every page and retry (None: no bound)
            theirs = await client.fetch_history(
                t.meta.history, ledger.identity(t.meta), t.id, t.rel.peer_key, start=at,
                timeout_s=None if deadline is None else max(
                    deadline - asyncio.get_running_loop().time(), 0.001),
            )  # fmt: skip
    except TimeoutError:  # the deadline's (the transport's own failures are Unreachable)
        raise Unreachable(f"POST {t.meta.history}: timed out") from None
    if not theirs or theirs[0].index != at:
        return None
    verify_entries(theirs, start_link=before.entry_hash, parties=(t.rel.identity.public_key,
                                                                  t.rel.peer_key))  # fmt: skip
    if theirs[0].link != head.entry_hash or len(theirs) < 2:
        return None
    first = open_envelope(theirs[1].envelope, now=0, check_time=False, limits=t.rel.limits)
    if not isinstance(first.body, Receipt) or first.body.ack != msg_hash:
        return None
    return Accepted(first, tuple(theirs[1:]))


async def delivered_after_all(
    client: Transport, ledger: Ledger, t: Thread, item: OutboxItem, now: int, *, msg_id: bytes,
    mtype: str, deadline: float | None = None,
) -> tuple[Delivery, tuple[HistoryEntry, ...], int] | None:
    """If the vendor holds ``item``'s message and its receipt (:func:`accepted_by_vendor`): the
    vendor's entries we lack applied to ``t`` (§8.3-3) and, for the Sender to close
    ``item`` with, its confirmed delivery, the history rows to store and ``now``. None, with
    ``t`` unchanged, if the vendor does not hold it, refuses to be read (a refusal of our
    current key: after a ``key.rotate`` of ours that it never took, it holds nothing of it),
    its copy does not verify or an entry of it cannot be applied. Raises
    :class:`~vrmproto.TransportError` when the vendor cannot be asked (or not before
    ``deadline``), or refuses for now.
    """
    try:
        accepted = await accepted_by_vendor(client, ledger, t, item.msg_hash, deadline=deadline)
        if accepted is None:
            return None
        probe = t.copy().rel  # t changes only once every entry is known to apply
        for e in accepted.after:
            probe.adopt(e.envelope)
    except PeerProblemError as exc:  # the vendor answered: not with the message
        if exc.problem in RETRYABLE:  # it may answer later (§9.1-9)
            raise
        return None
    except ProtocolError:
        return None
    entries = [t.rel.adopt(e.envelope) for e in accepted.after]
    replies = tuple(Received(open_envelope(e.envelope, now=0, check_time=False,
                                           limits=t.rel.limits), e)
                    for e in entries[1:])  # fmt: skip
    d = Delivery(t.id, msg_id, item.msg_hash, "confirmed", receipt=accepted.receipt,
                 replies=replies, attempts=item.attempts, type=mtype)
    return d, tuple(to_row(t.id, e, now) for e in entries), now
