"""What the customer's agent hands back: the results of its operations, and its views.

These are the :class:`~vrmproto.client.Agent` API's value types (frozen dataclasses), kept apart
from the operations so each operation module imports only what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vrmproto._errors import ProtocolError
from vrmproto._history import Divergence
from vrmproto._keys import fingerprint
from vrmproto._messages import Money
from vrmproto._vocab import TermRef, latest
from vrmproto.client._errors import KeyChangedError
from vrmproto.client._fanout import FanoutReport
from vrmproto.client._ledger import ThreadKind
from vrmproto.client._outbox import Delivery
from vrmproto.client._transport import RetryPolicy

__all__ = [
    "DEFAULT_TERMS",
    "FANOUT_RETRY",
    "ConnectResult",
    "ConnectStatus",
    "IntentcastResult",
    "KeyChangedError",
    "Offer",
    "Reconciliation",
    "Ref",
    "RelationshipView",
]

#: The terms an agent proffers unless told otherwise (§6.4.1).
DEFAULT_TERMS: tuple[TermRef, ...] = (
    TermRef.of(latest("vrm.no-tracking")),
    TermRef.of(latest("vrm.no-third-party")),
)

#: Retries inside one fan-out branch: quick, because the outbox takes over after a failure.
FANOUT_RETRY = RetryPolicy(attempts=2, base_s=0.05, cap_s=0.25, max_retry_after_s=1.0)

Ref = bytes | str
ConnectStatus = Literal["accepted", "rejected", "countered", "queued", "pending"]


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """The vendor's answer to a terms offer (§5.2).

    ``accepted``: agreed on ``terms`` (``agreement`` is the agreement id); ``rejected``: a
    signed no, with ``reason`` and the ``refused`` term ids; ``countered``: a no with ``counter``
    terms the vendor would accept instead (:meth:`Agent.accept_counter`); ``queued``: the
    offer waits in the outbox; ``pending``: delivered, the vendor has not answered yet.
    """

    thread: bytes
    vendor: str
    url: str
    status: ConnectStatus
    terms: tuple[TermRef, ...]
    agreement: bytes | None = None
    reason: str = ""
    refused: tuple[str, ...] = ()
    counter: tuple[TermRef, ...] | None = None
    delivery: Delivery | None = None
    #: True when nothing was sent: this is the live relationship we already had with the
    #: vendor's key (one per vendor, :meth:`Agent.connect`).
    existing: bool = False


@dataclass(frozen=True, slots=True)
class Offer:
    """A vendor's signed answer to an intentcast (§5.4.2), ready to :meth:`Agent.take_offer`."""

    vendor: str
    url: str
    vendor_key: bytes
    thread: bytes
    intent: bytes
    hash: bytes  # the offer message's hash: take it up with in_reply_to = hash
    description: str
    price: Money
    valid_until: int
    conditions: tuple[str, ...]
    accepts_terms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IntentcastResult:
    """The answers to one intentcast: ``offers`` cheapest first, who declined why, and which
    vendors were not asked (``skipped``)."""

    intent_id: bytes
    reply_by: int
    offers: tuple[Offer, ...]
    declines: tuple[tuple[str, str], ...]
    report: FanoutReport
    #: Vendors not asked, and why: ``(base URL, reason)`` — another URL of a vendor key
    #: already asked, or a vendor the person ended the relationship with.
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What :meth:`Agent.reconcile` found and did (§8.3).

    ``kind``: ``"equal"``; ``"adopted"`` — we were behind and took every entry we lacked;
    ``"ahead"`` — the vendor lacks entries (nothing to adopt, §8.3-5); ``"crossing"`` — both
    sent at once (§8.3-6); ``"fork"`` — the logs disagree, or an entry we lacked could not be
    applied (``stopped`` says why): nothing past that point is adopted. ``divergence`` is where
    the logs parted before anything was adopted; ``adopted`` counts the entries taken.
    """

    thread: bytes
    kind: Literal["equal", "adopted", "ahead", "crossing", "fork"]
    adopted: int = 0
    divergence: Divergence | None = None
    stopped: ProtocolError | None = None


@dataclass(frozen=True, slots=True)
class RelationshipView:
    """One relationship as a person looks at it."""

    thread: bytes
    kind: str  # "vendor" or "intent": :attr:`thread_kind`'s value
    vendor: str
    url: str
    state: str
    terms: tuple[TermRef, ...]
    agreement: bytes | None
    shares: tuple[tuple[bytes, int], ...]  # live data.share hashes and their expiry (ms)
    last_activity_ms: int
    pending: int  # messages waiting in the outbox
    last_problem: str
    local_key: bytes
    peer_key: bytes
    generation: int

    @property
    def thread_kind(self) -> ThreadKind:
        """What the thread is: a vendor relationship, or one vendor's thread of an intentcast."""
        return ThreadKind(self.kind)

    @property
    def vendor_fingerprint(self) -> str:
        return fingerprint(self.peer_key)
