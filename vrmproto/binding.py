"""The HTTP binding's byte formats, sans-IO (spec §12, §13): what a transport moves besides
single envelopes.

Everything a second transport (a relay, a test double, another HTTP client) needs to speak the
binding without the reference client: where discovery lives and how its signed document is made
and verified (§13.1, §13.3-2), the inbox's reply body (§12.3-1), and the signed history request
and its answer (§12.5). None of it touches a socket or a clock: time is an argument.

- Discovery: :func:`discovery_url`, :func:`build_discovery`, :func:`verify_discovery` →
  :class:`DiscoveryDocument`; the signature travels in the :data:`SIGNATURE_HEADER` field.
- Inbox: envelopes are posted as :data:`CONTENT_TYPE`; a ``200`` answer is
  :func:`encode_replies` / :func:`decode_replies` (the receipt first).
- History: :func:`sign_history_request` / :func:`open_history_request` →
  :class:`HistoryRequest`; the answer is :func:`encode_history` / :func:`decode_history`.

How HTTP outcomes become typed errors on the client side is :mod:`vrmproto.client`'s
``Transport`` contract.
"""

from vrmproto._binding import (
    CONTENT_TYPE,
    DEFAULT_HISTORY_PATH,
    DEFAULT_INBOX_PATH,
    DISCOVERY_FORMAT,
    MAX_DISCOVERY_BYTES,
    SIGNATURE_HEADER,
    SPOKEN_VERSIONS,
    WELL_KNOWN_PATH,
    DiscoveryDocument,
    HistoryRequest,
    build_discovery,
    decode_history,
    decode_replies,
    discovery_url,
    encode_history,
    encode_replies,
    open_history_request,
    sign_history_request,
    verify_discovery,
)

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_HISTORY_PATH",
    "DEFAULT_INBOX_PATH",
    "DISCOVERY_FORMAT",
    "MAX_DISCOVERY_BYTES",
    "SIGNATURE_HEADER",
    "SPOKEN_VERSIONS",
    "WELL_KNOWN_PATH",
    "DiscoveryDocument",
    "HistoryRequest",
    "build_discovery",
    "decode_history",
    "decode_replies",
    "discovery_url",
    "encode_history",
    "encode_replies",
    "open_history_request",
    "sign_history_request",
    "verify_discovery",
]
