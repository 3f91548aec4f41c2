"""A vendor that moved its inbox: its discovery document read again, and followed (§13.1).

A relationship keeps the inbox and history URLs that the vendor's document named when it was
read (``ThreadMeta.inbox``, ``ThreadMeta.history``). A sender reads the document "before its
first message, and again when the document has expired" (§13.1), and MUST NOT use it after its
``expires`` (§13.1-8). So the agent reads it again — from the vendor's base URL, pinned to the
relationship's current peer key (§11.10-1, a ``key.rotate`` moves the pin, §2.6) — when:

- the document this process read for the thread has expired (:class:`Documents`); a thread
  last read by another process (the store keeps no document expiry) is read again only on
- an answer from the inbox that says the envelope is not taken there (:data:`MOVED`: the path
  is gone, or redirects — a POST is never followed to another URL, §12.3).

If the document then names other URLs, the relationship follows them, in one Commit, and the
message goes to the new inbox at once. A document that does not verify under the pinned key
moves nothing: a vendor with a new key is a person's decision (``vrm connect
--accept-new-key``).
"""

from __future__ import annotations

import logging
from typing import Protocol

from vrmproto._binding import DiscoveryDocument
from vrmproto._errors import TransportError, VrmError
from vrmproto.client._errors import InvalidResponse
from vrmproto.client._ledger import Ledger, Thread
from vrmproto.client._transport import RetryPolicy, Transport
from vrmproto.store import OutboxItem

__all__ = ["MOVED", "Documents", "follow", "moved_to", "post_following", "reread"]

log = logging.getLogger("vrmproto.client")

#: Answers of an inbox that mean "not here": gone (404, 410), not a resource that takes a POST
#: (405), or a redirect, which a sender never follows with an envelope (§12.3).
MOVED = frozenset({301, 302, 303, 307, 308, 404, 405, 410})

#: Most threads whose document expiry a :class:`Documents` keeps (the oldest go first).
KEPT = 65_536
#: After a failed read of an expired document, how long (ms) deliveries go on to the inbox
#: known before the next read is tried: each try costs a request and its timeout.
READ_AGAIN_MS = 60_000


class Documents:
    """When the vendor document each thread uses expires (ms), as this process read it."""

    __slots__ = ("_expires",)

    def __init__(self) -> None:
        self._expires: dict[bytes, int] = {}

    def read(self, thread: bytes, doc: DiscoveryDocument) -> None:
        """``doc`` was read for ``thread``, now."""
        if len(self._expires) >= KEPT and thread not in self._expires:
            del self._expires[next(iter(self._expires))]
        self._expires[thread] = doc.expires

    def unread(self, thread: bytes, now: int) -> None:
        """Reading ``thread``'s document again failed: try again in :data:`READ_AGAIN_MS`."""
        if thread in self._expires:
            self._expires[thread] = now + READ_AGAIN_MS

    def expired(self, thread: bytes, now: int) -> bool:
        """Whether the document read for ``thread`` has expired (§13.1-8); False when this
        process did not read it."""
        expires = self._expires.get(thread)
        return expires is not None and expires < now


def moved_to(t: Thread, doc: DiscoveryDocument) -> bool:
    """Point ``t`` at the inbox and history ``doc`` names, and the types it lists (§13.1-3);
    whether any of them changed (the thread's record then needs a Commit)."""
    meta = t.meta
    types = tuple(doc.types)
    if (meta.inbox, meta.history, meta.types) == (doc.inbox, doc.history, types):
        return False
    if meta.inbox != doc.inbox:
        log.info("the vendor of thread %s moved its inbox from %s to %s (§13.1)", t.id.hex(),
                 meta.inbox, doc.inbox)  # fmt: skip
    meta.inbox, meta.history, meta.types = doc.inbox, doc.history, types
    return True


async def reread(client: Transport, t: Thread, *, timeout_s: float | None = None
                 ) -> DiscoveryDocument | None:  # fmt: skip
    """The vendor's document read again from ``t.url``, verified under the relationship's
    current peer key; None when it can't be read or doesn't verify (logged: the message then
    waits in the outbox as for any failed delivery)."""
    try:
        return await client.fetch_discovery(t.url, t.rel.peer_key, role="vendor",
                                            timeout_s=timeout_s)  # fmt: skip
    except (TransportError, VrmError) as exc:
        log.info("the discovery document of %s could not be read again: %s", t.url, exc)
        return None


async def follow(client: Transport, ledger: Ledger, documents: Documents, t: Thread, now: int,
                 *, timeout_s: float | None = None) -> bool:  # fmt: skip
    """Read the vendor's document again for ``t`` (the caller holds the thread's lock) and
    follow it; whether the inbox moved. The thread's record is committed when it changed."""
    doc = await reread(client, t, timeout_s=timeout_s)
    if doc is None:
        documents.unread(t.id, now)
        return False
    documents.read(t.id, doc)
    inbox = t.meta.inbox
    if not moved_to(t, doc):
        return False
    try:
        await ledger.store.commit(ledger.commit((t,), now))
    except BaseException:
        ledger.forget(t.id)
        raise
    ledger.adopt(t)
    return t.meta.inbox != inbox


def says_moved(exc: TransportError) -> bool:
    """Whether the inbox's answer says the envelope is not taken there (:data:`MOVED`)."""
    return isinstance(exc, InvalidResponse) and exc.status in MOVED


class Parts(Protocol):
    """What :func:`post_following` uses of a :class:`~vrmproto.client._sending.Sender`."""

    client: Transport
    ledger: Ledger
    documents: Documents


async def post_following(s: Parts, t: Thread, item: OutboxItem, now: int, *,
                         timeout_s: float | None, retry: RetryPolicy | None
                         ) -> list[bytes]:  # fmt: skip
    """POST ``item`` to the thread's inbox (the caller holds the thread's lock): first
    following the vendor's document where the one read has expired, and once more after an
    answer that the inbox is not there (:data:`MOVED`). The reply envelopes, as
    :meth:`~vrmproto.client.Transport.post_envelope` returns them."""
    if s.documents.expired(t.id, now):
        await follow(s.client, s.ledger, s.documents, t, now, timeout_s=timeout_s)
    try:
        return await _post(s.client, t, item, timeout_s, retry)
    except TransportError as exc:
        if not says_moved(exc) or not await follow(s.client, s.ledger, s.documents, t, now,
                                                   timeout_s=timeout_s):  # fmt: skip
            raise
    return await _post(s.client, t, item, timeout_s, retry)


async def _post(client: Transport, t: Thread, item: OutboxItem, timeout_s: float | None,
                retry: RetryPolicy | None) -> list[bytes]:  # fmt: skip
    return await client.post_envelope(t.meta.inbox, item.envelope, expected_keys=t.problem_keys,
                                      ref=item.msg_hash, channel=t.id, timeout_s=timeout_s,
                                      retry=retry)  # fmt: skip
