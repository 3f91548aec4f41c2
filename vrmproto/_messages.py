"""Every message type, declared once (spec §5).

Each class is the body of one message type: a frozen dataclass whose fields carry their wire kind,
validated when constructed — whether built by a sender or decoded from a peer — so an invalid
body cannot exist. ``MESSAGE_TYPES`` maps the wire type name to the class; the spec's field tables
are generated from these declarations (``scripts/gen_spec_tables.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from vrmproto._errors import Problem, ValidationError
from vrmproto._fields import (
    Bin,
    Choice,
    Custom,
    Int,
    List,
    Record,
    Str,
    StrMap,
    dump_record,
    load_record,
    wire,
)
from vrmproto._keys import HASH_BYTES, KEY_BYTES, SIG_BYTES
from vrmproto._state import Role
from vrmproto._vocab import DATA_FORMAT, DataRecord, TermRef

MAX_SEALED = 64 * 1024
_TERMS = List(Custom(TermRef), max_len=32, min_len=1)
_HASH = Bin(HASH_BYTES)
_CATEGORY = Int(1, 16)


class Body:
    """Base of every message body. ``TYPE`` is the wire type name (§4.2 ``type``)."""

    TYPE: ClassVar[str] = ""
    #: Who may send it: "customer", "vendor" or "either" (§7).
    SENT_BY: ClassVar[str] = "either"

    @classmethod
    def sent_by(cls, role: Role) -> bool:
        """True when ``role`` may send this type (§7-2)."""
        return cls.SENT_BY in ("either", role.value)

    def to_wire(self) -> dict[str, Any]:
        """The body as a canonical-order map (§5.1)."""
        return dump_record(self)

    @classmethod
    def from_wire(cls, value: Any, path: str = "$.body", max_depth: int = 16) -> Any:
        """Check a decoded body map against the declaration; raises ProtocolError (§5.1)."""
        return load_record(cls, value, path, max_depth)


def _invalid(detail: str, path: str, clause: str) -> ValidationError:
    return ValidationError(detail, code=Problem.INVALID_FIELD, clause=clause, path=path)


# -- terms (§5.2) ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TermsOffer(Body):
    """The customer proffers their terms (§5.2.1). Its hash names the agreement if accepted."""

    TYPE = "terms.offer"
    SENT_BY = "customer"
    terms: tuple[TermRef, ...] = wire(_TERMS, doc="the terms proffered, each by id, version, hash")
    enc_key: bytes = wire(Bin(KEY_BYTES), doc="customer's X25519 key for this relationship")
    note: str | None = wire(Str(1000), optional=True, doc="a message to the vendor's people")
    in_reply_to: bytes | None = wire(_HASH, optional=True, doc="hash of an intent.offer taken up")
    endpoint: str | None = wire(Str(400), optional=True, doc="customer's agent base URL")


@dataclass(frozen=True, slots=True)
class TermsAccept(Body):
    """The vendor agrees (§5.2.2): ``offer`` is the agreement id, ``terms`` repeat the offer's."""

    TYPE = "terms.accept"
    SENT_BY = "vendor"
    offer: bytes = wire(_HASH, doc="hash of the accepted terms.offer (the agreement id)")
    terms: tuple[TermRef, ...] = wire(_TERMS, doc="exactly the offer's terms, in order")


@dataclass(frozen=True, slots=True)
class TermsReject(Body):
    """A signed "no", with reasons and optionally a counter-offer (§5.2.3)."""

    TYPE = "terms.reject"
    SENT_BY = "vendor"
    offer: bytes = wire(_HASH, doc="hash of the refused terms.offer")
    reason: str = wire(Str(1000), doc="why, in words a person can read")
    refused: tuple[str, ...] = wire(List(Str(64), max_len=32), doc="ids of the terms refused")
    counter: tuple[TermRef, ...] | None = wire(
        _TERMS, optional=True, doc="terms the vendor would accept instead"
    )


# -- data (§5.3) ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataShare(Body):
    """Selected personal data, sealed to the vendor, under an agreement (§5.3.1)."""

    TYPE = "data.share"
    SENT_BY = "customer"
    agreement: bytes = wire(_HASH, doc="agreement id (hash of the accepted terms.offer)")
    purposes: tuple[int, ...] = wire(
        List(Int(1, 16), max_len=16, min_len=1), doc="Kantara CR 1.1 purpose categories (§6.6)"
    )
    categories: tuple[int, ...] = wire(
        List(_CATEGORY, max_len=16, min_len=1), doc="Kantara CR 1.1 PII categories (§6.7)"
    )
    expires: int = wire(Int(), doc="ms since epoch when the vendor must delete the data")
    sealed: bytes = wire(Bin(max_size=MAX_SEALED), doc="sealed content (§5.5): {fields}")


@dataclass(frozen=True, slots=True)
class DataWithdraw(Body):
    """Consent withdrawn: the vendor must delete and confirm with data.erased (§5.3.2)."""

    TYPE = "data.withdraw"
    SENT_BY = "customer"
    agreement: bytes = wire(_HASH, doc="agreement id")
    shares: tuple[bytes, ...] = wire(
        List(_HASH, max_len=256), doc="hashes of the data.share messages withdrawn; empty = all"
    )
    reason: str | None = wire(Str(1000), optional=True, doc="why, if the customer says")


@dataclass(frozen=True, slots=True)
class DataErased(Body):
    """The vendor confirms it deleted the withdrawn data (§5.3.3)."""

    TYPE = "data.erased"
    SENT_BY = "vendor"
    withdraw: bytes = wire(_HASH, doc="hash of the data.withdraw confirmed")
    shares: tuple[bytes, ...] = wire(List(_HASH, max_len=256), doc="the shares deleted")


@dataclass(frozen=True, slots=True)
class DataRequest(Body):
    """The customer asks for the data the vendor holds about them (§5.3.4)."""

    TYPE = "data.request"
    SENT_BY = "customer"
    agreement: bytes = wire(_HASH, doc="agreement id")
    format: str = wire(Choice(DATA_FORMAT), doc="the standard return form (§6.8)")


@dataclass(frozen=True, slots=True)
class DataReturn(Body):
    """The vendor hands back what it holds, in the standard form, sealed (§5.3.5)."""

    TYPE = "data.return"
    SENT_BY = "vendor"
    request: bytes = wire(_HASH, doc="hash of the data.request answered")
    format: str = wire(Choice(DATA_FORMAT), doc="the standard return form (§6.8)")
    sealed: bytes = wire(Bin(max_size=MAX_SEALED), doc="sealed content (§5.5): {records}")


@dataclass(frozen=True, slots=True)
class AddressUpdate(Body):
    """New contact details for a vendor the customer has an agreement with (§5.3.6)."""

    TYPE = "address.update"
    SENT_BY = "customer"
    agreement: bytes = wire(_HASH, doc="agreement id")
    sealed: bytes = wire(Bin(max_size=MAX_SEALED), doc="sealed content (§5.5): {fields}")


# -- intentcasting (§5.4) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in the minor unit of an ISO 4217 currency (§5.4.4): cents for USD, yen for
    JPY, fils for BHD (see :func:`minor_unit_exponent`)."""

    amount: int = wire(Int(0), doc="minor units")
    currency: str = wire(Str(3, pattern=r"[A-Z]{3}"), doc="ISO 4217 code")

    @property
    def exponent(self) -> int:
        """Decimal places of the currency's minor unit (§5.4.4-1)."""
        return minor_unit_exponent(self.currency)

    def __str__(self) -> str:
        places = self.exponent
        if not places:
            return f"{self.amount} {self.currency}"
        whole, fraction = divmod(self.amount, 10**places)
        return f"{whole}.{fraction:0{places}d} {self.currency}"

    @classmethod
    def parse(cls, amount: str, currency: str) -> Money:
        """``Money.parse("289.5", "EUR")`` → 28950 cents: a decimal amount in the currency's
        major unit, with no more decimal places than its minor unit has (§5.4.4-1).

        Raises ValueError for anything else ("1.005 USD", "300.5 JPY", "-1", "1e3").
        """
        code = currency.upper()
        whole, dot, fraction = amount.partition(".")
        places = minor_unit_exponent(code)
        if not (whole.isascii() and whole.isdigit()) or (dot and not (
            fraction.isascii() and fraction.isdigit()
        )):  # fmt: skip
            raise ValueError(f"{amount!r} is not a decimal amount")
        if len(fraction) > places:
            unit = "no decimal places" if not places else f"{places} decimal places"
            raise ValueError(f"{code} amounts have {unit}: {amount!r}")
        return cls(int(whole) * 10**places + int(fraction.ljust(places, "0") or 0), code)


#: ISO 4217 currencies whose minor unit is not the hundredth (§5.4.4-1); every other code has
#: two decimal places. Codes the standard lists with no minor unit (precious metals, special
#: drawing rights, test and "no currency" codes) are counted in whole units.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
         "VND", "VUV", "XAF", "XOF", "XPF"], 0,
    ),
    **dict.fromkeys(  # no minor unit: metals, SDR, test and "no currency" codes
        ["XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA",
         "XXX"], 0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}


def minor_unit_exponent(currency: str) -> int:
    """Decimal places of ``currency``'s minor unit per ISO 4217: 2 for USD, 0 for JPY, 3 for
    BHD (§5.4.4-1)."""
    return _EXPONENTS.get(currency, 2)


@dataclass(frozen=True, slots=True)
class Intentcast(Body):
    """A personal RFP from a throw-away key: what, where, when, and the rules (§5.4.1)."""

    TYPE = "intentcast"
    SENT_BY = "customer"
    what: str = wire(Str(500), doc="what the customer wants")
    reply_by: int = wire(Int(), doc="ms since epoch; offers after this are ignored")
    constraints: tuple[str, ...] = wire(
        List(Str(200), max_len=32), doc='rules, e.g. "no prepaid gas"'
    )
    memberships: tuple[str, ...] = wire(
        List(Str(200), max_len=32), doc='loyalty programs, e.g. "Hertz 1 Club"'
    )
    where: str | None = wire(Str(200), optional=True, doc="place")
    start: int | None = wire(Int(), optional=True, doc="from, ms since epoch")
    end: int | None = wire(Int(), optional=True, doc="until, ms since epoch")
    max_price: Money | None = wire(Record(Money), optional=True, doc="price ceiling")
    terms: tuple[TermRef, ...] | None = wire(
        _TERMS, optional=True, doc="terms that come with taking up an offer"
    )

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise _invalid("end is before start", "$.body.end", "§5.4.1-2")


@dataclass(frozen=True, slots=True)
class IntentOffer(Body):
    """A vendor's signed answer to an intentcast (§5.4.2)."""

    TYPE = "intent.offer"
    SENT_BY = "vendor"
    intent: bytes = wire(_HASH, doc="hash of the intentcast answered")
    description: str = wire(Str(1000), doc="what is offered")
    price: Money = wire(Record(Money), doc="total price")
    valid_until: int = wire(Int(), doc="ms since epoch")
    conditions: tuple[str, ...] = wire(List(Str(200), max_len=32), doc="conditions")
    accepts_terms: tuple[str, ...] = wire(
        List(Str(64), max_len=32), doc="term ids the vendor accepts with this offer"
    )


@dataclass(frozen=True, slots=True)
class IntentDecline(Body):
    """A clean "nothing for you" to an intentcast (§5.4.3)."""

    TYPE = "intent.decline"
    SENT_BY = "vendor"
    intent: bytes = wire(_HASH, doc="hash of the intentcast declined")
    reason: str = wire(Str(1000), doc="why")


# -- control (§5.6) -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipt(Body):
    """Signed proof that the message with hash ``ack`` was received and stored (§5.6.1)."""

    TYPE = "receipt"
    ack: bytes = wire(_HASH, doc="hash of the message acknowledged")


@dataclass(frozen=True, slots=True)
class ProblemReport(Body):
    """A typed, signed error the sender can act on (§5.6.2); ``code`` is from §9."""

    TYPE = "problem"
    code: str = wire(Str(64, pattern=r"[a-z_]+"), doc="problem code (§9)")
    detail: str = wire(Str(1000, empty=True), doc="human explanation")
    clause: str | None = wire(Str(32), optional=True, doc="spec clause broken")
    path: str | None = wire(Str(200), optional=True, doc="offending field")
    ref: bytes | None = wire(_HASH, optional=True, doc="hash of the offending message, if known")
    retry_after: int | None = wire(Int(0, 86_400), optional=True, doc="seconds to wait")
    server_time: int | None = wire(Int(), optional=True, doc="receiver's clock, ms")
    supported_versions: tuple[int, ...] | None = wire(
        List(Int(1, 255), max_len=8), optional=True, doc="versions the receiver speaks"
    )


@dataclass(frozen=True, slots=True)
class KeyRotate(Body):
    """Signed by the old key, naming the new one, with the new key's proof (§5.6.3, §2.6)."""

    TYPE = "key.rotate"
    new_key: bytes = wire(Bin(KEY_BYTES), doc="the new Ed25519 key")
    new_enc_key: bytes = wire(Bin(KEY_BYTES), doc="the new X25519 key")
    proof: bytes = wire(Bin(SIG_BYTES), doc="new key's signature (§2.6-2)")
    reason: str = wire(Choice("rotate", "compromise"), doc="compromise revokes the old key")


@dataclass(frozen=True, slots=True)
class RelationshipEnd(Body):
    """Either side ends the relationship (§5.6.4); nothing more may be sent in it."""

    TYPE = "relationship.end"
    reason: str | None = wire(Str(1000), optional=True, doc="why")


MESSAGE_TYPES: Mapping[str, type[Body]] = {
    cls.TYPE: cls
    for cls in (
        TermsOffer,
        TermsAccept,
        TermsReject,
        DataShare,
        DataWithdraw,
        DataErased,
        DataRequest,
        DataReturn,
        AddressUpdate,
        Intentcast,
        IntentOffer,
        IntentDecline,
        Receipt,
        ProblemReport,
        KeyRotate,
        RelationshipEnd,
    )
}

#: Sealed content shapes (§5.5): what the ``content`` map inside the seal holds, per type.


@dataclass(frozen=True, slots=True)
class FieldsContent:
    """The sealed content of data.share and address.update: named personal data fields."""

    fields: Mapping[str, str] = wire(StrMap(min_items=1), doc="field name → value")


@dataclass(frozen=True, slots=True)
class RecordsContent:
    """The sealed content of data.return: records in the standard form (§6.8)."""

    records: tuple[DataRecord, ...] = wire(
        List(Custom(DataRecord), max_len=4096), doc="vrm-data/1 records"
    )
