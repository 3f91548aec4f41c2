"""The transport errors the client raises (spec §12.4), beside the core's tree.

::

    VrmError
    ├── TransportError              the network or the peer failed
    │   ├── PeerProblemError        refused: the peer answered with a signed, verified problem
    │   ├── InvalidResponse         the answer could not be used (wrong status, bad bytes,
    │   │   │                       a problem that does not verify, a receipt that does not);
    │   │   │                       ``error``: the rule of the spec the vendor's bytes broke
    │   │   └── PeerRuleError       found verifying its document or history; also that
    │   │                           ProtocolError (code, clause, path), below
    │   ├── Transient               try again later: 5xx, 429, 408 (``retry_after`` if given)
    │   │   └── Unreachable         no answer at all: refused connection, reset, timeout
    │   └── Queued                  not delivered now; the message waits in the outbox
    ├── ProtocolError               a rule of the spec broken (the core's)
    │   ├── PeerRuleError           (above)
    │   └── ValidationError
    │       └── KeyChangedError     a vendor we know answers with another key (bad_key); in
    │                               ``InvalidResponse.error`` when it came in an answer
    ├── NotFound                    no relationship (or waiting message) that a reference
    │                               names; also a LookupError
    └── ForeignStore                the store belongs to another master seed; also a ValueError

A caller tells "retry later" (:class:`Transient`) from "refused" (:class:`PeerProblemError`).
The outbox treats every :class:`TransportError` but a verified problem as "retry later": only
the peer's signed word makes a message undeliverable. One exception: an answer signed by another
key than the one we hold (:class:`InvalidResponse` whose ``error`` is a
:class:`KeyChangedError`), when the vendor's discovery document is now signed by that other
key too, is *held* in the outbox — not retried until a person acts (§11.10-1; the outbox,
:mod:`vrmproto.client._held`).

Which side broke a rule: a :class:`~vrmproto.ProtocolError` raised by a call that sends is
about *our own* message, checked by the same rules the vendor will apply before anything is
signed or sent (§7): nothing went out. What the *vendor* sent that breaks a rule reaches the caller
as :class:`InvalidResponse` with the :class:`~vrmproto.ProtocolError` as ``error`` (its problem
code unchanged); :func:`InvalidResponse.of` makes one at a boundary that verifies the vendor's
bytes itself. So do the calls that verify a vendor's document or history themselves:
``EndpointClient.fetch_discovery`` and ``Agent.connect`` (its discovery document, §13.1, and
whether it opens relationships at all, §13.1-10), ``Agent.compare_history`` and
``Agent.reconcile`` (its copy of the history, §8.3-2). What they raise is a
:class:`PeerRuleError`: an :class:`InvalidResponse` that is also the
:class:`~vrmproto.ProtocolError` (code, clause, path) they raised bare before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from vrmproto._errors import (
    PeerProblemError,
    Problem,
    ProtocolError,
    TransportError,
    ValidationError,
    VrmError,
)
from vrmproto._keys import fingerprint

if TYPE_CHECKING:
    from vrmproto.client._delivery import Delivery

__all__ = [
    "ForeignStore",
    "InvalidResponse",
    "KeyChangedError",
    "NotFound",
    "PeerProblemError",
    "PeerRuleError",
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
        """The peer's ``what`` (``"its copy of the history"``) does not verify: ``error``. A
        :class:`PeerRuleError`: also ``error``'s :class:`~vrmproto.ProtocolError` (its code,
        clause and path), so that a caller of the calls that raised it bare still catches it.
        An ``error`` that is already the peer's (an :class:`InvalidResponse`) is kept."""
        if isinstance(error, InvalidResponse):
            return error
        return PeerRuleError(f"{what} does not verify: {error}", status=status, error=error)


class PeerRuleError(InvalidResponse, ProtocolError):
    """Bytes the peer sent break a rule of the spec, found where the client verifies them: its
    discovery document (§13.1; ``fetch_discovery``, ``Agent.connect``), its copy of a history
    (§8.3-2; ``Agent.compare_history``, ``Agent.reconcile``). It is an :class:`InvalidResponse`
    — the peer's fault; nothing of ours was refused — whose ``error`` is the rule broken, and
    it is that :class:`~vrmproto.ProtocolError` too (the same ``code``, ``clause`` and
    ``path``): these calls raised it bare before, and callers catch it either way.
    """

    def __init__(self, detail: str, *, status: int | None = None,
                 error: ProtocolError) -> None:  # fmt: skip
        self.detail = detail
        self.status = status
        self.error = error
        self.code = error.code
        self.clause = error.clause
        self.path = error.path
        Exception.__init__(self, detail)  # not ProtocolError's: the text is ``detail``


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


class NotFound(VrmError, LookupError):  # noqa: N818 -- what a caller branches on, as KeyError
    """No relationship — or waiting message — that a reference names: a vendor's URL or name,
    a thread id or its prefix, a message id's prefix. Also a :class:`LookupError`."""


class ForeignStore(VrmError, ValueError):  # noqa: N818 -- named for what it is
    """The store holds the relationships of another master seed than the one given: an agent
    on it could sign nothing its vendors would accept. Also a :class:`ValueError`."""


class KeyChangedError(ValidationError):
    """A vendor we already know answers with another key (§11.10-1, §13.1-4): refused.

    ``url`` and ``name`` say where and under which name we know the vendor; ``pinned`` are the
    keys we hold for it, ``offered`` the key of the document just fetched (or that signed the
    answer: ``path`` ``$.from``). A legitimate re-key is accepted only by a person's explicit
    decision: ``Agent.connect(accept_new_key=fp)`` with the new key's fingerprint, checked with
    the vendor another way (the reference agent: ``vrm connect URL --accept-new-key FP``,
    §11.10-3).
    """

    def __init__(self, url: str, name: str, *, by: str, pinned: Iterable[bytes],
                 offered: bytes, path: str = "$.discovery.key") -> None:  # fmt: skip
        self.url = url
        self.name = name
        self.by = by
        self.pinned = tuple(sorted(pinned))
        self.offered = offered
        held = ", ".join(fingerprint(k) for k in self.pinned)
        where = f"at {url}" if by == "url" else f"named {name!r}"
        super().__init__(
            f"the vendor {where} now signs with key {fingerprint(offered)}, not the key you "
            f"hold for it ({held}); refused: it may be an impostor. Accept the new key only "
            "after checking its fingerprint with the vendor another way",
            code=Problem.BAD_KEY, clause="§11.10-1", path=path,
        )  # fmt: skip
