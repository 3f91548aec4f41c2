"""Intentcasts through Nostr relays (spec §15): to vendors the customer does not know yet.

- :mod:`._crypto`: throw-away secp256k1 keys from the master seed, BIP-340, NIP-44 v2.
- :mod:`._event`: Nostr events (NIP-01), proof of work (NIP-13), expiry (NIP-40); sans-IO.
- :mod:`._binding`: the intentcast event and the vendor's sealed answer; sans-IO.
- :mod:`._relay`: a relay client and a pool of relays over aiohttp websockets.
- :mod:`._customer` and :mod:`._vendor`: the two sides, on top of the agent and the endpoint.
"""

from vrmproto.nostr._binding import (
    KIND_ANSWER,
    KIND_INTENTCAST,
    Answer,
    answer_event,
    answer_filter,
    intentcast_event,
    intentcast_filter,
    keywords,
    open_answer,
    open_intentcast,
)
from vrmproto.nostr._crypto import (
    Nip44Error,
    NostrKey,
    conversation_key,
    nip44_decrypt,
    nip44_encrypt,
    padded_len,
    relay_intent_id,
    verify_schnorr,
)
from vrmproto.nostr._event import Event, EventError, leading_zero_bits, mine, sign_event
from vrmproto.nostr._relay import (
    DEFAULT_RELAY_LIMITS,
    PublishResult,
    Relay,
    RelayError,
    RelayLimits,
    RelayPool,
    relay_session,
)

__all__ = [
    "DEFAULT_RELAY_LIMITS",
    "KIND_ANSWER",
    "KIND_INTENTCAST",
    "Answer",
    "Event",
    "EventError",
    "Nip44Error",
    "NostrKey",
    "PublishResult",
    "Relay",
    "RelayError",
    "RelayLimits",
    "RelayPool",
    "answer_event",
    "answer_filter",
    "conversation_key",
    "intentcast_event",
    "intentcast_filter",
    "keywords",
    "leading_zero_bits",
    "mine",
    "nip44_decrypt",
    "nip44_encrypt",
    "open_answer",
    "open_intentcast",
    "padded_len",
    "relay_intent_id",
    "relay_session",
    "sign_event",
    "verify_schnorr",
]
