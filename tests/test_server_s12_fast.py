"""The vendor's fast record builders (vrmproto/server/_fast.py) make the records their
constructors make, and refuse classes they cannot build that way; an event's record and JSON
are byte for byte what the code before #12 made."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from vrmproto import Identity
from vrmproto._envelope import Signed, sign_message
from vrmproto._messages import AddressUpdate, DataShare, FieldsContent, TermsOffer
from vrmproto._vocab import TermRef
from vrmproto.server import _events
from vrmproto.server._events import KINDS
from vrmproto.server._fast import setters
from vrmproto.server._held import _HELD_FIELDS, held_row
from vrmproto.store import EventRecord, HeldRecord


@pytest.mark.parametrize("expires", [None, 1_900_000_000_000])
def test_held_row_is_the_record_its_constructor_makes(expires: int | None) -> None:
    args = (b"t" * 16, "email", "ada@example.org", 2, "provided", 1_700_000_000_000, (1, 3),
            b"s" * 32, expires)  # fmt: skip
    fast, slow = held_row(*args), HeldRecord(*args)
    assert fast == slow
    assert dataclasses.astuple(fast) == args  # each value in its own field
    assert hash(fast) == hash(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.value = "other"  # type: ignore[misc]


def test_the_held_fields_are_the_records() -> None:
    assert tuple(f.name for f in dataclasses.fields(HeldRecord)) == _HELD_FIELDS


@dataclasses.dataclass(frozen=True, slots=True)
class _Pair:
    a: int
    b: str


@dataclasses.dataclass(frozen=True)
class _Unslotted:
    a: int


@dataclasses.dataclass(slots=True)
class _Mutable:
    a: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    a: int

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("negative")


def test_setters_set_the_named_slots() -> None:
    set_a, set_b = setters(_Pair, ("a", "b"))
    p = _Pair.__new__(_Pair)
    set_a(p, 1)
    set_b(p, "x")
    assert p == _Pair(1, "x")


@pytest.mark.parametrize(("cls", "names"), [
    (_Pair, ("b", "a")),  # another order
    (_Pair, ("a",)),  # a field left unset
    (_Unslotted, ("a",)),
    (_Mutable, ("a",)),
    (_Checked, ("a",)),  # its check would be skipped
    (int, ()),
])  # fmt: skip
def test_setters_refuse_what_they_cannot_build(cls: type, names: tuple[str, ...]) -> None:
    with pytest.raises(TypeError):
        setters(cls, names)


# -- the events of a step (server/_events.py): the records the pre-#12 code made --------------


def _old_plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, TermRef):
        return {"id": value.id, "version": value.version}
    if isinstance(value, (tuple, list)):
        return [_old_plain(v) for v in value]
    return value


def _old_dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _old_record(msg: Signed[Any], seq: int, now: int, personal: bytes | None,
                erase: list[bytes]) -> EventRecord:  # fmt: skip
    body = {f.name: _old_plain(getattr(msg.body, f.name)) for f in dataclasses.fields(msg.body)
            if f.name not in ("sealed", "enc_key") and getattr(msg.body, f.name) is not None}
    data: dict[str, Any] = {"type": msg.type, "from": "customer", "created": msg.header.created,
                            "body": body}  # fmt: skip
    if erase:
        data["erase"] = ["evt_" + share.hex() for share in erase]
    kind = "relationship.opened" if msg.type == "terms.offer" and seq == 0 else KINDS[msg.type]
    return EventRecord("evt_" + msg.hash.hex(), msg.thread, seq, kind, msg.hash, now,
                       _old_dumps(data), personal)  # fmt: skip


_ME, _VENDOR = Identity(bytes(range(32))), Identity(bytes(range(1, 33)))


def _signed(body: Any) -> Signed[Any]:
    return sign_message(body, identity=_ME, recipient=_VENDOR.public_key, thread=b"t" * 16,
                        prev=None, now=1_700_000_000_000, msg_id=b"i" * 16)  # fmt: skip


@pytest.mark.parametrize("seq", [0, 7])
def test_an_offers_event_is_the_one_made_before(seq: int) -> None:
    terms = (TermRef("vrm.no-tracking", 1, b"h" * 32), TermRef("vrm.no-third-party", 2, b"g" * 32))
    msg = _signed(TermsOffer(terms=terms, enc_key=_ME.enc_public_key, note="hi é"))
    got = _events.record_of(msg, seq, now=5, incoming=True)
    assert got == _old_record(msg, seq, 5, None, [])
    assert got is not None
    assert got.pos == 0


def test_a_shares_event_and_personal_data_are_the_ones_made_before() -> None:
    body = DataShare(agreement=b"a" * 32, purposes=(1, 3), categories=(2,),
                     expires=1_800_000_000_000, sealed=b"s" * 80)  # fmt: skip
    msg = _signed(body)
    fields = {"name": "Ada Lovelace", "note": "ring twice ☎", "email": "ada@example.org"}
    personal = _events._personal(msg, FieldsContent(fields=fields))
    assert personal == _old_dumps({"fields": dict(fields), "purposes": list(body.purposes),
                                   "categories": list(body.categories),
                                   "expires": body.expires})  # fmt: skip
    erase = [b"x" * 32, b"y" * 32]
    got = _events.record_of(msg, 4, now=9, incoming=True, personal=personal, erase=erase)
    assert got == _old_record(msg, 4, 9, personal, erase)


def test_an_address_updates_personal_data_is_the_one_made_before() -> None:
    """The fields, and the purposes each is held for (since session 16: docs/events.md), the
    event each is held under and that share's expiry (since session 19)."""
    msg = _signed(AddressUpdate(agreement=b"a" * 32, sealed=b"s" * 80))
    fields = {"street": "12 St James's Square", "city": "London"}
    share = b"h" * 32
    held = [held_row(b"t" * 16, "street", fields["street"], 2, "provided", 9, (2, 3), share,
                     1_800_000_000_000),
            held_row(b"t" * 16, "city", fields["city"], 2, "provided", 9, (1,), msg.hash, None)]
    assert _events._personal(msg, FieldsContent(fields=fields), held) == _old_dumps(
        {"fields": fields, "field_purposes": {"street": [2, 3], "city": [1]},
         "purposes": [1, 2, 3],
         "field_shares": {"street": "evt_" + share.hex()},
         "field_expires": {"street": 1_800_000_000_000}})  # fmt: skip
