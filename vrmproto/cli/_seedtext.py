"""The master seed as text a person can write down and type back: ``vrm1-xxxx-xxxx-…``.

The 32 seed bytes are followed by a 3-byte check value, SHA-256 of a domain-separation prefix and
the seed, and the 35 bytes are written in Crockford's base32 (digits and lower-case letters
without ``i l o u``) as 14 groups of 4 characters after the version prefix ``vrm1``::

    vrm1-7k2m-…-q0fz

Reading is forgiving where it cannot be wrong (case, spaces, dashes — the typographic ones a
word processor puts in too — a byte-order mark or zero-width space an editor or a web page
adds, ``o`` for ``0``, ``i``/``l`` for ``1``) and strict where it could: a mistyped character,
a swapped pair or a missing group changes the check value, so a wrong seed is refused instead
of silently deriving different keys (a 1 in 16 million chance of a typo passing).
"""

from __future__ import annotations

from vrmproto._keys import sha256

__all__ = ["SeedTextError", "seed_from_text", "seed_to_text"]

PREFIX = "vrm1"
SEED_BYTES = 32
CHECK_BYTES = 3
_CHECK_CONTEXT = b"vrmproto/v1/seed-backup\x00"
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)} | {"o": 0, "i": 1, "l": 1}
_CHARS = (SEED_BYTES + CHECK_BYTES) * 8 // 5  # 280 bits = 56 characters
_GROUP = 4
#: Written between groups, or around the text, by people and their tools, and never part of
#: the alphabet: dashes (hyphen, the Unicode hyphens, en and em dash, minus), the byte-order
#: mark a Windows editor starts a UTF-8 file with, zero-width spaces and joiners.
_SEPARATORS = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212\ufeff\u200b\u200c\u200d\u2060")


class SeedTextError(ValueError):
    """The text is not a well-formed ``vrm1-`` seed, or its check value does not match."""


def _check(seed: bytes) -> bytes:
    return sha256(_CHECK_CONTEXT + seed)[:CHECK_BYTES]


def seed_to_text(seed: bytes) -> str:
    """The seed as ``vrm1-`` and 14 groups of 4 base32 characters, check value included."""
    if len(seed) != SEED_BYTES:
        raise ValueError("a master seed is 32 bytes")
    number = int.from_bytes(seed + _check(seed), "big")
    chars = "".join(_ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(_CHARS)))
    return "-".join([PREFIX, *(chars[i : i + _GROUP] for i in range(0, _CHARS, _GROUP))])


def seed_from_text(text: str) -> bytes:
    """The 32 seed bytes written in ``text``; :class:`SeedTextError` saying what is wrong."""
    compact = "".join(c for c in text.strip().lower()
                      if not c.isspace() and c not in _SEPARATORS)  # fmt: skip
    if not compact.startswith(PREFIX):
        raise SeedTextError(f"a vrm seed starts with '{PREFIX}-'")
    body = compact[len(PREFIX) :]
    bad = sorted({c for c in body if c not in _DECODE})
    if bad:
        raise SeedTextError(f"{', '.join(repr(c) for c in bad)} cannot appear in a vrm seed")
    if len(body) != _CHARS:
        raise SeedTextError(
            f"the seed has {len(body)} characters after '{PREFIX}-'; it needs {_CHARS} "
            f"({_CHARS // _GROUP} groups of {_GROUP})"
        )
    number = 0
    for c in body:
        number = (number << 5) | _DECODE[c]
    raw = number.to_bytes(SEED_BYTES + CHECK_BYTES, "big")
    seed, check = raw[:SEED_BYTES], raw[SEED_BYTES:]
    if _check(seed) != check:
        raise SeedTextError("the seed's check value does not match: it was mistyped or damaged")
    return seed
