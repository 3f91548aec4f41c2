"""Hypothesis properties of the envelope over every message type (spec §3.3–§4.5).

The error contract of the opening side (STYLE §7): for ANY bytes, ``open_envelope`` returns a
verified :class:`Signed` or raises :class:`ProtocolError` — never another exception — and a
message that was altered in any way is never accepted as anything but itself.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from strategies import (
    BODIES,
    bodies,
    hashes,
    identities,
    ids,
    message_types,
    sample_bodies,
    wild_values,
)

from vrmproto import (
    DEFAULT_LIMITS,
    Body,
    Identity,
    Problem,
    ProblemReport,
    ProtocolError,
    Signed,
    decode,
    encode,
    open_envelope,
    sha256,
    sign_message,
)
from vrmproto._codec import decode_form
from vrmproto._envelope import _header_from_wire, _read_header
from vrmproto._keys import Context

NOW = 1_767_225_600_000
RECIPIENT = Identity(b"\x02" * 32)


def _sign(body: Body, sender: Identity, *, prev: bytes | None = None,
          msg_id: bytes = b"\x01" * 16, thread: bytes = b"\x02" * 16,
          routing: bool = True) -> Signed[Any]:
    return sign_message(
        body,
        identity=sender,
        recipient=RECIPIENT.public_key,
        thread=thread,
        prev=prev,
        now=NOW,
        msg_id=msg_id,
        routing=routing,
    )


def _open(data: bytes) -> Signed[Any]:
    return open_envelope(data, now=NOW, recipients=(RECIPIENT.public_key,))


def _outcome(data: bytes) -> Signed[Any] | ProtocolError:
    """What opening ``data`` gives: the message or the protocol error (anything else escapes)."""
    try:
        return _open(data)
    except ProtocolError as exc:
        return exc


signed_messages = st.builds(
    _sign,
    bodies,
    identities,
    prev=st.none() | hashes,
    msg_id=ids,
    thread=ids,
    routing=st.booleans(),
)


@given(bodies, identities, st.none() | hashes, ids, ids, st.booleans())
def test_every_type_round_trips(body: Body, sender: Identity, prev: bytes | None,
                                msg_id: bytes, thread: bytes, routing: bool) -> None:
    """§3.4: sign_message then open_envelope gives back an equal header and body."""
    msg = _sign(body, sender, prev=prev, msg_id=msg_id, thread=thread, routing=routing)
    got = _open(msg.envelope)
    assert got.header == msg.header
    assert got.body == body
    assert got.hash == msg.hash
    assert got.envelope == msg.envelope
    # Encoding is a function of the value: re-signing gives the same bytes (Ed25519 is
    # deterministic), and the body re-encodes to the very bytes carried.
    assert _sign(body, sender, prev=prev, msg_id=msg_id, thread=thread,
                 routing=routing).envelope == msg.envelope
    assert encode(got.body.to_wire()) == got.body_bytes


@pytest.mark.parametrize("mtype", sorted(BODIES))
@given(data=st.data())
def test_any_single_bit_flip_is_rejected(mtype: str, data: st.DataObject) -> None:
    """§3.4, §3.5: flipping any one bit of an envelope makes it a ProtocolError.

    The code depends on where the bit lies (malformed, invalid_field, envelope_mismatch,
    bad_signature, expired, …); that it is refused does not.
    """
    msg = _sign(data.draw(BODIES[mtype]), data.draw(identities))
    env = bytearray(msg.envelope)
    bit = data.draw(st.integers(0, len(env) * 8 - 1), label="bit")
    env[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ProtocolError):
        _open(bytes(env))


@pytest.mark.parametrize("mtype", sorted(BODIES))
def test_every_bit_flip_of_one_message_is_rejected(mtype: str) -> None:
    """The same property, exhaustively: every bit of one message of each type."""
    msg = _sign(sample_bodies()[mtype], Identity(b"\x05" * 32))
    for bit in range(len(msg.envelope) * 8):
        env = bytearray(msg.envelope)
        env[bit // 8] ^= 1 << (bit % 8)
        assert isinstance(_outcome(bytes(env)), ProtocolError), bit


def _routing_offsets(msg: Signed[Any]) -> tuple[range, range]:
    """Byte ranges of the routing copies' values: the 'to' key bytes and the 'type' text."""
    type_value = msgpack.packb(msg.type)
    tail = b"\xa4type" + type_value
    assert msg.envelope.endswith(tail)
    type_start = len(msg.envelope) - len(msg.type.encode())
    to_end = len(msg.envelope) - len(tail)
    assert msg.envelope[to_end - 32 : to_end] == RECIPIENT.public_key
    return range(to_end - 32, to_end), range(type_start, len(msg.envelope))


@given(message_types.flatmap(lambda t: BODIES[t]), identities, st.data())
def test_a_flip_in_a_routing_copy_is_envelope_mismatch(body: Body, sender: Identity,
                                                       data: st.DataObject) -> None:
    """§3.4-4: a routing copy that differs from the signed header is ``envelope_mismatch``.

    In the type name, a flip of an ASCII character's high bit makes invalid UTF-8, which is
    ``malformed`` first (§3.3-5).
    """
    msg = _sign(body, sender)
    to_range, type_range = _routing_offsets(msg)
    env = bytearray(msg.envelope)
    i = data.draw(st.sampled_from([*to_range, *type_range]), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    env[i] ^= 1 << bit
    with pytest.raises(ProtocolError) as info:
        _open(bytes(env))
    if i in type_range and bit == 7:
        assert info.value.code is Problem.MALFORMED
    else:
        assert info.value.code is Problem.ENVELOPE_MISMATCH


@given(st.binary(max_size=400))
@example(b"")
@example(b"\x80")
@example(b"\x83\xa4body\xc0\xa3hdr\xc4\x00\xa3sig\xc4\x00")
@example(b"\xdf\xff\xff\xff\xff")
def test_arbitrary_bytes_are_a_message_or_a_protocol_error(data: bytes) -> None:
    """The error contract on raw bytes (§4.5)."""
    result = _outcome(data)
    assert isinstance(result, ProtocolError)  # random bytes never carry a valid signature


@given(signed_messages, st.data())
def test_mutated_envelopes_are_refused_or_the_same_message(msg: Signed[Any],
                                                           data: st.DataObject) -> None:
    """Insertions, deletions and replacements: refused, or (rarely) the very same message."""
    env = bytearray(msg.envelope)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]), label="op")
        i = data.draw(st.integers(0, len(env) - (op != "insert")), label="at")
        if op == "insert":
            env[i:i] = data.draw(st.binary(min_size=1, max_size=4), label="bytes")
        elif op == "delete":
            del env[i : i + data.draw(st.integers(1, 4), label="n")]
        else:
            env[i] = data.draw(st.integers(0, 255), label="byte")
        if not env:
            break
    result = _outcome(bytes(env))
    if isinstance(result, Signed):
        assert result.hash == msg.hash
        assert result.body == msg.body


# -- hostile but correctly signed messages ------------------------------------------------------

_HEADER_FIELDS = {
    "body": hashes,
    "created": st.integers(NOW - 10**6, NOW),
    "expires": st.integers(NOW, NOW + 10**6),
    "from": st.just(b"from"),  # replaced by the signer's key below, or kept if drawn as junk
    "id": ids,
    "prev": st.none() | hashes,
    "thread": ids,
    "to": st.just(RECIPIENT.public_key),
    "type": message_types,
    "v": st.just(1),
}


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    """Correctly signed envelopes whose header and body hold anything at all.

    Each header field is valid or arbitrary; the body is a valid body's wire map with one field
    replaced or added (or arbitrary msgpack), and the header names its hash — so everything up
    to the typed readers is right, and they must cope with whatever they find.
    """
    signer = draw(identities)
    hdr: dict[str, Any] = {}
    for name, valid in _HEADER_FIELDS.items():
        if draw(st.integers(0, 19)) == 0:
            if draw(st.booleans()):
                continue  # a missing field
            hdr[name] = draw(wild_values(2))
        elif name == "from":
            hdr[name] = signer.public_key
        else:
            hdr[name] = draw(valid)
    if draw(st.integers(0, 9)) == 0:
        hdr[draw(st.text(max_size=5))] = draw(wild_values(1))
    mtype = hdr.get("type")
    if isinstance(mtype, str) and mtype in BODIES and draw(st.integers(0, 4)):
        wire = draw(BODIES[mtype]).to_wire()
        if draw(st.booleans()):
            key = draw(st.sampled_from([*wire, "zz"]) if wire else st.just("zz"))
            wire[key] = draw(wild_values(3))
        body = msgpack.packb(dict(sorted(wire.items())), use_bin_type=True)
    else:
        body = msgpack.packb(draw(wild_values(3)), use_bin_type=True)
    if draw(st.integers(0, 3)):
        hdr["body"] = sha256(body)
    hdr_bytes = msgpack.packb(dict(sorted(hdr.items(), key=lambda kv: str(kv[0]))),
                              use_bin_type=True)
    env = {"body": body, "hdr": hdr_bytes, "sig": signer.sign(Context.MESSAGE, hdr_bytes)}
    return bytes(msgpack.packb(env, use_bin_type=True))


@given(hostile_messages())
def test_hostile_signed_messages_are_a_message_or_a_protocol_error(data: bytes) -> None:
    """Typed readers of header and body never raise anything but ProtocolError (§4.5, §5.1)."""
    result = _outcome(data)
    event("accepted" if isinstance(result, Signed) else f"refused: {result.code.value}")
    if isinstance(result, Signed):
        # Whatever was accepted is canonical all through (§3.3): the strict generic decoder
        # takes its header and body too.
        assert result.body_bytes is not None
        decode(result.hdr_bytes)
        decode(result.body_bytes)
        assert result.type in BODIES


def test_problem_reports_round_trip_without_recipient() -> None:
    body = ProblemReport(code="rate_limited", detail="slow down", retry_after=30)
    msg = sign_message(body, identity=Identity(b"\x09" * 32), recipient=None, thread=bytes(16),
                       prev=None, now=NOW, msg_id=bytes(16))
    assert _open(msg.envelope).body == body


# -- the fast readers agree with the reference readers -----------------------------------------
#
# open_envelope reads the usual canonical layouts of envelope and header straight from the bytes
# and leaves everything else to the generic reference path (decode, then check field by field).
# The two must never disagree: same message, or same problem code.


def _summary(result: Signed[Any] | ProtocolError) -> tuple[Any, ...]:
    if isinstance(result, ProtocolError):
        return ("refused", result.code)
    return ("accepted", result.hash, result.header, result.body, result.body_bytes)


def _reference_outcome(data: bytes) -> Signed[Any] | ProtocolError:
    """The envelope read by the reference path (it is taken for anything but exact bytes)."""
    try:
        return open_envelope(memoryview(data), now=NOW,  # type: ignore[arg-type]
                             recipients=(RECIPIENT.public_key,))
    except ProtocolError as exc:
        return exc


def _mutate(data: st.DataObject, raw: bytes) -> bytes:
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        i = data.draw(st.integers(0, max(len(out) - 1, 0)), label="at")
        op = data.draw(st.sampled_from(["flip", "byte", "insert", "delete"]), label="op")
        if op == "flip" and out:
            out[i] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        elif op == "byte" and out:
            out[i] = data.draw(st.integers(0, 255), label="value")
        elif op == "insert":
            out[i:i] = data.draw(st.binary(min_size=1, max_size=3), label="bytes")
        else:
            del out[i : i + 1]
    return bytes(out)


@given(signed_messages, st.data())
def test_fast_and_reference_envelope_readers_agree(msg: Signed[Any], data: st.DataObject) -> None:
    raw = msg.envelope if data.draw(st.booleans(), label="intact") else _mutate(data, msg.envelope)
    assert _summary(_outcome(raw)) == _summary(_reference_outcome(raw))


@given(signed_messages, st.data())
def test_fast_and_reference_header_readers_agree(msg: Signed[Any], data: st.DataObject) -> None:
    hdr = msg.hdr_bytes if data.draw(st.booleans(), label="intact") else _mutate(data,
                                                                                 msg.hdr_bytes)

    def read(reader: Any) -> Any:
        try:
            return reader(hdr)
        except ProtocolError as exc:
            return ("refused", exc.code)

    fast = read(lambda h: _read_header(h, DEFAULT_LIMITS))
    reference = read(lambda h: _header_from_wire(decode_form(h, path="$.hdr"), DEFAULT_LIMITS))
    assert fast == reference
