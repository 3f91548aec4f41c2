"""What an endpoint answers: the :class:`Policy` protocol and the :class:`ReferencePolicy`.

The endpoint engine (``_endpoint.py`` and the modules beside it) owns every protocol rule —
verification, the state machine, storage, receipts. A policy owns only the business decisions
the rules leave open: which terms to agree to, what to offer for an intentcast, what else to
return on a data request. Its methods are awaited inside the protocol step, before the commit,
so they may look things up; their answers are checked by the same rules as any other message we
send, and an answer that breaks one is logged and dropped (the peer still gets its receipt).

The engine finds the method to ask by the incoming message's body class, in the table
:data:`vrmproto.server._replies.REPLIES`: a message type whose answer a vendor decides adds
its method here (to :class:`Policy` and :class:`ReferencePolicy`) and one entry there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vrmproto._envelope import Signed
from vrmproto._messages import (
    DataRequest,
    FieldsContent,
    Intentcast,
    IntentDecline,
    IntentOffer,
    Money,
    RecordsContent,
    TermsAccept,
    TermsOffer,
    TermsReject,
)
from vrmproto._relationship import Relationship
from vrmproto._vocab import DataRecord, TermRef, check_refs, matches

__all__ = ["CatalogueItem", "Event", "Policy", "ReferencePolicy"]

#: How long the reference policy's intent offers stay valid, counted from the intentcast (ms).
OFFER_VALIDITY_MS = 7 * 86_400_000
_MAX_TERMS = 32


@dataclass(frozen=True, slots=True)
class Event:
    """A message the endpoint accepted and stored, for integration hooks (§12.12).

    ``kind`` is the message type (``"terms.offer"``, ``"data.share"``…), ``content`` the opened
    sealed content of a data.share, address.update or data.return, else None.
    """

    kind: str
    thread: bytes
    message: Signed[Any]
    content: FieldsContent | RecordsContent | None = None


class Policy(Protocol):
    """The decisions an endpoint delegates. ``rel`` is the relationship after the incoming
    message was applied and before any reply; a policy reads it and must not change it."""

    @property
    def accepts_terms(self) -> tuple[str, ...]:
        """Term ids this endpoint agrees to, published in discovery (§13)."""
        ...

    async def on_terms_offer(
        self, rel: Relationship, msg: Signed[TermsOffer]
    ) -> TermsAccept | TermsReject | None:
        """``msg.accept()`` or ``msg.reject(...)``; None leaves the offer open for later."""
        ...

    async def on_intentcast(
        self, rel: Relationship, msg: Signed[Intentcast]
    ) -> IntentOffer | IntentDecline | None:
        """``msg.offer(...)``, ``msg.decline(...)`` or None (no answer)."""
        ...

    async def on_data_request(
        self, rel: Relationship, msg: Signed[DataRequest], held: Sequence[DataRecord]
    ) -> Sequence[DataRecord]:
        """Records to return besides ``held`` (what the customer provided): what the vendor
        observed or derived about this customer (§6.8-5)."""
        ...

    async def on_message(self, event: Event) -> None:
        """Called after commit for every accepted message; never delays the receipt."""
        ...


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    """Something the reference vendor can offer in answer to an intentcast."""

    description: str
    keywords: tuple[str, ...]
    price: Money
    conditions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "keywords", _strings("keywords", self.keywords))
        object.__setattr__(self, "conditions", _strings("conditions", self.conditions))


def _listed(name: str, values: Iterable[Any]) -> tuple[Any, ...]:
    """``values`` as a tuple; ``TypeError`` for a lone string, which would be read as its
    characters."""
    if isinstance(values, str | bytes):
        raise TypeError(f"{name} is a list, not one string: {values!r}")
    return tuple(values)


def _strings(name: str, values: Iterable[str]) -> tuple[str, ...]:
    """:func:`_listed`, each a string."""
    out = _listed(name, values)
    for value in out:
        if not isinstance(value, str):
            raise TypeError(f"{name} holds strings, not {value!r}")
    return out


def _has_word(text: str, keyword: str) -> bool:
    pattern = r"(?<![a-z0-9])" + re.escape(keyword.lower()) + r"(?![a-z0-9])"
    return re.search(pattern, text) is not None


class ReferencePolicy:
    """The reference vendor's decisions: agree to known terms, counter, answer intentcasts.

    - A terms.offer is accepted when every offered term id is in ``accepts_terms``; when some
      are refused and ``counter`` is set, the answer is a counter-offer of the acceptable
      offered terms plus the ``counter`` terms; otherwise a reject naming the refused ids.
    - An intentcast gets an offer of the cheapest ``catalogue`` item whose keywords all appear
      (as words) in its ``what`` and ``constraints``, and whose price is within ``max_price``
      when one is given; otherwise a decline.
    - A data.request returns what the customer shared and nothing observed
      (``observed`` adds fixed records, for demos and tests).
    """

    __slots__ = ("accepts_terms", "catalogue", "counter", "name", "observed")

    def __init__(
        self,
        *,
        accepts_terms: Iterable[str] = (),
        counter: Iterable[TermRef] = (),
        catalogue: Iterable[CatalogueItem] = (),
        name: str = "reference vendor",
        observed: Iterable[DataRecord] = (),
    ) -> None:
        self.accepts_terms = _strings("accepts_terms", accepts_terms)
        self.counter = _listed("counter", counter)
        self.catalogue = _listed("catalogue", catalogue)
        self.name = name
        self.observed = _listed("observed", observed)
        if self.counter:
            check_refs(self.counter)  # a counter we could never send is a configuration error

    def __repr__(self) -> str:
        return f"ReferencePolicy(name={self.name!r}, accepts_terms={self.accepts_terms!r})"

    async def on_terms_offer(
        self, rel: Relationship, msg: Signed[TermsOffer]
    ) -> TermsAccept | TermsReject | None:
        result = matches(msg.body.terms, self.accepts_terms)
        if result.complete:
            return msg.accept()
        refused = result.refused_ids
        reason = "we cannot agree to: " + ", ".join(refused) if refused else "nothing was offered"
        if self.counter:
            ids = {t.id for t in result.accepted}
            extra = tuple(t for t in self.counter if t.id not in ids)
            proposal = (result.accepted + extra)[:_MAX_TERMS]
            if proposal:
                return msg.reject(reason, refused=refused[:_MAX_TERMS], counter=proposal)
        return msg.reject(reason, refused=refused[:_MAX_TERMS])

    async def on_intentcast(
        self, rel: Relationship, msg: Signed[Intentcast]
    ) -> IntentOffer | IntentDecline | None:
        cast = msg.body
        text = " ".join((cast.what, *cast.constraints)).lower()
        fits = [
            item
            for item in self.catalogue
            if all(_has_word(text, k) for k in item.keywords)
            and (
                cast.max_price is None
                or (
                    item.price.currency == cast.max_price.currency
                    and item.price.amount <= cast.max_price.amount
                )
            )
        ]
        if not fits:
            return msg.decline("nothing we offer matches this request")
        best = min(fits, key=lambda item: item.price.amount)
        return msg.offer(
            best.description,
            best.price,
            valid_until=msg.header.created + OFFER_VALIDITY_MS,
            conditions=best.conditions,
            accepts_terms=self.accepts_terms[:_MAX_TERMS],
        )

    async def on_data_request(
        self, rel: Relationship, msg: Signed[DataRequest], held: Sequence[DataRecord]
    ) -> Sequence[DataRecord]:
        return self.observed

    async def on_message(self, event: Event) -> None:
        return None
