"""Drafts: the messages a customer node means to send, as data, until their turn comes.

A message for a thread that has an undelivered one cannot be signed yet (one message in flight
per thread, :mod:`vrmproto.client._outbox`): it waits as a *draft*, with its message id already
chosen, and is signed against the state the vendor will see when the one before it is closed.

Each kind of draft is a frozen dataclass; :data:`Draft` is their union. A draft signs itself
(:meth:`TermsOfferDraft.sign` and so on — dispatch by type, no table of names), names the message
type it becomes (``MESSAGE_TYPE``: a sender sends only the types a vendor lists, §13.1-3), and
is stored as canonical msgpack ``{"args": …, "id": …, "op": …}`` (:func:`encode_draft`,
:func:`decode_draft`) — the form earlier releases wrote, so drafts queued by them still sign.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from vrmproto import _codec
from vrmproto._errors import Problem, StateError, ValidationError
from vrmproto._keys import Identity, check_enc_key
from vrmproto._messages import (
    AddressUpdate,
    DataRequest,
    DataShare,
    DataWithdraw,
    FieldsContent,
    Intentcast,
    KeyRotate,
    RelationshipEnd,
    TermsOffer,
)
from vrmproto._quick import quick_make, quick_new
from vrmproto._relationship import Sent
from vrmproto._vocab import DATA_FORMAT, TermRef
from vrmproto.client._ledger import Thread, ThreadKind
from vrmproto.store import ShareNote

__all__ = [
    "AcceptCounterDraft",
    "AddressDraft",
    "DataRequestDraft",
    "DeclineDraft",
    "Draft",
    "DraftKind",
    "EndDraft",
    "IntentcastDraft",
    "RotateDraft",
    "ShareDraft",
    "Signer",
    "TermsOfferDraft",
    "WithdrawDraft",
    "decode_draft",
    "encode_draft",
]


#: A share note's status until the vendor's receipt is in (:attr:`ShareNote.status`).
QUEUED = "queued"

#: ``DataShare(agreement, purposes, categories, expires, sealed)``, on the hot path of sharing
_new_share = quick_new(DataShare)
#: ``ShareNote(...)``, made and settled once per share (#12)
_new_note = quick_make(ShareNote)


def with_status(note: ShareNote, status: str) -> ShareNote:
    """``dataclasses.replace(note, status=status)``, without its walk over the fields."""
    return _new_note(note.share, note.thread, note.vendor, note.fields, note.purposes,
                     note.categories, note.expires_ms, note.shared_ms, status,
                     note.withdrawn_ms)  # fmt: skip


class DraftKind(enum.Enum):
    """The tag each kind of draft is stored under (the ``op`` of earlier releases)."""

    TERMS_OFFER = "terms.offer"
    ACCEPT_COUNTER = "terms.accept-counter"
    SHARE = "data.share"
    WITHDRAW = "data.withdraw"
    DATA_REQUEST = "data.request"
    ADDRESS = "address.update"
    INTENTCAST = "intentcast"
    ROTATE = "key.rotate"
    END = "relationship.end"


class Signer(Protocol):
    """What signing a draft needs from the node beside the thread itself."""

    def endpoint_for(self, thread: bytes) -> str | None:
        """Our agent endpoint's base URL told to the vendor of ``thread`` (§12.11-4)."""

    def next_identity(self, t: Thread) -> Identity:
        """Our key in ``t`` after one more rotation (§2.3, §2.6)."""


def _agreement(t: Thread) -> bytes:
    if t.rel.agreement is None:
        raise StateError("there is no agreement in this relationship", clause="§5.3-1")
    return t.rel.agreement


def _sealable(t: Thread) -> None:
    """Refuse to seal to an unusable key a relationship may hold from before §13.1-9."""
    if t.rel.peer_enc_key is not None:
        check_enc_key(t.rel.peer_enc_key, path="$.discovery.enc_key")


def _sign(t: Thread, body: Any, msg_id: bytes, now: int) -> Sent:
    return t.rel.send(body, now=now, msg_id=msg_id, lifetime_ms=t.meta.lifetime_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Draft:
    """What every draft has: the message id the signed message will carry (chosen now, so
    sealed content can name it)."""

    KIND: ClassVar[DraftKind]
    MESSAGE_TYPE: ClassVar[str]
    msg_id: bytes

    def args(self) -> dict[str, Any]:
        """The draft's fields as canonical-msgpack values (the stored ``args``)."""
        return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class TermsOfferDraft(_Draft):
    """Our terms, proffered to a vendor (§5.2.1)."""

    KIND = DraftKind.TERMS_OFFER
    MESSAGE_TYPE = TermsOffer.TYPE
    terms: tuple[TermRef, ...]
    note: str | None = None
    in_reply_to: bytes | None = None
    endpoint: str | None = None

    def args(self) -> dict[str, Any]:
        return {"terms": [x.to_wire() for x in self.terms], "note": self.note,
                "in_reply_to": self.in_reply_to, "endpoint": self.endpoint}  # fmt: skip

    @classmethod
    def from_args(cls, a: Mapping[str, Any], msg_id: bytes) -> TermsOfferDraft:
        return cls(msg_id=msg_id, terms=tuple(TermRef.from_wire(x) for x in a["terms"]),
                   note=a["note"], in_reply_to=a["in_reply_to"], endpoint=a["endpoint"])

    def sign(self, t: Thread, signer: Signer, now: int) -> Sent:
        body = TermsOffer(terms=self.terms, enc_key=t.rel.identity.enc_public_key,
                          note=self.note, in_reply_to=self.in_reply_to, endpoint=self.endpoint)
        return _sign(t, body, self.msg_id, now)


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptCounterDraft(_Draft):
    """The vendor's counter-terms offered back as ours (§5.2.3)."""

    KIND = DraftKind.ACCEPT_COUNTER
    MESSAGE_TYPE = TermsOffer.TYPE

    @classmethod
    def from_args(cls, a: Mapping[str, Any], msg_id: bytes) -> AcceptCounterDraft:
        return cls(msg_id=msg_id)

    def sign(self, t: Thread, signer: Signer, now: int) -> Sent:
        if not t.rel.counter:
            raise StateError("the vendor made no counter-offer", clause="§5.2.3")
        body = TermsOffer(terms=t.rel.counter, enc_key=t.rel.identity.enc_public_key,
                          endpoint=signer.endpoint_for(t.id))
        return _sign(t, body, self.msg_id, now)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareDraft(_Draft):
    """Fields shared under the agreement, sealed to the vendor when signed (§5.3.1)."""

    KIND = DraftKind.SHARE
    MESSAGE_TYPE = DataShare.TYPE
    fields: Mapping[str, str]
    purposes: tuple[int, ...]
    categories: tuple[int, ...]
    expires: int

    def args(self) -> dict[str, Any]:
        return {"fields": dict(self.fields), "purposes": list(self.purposes),
                "categories": list(self.categories), "expires": self.expires}  # fmt: skip

    @classmethod
    def from_args(cls, a: Mapping[str, Any], msg_id: bytes) -> ShareDraft:
        return cls(msg_id=msg_id, fields=dict(a["fields"]), purposes=tuple(a["purposes"]),
                   categories=tuple(a["categories"]), expires=int(a["expires"]))

    def sign(self, t: Thread, signer: Signer, now: int) -> Sent:
        """The share, and the customer's note of it, stored with it (§5.3.1)."""
        _sealable(t)
        # (the draft's own copy of the fields, read only: sealing takes it as it is)
        sealed = t.rel.seal(FieldsContent(fields=self.fields), msg_id=self.msg_id)
        body = _new_share(_agreement(t), self.purposes, self.categories, self.expires, sealed)
        sent = _sign(t, body, self.msg_id, now)
        t.meta.notes.append(_new_note(
            share=sent.message.hash, thread=t.id, vendor=t.meta.name,
            fields=tuple(sorted(self.fields.items())), purposes=self.purposes,
            categories=self.categories, expires_ms=self.expires, shared_ms=now,
            status=QUEUED,
        ))  # fmt: skip
        return sent


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawDraft(_Draft):
    """Consent withdrawn for some shares, all if none are named (§5.3.2)."""

    KIND = DraftKind.WITHDRAW
    MESSAGE_TYPE = DataWithdraw.TYPE
    shares: tuple[bytes, ...] = ()
    reason: str | None = None

    def args(self) -> dict[str, Any]:
        return {"shares": list(self.shares), "reason": self.reason}

    @classmethod
    def from_args(cls, a: Mapping[str, Any], msg_id: bytes) -> WithdrawDraft:
        return cls(msg_id=msg_id, shares=tuple(a["shares"]), reason=a["reason"])

    def sign(self, t: Thread, signer: Signer, now: int) -> Sent:
        body = DataWithdraw(agreement=_agreement(t), shares=self.shares, reason=self.reason)
        return _sign(t, body, self.msg_id, now)


@dataclass(frozen=True, slots=True, kw_only=True)
class DataRequestDraft(_Draft):
    """A request for what the vendor holds about us (§5.3.4)."""

    KIND = DraftKind.DATA_REQUEST
    MESSAGE_TYPE = DataRequest.TYPE

    @classmethod
    def from_args(cls, a: Mapping[str, Any], msg_id: bytes) -> DataRequestDraft:
        return cls(msg_id=msg_id)

    def sign(self, t: Thread, signer: Signer, now: int) -> Sent:
        return _sign(t, DataRequest(agreement=_agreement(t), format=DATA_FORMAT), self.msg_id,
                     now)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressDraft(_Draft):
    """New contact details, sealed to the vendor when signed (§5.3.6)."""

    KIND = DraftKind.ADDRESS
    MESSAGE_TYPE = AddressUpdate.TYPE
    fields: Mapping[str, str]

    def args(self) -> dict[str, Any]:
        return {"fields": dict(self.fields)}

    @classmethod
    def from_args(cls, a: Mapping[str, Any], msg_id: bytes) -> AddressDraft:
        return cls(msg_id=msg_id, fields=dict(a["fields"]))

    def sign(self, t: Thread, signer: Signer, now: int) -> Sent:
        _sealable(t)
        body = AddressUpdate(
            agreement=_agreement(t),
            sealed=t.rel.seal(FieldsContent(fields=dict(self.fields)), msg_id=self.msg_id),
        )
        return _sign(t, body, self.msg_id, now)


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentcastDraft(_Draft):
    """A personal RFP; its envelope expires at ``reply_by`` (§5.4.1)."""

    KIND = DraftKind.INTENTCAST
    MESSAGE_TYPE = Intentcast.TYPE
    body: Intentcast
    reply_by: int

    def args(self) -> dict[str, Any]:
        return {"body": self.body.to_wire(), "reply_by": self.reply_by}

    @classmethod
    def from_args(cls, a: Mapping[str, Any], msg_id: bytes) -> IntentcastDraft:
        return cls(msg_id=msg_id, body=Intentcast.from_wire(a["body"]),
                   reply_by=int(a["reply_by"]))  # fmt: skip

    def sign(self, t: Thread, signer: Signer, now: int) -> Sent:
        lifetime = self.reply_by - now
        if lifetime <= 0:
            raise ValidationError("the intentcast's deadline has passed", code=Problem.EXPIRED,
                                  clause="§5.4.1")  # fmt: skip
        return t.rel.send(self.body, now=now, msg_id=self.msg_id, lifetime_ms=lifetime)


@dataclass(frozen=True, slots=True, kw_only=True)
class RotateDraft(_Draft):
    """Our move to the next pairwise key in a vendor relationship (§2.6)."""

    KIND = DraftKind.ROTATE
    MESSAGE_TYPE = KeyRotate.TYPE
    reason: str = "rotate"

    def args(self) -> dict[str, Any]:
        return {"reason": self.reason}

    @classmethod
    def from_args(cls, a: Mapping[str, Any], msg_id: bytes) -> RotateDraft:
        return cls(msg_id=msg_id, reason=str(a["reason"]))

    def sign(self, t: Thread, signer: Signer, now: int) -> Sent:
        if t.meta.kind is not ThreadKind.VENDOR:
            raise StateError("only a vendor relationship's key can be rotated", clause="§2.6")
        sent = t.rel.rotate(signer.next_identity(t), now=now, msg_id=self.msg_id,
                            reason=self.reason, lifetime_ms=t.meta.lifetime_ms)  # fmt: skip
        t.meta.generation += 1
        return sent


@dataclass(frozen=True, slots=True, kw_only=True)
class EndDraft(_Draft):
    """The end of the relationship (§5.6.4)."""

    KIND = DraftKind.END
    MESSAGE_TYPE = RelationshipEnd.TYPE
    reason: str | None = None

    def args(self) -> dict[str, Any]:
        return {"reason": self.reason}

    @classmethod
    def from_args(cls, a: Mapping[str, Any], msg_id: bytes) -> EndDraft:
        return cls(msg_id=msg_id, reason=a["reason"])

    def sign(self, t: Thread, signer: Signer, now: int) -> Sent:
        return _sign(t, RelationshipEnd(reason=self.reason), self.msg_id, now)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeclineDraft(EndDraft):
    """The end of a relationship that declines the vendor's counter-offer (§5.6.4): signed
    only while there is one. Another tab or process may have accepted it meanwhile, and the
    relationship just agreed must not end for a page that was out of date. Kept as an
    :class:`EndDraft` (it is one on the wire) if it has to wait its turn."""

    def sign(self, t: Thread, signer: Signer, now: int) -> Sent:
        if not t.rel.counter:
            raise StateError("the vendor's counter-offer is no longer open: nothing to decline "
                             f"(the relationship is {t.rel.state.value})", clause="§5.2.3")
        return EndDraft.sign(self, t, signer, now)


Draft = (
    TermsOfferDraft | AcceptCounterDraft | ShareDraft | WithdrawDraft | DataRequestDraft
    | AddressDraft | IntentcastDraft | RotateDraft | EndDraft
)

_BY_KIND: dict[DraftKind, Any] = {
    cls.KIND: cls
    for cls in (TermsOfferDraft, AcceptCounterDraft, ShareDraft, WithdrawDraft,
                DataRequestDraft, AddressDraft, IntentcastDraft, RotateDraft, EndDraft)
}  # fmt: skip


def encode_draft(d: Draft) -> bytes:
    """The stored form of ``d``: canonical msgpack ``{"args", "id", "op"}``."""
    return _codec.encode({"args": d.args(), "id": d.msg_id, "op": d.KIND.value})


def decode_draft(data: bytes) -> Draft:
    """A draft from its stored form; ValueError if it names no kind of draft."""
    d = _codec.decode(data, max_depth=16)
    cls = _BY_KIND[DraftKind(str(d["op"]))]
    draft: Draft = cls.from_args(dict(d["args"]), bytes(d["id"]))
    return draft

