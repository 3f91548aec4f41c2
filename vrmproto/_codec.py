"""Canonical, strict msgpack (spec §3.3).

Only one encoding of a value is valid: maps with text keys in ascending bytewise order, the
shortest form of every integer, string, binary, array and map header, no floats, no extension
types, integers within ±(2^53 − 1), nesting at most ``max_depth``. The decoder refuses anything
else, including duplicate keys and trailing bytes, by checking the decoded value re-encodes to
exactly the input (§3.3-7) — so what is signed is never ambiguous.
"""

from __future__ import annotations

from typing import Any

import msgpack

from vrmproto._errors import DecodeError

MAX_SAFE_INT = 2**53 - 1

# The C extension's Packer and unpackb, bound once (msgpack.packb is a Python wrapper that parses
# keyword arguments on every call). Packer's defaults are the ones §3.3 needs: use_bin_type=True,
# no single floats, no datetime, autoreset; unpackb's are raw=False and strict_map_key=True.
_Packer = msgpack.Packer
_unpackb = msgpack.unpackb
# Idle packers. Building a Packer costs about as much as packing a header with it, so they are
# reused: each call takes one for itself (list.pop and append are atomic), so no two threads
# and no re-entrant call ever share one; a packer that raised is dropped, never reused, and at
# most _IDLE_MAX wait (each holds its buffer).
_idle: list[Any] = []
_IDLE_MAX = 8
_BUF_SIZE = 4096  # the buffer a packer starts with (and grows as needed)


def pack_sorted(value: Any) -> bytes:
    """Encode a value whose maps' keys the caller already placed in canonical order (hot path).

    A value :func:`decode_form` returned packs back to exactly its input."""
    packer = _idle.pop() if _idle else _Packer(buf_size=_BUF_SIZE)
    out: bytes = packer.pack(value)
    if len(_idle) < _IDLE_MAX:
        _idle.append(packer)
    return out


_pack = pack_sorted


def array_header(length: int) -> bytes:
    """The canonical header of an array of ``length`` items, to frame items packed apart: the
    shortest form, as §3.3-7 requires (fixarray, array 16, array 32)."""
    if 0 <= length < 16:
        return _FIXARRAY[length]
    if 16 <= length < 0x1_0000:
        return b"\xdc" + length.to_bytes(2, "big")
    out: bytes = _Packer().pack_array_header(length)  # (and its error for a bad length)
    return out


def map_header(length: int) -> bytes:
    """The canonical header of a map of ``length`` entries (see :func:`array_header`)."""
    if 0 <= length < 16:
        return _FIXMAP[length]
    if 16 <= length < 0x1_0000:
        return b"\xde" + length.to_bytes(2, "big")
    out: bytes = _Packer().pack_map_header(length)
    return out


_FIXARRAY = [bytes((0x90 | n,)) for n in range(16)]
_FIXMAP = [bytes((0x80 | n,)) for n in range(16)]


def _no_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"extension type {code} is not allowed", clause="§3.3-5")


def _check(value: Any, depth: int, max_depth: int, path: str) -> None:
    """Type, range, key-order and depth rules of §3.3 on a decoded value."""
    t = type(value)
    if t is str or t is bytes or t is bool or value is None:
        return
    if t is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise DecodeError("integer out of the safe range ±(2^53-1)", clause="§3.3-4", path=path)
        return
    if t is list:
        if depth >= max_depth:
            raise DecodeError(f"nesting deeper than {max_depth}", clause="§3.3-6", path=path)
        for i, item in enumerate(value):
            _check(item, depth + 1, max_depth, f"{path}[{i}]")
        return
    if t is dict:
        if depth >= max_depth:
            raise DecodeError(f"nesting deeper than {max_depth}", clause="§3.3-6", path=path)
        prev: str | None = None
        for key, item in value.items():
            if type(key) is not str:
                raise DecodeError("map keys must be text", clause="§3.3-3", path=path)
            if prev is not None and key <= prev:
                raise DecodeError(
                    "map keys must be unique and in ascending order", clause="§3.3-3", path=path
                )
            prev = key
            _check(item, depth + 1, max_depth, f"{path}.{key}")
        return
    if t is float:
        raise DecodeError("floating-point numbers are not allowed", clause="§3.3-5", path=path)
    raise DecodeError(f"type {t.__name__} is not allowed", clause="§3.3-5", path=path)


def decode(data: bytes, *, max_depth: int = 16, path: str = "$") -> Any:
    """Decode one canonical msgpack item that fills ``data`` exactly (§3.3).

    Returns ``None``/``bool``/``int``/``str``/``bytes``/``list``/``dict``; raises
    :class:`DecodeError` (problem ``malformed``) for anything else — never another exception.
    """
    value = decode_form(data, path=path)
    _check(value, 0, max_depth, path)
    return value


def check_value(value: Any, *, depth: int, max_depth: int, path: str) -> None:
    """Apply the type, range, key-order and depth rules of §3.3 to a decoded value."""
    _check(value, depth, max_depth, path)


def keys_sorted(value: dict[str, Any]) -> bool:
    """True when a decoded map's keys are text in strictly ascending order (§3.3-3)."""
    keys = list(value)
    try:
        # sorted() refuses mixed str/bytes keys; all-bytes keys fail the type test below.
        # (a dict cannot hold a key twice; duplicates on the wire fail the re-encoding check)
        return keys == sorted(keys) and (not keys or type(keys[0]) is str)
    except TypeError:
        return False


def decode_form(data: bytes, *, path: str = "$") -> Any:
    """Decode, checking the *form* only: valid msgpack, one item, no extension types, valid
    UTF-8, and re-encoding gives the same bytes (§3.3-2, §3.3-7 — which also refuses duplicate
    keys and every non-shortest encoding).

    The caller MUST then check types, ranges, key order and depth — the typed readers of the
    envelope, header and bodies do exactly that, field by field, which is cheaper than a
    generic walk (:func:`decode` is form + generic walk).
    """
    if type(data) is not bytes:
        data = bytes(data)
    try:
        # msgpack decodes its timestamp extension (type -1) without calling ext_hook; as a float
        # it re-encodes differently, so the canonical check below refuses it like any ext (§3.3-5).
        value = _unpackb(data, raw=False, strict_map_key=True, ext_hook=_no_ext, timestamp=1)
    except DecodeError:
        raise
    except msgpack.ExtraData:
        raise DecodeError("trailing bytes after the item", clause="§3.3-2", path=path) from None
    except UnicodeDecodeError:
        raise DecodeError("text is not valid UTF-8", clause="§3.3-5", path=path) from None
    except (ValueError, TypeError, RecursionError, OverflowError, MemoryError) as exc:
        raise DecodeError(f"not valid msgpack ({type(exc).__name__})", path=path) from None
    try:
        same = _pack(value) == data
    except (ValueError, TypeError, OverflowError):  # e.g. a map key msgpack cannot re-encode
        same = False
    if not same:
        raise DecodeError(
            "not the canonical encoding (a shorter form, duplicate key or other encoding exists)",
            clause="§3.3-7",
            path=path,
        )
    return value


def _canonical(value: Any, depth: int, path: str) -> Any:
    t = type(value)
    if t is dict:
        out = {}
        for key in sorted(value):
            if type(key) is not str:
                raise ValueError(f"map key at {path} is not text")
            out[key] = _canonical(value[key], depth + 1, f"{path}.{key}")
        return out
    if t is list or t is tuple:
        return [_canonical(v, depth + 1, f"{path}[{i}]") for i, v in enumerate(value)]
    if t is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise ValueError(f"integer at {path} is out of the safe range")
        return value
    if t is str or t is bytes or t is bool or value is None:
        return value
    raise ValueError(f"value at {path} of type {t.__name__} cannot be encoded")


def encode(value: Any) -> bytes:
    """The canonical encoding of ``value`` (dict keys sorted; tuples become arrays).

    Raises ``ValueError`` for values the wire format cannot carry (a programming error on the
    sending side, not a protocol error).
    """
    return _pack(_canonical(value, 0, "$"))

