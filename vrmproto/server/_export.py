"""The history export (§12.5): one page of a thread's history, to the thread's peer only.

A request is signed (§12.5-1) and valid for twice ``max_clock_skew_ms`` (§12.5-2); the same
request again counts against the address it comes from, not its sender (§12.9-6), so
:class:`SeenRequests` remembers the recent ones.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from vrmproto import _codec
from vrmproto._binding import CONTENT_TYPE, encode_history, open_history_request
from vrmproto._errors import Problem, ProtocolError
from vrmproto._history import Entry
from vrmproto._keys import ID_BYTES, SIG_BYTES
from vrmproto._state import Role
from vrmproto.server._expiry import expire_thread_shares
from vrmproto.server._response import Peek, Response

if TYPE_CHECKING:
    from vrmproto.server._endpoint import Endpoint

__all__ = ["HISTORY_NONCES", "HISTORY_PAGE_BYTES", "HISTORY_PAGE_ENTRIES", "SeenRequests", "export"]

#: Largest history export page, in envelope bytes (§12.5-5); at least one entry is always sent.
HISTORY_PAGE_BYTES = 8 * 1024 * 1024
HISTORY_PAGE_ENTRIES = 1000
#: Most history requests remembered to tell a replay from a new request (§12.9-6).
HISTORY_NONCES = 100_000


class SeenRequests:
    """The history requests of the last ``window_ms`` (twice ``max_clock_skew_ms``: as long as
    a request is valid, §12.5-2), at most :data:`HISTORY_NONCES` of them, by
    ``(sender, nonce)``."""

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[bytes, bytes], int] = OrderedDict()

    def seen(self, sender: bytes, nonce: bytes, now: int, window_ms: int) -> bool:
        """Whether this request was seen before; remembers it if not."""
        seen = self._seen
        horizon = now - window_ms
        while seen and (next(iter(seen.values())) < horizon or len(seen) >= HISTORY_NONCES):
            seen.popitem(last=False)
        key = (sender, nonce)
        if key in seen:
            return True
        seen[key] = now
        return False


def signed_request(data: bytes) -> tuple[bytes, bytes | None] | None:
    """``(req bytes, thread or None)`` if ``data`` has the shape of a signed request (§12.5-1),
    else None; nothing here is verified yet."""
    try:
        outer = _codec.decode(data, max_depth=1)
    except ProtocolError:
        return None
    if type(outer) is not dict or outer.keys() != {"req", "sig"}:
        return None
    req, sig = outer["req"], outer["sig"]
    if type(req) is not bytes or type(sig) is not bytes or len(sig) != SIG_BYTES:
        return None
    try:
        fields = _codec.decode(req, max_depth=1)
    except ProtocolError:
        return req, None
    thread = fields.get("thread") if type(fields) is dict else None
    return req, thread if type(thread) is bytes and len(thread) == ID_BYTES else None


async def export(ep: Endpoint, data: bytes, client: str = "") -> Response:
    """Answer a signed history request with one page of the thread's history (§12.5)."""
    now = ep.clock()
    shape = signed_request(data)
    if shape is None:
        return ep.problem(
            Problem.UNAUTHORIZED, "the history export answers only a signed request",
            clause="§12.5-1",
        )  # fmt: skip
    thread = shape[1]
    record = await ep.store.get_relationship(thread) if thread is not None else None
    if record is not None and Role(record.role) is not ep.role:
        record = None
    identity = ep.identity_of(record) if record is not None else ep.identity
    try:
        req = open_history_request(data, now=now, recipient=identity.public_key, limits=ep.limits)
    except ProtocolError as exc:
        return ep._refuse(exc, Peek(thread=thread), identity)
    window = 2 * ep.limits.max_clock_skew_ms
    if ep._history_requests.seen(req.sender, req.nonce, now, window):  # a replay: address pays
        if client:
            await ep.charge_address(client)
    else:
        wait = await ep.sender_limit.aretry_after(req.sender)
        if wait:
            return ep.problem(
                Problem.RATE_LIMITED, "too many requests from this key", clause="§12.9-5",
                retry_after=wait, to=req.sender, thread=req.thread,
            )  # fmt: skip
        await ep.sender_limit.acharge(req.sender)
    if record is None:
        return ep.problem(
            Problem.NO_RELATIONSHIP, "there is no relationship with this thread id here",
            clause="§12.5-4", to=req.sender, thread=req.thread,
        )  # fmt: skip
    if req.sender != record.peer_key:
        return ep.problem(
            Problem.NOT_A_PARTY, "only the thread's peer, by its current key, may fetch it",
            clause="§12.5-4", identity=identity, to=req.sender, thread=req.thread,
        )  # fmt: skip
    await expire_thread_shares(ep, record)  # the export never shows expired data (§5.3.1-4)
    rows = await ep.store.history(req.thread, start=req.start, limit=HISTORY_PAGE_ENTRIES)
    page: list[Entry] = []
    size = 0
    for row in rows:
        size += len(row.envelope)
        if page and size > HISTORY_PAGE_BYTES:
            break
        page.append(Entry(row.index, row.msg_hash, row.entry_hash, row.envelope,
                          row.direction == "out"))  # fmt: skip
    return Response(200, encode_history(page), {"Content-Type": CONTENT_TYPE})
