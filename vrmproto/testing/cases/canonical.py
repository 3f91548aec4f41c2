"""Canonical form, one family of encodings at a time (§3.3-7, §3.3-8).

Each case writes one value of a valid message in a longer form than the canonical one — a
``str 8`` for an 11-byte string, a ``bin 16`` for a 16-byte id, an ``array 16`` for a one-item
array, a ``map 16`` for a ten-key map, a ``uint 16`` for 1, a ``float 32`` for 1 — and signs
what it wrote, so that the form is the only thing wrong. Every such item is refused at the form
stage (§3.3-8 step 1), before any value is read, so the code is always ``malformed``: never
``invalid_field``, never ``bad_signature``.

The places: the header (signed, checked at step 8 of §4.5-1), the body (bound by the header's
digest, step 20) and the envelope itself (step 2).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import msgpack

from vrmproto._keys import sha256
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

from ._support import (
    Customer,
    expect_problem,
    header_of,
    identity,
    offer_body,
    post,
    ref,
    resign_header,
    share_body,
    sign,
)

M = Level.MUST

Path = tuple[Any, ...]
#: Rewrites one item: (path, value) -> its bytes in the form wanted, or None for canonical.
Override = Callable[[Path, Any], bytes | None]


def pack(value: Any, override: Override, path: Path = ()) -> bytes:
    """The canonical encoding of ``value``, except where ``override`` writes an item itself.

    A map's or array's own head is asked for at ``path + ("#head",)`` with its length; a map
    key at ``path + ("#key", key)``.
    """
    mine = override(path, value)
    if mine is not None:
        return mine
    if isinstance(value, Mapping):
        out = bytearray(override((*path, "#head"), len(value)) or _map_head(len(value)))
        for key in sorted(value):
            out += override((*path, "#key", key), key) or msgpack.packb(key)
            out += pack(value[key], override, (*path, key))
        return bytes(out)
    if isinstance(value, list | tuple):
        out = bytearray(override((*path, "#head"), len(value)) or _array_head(len(value)))
        for i, item in enumerate(value):
            out += pack(item, override, (*path, i))
        return bytes(out)
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _map_head(n: int) -> bytes:
    return bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")


def _array_head(n: int) -> bytes:
    return bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")


# -- the longer forms ---------------------------------------------------------------------------


def str_as(family: int, text: str) -> bytes:
    data = text.encode()
    return {8: b"\xd9", 16: b"\xda", 32: b"\xdb"}[family] + len(data).to_bytes(
        family // 8, "big") + data


def bin_as(family: int, data: bytes) -> bytes:
    return {8: b"\xc4", 16: b"\xc5", 32: b"\xc6"}[family] + len(data).to_bytes(
        family // 8, "big") + data


def array_head_as(family: int, n: int) -> bytes:
    return {16: b"\xdc", 32: b"\xdd"}[family] + n.to_bytes(family // 8, "big")


def map_head_as(family: int, n: int) -> bytes:
    return {16: b"\xde", 32: b"\xdf"}[family] + n.to_bytes(family // 8, "big")


#: An int in a given msgpack form: (first byte, struct format).
INT_FORMS: dict[str, tuple[int, str]] = {
    "uint 8": (0xCC, ">B"), "uint 16": (0xCD, ">H"), "uint 32": (0xCE, ">I"),
    "uint 64": (0xCF, ">Q"), "int 8": (0xD0, ">b"), "int 16": (0xD1, ">h"),
    "int 32": (0xD2, ">i"), "int 64": (0xD3, ">q"),
}


def int_as(form: str, value: int) -> bytes:
    first, fmt = INT_FORMS[form]
    return bytes([first]) + struct.pack(fmt, value)


def float32(value: float) -> bytes:
    return b"\xca" + struct.pack(">f", value)


def at(target: Path, encoded: Callable[[Any], bytes]) -> Override:
    """An override that writes the item at ``target`` with ``encoded(value)``."""
    return lambda path, value: encoded(value) if path == target else None


# -- messages with one item rewritten ----------------------------------------------------------


def _parts(ctx: CaseContext) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """A fresh customer, the header and the body (as maps) of a valid terms.offer citing a term
    with a parameter (so that the body holds a map inside a map inside an array)."""
    who = identity(ctx)
    terms = (ref("vrm.no-tracking"), ref("vrm.delete-after", days=30))
    msg = sign(ctx, offer_body(ctx, who, terms), who)
    return who, header_of(msg), msgpack.unpackb(msg.body_bytes, raw=False)


def in_header(ctx: CaseContext, override: Override) -> bytes:
    """An envelope whose header is written with ``override`` and signed as written."""
    who, h, body = _parts(ctx)
    body_bytes = pack(body, lambda p, v: None)
    hdr, sig = resign_header({}, who, raw=pack(h, override))
    return pack({"body": body_bytes, "hdr": hdr, "sig": sig}, lambda p, v: None)


def in_body(ctx: CaseContext, override: Override) -> bytes:
    """An envelope whose body is written with ``override``; the header binds it and is signed."""
    who, h, body = _parts(ctx)
    body_bytes = pack(body, override)
    h["body"] = sha256(body_bytes)
    hdr, sig = resign_header(h, who)
    return pack({"body": body_bytes, "hdr": hdr, "sig": sig}, lambda p, v: None)


def in_envelope(ctx: CaseContext, override: Override) -> bytes:
    """A valid message whose envelope map is written with ``override``."""
    who, h, body = _parts(ctx)
    body_bytes = pack(body, lambda p, v: None)
    hdr, sig = resign_header(h, who)
    return pack({"body": body_bytes, "hdr": hdr, "sig": sig}, override)


async def _all_malformed(ctx: CaseContext, envelopes: list[tuple[str, bytes]]) -> None:
    for what, env in envelopes:
        answer = await post(ctx, env)
        if answer.code != "malformed":
            ctx.fail(expected=f"problem malformed for {what}", actual=answer.describe())
        expect_problem(ctx, answer, ["malformed"])


_COVERS = ("§3.3-8", "§4.5-1")


@case(id="CAN-001", clause="§3.3-7", level=M, tags=("wire", "canonical"), covers=_COVERS,
      requirement="A str MUST have the shortest length form: a str 8, str 16 or str 32 for a "
      "string that fits a fixstr — as a header value and as a map key, signed — is malformed.",
      accepts="problem malformed for each of the six")
async def long_str_forms(ctx: CaseContext) -> None:
    cases: list[tuple[str, bytes]] = []
    for family in (8, 16, 32):
        cases.append((f"type as str {family}",
                      in_header(ctx, at(("type",), partial(str_as, family)))))
        cases.append((f"the key 'v' as str {family}",
                      in_header(ctx, at(("#key", "v"), partial(str_as, family)))))
    await _all_malformed(ctx, cases)


@case(id="CAN-002", clause="§3.3-7", level=M, tags=("wire", "canonical"), covers=_COVERS,
      requirement="A bin MUST have the shortest length form: a bin 16 or bin 32 for a 16-byte id "
      "(header) or a 32-byte key (body), or for the 64-byte signature (envelope), is malformed.",
      accepts="problem malformed for each of the six")
async def long_bin_forms(ctx: CaseContext) -> None:
    cases: list[tuple[str, bytes]] = []
    for family in (16, 32):
        cases.append((f"id as bin {family}",
                      in_header(ctx, at(("id",), partial(bin_as, family)))))
        cases.append((f"enc_key as bin {family}",
                      in_body(ctx, at(("enc_key",), partial(bin_as, family)))))
        cases.append((f"sig as bin {family}",
                      in_envelope(ctx, at(("sig",), partial(bin_as, family)))))
    await _all_malformed(ctx, cases)


@case(id="CAN-003", clause="§3.3-7", level=M, tags=("wire", "canonical"), covers=_COVERS,
      requirement="An array MUST have the shortest length form: an array 16 or array 32 for the "
      "two-item terms array of a body is malformed.",
      accepts="problem malformed for both")
async def long_array_forms(ctx: CaseContext) -> None:
    await _all_malformed(ctx, [
        (f"terms as array {family}",
         in_body(ctx, at(("terms", "#head"), partial(array_head_as, family))))
        for family in (16, 32)])


@case(id="CAN-004", clause="§3.3-7", level=M, tags=("wire", "canonical"), covers=_COVERS,
      requirement="A map MUST have the shortest length form: a map 16 or map 32 for the "
      "ten-key header, the body, a term reference inside it, its params map, or the envelope "
      "is malformed.",
      accepts="problem malformed for each of the ten")
async def long_map_forms(ctx: CaseContext) -> None:
    cases: list[tuple[str, bytes]] = []
    for family in (16, 32):
        head = partial(map_head_as, family)
        cases += [
            (f"the header as map {family}", in_header(ctx, at(("#head",), head))),
            (f"the body as map {family}", in_body(ctx, at(("#head",), head))),
            (f"a term reference as map {family}", in_body(ctx, at(("terms", 0, "#head"), head))),
            (f"params as map {family}", in_body(ctx, at(("terms", 1, "params", "#head"), head))),
            (f"the envelope as map {family}", in_envelope(ctx, at(("#head",), head))),
        ]
    await _all_malformed(ctx, cases)


@case(id="CAN-005", clause="§3.3-7", level=M, tags=("wire", "canonical"), covers=_COVERS,
      requirement="An int MUST have its one canonical form: v = 1 in any of the eight longer "
      "forms (uint 8 to 64, int 8 to 64), a param of 30 as uint 16 or int 8, and created (which "
      "needs a uint 64) as an int 64, are malformed.",
      accepts="problem malformed for each of the eleven")
async def long_int_forms(ctx: CaseContext) -> None:
    cases: list[tuple[str, bytes]] = [
        (f"v = 1 as {form}", in_header(ctx, at(("v",), partial(int_as, form))))
        for form in INT_FORMS]
    cases += [
        (f"days = 30 as {form}",
         in_body(ctx, at(("terms", 1, "params", "days"), partial(int_as, form))))
        for form in ("uint 16", "int 8")]
    cases.append(("created as int 64",
                  in_header(ctx, at(("created",), lambda v: int_as("int 64", v)))))
    await _all_malformed(ctx, cases)


@case(id="CAN-006", clause="§3.3-8", level=M, tags=("wire", "canonical"),
      covers=("§3.3-7", "§3.3-5"),
      requirement="A float 32 is never canonical: it fails the form stage and is refused as "
      "malformed — not as invalid_field, which a reader that checks the value first would "
      "answer — in the header, in the body and as a term parameter.",
      accepts="problem malformed for each of the three")
async def float32_is_form(ctx: CaseContext) -> None:
    await _all_malformed(ctx, [
        ("v = 1.0 as float 32", in_header(ctx, at(("v",), lambda v: float32(float(v))))),
        ("days = 30.0 as float 32",
         in_body(ctx, at(("terms", 1, "params", "days"), lambda v: float32(float(v))))),
        ("version as float 32",
         in_body(ctx, at(("terms", 0, "version"), lambda v: float32(float(v))))),
    ])


@case(id="CAN-007", clause="§3.3-7", level=M, tags=("wire", "canonical"), covers=_COVERS,
      requirement="A canonical message, written by the suite's own encoder, is accepted: the "
      "writer the other CAN cases change one item of is itself canonical.",
      accepts="HTTP 200 with a receipt")
async def the_writer_is_canonical(ctx: CaseContext) -> None:
    answer = await post(ctx, in_header(ctx, lambda p, v: None))
    ctx.expect(answer.status == 200 and answer.receipt is not None,
               expected="HTTP 200 with a receipt", actual=answer.describe())


@case(id="CAN-008", clause="§3.3-4", level=M, tags=("wire", "canonical", "limits"),
      covers=("§3.3-8",),
      requirement="Every int MUST lie within ±(2^53−1); a receiver MUST refuse one outside: as "
      "malformed under a body key it ignores (checked against §3.3-4 as a whole), as "
      "invalid_field in a declared body field.",
      accepts="problem malformed for an ignored body key holding 2^53 and one holding −2^53; "
      "problem invalid_field for a data.share whose expires is 2^53")
async def int_range(ctx: CaseContext) -> None:
    for big in (2**53, -(2**53)):
        def with_big(path: Path, value: Any, big: int = big) -> bytes | None:
            return pack({**value, "x_big": big}, lambda p, v: None) if path == () else None
        env = in_body(ctx, with_big)
        answer = await post(ctx, env)
        if answer.code != "malformed":
            ctx.fail(expected=f"problem malformed for an ignored key holding {big}",
                     actual=answer.describe())
        expect_problem(ctx, answer, ["malformed"])
    c = Customer(ctx)
    await c.agree()
    body, msg_id = share_body(ctx, c, {"email": "range@example.org"}, expires=2**53)
    expect_problem(ctx, await post(ctx, c.unchecked(body, msg_id=msg_id).envelope),
                   ["invalid_field"])


def _with_entries(entries: list[tuple[bytes, bytes]]) -> Override:
    """Write the body map with these raw (key, value) entries added after its own, in the
    order given: the order, and the keys' types, are what the case tests."""

    def write(path: Path, value: Any) -> bytes | None:
        if path != ():
            return None
        own = [(msgpack.packb(k), pack(v, lambda p, x: None)) for k, v in sorted(value.items())]
        pairs = own + entries
        return _map_head(len(pairs)) + b"".join(k + v for k, v in pairs)

    return write


#: Two keys whose UTF-16 order (what JavaScript's < and Java's compareTo give) is the reverse
#: of their UTF-8 byte order: U+FFFD (EF BF BD) sorts before U+1F600 (F0 9F 98 80) in bytes,
#: after it in UTF-16 code units (FFFD against D83D).
_BMP_KEY, _ASTRAL_KEY = "x_\ufffd", "x_\U0001f600"


@case(id="CAN-009", clause="§3.3-3", level=M, tags=("wire", "canonical"), covers=("§5.1-3",),
      requirement="Map keys MUST be str in strictly ascending order of their UTF-8 bytes: a bin "
      "key, an int key, and keys in UTF-16 order (U+1F600 before U+FFFD) are malformed, even "
      "under keys the body type does not define; the same keys in byte order are accepted.",
      accepts="problem malformed for the bin key, the int key and the UTF-16 order; a receipt "
      "for the byte order")
async def key_types_and_order(ctx: CaseContext) -> None:
    nil = b"\xc0"
    bmp, astral = msgpack.packb(_BMP_KEY), msgpack.packb(_ASTRAL_KEY)
    wrong = [
        ("a bin key", [(b"\xc4\x03x_b", nil)]),
        ("an int key", [(b"\x07", nil)]),
        ("keys in UTF-16 order", [(astral, nil), (bmp, nil)]),
    ]
    await _all_malformed(ctx, [(what, in_body(ctx, _with_entries(entries)))
                               for what, entries in wrong])
    answer = await post(ctx, in_body(ctx, _with_entries([(bmp, nil), (astral, nil)])))
    ctx.expect(answer.status == 200 and answer.receipt is not None,
               expected="a receipt for the same keys in byte order", actual=answer.describe())
