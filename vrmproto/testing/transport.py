"""An in-memory :class:`~vrmproto.client.Transport`: a customer's node talks to vendor endpoints
in the same process, without sockets.

:class:`MemoryTransport` hands each request's bytes to an :class:`~vrmproto.server.Endpoint`'s
own entry points (``discovery``, ``handle_inbox``, ``handle_history``) and reads the response with
the same answer readers as the HTTP client (:func:`~vrmproto.client.replies_from_answer` …), so an
:class:`~vrmproto.client.Agent` or :class:`~vrmproto.client.Outbox` sees exactly the results and
typed errors it would see over HTTP::

    from vrmproto.client import DEFAULT_TERMS, Agent
    from vrmproto.server import Endpoint, ReferencePolicy
    from vrmproto.store import MemoryStore
    from vrmproto.testing import MemoryTransport

    # a vendor that accepts the agent's default terms (the default policy accepts none)
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
    transport = MemoryTransport(clock=clock)
    transport.add("http://acme.test",
                  Endpoint(identity, store=MemoryStore(), name="Acme", policy=policy))
    agent = await Agent.open(MemoryStore(), seed, client=transport, clock=clock)
    connected = await agent.connect("http://acme.test")
    assert connected.status == "accepted"
    await agent.close()

URLs are routed as the endpoint's HTTP app routes them: the URL picks the route (a history
request posted to an inbox is the inbox's to answer), scheme and host compare without case and a
default port is no port (RFC 3986, section 6.2.2); a path the host does not serve is its signed
``not_found`` (404, §12.2-5), a route asked with the wrong method its ``method_not_allowed``
(405, §12.2-4) — a mistake to fix, which the caller reads as an
:class:`~vrmproto.client.InvalidResponse` (or, asked with no ``ref``, a
:class:`~vrmproto.PeerProblemError`) as it would over HTTP. A host where no endpoint is
(never added, or taken off with :meth:`MemoryTransport.remove`) is
:class:`~vrmproto.client.Unreachable`, as a refused connection would be. An endpoint whose
handler raises answers 500, as its server would (logged on ``vrmproto.testing.transport``).

What it leaves out, on purpose: HTTP itself (the aiohttp layer's content-type and body-size
checks, connection limits), and retries — each request is one attempt, a ``5xx``/``429``/``408``
answer raises :class:`~vrmproto.client.Transient` at once, so a test sees every outcome.
``timeout_s`` is honoured: the endpoint finishes the request (as a server would after a client
gave up), the caller gets :class:`~vrmproto.client.Unreachable`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from vrmproto._errors import Problem
from vrmproto._history import Entry
from vrmproto._keys import Identity
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto.binding import (
    SIGNATURE_HEADER,
    DiscoveryDocument,
    discovery_url,
    sign_history_request,
)
from vrmproto.client import (
    Answer,
    RetryPolicy,
    Unreachable,
    collect_pages,
    discovery_from_answer,
    history_from_answer,
    replies_from_answer,
    transient_from_answer,
)
from vrmproto.client._transport import Clock, RandomId, default_clock, default_random_id
from vrmproto.server import Endpoint, Response

__all__ = ["MemoryTransport", "Request", "Route"]

log = logging.getLogger("vrmproto.testing.transport")

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _where(url: str) -> tuple[str, str]:
    """``url`` as a router sees it: its origin — scheme and host lower-cased, a default port
    dropped (RFC 3986, section 6.2.2) — and its path ("/" when empty); the query does not route.
    ``ValueError`` for a URL with no host or a port that is not one."""
    parts = urlsplit(url)
    scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    if not host:
        raise ValueError(f"no host in {url!r}")
    if ":" in host:
        host = f"[{host}]"
    origin = f"{scheme}://{host}"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        origin += f":{port}"
    return origin, parts.path or "/"


class Route(enum.Enum):
    """Which of an endpoint's three resources a URL names (§12.1)."""

    DISCOVERY = "discovery"
    INBOX = "inbox"
    HISTORY = "history"

    @property
    def method(self) -> str:
        """The one HTTP method the route answers (§12.2-4, §13.1)."""
        return "GET" if self is Route.DISCOVERY else "POST"


@dataclass(frozen=True, slots=True)
class Request:
    """One request the transport carried: where, what, on which channel, and the answer's
    status (None when nothing answered)."""

    route: Route | None
    url: str
    body: bytes
    channel: bytes | None
    status: int | None


class MemoryTransport:
    """A :class:`~vrmproto.client.Transport` that delivers to in-process endpoints (see the
    module docstring).

    ``clock`` verifies discovery documents and problems and dates history requests;
    ``random_id`` makes their nonces; ``address`` is the client address the endpoints see (their
    per-address rate limit, §12.9-5); ``timeout_s`` bounds a request given no ``timeout_s`` of
    its own, as :class:`~vrmproto.client.EndpointClient`'s does (None: no bound). Every request
    is logged in :attr:`requests`.
    """

    def __init__(
        self,
        endpoints: Mapping[str, Endpoint] | None = None,
        *,
        clock: Clock = default_clock,
        random_id: RandomId = default_random_id,
        limits: Limits = DEFAULT_LIMITS,
        address: str = "192.0.2.1",
        timeout_s: float | None = 10.0,
    ) -> None:
        self.clock = clock
        self.timeout_s = timeout_s
        self.random_id = random_id
        self.limits = limits
        self.address = address
        self.requests: list[Request] = []
        self._routes: dict[tuple[str, str], tuple[Endpoint, Route]] = {}
        self._sites: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._unanswered: set[asyncio.Future[Response]] = set()  # steps whose caller gave up
        for base_url, endpoint in (endpoints or {}).items():
            self.add(base_url, endpoint)

    def add(self, base_url: str, endpoint: Endpoint) -> None:
        """Serve ``endpoint`` at ``base_url``: its discovery document where §13.3-2 puts it, its
        inbox and history where the document says (relative to the document, §13.1-7)."""
        self.remove(base_url)
        doc = discovery_url(base_url)
        urls = {doc: Route.DISCOVERY, urljoin(doc, endpoint.inbox_path): Route.INBOX,
                urljoin(doc, endpoint.history_path): Route.HISTORY}  # fmt: skip
        for url, route in urls.items():
            self._routes[_where(url)] = (endpoint, route)
        self._sites[_where(doc)] = [_where(url) for url in urls]

    def remove(self, base_url: str) -> None:
        """Take the endpoint at ``base_url`` off the network: its URLs become unreachable."""
        for where in self._sites.pop(_where(discovery_url(base_url)), ()):
            self._routes.pop(where, None)

    def _host(self, origin: str) -> Endpoint | None:
        """The endpoint last added at ``origin``, which answers the paths it does not serve."""
        found = None
        for (at, _path), (endpoint, _route) in self._routes.items():
            if at == origin:
                found = endpoint
        return found

    async def drain(self) -> None:
        """Wait for the endpoint steps whose callers gave up (``timeout_s``) to end."""
        while self._unanswered:
            done, _ = await asyncio.wait(set(self._unanswered))
            self._unanswered -= done

    # -- the Transport protocol ------------------------------------------------------------

    async def fetch_discovery(
        self,
        base_url: str,
        expected_key: bytes | None = None,
        *,
        role: str | None = None,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> DiscoveryDocument:
        """The endpoint's verified discovery document (§13.1); see
        :meth:`vrmproto.client.Transport.fetch_discovery`. A document that does not verify is
        the vendor's fault, as over HTTP: :class:`~vrmproto.client.PeerRuleError` (an
        :class:`~vrmproto.client.InvalidResponse` whose ``error`` is the rule broken, and that
        :class:`~vrmproto.ProtocolError` too)."""
        url = discovery_url(base_url)

        answer = await self._carry("GET", url, b"", channel=None, timeout_s=timeout_s)
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
        """Hand one envelope to the endpoint's inbox (§12.3); see
        :meth:`vrmproto.client.Transport.post_envelope`."""

        answer = await self._carry("POST", inbox_url, envelope, channel=channel,
                                   timeout_s=timeout_s)
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
        """Every page of the endpoint's copy of ``thread``'s history (§12.5); see
        :meth:`vrmproto.client.Transport.fetch_history`."""

        async def page(at: int) -> list[Entry]:
            body = sign_history_request(identity, thread=thread, recipient=peer_key,
                                        now=self.clock(), nonce=self.random_id(), start=at)
            answer = await self._carry("POST", history_url, body, channel=thread,
                                       timeout_s=timeout_s)
            return history_from_answer(answer, now=self.clock(), limits=self.limits,
                                       peer_key=peer_key)  # fmt: skip

        return await collect_pages(page, start=start, url=history_url)

    # -- carrying one request ----------------------------------------------------------------

    async def _carry(
        self,
        method: str,
        url: str,
        body: bytes,
        *,
        channel: bytes | None,
        timeout_s: float | None,
    ) -> Answer:
        """Hand the request to the endpoint serving ``url`` and return its answer, as its HTTP
        app would route it (see the module docstring); a status worth retrying is raised as
        :class:`~vrmproto.client.Transient`."""
        try:
            where = _where(url)
        except ValueError:
            where = ("", "")
        found = self._routes.get(where)
        endpoint = found[0] if found is not None else self._host(where[0])
        route = found[1] if found is not None else None
        if endpoint is None:
            self.requests.append(Request(None, url, body, channel, None))
            raise Unreachable(f"{method} {url}: no endpoint there")
        response = endpoint.check_address(self.address)  # before the body, as _app does
        if response is None and route is None:
            response = endpoint.problem(Problem.NOT_FOUND, "Not Found", clause="§12.2-5")
        elif response is None and route is not None and route.method != method:
            refused = endpoint.problem(Problem.METHOD_NOT_ALLOWED, "Method Not Allowed",
                                       clause="§12.2-4")  # fmt: skip
            response = Response(refused.status, refused.body,
                                {**refused.headers, "Allow": route.method})  # fmt: skip
        elif response is None and route is not None:
            timeout_s = timeout_s if timeout_s is not None else self.timeout_s
            work = asyncio.ensure_future(self._answer(endpoint, route, body))
            try:  # a caller that gives up does not stop the endpoint's step
                response = await asyncio.wait_for(asyncio.shield(work), timeout_s)
            except TimeoutError:
                self._unanswered.add(work)
                work.add_done_callback(self._unanswered.discard)
                self.requests.append(Request(route, url, body, channel, None))
                raise Unreachable(f"{method} {url}: no answer in {timeout_s} s") from None
        assert response is not None
        self.requests.append(Request(route, url, body, channel, response.status))
        answer = Answer(response.status, response.headers, response.body, url)
        transient = transient_from_answer(answer, request=f"{method} {url}")
        if transient is not None:
            raise transient
        return answer

    async def _answer(self, endpoint: Endpoint, route: Route, body: bytes) -> Response:
        """What the endpoint's handler for ``route`` answers. A handler that raises (a test's
        endpoint simulating an outage, say) is a 500 from the server, as over HTTP: the caller
        reads a :class:`~vrmproto.client.Transient`, and the failure is logged here."""
        try:
            if route is Route.DISCOVERY:
                document, signature = endpoint.discovery()
                return Response(200, document, {SIGNATURE_HEADER: signature})
            if route is Route.INBOX:
                return await endpoint.handle_inbox(body, client=self.address)
            return await endpoint.handle_history(body, client=self.address)
        except Exception:
            log.exception("%s: the endpoint failed", route.value)
            return endpoint.problem(Problem.INTERNAL, "the receiver failed", clause="§12.4-3")
