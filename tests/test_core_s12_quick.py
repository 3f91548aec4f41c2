"""The shortcuts of the relationship engine's hot paths, held to the code they stand for (#12).

- :func:`vrmproto._quick.quick_new` builds exactly what ``cls(...)`` builds (``__post_init__``
  and its refusals included), and is the class itself wherever that cannot be promised;
  :func:`~vrmproto._quick.quick_init` gives a class the same ``__init__`` — signature, defaults,
  factories, keyword-only fields, ``__post_init__``, its errors — and leaves alone a class it
  cannot promise that for;
- :data:`vrmproto._rules.MOVES` is :func:`~vrmproto._rules.move` for the rows it holds, and
  ``Relationship._enter`` decides every (state, sender, type) — refusals, their code, clause
  and path — as the reference steps do (sent by, agreement, table, rule);
- the lean HTTP client's memo of answer heads (:mod:`vrmproto._http1`) reads a head as a fresh
  reading does, for readers that keep bodies and readers that do not, and never remembers a
  head it refused;
- ``check_enc_key`` still refuses every small-order X25519 point (§2.1-5).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import InitVar, dataclass, field
from typing import Any

import pytest

from vrmproto import Identity, ProtocolError, Role, State, _http1
from vrmproto._errors import StateError
from vrmproto._history import Entry
from vrmproto._http1 import MalformedResponse, ResponseReader, ResponseTooLarge
from vrmproto._keys import _SMALL_ORDER_X25519, check_enc_key
from vrmproto._messages import (
    AddressUpdate,
    Body,
    DataErased,
    DataRequest,
    DataReturn,
    DataShare,
    DataWithdraw,
    FieldsContent,
    Intentcast,
    IntentDecline,
    IntentOffer,
    KeyRotate,
    Money,
    Receipt,
    RelationshipEnd,
    TermsAccept,
    TermsOffer,
    TermsReject,
)
from vrmproto._quick import quick_init, quick_new
from vrmproto._records import Point
from vrmproto._relationship import Received, Relationship, Sent
from vrmproto._rules import MOVES, Turn, move
from vrmproto._vocab import DATA_FORMAT, TermRef, latest
from vrmproto.client._delivery import Delivery
from vrmproto.store import HistoryEntry, RelationshipRecord, SavePoint
from vrmproto.testing.pair import CustomerVendorPair

# -- quick_new ---------------------------------------------------------------------------------


def _samples() -> list[tuple[type[Any], tuple[Any, ...]]]:
    pair = CustomerVendorPair()
    sent = pair.customer.send(TermsOffer(terms=(TermRef.of(latest("vrm.no-tracking")),),
                                         enc_key=pair.customer.identity.enc_public_key),
                              now=pair.now, msg_id=bytes(16))  # fmt: skip
    h = bytes(range(32))
    return [
        (Entry, (3, h, h[::-1], b"env", True)),
        (Sent, (sent.message, sent.entry)),
        (Received, (sent.message, sent.entry, None)),
        (Point, (bytes(16), 4, h, b"state")),
        (HistoryEntry, (bytes(16), 0, h, h, b"env", "out", 5)),
        (SavePoint, (bytes(16), h, 1, h, b"state", 2)),
        (DataShare, (h, (1, 2), (3,), 10**12, b"sealed")),
        (Receipt, (h,)),
        (FieldsContent, ({"email": "a@example.org"},)),
    ]


@pytest.mark.parametrize(("cls", "args"), _samples(), ids=lambda x: getattr(x, "__name__", ""))
def test_quick_new_builds_what_the_class_builds(cls: type[Any], args: tuple[Any, ...]) -> None:
    make = quick_new(cls)
    assert make is not cls  # the shortcut applies to every class the hot paths build
    got, want = make(*args), cls(*args)
    assert type(got) is cls
    assert got == want
    assert [getattr(got, f.name) for f in dataclasses.fields(cls)] == list(args)
    if cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.__setattr__(dataclasses.fields(cls)[0].name, None)


def test_quick_new_runs_post_init_and_its_refusals() -> None:
    h = bytes(32)
    with pytest.raises(ValueError, match="index"):
        quick_new(HistoryEntry)(bytes(16), -1, h, h, b"env", "out", 5)
    with pytest.raises(ValueError, match="direction"):
        quick_new(HistoryEntry)(bytes(16), 0, h, h, b"env", "sideways", 5)
    with pytest.raises(ValueError, match="save point"):
        quick_new(SavePoint)(bytes(16), h, 3, h, b"state", 2)


@dataclass(frozen=True)
class _NoSlots:
    a: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _KeywordsOnly:
    a: int
    b: int = 0


@dataclass(frozen=True, slots=True)
class _PartlyKeywords:
    a: int
    b: int = field(default=0, kw_only=True)


@dataclass(frozen=True, slots=True)
class _NotTaken:
    a: int
    b: int = field(default=0, init=False)


@dataclass(slots=True)
class _WithInitVar:
    a: int
    scale: InitVar[int] = 1

    def __post_init__(self, scale: int) -> None:
        self.a *= scale


@dataclass(frozen=True, slots=True)
class _OwnInit:
    a: int

    def __init__(self, a: int) -> None:
        object.__setattr__(self, "a", a + 1)


@pytest.mark.parametrize("cls", [int, _NoSlots, _KeywordsOnly, _PartlyKeywords, _NotTaken,
                                 _WithInitVar, _OwnInit])  # fmt: skip
def test_quick_new_is_the_class_itself_where_it_cannot_promise_the_same(cls: type[Any]) -> None:
    assert quick_new(cls) is cls


def _variety(decorate: bool) -> type[Any]:
    """A dataclass with every kind of field quick_init takes, made afresh (decorated or not)."""

    @dataclass(frozen=True, slots=True)
    class Variety:
        a: int
        b: str = "b"
        c: tuple[int, ...] = field(default_factory=tuple)
        d: list[int] = field(default_factory=list, kw_only=True)
        e: int = field(default=5, kw_only=True)
        f: bytes = field(kw_only=True, default=b"")

        def __post_init__(self) -> None:
            if self.a < 0:
                raise ValueError("a is never negative")

    return quick_init(Variety) if decorate else Variety


def _call(cls: type[Any], *args: Any, **kwargs: Any) -> object:
    try:
        got = cls(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        return (type(exc), str(exc))
    return tuple(getattr(got, f.name) for f in dataclasses.fields(got)), repr(got)


def test_quick_init_keeps_the_signature_and_what_it_builds() -> None:
    import inspect  # noqa: PLC0415

    plain, quick = _variety(False), _variety(True)
    assert quick.__init__.__globals__.get("_q_post") is not None  # it was rewritten
    assert str(inspect.signature(quick)) == str(inspect.signature(plain))
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1,), {}), ((1, "x"), {}), ((1, "x", (2,)), {}), ((1,), {"d": [1], "e": 2}),
        ((), {"a": 1, "f": b"z"}), ((-1,), {}), ((), {}), ((1, "x", (), [3]), {}),
        ((1,), {"g": 1}), ((1,), {"a": 2}),
    ]  # fmt: skip
    for args, kwargs in calls:
        assert _call(quick, *args, **kwargs) == _call(plain, *args, **kwargs), (args, kwargs)
    one, two = quick(1), quick(1)
    assert one.d is not two.d  # a fresh list from the factory, each time
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.__setattr__("a", 2)
    assert dataclasses.replace(one, b="y") == quick(1, "y")


@pytest.mark.parametrize("cls", [Entry, Received, Sent, Point, Delivery])
def test_the_hot_records_have_the_quick_init(cls: type[Any]) -> None:
    assert cls.__init__.__globals__.get("_q_factory") is not None


def test_records_are_the_store_rows_their_keywords_name() -> None:
    """_records builds store rows positionally (quick_new): the same rows as by keyword."""
    from vrmproto import _records  # noqa: PLC0415

    pair = CustomerVendorPair()
    pair.agree()
    got = pair.customer_sends(pair.share({"email": "a@example.org"}))
    for rel in (pair.customer, pair.vendor):
        record = _records.to_record(rel, label="L", peer_url="http://x.test", now=7)
        assert record == RelationshipRecord(
            thread=rel.thread, role=rel.role.value, local_key=rel.identity.public_key,
            peer_key=rel.peer_key, state=rel.state.value, data=rel.to_state(), label="L",
            peer_url="http://x.test", updated_ms=7)  # fmt: skip
    entry = got.entry
    assert entry is not None
    assert _records.to_row(pair.vendor.thread, entry, 9) == HistoryEntry(
        thread=pair.vendor.thread, index=entry.index, msg_hash=entry.msg_hash,
        entry_hash=entry.link, envelope=entry.envelope, direction="in", recorded_ms=9)
    point = _records.capture(pair.vendor)
    (saved,) = _records.guard(point, [bytes(32)], after=point.length + 1)
    assert saved == SavePoint(thread=point.thread, msg_hash=bytes(32), length=point.length,
                              head=point.head, state=point.state, after=point.length + 1)


@pytest.mark.parametrize("cls", [_NoSlots, _NotTaken, _WithInitVar, _OwnInit])
def test_quick_init_leaves_alone_what_it_cannot_promise_the_same_for(cls: type[Any]) -> None:
    init = cls.__init__
    assert quick_init(cls) is cls
    assert cls.__init__ is init


# -- MOVES and Relationship._enter ---------------------------------------------------------------

AG = bytes(range(32))
NOW = 1_767_225_600_000
VENDOR = Identity(bytes(range(1, 33)))
CUSTOMER = Identity(bytes(range(2, 34)))
_REF = TermRef.of(latest("vrm.no-tracking"))


def _bodies() -> list[Body]:
    h = bytes(32)
    return [
        TermsOffer(terms=(_REF,), enc_key=CUSTOMER.enc_public_key),
        TermsAccept(offer=h, terms=(_REF,)),
        TermsReject(offer=h, reason="no", refused=()),
        TermsReject(offer=h, reason="no", refused=(), counter=(_REF,)),
        DataShare(agreement=AG, purposes=(1,), categories=(1,), expires=NOW + 1, sealed=b"x"),
        DataShare(agreement=h, purposes=(1,), categories=(1,), expires=NOW, sealed=b"x"),
        DataWithdraw(agreement=AG, shares=()),
        DataErased(withdraw=h, shares=()),
        DataRequest(agreement=AG, format=DATA_FORMAT),
        DataReturn(request=h, format=DATA_FORMAT, sealed=b"x"),
        AddressUpdate(agreement=AG, sealed=b"x"),
        Intentcast(what="a car", reply_by=NOW + 1, constraints=(), memberships=()),
        IntentOffer(intent=h, description="one", price=Money(1, "USD"), valid_until=NOW + 1,
                    conditions=(), accepts_terms=()),
        IntentDecline(intent=h, reason="none"),
        Receipt(ack=h),
        KeyRotate(new_key=VENDOR.public_key, new_enc_key=VENDOR.enc_public_key, proof=bytes(64),
                  reason="rotate"),
        RelationshipEnd(),
    ]


def _relationship(role: Role, state: State, agreement: bytes | None) -> Relationship:
    me, peer = (CUSTOMER, VENDOR) if role is Role.CUSTOMER else (VENDOR, CUSTOMER)
    rel = Relationship(role=role, identity=me, thread=bytes(16), peer_key=peer.public_key,
                       peer_enc_key=peer.enc_public_key)  # fmt: skip
    rel.state, rel.agreement = state, agreement
    rel.owed_receipts.add(bytes(32)) if role is Role.VENDOR else rel.awaiting_receipt.add(
        bytes(32))
    return rel


def _reference_enter(rel: Relationship, body: Body, by: Role, now: int) -> State:
    """Steps 25 to 30 as the engine took them before MOVES (no message: the one being signed)."""
    if not body.sent_by(by):
        raise StateError(f"{body.TYPE} is never sent by the {by.value}", clause="§7-2")
    rel._agreement_first(body)
    step = move(rel.state, by, body)
    step.rule.apply(rel, body, Turn(by, now, by is rel.role))
    return step.to


def _outcome(enter: Any, *args: Any) -> object:
    """The next state ``enter(*args)`` gives, or the refusal it raises."""
    try:
        got = enter(*args)
        return got[0] if isinstance(got, tuple) else got
    except ProtocolError as exc:
        return (type(exc), exc.code, exc.clause, exc.path, exc.detail)


def test_moves_are_the_rows_of_table_7_2_whose_event_is_the_type() -> None:
    for (state, role, cls), to in MOVES.items():
        assert cls.sent_by(role)
        assert to is move(state, role, object.__new__(cls)).to
    from vrmproto import TRANSITIONS  # noqa: PLC0415

    rows = {(s, r, e) for (s, r, e) in TRANSITIONS if e not in ("terms.reject", "terms.counter")}
    assert {(s, r, cls.TYPE) for s, r, cls in MOVES} == rows
    assert not any(cls is TermsReject for _, _, cls in MOVES)


def test_a_table_planted_in_place_of_table_7_2_is_the_one_read(monkeypatch: Any) -> None:
    """MOVES stands for the table it was made from: another one in force (a conformance mutant
    plants one) is read through move(), row dropped or added."""
    from vrmproto import _state  # noqa: PLC0415

    share = _bodies()[4]
    assert _relationship(Role.CUSTOMER, State.AGREED, AG)._enter(share, Role.CUSTOMER, NOW)
    table = dict(_state.TRANSITIONS)
    del table[(State.AGREED, Role.CUSTOMER, "data.share")]
    table[(State.ENDED, Role.CUSTOMER, "data.share")] = State.ENDED
    old = _state.TRANSITIONS
    for module in list(sys.modules.values()):  # under every name it has, as the mutants do
        if getattr(module, "__name__", "").startswith("vrmproto"):
            for attr, held in list(vars(module).items()):
                if held is old:
                    monkeypatch.setattr(module, attr, table)
    with pytest.raises(ProtocolError) as refused:
        _relationship(Role.CUSTOMER, State.AGREED, AG)._enter(share, Role.CUSTOMER, NOW)
    assert refused.value.code.value == "illegal_transition"
    to, _ = _relationship(Role.CUSTOMER, State.ENDED, AG)._enter(share, Role.CUSTOMER, NOW)
    assert to is State.ENDED


@pytest.mark.parametrize("role", list(Role))
def test_enter_decides_every_state_sender_and_type_as_the_reference_steps(role: Role) -> None:
    bodies = _bodies()
    checked = refused = 0
    for state in State:
        for agreement in (None, AG):
            for by in Role:
                for body in bodies:
                    got = _outcome(_relationship(role, state, agreement)._enter, body, by, NOW)
                    want = _outcome(_reference_enter, _relationship(role, state, agreement),
                                    body, by, NOW)  # fmt: skip
                    assert got == want, (state, agreement, by, body.TYPE)
                    checked += 1
                    refused += isinstance(want, tuple)
    assert checked == len(State) * 2 * 2 * len(bodies)
    assert 0 < refused < checked  # both outcomes are exercised


# -- the HTTP answer head memo -------------------------------------------------------------------

_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/vrmproto\r\nContent-Length: 5\r\n"
         b"Date: Fri, 04 Dec 2026 03:40:00 GMT\r\nServer: test\r\n\r\n")  # fmt: skip


def _read(data: bytes, *, keep: bool = True, cap: int = 1 << 20) -> _http1.Response | None:
    reader = ResponseReader(keep_body=keep)
    reader.start(cap)
    return reader.feed(data)


def test_a_remembered_head_reads_as_a_fresh_reading() -> None:
    answers = [
        _HEAD + b"hello",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
    ]
    for data in answers:
        for keep in (True, False):
            _http1._READ.clear()
            fresh = _read(data, keep=keep)
            again = _read(data, keep=keep)  # from the memo
            assert fresh is not None
            assert again == fresh, data
    _http1._READ.clear()
    kept, dropped = _read(_HEAD + b"hello"), _read(_HEAD + b"hello", keep=False)
    assert kept is not None
    assert dropped is not None
    assert kept.headers  # the memo tells the two apart
    assert not dropped.headers
    assert kept.body == b"hello"
    assert dropped.body == b""


def test_the_cap_applies_to_a_remembered_head_and_a_refused_head_is_not_remembered() -> None:
    _http1._READ.clear()
    assert _read(_HEAD + b"hello") is not None
    with pytest.raises(ResponseTooLarge) as large:
        _read(_HEAD + b"hello", cap=4)
    assert large.value.declared == 5
    bad = b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"
    for _ in range(2):
        with pytest.raises(MalformedResponse):
            _read(bad)
    assert all(head != bad[:-4] for head, _ in _http1._READ)


def test_a_large_head_is_read_but_not_remembered() -> None:
    """A hostile peer's heads of up to MAX_HEAD (64 KiB) each could pin 256 of them (16 MB) in
    the memo: only short ones are kept (found by s15-huntsrv)."""
    _http1._READ.clear()
    padding = b"X-Pad: " + b"p" * 4000 + b"\r\n"
    large = b"HTTP/1.1 200 OK\r\n" + padding + b"Content-Length: 2\r\n\r\nok"
    for _ in range(2):
        answer = _read(large)
        assert answer is not None
        assert answer.body == b"ok"
    assert not _http1._READ
    assert _read(_HEAD + b"hello") is not None
    assert len(_http1._READ) == 1  # a vendor's usual head is still remembered


# -- check_enc_key -------------------------------------------------------------------------------


def test_every_small_order_x25519_point_is_still_refused() -> None:
    for point in _SMALL_ORDER_X25519:
        for top in (0, 0x80):
            key = point[:31] + bytes([point[31] | top])
            with pytest.raises(ProtocolError) as refused:
                check_enc_key(key, path="$.x")
            assert refused.value.code.value == "bad_key"
    for _ in range(50):
        check_enc_key(os.urandom(32))
    check_enc_key(VENDOR.enc_public_key)
    with pytest.raises(ProtocolError):
        check_enc_key(bytes(31))
