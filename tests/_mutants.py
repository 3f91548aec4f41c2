"""The suite measures itself: the reference vendor with one planted bug, switched by name.

A *mutant* is the reference vendor endpoint with one realistic implementer's mistake planted in
it — a canonical-form rule read loosely, one step of the strict signature rule skipped, a row of
the state table added or dropped, a limit enforced other than published… Each is planted by
patching THIS process only (``python tests/_broken_vendor.py NAME`` serves it), never the shipped
server path: the conformance suite runs in another process and checks every reply with the real
core. A mutant is *killed* when the suite, run against it, fails at least one case (FAILED for a
MUST, NON_STRICT for a SHOULD); the cases that failed are what killed it.

Most mutants are a *source mutation*: one function or method of the core or the server, its
source text with one snippet replaced, compiled again in its own module (``_mutate``). The
snippet must occur exactly as written, so a refactoring that moves the code makes the mutant
fail loudly at startup instead of silently planting nothing. A few wrap a function or replace a
table instead. The 13 broken vendors of ``_broken_vendor.py`` are mutants too, under their names.

Which state-table rows get a "drop" mutant (``state-drop:…``) is generated from
:data:`vrmproto._state.TRANSITIONS`: every row an outside client can exercise against the test
vendor (``_broken_vendor.make_endpoint``: the reference policy with no counter-offer and no
catalogue) — rows the customer sends from a state the vendor rests in, and rows the vendor sends
itself. ``offered`` and ``intent_open`` are left out as states the customer sends from: the
policy answers every offer and every intentcast in the same step, so no client ever finds the
relationship resting in them; ``countered`` and ``intent_answered`` too, with ``terms.counter``
and ``intent.offer``: with no counter terms and no catalogue the test vendor never sends those.
Rows the vendor never sends (``key.rotate``, ``relationship.end``) are left out as well: a
mutant there changes code no request reaches. So are *equivalent* mutants, whose every verdict
is the reference's: skipping the canonical-encoding check of A or R in §3.5-3 (the only
non-canonical encodings anyone can sign with are those of small-order points, which steps 2 and
3 refuse anyway), or the role half of Table 7-2 alone (the sender-role check of §7-2 refuses the
same messages first; ``state-no-role`` skips both).

Run them with ``bench/mutation.py`` (all, or some by name) or ``VRM_MUTANTS=all pytest
tests/test_conformance_mutants.py``; ``make test`` runs a sample.
"""

from __future__ import annotations
import __future__

import asyncio
import dataclasses
import hashlib
import inspect
import re
import sys
import textwrap
import time
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from vrmproto import (
    _binding,
    _codec,
    _envelope,
    _errors,
    _fields,
    _keys,
    _rules,
    _state,
    _vocab,
)
from vrmproto._errors import DecodeError, Problem, ProtocolError, SignatureError
from vrmproto._limits import Limits
from vrmproto._messages import (
    Body,
    DataErased,
    DataRequest,
    DataWithdraw,
    KeyRotate,
    Receipt,
    TermsAccept,
)
from vrmproto._relationship import Relationship
from vrmproto._state import State
from vrmproto.server import _accept, _app, _endpoint, _export, _held, _replies
from vrmproto.server._endpoint import Endpoint
from vrmproto.server._ratelimit import RateLimiter

#: The areas of issue 18, in the order reports list them.
AREAS = (
    "canonical", "signatures", "envelope", "headers", "order", "replays", "state", "terms",
    "sealed", "withdrawal", "data-return", "history", "problems", "discovery", "limits",
    "rate", "http", "keys", "receipts", "relationship", "durability",
)


@dataclass(frozen=True)
class Mutant:
    """One planted bug: its name, the area of issue 18 it belongs to, the clause it breaks,
    the mistake in words, and the function that plants it (in the vendor's process)."""

    name: str
    area: str
    clause: str
    breaks: str
    plant: Callable[[], None]


MUTANTS: dict[str, Mutant] = {}


def mutant(name: str, area: str, clause: str, breaks: str) -> Callable[
    [Callable[[], None]], Callable[[], None]
]:
    def register(plant: Callable[[], None]) -> Callable[[], None]:
        assert name not in MUTANTS, name
        assert area in AREAS, area
        MUTANTS[name] = Mutant(name, area, clause, breaks, plant)
        return plant

    return register


# -- planting tools -------------------------------------------------------------------------------


def _patch(owner: object, name: str, value: object) -> None:
    """Replace ``owner.name`` (a module attribute, or a class's method) in this process; a
    module attribute also wherever another vrmproto module imported it by name."""
    assert hasattr(owner, name), f"{owner!r} has no {name}: the mutant is out of date"
    old = getattr(owner, name)
    setattr(owner, name, value)
    if isinstance(owner, types.ModuleType):
        for module in list(sys.modules.values()):
            if getattr(module, "__name__", "").startswith("vrmproto"):
                for attr, held in list(vars(module).items()):
                    if held is old:
                        setattr(module, attr, value)


_FUTURE = __future__.annotations.compiler_flag


def _mutate(owner: Any, name: str, *edits: tuple[str, str]) -> None:
    """Compile ``owner.name`` (a function, method or staticmethod) again from its source with
    each ``(old, new)`` snippet replaced; each ``old`` must occur exactly once."""
    raw = inspect.getattr_static(owner, name)
    func = raw.__func__ if isinstance(raw, staticmethod) else raw
    src = textwrap.dedent(inspect.getsource(func))
    for old, new in edits:
        found = src.count(old)
        assert found == 1, f"{name}: {old!r} occurs {found} times: the mutant is out of date"
        src = src.replace(old, new)
    module = sys.modules[func.__module__]
    space: dict[str, Any] = {}
    code = compile(src, f"<mutant of {func.__module__}.{func.__qualname__}>", "exec",
                   flags=_FUTURE, dont_inherit=True)
    exec(code, module.__dict__, space)  # the mutated copy of our own source
    new_func = space[name]
    if isinstance(raw, staticmethod) and not isinstance(new_func, staticmethod):
        new_func = staticmethod(new_func)
    _patch(owner, name, new_func)


def _mutate_rule(body: type[Body], *edits: tuple[str, str]) -> None:
    """Compile the rule of ``body`` (``vrmproto._rules``) again from its source with each
    ``(old, new)`` snippet replaced, and register the copy in its place."""
    found = _rules.RULES[body]
    src = textwrap.dedent(inspect.getsource(found.apply))
    start = re.search(r"^def ", src, re.M)
    assert start is not None
    src = src[start.start():]  # without the @rule(...) that registered it
    for old, new in edits:
        count = src.count(old)
        assert count == 1, f"{body.__name__}: {old!r} occurs {count} times: out of date"
        src = src.replace(old, new)
    space: dict[str, Any] = {}
    code = compile(src, f"<mutant of the rule of {body.__name__}>", "exec", flags=_FUTURE,
                   dont_inherit=True)  # fmt: skip
    exec(code, _rules.__dict__, space)  # the mutated copy of our own source
    rules = {**_rules.RULES, body: dataclasses.replace(found, apply=space[found.apply.__name__])}
    _patch(_rules, "RULES", rules)


def _mutate_reply(body: type[Any], *edits: tuple[str, str]) -> None:
    """:func:`_mutate` the endpoint's reply to ``body`` (an entry of ``_replies.REPLIES``), and
    put the mutated function in the table."""
    name = _replies.REPLIES[body].__name__
    _mutate(_replies, name, *edits)
    _replies.REPLIES[body] = getattr(_replies, name)


def _no_fast_paths() -> None:
    """Send every envelope, header and body through the reference readers, so that a mutant of
    those readers decides (the one-pass readers give the same results, by construction)."""
    _patch(_envelope, "_read_envelope", lambda data, limits: None)
    _patch(_envelope, "_HEADER_LAYOUT", re.compile(b"(?!)"))
    _patch(_envelope, "_BODY_READERS", {})


def _enforce(**changes: int) -> None:
    """Enforce limits other than the ones published: discovery keeps announcing the limits
    the endpoint was built with (§13.1-3), everything else uses the changed ones."""
    real_init = Endpoint.__init__
    real_build = vars(_endpoint)["build_discovery"]
    published: list[Limits] = []

    def init(self: Endpoint, *args: Any, **kw: Any) -> None:
        real_init(self, *args, **kw)
        published.append(self.limits)
        self.limits = dataclasses.replace(self.limits, **changes)
        self.sender_limit = RateLimiter(self.limits.rate_per_sender_per_minute, clock=self.clock)
        self.address_limit = RateLimiter(self.limits.rate_per_address_per_minute,
                                         clock=self.clock)

    def build(*args: Any, **kw: Any) -> Any:
        kw["limits"] = published[-1]
        return real_build(*args, **kw)

    _patch(Endpoint, "__init__", init)
    _patch(_endpoint, "build_discovery", build)


def _bind(fn: Callable[..., None], *args: Any, **kw: Any) -> Callable[[], None]:
    """A plant function calling ``fn(*args, **kw)`` (for mutants made in a loop)."""

    def plant() -> None:
        fn(*args, **kw)

    return plant


# -- canonical msgpack, read loosely (§3.3) -------------------------------------------------------
#
# Each loose decoder accepts an item whose bytes differ from the canonical encoding ONLY in the
# way its family allows: the bytes are rewritten into canonical form for that family, and the
# item passes when that rewriting equals the canonical encoding of the decoded value.

_LEN = {0xC4: ("bin", 1), 0xC5: ("bin", 2), 0xC6: ("bin", 4),
        0xD9: ("str", 1), 0xDA: ("str", 2), 0xDB: ("str", 4)}
_COUNT = {0xDC: ("array", 2), 0xDD: ("array", 4), 0xDE: ("map", 2), 0xDF: ("map", 4)}
_INT = {0xCC: (1, False), 0xCD: (2, False), 0xCE: (4, False), 0xCF: (8, False),
        0xD0: (1, True), 0xD1: (2, True), 0xD2: (4, True), 0xD3: (8, True)}
_EXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}


def _head(kind: str, n: int) -> bytes:
    """The canonical head of a str/bin of n bytes or an array/map of n items (§3.3-7)."""
    if kind == "str":
        if n < 32:
            return bytes([0xA0 | n])
        return (b"\xd9" + n.to_bytes(1, "big") if n < 256 else
                b"\xda" + n.to_bytes(2, "big") if n < 65536 else b"\xdb" + n.to_bytes(4, "big"))
    if kind == "bin":
        return (b"\xc4" + n.to_bytes(1, "big") if n < 256 else
                b"\xc5" + n.to_bytes(2, "big") if n < 65536 else b"\xc6" + n.to_bytes(4, "big"))
    fix, b16, b32 = (0x90, b"\xdc", b"\xdd") if kind == "array" else (0x80, b"\xde", b"\xdf")
    if n < 16:
        return bytes([fix | n])
    return b16 + n.to_bytes(2, "big") if n < 65536 else b32 + n.to_bytes(4, "big")


def _normal(data: bytes, i: int, loose: frozenset[str]) -> tuple[int, bytes]:
    """Item at ``data[i:]``: (end, its bytes with the ``loose`` families made canonical)."""
    b = data[i]
    if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return i + 1, data[i : i + 1]
    if 0xA0 <= b <= 0xBF:
        n = b & 0x1F
        return i + 1 + n, data[i : i + 1 + n]
    if b in _LEN:
        kind, w = _LEN[b]
        n = int.from_bytes(data[i + 1 : i + 1 + w], "big")
        start = i + 1 + w
        head = _head(kind, n) if kind in loose else data[i:start]
        return start + n, head + data[start : start + n]
    if b in _INT:
        w, signed = _INT[b]
        value = int.from_bytes(data[i + 1 : i + 1 + w], "big", signed=signed)
        end = i + 1 + w
        return end, msgpack.packb(value) if "int" in loose else data[i:end]
    if b == 0xCA:
        value = msgpack.unpackb(data[i : i + 5])
        return i + 5, msgpack.packb(value) if "float32" in loose else data[i : i + 5]
    if b == 0xCB:
        return i + 9, data[i : i + 9]
    if b in _EXT:
        return i + 2 + _EXT[b], data[i : i + 2 + _EXT[b]]
    if b in (0xC7, 0xC8, 0xC9):
        w = {0xC7: 1, 0xC8: 2, 0xC9: 4}[b]
        n = int.from_bytes(data[i + 1 : i + 1 + w], "big")
        return i + 2 + w + n, data[i : i + 2 + w + n]
    if 0x90 <= b <= 0x9F or 0x80 <= b <= 0x8F or b in _COUNT:
        if b in _COUNT:
            kind, w = _COUNT[b]
            n = int.from_bytes(data[i + 1 : i + 1 + w], "big")
        else:
            kind, w, n = ("array" if b >= 0x90 else "map"), 0, b & 0x0F
        start = j = i + 1 + w
        if kind == "array":
            parts = []
            for _ in range(n):
                j, part = _normal(data, j, loose)
                parts.append(part)
            head = _head(kind, n) if kind in loose else data[i:start]
            return j, head + b"".join(parts)
        entries: dict[bytes, tuple[bytes, bytes]] = {}
        pairs: list[tuple[bytes, bytes]] = []
        for _ in range(n):
            j, key = _normal(data, j, loose)
            j, item = _normal(data, j, loose)
            pairs.append((key, item))
            # a decoder keeping one value per key: the first position, the last value
            entries[key] = (key, item) if key not in entries else (entries[key][0], item)
        if "duplicates" in loose:
            pairs = list(entries.values())
        head = _head(kind, len(pairs)) if kind in loose or len(pairs) != n else data[i:start]
        return j, head + b"".join(k + v for k, v in pairs)
    raise ValueError(f"byte {b:#x}")


def _loose_form(*families: str) -> None:
    """decode_form accepts non-canonical bytes of the named families (§3.3-7)."""
    loose = frozenset(families)
    real = _codec.decode_form

    def decode_form(data: bytes, *, path: str = "$") -> Any:
        try:
            return real(data, path=path)
        except DecodeError as exc:
            if exc.clause != "§3.3-7":
                raise
            data = bytes(data)
            try:
                value = msgpack.unpackb(data, raw=False, strict_map_key=True, timestamp=1)
                end, normal = _normal(data, 0, loose)
            except Exception:
                raise exc from None
            if end == len(data) and _codec.pack_sorted(value) == normal:
                return value
            raise

    _patch(_codec, "decode_form", decode_form)


for _family, _example in (
    ("str", "str 8 for a one-byte string"),
    ("bin", "bin 16 for a short binary"),
    ("array", "array 16 for a short array"),
    ("map", "map 16 for a small map"),
    ("int", "uint 16 for a small integer, or a signed form for a positive one"),
):
    mutant(f"canon-long-{_family}", "canonical", "§3.3-7",
           f"accepts a longer {_family} form than needed ({_example})")(
        _bind(_loose_form, _family))


@mutant("canon-float32", "canonical", "§3.3-8",
        "lets a float 32 pass the form stage, so it is refused as invalid_field, not malformed")
def canon_float32() -> None:
    _loose_form("float32")


@mutant("canon-duplicate-keys", "canonical", "§3.3-3",
        "accepts a map with a repeated key (the last value wins)")
def canon_duplicate_keys() -> None:
    _loose_form("duplicates")


@mutant("canon-trailing-bytes", "canonical", "§3.3-2",
        "decodes the first item and ignores bytes after it")
def canon_trailing_bytes() -> None:
    real = _codec.decode_form

    def decode_form(data: bytes, *, path: str = "$") -> Any:
        try:
            return real(data, path=path)
        except DecodeError as exc:
            if exc.clause != "§3.3-2":
                raise
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, timestamp=1)
            unpacker.feed(bytes(data))
            first = unpacker.unpack()
            return real(_codec.pack_sorted(first), path=path)

    _patch(_codec, "decode_form", decode_form)


@mutant("canon-unsorted-keys", "canonical", "§3.3-3",
        "accepts map keys in any order (they must ascend bytewise)")
def canon_unsorted_keys() -> None:
    _no_fast_paths()
    _mutate(_codec, "_check", ("if prev is not None and key <= prev:",
                               "if prev is not None and key == prev:"))
    _patch(_codec, "keys_sorted", lambda value: all(type(k) is str for k in value))
    _patch(_fields, "keys_sorted", lambda value: all(type(k) is str for k in value))
    _mutate(_envelope, "_header_from_wire", (
        "if type(h) is not dict or list(h) != _HEADER_ORDER:",
        "if type(h) is dict and sorted(h) == _HEADER_ORDER:\n"
        "        h = {k: h[k] for k in _HEADER_ORDER}\n"
        "    if type(h) is not dict or list(h) != _HEADER_ORDER:"))
    import itertools  # noqa: PLC0415 - only this mutant needs it

    keys = sorted(_envelope._ENVELOPE_KEYS)
    orders = {p for n in range(len(keys) + 1) for p in itertools.permutations(keys, n)}
    _patch(_envelope, "_ENVELOPE_ORDERS", frozenset(orders))


@mutant("canon-float64-malformed", "canonical", "§3.3-8",
        "refuses a float 64 at the form stage (malformed), where a header or body field "
        "holding one is invalid_field")
def canon_float64_malformed() -> None:
    real = _codec.decode_form

    def has_float(v: Any) -> bool:
        if type(v) is float:
            return True
        if type(v) is list:
            return any(has_float(x) for x in v)
        if type(v) is dict:
            return any(has_float(x) for x in v.values())
        return False

    def decode_form(data: bytes, *, path: str = "$") -> Any:
        value = real(data, path=path)
        if has_float(value):
            raise DecodeError("floats are not allowed", clause="§3.3-5", path=path)
        return value

    _patch(_codec, "decode_form", decode_form)


@mutant("canon-int-range", "canonical", "§3.3-4",
        "accepts integers beyond ±(2^53−1)")
def canon_int_range() -> None:
    _patch(_codec, "MAX_SAFE_INT", 2**64)


# -- signatures: the strict rule with one step left out (§3.5-3) ---------------------------------

_P = 2**255 - 19
_Lg = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_SMALL_Y = (0, 1, _P - 1, _P, _P + 1,
            int.from_bytes(bytes.fromhex(
                "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"),
            int.from_bytes(bytes.fromhex(
                "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"), "little"))

Point = tuple[int, int, int, int]


def _y_of(enc: bytes) -> int:
    return int.from_bytes(enc, "little") & ((1 << 255) - 1)


def _recover_x(y: int, sign: int) -> int | None:
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    return _P - x if (x & 1) != sign else x


def _decode(enc: bytes) -> Point | None:
    """A point from 32 bytes, non-canonical y (≥ p) taken modulo p."""
    y = _y_of(enc) % _P
    x = _recover_x(y, enc[31] >> 7)
    return None if x is None else (x, y, 1, x * y % _P)


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, p: Point) -> Point:
    q: Point = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _neg(p: Point) -> Point:
    return ((-p[0]) % _P, p[1], p[2], (-p[3]) % _P)


def _encode(p: Point) -> bytes:
    zi = pow(p[2], _P - 2, _P)
    x, y = p[0] * zi % _P, p[1] * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _same(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


_BY = 4 * pow(5, _P - 2, _P) % _P
_BX = _recover_x(_BY, 0)
assert _BX is not None
_B: Point = (_BX, _BY, 1, _BX * _BY % _P)
_IDENTITY: Point = (0, 1, 1, 0)


def _lax_verify(*, s_below_l: bool = True, r_not_small: bool = True, a_canonical: bool = True,
                a_not_small: bool = True, cofactorless: bool = True, bytes_equal: bool = True,
                any_context: bool = False) -> Callable[[bytes, bytes, bytes, bytes], None]:
    """``verify`` (§3.5-3) with the steps named False left out. A signature the strict rule
    accepts is accepted at once (libsodium); only one it refuses is looked at again."""
    strict = _keys.verify
    contexts = [v for k, v in vars(_keys.Context).items() if k.isupper()]

    def verify(context: bytes, data: bytes, signature: bytes, key: bytes) -> None:
        try:
            return strict(context, data, signature, key)
        except SignatureError as exc:
            if exc.code is Problem.MALFORMED:
                raise
            refused = exc
        if any_context:
            for other in contexts:
                try:
                    return strict(other, data, signature, key)
                except SignatureError:
                    pass
            raise refused
        r_enc, s = signature[:32], int.from_bytes(signature[32:], "little")
        if (s_below_l and s >= _Lg) or (r_not_small and _y_of(r_enc) in _SMALL_Y):
            raise refused
        if len(key) != 32 or (a_canonical and _y_of(key) >= _P) or (
                a_not_small and _y_of(key) in _SMALL_Y):
            raise refused
        a, r = _decode(key), _decode(r_enc)
        if a is None or r is None:
            raise refused
        k = int.from_bytes(hashlib.sha512(r_enc + key + context + data).digest(), "little") % _Lg
        check = _add(_mul(s, _B), _neg(_mul(k, a)))
        if not cofactorless:
            ok = _same(_mul(8, _add(check, _neg(r))), _IDENTITY)
        elif bytes_equal:
            ok = _encode(check) == r_enc
        else:
            ok = _same(check, r)
        if not ok:
            raise refused
        return None

    return verify


def _plant_verify(verify: Callable[[bytes, bytes, bytes, bytes], None]) -> None:
    for module in (_envelope, _rules, _binding):
        _patch(module, "verify", verify)


for _name, _step, _kw, _words in (
    ("sig-s-unreduced", "step 1", {"s_below_l": False},
     "accepts S ≥ L (the S + L form of a valid signature)"),
    ("sig-small-order-r", "step 2", {"r_not_small": False}, "accepts an R of small order"),
    ("sig-small-order-a", "step 3", {"a_not_small": False}, "accepts an A of small order"),
    ("sig-cofactored", "step 6", {"cofactorless": False},
     "verifies with the cofactored equation [8][S]B = [8]R + [8][k]A (mixed-order R passes)"),
):
    # Left out as equivalent mutants: a non-canonical A or R other than the encodings of small-order
    # points (which steps 2 and 3 list) is a point of unknown discrete log, so no one can make a
    # signature that passes with it — skipping the canonical check changes no verdict.
    mutant(_name, "signatures", "§3.5-3", f"{_words} ({_step} of §3.5-3 skipped)")(
        _bind(lambda **kw: _plant_verify(_lax_verify(**kw)), **_kw))


@mutant("sig-any-context", "signatures", "§3.5-2",
        "accepts a signature made under another purpose's context string")
def sig_any_context() -> None:
    _plant_verify(_lax_verify(any_context=True))


# -- the envelope (§3.4) and the header (§4.2) ----------------------------------------------------


@mutant("env-routing-to", "envelope", "§3.4-4",
        "does not compare the routing copy of 'to' with the signed header")
def env_routing_to() -> None:
    _mutate(_envelope, "_check_routing", (
        "if routed_to is not ... and routed_to != header.recipient:", "if False:"))


@mutant("env-routing-type", "envelope", "§3.4-4",
        "does not compare the routing copy of 'type' with the signed header")
def env_routing_type() -> None:
    _mutate(_envelope, "_check_routing", (
        "if routed_type is not ... and routed_type != header.type:", "if False:"))


@mutant("env-body-hash", "envelope", "§3.4-5",
        "does not check the body against the signed body hash")
def env_body_hash() -> None:
    _mutate(_envelope, "open_envelope", (
        "if _sha256(body_bytes).digest() != header.body_hash:", "if False:"))


@mutant("env-extra-key", "envelope", "§3.4-1", "accepts an envelope with an unknown key")
def env_extra_key() -> None:
    _no_fast_paths()
    _mutate(_envelope, "_envelope_parts", (
        "if type(env) is not dict or tuple(env) not in _ENVELOPE_ORDERS:",
        "if type(env) is not dict or not _codec.keys_sorted(env):"))


@mutant("env-sig-length-as-bad-signature", "envelope", "§3.4-3",
        "refuses a signature that is not 64 bytes with bad_signature instead of malformed")
def env_sig_length() -> None:
    _no_fast_paths()
    _mutate(_envelope, "_envelope_parts", (
        'raise DecodeError(f"a signature is 64 bytes, not {len(sig)}", clause="§3.4-3")',
        'raise SignatureError(f"a signature is 64 bytes, not {len(sig)}", clause="§3.4-3")'))


def _header_mutant(name: str, clause: str, breaks: str, old: str, new: str) -> None:
    def plant() -> None:
        _no_fast_paths()
        _mutate(_envelope, "_header_from_wire", (old, new))

    mutant(name, "headers", clause, breaks)(plant)


_header_mutant("hdr-id-length", "§4.2-4", "accepts a message id of any length",
               "if type(msg_id) is not bytes or len(msg_id) != ID_BYTES:",
               "if type(msg_id) is not bytes:")
_header_mutant("hdr-from-length", "§4.2-5",
               "does not check the sender key's length (the signature check refuses it later)",
               "if type(sender) is not bytes or len(sender) != KEY_BYTES:",
               "if type(sender) is not bytes:")
_header_mutant("hdr-to-nil", "§4.2-6", "lets any message type have a nil recipient",
               "if mtype != ProblemReport.TYPE:", "if False:")
_header_mutant("hdr-thread-length", "§4.2-7", "accepts a thread id of any length",
               "if type(thread) is not bytes or len(thread) != ID_BYTES:",
               "if type(thread) is not bytes:")
_header_mutant("hdr-prev-length", "§4.2-8", "accepts a prev of any length",
               "(type(prev) is not bytes or len(prev) != HASH_BYTES)", "type(prev) is not bytes")
_header_mutant("hdr-body-length", "§4.2-9",
               "does not check the body hash's length (the hash comparison refuses it later)",
               "if type(body_hash) is not bytes or len(body_hash) != HASH_BYTES:",
               "if type(body_hash) is not bytes:")
_header_mutant("hdr-created-negative", "§4.2-10", "accepts a negative created",
               "not 0 <= created <= _codec.MAX_SAFE_INT", "not created <= _codec.MAX_SAFE_INT")
_header_mutant("hdr-expires-not-after", "§4.2-11", "accepts expires equal to created",
               "not created < expires <= created", "not created <= expires <= created")
_header_mutant("hdr-type-as-invalid-field", "§4.2-3",
               "refuses an unknown message type with invalid_field instead of unknown_type",
               "code=Problem.UNKNOWN_TYPE,", "code=Problem.INVALID_FIELD,")


@mutant("hdr-extra-field", "headers", "§4.2-2", "ignores unknown header fields")
def hdr_extra_field() -> None:
    _no_fast_paths()
    _mutate(_envelope, "_header_from_wire", (
        "if type(h) is not dict or list(h) != _HEADER_ORDER:",
        "if type(h) is dict and _HEADER_KEYS < h.keys() and _codec.keys_sorted(h):\n"
        "        h = {k: h[k] for k in _HEADER_ORDER}\n"
        "    if type(h) is not dict or list(h) != _HEADER_ORDER:"))


@mutant("hdr-version", "headers", "§4.2-1", "accepts a protocol version it does not support")
def hdr_version() -> None:
    _no_fast_paths()
    _mutate(_envelope, "_header_from_wire", (
        "if type(v) is not int or v not in SUPPORTED_VERSIONS:", "if type(v) is not int:"))
    _mutate(_envelope, "_header_shape", ("_header_version(h.get(\"v\"))", "pass"))


@mutant("hdr-version-no-list", "headers", "§9.1-5",
        "refuses an unsupported version without listing the versions it supports")
def hdr_version_no_list() -> None:
    _mutate(Endpoint, "problem", ('kw["supported_versions"] = SUPPORTED_VERSIONS', "pass"))


# -- the order of the checks (§4.5-1) --------------------------------------------------------------


@mutant("order-signature-first", "order", "§4.5-1",
        "verifies the signature before the recipient and the time window")
def order_signature_first() -> None:
    _mutate(_envelope, "open_envelope",
            ("    if recipients is not None and header.recipient not in recipients:\n",
             "    verify(Context.MESSAGE, hdr_bytes, sig, header.sender)\n"
             "    if recipients is not None and header.recipient not in recipients:\n"))


@mutant("order-time-before-recipient", "order", "§4.5-1",
        "checks the time window before the recipient")
def order_time_first() -> None:
    _mutate(_envelope, "open_envelope", (
        "    if recipients is not None and header.recipient not in recipients:\n",
        "    if check_time and now > header.expires:\n"
        "        raise ValidationError('the message has expired', code=Problem.EXPIRED,"
        " clause='§4.5-3')\n"
        "    if recipients is not None and header.recipient not in recipients:\n"))


@mutant("order-body-before-signature", "order", "§4.3-2",
        "decodes and checks the body before verifying the signature")
def order_body_first() -> None:
    _no_fast_paths()
    _mutate(_envelope, "open_envelope", (
        "    verify(Context.MESSAGE, hdr_bytes, sig, header.sender)\n    body: Any = None\n",
        "    body: Any = None\n"),
        ("    opened: Signed[Any] = _new_signed(",
         "    verify(Context.MESSAGE, hdr_bytes, sig, header.sender)\n"
         "    opened: Signed[Any] = _new_signed("))


# -- replays (§12.6) ------------------------------------------------------------------------------


@mutant("replay-refused", "replays", "§12.6-2",
        "answers a message it already accepted with a refusal, not the stored response")
def replay_refused() -> None:
    _mutate(_accept, "apply", (
        "if stored is not None:  # a replay", "if False:  # a replay"))


@mutant("replay-id-conflict-as-refusal", "replays", "§12.6-3",
        "answers another message under a used (sender, id) by what is wrong with it, "
        "not id_conflict")
def replay_id_conflict() -> None:
    _mutate(_accept, "apply", (
        "if stored is not None:  # a replay",
        "if stored is not None and stored.msg_hash == msg.hash:  # a replay"))


@mutant("replay-id-conflict-as-replay", "replays", "§12.6-3",
        "answers another message under a used (sender, id) with the first one's response")
def replay_id_conflict_as_replay() -> None:
    _mutate(Endpoint, "_replay", ("if stored.msg_hash != msg.hash:", "if False:"))


# -- the state machine (§7) -----------------------------------------------------------------------

C, V = _state.Role.CUSTOMER, _state.Role.VENDOR
_TABLE = dict(_state.TRANSITIONS)


Row = tuple[State, _state.Role, str]


def _table(add: dict[Row, State] | None = None, drop: Row | None = None) -> Callable[[], None]:
    """Plant Table 7-2 with rows added and one dropped."""

    def plant() -> None:
        table = {**_TABLE, **(add or {})}
        if drop is not None:
            del table[drop]
        _patch(_state, "TRANSITIONS", table)

    return plant


mutant("state-offer-in-agreed", "state", "§7-1",
       "accepts a new terms.offer in state agreed (and answers it with a second terms.accept)")(
    _table({(State.AGREED, C, "terms.offer"): State.OFFERED}))
mutant("state-after-end", "state", "§5.6.4-1", "accepts messages after relationship.end")(
    _table({(State.ENDED, role, event): State.ENDED
            for (_, role, event) in _TABLE}))
mutant("state-intentcast-in-agreed", "state", "§7-1",
       "accepts an intentcast in a thread whose terms are agreed")(
    _table({(State.AGREED, C, "intentcast"): State.INTENT_OPEN}))
mutant("state-offer-in-intent", "state", "§7-1",
       "accepts a terms.offer in a thread that answered an intentcast")(
    _table({(s, C, "terms.offer"): State.OFFERED
            for s in (State.INTENT_ANSWERED, State.INTENT_DECLINED)}))


@mutant("state-no-role", "state", "§7-2",
        "skips the role check of step 25: reads Table 7-2 without the sender's role")
def state_no_role() -> None:
    _mutate(Relationship, "_enter", ("if to is None and not body.sent_by(by):", "if False:"))
    real = _state.next_state

    def next_state(state: State, sender: _state.Role, event: str) -> State:
        try:
            return real(state, sender, event)
        except ProtocolError:
            return real(state, sender.other, event)

    _patch(_rules, "next_state", next_state)


#: States a client can find the reference vendor's relationship resting in (see the docstring).
_RESTING = {State.NONE, State.AGREED, State.REJECTED, State.INTENT_DECLINED, State.ENDED}
#: Events the test vendor sends.
_VENDOR_SENDS = {"terms.accept", "terms.reject", "intent.decline", "data.erased", "data.return",
                 "receipt"}


def _reachable_rows() -> list[Row]:
    rows = []
    for state, role, event in _TABLE:
        if role is C and state in _RESTING:
            rows.append((state, role, event))
        elif role is V and event in _VENDOR_SENDS:
            if event == "receipt" and state not in (State.OFFERED, State.AGREED,
                                                    State.INTENT_OPEN, State.ENDED):
                continue  # its receipts follow a customer's message, in these states
            rows.append((state, role, event))
    return rows


for _row in _reachable_rows():
    mutant(f"state-drop:{_row[0].value}/{_row[1].value}/{_row[2]}", "state", "§7-1",
           f"refuses {_row[2]} from the {_row[1].value} in state {_row[0].value} "
           f"(drops that row of Table 7-2)")(
        _table(drop=_row))


# -- terms (§6) -----------------------------------------------------------------------------------


@mutant("terms-match-by-id", "terms", "§6.2-3",
        "accepts a term reference whose (id, version) it does not know, matching it by id")
def terms_match_by_id() -> None:
    real = _vocab.check_known

    def check_known(ref: Any, roster: Any = _vocab.ROSTER) -> Any:
        if (ref.id, ref.version) not in roster and any(i == ref.id for i, _ in roster):
            return _vocab.latest(ref.id)
        return real(ref, roster)

    _patch(_vocab, "check_known", check_known)


@mutant("terms-hash-unchecked", "terms", "§6.2-3",
        "does not check a term reference's hash against the term's text")
def terms_hash_unchecked() -> None:
    _mutate(_vocab, "check_known", ("if term.text_hash != ref.hash:", "if False:"))


@mutant("terms-params-unchecked", "terms", "§6.3-3",
        "does not check a term reference's parameters against the term")
def terms_params_unchecked() -> None:
    _mutate(_vocab, "check_known", ("term.check_params(ref.params)", "pass"))


@mutant("terms-cited-twice", "terms", "§6.2-6", "accepts a list citing one term id twice")
def terms_cited_twice() -> None:
    _mutate(_vocab, "check_refs", ("if ref.id in seen:", "if False:"))


@mutant("terms-discovery-unknown", "terms", "§6.5-2",
        "lists in discovery's accepts_terms a term it does not know")
def terms_discovery_unknown() -> None:
    real = vars(_endpoint)["build_discovery"]

    def build(*args: Any, **kw: Any) -> Any:
        kw["accepts_terms"] = (*kw["accepts_terms"], "vrm.no-profiling")
        return real(*args, **kw)

    _patch(_endpoint, "build_discovery", build)


@mutant("terms-accept-unlisted", "terms", "§6.5-1",
        "accepts an offer holding a term that discovery's accepts_terms does not list")
def terms_accept_unlisted() -> None:
    from vrmproto.server import _policy  # noqa: PLC0415

    _mutate(_policy.ReferencePolicy, "on_terms_offer", (
        "if result.complete:", "if result.accepted:"))


@mutant("terms-reject-unnamed", "terms", "§6.5-5",
        "rejects an offer without naming the refused terms, in refused or in the reason")
def terms_reject_unnamed() -> None:
    from vrmproto.server import _policy  # noqa: PLC0415

    _mutate(_policy.ReferencePolicy, "on_terms_offer", (
        "return msg.reject(reason, refused=refused[:_MAX_TERMS])",
        'return msg.reject("we cannot agree to these terms")'))


@mutant("terms-accept-changed", "terms", "§5.2.2-2",
        "accepts an offer listing the terms in another order than offered")
def terms_accept_changed() -> None:
    _mutate_rule(TermsAccept, ("if body.terms != rel.offered:",
                               "if not turn.ours and body.terms != rel.offered:"))
    from vrmproto import _messages  # noqa: PLC0415
    from vrmproto._envelope import Signed  # noqa: PLC0415

    def accept(self: Any) -> Any:
        return _messages.TermsAccept(offer=self.hash, terms=tuple(reversed(self.body.terms)))

    _patch(Signed, "accept", accept)


# -- sealed content (§5.5) ------------------------------------------------------------------------


@mutant("sealed-signature", "sealed", "§5.5-7",
        "does not verify the signature inside sealed content")
def sealed_signature() -> None:
    _mutate(_envelope, "open_sealed", (
        "    verify(Context.SEALED, payload, sig, message.sender)\n", ""))


@mutant("sealed-recipient", "sealed", "§5.5-5",
        "does not check that sealed content names it as the recipient")
def sealed_recipient() -> None:
    _mutate(_envelope, "open_sealed", ('if inner["to"] != identity.public_key:', "if False:"))


@mutant("sealed-message-id", "sealed", "§5.5-6",
        "does not check that sealed content names the message carrying it")
def sealed_message_id() -> None:
    _mutate(_envelope, "open_sealed", ('if inner["msg"] != message.id:', "if False:"))


@mutant("sealed-before-agreement", "sealed", "§5.5-9",
        "opens sealed content before checking the message's agreement")
def sealed_before_agreement() -> None:
    _mutate(Relationship, "receive", (
        "    new_state, effect = self._enter(",
        "    self._open_content(msg)\n    new_state, effect = self._enter("))


@mutant("sealed-undecryptable-as-malformed", "sealed", "§5.5-4",
        "reports sealed content it cannot open as malformed, not cannot_decrypt")
def sealed_undecryptable() -> None:
    _mutate(_keys.Identity, "unseal", ("code=Problem.CANNOT_DECRYPT,", "code=Problem.MALFORMED,"))


@mutant("sealed-return-to-self", "sealed", "§5.5-2",
        "seals a data.return to its own encryption key, not the customer's")
def sealed_return_to_self() -> None:
    _mutate(Relationship, "seal", ("recipient_enc_key=self.peer_enc_key,",
                                   "recipient_enc_key=self.identity.enc_public_key,"))


# -- withdrawal (§5.3.2, §5.3.3, §12.10-2) --------------------------------------------------------


@mutant("withdraw-empty-is-none", "withdrawal", "§5.3.2-1",
        "reads a data.withdraw with an empty share list as withdrawing nothing, not every share")
def withdraw_empty() -> None:
    _mutate_rule(DataWithdraw, (
        "withdrawn = tuple(dict.fromkeys(body.shares)) or tuple(sorted(rel.shares))",
        "withdrawn = tuple(dict.fromkeys(body.shares))"))


@mutant("withdraw-unknown-share", "withdrawal", "§5.3.2-1",
        "accepts a withdrawal naming a share that is not live")
def withdraw_unknown() -> None:
    _mutate_rule(DataWithdraw, ("if unknown:", "if False:"))


@mutant("withdraw-keeps-data", "withdrawal", "§12.10-2",
        "confirms a withdrawal without deleting the data held from the shares")
def withdraw_keeps_data() -> None:
    _mutate(_held, "take_data", (
        "step.held_drop = [(thread, share) for share in shares]", "pass"))


@mutant("withdraw-erased-partial", "withdrawal", "§5.3.3-2",
        "confirms only the first of the withdrawn shares in data.erased")
def withdraw_erased_partial() -> None:
    _mutate_rule(DataErased, ("if set(body.shares) != set(expected):",
                              "if not turn.ours and set(body.shares) != set(expected):"))
    _mutate_reply(DataWithdraw, ("shares=rel.pending_withdraws[msg.hash])",
                                 "shares=rel.pending_withdraws[msg.hash][:1])"))


@mutant("withdraw-no-erased", "withdrawal", "§12.10-2",
        "accepts a withdrawal but never answers it with data.erased")
def withdraw_no_erased() -> None:
    _mutate_reply(DataWithdraw, (
        "    send(step, answer, now, ep.random_id())", "    pass"))


# -- data return (§12.10) -------------------------------------------------------------------------


@mutant("return-first-category", "data-return", "§12.10-1",
        "gives every field of a share the share's first category")
def return_first_category() -> None:
    _mutate(_held, "merge_fields", ("if categories is not None and category not in categories:",
                                    "if categories is not None:"))


@mutant("return-update-resets-category", "data-return", "§12.10-1",
        "gives a field of an address.update the suggested category, not the replaced field's")
def return_update_category() -> None:
    _mutate(_held, "merge_fields", ("elif categories is None and old is not None:", "elif False:"))


@mutant("return-update-kept-old", "data-return", "§12.10-1",
        "keeps the old value of a field an address.update replaces, not the new one")
def return_update_kept_old() -> None:
    # Held rows are one per (thread, field): the old value can no longer be kept *beside* the
    # new one (the v2 mutant "return-update-appends"); keeping it *instead* is the mistake left.
    _mutate(_held, "merge_fields", ("rows.append(held_row(",
                                    "None if old is not None else rows.append(held_row("))


@mutant("return-update-outlives-share", "data-return", "§5.3.6-2",
        "holds a value an address.update replaced for ever, not as the share it replaced")
def return_update_outlives_share() -> None:
    _mutate(_held, "merge_fields", ("share, expires = old.share, old.expires_ms",
                                    "share, expires = source_msg, expires_ms"))


@mutant("return-purposes-dropped", "data-return", "§12.10-1",
        "records every field with purpose 1, not the share's purposes")
def return_purposes() -> None:
    _mutate(_held, "merge_fields", (
        "chosen = purposes or (old.purposes if old is not None else _ADDRESS_PURPOSES)",
        "chosen = _ADDRESS_PURPOSES"))


@mutant("return-source-observed", "data-return", "§12.10-1",
        "records the fields a customer shared with the source observed, not provided")
def return_source() -> None:
    _mutate(_held, "merge_fields", ('record = DataRecord(name, value, category, "provided", now,',
                                    'record = DataRecord(name, value, category, "observed", now,'))


@mutant("return-all-relationships", "data-return", "§12.10-3",
        "returns the records of every relationship it holds to one requester")
def return_all() -> None:
    _mutate_reply(DataRequest, (
        "held = [to_data(h) for h in await live_held(ep.store, msg.thread, now)]",
        "held = [to_data(h) for r in await ep.store.relationships()\n"
        "                for h in await live_held(ep.store, r.thread, now)]"))


@mutant("return-nothing", "data-return", "§12.10-3",
        "answers a data.request with an empty data.return")
def return_nothing() -> None:
    _mutate_reply(DataRequest, (
        "sealed = rel.seal(RecordsContent(records=(*held, *extra)), msg_id=msg_id)",
        "sealed = rel.seal(RecordsContent(records=()), msg_id=msg_id)"))


# -- the history export (§12.5, §8) ---------------------------------------------------------------


@mutant("history-any-requester", "history", "§12.5-4",
        "exports a thread's history to any signed requester, not only the thread's peer")
def history_any_requester() -> None:
    _mutate(_export, "export", ("if req.sender != record.peer_key:", "if False:"))


@mutant("history-stale-request", "history", "§12.5-2",
        "answers a history request whatever its created time")
def history_stale() -> None:
    _mutate(_binding, "open_history_request", (
        'if abs(now - r["created"]) > limits.max_clock_skew_ms:', "if False:"))
    _patch(_export, "open_history_request", _binding.open_history_request)


@mutant("history-any-recipient", "history", "§12.5-2",
        "answers a history request addressed to another key")
def history_recipient() -> None:
    _mutate(_binding, "open_history_request", ('if r["to"] != recipient:', "if False:"))
    _patch(_export, "open_history_request", _binding.open_history_request)


@mutant("history-unsigned-request", "history", "§12.5-1",
        "does not verify the history request's signature")
def history_unsigned() -> None:
    _mutate(_binding, "open_history_request", (
        "    verify(Context.REQUEST, req_bytes, sig, r[\"from\"])\n", ""))
    _patch(_export, "open_history_request", _binding.open_history_request)


@mutant("history-start-ignored", "history", "§12.5-3",
        "always exports from the first entry, whatever start the request names")
def history_start() -> None:
    _mutate(_export, "export", ("start=req.start,", "start=0,"))


@mutant("history-incoming-only", "history", "§12.5-3",
        "exports only the messages it received, not those it sent")
def history_incoming() -> None:
    _mutate(_export, "export", ("for row in rows:",
                                   "for row in [r for r in rows if r.direction == 'in']:"))


@mutant("history-unknown-thread-empty", "history", "§12.5-4",
        "answers a history request for a thread it does not hold with an empty export")
def history_unknown_thread() -> None:
    _mutate(_export, "export", (
        "    if record is None:\n        return ep.problem(",
        "    if record is None:\n"
        "        return Response(200, encode_history([]), {'Content-Type': CONTENT_TYPE})\n"
        "    if record is None:\n        return ep.problem("))


@mutant("history-link-is-hash", "history", "§8.2-1",
        "exports each entry's message hash as its link, not the chained entry hash")
def history_link() -> None:
    _mutate(_export, "export", ("page.append(Entry(row.index, row.msg_hash, row.entry_hash,",
                                   "page.append(Entry(row.index, row.msg_hash, row.msg_hash,"))


# -- problems (§9, §12.3-4, §12.4) ----------------------------------------------------------------


@mutant("problem-no-ref", "problems", "§9.1-4",
        "sends problems without the ref of the message they refuse")
def problem_no_ref() -> None:
    _mutate(Endpoint, "problem", ('"ref": ref,', '"ref": None,'))


@mutant("problem-to-nil", "problems", "§12.3-4",
        "addresses its problems to nobody instead of the sender")
def problem_to_nil() -> None:
    _mutate(Endpoint, "problem", ('"to": to,', '"to": None,'))


@mutant("problem-thread-zero", "problems", "§12.3-4",
        "sends every problem in the zero thread instead of the refused message's")
def problem_thread_zero() -> None:
    _mutate(Endpoint, "problem", ('"thread": thread or _ZERO_THREAD,', '"thread": _ZERO_THREAD,'))


@mutant("problem-answers-problem", "problems", "§12.3-5",
        "answers a problem it refuses with a problem of its own")
def problem_answers_problem() -> None:
    _mutate(Endpoint, "_refuse", ("if peek.kind == ProblemReport.TYPE:", "if False:"))


@mutant("problem-no-server-time", "problems", "§9.1-5",
        "leaves server_time out of expired and clock_skew problems")
def problem_no_server_time() -> None:
    _mutate(Endpoint, "problem", ('kw["server_time"] = now', "pass"))


@mutant("problem-conflict-as-400", "problems", "§12.4-1",
        "answers illegal_transition and chain_broken with HTTP 400 instead of 409")
def problem_conflict_400() -> None:
    table = dict(_errors._STATUS)
    table[Problem.ILLEGAL_TRANSITION] = table[Problem.CHAIN_BROKEN] = 400
    _patch(_errors, "_STATUS", table)


@mutant("problem-no-agreement-as-illegal", "problems", "§5.3-1",
        "refuses a data message without an agreement as illegal_transition, not no_agreement")
def problem_no_agreement() -> None:
    _mutate(Relationship, "_agreement_first", ("Problem.NO_AGREEMENT)",
                                               "Problem.ILLEGAL_TRANSITION)"))


@mutant("problem-wrong-key", "problems", "§9.1-1",
        "signs the problems of a relationship with a key that is not its key there")
def problem_wrong_key() -> None:
    other = _keys.Identity(bytes(range(1, 33)))
    _mutate(Endpoint, "problem", ('"identity": identity or self.identity,',
                                  '"identity": _MUTANT_OTHER if thread else self.identity,'))
    _endpoint._MUTANT_OTHER = other  # type: ignore[attr-defined]


# -- discovery (§13) ------------------------------------------------------------------------------


def _discovery_doc(change: Callable[[dict[str, Any]], None]) -> None:
    real = _binding.build_discovery

    def build(identity: Any, **kw: Any) -> Any:
        extra = dict(kw.pop("extra", None) or {})
        probe, _ = real(identity, **kw)
        import json  # noqa: PLC0415

        doc = json.loads(probe)
        change(doc)
        for key in list(doc):
            if key not in extra:
                extra[key] = doc[key]
        return real(identity, **kw, extra=extra)

    _patch(_endpoint, "build_discovery", build)


@mutant("disc-wrong-context", "discovery", "§13.1-2",
        "signs its discovery document under the message context, not the discovery context")
def disc_wrong_context() -> None:
    _mutate(_binding, "build_discovery", ("identity.sign(Context.DISCOVERY, body)",
                                          "identity.sign(Context.MESSAGE, body)"))
    _patch(_endpoint, "build_discovery", _binding.build_discovery)


@mutant("disc-expired", "discovery", "§13.1-6", "serves a discovery document already expired")
def disc_expired() -> None:
    _mutate(_binding, "build_discovery", ('"expires": now + lifetime_ms,', '"expires": now - 1,'))
    _patch(_endpoint, "build_discovery", _binding.build_discovery)


@mutant("disc-issued-future", "discovery", "§13.1-6",
        "dates its discovery document ten minutes in the future")
def disc_future() -> None:
    _mutate(_binding, "build_discovery", ('"issued": now,', '"issued": now + 600_000,'))
    _patch(_endpoint, "build_discovery", _binding.build_discovery)


@mutant("disc-limits-partial", "discovery", "§13.1-3",
        "publishes only some of its limits")
def disc_limits_partial() -> None:
    _mutate(_binding, "build_discovery", ('"limits": limits.to_wire(),',
                                          '"limits": {"max_envelope_bytes": '
                                          "limits.max_envelope_bytes},"))
    _patch(_endpoint, "build_discovery", _binding.build_discovery)


@mutant("disc-types-all", "discovery", "§13.1-3",
        "lists every message type in discovery, including those only it sends")
def disc_types_all() -> None:
    from vrmproto._messages import MESSAGE_TYPES  # noqa: PLC0415

    _patch(Endpoint, "receive_types", property(lambda self: tuple(MESSAGE_TYPES)))


@mutant("disc-enc-key-other", "discovery", "§13.1-3",
        "publishes an encryption key that is not the one derived with its signing key")
def disc_enc_key() -> None:
    other = _keys.Identity(bytes(range(2, 34)))
    _mutate(_binding, "build_discovery", (
        '"enc_key": key_to_text(identity.enc_public_key, "x25519"),',
        f'"enc_key": key_to_text(bytes.fromhex("{other.enc_public_key.hex()}"), "x25519"),'))
    _patch(_endpoint, "build_discovery", _binding.build_discovery)


# -- limits enforced other than published (§10, §12.9) --------------------------------------------

_LIMITS = Limits(body_read_timeout_ms=1_000)  # what the test vendor publishes (_broken_vendor)

for _name, _clause, _change, _words in (
    ("limit-envelope-stricter", "§10-1",
     {"max_envelope_bytes": _LIMITS.max_envelope_bytes * 3 // 4},
     "refuses envelopes of 3/4 the published max_envelope_bytes and more"),
    ("limit-envelope-looser", "§10-1", {"max_envelope_bytes": _LIMITS.max_envelope_bytes * 2},
     "accepts envelopes up to twice the published max_envelope_bytes"),
    ("limit-skew-looser", "§10-3", {"max_clock_skew_ms": _LIMITS.max_clock_skew_ms * 5,
                                    "replay_window_ms": _LIMITS.replay_window_ms * 2},
     "accepts created up to five times the published max_clock_skew_ms ahead"),
    ("limit-skew-stricter", "§10-3", {"max_clock_skew_ms": _LIMITS.max_clock_skew_ms // 4},
     "refuses created a quarter of the published max_clock_skew_ms ahead"),
    ("limit-lifetime-looser", "§10-4", {"max_lifetime_ms": _LIMITS.max_lifetime_ms * 2,
                                        "replay_window_ms": _LIMITS.replay_window_ms * 2},
     "accepts lifetimes up to twice the published max_lifetime_ms"),
    ("limit-lifetime-stricter", "§10-4", {"max_lifetime_ms": _LIMITS.max_lifetime_ms // 7},
     "refuses lifetimes over a seventh of the published max_lifetime_ms"),
    ("limit-body-timeout-stricter", "§10-8",
     {"body_read_timeout_ms": _LIMITS.body_read_timeout_ms // 10},
     "times a body out after a tenth of the published body_read_timeout_ms"),
    ("limit-body-timeout-looser", "§10-8",
     {"body_read_timeout_ms": _LIMITS.body_read_timeout_ms * 5},
     "waits five times the published body_read_timeout_ms for a body"),
    ("rate-sender-looser", "§10-6", {"rate_per_sender_per_minute":
                                     _LIMITS.rate_per_sender_per_minute * 4},
     "limits a sender at four times the published rate_per_sender_per_minute"),
    ("rate-sender-stricter", "§10-6", {"rate_per_sender_per_minute":
                                       _LIMITS.rate_per_sender_per_minute // 4},
     "limits a sender at a quarter of the published rate_per_sender_per_minute"),
    ("rate-address-looser", "§10-7", {"rate_per_address_per_minute":
                                      _LIMITS.rate_per_address_per_minute * 4},
     "limits an address at four times the published rate_per_address_per_minute"),
    ("rate-address-stricter", "§10-7", {"rate_per_address_per_minute":
                                        _LIMITS.rate_per_address_per_minute // 4},
     "limits an address at a quarter of the published rate_per_address_per_minute"),
):
    mutant(_name, "rate" if _name.startswith("rate") else "limits", _clause, _words)(
        _bind(_enforce, **_change))


@mutant("limit-depth-looser", "limits", "§10-2",
        "accepts nesting one level deeper than the published max_depth")
def limit_depth_looser() -> None:
    _no_fast_paths()
    real = _codec._check

    def check(value: Any, depth: int, max_depth: int, path: str) -> None:
        real(value, depth, max_depth + 1, path)

    _patch(_codec, "_check", check)


@mutant("limit-depth-stricter", "limits", "§10-2",
        "refuses nesting at the published max_depth")
def limit_depth_stricter() -> None:
    _no_fast_paths()
    real = _codec._check

    def check(value: Any, depth: int, max_depth: int, path: str) -> None:
        real(value, depth, max_depth - 1, path)

    _patch(_codec, "_check", check)


@mutant("limit-body-declared-only", "limits", "§12.9-3",
        "limits only a declared Content-Length: a chunked body is read to its end")
def limit_declared_only() -> None:
    _mutate(_app, "_read_body", ("        if len(body) > limit:\n", "        if False:\n"))


@mutant("limit-declared-length-ignored", "limits", "§12.9-2",
        "reads a body whose declared Content-Length is over the limit before refusing it")
def limit_declared_ignored() -> None:
    _mutate(_app, "_read_envelope", (
        "if length is not None and length > limits.max_envelope_bytes:", "if False:"))


@mutant("rate-counts-forgeries", "rate", "§12.9-6",
        "charges the sender's rate before verifying the message")
def rate_counts_forgeries() -> None:
    _mutate(Endpoint, "_inbox", (
        "    now = self.clock()\n",
        "    if sender is not None:\n        self.sender_limit.charge(sender)\n"
        "    now = self.clock()\n"), (
        "    wait = limit.take(msg.sender) if local else await limit.atake(msg.sender)\n",
        "    wait = 0\n"))


@mutant("rate-no-retry-after", "rate", "§12.9-5",
        "answers rate_limited without Retry-After")
def rate_no_retry_after() -> None:
    _mutate(Endpoint, "problem", ('headers["Retry-After"] = str(kw["retry_after"])', "pass"))


# -- HTTP (§12.1-§12.4) ---------------------------------------------------------------------------


@mutant("http-404-as-400", "http", "§12.2-5",
        "answers an unknown path with 400 malformed instead of 404 not_found")
def http_404() -> None:
    table = dict(_app._BY_STATUS)
    del table[404]
    _patch(_app, "_BY_STATUS", table)


@mutant("http-405-no-allow", "http", "§12.2-4",
        "answers a wrong method without the Allow header")
def http_405() -> None:
    _mutate(_app, "_middleware", ("out.headers[hdrs.ALLOW] = allow", "pass"))


@mutant("http-content-type-unchecked", "http", "§12.2-3",
        "accepts a body of any content type")
def http_content_type() -> None:
    _mutate(_app, "_read_envelope", (
        "if declared is None or request.content_type.lower() != CONTENT_TYPE:", "if False:"))


@mutant("http-200-on-refusal", "http", "§12.4-1",
        "answers a refused message with HTTP 200 and the signed problem")
def http_200() -> None:
    _mutate(Endpoint, "problem", ("return Response(code.status, msg.envelope, headers)",
                                  "return Response(200 if thread else code.status, "
                                  "msg.envelope, headers)"))


# -- keys (§2.6) ----------------------------------------------------------------------------------


@mutant("key-proof-unchecked", "keys", "§2.6-2",
        "does not verify the new key's proof in a key.rotate")
def key_proof() -> None:
    _mutate_rule(KeyRotate, (
        "    verify(\n        Context.KEY_ROTATION,",
        "    (lambda *a: None)(\n        Context.KEY_ROTATION,"))


@mutant("key-old-accepted", "keys", "§2.6-3",
        "still accepts messages signed by a key rotated away")
def key_old_accepted() -> None:
    _mutate(Relationship, "_check_sender", (
        "if sender == self.peer_key:", "if sender == self.peer_key or sender in self.retired:"))


@mutant("key-compromise-as-rotated", "keys", "§2.6-4",
        "answers a key revoked for compromise with key_rotated, not key_revoked")
def key_compromise() -> None:
    _mutate(Relationship, "_check_sender", ('if reason == "compromise":', "if False:"))


@mutant("key-new-key-unchecked", "keys", "§2.1-2",
        "does not check that a key.rotate's new key is a valid, prime-order key")
def key_new_unchecked() -> None:
    _mutate_rule(KeyRotate, ('check_key(body.new_key, path="$.body.new_key")', "pass"))


@mutant("key-enc-not-updated", "keys", "§2.6-5",
        "keeps sealing to the customer's old encryption key after a key.rotate")
def key_enc_not_updated() -> None:
    _mutate_rule(KeyRotate, (
        "rel.peer_key, rel.peer_enc_key = body.new_key, body.new_enc_key",
        "rel.peer_key = body.new_key"))


# -- receipts (§5.6.1, §12.3) ---------------------------------------------------------------------


@mutant("receipt-unknown-ack", "receipts", "§5.6.1-1",
        "accepts a receipt that acknowledges no message of the thread")
def receipt_unknown_ack() -> None:
    _mutate_rule(Receipt, ("if body.ack not in pending:", "if False:"))


@mutant("receipt-for-receipt", "receipts", "§12.3-3",
        "answers a receipt with 200 and a receipt of its own")
def receipt_for_receipt() -> None:
    _patch(_accept, "_UNACKNOWLEDGED", frozenset({"problem"}))
    _mutate_rule(Receipt, ("if body.ack not in pending:",
                           "if body.ack not in pending and not turn.ours:"))


@mutant("receipt-after-replies", "receipts", "§12.3-1",
        "puts its replies before the receipt in the response")
def receipt_after_replies() -> None:
    _mutate(_accept, "respond", (
        "envelopes = [receipt.message.envelope, *(s.message.envelope for s in step.replies)]",
        "envelopes = [*(s.message.envelope for s in step.replies), receipt.message.envelope]"))


# -- the relationship and its chain (§4.5) --------------------------------------------------------


@mutant("chain-prev-unchecked", "relationship", "§4.5-6",
        "does not check that prev links to the peer's last message")
def chain_prev() -> None:
    _mutate(Relationship, "_enter", ("if msg.header.prev != head:", "if False:"))


@mutant("rel-any-sender", "relationship", "§4.5-5",
        "accepts a message in a relationship from a key that is not a party to it")
def rel_any_sender() -> None:
    _mutate(Relationship, "_check_sender", (
        "    raise _invalid(\"the sender is not a party to this relationship\"",
        "    return\n    raise _invalid(\"the sender is not a party to this relationship\""))


@mutant("rel-unknown-thread", "relationship", "§12.2-6",
        "treats a message in a thread it does not hold as opening one")
def rel_unknown_thread() -> None:
    _mutate(_accept, "load", (" or msg.type not in _OPENING_TYPES:", ":"))


# -- the 13 broken vendors (tests/_broken_vendor.py) are mutants too ------------------------------

_BROKEN_AREAS = {
    "skip-signatures": ("signatures", "§3.5-3"),
    "no-dedupe": ("replays", "§12.6-2"),
    "accept-expired": ("headers", "§4.5-3"),
    "ignore-recipient": ("headers", "§4.5-2"),
    "share-without-agreement": ("state", "§5.3-1"),
    "receipt-before-commit": ("durability", "§12.7-1"),
    "500-on-malformed": ("problems", "§12.4-2"),
    "bad-signature-as-malformed": ("signatures", "§9.1-2"),
    "unsigned-discovery": ("discovery", "§13.1-2"),
    "malleable-signatures": ("signatures", "§3.5-3"),
    "no-rate-limit": ("rate", "§12.9-5"),
    "keeps-withdrawn-bodies": ("withdrawal", "§12.10-2"),
    "returns-expired-data": ("data-return", "§12.10-4"),
}


def _add_broken_vendors() -> None:
    import _broken_vendor  # noqa: PLC0415 - beside this module; imports it lazily itself

    assert _BROKEN_AREAS.keys() == _broken_vendor.MISTAKES.keys()
    for name, words in _broken_vendor.MISTAKES.items():
        area, clause = _BROKEN_AREAS[name]
        MUTANTS[name] = Mutant(name, area, clause, words, _broken_vendor._PATCHES[name])


_add_broken_vendors()


# -- running the suite against mutants ------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What one run of the suite against one mutant (or ``reference``) found."""

    name: str
    killed_by: tuple[str, ...]
    """Cases that missed (FAILED for a MUST, NON_STRICT for a SHOULD): what killed it."""
    errors: tuple[str, ...] = ()
    """Cases that crashed (ERROR): a harness problem, never counted as a kill."""
    problem: str = ""
    """Why the run could not happen at all (the vendor did not start...)."""
    seconds: float = 0.0

    @property
    def killed(self) -> bool:
        return bool(self.killed_by)


async def run_one(name: str, *, seed: int, skip: Sequence[str] = (),
                  timeout_per_case: float | None = None, vendors: Any = None) -> Verdict:
    """Serve ``name`` (a mutant, or ``reference``) in its own process; run the suite at it,
    each case limited to ``timeout_per_case`` s (default: ``_broken_vendor.CASE_TIME_LIMIT_S``).
    ``vendors``: the ``_broken_vendor.Vendors`` to fork that process from (default: its own)."""
    from _broken_vendor import (  # noqa: PLC0415 - beside this module
        CASE_TIME_LIMIT_S,
        VendorDidNotStart,
        Vendors,
    )

    from vrmproto.testing import Outcome, run_suite  # noqa: PLC0415

    if vendors is None:
        async with Vendors() as own:
            return await run_one(name, seed=seed, skip=skip, timeout_per_case=timeout_per_case,
                                 vendors=own)  # fmt: skip
    started = time.perf_counter()
    try:
        async with vendors.serve(name, timeout=60) as url:
            limit = CASE_TIME_LIMIT_S if timeout_per_case is None else timeout_per_case
            result = await run_suite(url, seed=seed, skip=skip, timeout_per_case=limit)
    except VendorDidNotStart as exc:
        return Verdict(name, (), problem=str(exc))
    missed = sorted(r.case.id for r in result.records
                    if r.outcome in (Outcome.FAILED, Outcome.NON_STRICT))
    errors = sorted(r.case.id for r in result.records if r.outcome is Outcome.ERROR)
    return Verdict(name, tuple(missed), tuple(errors), seconds=time.perf_counter() - started)


async def run_many(names: Iterable[str], *, seed: int, concurrency: int = 3,
                   skip: Sequence[str] = (),
                   done: Callable[[Verdict], None] | None = None) -> list[Verdict]:
    """Run :func:`run_one` for each name, ``concurrency`` at a time; verdicts in ``names``
    order. ``done`` is called as each finishes."""
    from _broken_vendor import Vendors  # noqa: PLC0415 - beside this module

    gate = asyncio.Semaphore(concurrency)

    async def one(name: str, vendors: Vendors) -> Verdict:
        async with gate:
            verdict = await run_one(name, seed=seed, skip=skip, vendors=vendors)
        if done is not None:
            done(verdict)
        return verdict

    async with Vendors() as vendors:  # every vendor forked from one process
        return list(await asyncio.gather(*(one(n, vendors) for n in names)))
