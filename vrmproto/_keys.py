"""Keys, identities and signatures (spec §2 and §3.5).

An :class:`Identity` holds an Ed25519 signing key and an X25519 encryption key, both derived from
one 32-byte seed (§2.2). A customer keeps one :class:`MasterSeed` and derives a distinct
identity per vendor (pairwise, §2.3) and per intentcast (§2.4), so vendors cannot correlate
them. Signatures are always over ``context ‖ bytes`` (§3.5) and verified with libsodium's strict
rule: non-canonical S, non-canonical or small-order keys and R are refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

import nacl.bindings as _sodium
import nacl.exceptions
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _lib
from nacl.public import PrivateKey, PublicKey, SealedBox

from vrmproto._errors import Problem, SignatureError, ValidationError

KEY_BYTES = 32
SIG_BYTES = 64
HASH_BYTES = 32
ID_BYTES = 16
_NULL = _ffi.NULL
_SEAL_BYTES: int = _sodium.crypto_box_SEALBYTES


class Context:
    """Domain-separation prefixes, one per purpose (spec §3.5 table 2)."""

    MESSAGE = b"vrmproto/v1/message\x00"
    DISCOVERY = b"vrmproto/v1/discovery\x00"
    KEY_ROTATION = b"vrmproto/v1/key-rotation\x00"
    SEALED = b"vrmproto/v1/sealed\x00"
    REQUEST = b"vrmproto/v1/request\x00"


_DERIVE_IDENTITY_SIGN = b"vrmproto/v1/identity/sign\x00"
_DERIVE_IDENTITY_ENC = b"vrmproto/v1/identity/enc\x00"
_DERIVE_PAIRWISE = b"vrmproto/v1/pairwise\x00"
_DERIVE_INTENT = b"vrmproto/v1/intent\x00"


def sha256(data: bytes) -> bytes:
    """SHA-256, the protocol's only hash (§3.6)."""
    return hashlib.sha256(data).digest()


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


# -- text forms (§2.5) -----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or "=" in text or any(c.isspace() for c in text):
        raise ValueError("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not unpadded base64url") from exc


def key_to_text(key: bytes, kind: str = "ed25519") -> str:
    """``ed25519:<43 chars of unpadded base64url>`` (§2.5-1); ``x25519:`` for encryption keys."""
    return f"{kind}:{_b64(key)}"


def key_from_text(text: str, kind: str = "ed25519") -> bytes:
    """Parse :func:`key_to_text` output; raises ``ValueError`` on any other form (§2.5-2)."""
    prefix = f"{kind}:"
    if not text.startswith(prefix):
        raise ValueError(f"a {kind} key is written '{prefix}' followed by base64url")
    raw = _unb64(text[len(prefix) :])
    if len(raw) != KEY_BYTES or _b64(raw) != text[len(prefix) :]:
        raise ValueError(f"a {kind} key is 32 bytes in canonical base64url")
    return raw


_B32 = "abcdefghijklmnopqrstuvwxyz234567"
#: Each 10-bit value as its two base32 characters (RFC 4648 alphabet, lower case): the key of
#: every new relationship needs a fingerprint, and ``base64.b32encode`` is Python code that
#: cost 3% of a first contact.
_PAIRS = tuple(a + b for a in _B32 for b in _B32)


def fingerprint(key: bytes) -> str:
    """A short human-comparable key fingerprint (§2.5-3): base32 of SHA-256, 4 groups of 4.

    16 base32 characters encode exactly the first 10 bytes (80 bits) of the hash; each group of
    4 characters is 20 of those bits, most significant first (RFC 4648 §6 without padding)."""
    n = int.from_bytes(sha256(key)[:10], "big")
    p = _PAIRS
    return (f"{p[n >> 70]}{p[(n >> 60) & 1023]}-{p[(n >> 50) & 1023]}{p[(n >> 40) & 1023]}-"
            f"{p[(n >> 30) & 1023]}{p[(n >> 20) & 1023]}-{p[(n >> 10) & 1023]}{p[n & 1023]}")


# -- verification (§3.5) ---------------------------------------------------------------------


def is_valid_key(key: bytes) -> bool:
    """True when ``key`` is a canonical, non-small-order Ed25519 point (§2.1-2)."""
    return len(key) == KEY_BYTES and bool(_sodium.crypto_core_ed25519_is_valid_point(key))


# The X25519 points of small order, as libsodium lists them (the top bit is ignored).
_SMALL_ORDER_X25519 = frozenset(bytes.fromhex(h) for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
))


#: Their first 31 bytes (the top bit is in the last): a key that starts otherwise is none of them.
_SMALL_ORDER_HEADS = frozenset(k[:31] for k in _SMALL_ORDER_X25519)


def check_enc_key(key: bytes, *, path: str = "") -> None:
    """Refuse an X25519 key of small order with ``bad_key`` (§2.1-5): nothing sealed to it
    would be secret, and libsodium refuses to seal to it."""
    if len(key) != KEY_BYTES or (key[:31] in _SMALL_ORDER_HEADS and  # (every share checks)
                                 key[:31] + bytes([key[31] & 0x7F]) in _SMALL_ORDER_X25519):
        raise ValidationError(
            "not a usable X25519 public key (small order)",
            code=Problem.BAD_KEY,
            clause="§2.1-5",
            path=path,
        )


def check_key(key: bytes, *, path: str = "") -> None:
    """Refuse a key that is not a valid Ed25519 public key with ``bad_key`` (§2.1-2)."""
    if not is_valid_key(key):
        raise ValidationError(
            "not a valid Ed25519 public key (wrong length, non-canonical or small order)",
            code=Problem.BAD_KEY,
            clause="§2.1-2",
            path=path,
        )


def verify(context: bytes, data: bytes, signature: bytes, key: bytes) -> None:
    """Check ``signature`` over ``context ‖ data`` under ``key`` with the strict rule (§3.5-3).

    Raises :class:`SignatureError` — ``bad_key`` when the key itself is unusable (§2.1-2),
    ``bad_signature`` otherwise.
    """
    if len(signature) != SIG_BYTES:
        raise SignatureError("a signature is 64 bytes", code=Problem.MALFORMED, clause="§3.4-3")
    try:
        # libsodium's crypto_sign_open — what nacl.bindings.crypto_sign_open calls — with NULL
        # for the output message: the same strict check, without allocating and copying a
        # buffer we would throw away.
        signed = signature + context + data
        ok = _lib.crypto_sign_open(_NULL, _NULL, signed, len(signed), key) == 0
    except TypeError:
        ok = False
    if not ok:
        # Only on failure do we pay for telling a bad key from a bad signature.
        if not is_valid_key(key):
            raise SignatureError(
                "the sender key is not a valid Ed25519 public key",
                code=Problem.BAD_KEY,
                clause="§2.1-2",
            ) from None
        raise SignatureError("signature does not verify", clause="§3.5-3") from None


# -- identities (§2.2-§2.4) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Identity:
    """A signing key and an encryption key derived from one 32-byte seed (§2.2).

    ``repr`` never shows secret material.
    """

    seed: bytes
    public_key: bytes = field(init=False)
    enc_public_key: bytes = field(init=False)
    _signing_secret: bytes = field(init=False)
    _enc_private: PrivateKey = field(init=False)
    _enc_secret: bytes = field(init=False, compare=False)  # bytes(_enc_private), for unseal

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ValueError("an identity seed is 32 bytes")
        sign_seed = _hmac(self.seed, _DERIVE_IDENTITY_SIGN)
        pk, sk = _sodium.crypto_sign_seed_keypair(sign_seed)
        enc = PrivateKey(_hmac(self.seed, _DERIVE_IDENTITY_ENC))
        object.__setattr__(self, "public_key", pk)
        object.__setattr__(self, "_signing_secret", sk)
        object.__setattr__(self, "_enc_private", enc)
        object.__setattr__(self, "_enc_secret", bytes(enc))
        object.__setattr__(self, "enc_public_key", bytes(enc.public_key))

    def __repr__(self) -> str:
        return f"Identity({key_to_text(self.public_key)})"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, context: bytes, data: bytes) -> bytes:
        """Ed25519 signature over ``context ‖ data`` (§3.5-1)."""
        # libsodium's crypto_sign, as nacl.bindings.crypto_sign calls it, keeping only the
        # signature (the first 64 bytes of the signed message).
        message = context + data
        signed = _ffi.new("unsigned char[]", len(message) + SIG_BYTES)
        if _lib.crypto_sign(signed, _NULL, message, len(message), self._signing_secret) != 0:
            raise nacl.exceptions.RuntimeError("Unexpected library error")
        sig: bytes = _ffi.buffer(signed, SIG_BYTES)[:]
        return sig

    def unseal(self, ciphertext: bytes) -> bytes:
        """Open a sealed box addressed to this identity's X25519 key (§5.5).

        Raises :class:`ValidationError` ``cannot_decrypt`` when it was sealed to another key or
        was altered.
        """
        # libsodium's crypto_box_seal_open, as nacl's SealedBox.decrypt calls it, without
        # building a SealedBox (and deriving its public key) for every message.
        size = len(ciphertext) - _SEAL_BYTES if type(ciphertext) is bytes else -1
        if size >= 0:
            plain = _ffi.new("unsigned char[]", max(1, size))
            if _lib.crypto_box_seal_open(plain, ciphertext, len(ciphertext), self.enc_public_key,
                                         self._enc_secret) == 0:
                out: bytes = _ffi.buffer(plain, size)[:]
                return out
        elif type(ciphertext) is not bytes:  # anything else: the wrapper's checks decide
            try:
                opened: bytes = SealedBox(self._enc_private).decrypt(ciphertext)
                return opened
            except (nacl.exceptions.CryptoError, ValueError, TypeError):
                pass
        raise ValidationError(
            "sealed content cannot be opened with this recipient's key",
            code=Problem.CANNOT_DECRYPT,
            clause="§5.5-4",
        )


def seal(plaintext: bytes, enc_public_key: bytes) -> bytes:
    """Seal ``plaintext`` to an X25519 public key (libsodium sealed box, §5.5-2)."""
    if type(plaintext) is not bytes or type(enc_public_key) is not bytes or len(
        enc_public_key
    ) != KEY_BYTES:  # the wrapper's checks, for their errors
        ciphertext: bytes = SealedBox(PublicKey(enc_public_key)).encrypt(plaintext)
        return ciphertext
    # libsodium's crypto_box_seal, as nacl.bindings.crypto_box_seal calls it, unwrapped.
    size = len(plaintext) + _SEAL_BYTES
    out = _ffi.new("unsigned char[]", size)
    if _lib.crypto_box_seal(out, plaintext, len(plaintext), enc_public_key) != 0:
        raise nacl.exceptions.RuntimeError("Unexpected library error")
    sealed: bytes = _ffi.buffer(out, size)[:]
    return sealed


@dataclass(frozen=True, slots=True, repr=False)
class MasterSeed:
    """A customer's one secret, from which every identity is derived (§2.3, §2.4).

    Back up these 32 bytes and every pairwise and intentcast key can be recreated.
    """

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ValueError("a master seed is 32 bytes")

    def __repr__(self) -> str:
        return "MasterSeed(…)"

    def pairwise(self, vendor_key: bytes, generation: int = 0) -> Identity:
        """The identity this customer uses with one vendor (§2.3-1).

        seed = HMAC-SHA-256(master, "vrmproto/v1/pairwise\\0" ‖ vendor_key ‖ u32be(generation));
        ``generation`` increases by one with each key rotation in that relationship (§2.6).
        """
        if len(vendor_key) != KEY_BYTES:
            raise ValueError("a vendor key is 32 bytes")
        msg = _DERIVE_PAIRWISE + vendor_key + generation.to_bytes(4, "big")
        return Identity(_hmac(self.seed, msg))

    def for_intent(self, intent_id: bytes) -> Identity:
        """The throw-away identity of one intentcast (§2.4-1).

        seed = HMAC-SHA-256(master, "vrmproto/v1/intent\\0" ‖ intent_id), where ``intent_id`` is
        the intentcast's own random 16 bytes (each vendor's copy travels in a thread of its
        own, §5.4.1-1; the intent id only names the throw-away identity).
        """
        if len(intent_id) != ID_BYTES:
            raise ValueError("an intent id is 16 bytes")
        return Identity(_hmac(self.seed, _DERIVE_INTENT + intent_id))
