"""The transport errors the client raises (spec §12.4), beside the core's tree.

::

    VrmError
    └── TransportError              the network or the peer failed
        ├── PeerProblemError        refused: the peer answered with a signed, verified problem
        ├── InvalidResponse         the answer could not be used (wrong status, bad bytes,
        │                           a problem that does not verify, a receipt that does not);
        │                           ``error``: the rule of the spec the vendor's bytes broke
        ├── Transient               try again later: 5xx, 429, 408 (``retry_after`` if given)
        │   └── Unreachable         no answer at all: refused connection, reset, timeout
        └── Queued                  not delivered now; the message waits in the outbox

A caller tells "retry later" (:class:`Transient`) from "refused" (:class:`PeerProblemError`).
The outbox treats every :class:`TransportError` but a verified problem as "retry later": only
the peer's signed word makes a message undeliverable.

Which side broke a rule: a :class:`~vrmproto.ProtocolError` raised by a call that sends is
about *our own* message, checked by the same rules the vendor will apply before anything is
signed or sent (§7): nothing went out. What the *vendor* sent that breaks a rule reaches the caller
as :class:`InvalidResponse` with the :class:`~vrmproto.ProtocolError` as ``error`` (its problem
code unchanged); :func:`InvalidResponse.of` makes one at a boundary that verifies the vendor's
bytes itself. Two documented calls raise the vendor's :class:`~vrmproto.ProtocolError` bare,
reading a discovery document (``fetch_discovery``, §13.1; ``Agent.connect`` reads one before
it builds its offer) and verifying the vendor's copy of a history (``Agent.compare_history``,
``Agent.reconcile``, §8.3-2); a caller that reports errors wraps them with
:meth:`InvalidResponse.of`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vrmproto._errors import PeerProblemError, ProtocolError, TransportError

if TYPE_CHECKING:
    from vrmproto.client._delivery import Delivery

__all__ = [
    "InvalidResponse",
    "PeerProblemError",
    "Queued",
    "Transient",
    "TransportError",
    "Unreachable",
]


class InvalidResponse(TransportError):  # noqa: N818 -- named for what happened, as httpx
    """The peer answered, but not in a form §12 allows, or with bytes that do not verify.

    ``error`` is the :class:`~vrmproto.ProtocolError` the peer's bytes raised, where one did:
    the rule they break and its problem code (§9), which stay the vendor's, not ours.
    """

    def __init__(self, detail: str, *, status: int | None = None,
                 error: ProtocolError | None = None) -> None:  # fmt: skip
        self.detail = detail
        self.status = status
        self.error = error
        super().__init__(detail)

    @classmethod
    def of(cls, error: ProtocolError, what: str, *, status: int | None = None) -> InvalidResponse:
        """The peer's ``what`` (``"its copy of the history"``) does not verify: ``error``."""
        return cls(f"{what} does not verify: {error}", status=status, error=error)


class Transient(TransportError):  # noqa: N818 -- an outcome callers branch on
    """A failure worth retrying later (§12.4-3): 5xx, 429 or 408, or no answer at all.

    ``retry_after`` is the peer's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self, detail: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        super().__init__(detail)


class Unreachable(Transient):
    """No HTTP answer: the connection was refused or reset, or the request timed out."""


class Queued(TransportError):  # noqa: N818 -- an outcome callers branch on
    """The message is stored in the outbox and will be delivered later (§12 durability).

    ``cause`` is the failure that stopped the delivery now; ``delivery``, where there is one,
    the message's :class:`~vrmproto.client.Delivery` (its ``earlier``: what went, or was given
    up, before it in the same call).
    """

    def __init__(self, detail: str, *, cause: TransportError | None = None,
                 delivery: Delivery | None = None) -> None:  # fmt: skip
        self.detail = detail
        self.cause = cause
        self.delivery = delivery
        super().__init__(detail)
