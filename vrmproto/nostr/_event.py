"""Nostr events, sans-IO: the NIP-01 id and signature, NIP-13 proof of work, NIP-40 expiry (§15.1).

An :class:`Event` is built from its parts and signed here, or read from a relay's JSON with
:meth:`Event.from_json`, which checks its form, id and signature before anything reads it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vrmproto._errors import Problem, ProtocolError, VrmError
from vrmproto.nostr._crypto import NostrKey, verify_schnorr

__all__ = ["Event", "EventError", "MiningStoppedError", "leading_zero_bits", "mine",
           "sign_event"]

Tags = tuple[tuple[str, ...], ...]
#: How many nonces :func:`mine` tries before giving up (2^32: far beyond any difficulty ≤ 32).
_MAX_NONCES = 1 << 32
_HEX64, _HEX128 = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9a-f]{128}")
#: How many nonces :func:`mine` tries between two looks at its ``stop``.
_STOP_EVERY = 1 << 14
#: The longest number a tag may hold that is read as one (a time in seconds, a difficulty).
_MAX_DIGITS = 19


#: The largest ``created_at`` and ``kind`` an event may have (NIP-01: kinds are 0 to 65535).
_MAX_SECONDS, _MAX_KIND = (1 << 53) - 1, 65535


def _is_int(value: object, low: int, high: int) -> bool:
    """A JSON integer (not ``true``/``false``, which Python counts as ints) in ``[low, high]``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _tag_int(text: str) -> int | None:
    """A tag's number: ASCII digits only, and few enough of them. Anyone can sign an event, so
    a tag may hold ``²`` (``str.isdigit`` is true, ``int`` refuses it) or thousands of digits
    (``int`` refuses more than 4300): either is not a number, not an exception."""
    if 0 < len(text) <= _MAX_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None


class MiningStoppedError(VrmError):
    """:func:`mine` was told to stop before it found its nonce."""


class EventError(ProtocolError):
    """An event that is not well-formed, or whose id or signature does not verify (§15.1-2),
    or that breaks a rule of the intentcast binding (§15.3). Never answered: the event is
    dropped, and ``code`` says why in logs."""


def _serialize(pubkey: str, created_at: int, kind: int, tags: Tags, content: str) -> str:
    """NIP-01's serialization: the compact JSON array the id is the SHA-256 of."""
    return json.dumps([0, pubkey, created_at, kind, [list(t) for t in tags], content],
                      separators=(",", ":"), ensure_ascii=False)  # fmt: skip


def leading_zero_bits(digest: bytes) -> int:
    """NIP-13 difficulty: the number of leading zero bits of an event id."""
    n = int.from_bytes(digest, "big")
    return len(digest) * 8 - n.bit_length()


@dataclass(frozen=True, slots=True)
class Event:
    """A signed Nostr event (NIP-01). ``id``, ``pubkey`` and ``sig`` are lowercase hex."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str
    sig: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "pubkey": self.pubkey, "created_at": self.created_at,
                "kind": self.kind, "tags": [list(t) for t in self.tags],
                "content": self.content, "sig": self.sig}  # fmt: skip

    def tag(self, name: str) -> tuple[str, ...] | None:
        """The first tag named ``name``, or None."""
        return next((t for t in self.tags if t and t[0] == name), None)

    def tag_values(self, name: str) -> list[str]:
        """The first value of every tag named ``name``."""
        return [t[1] for t in self.tags if len(t) > 1 and t[0] == name]

    @property
    def expiration(self) -> int | None:
        """The NIP-40 ``expiration`` (seconds since the epoch), or None."""
        t = self.tag("expiration")
        return _tag_int(t[1]) if t and len(t) > 1 else None

    @property
    def difficulty(self) -> int:
        """The proof of work this event carries (§15.1-4): its id's leading zero bits, but no
        more than the target its ``nonce`` tag commits to (NIP-13)."""
        t = self.tag("nonce")
        target = _tag_int(t[2]) if t is not None and len(t) > 2 else None
        if target is None:
            return 0
        return min(leading_zero_bits(bytes.fromhex(self.id)), target)

    @classmethod
    def from_json(cls, obj: Any) -> Event:
        """Read and verify an event: its fields' types, its id, its BIP-340 signature (§15.1-2)."""
        try:
            pubkey, sig, eid = obj["pubkey"], obj["sig"], obj["id"]
            created_at, kind, content = obj["created_at"], obj["kind"], obj["content"]
            raw_tags = obj["tags"]
        except (KeyError, TypeError) as exc:
            raise EventError("not a Nostr event", clause="§15.1-2") from exc
        # JSON types exactly (NIP-01): tags an array of arrays of strings — a string, or an
        # array of strings, would otherwise be read as the tags it spells letter by letter,
        # one event with two spellings — and integers that are not true or false
        if not (_is_int(created_at, 0, _MAX_SECONDS) and _is_int(kind, 0, _MAX_KIND)
                and isinstance(content, str) and isinstance(raw_tags, list)
                and all(isinstance(t, list) and all(isinstance(v, str) for v in t)
                        for t in raw_tags)):  # fmt: skip
            raise EventError("an event field has the wrong type", clause="§15.1-2")
        tags = tuple(tuple(t) for t in raw_tags)
        if not (isinstance(eid, str) and _HEX64.fullmatch(eid) and isinstance(pubkey, str)
                and _HEX64.fullmatch(pubkey) and isinstance(sig, str)
                and _HEX128.fullmatch(sig)):  # fmt: skip
            # §15.1-1: lower-case hex only, so that one event has one id (§15.5-2)
            raise EventError("id, pubkey or sig is not lower-case hex of its size",
                             clause="§15.1-2")  # fmt: skip
        digest, pub, signature = bytes.fromhex(eid), bytes.fromhex(pubkey), bytes.fromhex(sig)
        try:
            serialized = _serialize(pubkey, created_at, kind, tags, content).encode()
        except UnicodeEncodeError as exc:  # a lone surrogate (JSON's "\\ud800"): no UTF-8 form
            raise EventError("an event field is not valid Unicode", clause="§15.1-2") from exc
        if hashlib.sha256(serialized).digest() != digest:
            raise EventError(
                "the event id is not the hash of its contents",
                code=Problem.BAD_SIGNATURE,
                clause="§15.1-2",
            )
        if not verify_schnorr(pub, digest, signature):
            raise EventError(
                "the event's signature does not verify",
                code=Problem.BAD_SIGNATURE,
                clause="§15.1-2",
            )
        return cls(eid, pubkey, created_at, kind, tags, content, sig)


def mine(pubkey: str, created_at: int, kind: int, tags: Tags, content: str, *,
         difficulty: int, stop: Callable[[], bool] | None = None) -> Tags:  # fmt: skip
    """NIP-13: ``tags`` plus a ``["nonce", n, difficulty]`` tag that gives the event id at least
    ``difficulty`` leading zero bits (§15.1-4). The nonce tag is last, so the serialization
    up to it is hashed once. Mining may take minutes (each bit doubles it): ``stop`` is asked
    every few thousand nonces, and :class:`MiningStoppedError` raised once it says so (a worker
    thread cannot be cancelled, only asked)."""
    if difficulty <= 0:
        return tags
    target = str(difficulty)
    head = _serialize(pubkey, created_at, kind, (*tags, ("nonce", "\x00", target)), content)
    before, after = head.split("\\u0000")
    base = hashlib.sha256(before.encode())
    tail = after.encode()
    for first in range(0, _MAX_NONCES, _STOP_EVERY):
        if stop is not None and stop():
            raise MiningStoppedError(f"stopped after {first} nonces")
        for n in range(first, first + _STOP_EVERY):
            h = base.copy()
            h.update(str(n).encode() + tail)
            if leading_zero_bits(h.digest()) >= difficulty:
                return (*tags, ("nonce", str(n), target))
    raise ValueError("no nonce found")  # pragma: no cover


def sign_event(key: NostrKey, created_at: int, kind: int, tags: Sequence[Sequence[str]],
               content: str, *, aux: bytes, pow_difficulty: int = 0,
               stop: Callable[[], bool] | None = None) -> Event:  # fmt: skip
    """Build and sign an event with ``key``; ``aux`` is 32 random bytes for BIP-340; ``stop``
    as :func:`mine` takes it."""
    pubkey = key.public.hex()
    fixed: Tags = tuple(tuple(t) for t in tags)
    fixed = mine(pubkey, created_at, kind, fixed, content, difficulty=pow_difficulty, stop=stop)
    digest = hashlib.sha256(_serialize(pubkey, created_at, kind, fixed, content).encode()).digest()
    return Event(digest.hex(), pubkey, created_at, kind, fixed, content,
                 key.sign(digest, aux).hex())  # fmt: skip
