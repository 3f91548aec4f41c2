"""The HTTP binding's byte formats, sans-IO (spec §12 and §13).

What travels over HTTP besides single envelopes: the signed discovery document, the inbox
response (a receipt followed by the receiver's replies), and the signed history request and its
answer. The aiohttp server and client are thin layers over these functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from vrmproto import _codec
from vrmproto._errors import DecodeError, Problem, ValidationError
from vrmproto._history import Entry
from vrmproto._keys import (
    HASH_BYTES,
    ID_BYTES,
    KEY_BYTES,
    SIG_BYTES,
    Context,
    Identity,
    _b64,
    _unb64,
    check_enc_key,
    check_key,
    fingerprint,
    key_from_text,
    key_to_text,
    verify,
)
from vrmproto._limits import Limits
from vrmproto._quick import quick_new

CONTENT_TYPE = "application/vnd.vrmproto+msgpack"
WELL_KNOWN_PATH = "/.well-known/vrm"
DEFAULT_INBOX_PATH = "/vrm/inbox"
DEFAULT_HISTORY_PATH = "/vrm/history"
SIGNATURE_HEADER = "Vrm-Signature"
DISCOVERY_FORMAT = 1
MAX_DISCOVERY_BYTES = 64 * 1024
#: The protocol versions this implementation speaks (§4.2-1).
SPOKEN_VERSIONS = (1,)

# -- discovery document (§13.1) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiscoveryDocument:
    """A verified discovery document (§13.1). ``raw`` are the exact signed bytes."""

    name: str
    role: str
    key: bytes
    enc_key: bytes
    inbox: str
    history: str
    versions: tuple[int, ...]
    types: tuple[str, ...]
    limits: dict[str, int]
    accepts_terms: tuple[str, ...]
    issued: int
    expires: int
    raw: bytes
    data: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        """The key's fingerprint, as people compare it (§2.5)."""
        return fingerprint(self.key)


_new_document = quick_new(DiscoveryDocument)


def relocated(doc: DiscoveryDocument, inbox: str, history: str) -> DiscoveryDocument:
    """``doc`` with ``inbox`` and ``history`` given (made absolute, §13.1-7): what
    ``dataclasses.replace`` gives, without its generic walk over the fields, which cost an
    intentcast more than the rest of reading each vendor's document (#12)."""
    return _new_document(doc.name, doc.role, doc.key, doc.enc_key, inbox, history, doc.versions,
                         doc.types, doc.limits, doc.accepts_terms, doc.issued, doc.expires,
                         doc.raw, doc.data)  # fmt: skip


def discovery_url(base_url: str) -> str:
    """Where the discovery document of an endpoint URL is: its path followed by
    ``/.well-known/vrm`` (§13.3-2) — the origin's for a URL without a path, a relationship's
    own for an agent endpoint's URL (§12.11-4). ``ValueError`` for a URL that is not http(s)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + WELL_KNOWN_PATH,
                       "", ""))  # fmt: skip


def build_discovery(
    identity: Identity,
    *,
    name: str,
    role: str,
    now: int,
    limits: Limits,
    types: Sequence[str],
    accepts_terms: Sequence[str] = (),
    inbox: str = DEFAULT_INBOX_PATH,
    history: str = DEFAULT_HISTORY_PATH,
    lifetime_ms: int = 86_400_000,
    extra: dict[str, Any] | None = None,
) -> tuple[bytes, str]:
    """The document's bytes and its ``Vrm-Signature`` header value (§13.1-1, §13.1-2)."""
    doc: dict[str, Any] = {
        "vrm": DISCOVERY_FORMAT,
        "name": name,
        "role": role,
        "key": key_to_text(identity.public_key),
        "enc_key": key_to_text(identity.enc_public_key, "x25519"),
        "inbox": inbox,
        "history": history,
        "versions": [1],
        "types": list(types),
        "limits": limits.to_wire(),
        "accepts_terms": list(accepts_terms),
        "issued": now,
        "expires": now + lifetime_ms,
        **(extra or {}),
    }
    body = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return body, "ed25519=" + _b64(identity.sign(Context.DISCOVERY, body))


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects with a repeated key are refused: parsers disagree on which one wins, and a
    signed document must mean one thing (§13.1-1)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a key appears twice in the discovery document")
    return out


def _doc_error(detail: str, clause: str, code: Problem = Problem.INVALID_FIELD) -> ValidationError:
    return ValidationError(detail, code=code, clause=clause, path="$.discovery")


def verify_discovery(
    body: bytes,
    signature_header: str | None,
    *,
    now: int,
    expected_key: bytes | None = None,
    check_time: bool = True,
    role: str | None = None,
) -> DiscoveryDocument:
    """Parse and verify a discovery document (§13.1). ProtocolError on any failure.

    ``expected_key`` pins the key (for instance from a zeroconf TXT fingerprint or an earlier
    contact); a document signed by another key is refused with ``bad_key``. A document whose
    ``key`` is not valid or whose ``enc_key`` is not usable is refused with ``bad_key``
    (§13.1-9), one that speaks none of our versions with ``unsupported_version``, and, when
    ``role`` is given, one of another role with ``invalid_field`` (§13.1-10).
    """
    if len(body) > MAX_DISCOVERY_BYTES:
        raise _doc_error("discovery document too large", "§13.1-5", Problem.TOO_LARGE)
    if not signature_header or not signature_header.startswith("ed25519="):
        raise _doc_error("the document carries no Vrm-Signature", "§13.1-2", Problem.BAD_SIGNATURE)
    try:
        sig = _unb64(signature_header[len("ed25519=") :])
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (ValueError, UnicodeDecodeError):
        raise DecodeError("the document or its signature is not well-formed", clause="§13.1-1")\
            from None
    except RecursionError:  # the JSON parser's, on deep nesting (60 kB of "[" will do)
        raise DecodeError("the document is nested too deeply to read", clause="§13.1-1",
                          path="$.discovery") from None  # fmt: skip
    doc = _parse_discovery(body, data)
    if len(sig) != SIG_BYTES:
        raise _doc_error("the signature is not 64 bytes", "§13.1-2", Problem.BAD_SIGNATURE)
    if expected_key is not None and doc.key != expected_key:
        raise _doc_error("the document is signed by another key", "§13.1-4", Problem.BAD_KEY)
    # §13.1-9: a key that is not valid (a mixed-order point can pass the signature check) or an
    # encryption key nothing can be sealed to is refused before anything is sent to them.
    check_key(doc.key, path="$.discovery.key")
    check_enc_key(doc.enc_key, path="$.discovery.enc_key")
    verify(Context.DISCOVERY, body, sig, doc.key)
    _check_discovery(doc, now=now, check_time=check_time, role=role)
    return doc


def _parse_discovery(body: bytes, data: Any) -> DiscoveryDocument:
    """The fields of a decoded discovery document (§13.1-3), before its signature is checked."""
    if type(data) is not dict:
        raise _doc_error("the document is not a JSON object", "§13.1-1")
    if type(data.get("vrm")) is not int or data["vrm"] != DISCOVERY_FORMAT:  # §13.1-3
        raise _doc_error(f"the document's format vrm is {data.get('vrm')!r}, not 1", "§13.1-3")
    try:
        return DiscoveryDocument(
            name=str(data["name"]),
            role=str(data["role"]),
            key=key_from_text(data["key"]),
            enc_key=key_from_text(data["enc_key"], "x25519"),
            inbox=str(data["inbox"]),
            history=str(data.get("history", DEFAULT_HISTORY_PATH)),
            versions=tuple(int(v) for v in data["versions"]),
            types=tuple(str(t) for t in data["types"]),
            limits={str(k): int(v) for k, v in data["limits"].items()},
            accepts_terms=tuple(str(t) for t in data.get("accepts_terms", ())),
            issued=int(data["issued"]),
            expires=int(data["expires"]),
            raw=body,
            data=data,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _doc_error(f"the document lacks or misstates a field: {exc}", "§13.1-3") from None


def _check_discovery(doc: DiscoveryDocument, *, now: int, check_time: bool,
                     role: str | None) -> None:  # fmt: skip
    """The checks of a verified document's content: versions, role, validity (§13.1-6, -10)."""
    if not set(doc.versions) & set(SPOKEN_VERSIONS):
        raise _doc_error(
            f"the endpoint speaks protocol versions {list(doc.versions)}; we speak "
            f"{list(SPOKEN_VERSIONS)}", "§13.1-10", Problem.UNSUPPORTED_VERSION,
        )  # fmt: skip
    if role is not None and doc.role != role:
        raise _doc_error(f"the endpoint is a {doc.role!r} endpoint, not a {role!r} one",
                         "§13.1-10")  # fmt: skip
    if check_time and not doc.issued - 120_000 <= now <= doc.expires:
        raise _doc_error("the document is outside its validity window", "§13.1-6",
                         Problem.EXPIRED)


# -- inbox response (§12.3) -----------------------------------------------------------------------


def encode_replies(envelopes: Sequence[bytes]) -> bytes:
    """A 200 response body: an array of envelopes, the receipt first (§12.3-1)."""
    return _codec.pack_sorted(list(envelopes))  # an array of bins is canonical as packed


def decode_replies(data: bytes, *, limits: Limits) -> list[bytes]:
    """Split a 200 response body into envelopes; DecodeError if it is not an array of bins."""
    value = _codec.decode(data, max_depth=1)
    if type(value) is not list or not value or not all(type(v) is bytes for v in value):
        raise DecodeError("a response is a non-empty array of envelopes", clause="§12.3-1")
    if any(len(v) > limits.max_envelope_bytes for v in value):
        raise DecodeError("an envelope in the response is too large", code=Problem.TOO_LARGE)
    return list(value)


# -- history request and export (§12.5) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """A signed request for the other side's copy of a relationship's history (§12.5)."""

    thread: bytes
    sender: bytes
    recipient: bytes
    created: int
    nonce: bytes
    start: int


def sign_history_request(
    identity: Identity, *, thread: bytes, recipient: bytes, now: int, nonce: bytes, start: int = 0
) -> bytes:
    """The request body: ``{req: <canonical map bytes>, sig: <64>}`` (§12.5-1)."""
    req = _codec.encode({
        "created": now,
        "from": identity.public_key,
        "nonce": nonce,
        "start": start,
        "thread": thread,
        "to": recipient,
    })
    return _codec.encode({"req": req, "sig": identity.sign(Context.REQUEST, req)})


def open_history_request(
    data: bytes, *, now: int, recipient: bytes, limits: Limits
) -> HistoryRequest:
    """Verify a history request (§12.5-2): signature, recipient, freshness."""
    outer = _codec.decode(data, max_depth=1)
    if type(outer) is not dict or outer.keys() != {"req", "sig"}:
        raise DecodeError("a history request is a map of req and sig", clause="§12.5-1")
    req_bytes, sig = outer["req"], outer["sig"]
    if type(req_bytes) is not bytes or type(sig) is not bytes or len(sig) != SIG_BYTES:
        raise DecodeError("req is binary and sig 64 bytes", clause="§12.5-1")
    r = _codec.decode(req_bytes, max_depth=1)
    if type(r) is not dict or r.keys() != {"created", "from", "nonce", "start", "thread", "to"}:
        raise DecodeError("the request lacks fields", clause="§12.5-1")
    ok = (
        type(r["from"]) is bytes and len(r["from"]) == KEY_BYTES
        and type(r["to"]) is bytes and len(r["to"]) == KEY_BYTES
        and type(r["thread"]) is bytes and len(r["thread"]) == ID_BYTES
        and type(r["nonce"]) is bytes and len(r["nonce"]) == ID_BYTES
        and type(r["created"]) is int and type(r["start"]) is int and r["start"] >= 0
    )
    if not ok:
        raise ValidationError("a request field has the wrong type", clause="§12.5-1")
    if r["to"] != recipient:
        raise ValidationError("addressed to another key", code=Problem.WRONG_RECIPIENT,
                              clause="§12.5-2")
    if abs(now - r["created"]) > limits.max_clock_skew_ms:
        raise ValidationError("the request is stale or from the future",
                              code=Problem.EXPIRED, clause="§12.5-2")
    verify(Context.REQUEST, req_bytes, sig, r["from"])
    return HistoryRequest(r["thread"], r["from"], r["to"], r["created"], r["nonce"], r["start"])


def encode_history(entries: Sequence[Entry]) -> bytes:
    """The export: ``{entries: [[index, msg_hash, link, envelope], …]}`` (§12.5-3)."""
    return _codec.encode(
        {"entries": [[e.index, e.msg_hash, e.link, e.envelope] for e in entries]}
    )


def decode_history(data: bytes, *, owner_is_sender: bool = False) -> list[Entry]:
    """Parse a history export; the caller then runs :func:`verify_entries` on it (§12.5-3)."""
    value = _codec.decode(data, max_depth=3)
    rows = value.get("entries") if type(value) is dict else None
    if type(rows) is not list:
        raise DecodeError("a history export is a map with entries", clause="§12.5-3")
    out = []
    for row in rows:
        if (
            type(row) is not list or len(row) != 4 or type(row[0]) is not int
            or type(row[1]) is not bytes or len(row[1]) != HASH_BYTES
            or type(row[2]) is not bytes or len(row[2]) != HASH_BYTES
            or type(row[3]) is not bytes
        ):
            raise DecodeError("a history row is [index, hash, link, envelope]", clause="§12.5-3")
        out.append(Entry(row[0], row[1], row[2], row[3], owner_is_sender))
    return out
