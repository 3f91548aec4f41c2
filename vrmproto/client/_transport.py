"""The transport seam: what the customer's node needs from a network (spec §12, §13).

:class:`Transport` is the whole of it — fetch and verify a discovery document, post one envelope
to an inbox, fetch a relationship's history — so the outbox and the agent work over any
transport that implements it: :class:`~vrmproto.client.EndpointClient` (HTTP),
:class:`vrmproto.testing.transport.MemoryTransport` (an in-process endpoint, no sockets), a
relay. A transport only moves bytes; the functions here turn the peer's :class:`Answer` into the
result or the typed error, the same way for every transport:

- :func:`discovery_from_answer` — a verified :class:`~vrmproto.binding.DiscoveryDocument` with
  absolute inbox and history URLs (§13.1), or :class:`~vrmproto.ProtocolError` /
  :class:`InvalidResponse`;
- :func:`replies_from_answer` — the reply envelopes, receipt first (§12.3-1); ``[]`` for the
  ``204`` that answers a receipt or a problem (§12.3-3); a verified refusal is
  :class:`~vrmproto.PeerProblemError` (§12.4-1, §9.1-10);
- :func:`history_from_answer` — one page of the peer's history export (§12.5-3), not yet
  verified; :func:`collect_pages` pages through it (§12.5-5);
- :func:`transient_from_answer` — 5xx, 429 and 408 as :class:`Transient`, with the peer's
  ``Retry-After`` (§12.4-3).

Failures to reach the peer are :class:`Unreachable`; every failure is a
:class:`~vrmproto.TransportError` (see :mod:`vrmproto.client._errors`), and only a verified
problem makes a message undeliverable.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from urllib.parse import urljoin, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from vrmproto._binding import relocated
from vrmproto._envelope import open_envelope
from vrmproto._errors import PeerProblemError, ProtocolError, TransportError
from vrmproto._history import Entry
from vrmproto._hosts import nearer, url_class
from vrmproto._keys import Identity, fingerprint
from vrmproto._limits import Limits
from vrmproto._messages import ProblemReport
from vrmproto.binding import (
    CONTENT_TYPE,
    SIGNATURE_HEADER,
    DiscoveryDocument,
    decode_history,
    decode_replies,
    verify_discovery,
)
from vrmproto.client._errors import InvalidResponse, KeyChangedError, Transient

__all__ = [
    "MAX_HISTORY_ENTRIES",
    "NO_RETRY",
    "Answer",
    "Clock",
    "RandomId",
    "RetryPolicy",
    "Transport",
    "collect_pages",
    "default_clock",
    "default_random_id",
    "discovery_from_answer",
    "history_from_answer",
    "replies_from_answer",
    "transient_from_answer",
]

Clock = Callable[[], int]
RandomId = Callable[[], bytes]

#: Most entries one history export may hold, over all its pages (§12.5-7).
MAX_HISTORY_ENTRIES = 1_000_000
_RETRY_STATUSES = frozenset({408, 429})
#: The longest ``Retry-After`` honoured, in seconds (§12.4-3): a day; a longer one is ignored.
MAX_RETRY_AFTER_S = 86_400


def default_clock() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


#: Ids read from ``os.urandom`` 256 at a time: one system call, not one per message (#12).
#: ``list.pop`` hands each id to one caller, whatever the threads; a forked child starts with
#: none, so it never repeats its parent's.
_ids: list[bytes] = []
_ID_BATCH = 256
if hasattr(os, "register_at_fork"):  # (POSIX)
    os.register_at_fork(after_in_child=_ids.clear)


def default_random_id() -> bytes:
    """16 random bytes from ``os.urandom``: message ids, thread ids, nonces."""
    try:
        return _ids.pop()
    except IndexError:
        block = os.urandom(16 * _ID_BATCH)
        _ids.extend([block[i : i + 16] for i in range(16, len(block), 16)])
        return block[:16]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how patiently, one request is retried after a :class:`Transient` failure.

    ``attempts`` counts every try (1 = never retry). Retry *n* waits a uniformly random time in
    ``[0, min(cap_s, base_s · 2^(n-1))]`` (exponential backoff with full jitter), or exactly the
    peer's ``Retry-After`` when it sent one no longer than ``max_retry_after_s``; a longer
    ``Retry-After`` ends the retries at once, so the caller (the outbox) can schedule it.
    """

    attempts: int = 3
    base_s: float = 0.1
    cap_s: float = 2.0
    max_retry_after_s: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_s < 0 or self.cap_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("attempts must be >= 1 and delays >= 0")

    def backoff(self, retry: int, rand: Callable[[], float]) -> float:
        """The wait before retry number ``retry`` (1-based), full jitter."""
        try:
            grown = self.base_s * 2.0 ** max(retry - 1, 0)
        except OverflowError:  # retry 1,025 and later: past any cap (or none at all)
            grown = math.inf if self.base_s else 0.0
        ceiling: float = min(self.cap_s, grown)
        return rand() * ceiling


#: One try, no retries: for callers that queue failures themselves.
NO_RETRY = RetryPolicy(attempts=1)


@runtime_checkable
class Transport(Protocol):
    """What the outbox and the agent need from a network: three requests to one endpoint.

    Every method raises a :class:`~vrmproto.TransportError` when the request fails:
    :class:`~vrmproto.PeerProblemError` for the peer's signed, verified refusal,
    :class:`Transient` (:class:`Unreachable` when nothing answered) for "try again later",
    :class:`InvalidResponse` for an answer §12 does not allow. ``timeout_s`` bounds the whole
    request; ``retry`` overrides the transport's own retry policy for this request (a transport
    that never retries may ignore it).
    """

    async def fetch_discovery(
        self,
        base_url: str,
        expected_key: bytes | None = None,
        *,
        role: str | None = None,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> DiscoveryDocument:
        """The verified discovery document of the endpoint at ``base_url`` (§13.1), its inbox
        and history as absolute URLs. :class:`~vrmproto.ProtocolError` when it does not verify:
        signed by another key than ``expected_key``, or of another ``role`` (§13.1-10)."""
        ...

    async def post_envelope(
        self,
        inbox_url: str,
        envelope: bytes,
        *,
        expected_keys: Collection[bytes] | None = None,
        ref: bytes | None = None,
        channel: bytes | None = None,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> list[bytes]:
        """Deliver one envelope (§12.3); the reply envelopes, receipt first, not yet verified
        against the relationship; ``[]`` when nothing is owed (§12.3-3).

        A refusal counts only when it is signed by one of ``expected_keys`` and its ``ref`` is
        ``ref``, the hash of the envelope (§9.1-10). ``channel`` (the thread) names what may
        share a kept-alive connection: requests of two channels never do (§11.6-3).
        """
        ...

    async def fetch_history(
        self,
        history_url: str,
        identity: Identity,
        thread: bytes,
        peer_key: bytes,
        *,
        start: int = 0,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> list[Entry]:
        """The peer's copy of ``thread``'s history from ``start`` on, every page (§12.5), asked
        for by ``identity`` (our current key in the thread); not yet verified."""
        ...


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back for one request: status, headers (names case-insensitive, RFC 9110
    §5.1), the body bytes, and the URL that answered (after any redirect)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    _ci: CIMultiDictProxy[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        headers = self.headers  # (the lean HTTP client's are case-insensitive already)
        ci = headers if type(headers) is CIMultiDictProxy else CIMultiDictProxy(
            CIMultiDict(headers))
        object.__setattr__(self, "_ci", ci)

    def header(self, name: str) -> str | None:
        """The first value of header ``name``, whatever case the peer (or a proxy) gave it."""
        return self._ci.get(name)


def transient_from_answer(answer: Answer, *, request: str = "") -> Transient | None:
    """A 5xx, 429 or 408 as a failure worth retrying, with the peer's ``Retry-After`` in seconds
    (§12.4-3; only the delta-seconds form is used); None for any other status. A status past
    599 is invalid and a client SHOULD take it as a 5xx (RFC 9110 §15): so it is, retried
    no more than one (the transport's :class:`RetryPolicy`, then the outbox's schedule).
    ``request`` (``"POST <url>"``) names what was answered in the error's text."""
    if answer.status < 500 and answer.status not in _RETRY_STATUSES:
        return None
    value = answer.header("Retry-After")
    retry_after: float | None = None
    if value is not None:
        try:
            seconds = float(value.strip())
        except ValueError:
            seconds = -1.0
        retry_after = seconds if 0 <= seconds <= MAX_RETRY_AFTER_S else None
    return Transient(f"{request or answer.url} answered {answer.status}", status=answer.status,
                     retry_after=retry_after)  # fmt: skip


def _absolute(base: str, ref: str) -> str:
    """The document's ``ref`` (its inbox, its history) as an absolute URL (§13.1-7): http(s),
    and no nearer to this machine than the document itself (:func:`vrmproto._hosts.nearer`) —
    a document on the Internet naming an inbox on the person's network or machine would have
    the agent POST there."""
    url = urljoin(base, ref)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if nearer(base, url):
        where = "this machine" if url_class(url) == "loopback" else "a local network"
        raise ValueError(f"{url} is an address of {where}, and the document is not there")
    return url


def discovery_from_answer(
    answer: Answer,
    *,
    now: int,
    expected_key: bytes | None = None,
    role: str | None = None,
    what: str | None = None,
) -> DiscoveryDocument:
    """The verified document of a discovery request's answer (§13.1), inbox and history made
    absolute against the URL that answered (§13.1-7). With ``what`` (how to name the document),
    a document that does not verify is the vendor's fault: a
    :class:`~vrmproto.client.PeerRuleError` saying so, as the transports raise it; else the
    :class:`~vrmproto.ProtocolError` of the rule broken."""
    if answer.status != 200:
        raise InvalidResponse(f"{answer.url} answered {answer.status}; is it a vrmproto "
                              "endpoint?", status=answer.status)  # fmt: skip
    try:
        doc = verify_discovery(answer.body, answer.header(SIGNATURE_HEADER), now=now,
                               expected_key=expected_key, role=role)  # fmt: skip
    except ProtocolError as exc:
        if what is None:
            raise
        raise InvalidResponse.of(exc, what, status=answer.status) from None
    try:
        return relocated(doc, _absolute(answer.url, doc.inbox),
                         _absolute(answer.url, doc.history))  # fmt: skip
    except ValueError as exc:
        raise InvalidResponse(f"{answer.url}: {exc}") from None


def problem_from_answer(
    answer: Answer,
    *,
    now: int,
    limits: Limits,
    expected_keys: Collection[bytes] | None,
    ref: bytes | None,
) -> TransportError:
    """The error a 4xx answer stands for: a verified refusal (§12.4-1), or an unusable answer.

    Only a problem signed by one of ``expected_keys`` (when given) and whose ``ref`` is ``ref``
    refuses the message sent (§9.1-10): one that names no message, or another, may have been
    taken from elsewhere and injected.
    """
    url, status = answer.url, answer.status
    try:
        msg = open_envelope(answer.body, now=now, limits=limits)
    except ProtocolError as exc:
        return InvalidResponse(f"{url} answered {status} with a body that is not a valid "
                               f"problem: {exc}", status=status)  # fmt: skip
    if msg.type != ProblemReport.TYPE:
        return InvalidResponse(f"{url} answered {status} with a {msg.type}", status=status)
    if expected_keys is not None and msg.sender not in expected_keys:
        changed = KeyChangedError(url, "", by="url", pinned=expected_keys, offered=msg.sender,
                                  path="$.from")  # fmt: skip
        return InvalidResponse(f"{url} answered {status} with a problem signed by another key "
                               f"({fingerprint(msg.sender)})", status=status,
                               error=changed)  # fmt: skip
    body: ProblemReport = msg.body
    if ref is not None and body.ref != ref:
        about = "no message" if body.ref is None else "another message"
        return InvalidResponse(f"{url} answered {status} with a problem about {about} "
                               f"({body.code})", status=status)  # fmt: skip
    return PeerProblemError(body.code, body.detail, status=status, clause=body.clause or "")


def replies_from_answer(
    answer: Answer,
    *,
    now: int,
    limits: Limits,
    expected_keys: Collection[bytes] | None = None,
    ref: bytes | None = None,
) -> list[bytes]:
    """The reply envelopes of an inbox answer, receipt first (§12.3-1); ``[]`` for a 204."""
    url, status = answer.url, answer.status
    if status == 204:  # a receipt or a problem was accepted: no answer (§12.3-3)
        return []
    if status == 200:
        ctype = answer.header("Content-Type") or ""
        if ctype.split(";")[0].strip().lower() != CONTENT_TYPE:
            raise InvalidResponse(f"{url} answered 200 with {ctype!r}", status=200)
        try:
            return decode_replies(answer.body, limits=limits)
        except ProtocolError as exc:
            raise InvalidResponse(f"{url}: {exc}", status=200) from None
    if 400 <= status < 500:
        raise problem_from_answer(answer, now=now, limits=limits, expected_keys=expected_keys,
                                  ref=ref)  # fmt: skip
    raise InvalidResponse(f"{url} answered {status}", status=status)


def history_from_answer(
    answer: Answer, *, now: int, limits: Limits, peer_key: bytes
) -> list[Entry]:
    """One page of a history export (§12.5-3), not yet verified; a refusal must be signed by
    ``peer_key``."""
    if answer.status == 200:
        try:
            return decode_history(answer.body)
        except ProtocolError as exc:
            raise InvalidResponse(f"{answer.url}: {exc}", status=200) from None
    if 400 <= answer.status < 500:
        raise problem_from_answer(answer, now=now, limits=limits, expected_keys=(peer_key,),
                                  ref=None)  # fmt: skip
    raise InvalidResponse(f"{answer.url} answered {answer.status}", status=answer.status)


async def collect_pages(
    page: Callable[[int], Awaitable[list[Entry]]], *, start: int, url: str
) -> list[Entry]:
    """Every page of a history export from ``start`` on: ``await page(start)`` until a page
    holds no entries (§12.5-5). Each page must continue where the last one ended, and the whole
    stays under :data:`MAX_HISTORY_ENTRIES`."""
    entries: list[Entry] = []
    while True:
        got = await page(start)
        if not got:
            return entries
        if got[0].index != start or len(entries) + len(got) > MAX_HISTORY_ENTRIES:
            raise InvalidResponse(f"{url}: the export does not continue at {start}", status=200)
        entries.extend(got)
        start = got[-1].index + 1
