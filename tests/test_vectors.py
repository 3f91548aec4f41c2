"""The test vectors of spec/vectors/ hold for the reference implementation, and are up to date.

Every file validates against spec/vectors/schema.json; every valid message decodes to exactly
the content stated; every invalid envelope, state sequence and history is refused with exactly
the stated problem code; the key derivations and RFC 8032 controls match; and regenerating the
files with scripts/gen_vectors.py gives the same bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import nacl.bindings as sodium
import pytest
from nacl.signing import SigningKey, VerifyKey

from vrmproto import (
    MESSAGE_TYPES,
    Context,
    Entry,
    FieldsContent,
    Identity,
    KeyRotate,
    MasterSeed,
    ProtocolError,
    RecordsContent,
    Relationship,
    Role,
    compare,
    decode,
    fingerprint,
    key_from_text,
    key_to_text,
    open_envelope,
    open_sealed,
    seal_content,
    sha256,
    sign_message,
    verify,
    verify_entries,
)
from vrmproto._fields import dump_record
from vrmproto._history import link

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "spec" / "vectors"
GENERATOR = ROOT / "scripts" / "gen_vectors.py"
FILES = ("keys.json", "messages.json", "invalid.json", "state.json", "history.json",
         "rfc8032.json", "steps.json", "sealed.json", "terms.json", "http.json",
         "discovery.json", "nostr.json")
#: Files of message sequences, replayed alike (README "state.json").
SEQUENCES = ("state.json", "sealed.json", "terms.json")


@cache
def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return doc


@cache
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_vectors", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_vectors", module)
    spec.loader.exec_module(module)
    return module


def vectors(name: str) -> list[Any]:
    return [pytest.param(v, id=v["id"]) for v in load(name)["vectors"]]


def b(text: str) -> bytes:
    return bytes.fromhex(text)


def jsonable(value: Any) -> Any:
    """Decoded msgpack as the vectors write it: bytes as lowercase hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def expected(v: Mapping[str, Any]) -> tuple[str | None, str]:
    """What the reference implementation answers: the vector's problem, or the one under review.

    A vector flagged UnderReview states the proposed code and carries the implementation's
    current answer in ``reference_result`` for the lead to decide.
    """
    review = v.get("reference_result")
    if review is not None:
        return review["problem"], review["clause"]
    return v["problem"], v["clause"]


# -- the files ---------------------------------------------------------------------------------


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(load("schema.json"))


@pytest.mark.parametrize("name", FILES)
def test_file_validates_against_schema(name: str) -> None:
    jsonschema.Draft202012Validator(load("schema.json")).validate(load(name))
    assert load(name)["kind"] == name.removesuffix(".json")


def test_no_stray_files_and_readme_names_every_file() -> None:
    on_disk = {p.name for p in VECTORS.iterdir()}
    assert on_disk == {*FILES, "schema.json", "README.md"}
    readme = (VECTORS / "README.md").read_text(encoding="utf-8")
    for name in (*FILES, "schema.json"):
        assert f"`{name}`" in readme, name


def test_schema_refuses_a_broken_vector() -> None:
    doc = json.loads(json.dumps(load("invalid.json")))
    doc["vectors"][1]["problem"] = None  # an invalid vector without its code
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(load("schema.json")).validate(doc)


def test_regenerating_gives_identical_files() -> None:
    built = generator().build()
    assert set(built) == {*FILES, "schema.json"}
    for name, text in built.items():
        assert (VECTORS / name).read_text(encoding="utf-8") == text, name


def test_under_review_vectors_are_flagged() -> None:
    for name in FILES:
        for v in load(name)["vectors"]:
            assert ("reference_result" in v) == ("UnderReview" in v["flags"]), v["id"]


# -- keys.json -----------------------------------------------------------------------------------


def _check_identity(ident: Identity, v: Mapping[str, Any]) -> None:
    assert ident.seed.hex() == v["seed"]
    assert ident.public_key.hex() == v["public_key"]
    assert ident.enc_public_key.hex() == v["enc_public_key"]
    assert key_to_text(ident.public_key) == v["public_key_text"]
    assert key_from_text(v["public_key_text"]) == ident.public_key
    assert key_to_text(ident.enc_public_key, "x25519") == v["enc_public_key_text"]
    assert key_from_text(v["enc_public_key_text"], "x25519") == ident.enc_public_key
    assert fingerprint(ident.public_key) == v["fingerprint"]


@pytest.mark.parametrize("v", vectors("keys.json"))
def test_keys(v: dict[str, Any]) -> None:
    kind = v["kind"]
    if kind == "identity":
        ident = Identity(b(v["seed"]))
        _check_identity(ident, v)
        pk, _ = sodium.crypto_sign_seed_keypair(b(v["sign_secret"]))
        assert pk.hex() == v["public_key"]
        assert sodium.crypto_scalarmult_base(b(v["enc_secret"])).hex() == v["enc_public_key"]
    elif kind == "pairwise":
        master = MasterSeed(b(v["master_seed"]))
        _check_identity(master.pairwise(b(v["vendor_key"]), v["generation"]), v)
    elif kind == "intent":
        _check_identity(MasterSeed(b(v["master_seed"])).for_intent(b(v["intent_id"])), v)
    else:
        assert kind == "signature"
        ident = Identity(b(v["seed"]))
        assert ident.public_key.hex() == v["public_key"]
        context, data, sig = b(v["context"]), b(v["data"]), b(v["signature"])
        assert ident.sign(context, data) == sig
        verify(context, data, sig, ident.public_key)
        for other in (b"", Context.MESSAGE if context != Context.MESSAGE else Context.REQUEST):
            with pytest.raises(ProtocolError) as info:
                verify(other, data, sig, ident.public_key)
            assert info.value.code.value == "bad_signature"


# -- messages.json -------------------------------------------------------------------------------


def test_every_message_type_has_a_valid_vector() -> None:
    types = {v["type"] for v in load("messages.json")["vectors"] if v["result"] == "valid"}
    assert types == set(MESSAGE_TYPES)


@pytest.mark.parametrize("v", vectors("messages.json"))
def test_message(v: dict[str, Any]) -> None:
    envelope = b(v["envelope"])
    recipient = b(v["recipient"]) if v["recipient"] is not None else None
    msg = open_envelope(envelope, now=v["now"], recipients=[recipient] if recipient else [])
    assert msg.type == v["type"]
    assert msg.hdr_bytes.hex() == v["header"]
    assert msg.body_bytes is not None
    assert msg.body_bytes.hex() == v["body"]
    assert msg.signature.hex() == v["signature"]
    assert msg.hash.hex() == v["hash"] == sha256(msg.hdr_bytes).hex()
    assert msg.sender.hex() == v["sender"]
    # The exact decoded content, both as generic msgpack and through the typed body class.
    assert jsonable(decode(msg.hdr_bytes)) == v["content"]["header"]
    assert jsonable(decode(msg.body_bytes)) == v["content"]["body"]
    assert jsonable(msg.body.to_wire()) == v["content"]["body"]
    # Signing the same content with the signer's seed gives the same bytes (§3.5-1).
    signer = Identity(b(v["signer_seed"]))
    assert signer.public_key == msg.sender
    h = msg.header
    again = sign_message(msg.body, identity=signer, recipient=h.recipient, thread=h.thread,
                         prev=h.prev, now=h.created, msg_id=h.id,
                         lifetime_ms=h.expires - h.created)
    assert again.envelope == envelope


def _sealed_vectors() -> list[Any]:
    return [p for p in vectors("messages.json") if "sealed" in p.values[0]]


@pytest.mark.parametrize("v", _sealed_vectors())
def test_sealed_content(v: dict[str, Any]) -> None:
    sealed = v["sealed"]
    msg = open_envelope(b(v["envelope"]), now=v["now"], recipients=[b(v["recipient"])])
    recipient = Identity(b(sealed["recipient_seed"]))
    assert recipient.public_key == msg.recipient
    assert recipient.enc_public_key.hex() == sealed["recipient_enc_public_key"]
    # Our unseal opens the box built with a fixed ephemeral key ...
    assert recipient.unseal(msg.body.sealed).hex() == sealed["plaintext"]
    content_type = RecordsContent if v["type"] == "data.return" else FieldsContent
    content = open_sealed(msg, identity=recipient, content_type=content_type)
    assert jsonable(dump_record(content)) == sealed["decrypted"]["content"]
    assert jsonable(decode(b(sealed["payload"]))) == sealed["decrypted"]
    # ... that box is crypto_box_seal's construction with that key ...
    gen = generator()
    eph_seed = b(sealed["ephemeral_seed"])
    assert gen.seal_deterministic(b(sealed["plaintext"]), recipient.enc_public_key,
                                  eph_seed) == msg.body.sealed
    assert msg.body.sealed[:32].hex() == sealed["ephemeral_public_key"]
    # crypto_box_seed_keypair as the README defines it: esk = SHA-512(seed)[:32], epk = X25519
    esk = hashlib.sha512(eph_seed).digest()[:32]
    assert sodium.crypto_scalarmult_base(esk).hex() == sealed["ephemeral_public_key"]
    # ... and the library's own seal_content (random ephemeral key) seals the same plaintext.
    sender = Identity(b(v["signer_seed"]))
    box = seal_content(content, identity=sender, recipient=recipient.public_key,
                       recipient_enc_key=recipient.enc_public_key, msg_id=msg.id)
    assert recipient.unseal(box).hex() == sealed["plaintext"]


# -- invalid.json --------------------------------------------------------------------------------


@pytest.mark.parametrize("v", vectors("invalid.json"))
def test_invalid(v: dict[str, Any]) -> None:
    envelope = b(v["envelope"])
    recipients = [b(r) for r in v["recipients"]]
    if v["result"] == "valid":
        open_envelope(envelope, now=v["now"], recipients=recipients)
        return
    with pytest.raises(ProtocolError) as info:
        open_envelope(envelope, now=v["now"], recipients=recipients)
    assert (info.value.code.value, info.value.clause) == expected(v)


def test_invalid_covers_the_required_problems() -> None:
    codes = {v["problem"] for v in load("invalid.json")["vectors"]}
    assert codes >= {"bad_signature", "bad_key", "malformed", "too_large", "expired",
                     "clock_skew", "wrong_recipient", "unsupported_version", "unknown_type",
                     "invalid_field", "envelope_mismatch"}
    limits = load("invalid.json")["limits"]
    assert limits["max_envelope_bytes"] == 256 * 1024


_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P


def _point(encoded: bytes) -> tuple[int, int]:
    """Decode an edwards25519 point (RFC 8032 §5.1.3), reducing a non-canonical y."""
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    y %= _P
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    assert (x * x - x2) % _P == 0, "not on the curve"
    if x & 1 != encoded[31] >> 7:
        x = -x % _P
    return x, y


def _add(p: tuple[int, int], q: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = p, q
    t = _D * x1 * x2 * y1 * y2 % _P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P,
            (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P)


def test_bad_key_vectors_use_small_order_points() -> None:
    """Each bad_key sender is a point P with 8·P = identity, which libsodium refuses."""
    keyed = [v for v in load("invalid.json")["vectors"] if v["problem"] == "bad_key"]
    assert len(keyed) >= 4
    for v in keyed:
        header = decode(decode(b(v["envelope"]))["hdr"])
        key = header["from"]
        assert not sodium.crypto_core_ed25519_is_valid_point(key)
        p = _point(key)
        for _ in range(3):
            p = _add(p, p)
        assert p == (0, 1), v["id"]


def test_s_plus_l_vector_is_the_base_signature_malleated() -> None:
    by_id = {v["id"]: v for v in load("invalid.json")["vectors"]}
    base = decode(b(by_id["base"]["envelope"]))["sig"]
    malleated = decode(b(by_id["sig-s-plus-l"]["envelope"]))["sig"]
    order = 2**252 + 27742317777372353535851937790883648493
    assert malleated[:32] == base[:32]
    assert int.from_bytes(malleated[32:], "little") == int.from_bytes(base[32:], "little") + order


# -- state.json ----------------------------------------------------------------------------------


@pytest.mark.parametrize("v", [p for name in SEQUENCES for p in vectors(name)])
def test_state_sequence(v: dict[str, Any]) -> None:
    vendor = Identity(b(v["vendor_seed"]))
    customers = [Identity(b(s)) for s in v["customer_seeds"]]
    by_key = {c.public_key: c for c in customers}
    thread = b(v["thread"])
    sides = {
        "customer": Relationship(role=Role.CUSTOMER, identity=customers[0], thread=thread,
                                 peer_key=vendor.public_key,
                                 peer_enc_key=vendor.enc_public_key),
        "vendor": Relationship(role=Role.VENDOR, identity=vendor, thread=thread,
                               peer_key=customers[0].public_key),
    }
    other = {"customer": "vendor", "vendor": "customer"}
    messages = v["messages"]
    invalid = v["result"] == "invalid"
    for m in messages[:-1] if invalid else messages:
        envelope = b(m["envelope"])
        received = sides[other[m["from"]]].receive(envelope, now=m["now"])
        body, h = received.message.body, received.message.header
        # The sender records the same message as sent: its own Relationship signs it again.
        sender = sides[m["from"]]
        if isinstance(body, KeyRotate):
            sent = sender.rotate(by_key[body.new_key], now=h.created, msg_id=h.id,
                                 reason=body.reason)
        else:
            sent = sender.send(body, now=h.created, msg_id=h.id,
                               lifetime_ms=h.expires - h.created)
        assert sent.message.envelope == envelope
    if not invalid:
        assert v["receiver"] is None
        assert sides["customer"].state == sides["vendor"].state
        assert sides["customer"].history.head == sides["vendor"].history.head
        return
    final = messages[-1]
    assert other[final["from"]] == v["receiver"]
    receiver = sides[v["receiver"]]
    before, length = receiver.to_state(), len(receiver.history)
    with pytest.raises(ProtocolError) as info:
        receiver.receive(b(final["envelope"]), now=final["now"])
    assert (info.value.code.value, info.value.clause) == expected(v)
    assert receiver.to_state() == before
    assert len(receiver.history) == length


# -- rfc8032.json --------------------------------------------------------------------------------


@pytest.mark.parametrize("v", vectors("rfc8032.json"))
def test_rfc8032(v: dict[str, Any]) -> None:
    secret, public, message, sig = (b(v[k]) for k in
                                    ("secret_key", "public_key", "message", "signature"))
    signing = SigningKey(secret)
    assert bytes(signing.verify_key) == public
    assert signing.sign(message).signature == sig
    assert VerifyKey(public).verify(message, sig) == message
    verify(b"", message, sig, public)  # the strict rule accepts them too (no context)


# -- history.json --------------------------------------------------------------------------------


def _entries(v: Mapping[str, Any]) -> list[Entry]:
    return [Entry(e["index"], b(e["msg_hash"]), b(e["link"]), b(e["envelope"]), e["outgoing"])
            for e in v["entries"]]


@pytest.mark.parametrize("v", vectors("history.json"))
def test_history(v: dict[str, Any]) -> None:
    entries = _entries(v)
    prev = bytes(32)
    for e in entries:
        assert link(prev, e.msg_hash) == e.link
        prev = e.link
    assert entries[-1].link.hex() == v["head"]
    if v["result"] == "valid":
        verify_entries(entries)
    else:
        with pytest.raises(ProtocolError) as info:
            verify_entries(entries)
        assert info.value.code.value == v["problem"]
    if v["compare_with"] is None:
        return
    theirs = _entries(next(o for o in load("history.json")["vectors"]
                           if o["id"] == v["compare_with"]))
    divergence = compare(entries, theirs)
    if v["divergence"] is None:
        assert divergence is None
        return
    assert divergence is not None
    assert divergence.index == v["divergence"]["index"]
    assert divergence.kind == v["divergence"]["kind"]
    ours = divergence.ours.link.hex() if divergence.ours else None
    other = divergence.theirs.link.hex() if divergence.theirs else None
    assert (ours, other) == (v["divergence"]["ours"], v["divergence"]["theirs"])


# -- sealed.json, terms.json -------------------------------------------------------------------


def test_sealed_vectors_follow_the_order_of_5_5_9() -> None:
    """Every step of §5.5-9 decides at least one vector, and the message's own checks come
    first (a vector with a bad seal is refused for its agreement or its expiry)."""
    answers = {(v["problem"], v["clause"]) for v in load("sealed.json")["vectors"]}
    for step in (("cannot_decrypt", "§5.5-4"), ("malformed", "§5.5-3"),
                 ("bad_signature", "§3.5-3"), ("wrong_recipient", "§5.5-5"),
                 ("envelope_mismatch", "§5.5-6"), ("invalid_field", "§5.1-2"),
                 ("no_agreement", "§5.3-1"), ("invalid_field", "§5.3.1-3")):
        assert step in answers, step


def test_terms_vectors_cover_6_2_and_6_3() -> None:
    clauses = {v["clause"] for v in load("terms.json")["vectors"]}
    assert clauses >= {"§6.2-3", "§6.2-4", "§6.2-5", "§6.2-6", "§6.3-3", "§6.3-4"}


# -- http.json -----------------------------------------------------------------------------------


def _problem_of(envelope: bytes, now: int) -> Any:
    from vrmproto import ProblemReport  # noqa: PLC0415

    msg = open_envelope(envelope, now=now)
    assert isinstance(msg.body, ProblemReport)
    return msg


@pytest.mark.parametrize("v", vectors("http.json"))
def test_http_answer(v: dict[str, Any]) -> None:
    """Each answer read with the sans-IO binding: the 200 array, the 204, the problem and the
    history export, as §12.3 to §12.5 define them."""
    from vrmproto._binding import (  # noqa: PLC0415
        CONTENT_TYPE,
        decode_history,
        decode_replies,
        encode_history,
        encode_replies,
        open_history_request,
    )
    from vrmproto._limits import DEFAULT_LIMITS  # noqa: PLC0415

    response, status, now = b(v["response"]), v["status"], v["now"]
    vendor = Identity(b(v["vendor_seed"]))
    if status == 204 or not response:
        assert response == b""
        assert v["headers"] == {}
        return
    assert v["headers"]["Content-Type"] == CONTENT_TYPE
    if status >= 400:
        problem = _problem_of(response, now)
        assert problem.sender == vendor.public_key
        assert problem.body.code == v["problem"]
        assert MESSAGE_TYPES["problem"] is type(problem.body)
        return
    if v["route"] == "history":
        req = open_history_request(b(v["request"]), now=now, recipient=vendor.public_key,
                                   limits=DEFAULT_LIMITS)
        assert req.start == 0
        entries = decode_history(response)
        assert [[e.index, e.msg_hash.hex(), e.link.hex(), e.envelope.hex()]
                for e in entries] == v["entries"]
        assert encode_history(entries) == response
        verify_entries(entries)
        return
    envelopes = decode_replies(response, limits=DEFAULT_LIMITS)
    assert [e.hex() for e in envelopes] == v["envelopes"]
    assert encode_replies(envelopes) == response
    request = open_envelope(b(v["request"]), now=now)
    receipt = open_envelope(envelopes[0], now=now, recipients=[request.sender])
    assert receipt.type == "receipt"
    assert receipt.body.ack == request.hash


def test_http_session_replays_against_the_reference_vendor() -> None:
    """A fresh reference vendor, given the file's requests in order at the file's times and
    reply ids, answers every one with exactly the recorded status, headers and bytes."""
    session = generator().HttpSession()
    for v in load("http.json")["vectors"]:
        session.now = v["now"]
        endpoint = session.endpoint
        handle = endpoint.handle_inbox if v["route"] == "inbox" else endpoint.handle_history
        answer = asyncio.run(handle(b(v["request"])))
        assert (answer.status, dict(answer.headers), answer.body.hex()) == (
            v["status"], v["headers"], v["response"]), v["id"]


def test_http_vectors_cover_the_binding() -> None:
    vs = load("http.json")["vectors"]
    statuses = {v["status"] for v in vs}
    assert statuses >= {200, 204, 400, 401, 403, 404, 409, 421}
    assert {v["route"] for v in vs} == {"inbox", "history"}
    by_id = {v["id"]: v for v in vs}
    assert by_id["inbox-replay"]["response"] == by_id["inbox-offer-accepted"]["response"]


# -- discovery.json ------------------------------------------------------------------------------


@pytest.mark.parametrize("v", vectors("discovery.json"))
def test_discovery_document(v: dict[str, Any]) -> None:
    from vrmproto._binding import verify_discovery  # noqa: PLC0415

    expected_key = b(v["expected_key"]) if v["expected_key"] else None

    def read() -> Any:
        return verify_discovery(b(v["document"]), v["signature_header"], now=v["now"],
                                expected_key=expected_key, role=v["role"])

    if v["result"] == "valid":
        doc = read()
        assert doc.key == Identity(bytes(32)).public_key
        return
    with pytest.raises(ProtocolError) as info:
        read()
    assert (info.value.code.value, info.value.clause) == expected(v)


def test_discovery_refusals_cover_13_1() -> None:
    flags = {f for v in load("discovery.json")["vectors"] for f in v["flags"]}
    assert flags >= {"Valid", "Signature", "Json", "Repeated", "Field", "Format", "Key",
                     "Time", "Size"}


# -- spec/message-bodies.json --------------------------------------------------------------------


def _bodies() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ROOT / "spec" / "message-bodies.json").read_text("utf-8"))
    return doc


def _fits(value: Any, field: Mapping[str, Any]) -> bool:
    """A decoded value (hex for bin, as the vectors write it) within a field of the JSON table."""
    kind = field["type"]
    if kind == "bin":
        n = len(value) // 2
        return (field["size"] in (None, n)) and (field["max_size"] is None
                                                 or n <= field["max_size"])
    if kind == "str":
        return isinstance(value, str) and (not field.get("values") or value in field["values"])
    if kind == "int":
        return type(value) is int and field["min"] <= value <= field["max"]
    if kind == "array":
        return (field["min_items"] <= len(value) <= field["max_items"]
                and all(_fits(item, field["items"]) for item in value))
    return isinstance(value, dict)


def test_message_bodies_json_is_current_and_describes_every_type() -> None:
    gen_spec = importlib.util.spec_from_file_location("gen_spec", ROOT / "scripts" /
                                                      "gen_spec.py")
    assert gen_spec is not None
    assert gen_spec.loader is not None
    module = importlib.util.module_from_spec(gen_spec)
    gen_spec.loader.exec_module(module)
    assert module.json_problems() == [], "run python scripts/gen_spec.py"
    assert set(_bodies()["types"]) == set(MESSAGE_TYPES)


def test_a_stale_message_bodies_json_is_reported(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    gen_spec = importlib.util.spec_from_file_location("gen_spec", ROOT / "scripts" /
                                                      "gen_spec.py")
    assert gen_spec is not None
    assert gen_spec.loader is not None
    module = importlib.util.module_from_spec(gen_spec)
    gen_spec.loader.exec_module(module)
    stale = tmp_path / "message-bodies.json"
    stale.write_text(module.bodies_json().replace('"required": true', '"required": false', 1),
                     encoding="utf-8")
    monkeypatch.setattr(module, "BODIES_JSON", stale)
    (diff,) = module.json_problems()
    assert '-     "required": false' in diff
    assert module.write_json() == [stale]
    assert module.json_problems() == []


@pytest.mark.parametrize("v", [p for p in vectors("messages.json")
                               if p.values[0]["result"] == "valid"])
def test_every_valid_body_fits_message_bodies_json(v: dict[str, Any]) -> None:
    fields = {f["name"]: f for f in _bodies()["types"][v["type"]]["fields"]}
    body = v["content"]["body"]
    assert set(body) <= set(fields)
    assert {n for n, f in fields.items() if f["required"]} <= set(body)
    for name, value in body.items():
        assert value is not None
        assert _fits(value, fields[name]), (name, value)
