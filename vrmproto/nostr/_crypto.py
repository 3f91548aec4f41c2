"""secp256k1 for the Nostr binding: throw-away keys, BIP-340 signatures, NIP-44 v2 (§15.2-1,
§15.1-1, §15.4-1).

Sans-IO: randomness (the BIP-340 auxiliary bytes, NIP-44 nonces) is passed in. The curve work is
libsecp256k1's through ``coincurve``; ChaCha20 and HKDF are ``cryptography``'s. NIP-44 v2 is
written here from its specification and checked against its published test vectors
(tests/test_nostr_crypto.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey, PublicKeyXOnly
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

__all__ = [
    "Nip44Error",
    "NostrKey",
    "conversation_key",
    "nip44_decrypt",
    "nip44_encrypt",
    "padded_len",
    "relay_intent_id",
    "verify_schnorr",
]

_DERIVE_NOSTR = b"vrmproto/v1/nostr\x00"
_DERIVE_RELAY_INTENT = b"vrmproto/v1/nostr/intent\x00"
#: The largest index of a relayed intentcast (§15.2-1: a u32).
MAX_RELAY_INDEX = 2**32 - 1
_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_NIP44_SALT = b"nip44-v2"
_NIP44_VERSION = 2
_MIN_PLAINTEXT, _MAX_PLAINTEXT = 1, 65535


def relay_intent_id(master_seed: bytes, index: int) -> bytes:
    """The ``intent_id`` of the customer's relayed intentcast number ``index`` (§15.2-1).

    ``intent_id = HMAC-SHA-256(master_seed, "vrmproto/v1/nostr/intent\\0" ‖ u32be(index))[:16]``:
    from the seed and a count alone, so an agent restored from its seed finds its relayed
    intentcasts again (§15.2-4).
    """
    if not 0 <= index <= MAX_RELAY_INDEX:
        raise ValueError("a relayed intentcast's index is a u32")
    msg = _DERIVE_RELAY_INTENT + index.to_bytes(4, "big")
    return hmac.new(master_seed, msg, hashlib.sha256).digest()[:16]


class Nip44Error(ValueError):
    """A NIP-44 payload that does not open: wrong version, length, padding or MAC."""


@dataclass(frozen=True, slots=True)
class NostrKey:
    """A secp256k1 key pair; ``public`` is the 32-byte x-only key Nostr names a sender by."""

    secret: bytes

    def __post_init__(self) -> None:
        n = int.from_bytes(self.secret, "big")
        if len(self.secret) != 32 or not 0 < n < _ORDER:
            raise ValueError("a secp256k1 secret key is 32 bytes in 1..n-1")

    def __repr__(self) -> str:
        return f"NostrKey(public={self.public.hex()})"

    @property
    def public(self) -> bytes:
        return PrivateKey(self.secret).public_key_xonly.format()

    @classmethod
    def for_intent(cls, master_seed: bytes, intent_id: bytes) -> NostrKey:
        """The throw-away Nostr key of one relayed intentcast (§15.2-1).

        ``k = HMAC-SHA-256(master_seed, "vrmproto/v1/nostr\\0" ‖ intent_id ‖ counter)`` for the
        first one-byte ``counter`` from 0 whose ``k`` is a valid secret key (1 ≤ k < n).
        """
        if len(intent_id) != 16:
            raise ValueError("an intent id is 16 bytes")
        for counter in range(256):
            k = hmac.new(master_seed, _DERIVE_NOSTR + intent_id + bytes([counter]),
                         hashlib.sha256).digest()  # fmt: skip
            if 0 < int.from_bytes(k, "big") < _ORDER:
                return cls(k)
        raise ValueError("no valid key")  # pragma: no cover - probability 2^-32768

    def sign(self, digest: bytes, aux: bytes) -> bytes:
        """BIP-340 signature of a 32-byte ``digest`` with 32 auxiliary random bytes."""
        return PrivateKey(self.secret).sign_schnorr(digest, aux)


def verify_schnorr(public: bytes, digest: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid BIP-340 signature of ``digest`` by ``public``."""
    if len(public) != 32 or len(signature) != 64 or len(digest) != 32:
        return False
    try:
        return bool(PublicKeyXOnly(public).verify(signature, digest))
    except ValueError:  # not a point on the curve
        return False


def conversation_key(secret: bytes, public: bytes) -> bytes:
    """NIP-44 v2: HKDF-extract(salt "nip44-v2", the unhashed x of ECDH(secret, public))."""
    point = PublicKey(b"\x02" + public).multiply(secret)
    shared_x = point.format(compressed=True)[1:]
    return hmac.new(_NIP44_SALT, shared_x, hashlib.sha256).digest()


def padded_len(n: int) -> int:
    """NIP-44 v2 padding: 32 bytes, else the next power of two in chunks of 32 or of 1/8."""
    if n <= 32:
        return 32
    next_power = 1 << (n - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((n - 1) // chunk + 1)


def _message_keys(conv: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    keys = HKDFExpand(algorithm=SHA256(), length=76, info=nonce).derive(conv)
    return keys[:32], keys[32:44], keys[44:]


def _chacha(key: bytes, nonce12: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.ChaCha20(key, b"\x00" * 4 + nonce12), mode=None)
    return cipher.encryptor().update(data)


def nip44_encrypt(plaintext: str, conv: bytes, nonce: bytes) -> str:
    """The NIP-44 v2 payload of ``plaintext`` under conversation key ``conv``; ``nonce`` is 32
    random bytes, never reused."""
    raw = plaintext.encode()
    if not _MIN_PLAINTEXT <= len(raw) <= _MAX_PLAINTEXT or len(nonce) != 32:
        raise Nip44Error("plaintext must be 1..65535 bytes and the nonce 32")
    key, chacha_nonce, mac_key = _message_keys(conv, nonce)
    padded = struct.pack(">H", len(raw)) + raw + bytes(padded_len(len(raw)) - len(raw))
    ct = _chacha(key, chacha_nonce, padded)
    mac = hmac.new(mac_key, nonce + ct, hashlib.sha256).digest()
    return base64.b64encode(bytes([_NIP44_VERSION]) + nonce + ct + mac).decode()


def nip44_decrypt(payload: str, conv: bytes) -> str:
    """Open a NIP-44 v2 payload, checking its MAC before decrypting and its padding after."""
    if not payload or payload[0] == "#" or not 132 <= len(payload) <= 87472:
        raise Nip44Error("unknown version or bad payload size")
    try:
        data = base64.b64decode(payload, validate=True)
    except ValueError as exc:
        raise Nip44Error("payload is not base64") from exc
    if not 99 <= len(data) <= 65603 or data[0] != _NIP44_VERSION:
        raise Nip44Error("unknown version or bad payload size")
    nonce, ct, mac = data[1:33], data[33:-32], data[-32:]
    key, chacha_nonce, mac_key = _message_keys(conv, nonce)
    if not hmac.compare_digest(hmac.new(mac_key, nonce + ct, hashlib.sha256).digest(), mac):
        raise Nip44Error("invalid MAC")
    padded = _chacha(key, chacha_nonce, ct)
    (n,) = struct.unpack(">H", padded[:2])
    if n < _MIN_PLAINTEXT or len(padded) != 2 + padded_len(n):
        raise Nip44Error("invalid padding")
    return padded[2 : 2 + n].decode()
