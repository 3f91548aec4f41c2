"""Every limit of the protocol in one typed object (spec §10).

Receivers enforce these before doing expensive work; vendors publish theirs in the discovery
document (§13) so senders and the conformance suite can adapt to them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vrmproto._codec import MAX_SAFE_INT

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits a receiver enforces; the defaults are the values of spec §10 table 1."""

    #: §10-1: largest envelope, in bytes, a receiver must accept; larger gets ``too_large``.
    max_envelope_bytes: int = 256 * 1024
    #: §10-2: deepest nesting of arrays and maps inside any encoded item; deeper is ``malformed``.
    max_depth: int = 16
    #: §10-3: how far in the future ``created`` may lie, in ms, before ``clock_skew``.
    max_clock_skew_ms: int = 120_000
    #: §10-4: longest allowed ``expires - created``, in ms; longer is ``invalid_field``.
    max_lifetime_ms: int = 7 * DAY_MS
    #: §10-5: how long a receiver keeps (sender, id) de-duplication records, in ms.
    #: MUST be at least max_lifetime_ms + max_clock_skew_ms so no live message is accepted twice.
    replay_window_ms: int = 7 * DAY_MS + 120_000
    #: §10-6: messages per sender per minute before ``rate_limited`` (HTTP binding).
    rate_per_sender_per_minute: int = 600
    #: §10-7: requests per client address (an IPv6 address: its /64) per minute before
    #: ``rate_limited`` (HTTP binding).
    rate_per_address_per_minute: int = 3000
    #: §10-8: the whole request body must arrive within this many ms, or ``request_timeout``.
    body_read_timeout_ms: int = 10_000
    #: §10-13: largest first-contact envelope, in bytes: a message that opens a relationship,
    #: or any customer message in one that holds no agreement yet (§11.8-2). Larger is *large*.
    max_first_contact_bytes: int = 16 * 1024
    #: §10-14: most bytes of body keys this version does not define (§5.1-3) a first-contact
    #: message carries before it is *large*.
    max_unknown_body_bytes: int = 1024
    #: §10-15: large first-contact messages accepted per client address prefix per day;
    #: beyond, a large one is ``too_large``.
    large_first_contacts_per_address_per_day: int = 8
    #: §10-16: relationships opened per client address prefix per day before
    #: ``rate_limited`` (HTTP binding).
    first_contacts_per_address_per_day: int = 4096
    #: §10-17: open negotiations (offered, countered, intent_open, intent_answered) a client
    #: address prefix may hold before another first contact is ``rate_limited`` (HTTP binding).
    open_relationships_per_address: int = 128
    #: §10-18: ms after its last message at which a relationship that never reached an agreement
    #: is deleted, with its history and held data (§11.8-3).
    open_relationship_ttl_ms: int = 7 * DAY_MS

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if type(value) is not int:  # (a float, NaN or a bool would be published, §3.3)
                raise ValueError(f"limit {f.name} must be an int, not {value!r}")
            if value <= 0:
                raise ValueError(f"limit {f.name} must be positive")
            if value > MAX_SAFE_INT:  # published in discovery (§13.1-3), an int of §3.3
                raise ValueError(f"limit {f.name} must be at most 2^53 - 1")
        if self.replay_window_ms < self.max_lifetime_ms + self.max_clock_skew_ms:
            raise ValueError("replay_window_ms must cover max_lifetime_ms + max_clock_skew_ms")

    def to_wire(self) -> dict[str, int]:
        """The limits as published in the discovery document (§13.1-3)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


DEFAULT_LIMITS = Limits()
