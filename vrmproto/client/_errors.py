"""The transport errors the client raises (spec §12.4), beside the core's tree.

::

    VrmError
    └── TransportError              the network or the peer failed
        ├── PeerProblemError        refused: the peer answered with a signed, verified problem
        ├── InvalidResponse         the answer could not be used (wrong status, bad bytes,
        │                           a problem that does not verify, a receipt that does not)
        ├── Transient               try again later: 5xx, 429, 408 (``retry_after`` if given)
        │   └── Unreachable         no answer at all: refused connection, reset, timeout
        └── Queued                  not delivered now; the message waits in the outbox

A caller tells "retry later" (:class:`Transient`) from "refused" (:class:`PeerProblemError`).
The outbox treats every :class:`TransportError` but a verified problem as "retry later": only
the peer's signed word makes a message undeliverable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vrmproto._errors import PeerProblemError, TransportError

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
    """The peer answered, but not in a form §12 allows, or with bytes that do not verify."""

    def __init__(self, detail: str, *, status: int | None = None) -> None:
        self.detail = detail
        self.status = status
        super().__init__(detail)


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
