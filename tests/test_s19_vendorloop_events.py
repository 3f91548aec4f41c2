"""An event's ``data`` (vrmproto/server/_events.py ``record_of``) is written around its encoded
body rather than encoded whole (#12): byte for byte the JSON the whole encoding gives, for each
kind of message, in both directions, with and without erasures."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest

from vrmproto import Identity, Money
from vrmproto._envelope import Signed, sign_message
from vrmproto._messages import (
    DataWithdraw,
    IntentOffer,
    Receipt,
    RelationshipEnd,
    TermsAccept,
)
from vrmproto._vocab import Params, TermRef
from vrmproto.server import _events

_ME, _PEER = Identity(bytes(range(32))), Identity(bytes(range(1, 33)))


def _signed(body: Any) -> Signed[Any]:
    return sign_message(body, identity=_ME, recipient=_PEER.public_key, thread=b"t" * 16,
                        prev=b"p" * 32, now=1_700_000_000_000, msg_id=b"i" * 16)  # fmt: skip


def _whole(msg: Signed[Any], incoming: bool, erase: list[bytes]) -> bytes:
    """The data as it was made before: the whole map, encoded with sorted keys."""
    data: dict[str, Any] = {"type": msg.type, "from": "customer" if incoming else "vendor",
                            "created": msg.header.created, "body": _events._body(msg)}  # fmt: skip
    if erase:
        data["erase"] = ["evt_" + share.hex() for share in erase]
    return json.dumps(data, separators=(",", ":"), sort_keys=True,
                      default=_events._plain).encode()  # fmt: skip


TERMS = (TermRef("vrm.no-tracking", 1, b"h" * 32, Params({"days": 30, "a": "b"})),)
BODIES = [
    TermsAccept(offer=b"o" * 32, terms=TERMS),
    DataWithdraw(agreement=b"a" * 32, shares=(b"s" * 32, b"r" * 32)),
    IntentOffer(intent=b"n" * 32, description="Jeep \u00e9 \u260e", price=Money(28_900, "USD"),
                valid_until=1_700_000_900_000, conditions=("4x4",), accepts_terms=("vrm.x",)),
    RelationshipEnd(reason="moving"),
    RelationshipEnd(),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b.TYPE)
@pytest.mark.parametrize("incoming", [True, False], ids=["customer", "vendor"])
@pytest.mark.parametrize("erase", [[], [b"x" * 32, b"y" * 32]], ids=["kept", "erased"])
def test_an_events_data_is_the_whole_maps_encoding(body: Any, incoming: bool,
                                                   erase: list[bytes]) -> None:  # fmt: skip
    msg = _signed(body)
    got = _events.record_of(msg, 3, now=9, incoming=incoming, erase=erase)
    assert got is not None
    assert got.data == _whole(msg, incoming, erase)
    assert json.loads(got.data)["from"] == ("customer" if incoming else "vendor")


def test_a_receipt_makes_no_event() -> None:
    msg = _signed(Receipt(ack=b"k" * 32))
    assert _events.record_of(msg, 3, now=9, incoming=True) is None
    assert _events.record_of(msg, 3, now=9, incoming=False) is None


class _Fields(Mapping[str, str]):
    """A read-only mapping that is not a dict."""

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> _Fields:
        return _Fields(dict(self._items))


@pytest.mark.parametrize("under", [dict, _Fields], ids=["dict", "mapping"])
def test_a_field_map_is_encoded_as_the_object_of_its_fields(under: type) -> None:
    """A message's field map (a read-only view, as a decoded share's fields are) encodes as
    the JSON object of its fields, whatever mapping it views."""
    fields = {"name": "Ada Lovelace", "note": "ring twice \u260e", "email": "ada@example.org"}
    view = MappingProxyType(under(fields))
    assert _events._dumps({"fields": view}) == json.dumps(
        {"fields": fields}, separators=(",", ":"), sort_keys=True).encode()  # fmt: skip
