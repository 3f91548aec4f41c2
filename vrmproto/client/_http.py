"""A client for one vrmproto endpoint over HTTP (spec §12, §13): discovery, inbox, history.

:class:`EndpointClient` is the HTTP :class:`~vrmproto.client.Transport`, a thin layer over the
sans-IO binding (:mod:`vrmproto.binding`): it moves bytes, and the seam's answer readers
(:mod:`vrmproto.client._transport`) turn HTTP outcomes into results or typed errors (see
:mod:`vrmproto.client._errors`).

- ``200`` on the inbox: the reply envelopes, receipt first (§12.3-1); the caller verifies them
  against its relationship.
- ``4xx`` with a signed problem: :class:`~vrmproto.PeerProblemError`, after the problem's
  signature is checked against the endpoint's key when it is known (§12.4-1). A 4xx whose body
  does not verify is :class:`InvalidResponse`, never a refusal: only the peer's signed word
  makes a message undeliverable.
- connection failures, timeouts, ``5xx`` (and past 599, RFC 9110 §15), ``429`` and ``408``:
  :class:`Transient` (or its :class:`Unreachable`), retried here with exponential backoff and
  full jitter, a bounded number of times; ``Retry-After`` is honoured (§12.4-3). The sleep and
  the random source are injected, so tests record the waits instead of waiting.
- bytes that are not HTTP/1.1: :class:`InvalidResponse`, not retried here (the same bytes).

Retrying an inbox POST is safe: the receiver de-duplicates by (sender, id) and answers a replay
with the byte-identical stored response (§12.3-4).

The POSTs (inbox and history) and the discovery GETs go out through the lean HTTP/1.1 client
of :mod:`vrmproto.client._http_conn` when the client owns its connections; a discovery GET
that is redirected is made again through aiohttp, which follows the redirect, as is every
request on a ``session`` the caller gave. Both keep the same guarantees (see
:class:`EndpointClient`) and fail with the same errors, worded alike by
:func:`describe_failure`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Collection, Mapping
from types import MappingProxyType
from urllib.parse import urljoin, urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from vrmproto._closing import AsyncClosing
from vrmproto._errors import TransportError
from vrmproto._history import Entry
from vrmproto._hosts import nearer, url_class
from vrmproto._http1 import IncompleteResponse, MalformedResponse, ResponseTooLarge
from vrmproto._keys import Identity
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto.binding import (
    CONTENT_TYPE,
    MAX_DISCOVERY_BYTES,
    DiscoveryDocument,
    discovery_url,
    sign_history_request,
)
from vrmproto.client._errors import InvalidResponse, Transient, Unreachable
from vrmproto.client._failures import describe_failure, unreachable_words
from vrmproto.client._http_conn import Connections, Target, target
from vrmproto.client._transport import (
    NO_RETRY,
    Answer,
    Clock,
    RandomId,
    RetryPolicy,
    collect_pages,
    default_clock,
    default_random_id,
    discovery_from_answer,
    history_from_answer,
    replies_from_answer,
    transient_from_answer,
)

# Besides EndpointClient and Sleep, these names live in _transport (and the failure words in
# _failures); they are re-exported here because others still import them from here (new
# code: import them from where they live).
__all__ = [
    "NO_RETRY",
    "Clock",
    "EndpointClient",
    "RandomId",
    "RetryPolicy",
    "Sleep",
    "default_clock",
    "default_random_id",
    "describe_failure",
    "unreachable_words",
]

Sleep = Callable[[float], Awaitable[None]]


#: The header fields of a POST of ours (a mapping nobody changes: every request reads it).
_POST_HEADERS: Mapping[str, str] = MappingProxyType({"Content-Type": CONTENT_TYPE,
                                                     "Accept": CONTENT_TYPE})
_POST_FIELDS = tuple(_POST_HEADERS.items())

#: The statuses aiohttp follows to another URL (a GET's: RFC 9110 §15.4).
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Most redirects one GET follows (discovery, §13.1): each to a URL no nearer (``_hosts``).
MAX_REDIRECTS = 3


def _redirected(url: str, here: str, location: str) -> str:
    """Where a redirect from ``here`` (asked for as ``url``) leads: an http(s) URL no nearer
    to this machine than ``url`` (:func:`vrmproto._hosts.nearer`). A public address's
    redirect to a local network's or this machine's was followed: a vendor, or anyone whose
    URL reached the agent (an intentcast's answer, §15.4-2), could aim its requests at the
    person's router or a cloud's metadata service on a path of its choosing."""
    target = urljoin(here, location)
    if urlsplit(target).scheme not in ("http", "https"):
        raise InvalidResponse(f"{url} redirects to {target!r}, not an http(s) URL")
    if nearer(url, target):
        where = "this machine" if url_class(target) == "loopback" else "a local network"
        raise InvalidResponse(f"{url} redirects to {target}, an address of {where}; not "
                              "followed")  # fmt: skip
    return target


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class EndpointClient(AsyncClosing):
    """HTTP access to vrmproto endpoints.

    ``session`` (aiohttp) may be given: every request then goes through it, it is not closed by
    :meth:`close`, and keeping identities unlinkable is the caller's job (§11.6-3). Otherwise
    the client makes its own connections — no proxy from the environment, ``timeout_s`` per
    request, no cookies (cookies would link the identities of one person, §11.6-3) — and keeps
    them apart by *channel* so that no connection carries two identities (§11.6-3):

    - a request made for a relationship names its thread as its channel; requests of one
      channel share kept-alive connections (at most ``per_channel`` at once), so the messages
      of a relationship do not pay a new handshake each;
    - a request with no channel (discovery, before any identity speaks) gets a connection of
      its own, closed after it, at most ``pool_size`` at once.

    The ``max_channels`` most recently used channels keep their connections; an older idle one
    is closed when a new one opens. ``sleep`` and ``rand`` drive the backoff.

    ``max_response_bytes`` caps the body of an inbox answer (§12.3); ``max_history_bytes`` the
    bodies of all the pages of one history export together (§12.5-7).

    The POSTs (inbox §12.3, history §12.5) and discovery GETs (§13.1) go through
    :mod:`vrmproto.client._http_conn`, a lean HTTP/1.1 client over the sans-IO reader
    :mod:`vrmproto._http1` (aiohttp's client cost more CPU per message than all of the agent's
    cryptography, #12); a discovery GET answered with a redirect is made again through an
    aiohttp session, which follows it, whose connections are each closed after their request.
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
        self.limits = limits
        self.max_response_bytes = max_response_bytes
        self.max_history_bytes = max_history_bytes
        self._sleep = sleep
        self._rand = rand
        self._not_before: dict[str, int] = {}  # origin -> ms: a 429's Retry-After (§12.9-7)
        self._conns = Connections(pool_size=pool_size, per_channel=per_channel,
                                  max_channels=max_channels)  # fmt: skip
        self._targets: dict[tuple[str, str, tuple[tuple[str, str], ...], bool], Target] = {}
        self._last_fields: tuple[tuple[str, str], ...] | None = None  # of the last answer
        self._last_view: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())

    def _new_session(self, connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def _aiohttp(self) -> aiohttp.ClientSession:
        """The session for what is not a POST on the client's own connections: the caller's,
        or one of its own whose every connection is closed after its request, so that none
        carries two identities (§11.6-3)."""
        if self._owns_session and (self._session is None or self._session.closed):
            self._session = self._new_session(aiohttp.TCPConnector(
                limit=self.pool_size, ttl_dns_cache=300, force_close=True))  # fmt: skip
        assert self._session is not None
        return self._session

    async def close(self) -> None:
        """Close the sessions this client made."""
        if not self._owns_session:
            return
        self._conns.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()
        await asyncio.sleep(0)  # let the closed transports' callbacks run

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
    ) -> Answer:
        if self._owns_session and method == "POST" and not redirects:
            return await self._lean(method, url, body or b"", headers=headers,
                                    timeout_s=timeout_s, cap=cap, channel=channel)  # fmt: skip
        if self._owns_session and method == "GET" and channel is None and body is None:
            # Discovery on a connection of its own, closed after it, as aiohttp's session here
            # does: the lean client's, as the POSTs (an intentcast fetches one per vendor,
            # and aiohttp's client cost several times the lean one's CPU, #12). A redirect
            # is followed by aiohttp, from the start.
            answer = await self._lean(method, url, b"", headers=headers, timeout_s=timeout_s,
                                      cap=cap, channel=None)  # fmt: skip
            if not (redirects and answer.status in _REDIRECTS):
                return answer
        timeout = aiohttp.ClientTimeout(total=timeout_s if timeout_s is not None else
                                        self.timeout_s)
        at = url
        for hop in range(MAX_REDIRECTS + 1):
            async with self._aiohttp().request(
                method, at, data=body, headers=dict(headers), timeout=timeout,
                allow_redirects=False,
            ) as resp:
                if redirects and resp.status in _REDIRECTS and resp.headers.get("Location"):
                    if hop == MAX_REDIRECTS:
                        raise aiohttp.TooManyRedirects(resp.request_info, (resp,))
                    at = _redirected(url, str(resp.url), resp.headers["Location"])
                    continue
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
                # header names are case-insensitive (RFC 9110 §5.1): Answer.header ignores case
                return Answer(resp.status, resp.headers, bytes(buf), str(resp.url))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _lean(
        self,
        method: str,
        url: str,
        body: bytes,
        *,
        headers: Mapping[str, str],
        timeout_s: float | None,
        cap: int,
        channel: bytes | None,
    ) -> Answer:
        """One request on the lean client's connections (:mod:`vrmproto.client._http_conn`)."""
        fields = _POST_FIELDS if headers is _POST_HEADERS else tuple(headers.items())
        key = (method, url, fields, channel is None)
        to = self._targets.get(key)
        if to is None:
            try:
                to = target(method, url, fields, close=channel is None)
            except ValueError as exc:
                raise TransportError(f"invalid URL {url!r}: {exc}") from None
            if len(self._targets) >= 1024:  # URLs of vendors long gone
                self._targets.clear()
            self._targets[key] = to
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s if timeout_s is not None else self.timeout_s)
        try:
            response = await self._conns.request(to, body, channel=channel, deadline=deadline,
                                                 cap=cap, loop=loop)  # fmt: skip
        except ResponseTooLarge as exc:
            what = (f"{exc.declared} bytes; the limit is {cap}" if exc.declared is not None
                    else f"more than {cap} bytes")  # fmt: skip
            raise InvalidResponse(f"{url} answered {what}", status=exc.status) from None
        # header names are case-insensitive (RFC 9110 §5.1): Answer.header ignores case. The
        # reader hands out the same fields for the same head (its memo): so is their view
        # (read only) made once for them.
        fields_in = response.headers
        if fields_in is not self._last_fields:
            self._last_view = CIMultiDictProxy(CIMultiDict(fields_in))
            self._last_fields = fields_in
        return Answer(response.status, self._last_view, response.body, url)

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
    ) -> Answer:
        """Send with retries on :class:`Transient` failures only (§12.4-3)."""
        policy = retry if retry is not None else self.retry
        if self._not_before:  # (none unless a peer answered 429 with a Retry-After)
            origin = _origin(url)
            wait_ms = self._not_before.get(origin, 0) - self.clock()
            if wait_ms > 0:
                raise Transient(f"{origin} asked us to wait {wait_ms} ms more (§12.9-7)",
                                status=429, retry_after=wait_ms / 1000)
        attempt = 0
        while True:
            attempt += 1
            try:
                if self._owns_session and method == "POST" and not redirects:  # as _once would
                    answer = await self._lean(method, url, body or b"", headers=headers,
                                              timeout_s=timeout_s, cap=cap, channel=channel)
                else:
                    answer = await self._once(
                        method, url, body, headers=headers, timeout_s=timeout_s, cap=cap,
                        redirects=redirects, channel=channel,
                    )  # fmt: skip
            except aiohttp.InvalidURL as exc:
                raise TransportError(f"invalid URL {url!r}: {exc}") from None
            except aiohttp.TooManyRedirects:
                raise InvalidResponse(f"{method} {url}: too many redirects") from None
            except (MalformedResponse, aiohttp.ClientResponseError) as exc:
                if not isinstance(exc, IncompleteResponse | aiohttp.ClientHttpProxyError):
                    # a server answered, not in HTTP/1.1: asked again, it would say the same
                    raise InvalidResponse(f"{method} {url}: {describe_failure(exc)}") from None
                err: Transient = Unreachable(f"{method} {url}: {describe_failure(exc)}")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                err = Unreachable(f"{method} {url}: {describe_failure(exc)}")
            else:
                transient = transient_from_answer(answer, request=f"{method} {url}")
                if transient is None:
                    return answer
                err = transient
                if answer.status == 429 and err.retry_after:
                    self._not_before[_origin(url)] = self.clock() + int(err.retry_after * 1000)
            if attempt >= policy.attempts:
                raise err
            if err.retry_after is not None:
                if err.retry_after > policy.max_retry_after_s:
                    raise err
                delay = err.retry_after
            else:
                delay = policy.backoff(attempt, self._rand)
            await self._sleep(delay)

    # -- the three routes: the Transport protocol -----------------------------------------

    async def fetch_discovery(
        self,
        base_url: str,
        expected_key: bytes | None = None,
        *,
        role: str | None = None,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> DiscoveryDocument:
        """GET the discovery document (:func:`~vrmproto.binding.discovery_url`) and verify it
        (§13.1); inbox and history become absolute URLs (§13.1-7).

        A document that does not verify (a tampered body, a signature by another key than
        ``expected_key``: ``bad_key``; an unusable key, §13.1-9; no version we speak, or
        another ``role`` than the one given, §13.1-10) is the vendor's fault:
        :class:`~vrmproto.client._errors.PeerRuleError`, an :class:`InvalidResponse` whose
        ``error`` is the rule broken, and that :class:`~vrmproto.ProtocolError` too. The
        transport errors for the rest.
        """
        url = discovery_url(base_url)
        answer = await self._request(
            "GET", url, headers={"Accept": "application/json"}, timeout_s=timeout_s,
            retry=retry, cap=MAX_DISCOVERY_BYTES, redirects=True,
        )
        return discovery_from_answer(answer, now=self.clock(), expected_key=expected_key,
                                     role=role, what=f"the discovery document of {base_url}")

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
            "POST", inbox_url, envelope, headers=_POST_HEADERS,
            timeout_s=timeout_s, retry=retry, cap=self.max_response_bytes, channel=channel,
        )
        return replies_from_answer(answer, now=self.clock(), limits=self.limits,
                                   expected_keys=expected_keys, ref=ref)  # fmt: skip

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

        The answers of all the pages share one budget, ``max_history_bytes``: each page may
        use what the ones before it left, so a vendor that answers page after page of large
        entries cannot make us hold more than that (:class:`InvalidResponse` once it tries).
        """
        budget = self.max_history_bytes

        async def page(at: int) -> list[Entry]:
            nonlocal budget
            if budget <= 0:
                raise InvalidResponse(f"{history_url}: the export is larger than "
                                      f"{self.max_history_bytes} bytes", status=200)  # fmt: skip
            body = sign_history_request(
                identity, thread=thread, recipient=peer_key, now=self.clock(),
                nonce=self.random_id(), start=at,
            )  # fmt: skip
            try:
                answer = await self._request(
                    "POST", history_url, body,
                    headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
                    timeout_s=timeout_s, retry=retry, cap=budget, channel=thread,
                )  # fmt: skip
            except InvalidResponse as exc:
                if budget == self.max_history_bytes or exc.status != 200:
                    raise
                raise InvalidResponse(f"{history_url}: the export is larger than "
                                      f"{self.max_history_bytes} bytes", status=200) from None
            budget -= len(answer.body)
            return history_from_answer(answer, now=self.clock(), limits=self.limits,
                                       peer_key=peer_key)  # fmt: skip

        return await collect_pages(page, start=start, url=history_url)
