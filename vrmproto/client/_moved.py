"""A vendor that moved its inbox: its discovery document read again, and followed (§13.1).

A relationship keeps the inbox and history URLs that the vendor's document named when it was
read (``ThreadMeta.inbox``, ``ThreadMeta.history``), and when that document expires
(``ThreadMeta.doc_expires_ms``), all in the thread's stored record. A sender reads the document
"before its first message, and again when the document has expired" (§13.1), and MUST NOT use
it after its ``expires`` (§13.1-8). Every read of the document for a thread stores its expiry
with the thread: first contact (a connect, an intentcast), ``vrm connect URL`` of a vendor we
have a relationship with (:meth:`~vrmproto.client._terms.TermsOps._follow`) and the read here.
So the agent reads it again — from the vendor's base URL, pinned to the relationship's current
peer key (§11.10-1, a ``key.rotate`` moves the pin, §2.6) — before it delivers when:

- the stored expiry has passed (:meth:`Documents.due`), whichever process read the document:
  a restarted agent, each ``vrm`` command (a process of its own), another process on the same
  data all see it. A thread whose expiry is unknown (stored before schema 11) has its document
  read once, before its next delivery, and the expiry stored: its copy was read at first
  contact, most likely longer ago than a document lives (a day by default), and a person
  upgrading expects a vendor that moved since to be found, not written to at an old address
  until that address answers 404 — at the cost of one request per such thread, once;
- an answer from the inbox that says the envelope is not taken there (:data:`MOVED`: the path
  is gone, or redirects — a POST is never followed to another URL, §12.3).

A read that fails (the vendor's document can't be fetched, or doesn't verify) moves nothing:
the message goes to the inbox known, and this process tries the read again only after
:data:`READ_AGAIN_MS` (:class:`Documents`, in memory: each try costs a request and its
timeout, and storing the failure would cost a Commit per try). If the document names other
URLs, the relationship follows them and the message goes to the new inbox at once; whatever it
changed (URLs, types, expiry) is stored in one Commit. A document that does not verify under the
pinned key moves nothing: a vendor with a new key is a person's decision (``vrm connect
--accept-new-key``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from vrmproto._binding import DiscoveryDocument
from vrmproto._errors import TransportError, VrmError
from vrmproto.client._errors import InvalidResponse, Unreachable
from vrmproto.client._ledger import Ledger, Thread
from vrmproto.client._transport import RetryPolicy, Transport
from vrmproto.store import OutboxItem

__all__ = ["MOVED", "Documents", "current", "dated", "deadline_in", "follow", "left",
           "moved_to", "passed", "post_following", "reread"]

log = logging.getLogger("vrmproto.client")

#: Answers of an inbox that mean "not here": gone (404, 410), not a resource that takes a POST
#: (405), or a redirect, which a sender never follows with an envelope (§12.3).
MOVED = frozenset({301, 302, 303, 307, 308, 404, 405, 410})

#: Most threads whose failed read a :class:`Documents` keeps (the oldest go first).
KEPT = 65_536
#: After a failed read of an expired document, how long (ms) deliveries go on to the inbox
#: known before the next read is tried: each try costs a request and its timeout.
READ_AGAIN_MS = 60_000


class Documents:
    """When each thread's vendor document is read again: its expiry is the thread's (stored,
    ``ThreadMeta.doc_expires_ms``); this holds, in memory, the threads whose read failed in
    this process, and when it tries again."""

    __slots__ = ("_again",)

    def __init__(self) -> None:
        self._again: dict[bytes, int] = {}

    def read(self, thread: bytes) -> None:
        """The document of ``thread`` was read (and its expiry kept in the thread's meta)."""
        self._again.pop(thread, None)

    def unread(self, thread: bytes, now: int) -> None:
        """Reading ``thread``'s document failed: try again in :data:`READ_AGAIN_MS`."""
        again = self._again
        if len(again) >= KEPT and thread not in again:
            del again[next(iter(again))]
        again[thread] = now + READ_AGAIN_MS

    def due(self, t: Thread, now: int) -> bool:
        """Whether ``t``'s document must be read before a delivery at ``now``: it expired, or
        its expiry is unknown (§13.1-8, see the module) — unless a read failed here less than
        :data:`READ_AGAIN_MS` ago."""
        expires = t.meta.doc_expires_ms
        if expires is not None and now <= expires:
            return False
        again = self._again.get(t.id)
        return again is None or again <= now


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


def dated(t: Thread, doc: DiscoveryDocument) -> bool:
    """Keep when ``doc``, just read for ``t``, expires (§13.1-8); whether that changed (the
    thread's record then needs a Commit)."""
    if t.meta.doc_expires_ms == doc.expires:
        return False
    t.meta.doc_expires_ms = doc.expires
    return True


def left(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (the running loop's time; None: no bound), at least a
    millisecond: the ``timeout_s`` of one request within a wait that ``deadline`` bounds."""
    if deadline is None:
        return None
    return max(deadline - asyncio.get_running_loop().time(), 0.001)


def passed(deadline: float | None) -> bool:
    """Whether ``deadline`` (the running loop's time; None: no bound) has passed."""
    return deadline is not None and asyncio.get_running_loop().time() >= deadline


def deadline_in(timeout_s: float | None) -> float | None:
    """The running loop's time ``timeout_s`` from now (None: no bound)."""
    return None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s


async def reread(client: Transport, t: Thread, *, timeout_s: float | None = None,
                 deadline: float | None = None) -> DiscoveryDocument | None:  # fmt: skip
    """The vendor's document read again from ``t.url``, verified under the relationship's
    current peer key; None when it can't be read or doesn't verify, or not before
    ``deadline`` (logged: the message then waits in the outbox as for any failed delivery)."""
    try:
        async with asyncio.timeout_at(deadline):  # retries included
            return await client.fetch_discovery(t.url, t.rel.peer_key, role="vendor",
                                                timeout_s=timeout_s)  # fmt: skip
    except TimeoutError:
        log.info("the discovery document of %s could not be read again in time", t.url)
        return None
    except (TransportError, VrmError) as exc:
        log.info("the discovery document of %s could not be read again: %s", t.url, exc)
        return None


async def follow(client: Transport, ledger: Ledger, documents: Documents, t: Thread, now: int,
                 *, timeout_s: float | None = None, deadline: float | None = None
                 ) -> bool:  # fmt: skip
    """Read the vendor's document again for ``t`` (the caller holds the thread's lock) and
    follow it; whether the inbox moved. The thread's record is committed when it changed: the
    URLs and types the document names, or its expiry (§13.1-8)."""
    doc = await reread(client, t, timeout_s=timeout_s, deadline=deadline)
    if doc is None:
        documents.unread(t.id, now)
        return False
    documents.read(t.id)
    inbox = t.meta.inbox
    moved = moved_to(t, doc)
    if not dated(t, doc) and not moved:
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


async def current(s: Parts, t: Thread, now: int, *, timeout_s: float | None = None,
                  deadline: float | None = None) -> None:  # fmt: skip
    """Before ``t``'s inbox or history is used (the caller holds the thread's lock): follow the
    vendor's document where the one stored has expired (:meth:`Documents.due`, §13.1-8). A read
    that fails leaves the URLs known (:func:`follow`)."""
    if s.documents.due(t, now):
        await follow(s.client, s.ledger, s.documents, t, now, timeout_s=timeout_s,
                     deadline=deadline)  # fmt: skip


async def post_following(s: Parts, t: Thread, item: OutboxItem, now: int, *,
                         retry: RetryPolicy | None, deadline: float | None = None
                         ) -> list[bytes]:  # fmt: skip
    """POST ``item`` to the thread's inbox (the caller holds the thread's lock): first
    following the vendor's document where the one stored has expired (:meth:`Documents.due`),
    and once more after an answer that the inbox is not there (:data:`MOVED`). The reply
    envelopes, as :meth:`~vrmproto.client.Transport.post_envelope` returns them.

    ``deadline`` (the running loop's time) bounds every request here, retries included: one
    still waiting then is given up as :class:`~vrmproto.client.Unreachable`. Only requests are
    cut short, never a Commit: a message given up so stays in the outbox, as persisted."""
    timeout_s = left(deadline)
    await current(s, t, now, timeout_s=timeout_s, deadline=deadline)
    try:
        return await _post(s.client, t, item, timeout_s, retry, deadline=deadline)
    except TransportError as exc:
        if not says_moved(exc) or not await follow(s.client, s.ledger, s.documents, t, now,
                                                   timeout_s=timeout_s,
                                                   deadline=deadline):  # fmt: skip
            raise
    return await _post(s.client, t, item, timeout_s, retry, deadline=deadline)


async def _post(client: Transport, t: Thread, item: OutboxItem, timeout_s: float | None,
                retry: RetryPolicy | None, *, deadline: float | None) -> list[bytes]:  # fmt: skip
    try:
        posting = client.post_envelope(
            t.meta.inbox, item.envelope, expected_keys=t.problem_keys, ref=item.msg_hash,
            channel=t.id, timeout_s=timeout_s if deadline is None else left(deadline),
            retry=retry,
        )  # fmt: skip
        if deadline is None:  # no timer to arm: only each request is bounded (``timeout_s``)
            return await posting
        async with asyncio.timeout_at(deadline):
            return await posting
    except TimeoutError:  # the deadline's (the transport's own failures are Unreachable)
        raise Unreachable(f"POST {t.meta.inbox}: timed out") from None
