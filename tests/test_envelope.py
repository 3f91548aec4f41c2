"""The signed envelope, example by example (spec §3.4, §4; vrmproto/_envelope.py).

The hypothesis properties over every message type — round trips, bit flips, hostile bytes —
are in ``test_properties.py``.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import msgpack
import pytest
from strategies import sample_bodies

from vrmproto import (
    DEFAULT_LIMITS,
    Body,
    DecodeError,
    Identity,
    Intentcast,
    IntentDecline,
    IntentOffer,
    Limits,
    Money,
    Problem,
    ProblemReport,
    ProtocolError,
    Receipt,
    SignatureError,
    Signed,
    TermRef,
    TermsAccept,
    TermsOffer,
    TermsReject,
    ValidationError,
    encode,
    latest,
    open_envelope,
    sha256,
    sign_message,
    verify,
)
from vrmproto._codec import pack_sorted
from vrmproto._keys import Context

SENDER = Identity(b"\x01" * 32)
RECIPIENT = Identity(b"\x02" * 32)
OTHER = Identity(b"\x03" * 32)
THREAD = bytes(range(16))
NOW = 1_767_225_600_000
LIFETIME = 3_600_000
SAMPLES = sample_bodies()


def sign(
    body: Body,
    *,
    now: int = NOW,
    msg_id: bytes = b"\x07" * 16,
    routing: bool = True,
    recipient: bytes | None = RECIPIENT.public_key,
    prev: bytes | None = None,
) -> Signed[Any]:
    return sign_message(
        body,
        identity=SENDER,
        recipient=recipient,
        thread=THREAD,
        prev=prev,
        now=now,
        msg_id=msg_id,
        lifetime_ms=LIFETIME,
        routing=routing,
    )


def open_(data: bytes, *, now: int = NOW, **kw: Any) -> Signed[Any]:
    kw.setdefault("recipients", (RECIPIENT.public_key,))
    return open_envelope(data, now=now, **kw)


def refused(data: bytes, code: Problem, *, now: int = NOW, **kw: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        open_(data, now=now, **kw)
    assert info.value.code is code, info.value
    return info.value


def header_map(body_bytes: bytes, **changes: Any) -> dict[str, Any]:
    """A valid header map for ``body_bytes`` (type terms.offer), with ``changes`` applied."""
    hdr: dict[str, Any] = {
        "body": sha256(body_bytes),
        "created": NOW,
        "expires": NOW + LIFETIME,
        "from": SENDER.public_key,
        "id": b"\x09" * 16,
        "prev": None,
        "thread": THREAD,
        "to": RECIPIENT.public_key,
        "type": TermsOffer.TYPE,
        "v": 1,
    }
    for key, value in changes.items():
        if value is _DROP:
            del hdr[key]
        else:
            hdr[key] = value
    return hdr


_DROP = object()


def forge(hdr: dict[str, Any], body_bytes: bytes | None, *, signer: Identity = SENDER,
          extra: dict[str, Any] | None = None) -> bytes:
    """Hand-build an envelope whose header is signed correctly, whatever it says."""
    hdr_bytes = msgpack.packb(dict(sorted(hdr.items())), use_bin_type=True)
    env: dict[str, Any] = {"hdr": hdr_bytes, "sig": signer.sign(Context.MESSAGE, hdr_bytes)}
    if body_bytes is not None:
        env["body"] = body_bytes
    env.update(extra or {})
    return bytes(msgpack.packb(dict(sorted(env.items())), use_bin_type=True))


OFFER_BYTES = encode(SAMPLES[TermsOffer.TYPE].to_wire())


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("mtype", sorted(SAMPLES))
@pytest.mark.parametrize("routing", [True, False], ids=["routed", "bare"])
def test_every_type_round_trips(mtype: str, routing: bool) -> None:
    """§3.4: open_envelope returns exactly what sign_message put in."""
    msg = sign(SAMPLES[mtype], routing=routing, prev=b"\x05" * 32)
    got = open_(msg.envelope)
    assert got == msg
    assert got.header == msg.header
    assert got.body == SAMPLES[mtype]
    assert got.type == mtype
    assert got.hash == sha256(got.hdr_bytes)
    assert got.header.body_hash == sha256(got.body_bytes or b"")
    assert (got.sender, got.recipient, got.thread, got.id) == (
        SENDER.public_key, RECIPIENT.public_key, THREAD, b"\x07" * 16)
    assert got.header.expires == NOW + LIFETIME
    assert got.header.prev == b"\x05" * 32
    assert not got.erased


def test_envelope_layout() -> None:
    """§3.4-1: a canonical map of body, hdr, sig, to, type; the header names the body hash."""
    msg = sign(SAMPLES[TermsOffer.TYPE])
    env = msgpack.unpackb(msg.envelope)
    assert list(env) == ["body", "hdr", "sig", "to", "type"]
    assert env["to"] == RECIPIENT.public_key
    assert env["type"] == "terms.offer"
    assert encode(env) == msg.envelope
    hdr = msgpack.unpackb(env["hdr"])
    assert list(hdr) == sorted(hdr)
    assert hdr["body"] == sha256(env["body"])
    assert msgpack.unpackb(sign(SAMPLES["receipt"], routing=False).envelope).keys() == {
        "body", "hdr", "sig"}


def test_signature_covers_exact_header_bytes() -> None:
    """§3.5-1: the signature is over context ‖ hdr, so it verifies with the raw bytes alone."""
    msg = sign(SAMPLES[Receipt.TYPE])
    verify(Context.MESSAGE, msg.hdr_bytes, msg.signature, SENDER.public_key)


def test_problem_may_have_no_recipient() -> None:
    """§4.2-6: only a problem may be addressed to nobody; any recipient list accepts it."""
    msg = sign(SAMPLES[ProblemReport.TYPE], recipient=None)
    assert open_(msg.envelope).recipient is None
    assert open_(msg.envelope, recipients=(OTHER.public_key,)).recipient is None
    with pytest.raises(ValidationError) as info:
        open_(forge(header_map(OFFER_BYTES, to=None), OFFER_BYTES))
    assert info.value.code is Problem.INVALID_FIELD
    assert info.value.path == "$.hdr.to"


# -- time window (§4.5-3, §4.5-4) ----------------------------------------------------------------


def test_expiry_boundary() -> None:
    msg = sign(SAMPLES[Receipt.TYPE])
    expires = msg.header.expires
    assert open_(msg.envelope, now=expires) == msg
    refused(msg.envelope, Problem.EXPIRED, now=expires + 1)
    # Re-verifying stored history ignores the window.
    assert open_(msg.envelope, now=expires + 10**9, check_time=False) == msg


def test_clock_skew_boundary() -> None:
    skew = DEFAULT_LIMITS.max_clock_skew_ms
    msg = sign(SAMPLES[Receipt.TYPE], now=NOW)
    assert open_(msg.envelope, now=NOW - skew) == msg  # created == now + skew: allowed
    refused(msg.envelope, Problem.CLOCK_SKEW, now=NOW - skew - 1)
    small = Limits(max_clock_skew_ms=10)
    assert open_(msg.envelope, now=NOW - 10, limits=small) == msg
    refused(msg.envelope, Problem.CLOCK_SKEW, now=NOW - 11, limits=small)


@pytest.mark.parametrize(
    ("created", "expires"),
    [(NOW, NOW), (NOW, NOW - 1), (NOW, NOW + DEFAULT_LIMITS.max_lifetime_ms + 1), (-1, NOW),
     (NOW, "later"), ("now", NOW + 1)],
)
def test_lifetime_rules(created: Any, expires: Any) -> None:
    """§4.2-10, §4.2-11: created ≥ 0, created < expires ≤ created + max_lifetime_ms."""
    data = forge(header_map(OFFER_BYTES, created=created, expires=expires), OFFER_BYTES)
    refused(data, Problem.INVALID_FIELD, check_time=False)


def test_longest_lifetime_is_allowed() -> None:
    hdr = header_map(OFFER_BYTES, expires=NOW + DEFAULT_LIMITS.max_lifetime_ms)
    assert open_(forge(hdr, OFFER_BYTES)).header.expires == NOW + DEFAULT_LIMITS.max_lifetime_ms


# -- addressing and routing copies (§3.4-4, §4.5-2) ---------------------------------------------


def test_wrong_recipient() -> None:
    msg = sign(SAMPLES[Receipt.TYPE])
    err = refused(msg.envelope, Problem.WRONG_RECIPIENT, recipients=(OTHER.public_key,))
    assert err.path == "$.hdr.to"
    assert open_(msg.envelope, recipients=(OTHER.public_key, RECIPIENT.public_key)) == msg
    assert open_(msg.envelope, recipients=None) == msg


def test_routing_copies_must_match_the_header() -> None:
    base = header_map(OFFER_BYTES)
    refused(forge(base, OFFER_BYTES, extra={"to": OTHER.public_key}), Problem.ENVELOPE_MISMATCH)
    refused(forge(base, OFFER_BYTES, extra={"to": None}), Problem.ENVELOPE_MISMATCH)
    refused(forge(base, OFFER_BYTES, extra={"type": "receipt"}), Problem.ENVELOPE_MISMATCH)
    refused(forge(base, OFFER_BYTES, extra={"type": "terms.offe"}), Problem.ENVELOPE_MISMATCH)
    refused(forge(base, OFFER_BYTES, extra={"to": 5}), Problem.MALFORMED)
    refused(forge(base, OFFER_BYTES, extra={"type": b"terms.offer"}), Problem.MALFORMED)
    assert open_(forge(base, OFFER_BYTES, extra={"type": "terms.offer"})).type == "terms.offer"


# -- envelope and header shape -------------------------------------------------------------------


def test_envelope_shape_errors() -> None:
    hdr = header_map(OFFER_BYTES)
    good = forge(hdr, OFFER_BYTES)
    env = msgpack.unpackb(good)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("unknown key", {**env, "zzz": 1}),
        ("no sig", {k: v for k, v in env.items() if k != "sig"}),
        ("no hdr", {k: v for k, v in env.items() if k != "hdr"}),
        ("no body", {k: v for k, v in env.items() if k != "body"}),
        ("short sig", {**env, "sig": env["sig"][:63]}),
        ("long sig", {**env, "sig": env["sig"] + b"\x00"}),
        ("str sig", {**env, "sig": "x" * 64}),
        ("str hdr", {**env, "hdr": "x"}),
        ("str body", {**env, "body": "x"}),
        ("nil body", {**env, "body": None}),
    ]
    for what, value in cases:
        err = refused(encode(value), Problem.MALFORMED)
        assert err.code is Problem.MALFORMED, what
    refused(encode([1, 2]), Problem.MALFORMED)
    refused(b"", Problem.MALFORMED)
    refused(good + b"\x00", Problem.MALFORMED)


def test_too_large_is_checked_first() -> None:
    """§10-1: larger than max_envelope_bytes is ``too_large`` before any decoding."""
    msg = sign(SAMPLES[Receipt.TYPE])
    size = len(msg.envelope)
    refused(msg.envelope, Problem.TOO_LARGE, limits=Limits(max_envelope_bytes=size - 1))
    assert open_(msg.envelope, limits=Limits(max_envelope_bytes=len(msg.envelope))) == msg
    refused(b"\xc1" * (DEFAULT_LIMITS.max_envelope_bytes + 1), Problem.TOO_LARGE)


@pytest.mark.parametrize(
    ("changes", "code", "path"),
    [
        ({"v": 2}, Problem.UNSUPPORTED_VERSION, "$.hdr.v"),
        ({"v": 0}, Problem.UNSUPPORTED_VERSION, "$.hdr.v"),
        ({"v": "1"}, Problem.INVALID_FIELD, "$.hdr.v"),
        ({"v": _DROP}, Problem.INVALID_FIELD, "$.hdr.v"),
        ({"type": "terms.haggle"}, Problem.UNKNOWN_TYPE, "$.hdr.type"),
        ({"type": 7}, Problem.INVALID_FIELD, "$.hdr.type"),
        ({"id": b"\x00" * 15}, Problem.INVALID_FIELD, "$.hdr.id"),
        ({"from": b"\x00" * 31}, Problem.INVALID_FIELD, "$.hdr.from"),
        ({"to": "someone"}, Problem.INVALID_FIELD, "$.hdr.to"),
        ({"thread": b"\x00" * 17}, Problem.INVALID_FIELD, "$.hdr.thread"),
        ({"prev": b"\x00" * 31}, Problem.INVALID_FIELD, "$.hdr.prev"),
        ({"body": b"\x00" * 31}, Problem.INVALID_FIELD, "$.hdr.body"),
        ({"extra": 1}, Problem.INVALID_FIELD, "$.hdr"),
        ({"prev": _DROP}, Problem.INVALID_FIELD, "$.hdr"),
    ],
)
def test_header_field_errors(changes: dict[str, Any], code: Problem, path: str) -> None:
    """§4.2: each header field has one type; a newer version is named as such."""
    err = refused(forge(header_map(OFFER_BYTES, **changes), OFFER_BYTES), code)
    assert err.path == path


def test_header_must_be_canonical() -> None:
    """§3.3: the header bytes themselves must be canonical msgpack (here: unsorted keys)."""
    hdr = header_map(OFFER_BYTES)
    hdr_bytes = msgpack.packb(dict(reversed(list(hdr.items()))), use_bin_type=True)
    data = pack_sorted({"body": OFFER_BYTES, "hdr": hdr_bytes,
                        "sig": SENDER.sign(Context.MESSAGE, hdr_bytes)})
    refused(data, Problem.MALFORMED)
    hdr_bytes = b"\xde\x00\x0a" + msgpack.packb(hdr, use_bin_type=True)[1:]  # map16 header
    data = pack_sorted({"body": OFFER_BYTES, "hdr": hdr_bytes,
                        "sig": SENDER.sign(Context.MESSAGE, hdr_bytes)})
    refused(data, Problem.MALFORMED)


def test_signature_and_body_hash() -> None:
    hdr = header_map(OFFER_BYTES)
    refused(forge(hdr, OFFER_BYTES, signer=OTHER), Problem.BAD_SIGNATURE)
    other_body = encode(SAMPLES[TermsOffer.TYPE].to_wire() | {"note": "changed"})
    refused(forge(hdr, other_body), Problem.BAD_SIGNATURE)
    small_order = bytes(32)
    refused(forge(header_map(OFFER_BYTES, **{"from": small_order}), OFFER_BYTES), Problem.BAD_KEY)


def test_body_errors() -> None:
    """§5.1: the body is checked against its type's declaration after the signature."""
    wire = SAMPLES[TermsOffer.TYPE].to_wire()
    cases = [
        ({k: v for k, v in wire.items() if k != "enc_key"}, Problem.INVALID_FIELD,
         "$.body.enc_key"),
        (wire | {"enc_key": b"\x00" * 31}, Problem.INVALID_FIELD, "$.body.enc_key"),
        (wire | {"note": None}, Problem.INVALID_FIELD, "$.body.note"),
        (wire | {"note": ""}, Problem.INVALID_FIELD, "$.body.note"),
        (wire | {"terms": []}, Problem.INVALID_FIELD, "$.body.terms"),
    ]
    for body, code, path in cases:
        raw = encode(body)
        err = refused(forge(header_map(raw), raw), code)
        assert err.path == path
    # Unknown body fields are allowed (§5.1-3) and kept in the signed bytes...
    raw = encode(wire | {"zz_future": [1, {"a": b"x"}]})
    got = open_(forge(header_map(raw), raw))
    assert got.body == SAMPLES[TermsOffer.TYPE]
    assert got.body_bytes == raw
    # ...but must still be canonical (§3.3).
    for bad in ({"zz": 1.5}, {"zz": 2**53}, {"zz": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}):
        raw = msgpack.packb(dict(sorted((wire | bad).items())), use_bin_type=True)
        refused(forge(header_map(raw), raw), Problem.MALFORMED)
    raw = msgpack.packb(dict(sorted(wire.items(), reverse=True)), use_bin_type=True)
    refused(forge(header_map(raw), raw), Problem.MALFORMED)


def test_terms_in_bodies_keep_the_safe_integer_range() -> None:
    """§3.3-4 applies inside every body: a term parameter beyond ±(2^53 − 1) is malformed.

    The header and the declared int fields enforce it; a term reference's parameters are
    checked by the vocabulary with the same range (§6.3-4).
    """
    term = latest("vrm.delete-after")
    ref = {"hash": term.text_hash, "id": term.id, "params": {"days": 2**60}, "version": 1}
    raw = msgpack.packb({"enc_key": bytes(32), "terms": [ref]}, use_bin_type=True)
    with pytest.raises(ProtocolError):
        open_(forge(header_map(raw), raw))


def test_nested_errors_name_the_offending_field() -> None:
    """§9.1: the path points at the field inside the term reference, said once."""
    term = latest("vrm.delete-after")
    # a value of a type no parameter may have (the shape of §6.3-4, checked on decoding; that
    # "days" must be an int is the roster's rule, checked by the relationship)
    ref = {"hash": term.text_hash, "id": term.id, "params": {"days": [10]}, "version": 1}
    raw = encode({"enc_key": bytes(32), "terms": [ref]})
    err = refused(forge(header_map(raw), raw), Problem.INVALID_FIELD)
    assert err.path == "$.body.terms[0].params.days"
    assert "invalid_field" not in err.detail


# -- erasure (§4.3, §8.4) ------------------------------------------------------------------------


def test_without_body_still_verifies() -> None:
    msg = sign(SAMPLES[TermsOffer.TYPE])
    erased = msg.without_body()
    assert erased.erased
    assert erased.body_bytes is None
    assert erased.hash == msg.hash
    assert erased.header == msg.header
    got = open_(erased.envelope, allow_erased=True)
    assert got.body is None
    assert got.erased
    assert got.hash == msg.hash
    assert got.header.body_hash == sha256(msg.body_bytes or b"")
    err = refused(erased.envelope, Problem.MALFORMED)
    assert err.path == "$.body"
    assert msgpack.unpackb(erased.envelope).keys() == {"hdr", "sig"}


def test_erased_form_cannot_be_altered() -> None:
    erased = sign(SAMPLES[TermsOffer.TYPE]).without_body()
    env = msgpack.unpackb(erased.envelope)
    hdr = bytearray(env["hdr"])
    hdr[-5] ^= 1
    data = pack_sorted({"hdr": bytes(hdr), "sig": env["sig"]})
    with pytest.raises(ProtocolError):
        open_(data, allow_erased=True)


# -- reply helpers (§5.2–§5.6) --------------------------------------------------------------------


def test_reply_helpers_build_the_right_bodies() -> None:
    terms = (TermRef.of(latest("vrm.no-tracking")), TermRef.of(latest("vrm.purpose-only")))
    offer = sign(TermsOffer(terms=terms, enc_key=SENDER.enc_public_key))
    assert offer.accept() == TermsAccept(offer=offer.hash, terms=terms)
    counter = (TermRef.of(latest("vrm.purpose-only")),)
    reject = offer.reject("we track", refused=("vrm.no-tracking",), counter=counter)
    assert reject == TermsReject(offer=offer.hash, reason="we track",
                                 refused=("vrm.no-tracking",), counter=counter)
    assert offer.reject("no").counter is None
    assert offer.receipt() == Receipt(ack=offer.hash)
    problem = offer.problem(Problem.UNKNOWN_TERM, "what is that", clause="§6.2-3")
    assert problem == ProblemReport(code="unknown_term", detail="what is that", clause="§6.2-3",
                                    ref=offer.hash)
    intent = sign(Intentcast(what="SUV", reply_by=NOW + 1, constraints=(), memberships=()))
    price = Money(amount=9_900, currency="USD")
    assert intent.offer("Jeep", price, valid_until=NOW + 5, conditions=("c",),
                        accepts_terms=("vrm.no-tracking",)) == IntentOffer(
        intent=intent.hash, description="Jeep", price=price, valid_until=NOW + 5,
        conditions=("c",), accepts_terms=("vrm.no-tracking",))
    assert intent.decline("none left") == IntentDecline(intent=intent.hash, reason="none left")
    assert str(price) == "99.00 USD"


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(9_900, "USD"), "99.00 USD"),
        (Money(5, "EUR"), "0.05 EUR"),
        (Money(5_000, "JPY"), "5000 JPY"),  # yen have no minor unit
        (Money(12_345, "BHD"), "12.345 BHD"),  # fils: three decimal places
        (Money(10_001, "CLF"), "1.0001 CLF"),
    ],
)
def test_money_is_written_in_its_currencys_minor_unit(money: Money, text: str) -> None:
    """§5.4.4-1: ``amount`` counts the currency's own minor unit, as ISO 4217 defines it."""
    assert str(money) == text
    amount, currency = text.split()
    assert Money.parse(amount, currency.lower()) == money


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("1.001", "USD"), ("300.5", "JPY"), ("1.2345", "BHD"), ("-1", "USD"), ("1e3", "USD"),
     ("", "USD"), (".5", "USD"), ("1.", "USD"), ("١٢", "USD")],
)  # fmt: skip
def test_money_parse_refuses_what_the_currency_cannot_hold(amount: str, currency: str) -> None:
    with pytest.raises(ValueError, match="decimal"):
        Money.parse(amount, currency)


def test_signed_body_is_what_is_hashed() -> None:
    """§4.4: the message's identity is SHA-256 of the header bytes, never of the signature."""
    a = sign(SAMPLES[Receipt.TYPE], msg_id=b"\x01" * 16)
    b = sign(SAMPLES[Receipt.TYPE], msg_id=b"\x02" * 16)
    assert a.hash != b.hash
    assert a.hash == sha256(a.hdr_bytes) != sha256(a.signature)


def test_signature_error_is_a_protocol_error() -> None:
    assert issubclass(SignatureError, ProtocolError)
    assert issubclass(DecodeError, ProtocolError)


# -- hostile input must not pin memory -------------------------------------------------------------

_RETENTION_SCRIPT = r'''
import gc, sys, tracemalloc
import msgpack
from vrmproto import Context, Identity, open_envelope, sha256
from vrmproto._codec import pack_sorted

sender, to = Identity(bytes(32)), Identity(b"\x01" * 32)
def envelope(i):
    # The largest term list a body may carry (32 references, 16 long parameters each), with
    # every reference distinct: well-formed, signed by a throw-away key, cited terms unknown.
    refs = [{"hash": bytes(32), "id": f"junk.term{j}", "params": {
        f"p{k:02d}" + "x" * 28: f"{i}-{j}-{k}-" + "v" * 240 for k in range(16)}, "version": 1}
        for j in range(32)]
    body = msgpack.packb({"enc_key": bytes(32), "terms": refs}, use_bin_type=True)
    hdr = pack_sorted({"body": sha256(body), "created": 1000, "expires": 2000,
                       "from": sender.public_key, "id": i.to_bytes(16, "big"), "prev": None,
                       "thread": bytes(16), "to": to.public_key, "type": "terms.offer", "v": 1})
    return pack_sorted({"body": body, "hdr": hdr, "sig": sender.sign(Context.MESSAGE, hdr)})

envelopes = [envelope(i) for i in range(int(sys.argv[1]))]
gc.collect()
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
for data in envelopes:
    open_envelope(data, now=1500)
gc.collect()
print(tracemalloc.get_traced_memory()[0] - before)
'''


def test_opening_hostile_envelopes_retains_no_memory() -> None:
    """§10, §11: what a peer sends is forgotten once handled (here: 100 envelopes of 147 KB)."""
    out = subprocess.run([sys.executable, "-c", _RETENTION_SCRIPT, "100"], capture_output=True,
                         text=True, check=True, timeout=120)
    retained = int(out.stdout)
    assert retained < 5_000_000, f"{retained / 1e6:.1f} MB retained"


# -- the processing order (§4.5-1): the first failing check decides ------------------------------


@pytest.mark.parametrize(
    ("what", "changes", "extra", "kw", "code", "path"),
    [
        ("version before key set", {"v": 2, "zz": 1}, {}, {}, Problem.UNSUPPORTED_VERSION,
         "$.hdr.v"),
        ("key set before type", {"type": "nope", "prev": _DROP}, {}, {}, Problem.INVALID_FIELD,
         "$.hdr"),
        ("type before fields", {"type": "nope", "id": b""}, {}, {}, Problem.UNKNOWN_TYPE,
         "$.hdr.type"),
        ("id before from", {"id": b"", "from": b""}, {}, {}, Problem.INVALID_FIELD, "$.hdr.id"),
        ("from before to", {"from": b"", "to": b""}, {}, {}, Problem.INVALID_FIELD,
         "$.hdr.from"),
        ("to before thread", {"to": b"", "thread": b""}, {}, {}, Problem.INVALID_FIELD,
         "$.hdr.to"),
        ("thread before prev", {"thread": b"", "prev": b""}, {}, {}, Problem.INVALID_FIELD,
         "$.hdr.thread"),
        ("prev before body", {"prev": b"", "body": b""}, {}, {}, Problem.INVALID_FIELD,
         "$.hdr.prev"),
        ("body before created", {"body": b"", "created": -1}, {}, {}, Problem.INVALID_FIELD,
         "$.hdr.body"),
        ("created before expires", {"created": -1, "expires": -5}, {}, {},
         Problem.INVALID_FIELD, "$.hdr.created"),
        ("header fields before routing copies", {"id": b""}, {"to": b"x"}, {},
         Problem.INVALID_FIELD, "$.hdr.id"),
        ("routing 'to' before routing 'type'", {}, {"to": b"x", "type": "receipt"}, {},
         Problem.ENVELOPE_MISMATCH, ""),
        ("routing copies before recipient", {}, {"type": "receipt"},
         {"recipients": (OTHER.public_key,)}, Problem.ENVELOPE_MISMATCH, ""),
        ("recipient before expiry", {}, {}, {"recipients": (OTHER.public_key,), "now": 10**15},
         Problem.WRONG_RECIPIENT, "$.hdr.to"),
        ("expiry before signature", {}, {"sig": bytes(64)}, {"now": 10**15}, Problem.EXPIRED,
         ""),
        ("clock skew before signature", {}, {"sig": bytes(64)}, {"now": 0}, Problem.CLOCK_SKEW,
         ""),
        ("signature before body hash", {"body": bytes(32)}, {"sig": bytes(64)}, {},
         Problem.BAD_SIGNATURE, ""),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_processing_order(what: str, changes: dict[str, Any], extra: dict[str, Any],
                          kw: dict[str, Any], code: Problem, path: str) -> None:
    """§4.5-1 steps 10 to 19: with several rules broken, the earliest step names the problem."""
    data = forge(header_map(OFFER_BYTES, **changes), OFFER_BYTES)
    if extra:
        env = msgpack.unpackb(data) | extra
        data = msgpack.packb(dict(sorted(env.items())), use_bin_type=True)
    err = refused(data, code, **kw)
    assert err.path == path, what


def test_processing_order_of_the_body() -> None:
    """§4.5-1 steps 18 to 21: signature, then body hash, then the body's form, then its fields."""
    bad_form = b"\xd9\x01a"  # str8 where fixstr is the form: not canonical
    refused(forge(header_map(bad_form), bad_form), Problem.MALFORMED)
    refused(forge(header_map(OFFER_BYTES), bad_form), Problem.BAD_SIGNATURE)  # hash first
    unsorted = msgpack.packb({"terms": [], "enc_key": b""}, use_bin_type=True)
    refused(forge(header_map(unsorted), unsorted), Problem.MALFORMED)  # key order before fields
    refused(forge(header_map(unsorted), unsorted, signer=OTHER), Problem.BAD_SIGNATURE)
