"""A client for one vrmproto endpoint over HTTP (spec §12, §13): discovery, inbox, history.

:class:`EndpointClient` is a thin layer over the sans-IO binding (:mod:`vrmproto._binding`): it
moves bytes and turns HTTP outcomes into typed errors (see :mod:`vrmproto.client._errors`).

- ``200`` on the inbox: the reply envelopes, receipt first (§12.3-1); the caller verifies them
  against its relationship.
- ``4xx`` with a signed problem: :class:`~vrmproto.PeerProblemError`, after the problem's
  signature is checked against the endpoint's key when it is known (§12.4-1). A 4xx whose body
  does not verify is :class:`InvalidResponse`, never a refusal: only the peer's signed word
  makes a message undeliverable.
- connection failures, timeouts, ``5xx``, ``429`` and ``408``: :class:`Transient` (or its
  :class:`Unreachable`), retried here with exponential backoff and full jitter, a bounded
  number of times; ``Retry-After`` is honoured (§12.4-3). The sleep and the random source are
  injected, so tests record the waits instead of waiting.

Retrying an inbox POST is safe: the receiver de-duplicates by (sender, id) and answers a replay
with the byte-identical stored response (§12.3-4).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
from multidict import CIMultiDict

from vrmproto._binding import (
    CONTENT_TYPE,
    MAX_DISCOVERY_BYTES,
    SIGNATURE_HEADER,
    WELL_KNOWN_PATH,
    DiscoveryDocument,
    decode_history,
    decode_replies,
    sign_history_request,
    verify_discovery,
)
from vrmproto._closing import AsyncClosing
from vrmproto._envelope import open_envelope
from vrmproto._errors import PeerProblemError, ProtocolError, TransportError
from vrmproto._history import Entry
from vrmproto._keys import Identity
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._messages import ProblemReport
from vrmproto.client._errors import InvalidResponse, Transient, Unreachable

__all__ = [
    "NO_RETRY",
    "Clock",
    "EndpointClient",
    "RandomId",
    "RetryPolicy",
    "Sleep",
    "default_clock",
    "default_random_id",
]

Clock = Callable[[], int]
RandomId = Callable[[], bytes]
Sleep = Callable[[float], Awaitable[None]]

_RETRY_STATUSES = frozenset({408, 429})
#: Most entries one history export may hold, over all its pages.
MAX_HISTORY_ENTRIES = 1_000_000


def default_clock() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def default_random_id() -> bytes:
    """16 random bytes: message ids, thread ids, nonces."""
    return os.urandom(16)


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
        ceiling: float = min(self.cap_s, self.base_s * 2.0 ** max(retry - 1, 0))
        return rand() * ceiling


#: One try, no retries: for callers that queue failures themselves.
NO_RETRY = RetryPolicy(attempts=1)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (§12.4-3); only the delta-seconds form is used."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 86_400 else None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return url


def discovery_url(base_url: str) -> str:
    """Where the discovery document of an endpoint URL is: its path followed by
    ``/.well-known/vrm`` (§13.3-2) — the origin's for a URL without a path, a relationship's
    own for an agent endpoint's URL (§12.11-4)."""
    parts = urlsplit(_check_url(base_url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + WELL_KNOWN_PATH,
                       "", ""))  # fmt: skip


class EndpointClient(AsyncClosing):
    """HTTP access to vrmproto endpoints.

    ``session`` may be given (it is then not closed by :meth:`close`, and keeping identities
    unlinkable is then the caller's job, §11.6-3). Otherwise the client makes its own sessions,
    all with ``trust_env=False`` (no proxy from the environment), ``timeout_s`` per request and
    no cookie jar (cookies would link the identities of one person, §11.6-3), and keeps TCP
    connections apart by *channel* so that no connection carries two identities (§11.6-3):

    - a request made for a relationship names its thread as its channel; requests of one
      channel share kept-alive connections (at most ``per_channel`` at once), so the messages
      of a relationship do not pay a new handshake each;
    - a request with no channel (discovery, before any identity speaks) gets a connection of
      its own, closed after it, at most ``pool_size`` at once.

    The ``max_channels`` most recently used channels keep their connections; an older idle one
    is closed when a new one opens. ``sleep`` and ``rand`` drive the backoff.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Clock = default_clock,
        random_id: RandomId = default_random_id,
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        pool_size: int = 100,
        per_channel: int = 2,
        max_channels: int = 64,
        limits: Limits = DEFAULT_LIMITS,
        max_response_bytes: int = 4 * 1024 * 1024,
        max_history_bytes: int = 64 * 1024 * 1024,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self.clock = clock
        self.random_id = random_id
        self.retry = retry if retry is not None else RetryPolicy()
        self.timeout_s = timeout_s
        self.pool_size = pool_size
        self.per_channel = per_channel
        self.max_channels = max_channels
        self._channels: OrderedDict[bytes, aiohttp.ClientSession] = OrderedDict()
        self._busy: Counter[bytes] = Counter()
        self.limits = limits
        self.max_response_bytes = max_response_bytes
        self.max_history_bytes = max_history_bytes
        self._sleep = sleep
        self._rand = rand
        self._not_before: dict[str, int] = {}  # origin -> ms: a 429's Retry-After (§12.9-7)

    def _new_session(self, connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def _acquire(self, channel: bytes | None) -> aiohttp.ClientSession:
        """The session a request of ``channel`` goes out on (see the class docstring), the
        channel marked busy until :meth:`_release`."""
        if not self._owns_session or channel is None:
            if self._session is None or (self._owns_session and self._session.closed):
                self._session = self._new_session(aiohttp.TCPConnector(
                    limit=self.pool_size, ttl_dns_cache=300, force_close=True))  # fmt: skip
            return self._session
        session = self._channels.get(channel)
        if session is None or session.closed:
            session = self._new_session(aiohttp.TCPConnector(
                limit=self.per_channel, ttl_dns_cache=300))  # fmt: skip
            self._channels[channel] = session
        self._channels.move_to_end(channel)
        self._busy[channel] += 1  # before any await: a busy channel is never closed for another
        excess = len(self._channels) - self.max_channels
        if excess > 0:  # oldest first; taken out before awaiting, so no other caller sees them
            idle = [c for c in self._channels if c not in self._busy and c != channel]
            try:
                for old in [self._channels.pop(c) for c in idle[:excess]]:
                    await old.close()
            except BaseException:
                self._release(channel)
                raise
        return session

    async def close(self) -> None:
        """Close the sessions this client made."""
        if not self._owns_session:
            return
        sessions = [*self._channels.values(), self._session]
        self._channels.clear()
        for session in sessions:
            if session is not None and not session.closed:
                await session.close()

    # -- one request, with retries ---------------------------------------------------------

    async def _once(
        self,
        method: str,
        url: str,
        body: bytes | None,
        *,
        headers: Mapping[str, str],
        timeout_s: float | None,
        cap: int,
        redirects: bool,
        channel: bytes | None,
    ) -> _Answer:
        timeout = aiohttp.ClientTimeout(total=timeout_s if timeout_s is not None else
                                        self.timeout_s)
        session = await self._acquire(channel)
        try:
            async with session.request(
                method, url, data=body, headers=dict(headers), timeout=timeout,
                allow_redirects=redirects, max_redirects=3,
            ) as resp:
                if resp.content_length is not None and resp.content_length > cap:
                    raise InvalidResponse(
                        f"{url} answered {resp.content_length} bytes; the limit is {cap}",
                        status=resp.status,
                    )
                buf = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    buf += chunk
                    if len(buf) > cap:
                        raise InvalidResponse(f"{url} answered more than {cap} bytes",
                                              status=resp.status)
                # header names are case-insensitive (RFC 9110 §5.1); a proxy may lower-case them
                return _Answer(resp.status, CIMultiDict(resp.headers), bytes(buf), str(resp.url))
        finally:
            self._release(channel)

    def _release(self, channel: bytes | None) -> None:
        if channel is not None and channel in self._busy:
            self._busy[channel] -= 1
            if not self._busy[channel]:
                del self._busy[channel]

    async def _request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        *,
        headers: Mapping[str, str],
        timeout_s: float | None,
        retry: RetryPolicy | None,
        cap: int,
        redirects: bool = False,
        channel: bytes | None = None,
    ) -> _Answer:
        """Send with retries on :class:`Transient` failures only (§12.4-3)."""
        policy = retry if retry is not None else self.retry
        origin = _origin(url)
        wait_ms = self._not_before.get(origin, 0) - self.clock()
        if wait_ms > 0:
            raise Transient(f"{origin} asked us to wait {wait_ms} ms more (§12.9-7)",
                            status=429, retry_after=wait_ms / 1000)
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await self._once(
                    method, url, body, headers=headers, timeout_s=timeout_s, cap=cap,
                    redirects=redirects, channel=channel,
                )
            except aiohttp.InvalidURL as exc:
                raise TransportError(f"invalid URL {url!r}: {exc}") from None
            except aiohttp.TooManyRedirects:
                raise InvalidResponse(f"{method} {url}: too many redirects") from None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                err: Transient = Unreachable(f"{method} {url}: {_describe(exc)}")
            else:
                if answer.status < 500 and answer.status not in _RETRY_STATUSES:
                    return answer
                err = Transient(
                    f"{method} {url} answered {answer.status}",
                    status=answer.status,
                    retry_after=_retry_after(answer.headers),
                )
                if answer.status == 429 and err.retry_after:
                    self._not_before[origin] = self.clock() + int(err.retry_after * 1000)
            if attempt >= policy.attempts:
                raise err
            if err.retry_after is not None:
                if err.retry_after > policy.max_retry_after_s:
                    raise err
                delay = err.retry_after
            else:
                delay = policy.backoff(attempt, self._rand)
            await self._sleep(delay)

    def _problem(
        self,
        answer: _Answer,
        *,
        expected_keys: Collection[bytes] | None,
        ref: bytes | None,
    ) -> TransportError:
        """The error a 4xx answer stands for: a verified refusal or an unusable answer."""
        status = answer.status
        try:
            msg = open_envelope(answer.body, now=self.clock(), limits=self.limits)
        except ProtocolError as exc:
            return InvalidResponse(
                f"{answer.url} answered {status} with a body that is not a valid problem: {exc}",
                status=status,
            )
        if msg.type != ProblemReport.TYPE:
            return InvalidResponse(f"{answer.url} answered {status} with a {msg.type}",
                                   status=status)
        if expected_keys is not None and msg.sender not in expected_keys:
            return InvalidResponse(
                f"{answer.url} answered {status} with a problem signed by another key",
                status=status,
            )
        body: ProblemReport = msg.body
        if ref is not None and body.ref != ref:
            # §9.1-10: only a problem that names the message sent refuses it. One that names no
            # message (or another) may have been taken from elsewhere and injected.
            about = "no message" if body.ref is None else "another message"
            return InvalidResponse(
                f"{answer.url} answered {status} with a problem about {about} "
                f"({body.code})",
                status=status,
            )
        return PeerProblemError(body.code, body.detail, status=status, clause=body.clause or "")

    # -- the three routes ------------------------------------------------------------------

    async def fetch_discovery(
        self,
        base_url: str,
        expected_key: bytes | None = None,
        *,
        role: str | None = None,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> DiscoveryDocument:
        """GET the discovery document (:func:`discovery_url`) and verify it (§13.1); inbox and
        history become absolute URLs.

        Raises :class:`~vrmproto.ProtocolError` for a document that does not verify (a tampered
        body, a signature by another key than ``expected_key``: ``bad_key``; an unusable key,
        §13.1-9; no version we speak, or another ``role`` than the one given, §13.1-10), and
        the transport errors for the rest.
        """
        url = discovery_url(base_url)
        answer = await self._request(
            "GET", url, headers={"Accept": "application/json"}, timeout_s=timeout_s,
            retry=retry, cap=MAX_DISCOVERY_BYTES, redirects=True,
        )
        if answer.status != 200:
            raise InvalidResponse(
                f"{url} answered {answer.status}; is it a vrmproto endpoint?",
                status=answer.status,
            )
        doc = verify_discovery(
            answer.body, answer.headers.get(SIGNATURE_HEADER), now=self.clock(),
            expected_key=expected_key, role=role,
        )
        try:
            inbox = _check_url(urljoin(answer.url, doc.inbox))
            history = _check_url(urljoin(answer.url, doc.history))
        except ValueError as exc:
            raise InvalidResponse(f"{url}: {exc}") from None
        return replace(doc, inbox=inbox, history=history)

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
        """POST one envelope to an inbox (§12.3); the reply envelopes, receipt first.

        An empty list is the ``204`` that answers an accepted receipt or problem (§12.3-3).
        ``expected_keys`` are the keys a problem may be signed by (the endpoint's); ``ref`` the
        hash of the message sent: only a problem whose ``ref`` is that hash refuses it
        (§9.1-10); any other 4xx answer is :class:`InvalidResponse`, a failure to retry.
        ``channel`` (the thread) lets the messages of one relationship share connections.
        """
        answer = await self._request(
            "POST", inbox_url, envelope,
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
            timeout_s=timeout_s, retry=retry, cap=self.max_response_bytes, channel=channel,
        )
        if answer.status == 204:  # a receipt or a problem was accepted: no answer (§12.3-3)
            return []
        if answer.status == 200:
            ctype = answer.headers.get("Content-Type", "")
            if ctype.split(";")[0].strip().lower() != CONTENT_TYPE:
                raise InvalidResponse(f"{inbox_url} answered 200 with {ctype!r}", status=200)
            try:
                return decode_replies(answer.body, limits=self.limits)
            except ProtocolError as exc:
                raise InvalidResponse(f"{inbox_url}: {exc}", status=200) from None
        if 400 <= answer.status < 500:
            raise self._problem(answer, expected_keys=expected_keys, ref=ref)
        raise InvalidResponse(f"{inbox_url} answered {answer.status}", status=answer.status)

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
        """The peer's copy of a relationship's history (§12.5), not yet verified.

        Every page from ``start`` on (§12.5-5). Signed by ``identity`` (our current key in the
        thread); run :func:`~vrmproto.verify_entries` on the result before trusting it.
        """
        entries: list[Entry] = []
        while True:  # §12.5-5: page until an answer holds no entries
            page = await self._history_page(history_url, identity, thread, peer_key,
                                            start=start, timeout_s=timeout_s, retry=retry)
            if not page:
                return entries
            if page[0].index != start or len(entries) + len(page) > MAX_HISTORY_ENTRIES:
                raise InvalidResponse(f"{history_url}: the export does not continue at {start}",
                                      status=200)
            entries.extend(page)
            start = page[-1].index + 1

    async def _history_page(
        self,
        history_url: str,
        identity: Identity,
        thread: bytes,
        peer_key: bytes,
        *,
        start: int,
        timeout_s: float | None,
        retry: RetryPolicy | None,
    ) -> list[Entry]:
        body = sign_history_request(
            identity, thread=thread, recipient=peer_key, now=self.clock(),
            nonce=self.random_id(), start=start,
        )
        answer = await self._request(
            "POST", history_url, body,
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
            timeout_s=timeout_s, retry=retry, cap=self.max_history_bytes, channel=thread,
        )
        if answer.status == 200:
            try:
                return decode_history(answer.body)
            except ProtocolError as exc:
                raise InvalidResponse(f"{history_url}: {exc}", status=200) from None
        if 400 <= answer.status < 500:
            raise self._problem(answer, expected_keys=(peer_key,), ref=None)
        raise InvalidResponse(f"{history_url} answered {answer.status}", status=answer.status)
