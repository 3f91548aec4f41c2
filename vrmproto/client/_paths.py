"""Where each vendor reaches the customer's agent endpoint: one unguessable path per
relationship (spec §11.6-1, §12.11-4).

A customer agent that gave every vendor the same endpoint URL would give them a shared
identifier to link the person by. Each relationship therefore gets its own base URL, the agent's
URL followed by ``/r/<token>``, where the token is 128 bits derived from the master seed and the
thread id: unguessable without the seed, different for every relationship, and the same after a
restart (nothing to store). The agent endpoint signs each relationship's discovery document with
a key derived the same way (:func:`endpoint_identity`): one no other relationship sees and
that is none of the customer's relationship keys (§12.11-2).
"""

from __future__ import annotations

import hashlib
import hmac

from vrmproto._keys import ID_BYTES, Identity, MasterSeed, _b64

__all__ = ["ENDPOINT_PREFIX", "endpoint_identity", "endpoint_path", "endpoint_token"]

#: The first segment of every relationship's path on an agent endpoint.
ENDPOINT_PREFIX = "/r/"
_TOKEN_CONTEXT = b"vrmproto/agent-endpoint/path\x00"
_KEY_CONTEXT = b"vrmproto/agent-endpoint/key\x00"


def _derive(master: MasterSeed, context: bytes, thread: bytes) -> bytes:
    if len(thread) != ID_BYTES:
        raise ValueError("a thread id is 16 bytes")
    return hmac.new(master.seed, context + thread, hashlib.sha256).digest()


def endpoint_token(master: MasterSeed, thread: bytes) -> str:
    """The relationship's path token: 16 bytes of HMAC-SHA-256, base64url (22 characters)."""
    return _b64(_derive(master, _TOKEN_CONTEXT, thread)[:16])


def endpoint_path(master: MasterSeed, thread: bytes) -> str:
    """The path of the relationship's base URL on the agent endpoint: ``/r/<token>``."""
    return ENDPOINT_PREFIX + endpoint_token(master, thread)


def endpoint_identity(master: MasterSeed, thread: bytes) -> Identity:
    """The key that signs the relationship's discovery document on the agent endpoint, and the
    problems that belong to no relationship at its path (§12.11-2)."""
    return Identity(_derive(master, _KEY_CONTEXT, thread))
