"""What a stored message says about itself, read without verifying it again.

Every envelope in the node's history and outbox was either signed by the node or verified when
it arrived, before it was stored: opening it again (``open_envelope``, a signature check) to
learn its type or expiry would only re-learn what the node already knew. :func:`own_header`
reads those header fields straight from the stored bytes instead (issue 9 item 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from vrmproto import _codec
from vrmproto._errors import ProtocolError

__all__ = ["OwnHeader", "own_header"]


@dataclass(frozen=True, slots=True)
class OwnHeader:
    """Header fields of a message from our own store (§4.2), and whether its body was erased
    (§8.4)."""

    id: bytes
    type: str
    created: int
    expires: int
    thread: bytes
    erased: bool


def own_header(envelope: bytes) -> OwnHeader | None:
    """The header of a stored envelope, or None if the bytes are not an envelope at all."""
    try:
        env = _codec.decode(envelope, max_depth=4)
        hdr = _codec.decode(env["hdr"], max_depth=4) if type(env) is dict else None
    except (ProtocolError, KeyError, TypeError):
        return None
    if type(hdr) is not dict:
        return None
    msg_id, mtype, created = hdr.get("id"), hdr.get("type"), hdr.get("created")
    expires, thread = hdr.get("expires"), hdr.get("thread")
    if not (type(msg_id) is bytes and type(mtype) is str and type(created) is int
            and type(expires) is int and type(thread) is bytes):  # fmt: skip
        return None
    return OwnHeader(msg_id, mtype, created, expires, thread, env.get("body") is None)
