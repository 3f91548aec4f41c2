"""What the endpoint answers, and what it may read of a request before trusting it (§12.3, §12.4).

:class:`Response` is what the HTTP layer copies out: a status, the exact body bytes, headers.
:class:`Outcome` is what one delivery of a verified message did, which decides what it counts
against (§12.9-6). :func:`peek` reads the claimed sender, thread and hash of an envelope before
it is verified — for the rate limit and for addressing a refusal, never trusted.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgpack

from vrmproto._binding import CONTENT_TYPE
from vrmproto._envelope import peek_header
from vrmproto._keys import ID_BYTES, KEY_BYTES, sha256
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto.store import DedupeRecord

__all__ = [
    "JSON_TYPE", "NO_CONTENT", "Outcome", "Peek", "Response", "peek", "peek_sender",
    "stored_answer",
]  # fmt: skip

JSON_TYPE = "application/json"
NO_CONTENT = 204


@dataclass(frozen=True, slots=True)
class Response:
    """What the HTTP layer sends back: a status, the exact body bytes and headers."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class Outcome(enum.Enum):
    """What one delivery of a verified message did: what it counts against (§12.9-6)."""

    STORED = "stored"  # applied and stored as new: the sender's allowance
    REPLAYED = "replayed"  # answered from the replay record: the client address's
    REFUSED = "refused"  # refused: neither (the request itself counted against the address)


def stored_answer(stored: DedupeRecord) -> Response:
    """The exact response stored with an accepted message, for its replay (§12.6-2)."""
    if not stored.response:
        return Response(NO_CONTENT, b"")
    return Response(200, stored.response, {"Content-Type": CONTENT_TYPE})


@dataclass(frozen=True, slots=True)
class Peek:
    """What could be read from a request before verifying it (nothing here is trusted)."""

    sender: bytes | None = None
    thread: bytes | None = None
    ref: bytes | None = None
    kind: str | None = None


def peek(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Peek:
    """The claimed sender, thread and hash of an envelope, or as much of them as decode.

    A lenient, fast look for the rate limit and for addressing a problem; never trusted, and
    anything that fails here fails again, properly, in open_envelope. An envelope in a usual
    layout is read as :func:`~vrmproto._envelope.open_envelope` reads it (which then takes
    that reading, not the bytes again); any other is decoded generically.
    """
    usual = peek_header(data, limits)
    if usual is not None:
        header, header_bytes = usual
        return Peek(header.sender, header.thread, sha256(header_bytes), header.type)
    return decode_peek(data)


def peek_sender(data: bytes, limits: Limits = DEFAULT_LIMITS) -> bytes | None:
    """:func:`peek`'s ``sender`` alone: what the sender's rate limit needs of every request
    (the rest, the hash among it, only for a refusal)."""
    usual = peek_header(data, limits)
    if usual is not None:
        return usual[0].sender
    return decode_peek(data).sender


def decode_peek(data: bytes) -> Peek:
    """:func:`peek` by decoding the envelope generically (any layout)."""
    try:
        env = msgpack.unpackb(data, raw=False)
        hdr = env.get("hdr") if type(env) is dict else None
        if type(hdr) is not bytes:
            return Peek()
        fields = msgpack.unpackb(hdr, raw=False)
    except Exception:
        return Peek()
    if type(fields) is not dict:
        return Peek(ref=sha256(hdr))
    sender, thread, kind = fields.get("from"), fields.get("thread"), fields.get("type")
    return Peek(
        sender if type(sender) is bytes and len(sender) == KEY_BYTES else None,
        thread if type(thread) is bytes and len(thread) == ID_BYTES else None,
        sha256(hdr),
        kind if type(kind) is str else None,
    )
