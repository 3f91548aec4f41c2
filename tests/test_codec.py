"""The canonical, strict msgpack codec (spec §3.3, vrmproto/_codec.py).

Exactly one encoding of each value is accepted; everything else — however msgpack-valid — is
refused with :class:`DecodeError` (problem ``malformed``), and no input makes ``decode`` raise
anything else.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import msgpack_values

from vrmproto import DecodeError, Problem, decode, encode
from vrmproto._codec import MAX_SAFE_INT


@given(msgpack_values())
def test_round_trip(value: Any) -> None:
    """§3.3-7: what encode writes, decode reads back unchanged, and re-encodes identically."""
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


def test_encode_sorts_keys_and_turns_tuples_into_arrays() -> None:
    """§3.3-3: map keys are written in ascending bytewise order."""
    assert encode({"b": 1, "a": (2, 3)}) == b"\x82\xa1a\x92\x02\x03\xa1b\x01"
    # Code-point order is UTF-8 byte order, so "é" (c3 a9) sorts after "z".
    assert decode(encode({"é": 1, "z": 2})) == {"z": 2, "é": 1}
    assert list(decode(encode({"é": 1, "z": 2}))) == ["z", "é"]


@pytest.mark.parametrize(
    "value",
    [1.5, float("nan"), {1: "int key"}, {b"k": 1}, 2**53, -(2**53), object(), {1, 2}],
    ids=["float", "nan", "int-key", "bytes-key", "int-high", "int-low", "object", "set"],
)
def test_encode_refuses_what_the_wire_cannot_carry(value: Any) -> None:
    """§3.3-4, §3.3-5: encode raises ValueError (a programming error), not a protocol error."""
    with pytest.raises(ValueError, match=r"."):
        encode(value)


def test_largest_safe_integers_round_trip() -> None:
    """§3.3-4: ±(2^53 − 1) are the extremes allowed."""
    for n in (MAX_SAFE_INT, -MAX_SAFE_INT, 0, -1, 127, 128, -32, -33, 255, 256, 2**32):
        assert decode(encode(n)) == n


def _refused(data: bytes, *, max_depth: int = 16) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(data, max_depth=max_depth)
    assert info.value.code is Problem.MALFORMED
    return info.value


# Each: (what it is, bytes). All are msgpack that some decoder would accept.
NON_CANONICAL = [
    # §3.3-3 duplicate and unsorted keys; keys that are not text
    ("duplicate key, same value", b"\x82\xa1a\x01\xa1a\x01"),
    ("duplicate key, other value", b"\x82\xa1a\x01\xa1a\x02"),
    ("unsorted keys", b"\x82\xa1b\x01\xa1a\x02"),
    ("nested unsorted keys", b"\x91\x82\xa1b\x01\xa1a\x02"),
    ("bytes key", b"\x81\xc4\x01a\x01"),
    ("int key", b"\x81\x01\x01"),
    ("nil key", b"\x81\xc0\x01"),
    ("bool key", b"\x81\xc3\x01"),
    ("array key", b"\x81\x90\x01"),
    # §3.3-7 non-minimal integers
    ("uint8 for fixint", b"\xcc\x01"),
    ("uint16 for uint8", b"\xcd\x00\xff"),
    ("uint32 for uint16", b"\xce\x00\x00\xff\xff"),
    ("uint64 for uint32", b"\xcf" + struct.pack(">Q", 2**32 - 1)),
    ("int8 for negative fixint", b"\xd0\xff"),
    ("int16 for int8", b"\xd1\xff\x80"),
    ("int32 for int16", b"\xd2" + struct.pack(">i", -32768)),
    ("int64 for int32", b"\xd3" + struct.pack(">q", -(2**31))),
    ("signed form of a positive int", b"\xd1\x00\xc8"),
    ("int8 for a positive fixint", b"\xd0\x05"),
    # §3.3-7 non-minimal str/bin/array/map headers
    ("str8 for fixstr", b"\xd9\x01a"),
    ("str16 for str8", b"\xda\x00\x01a"),
    ("str32 for fixstr", b"\xdb\x00\x00\x00\x01a"),
    ("bin16 for bin8", b"\xc5\x00\x01a"),
    ("bin32 for bin8", b"\xc6\x00\x00\x00\x01a"),
    ("array16 for fixarray", b"\xdc\x00\x01\x01"),
    ("array32 for fixarray", b"\xdd\x00\x00\x00\x01\x01"),
    ("map16 for fixmap", b"\xde\x00\x01\xa1a\x01"),
    ("map32 for fixmap", b"\xdf\x00\x00\x00\x01\xa1a\x01"),
    # §3.3-5 floats and extension types; raw (old-spec) bytes as str
    ("float32", b"\xca" + struct.pack(">f", 1.5)),
    ("float64", b"\xcb" + struct.pack(">d", 1.5)),
    ("float64 zero", b"\xcb" + bytes(8)),
    ("fixext1", b"\xd4\x01\x00"),
    ("fixext16", b"\xd8\x01" + bytes(16)),
    ("ext8", b"\xc7\x01\x05x"),
    ("timestamp ext -1", b"\xd6\xff\x00\x00\x00\x00"),
    ("invalid UTF-8", b"\xa2\xff\xfe"),
    ("UTF-8 surrogate", b"\xa3\xed\xa0\x80"),
    ("overlong UTF-8", b"\xa2\xc0\xaf"),
    # §3.3-4 integers out of the safe range
    ("2^53", b"\xcf" + struct.pack(">Q", 2**53)),
    ("-2^53", b"\xd3" + struct.pack(">q", -(2**53))),
    ("uint64 max", b"\xcf" + b"\xff" * 8),
    ("int64 min", b"\xd3\x80" + bytes(7)),
    # §3.3-2 exactly one item
    ("trailing byte", b"\x01\x02"),
    ("trailing nil", b"\x80\xc0"),
    ("empty input", b""),
    ("truncated str", b"\xa3ab"),
    ("truncated map", b"\x82\xa1a\x01"),
    ("truncated uint32", b"\xce\x00\x01"),
    ("never-used byte 0xc1", b"\xc1"),
]


@pytest.mark.parametrize(("what", "data"), NON_CANONICAL, ids=[c[0] for c in NON_CANONICAL])
def test_non_canonical_forms_are_refused(what: str, data: bytes) -> None:
    """§3.3: every form but the one canonical encoding is ``malformed``."""
    _refused(data)


@pytest.mark.parametrize(
    "header",
    [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
     b"\xdb\xff\xff\xff\xff", b"\xdc\xff\xff", b"\xde\xff\xff", b"\xc5\xff\xff"],
    ids=["array32", "map32", "bin32", "str32", "array16", "map16", "bin16"],
)
def test_huge_declared_lengths_fail_fast(header: bytes) -> None:
    """§10-2: a few bytes claiming 2^32 − 1 items must not make the decoder allocate or spin."""
    start = time.perf_counter()
    for _ in range(100):
        _refused(header)
        _refused(header + b"\x00" * 16)
    assert time.perf_counter() - start < 1.0


def test_nesting_limit() -> None:
    """§3.3-6: ``max_depth`` containers deep is fine, one more is ``malformed``."""
    assert decode(b"\x91" * 16 + b"\x01") == _nest(16)
    assert "nesting" in str(_refused(b"\x91" * 17 + b"\x01"))
    assert "nesting" in str(_refused(b"\x81\xa1a" * 17 + b"\x01"))
    assert decode(b"\x91" * 3 + b"\x01", max_depth=3) == _nest(3)
    _refused(b"\x91" * 4 + b"\x01", max_depth=3)
    # Far deeper than any stack: still a DecodeError, never a RecursionError.
    _refused(b"\x91" * 100_000 + b"\x01")


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@given(st.binary(max_size=200))
@example(b"\xdd\xff\xff\xff\xff")
@example(b"\x91" * 5000)
@example(b"\xc7\xff\x01")
def test_arbitrary_bytes_decode_or_decode_error(data: bytes) -> None:
    """The error contract: a value or DecodeError, never any other exception (§3.3)."""
    try:
        value = decode(data)
    except DecodeError as exc:
        error: DecodeError | None = exc
    else:
        error = None
        # Whatever is accepted is the canonical encoding of what came out.
        assert encode(value) == data
    assert error is None or error.code is Problem.MALFORMED


@given(msgpack_values(), st.data())
def test_any_single_byte_change_is_refused_or_canonical(value: Any, data: st.DataObject) -> None:
    """Mutating canonical bytes yields a refusal or another canonical encoding — nothing else."""
    raw = bytearray(encode(value))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        decoded = decode(bytes(raw))
    except DecodeError:
        return
    assert encode(decoded) == bytes(raw)


def test_decode_accepts_bytes_like_input() -> None:
    assert decode(bytearray(b"\x92\x01\xc3")) == [1, True]  # type: ignore[arg-type]
    assert decode(memoryview(b"\xa1a")) == "a"  # type: ignore[arg-type]
