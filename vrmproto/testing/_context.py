"""What a running case gets: the target, its discovery document, an HTTP client that records.

Every request made through :meth:`CaseContext.post`, :meth:`CaseContext.get` or
:meth:`CaseContext.request` is kept in the case's transcript (:attr:`CaseContext.exchanges`),
which every report shows byte for byte with a replay command. A case should make all its requests
this way; :attr:`CaseContext.session` is there for the rare one that needs raw aiohttp (its
requests are not recorded).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import aiohttp

from ._case import Case, CaseFailed, NoResponse
from ._exchange import DecodeBody, Exchange, default_decode_body

__all__ = ["DEFAULT_CONTENT_TYPE", "RATE_TAG", "Attempt", "CaseContext", "RateBudget",
           "suite_session"]

#: Cases with this tag measure the target's rate limits: their 429s are the evidence.
RATE_TAG = "rate"

#: Content-Type of :meth:`CaseContext.post` unless a case says otherwise.
DEFAULT_CONTENT_TYPE = "application/vnd.vrmproto+msgpack"

#: Responses are read up to this many bytes; the rest is dropped (and the exchange says so).
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


def closed_as_sent(exc: BaseException | None) -> bool:
    """Whether a request failed because the target closed its connection as the request was
    being sent or before any answer (not a connection refused): the race of a kept-alive
    connection the target closed as idle (§10.1-2) just as the suite reused it. A sender then
    delivers the same bytes again on a new one (§10.1-2, §12.6-5), and so does the suite (see
    :meth:`Attempt.deliver_again`)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False
    return isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)


#: Seconds a connection may wait in the suite's pool and still be reused. A receiver may close
#: a connection idle for its idle_timeout_ms (§10.1-2), which it does not publish; the pool's
#: clock starts when the suite has read an answer, later than the receiver's by however long a
#: loaded host kept the suite from reading. A request still lost to that race is sent again
#: (:meth:`Attempt.deliver_again`).
KEEPALIVE_S = 0.5

#: Connections the suite's session holds open at once.
CONNECTIONS = 32

#: Most deliveries of one request over connections the target closed as it was sent: one per
#: connection the pool can hold (each one lost is closed, never reused), and one on a new one.
MAX_DELIVERIES = CONNECTIONS + 2


@dataclass
class Attempt:
    """One delivery of a request, as a session made by :func:`suite_session` saw it (its
    ``trace_request_ctx``): whether it went on a connection kept alive from an earlier request
    (never set by a session without that session's trace)."""

    reused: bool = False

    def deliver_again(self, exc: BaseException | None, new_lost: int, deliveries: int) -> bool:
        """This was delivery number ``deliveries`` of a request, and failed with ``exc``: send
        the same bytes again? Only when the target closed the connection as it was sent
        (§10.1-2: a sender "delivers the same bytes again on a new one"): after a kept-alive
        connection, until the pool's stale ones are used up (each one lost is closed), and once
        after a new connection (``new_lost``: how many earlier new ones were lost), so that a
        target that closes every connection still gets no response."""
        if not closed_as_sent(exc) or deliveries >= MAX_DELIVERIES:
            return False
        return self.reused or new_lost == 0


async def _on_reuse(session: aiohttp.ClientSession, ctx: Any, params: object) -> None:
    if isinstance(ctx.trace_request_ctx, Attempt):
        ctx.trace_request_ctx.reused = True


_REUSE_TRACE = aiohttp.TraceConfig()
_REUSE_TRACE.on_connection_reuseconn.append(_on_reuse)
_REUSE_TRACE.freeze()


def suite_session(timeout: aiohttp.ClientTimeout, *, headers: Mapping[str, str] | None = None,
                  local_addr: tuple[str, int] | None = None) -> aiohttp.ClientSession:
    """A session as the suite's requests need it: no cookies kept, at most
    :data:`CONNECTIONS` connections, a kept-alive one reused for at most :data:`KEEPALIVE_S`,
    and each request's :class:`Attempt` told whether its connection was reused.
    ``local_addr``: the IPv4 address and port to connect from (default: the system's choice)."""
    family = socket.AF_INET if local_addr is not None else socket.AF_UNSPEC
    connector = aiohttp.TCPConnector(limit=CONNECTIONS, force_close=False,
                                     keepalive_timeout=KEEPALIVE_S, local_addr=local_addr,
                                     family=family)  # fmt: skip
    return aiohttp.ClientSession(
        timeout=timeout, connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
        headers=dict(headers or {}), auto_decompress=True, trace_configs=[_REUSE_TRACE],
    )  # fmt: skip


@dataclass
class RateBudget:
    """How long, in all, the run may wait out the target's ``Retry-After`` (§12.9-5) when a
    case that is not about rate limits is answered 429: the suite is one client, and its own
    requests must not turn the target's per-address limit into failures of other clauses."""

    left_s: float = 120.0
    waits: int = 0
    waited_s: float = 0.0

    def take(self, exchange: Exchange) -> float | None:
        """Seconds to wait before sending ``exchange``'s request again, or None."""
        if exchange.status != 429:
            return None
        try:
            wait = float(exchange.response_headers.get("Retry-After", ""))
        except ValueError:
            return None
        if not 0 <= wait <= self.left_s:
            return None
        self.left_s -= wait
        self.waits += 1
        self.waited_s += wait
        return wait


class CaseContext:
    """The world as one case sees it. Created by the runner, one per case.

    Attributes:
        case: the case being run.
        base_url: the target, without a trailing slash (``http://vendor.example/vrm``).
        discovery: the parsed ``GET {base_url}/.well-known/vrm`` document.
        limits: ``discovery["limits"]`` as a dict (empty if absent).
        session: the suite's ``aiohttp.ClientSession`` (no redirects followed, no cookies kept).
        rng: randomness seeded from the run's seed and the case id: the same seed gives the
            same values to this case whatever ran before it.
        state: scratch space shared by all cases of one run (keys, identities); order is random,
            so use it as a cache, never to pass results from one case to another.
        decode_body: renders body bytes in transcripts (the protocol layer's, or the default).
        rate_budget: the run's :class:`RateBudget` (None: a 429 is returned like any answer).
        exchanges: the transcript so far.
    """

    def __init__(
        self,
        *,
        case: Case,
        base_url: str,
        discovery: Mapping[str, Any],
        session: aiohttp.ClientSession,
        rng: random.Random,
        state: dict[str, Any],
        decode_body: DecodeBody | None = None,
        rate_budget: RateBudget | None = None,
    ) -> None:
        self.case = case
        self.rate_budget = rate_budget if RATE_TAG not in case.tags else None
        self.base_url = base_url.rstrip("/")
        self.discovery = discovery
        limits = discovery.get("limits")
        self.limits: dict[str, Any] = dict(limits) if isinstance(limits, Mapping) else {}
        self.session = session
        self.rng = rng
        self.state = state
        self.decode_body: DecodeBody | None = decode_body
        self.exchanges: list[Exchange] = []
        self.expected: str | None = None
        self.actual: str | None = None

    # -- requests ------------------------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        """An absolute URL: ``path_or_url`` itself if it has a scheme, else joined to the base."""
        if "://" in path_or_url:
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    async def post(
        self,
        path_or_url: str,
        body: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        headers: Mapping[str, str] | None = None,
    ) -> Exchange:
        """POST ``body`` exactly as given; record and return the exchange.

        Raises :class:`NoResponse` (a :class:`CaseFailed`) when no HTTP response arrives.
        Any HTTP status, 4xx and 5xx included, is returned, not raised: judging it is the case's
        job.
        """
        all_headers = {"Content-Type": content_type, **(headers or {})}
        return await self.request("POST", path_or_url, body=body, headers=all_headers)

    async def get(self, path_or_url: str, *, headers: Mapping[str, str] | None = None) -> Exchange:
        """GET a resource; record and return the exchange (see :meth:`post`)."""
        return await self.request("GET", path_or_url, headers=headers)

    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Exchange:
        """Any method; record and return the exchange (see :meth:`post`). A 429 with a
        ``Retry-After`` the run's :class:`RateBudget` still has room for is waited out and the
        request sent again (both exchanges are in the transcript). So is a request whose
        connection the target closed as it was sent (:func:`closed_as_sent`), on a new
        connection in the end (:meth:`Attempt.deliver_again`)."""
        new_lost = deliveries = 0
        while True:
            attempt = Attempt()
            deliveries += 1
            try:
                exchange = await self._send(method, path_or_url, body=body, headers=headers,
                                            attempt=attempt)  # fmt: skip
            except NoResponse as exc:
                if not attempt.deliver_again(exc.__cause__, new_lost, deliveries):
                    raise
                new_lost += not attempt.reused
                continue
            wait = None if self.rate_budget is None else self.rate_budget.take(exchange)
            if wait is None:
                return exchange
            await asyncio.sleep(wait)  # the target asked for it (§12.9-5)

    async def _send(
        self,
        method: str,
        path_or_url: str,
        *,
        body: bytes,
        headers: Mapping[str, str] | None,
        attempt: Attempt,
    ) -> Exchange:
        url = self.url(path_or_url)
        sent_headers = dict(headers or {})
        started = time.perf_counter()
        try:
            async with self.session.request(
                method, url, data=body or None, headers=sent_headers, allow_redirects=False,
                trace_request_ctx=attempt,
            ) as resp:
                # The headers aiohttp really sent (Host, Content-Length, … included).
                sent_headers = dict(resp.request_info.headers)
                payload, truncated = await read_capped(resp)
                exchange = self._record(
                    method,
                    url,
                    sent_headers,
                    body,
                    status=resp.status,
                    response_headers=dict(resp.headers),
                    response_body=payload,
                    started=started,
                    error=(
                        f"response truncated at {MAX_RESPONSE_BYTES} bytes" if truncated else None
                    ),
                )
        except asyncio.CancelledError:
            # The case's time limit struck mid-request: keep the request in the transcript.
            self._record(
                method,
                url,
                sent_headers,
                body,
                status=None,
                started=started,
                error="no response before the case's time limit",
            )
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            exchange = self._record(
                method, url, sent_headers, body, status=None, started=started, error=detail
            )
            raise NoResponse(
                expected=self.case.accepts,
                actual=f"no HTTP response to {method} {url} ({detail})",
                exchange=exchange,
            ) from exc
        return exchange

    def _record(
        self,
        method: str,
        url: str,
        request_headers: Mapping[str, str],
        request_body: bytes,
        *,
        status: int | None,
        started: float,
        response_headers: Mapping[str, str] | None = None,
        response_body: bytes = b"",
        error: str | None = None,
    ) -> Exchange:
        decode = self.decode_body or default_decode_body
        exchange = Exchange(
            method=method,
            url=url,
            request_headers=dict(request_headers),
            request_body=request_body,
            status=status,
            response_headers=dict(response_headers or {}),
            response_body=response_body,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
            error=error,
            request_decoded=_safe_decode(decode, request_body),
            response_decoded=_safe_decode(decode, response_body) if status is not None else "",
        )
        self.exchanges.append(exchange)
        return exchange

    # -- verdicts ------------------------------------------------------------------------------

    def expect(self, condition: bool, *, expected: str, actual: str) -> None:
        """Check one thing the clause requires, and keep the evidence either way.

        When ``condition`` holds, ``expected`` and ``actual`` are recorded and shown in the
        report as what was checked and seen; otherwise :class:`CaseFailed` is raised with them.
        """
        if not condition:
            raise CaseFailed(expected=expected, actual=actual)
        self.expected = expected if self.expected is None else f"{self.expected}; {expected}"
        self.actual = actual if self.actual is None else f"{self.actual}; {actual}"

    def fail(self, *, expected: str, actual: str) -> NoReturn:
        """Fail the case now (shorthand for raising :class:`CaseFailed`)."""
        raise CaseFailed(expected=expected, actual=actual)


async def read_capped(resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """``resp``'s body up to :data:`MAX_RESPONSE_BYTES`, and whether there was more (not read
    on: an endpoint that answers without end must not grow the suite)."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_RESPONSE_BYTES:
        chunk = await resp.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:MAX_RESPONSE_BYTES], True


def _safe_decode(decode: DecodeBody, data: bytes) -> str:
    try:
        return decode(data)
    except Exception as exc:
        return f"(decoder failed: {type(exc).__name__}: {exc})"
