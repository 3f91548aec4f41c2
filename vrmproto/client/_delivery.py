"""What became of a message the outbox sent: one :class:`Delivery`, or an :class:`OutboxRun`
of them (spec §12, durability)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vrmproto._envelope import Signed
from vrmproto._errors import VrmError
from vrmproto._messages import Receipt
from vrmproto._quick import quick_init
from vrmproto._relationship import Received

__all__ = ["MAX_REPLIES", "Delivery", "DeliveryStatus", "OutboxRun"]

#: Most replies of the vendor applied from one answer to a message of ours (§12.3-7).
#: The reference vendor sends at most one (§12.3-2); each reply applied costs a receipt of
#: ours, signed with a save point and queued (§5.6.1-2), so without a bound one answer of a
#: hostile vendor (4 MiB of small ``intent.offer``) cost the agent minutes and gigabytes.
#: Replies past it are not applied, as those after one that breaks a rule (§12.3-6).
MAX_REPLIES = 64

DeliveryStatus = Literal["confirmed", "queued", "refused", "dropped"]


@quick_init
@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one message.

    - ``confirmed``: the vendor stored it; ``receipt`` is its verified, signed receipt and
      ``replies`` the vendor's verified replies that came with it.
    - ``queued``: not delivered yet; it waits in the outbox (``error`` says why). ``msg_hash``
      is empty (``b""``) while it is still a draft, not yet signed, behind earlier messages.
    - ``refused``: the vendor answered with a verified signed problem (``error``).
    - ``dropped``: it expired before it could be delivered, or could no longer be signed.

    ``type`` is the message type (``""`` where it could not be read). ``earlier``: what became
    of the relationship's messages that waited before this one and went (or were given up)
    in the same call, oldest first — a queued message the vendor refuses on the way is
    reported there, to the caller who sent it on its way, and not only in ``last_problem``.
    """

    thread: bytes
    msg_id: bytes
    msg_hash: bytes
    status: DeliveryStatus
    receipt: Signed[Receipt] | None = None
    replies: tuple[Received, ...] = ()
    error: VrmError | None = None
    attempts: int = 0
    type: str = ""
    earlier: tuple[Delivery, ...] = ()

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"

    def reply_bodies(self) -> list[Any]:
        return [r.message.body for r in self.replies]


@dataclass(frozen=True, slots=True)
class OutboxRun:
    """The outcome of one :meth:`Outbox.run`."""

    deliveries: tuple[Delivery, ...] = field(default_factory=tuple)

    def _count(self, status: str) -> int:
        return sum(1 for d in self.deliveries if d.status == status)

    @property
    def confirmed(self) -> int:
        return self._count("confirmed")

    @property
    def queued(self) -> int:
        return self._count("queued")

    @property
    def refused(self) -> int:
        return self._count("refused")

    @property
    def dropped(self) -> int:
        return self._count("dropped")

    def counts(self) -> dict[str, int]:
        return {s: self._count(s) for s in ("confirmed", "queued", "refused", "dropped")}
