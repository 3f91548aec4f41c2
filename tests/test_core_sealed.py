"""Sealed content's fast paths against the plain reading kept here (spec §5.5).

``seal_content`` writes the usual field set's signed payload in one pass and ``open_sealed``
reads the usual payload in one pass (vrmproto/_envelope.py: ``_fields_payload``,
``_read_fields_payload``); anything else takes the reference steps. The reference below is
the plain reading of §5.5-3..6 as the library had it: ``decode`` (form and the walk of §3.3),
the map shapes, the signature, ``to`` and ``msg``, then ``load_record``. On a corpus of payloads
made with a fixed seed — the usual one and edits of every part of it, re-signed and re-sealed
so each reaches the step it tests — both must give the same content or the same error (type,
code, clause, path). And the one-pass writer must give exactly the reference encoder's bytes,
or its error.
"""

from __future__ import annotations

import random
from types import MappingProxyType, SimpleNamespace
from typing import Any

import msgpack
import nacl.bindings
import nacl.exceptions
import pytest
from nacl.public import PublicKey, SealedBox

from vrmproto import (
    DecodeError,
    FieldsContent,
    Identity,
    Limits,
    ProtocolError,
    RecordsContent,
    ValidationError,
    _codec,
    open_sealed,
    seal_content,
)
from vrmproto._envelope import _fields_payload
from vrmproto._errors import Problem
from vrmproto._fields import dump_record, load_record
from vrmproto._keys import SIG_BYTES, Context, seal, verify
from vrmproto._limits import DEFAULT_LIMITS

SENDER = Identity(b"\x01" * 32)
RECIPIENT = Identity(b"\x02" * 32)
MSG_ID = b"\x03" * 16
FIELDS = {"city": "London", "email": "ada@example.org", "name": "Ada Lovelace"}


def reference_open(message: Any, identity: Identity, content_type: type[Any],
                   limits: Limits) -> Any:  # fmt: skip
    """open_sealed as it read before its fast path (§5.5-3..6)."""
    plain = identity.unseal(message.body.sealed)
    outer = _codec.decode(plain, max_depth=1, path="$.sealed")
    if type(outer) is not dict or outer.keys() != {"payload", "sig"}:
        raise DecodeError("sealed content is a map of payload and sig", clause="§5.5-3")
    payload, sig = outer["payload"], outer["sig"]
    if type(payload) is not bytes or type(sig) is not bytes or len(sig) != SIG_BYTES:
        raise DecodeError("payload is binary and sig 64 bytes", clause="§5.5-3")
    verify(Context.SEALED, payload, sig, message.sender)
    inner = _codec.decode(payload, max_depth=limits.max_depth, path="$.sealed.payload")
    if type(inner) is not dict or inner.keys() != {"content", "msg", "to"}:
        raise DecodeError("sealed payload is a map of content, msg, to", clause="§5.5-3")
    if inner["to"] != identity.public_key:
        raise ValidationError("the sealed content names another recipient",
                              code=Problem.WRONG_RECIPIENT, clause="§5.5-5", path="$.sealed.to")
    if inner["msg"] != message.id:
        raise ValidationError("the sealed content belongs to another message",
                              code=Problem.ENVELOPE_MISMATCH, clause="§5.5-6",
                              path="$.sealed.msg")  # fmt: skip
    return load_record(content_type, inner["content"], "$.sealed.content")


def outcome(call: Any) -> Any:
    try:
        got = call()
    except ProtocolError as exc:
        return ("error", type(exc), exc.code, exc.clause, exc.path)
    except (ValueError, TypeError) as exc:
        return ("error", type(exc))
    if isinstance(got, FieldsContent):  # compare the fields type-exactly, and their type
        fields = got.fields
        return ("fields", type(fields), [(k, type(k), v, type(v)) for k, v in fields.items()])
    return ("value", got)


def raw(value: Any) -> bytes:
    """msgpack as given: key order kept, floats and all (to build non-canonical input)."""
    out: bytes = msgpack.packb(value, use_bin_type=True)
    return out


def sealed_message(outer: bytes, msg_id: bytes = MSG_ID) -> Any:
    body = SimpleNamespace(sealed=seal(outer, RECIPIENT.enc_public_key))
    return SimpleNamespace(body=body, sender=SENDER.public_key, id=msg_id)


def signed_outer(payload: bytes) -> bytes:
    return raw({"payload": payload, "sig": SENDER.sign(Context.SEALED, payload)})


def payload_edits(rng: random.Random) -> list[bytes]:
    """The usual payload and edits of each of its parts (as raw msgpack: any order, any type)."""
    to, msg = RECIPIENT.public_key, MSG_ID
    odd: list[Any] = ["", "x" * 4096, "x" * 4097, 1, -1, 2**53, 1.5, None, True, b"v", [], {},
                      ["a"], {"a": "b"}]  # fmt: skip
    names: list[Any] = ["", "a", "n" * 64, "n" * 65, "é", "\U0001f600", 1, b"k"]
    out = []

    def payload(fields: Any = FIELDS, *, content: Any = None, to: Any = to, msg: Any = msg,
                order: tuple[str, ...] = ("content", "msg", "to"), extra: Any = None) -> bytes:
        parts = {"content": {"fields": fields} if content is None else content,
                 "msg": msg, "to": to}  # fmt: skip
        m = {k: parts[k] for k in order}
        if extra is not None:
            m.update(extra)
        return raw(m)

    out.append(payload())
    out.append(payload({"a": "1"}))
    out.append(payload({}))
    out.append(payload({f"f{i:02}": "v" for i in range(64)}))
    out.append(payload({f"f{i:02}": "v" for i in range(65)}))
    out.append(payload(dict(reversed(FIELDS.items()))))
    for v in odd:
        out.append(payload({**FIELDS, "email": v}))
        out.append(payload(v))
        out.append(payload(content={"fields": FIELDS, "x": v}))
        out.append(payload(content={"a": v, "fields": FIELDS}))
        out.append(payload(content=v))
        out.append(payload(to=v))
        out.append(payload(msg=v))
        out.append(payload(extra={"zz": v}))
        out.append(payload(extra={"a": v}))
    out.extend(payload({**FIELDS, n: "v"} if isinstance(n, str) else {n: "v"}) for n in names)
    out.extend(payload(dict(sorted({**FIELDS, n: "v"}.items()))) for n in names  # in order
               if isinstance(n, str))
    orders = (("msg", "content", "to"), ("content", "to", "msg"), ("content", "msg"))
    out.extend(payload(order=order) for order in orders)
    out.append(payload(to=bytes(32)))
    out.append(payload(msg=bytes(16)))
    out.append(payload(content={"fields": {"a": {"b": {"c": "d"}}}}))
    out.append(raw([FIELDS, msg, to]))
    out.append(raw(None))
    out.append(raw({"content": {"fields": FIELDS}, "msg": msg, "to": to}) + b"\x00")
    # a non-shortest string head inside the usual shape (§3.3-7)
    out.append(payload().replace(b"\xa6London", b"\xd9\x06London"))
    for _ in range(60):  # random mixes of the edits above
        fields = dict(FIELDS)
        for _ in range(rng.randrange(1, 4)):
            fields[rng.choice(names) if rng.random() < 0.5 else rng.choice(list(FIELDS))] = (
                rng.choice(odd) if rng.random() < 0.5 else "v")
        fields = {k: v for k, v in fields.items() if isinstance(k, str)}
        keys = list(fields)
        if rng.random() < 0.3:
            rng.shuffle(keys)
        out.append(payload({k: fields[k] for k in keys}))
    return out


def outer_edits(payload: bytes) -> list[bytes]:
    sig = SENDER.sign(Context.SEALED, payload)
    return [
        raw({"payload": payload, "sig": sig}),
        raw({"sig": sig, "payload": payload}),
        raw({"payload": payload, "sig": sig[:63]}),
        raw({"payload": payload, "sig": bytes(64)}),
        raw({"payload": payload}),
        raw({"payload": payload, "sig": sig, "x": 1}),
        raw({"payload": 1.5, "sig": sig}),
        raw({"payload": payload, "sig": 2**60}),
        raw({"payload": [payload], "sig": sig}),
        raw({"payload": payload.decode("latin-1"), "sig": sig}),
        raw({"payload": payload, "sig": sig}) + b"\xc0",
        raw([payload, sig]),
        b"\xc1",
    ]


LIMITS = [DEFAULT_LIMITS, Limits(max_depth=4), Limits(max_depth=3), Limits(max_depth=2),
          Limits(max_depth=1)]  # fmt: skip


def test_open_sealed_agrees_with_the_reference_on_edited_payloads() -> None:
    """§5.5-3..6, §3.3: the same content or the same error, for every edit and depth limit."""
    rng = random.Random(5)
    cases = 0
    fast = 0
    for payload in payload_edits(rng):
        for msg_id in (MSG_ID, bytes(16)):
            message = sealed_message(signed_outer(payload), msg_id)
            for limits in LIMITS:
                for content_type in (FieldsContent, RecordsContent):
                    ours = outcome(lambda: open_sealed(message, identity=RECIPIENT,  # noqa: B023
                                                       content_type=content_type,  # noqa: B023
                                                       limits=limits))  # noqa: B023
                    ref = outcome(lambda: reference_open(message, RECIPIENT,  # noqa: B023
                                                         content_type, limits))  # noqa: B023
                    assert ours == ref, (payload, msg_id, limits.max_depth, content_type)
                    cases += 1
                    fast += ours[0] == "fields"
    assert cases > 2000
    assert fast > 100  # the usual shape is among them, read whole


def test_open_sealed_agrees_with_the_reference_on_edited_outer_maps() -> None:
    """§5.5-3: the {payload, sig} map's shape, types and canonical form."""
    payload = raw({"content": {"fields": FIELDS}, "msg": MSG_ID, "to": RECIPIENT.public_key})
    for outer in outer_edits(payload):
        message = sealed_message(outer)
        ours = outcome(lambda: open_sealed(message, identity=RECIPIENT,  # noqa: B023
                                           content_type=FieldsContent))
        ref = outcome(lambda: reference_open(message, RECIPIENT, FieldsContent,  # noqa: B023
                                             DEFAULT_LIMITS))
        assert ours == ref, outer


def test_the_usual_payload_opens_to_its_fields() -> None:
    sealed = seal_content(FieldsContent(fields=FIELDS), identity=SENDER,
                          recipient=RECIPIENT.public_key,
                          recipient_enc_key=RECIPIENT.enc_public_key, msg_id=MSG_ID)  # fmt: skip
    message = SimpleNamespace(body=SimpleNamespace(sealed=sealed), sender=SENDER.public_key,
                              id=MSG_ID)  # fmt: skip
    got = open_sealed(message, identity=RECIPIENT, content_type=FieldsContent)  # type: ignore[arg-type]
    assert got == FieldsContent(fields=MappingProxyType(FIELDS))
    assert type(got.fields) is MappingProxyType
    wrong_to = SimpleNamespace(body=message.body, sender=SENDER.public_key, id=bytes(16))
    with pytest.raises(ValidationError) as info:
        open_sealed(wrong_to, identity=RECIPIENT, content_type=FieldsContent)  # type: ignore[arg-type]
    assert info.value.code is Problem.ENVELOPE_MISMATCH


def reference_payload(content: Any, msg_id: Any, recipient: Any) -> bytes:
    return _codec.encode({"content": dump_record(content), "msg": msg_id, "to": recipient})


class StrSub(str):
    __slots__ = ()


class BytesSub(bytes):
    __slots__ = ()


@pytest.mark.parametrize("fields", [
    FIELDS, dict(reversed(FIELDS.items())), MappingProxyType(FIELDS), {"a": "1"}, {},
    {"é": "x", "e": "y", "\U0001f600": "z", "E": ""}, {"a": 1}, {"a": 2**60}, {"a": None},
    {"a": b"x"}, {"a": ["x"]}, {"a": {"b": "c"}}, {1: "x"}, {b"a": "x"}, {"a": "x", 1: "y"},
    {StrSub("a"): "x"}, {"a": StrSub("x")}, {"a": 1.5}, ["a"], None, (("a", "b"),), "ab",
])  # fmt: skip
@pytest.mark.parametrize(("msg_id", "to"), [
    (MSG_ID, RECIPIENT.public_key), (BytesSub(MSG_ID), RECIPIENT.public_key),
    (MSG_ID, None), ("id", RECIPIENT.public_key), (MSG_ID, 2**60),
])  # fmt: skip
def test_the_usual_payload_is_written_as_the_reference_writes_it(
    fields: Any, msg_id: Any, to: Any
) -> None:
    """§5.5-1, §3.3: exactly the canonical encoder's bytes, or its error."""
    content = FieldsContent(fields=fields)
    ours = outcome(lambda: _fields_payload(content, msg_id, to) or reference_payload(
        content, msg_id, to))
    assert ours == outcome(lambda: reference_payload(content, msg_id, to))
    usual = type(fields) in (dict, MappingProxyType) and type(msg_id) is bytes and (
        type(to) is bytes) and all(type(k) is str and type(v) is str for k, v in fields.items())
    assert (_fields_payload(content, msg_id, to) is not None) == usual


def test_records_content_is_written_by_the_reference() -> None:
    assert _fields_payload(RecordsContent(records=()), MSG_ID, RECIPIENT.public_key) is None


# -- the sealed box, unwrapped (§5.5-2, §5.5-4) -------------------------------------------------


def test_unseal_refuses_what_is_not_a_box_of_bytes() -> None:
    """Anything but a box sealed to this key is ``cannot_decrypt``, whatever its type."""
    box = seal(b"", RECIPIENT.enc_public_key)
    assert len(box) == 48
    assert RECIPIENT.unseal(box) == b""  # the empty plaintext
    assert RECIPIENT.unseal(BytesSub(box)) == b""  # (the wrapper's path)
    for bad in (bytearray(box), memoryview(box), box.hex(), None, 48, box[:47], b""):
        with pytest.raises(ValidationError) as info:
            RECIPIENT.unseal(bad)  # type: ignore[arg-type]
        assert info.value.code is Problem.CANNOT_DECRYPT


def error_type(call: Any) -> type[BaseException] | None:
    try:
        call()
    except Exception as exc:  # the type is what is compared
        return type(exc)
    return None


def test_seal_refuses_what_the_wrapper_refuses() -> None:
    """The same errors as nacl's SealedBox for a bad key or plaintext, and for a key of small
    order (libsodium refuses it)."""
    cases: list[tuple[Any, Any]] = [(b"x", bytes(31)), (b"x", "k" * 32), (b"x", None),
                                    ("x", RECIPIENT.enc_public_key), (b"x", bytes(32)),
                                    (bytearray(b"x"), RECIPIENT.enc_public_key)]  # fmt: skip
    for plain, key in cases:
        def theirs() -> Any:
            return SealedBox(PublicKey(key)).encrypt(plain)  # noqa: B023

        assert error_type(lambda: seal(plain, key)) is error_type(theirs), (plain, key)  # noqa: B023
    with pytest.raises(nacl.exceptions.RuntimeError):
        seal(b"x", bytes(32))  # small order: the library error, as nacl.bindings raises it
    box = seal(b"data", RECIPIENT.enc_public_key)
    opened = nacl.bindings.crypto_box_seal_open(box, RECIPIENT.enc_public_key,
                                                bytes(RECIPIENT._enc_private))  # fmt: skip
    assert opened == b"data"
