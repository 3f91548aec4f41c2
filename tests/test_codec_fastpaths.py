"""The codec's fast paths against a plain reference kept here: same bytes, values and errors.

``sign_message`` and ``open_envelope`` read and write the usual layouts in one pass
(vrmproto/_envelope.py) and use readers and writers generated per message type
(vrmproto/_fields.py); anything off the happy path falls back to the reference readers. The
reference below is the plain reading of spec §3.3-§5.1 — msgpack, then "re-encodes to the input"
(§3.3-7), the envelope and header maps checked field by field (§3.4, §4.2, §4.5), the body read
by ``load_record`` (§5.1), dicts packed and signed (§3.5) — and must agree with the library on
a corpus generated with a fixed seed: messages of every type, and thousands of mutations of
them (bit flips, truncations, insertions, re-signed edits of the envelope, header and body
maps), opened with varied options. Outcomes compare type-exactly (``True`` is not ``1``).
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import msgpack
import nacl.bindings
import nacl.exceptions
import pytest
from hypothesis import given
from strategies import bodies as any_body

from vrmproto import (
    MESSAGE_TYPES,
    Body,
    DecodeError,
    Header,
    Identity,
    Intentcast,
    Limits,
    Problem,
    ProblemReport,
    ProtocolError,
    SignatureError,
    Signed,
    TermRef,
    TermsOffer,
    ValidationError,
    _codec,
    _fields,
    latest,
    open_envelope,
    sha256,
    sign_message,
)
from vrmproto._envelope import SUPPORTED_VERSIONS
from vrmproto._errors import excerpt
from vrmproto._fields import MISS, load_record, record_loader, record_writer
from vrmproto._keys import Context, is_valid_key
from vrmproto._limits import DEFAULT_LIMITS
from vrmproto._messages import Money
from vrmproto._vocab import Params

IDS = [Identity(bytes([i + 1]) * 32) for i in range(4)]
BY_KEY = {i.public_key: i for i in IDS}


# -- the reference -------------------------------------------------------------------------------


def _no_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"extension type {code} is not allowed", clause="§3.3-5")


def ref_decode_form(data: Any, path: str = "$") -> Any:
    """msgpack, one item, and the value re-encodes to exactly the input (§3.3-2, §3.3-7)."""
    data = bytes(data)
    try:
        # (timestamp=1: the timestamp extension, which msgpack decodes without ext_hook, comes
        # back as a float that does not re-encode to the input, so it is refused like any ext)
        value = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_no_ext,
                                timestamp=1)
    except DecodeError:
        raise
    except msgpack.ExtraData:
        raise DecodeError("trailing bytes after the item", clause="§3.3-2", path=path) from None
    except UnicodeDecodeError:
        raise DecodeError("text is not valid UTF-8", clause="§3.3-5", path=path) from None
    except (ValueError, TypeError, RecursionError, OverflowError, MemoryError) as exc:
        raise DecodeError(f"not valid msgpack ({type(exc).__name__})", path=path) from None
    try:
        same = msgpack.packb(value, use_bin_type=True) == data
    except (ValueError, TypeError, OverflowError):
        same = False
    if not same:
        raise DecodeError(
            "not the canonical encoding (a shorter form, duplicate key or other encoding exists)",
            clause="§3.3-7", path=path)
    return value


def _sorted_text_keys(m: dict[Any, Any]) -> bool:
    keys = list(m)
    try:
        return keys == sorted(keys) and (not keys or type(keys[0]) is str)
    except TypeError:
        return False


def _field(path: str, detail: str, clause: str) -> ValidationError:
    return ValidationError(detail, code=Problem.INVALID_FIELD, clause=clause, path=path)


HEADER_KEYS = {"body", "created", "expires", "from", "id", "prev", "thread", "to", "type", "v"}


def ref_header(h: Any, limits: Limits) -> tuple[Any, ...]:
    """§4.2, in order: shape, version, key set, type, then each field."""
    if type(h) is not dict or not _sorted_text_keys(h):
        raise DecodeError("the header is a map with keys in canonical order", clause="§4.1-1",
                          path="$.hdr")
    v = h.get("v")
    if type(v) is not int:
        raise _field("$.hdr.v", "missing or not an integer", "§4.2-1")
    if v not in SUPPORTED_VERSIONS:
        raise ValidationError(f"protocol version {v} is not supported",
                              code=Problem.UNSUPPORTED_VERSION, clause="§4.2-1", path="$.hdr.v")
    if h.keys() != HEADER_KEYS:
        missing, extra = sorted(HEADER_KEYS - h.keys()), sorted(h.keys() - HEADER_KEYS)
        what = f"missing {missing}" if missing else f"{len(extra)} unknown: {excerpt(extra[0])}"
        raise _field("$.hdr", f"header fields {what}", "§4.2-2")
    mtype = h["type"]
    if type(mtype) is not str:
        raise _field("$.hdr.type", "expected text", "§4.2-3")
    if mtype not in MESSAGE_TYPES:
        raise ValidationError(f"unknown message type {excerpt(mtype)}", code=Problem.UNKNOWN_TYPE,
                              clause="§4.2-3", path="$.hdr.type")
    sender, to, thread, msg_id = h["from"], h["to"], h["thread"], h["id"]
    prev, body_hash, created, expires = h["prev"], h["body"], h["created"], h["expires"]
    if type(msg_id) is not bytes or len(msg_id) != 16:
        raise _field("$.hdr.id", "expected 16 bytes", "§4.2-4")
    if type(sender) is not bytes or len(sender) != 32:
        raise _field("$.hdr.from", "expected a 32-byte key", "§4.2-5")
    if to is None:
        if mtype != ProblemReport.TYPE:
            raise _field("$.hdr.to", "only a problem may have no recipient", "§4.2-6")
    elif type(to) is not bytes or len(to) != 32:
        raise _field("$.hdr.to", "expected a 32-byte key", "§4.2-6")
    if type(thread) is not bytes or len(thread) != 16:
        raise _field("$.hdr.thread", "expected 16 bytes", "§4.2-7")
    if prev is not None and (type(prev) is not bytes or len(prev) != 32):
        raise _field("$.hdr.prev", "expected nil or a 32-byte hash", "§4.2-8")
    if type(body_hash) is not bytes or len(body_hash) != 32:
        raise _field("$.hdr.body", "expected a 32-byte hash", "§4.2-9")
    if type(created) is not int or not 0 <= created <= 2**53 - 1:
        raise _field("$.hdr.created", "expected ms since the epoch", "§4.2-10")
    if type(expires) is not int or not created < expires <= created + limits.max_lifetime_ms:
        raise _field("$.hdr.expires",
                     f"must be after created and at most {limits.max_lifetime_ms} ms later",
                     "§4.2-11")
    return (mtype, msg_id, sender, to, created, expires, thread, prev, body_hash, v)


def ref_verify(context: bytes, data: bytes, sig: bytes, key: bytes) -> None:
    try:
        nacl.bindings.crypto_sign_open(sig + context + data, key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError):
        if not is_valid_key(key):
            raise SignatureError("the sender key is not a valid Ed25519 public key",
                                 code=Problem.BAD_KEY, clause="§2.1-2") from None
        raise SignatureError("signature does not verify", clause="§3.5-3") from None


def ref_open(
    data: bytes, *, now: int, recipients: Any = None, limits: Limits = DEFAULT_LIMITS,
    check_time: bool = True, allow_erased: bool = False,
) -> tuple[Any, ...]:
    """open_envelope as the spec reads (§4.5): the first failing check decides."""
    if len(data) > limits.max_envelope_bytes:
        raise DecodeError(f"envelope is {len(data)} bytes; the limit is "
                          f"{limits.max_envelope_bytes}", code=Problem.TOO_LARGE, clause="§10-1")
    env = ref_decode_form(data)
    if (type(env) is not dict or not env.keys() <= {"body", "hdr", "sig", "to", "type"}
            or not _sorted_text_keys(env)):
        raise DecodeError("an envelope is a map of body, hdr, sig[, to, type]", clause="§3.4-1")
    hdr_bytes, sig, body_bytes = env.get("hdr"), env.get("sig"), env.get("body")
    if type(hdr_bytes) is not bytes or type(sig) is not bytes:
        raise DecodeError("hdr and sig must be binary", clause="§3.4-2")
    routed_to = env.get("to", b"")
    if (routed_to is not None and type(routed_to) is not bytes) or type(
            env.get("type", "")) is not str:
        raise DecodeError("routing copies are a key (or nil) and a type name", clause="§3.4-4")
    if len(sig) != 64:
        raise DecodeError(f"a signature is 64 bytes, not {len(sig)}", clause="§3.4-3")
    if body_bytes is None:
        if not allow_erased:
            raise DecodeError("the body is missing", clause="§3.4-2", path="$.body")
    elif type(body_bytes) is not bytes:
        raise DecodeError("body must be binary", clause="§3.4-2", path="$.body")
    header = ref_header(ref_decode_form(hdr_bytes, path="$.hdr"), limits)
    mtype, _, sender, to, created, expires, _, _, body_hash, _ = header
    if "to" in env and env["to"] != to:
        raise ValidationError("routing 'to' differs from the signed header",
                              code=Problem.ENVELOPE_MISMATCH, clause="§3.4-4")
    if "type" in env and env["type"] != mtype:
        raise ValidationError("routing 'type' differs from the signed header",
                              code=Problem.ENVELOPE_MISMATCH, clause="§3.4-4")
    if recipients is not None and to not in recipients and (
            to is not None or mtype != ProblemReport.TYPE):
        raise ValidationError("this message is addressed to another key",
                              code=Problem.WRONG_RECIPIENT, clause="§4.5-2", path="$.hdr.to")
    if check_time:
        if now > expires:
            raise ValidationError("the message has expired", code=Problem.EXPIRED,
                                  clause="§4.5-3")
        if created > now + limits.max_clock_skew_ms:
            raise ValidationError("created lies in the future beyond the allowed clock skew",
                                  code=Problem.CLOCK_SKEW, clause="§4.5-4")
    ref_verify(Context.MESSAGE, hdr_bytes, sig, sender)
    body = None
    if body_bytes is not None:
        if sha256(body_bytes) != body_hash:
            raise SignatureError("the body does not match the signed body hash", clause="§3.4-5")
        decoded = ref_decode_form(body_bytes, path="$.body")
        body = load_record(MESSAGE_TYPES[mtype], decoded, "$.body", limits.max_depth)
    return (header, body, hdr_bytes, body_bytes, sig, data, sha256(hdr_bytes))


def ref_sign(body: Body, *, identity: Identity, recipient: Any, thread: bytes, prev: Any,
             now: int, msg_id: bytes, lifetime_ms: int = 86_400_000,
             routing: bool = True) -> tuple[Any, ...]:
    """sign_message as the spec reads (§3.4, §4.2): pack the body, the header, sign, pack."""
    body_bytes = msgpack.packb(_fields.dump_record(body), use_bin_type=True)
    header = (body.TYPE, msg_id, identity.public_key, recipient, now, now + lifetime_ms, thread,
              prev, sha256(body_bytes), 1)
    wire = dict(zip(("type", "id", "from", "to", "created", "expires", "thread", "prev", "body",
                     "v"), header, strict=True))
    hdr_bytes = msgpack.packb(dict(sorted(wire.items())), use_bin_type=True)
    secret = identity._signing_secret
    sig = nacl.bindings.crypto_sign(Context.MESSAGE + hdr_bytes, secret)[:64]
    env = {"body": body_bytes, "hdr": hdr_bytes, "sig": sig}
    if routing:
        env |= {"to": recipient, "type": body.TYPE}
    envelope = msgpack.packb(env, use_bin_type=True)
    return (header, body, hdr_bytes, body_bytes, sig, envelope, sha256(hdr_bytes))


# -- type-exact images of outcomes ---------------------------------------------------------------


def norm(x: Any) -> Any:
    """A comparable image that keeps types (``True`` vs ``1``, tuple vs list) and map order."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x).__name__,
                tuple((f.name, norm(getattr(x, f.name))) for f in dataclasses.fields(x)))
    if isinstance(x, Mapping):
        return (type(x).__name__, tuple((norm(k), norm(v)) for k, v in x.items()))
    if isinstance(x, tuple | list):
        return (type(x).__name__, tuple(norm(v) for v in x))
    return (type(x).__name__, repr(x))


def of_signed(s: Signed[Any]) -> tuple[Any, ...]:
    return (tuple(norm(v) for v in s.header), norm(s.body), s.hdr_bytes, s.body_bytes,
            s.signature, s.envelope, s.hash)


def of_tuple(t: tuple[Any, ...]) -> tuple[Any, ...]:
    return (tuple(norm(v) for v in t[0]), norm(t[1]), *t[2:])


def outcome(fn: Callable[[], Any], image: Callable[[Any], Any]) -> tuple[Any, ...]:
    try:
        got = fn()
    except ProtocolError as e:
        return ("error", type(e).__name__, e.code, e.clause, e.path, e.detail)
    return ("ok", image(got))


# -- the corpus (fixed seed) -----------------------------------------------------------------------

TEXT = "abz ÄéØ€😀-_.Z09"


def rtext(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(TEXT) for _ in range(n))


def rvalue(rng: random.Random, kind: _fields.Kind) -> Any:
    if isinstance(kind, _fields.Bin):
        return rng.randbytes(kind.size if kind.size is not None else rng.choice([0, 1, 300]))
    if isinstance(kind, _fields.Str):
        if kind.pattern is not None:
            alphabet, n = ("abc_", rng.randint(1, 9)) if "a-z" in kind.pattern.pattern else (
                "ABCXYZ", 3)
            return "".join(rng.choice(alphabet) for _ in range(n))
        return rtext(rng, rng.choice([0 if kind.empty else 1, 5, kind.max_len]))
    if isinstance(kind, _fields.Int):
        return rng.choice([kind.lo, kind.hi, rng.randint(kind.lo, kind.hi)])
    if isinstance(kind, _fields.Choice):
        return rng.choice(kind.values)
    if isinstance(kind, _fields.List):
        n = rng.randint(kind.min_len, min(kind.max_len, kind.min_len + 3))
        return tuple(rvalue(rng, kind.item) for _ in range(n))
    if isinstance(kind, _fields.Record):
        return rbody(rng, kind.cls)
    assert isinstance(kind, _fields.Custom)
    assert kind.cls is TermRef
    params = {rng.choice(["days", "a", "b_c"]): rng.choice([0, 30, -5, 2**40, "", "é"])
              for _ in range(rng.choice([0, 0, 1, 2]))}
    return TermRef(rng.choice(["vrm.no-tracking", "x.y", "a-b.c"]), rng.choice([1, 2, 2**32 - 1]),
                   rng.choice([bytes(32), rng.randbytes(32)]), Params(params))


def rbody(rng: random.Random, cls: type[Any]) -> Any:
    while True:
        kwargs = {name: rvalue(rng, kind) for name, kind, optional in _fields.specs(cls)
                  if not optional or rng.random() < 0.5}
        try:
            return cls(**kwargs)
        except ValidationError:
            assert cls is Intentcast  # end before start: draw again


def messages(seed: int, per_type: int) -> list[tuple[Body, dict[str, Any]]]:
    rng = random.Random(seed)
    out = []
    for name, cls in MESSAGE_TYPES.items():
        for _ in range(per_type):
            recipient: bytes | None = rng.choice(IDS).public_key
            if (name == ProblemReport.TYPE and rng.random() < 0.5) or rng.random() < 0.03:
                recipient = None
            kw: dict[str, Any] = {
                "identity": rng.choice(IDS), "recipient": recipient,
                "thread": rng.randbytes(16), "prev": rng.choice([None, rng.randbytes(32)]),
                "now": rng.choice([0, 1, 1_800_000_000_000, rng.randint(0, 2**50)]),
                "msg_id": rng.randbytes(16),
            }
            if rng.random() < 0.3:
                kw["lifetime_ms"] = rng.choice([1, 1000, 86_400_000, 10**12])
            if rng.random() < 0.3:
                kw["routing"] = False
            out.append((rbody(rng, cls), kw))
    return out


ODD: list[Any] = [None, True, False, 0, 1, -1, 2**53, 2**53 - 1, 1.0, 0.5, "", "x", "receipt",
                  b"", bytes(16), bytes(32), bytes(33), [], [1], {}, {"a": 1}, {"b": 1, "a": 2},
                  [[[[]]]], 2**63, msgpack.ExtType(1, b"x")]


def mutate_map(rng: random.Random, d: dict[str, Any], names: list[str]) -> dict[str, Any]:
    items = list(d.items())
    op = rng.randrange(6)
    if op == 0 and items:
        items.pop(rng.randrange(len(items)))
    elif op == 1:
        items.insert(rng.randrange(len(items) + 1), (rng.choice([*names, "zz", ""]),
                                                     rng.choice(ODD)))
    elif op == 2 and len(items) > 1:
        i, j = rng.sample(range(len(items)), 2)
        items[i], items[j] = items[j], items[i]
    elif op == 3 and items:
        i = rng.randrange(len(items))
        items[i] = (items[i][0], rng.choice(ODD))
    elif op == 4 and items:
        i = rng.randrange(len(items))
        items[i] = (items[i][0], mutate_value(rng, items[i][1]))
    elif items:
        i = rng.randrange(len(items))
        items[i] = (items[i][0] + rng.choice(["x", "_"]), items[i][1])
    return dict(items)


def mutate_value(rng: random.Random, v: Any) -> Any:
    if isinstance(v, bytes):
        return v[:-1] if v and rng.random() < 0.5 else v + b"\x00"
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return rng.choice([v + 1, v - 1, -v, float(v), bool(v & 1), str(v)])
    if isinstance(v, str):
        return rng.choice([v + "x", v[:-1], v.encode()])
    if isinstance(v, dict):
        return mutate_map(rng, v, ["hash", "id", "params", "version", "days", "amount"])
    if isinstance(v, list) and v:
        v = list(v)
        i = rng.randrange(len(v))
        v[i] = mutate_value(rng, v[i]) if rng.random() < 0.7 else rng.choice(ODD)
        return v
    return rng.choice(ODD)


def resign(hdr: bytes, body: bytes | None, extra: dict[str, Any], key: Any) -> bytes:
    ident = BY_KEY.get(key, IDS[0])
    env: dict[str, Any] = {} if body is None else {"body": body}
    env |= {"hdr": hdr, "sig": ident.sign(Context.MESSAGE, hdr), **extra}
    out: bytes = msgpack.packb(env, use_bin_type=True)
    return out


def mutations(
    seed: int, signed: list[Signed[Any]], n: int
) -> list[tuple[bytes, Signed[Any]]]:
    """``n`` mutated envelopes, each with the message it was made from."""
    rng = random.Random(seed)
    out: list[tuple[bytes, Signed[Any]]] = []
    while len(out) < n:
        s = rng.choice(signed)
        env = s.envelope
        op = rng.randrange(11)
        if op == 0:
            b = bytearray(env)
            for _ in range(rng.choice([1, 2, 5])):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            data = bytes(b)
        elif op == 1:
            data = env[: rng.randrange(len(env))]
        elif op == 2:
            i = rng.randrange(len(env) + 1)
            data = env[:i] + bytes(rng.choice([0, 0x80, 0x90, 0xC0, 0xC4, 0xCC, 0xD9, 0xFF])
                                   for _ in range(rng.randint(1, 3))) + env[i:]
        elif op == 3:
            i = rng.randrange(len(env))
            data = env[:i] + env[i + rng.randint(1, 3):]
        elif op == 4:  # a longer form of one header item, re-signed; or of the envelope's
            if rng.random() < 0.5:
                data = resign(widen(rng, s.hdr_bytes), s.body_bytes, {}, s.sender)
                data = msgpack.packb(msgpack.unpackb(data) | _routing(s), use_bin_type=True)
            else:
                data = widen(rng, env)
        elif op == 5:  # the header map edited, re-signed
            hdr = msgpack.unpackb(s.hdr_bytes)
            new = mutate_map(rng, hdr, sorted(HEADER_KEYS))
            try:
                hb = msgpack.packb(new, use_bin_type=True)
            except (TypeError, ValueError, OverflowError):
                continue
            extra = {"to": new.get("to"), "type": new.get("type")} if rng.random() < 0.6 else {}
            data = resign(hb, s.body_bytes, extra, hdr.get("from"))
        elif op in (6, 7, 8) and s.body_bytes is not None:  # the body map edited, re-signed
            body = msgpack.unpackb(s.body_bytes)
            new = mutate_map(rng, body, [n for n, _, _ in _fields.specs(MESSAGE_TYPES[s.type])])
            try:
                bb = msgpack.packb(new, use_bin_type=True)
            except (TypeError, ValueError, OverflowError):
                continue
            hdr = msgpack.unpackb(s.hdr_bytes) | {"body": sha256(bb)}
            extra = {"to": hdr["to"], "type": hdr["type"]} if rng.random() < 0.7 else {}
            data = resign(msgpack.packb(hdr, use_bin_type=True), bb, extra, hdr["from"])
        else:  # the envelope map edited
            e = mutate_map(rng, msgpack.unpackb(env), ["body", "hdr", "sig", "to", "type"])
            if rng.random() < 0.2:
                e["body"] = None
            try:
                data = msgpack.packb(e, use_bin_type=True)
            except (TypeError, ValueError, OverflowError):
                continue
        out.append((data, s))
    return out


def widen(rng: random.Random, data: bytes) -> bytes:
    """``data`` with one item in a longer form than the shortest (§3.3-7): a map head, a key,
    a bin head or an unsigned integer."""
    rules: list[tuple[bytes, bytes]] = [
        (b"\x8a", b"\xde\x00\x0a"), (b"\x85", b"\xde\x00\x05"),  # map heads
        (b"\xa4body", b"\xd9\x04body"), (b"\xa2to", b"\xd9\x02to"),  # keys
        (b"\xc4\x20", b"\xc5\x00\x20"), (b"\xc4\x10", b"\xc5\x00\x10"),  # bin heads
        (b"\xc4\x40", b"\xc5\x00\x40"),
        (b"\xa4body\xc4", b"\xa4body\xc5\x00"), (b"\xa3hdr\xc4", b"\xa3hdr\xc5\x00"),
    ]
    for key in (b"\xa7created", b"\xa7expires"):  # an integer in every longer form
        at = data.find(key)
        if at >= 0:
            at += len(key)
            form = data[at : at + {0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9}.get(data[at], 1)]
            value = msgpack.unpackb(form)
            rules += [(key + form, key + head + value.to_bytes(n, "big"))
                      for head, n in ((b"\xcc", 1), (b"\xcd", 2), (b"\xce", 4), (b"\xcf", 8))
                      if n > len(form) - 1 and value < 256**n]
    old, new = rng.choice([r for r in rules if r[0] in data] or [(b"", b"")])
    return data.replace(old, new, 1)


def _routing(s: Signed[Any]) -> dict[str, Any]:
    return {"to": s.recipient, "type": s.type}


CORPUS = messages(seed=20_260_124, per_type=12)
SIGNED = [sign_message(body, **kw) for body, kw in CORPUS]


# -- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "kw"), CORPUS, ids=lambda v: getattr(v, "TYPE", ""))
def test_sign_message_writes_the_reference_bytes(body: Body, kw: dict[str, Any]) -> None:
    """§3.4, §4.2: header, body, envelope, signature and hash — byte for byte."""
    assert of_signed(sign_message(body, **kw)) == of_tuple(ref_sign(body, **kw))


def test_open_envelope_agrees_with_the_reference_on_mutations() -> None:
    """§3.3, §3.4, §4.5, §5.1: the same message, or the same code, clause, path and detail."""
    rng = random.Random(7)
    cases = [(s.envelope, s) for s in SIGNED] + mutations(seed=11, signed=SIGNED, n=5000)
    for data, s in cases:
        # mostly within the source message's window and to its recipient, so later rules run
        options: dict[str, Any] = {
            "now": s.header.created + rng.choice([0, 1, 1000, -(10**7), 10**9, 10**12])}
        if rng.random() < 0.5:
            options["recipients"] = (s.recipient if rng.random() < 0.8 else IDS[3].public_key,)
        if rng.random() < 0.4:
            options["check_time"] = False
        if rng.random() < 0.3:
            options["allow_erased"] = True
        if rng.random() < 0.05:
            options["limits"] = Limits(max_envelope_bytes=500, max_depth=2)
        got = outcome(partial(open_envelope, data, **options), of_signed)
        want = outcome(partial(ref_open, data, **options), of_tuple)
        assert got == want, (data.hex(), options)


def test_every_message_opens_as_signed_in_each_layout() -> None:
    """The usual layouts (routing copies or not), bytearray input and erased bodies (§8.4);
    the corpus's few invalid headers (a lifetime too long, no recipient) fail alike."""
    opened = 0
    for s in SIGNED:
        layouts: tuple[Any, ...] = (s.envelope, bytearray(s.envelope), s.without_body().envelope)
        for data in layouts:
            options: dict[str, Any] = {"now": s.header.created, "check_time": False,
                                       "allow_erased": True}
            got = outcome(partial(open_envelope, data, **options), of_signed)
            assert got == outcome(partial(ref_open, bytes(data), **options), of_tuple)
            opened += got[0] == "ok"
    assert opened > 2 * len(SIGNED)


@given(any_body)
def test_any_valid_body_is_written_and_read_as_the_reference_does(body: Body) -> None:
    """§5.1: the generated writer and reader of each type against dump_record and load_record."""
    wire = _fields.dump_record(body)
    assert record_writer(type(body))(body) == msgpack.packb(wire, use_bin_type=True)
    decoded = ref_decode_form(msgpack.packb(wire, use_bin_type=True))
    assert norm(record_loader(type(body)).fast(decoded)) == norm(
        load_record(type(body), decoded, "$.body"))


def test_writers_hand_unusual_values_to_the_reference() -> None:
    """Lists given as lists or generators: the bytes of dump_record, or None (then the caller
    packs dump_record itself)."""
    terms = (TermRef.of(latest("vrm.no-tracking")),)
    offer = TermsOffer(terms=terms, enc_key=bytes(32))
    as_list = dataclasses.replace(offer, terms=list(terms))  # type: ignore[arg-type]
    assert record_writer(TermsOffer)(as_list) == msgpack.packb(
        _fields.dump_record(as_list), use_bin_type=True)
    as_gen = dataclasses.replace(offer, terms=(t for t in terms))  # type: ignore[arg-type]
    assert record_writer(TermsOffer)(as_gen) is None


def _declared_kinds() -> list[_fields.Kind]:
    kinds: list[_fields.Kind] = []
    for cls in [*MESSAGE_TYPES.values(), Money]:
        for _, kind, _ in _fields.specs(cls):
            kinds += [kind, *([kind.item] if isinstance(kind, _fields.List) else [])]
    return kinds


def test_kind_fast_checks_accept_exactly_what_load_accepts() -> None:
    """Each kind's ``fast``: MISS where ``load`` refuses, else the very value ``load`` gives."""
    rng = random.Random(3)
    for kind in _declared_kinds():
        valid = [msgpack.packb(kind.dump(rvalue(rng, kind)), use_bin_type=True)
                 for _ in range(5)]
        for v in [*ODD, *(ref_decode_form(b) for b in valid)]:
            try:
                want = norm(kind.load(v, "$"))
            except ProtocolError:
                want = None
            got = kind.fast(v)
            assert (None if got is MISS else norm(got)) == want, (kind.describe(), v)


def test_record_loaders_agree_with_load_record_on_edited_maps() -> None:
    """§5.1-1..4, §3.3-3: missing, unknown, nil, reordered and retyped fields."""
    rng = random.Random(5)
    for s in SIGNED:
        cls, decoded = MESSAGE_TYPES[s.type], ref_decode_form(s.body_bytes)
        for _ in range(8):
            m = mutate_map(rng, decoded, [n for n, _, _ in _fields.specs(cls)])
            want = outcome(partial(load_record, cls, m, "$.body", 3), norm)
            assert outcome(partial(record_loader(cls).load, m, "$.body", 3), norm) == want


def test_caches_keep_only_small_recurring_values() -> None:
    """§10, §11: big or ever-new term references are read each time, never retained."""
    big = [{"hash": bytes(32), "id": f"junk.t{j}", "params": {
        f"p{k:02d}": "v" * 200 for k in range(8)}, "version": 1} for j in range(4)]
    terms_kind = _fields.specs(TermsOffer)[-1][1]
    assert isinstance(terms_kind, _fields.List)
    caches = (terms_kind._by_wire, terms_kind.item._by_wire)  # type: ignore[attr-defined]
    before = [len(c) for c in caches]
    assert terms_kind.fast(big) is not MISS
    assert [len(c) for c in caches] == before
    small = [{"hash": bytes(32), "id": "small.t", "version": 1}]
    first = terms_kind.fast(small)
    assert terms_kind.fast([dict(small[0])]) is first  # cached by encoding, a hit


def test_packing_from_many_threads_gives_each_its_own_bytes() -> None:
    """The packers are reused, never shared: every call gets exactly its value's encoding."""
    errors: list[str] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(3000):
            value = {"k": rng.randbytes(rng.randint(0, 300)), "n": [rng.random() < 0.5] * 3}
            if _codec.pack_sorted(value) != msgpack.packb(value, use_bin_type=True):
                errors.append(repr(value))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_header_and_signed_stay_immutable_records() -> None:
    """The public shapes: keyword construction, field names, immutability, erasure."""
    s = SIGNED[0]
    h = Header(**{f: getattr(s.header, f) for f in Header._fields})
    assert h == s.header
    assert Signed(**{f: getattr(s, f) for f in Signed._fields}) == s
    assert Header._fields == ("type", "id", "sender", "recipient", "created", "expires",
                              "thread", "prev", "body_hash", "version")
    assert Signed._fields == ("header", "body", "hdr_bytes", "body_bytes", "signature",
                              "envelope", "hash")
    with pytest.raises(AttributeError):
        s.body = None  # type: ignore[misc]
    with pytest.raises(AttributeError):
        s.header.created = 0  # type: ignore[misc]
    erased = s.without_body()
    assert erased.body_bytes is None
    assert erased.header == s.header
