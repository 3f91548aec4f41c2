"""The aiohttp shell around an :class:`~vrmproto.server.Endpoint` (spec §12).

Three routes: ``GET /.well-known/vrm`` (discovery, §13), ``POST <inbox>`` and
``POST <history>``. This layer only enforces what needs the HTTP request itself — the
per-address rate limit before anything is read, the content type, the declared and actual body
size, the body read timeout — and copies the engine's :class:`~vrmproto.server.Response` out. A
middleware turns every aiohttp HTTP error (unknown path, wrong method, body too large) into a
signed problem, so no route ever answers with aiohttp's HTML pages (§12.4-2). The connections
themselves — deadlines, caps, requests that are not HTTP — are held to
:class:`~vrmproto.server.ConnectionLimits` by :mod:`vrmproto.server._connections` (§10.1).

:func:`serve` answers the three routes on lean connections (:mod:`vrmproto.server._lean`),
without aiohttp's request machinery, as this application would answer them, and hands any
other request and its connection to the application; :func:`serve_app`, and the application
mounted in a site of one's own, are aiohttp alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import HttpVersion11, hdrs, web
from aiohttp.typedefs import Handler, Middleware

from vrmproto._binding import CONTENT_TYPE, SIGNATURE_HEADER, WELL_KNOWN_PATH
from vrmproto._closing import AsyncClosing
from vrmproto._errors import Problem
from vrmproto.server._connections import (
    DEFAULT_CONNECTION_LIMITS,
    ConnectionGuard,
    ConnectionLimits,
    ConnectionSite,
)
from vrmproto.server._endpoint import JSON_TYPE, Endpoint, Response
from vrmproto.server._lean import LeanRoutes
from vrmproto.server._observe import (
    BODY_KEY,
    DISCOVERY_ROUTE,
    HISTORY_ROUTE,
    INBOX_ROUTE,
    UNLIMITED_ROUTES,
    add_health_routes,
    observe,
    route_name,
)
from vrmproto.server._proxy import Deployment, client_of, proxy_middleware
from vrmproto.server._ratelimit import address_key

if TYPE_CHECKING:  # prometheus-client is loaded only by an endpoint that serves metrics
    from vrmproto.server._metrics import Metrics

__all__ = ["ENDPOINT_KEY", "NOT_PROXIED", "Server", "make_app", "serve", "serve_app"]

log = logging.getLogger("vrmproto.server")

ENDPOINT_KEY: web.AppKey[Endpoint] = web.AppKey("vrm_endpoint", Endpoint)
#: The shortest ``purge_every_s``: each purge is a store statement (a scan of the replay
#: records and of the relationships with no agreement), not something to run without pause.
MIN_PURGE_EVERY_S = 1.0
#: Served directly: relative URLs in discovery, no forwarding headers believed.
NOT_PROXIED = Deployment()
_Startup = Callable[[web.Application], Awaitable[None]]
_Context = Callable[[web.Application], AsyncIterator[None]]

#: aiohttp's own HTTP errors, as problem codes (§12.4-1).
_BY_STATUS: dict[int, tuple[Problem, str]] = {
    404: (Problem.NOT_FOUND, "§12.2-5"),
    405: (Problem.METHOD_NOT_ALLOWED, "§12.2-4"),
    408: (Problem.REQUEST_TIMEOUT, "§12.9-4"),
    413: (Problem.TOO_LARGE, "§12.9-3"),
    415: (Problem.UNSUPPORTED_MEDIA_TYPE, "§12.2-3"),
}

def _web(response: Response, *, close: bool = False) -> web.Response:
    out = web.Response(status=response.status, body=response.body or None,
                       headers=dict(response.headers))  # fmt: skip
    if close:
        out.force_close()
    return out


def _error_answer(endpoint: Endpoint) -> Callable[[int, str], web.Response]:
    """The signed problem for a request aiohttp could not parse, or failed on (§12.4-5)."""

    def answer(status: int, detail: str) -> web.Response:
        if status >= 500:
            return _web(endpoint.problem(Problem.INTERNAL, detail, clause="§12.4-3"), close=True)
        return _web(endpoint.problem(Problem.MALFORMED, detail, clause="§12.4-5"), close=True)

    return answer


def _middleware(endpoint: Endpoint) -> Middleware:
    @web.middleware
    async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
        probe = route_name(request) in UNLIMITED_ROUTES
        limited = None if probe else await endpoint.acheck_address(request.remote or "")
        if limited is not None:  # before a byte of the body is read (§12.9-6)
            return _web(limited, close=True)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code, clause = _BY_STATUS.get(exc.status, (Problem.MALFORMED, "§12.4-2"))
            problem = endpoint.problem(code, exc.reason, clause=clause)
            out = _web(problem, close=exc.status in (408, 413))
            allow = exc.headers.get(hdrs.ALLOW)
            if allow is not None:
                out.headers[hdrs.ALLOW] = allow
            return out

    return problems


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes whatever the application's
    ``client_max_size`` (a shop mounting vrm has its own, §12.9-3). A body the site's own
    middleware read before (``await request.read()``, to log or audit it) is taken from
    aiohttp, which keeps it: the stream it drained would give none."""
    body = bytearray()
    async for chunk in _chunks(request):
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return bytes(body)


async def _chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, or, read before this route, the body aiohttp kept."""
    content = request.content
    if content.total_bytes and content.at_eof():  # drained by someone: aiohttp kept it
        yield await request.read()
        return
    while chunk := await content.readany():
        yield chunk


def _framed(request: web.Request) -> bool:
    """Whether the body's end is known: no transfer coding, or ``chunked`` alone. aiohttp
    undoes the chunks of ``gzip, chunked`` and would hand over the rest as the body; a coding
    the receiver does not implement cannot be read (RFC 9112 §6.1)."""
    codings = request.headers.get(hdrs.TRANSFER_ENCODING)
    return codings is None or [c.strip() for c in codings.lower().split(",")] == ["chunked"]


def _invited(request: web.Request, endpoint: Endpoint) -> bool:
    """Whether :func:`_read_envelope` would read the body: the binding's content type
    (§12.2-3), a transfer coding it reads, no declared length over the limit (§12.9-2) — its
    first three checks."""
    declared = request.headers.get(hdrs.CONTENT_TYPE)
    if declared is None or request.content_type.lower() != CONTENT_TYPE or not _framed(request):
        return False
    length = request.content_length
    return length is None or length <= endpoint.limits.max_envelope_bytes


async def _limited(request: web.Request, endpoint: Endpoint, deployment: Deployment) -> bool:
    """Whether the client's address is over its rate limit (§12.9-5) now: a look, nothing
    taken. The address is the one the proxy middleware will find (§12.13-1), which has not run:
    aiohttp asks the expect handler before any middleware."""
    client = request.remote or ""
    if deployment.trusted_proxies:
        client = client_of(request, deployment)[0]
    return await endpoint.address_limit.aretry_after(address_key(client)) > 0


def _expect(endpoint: Endpoint, deployment: Deployment) -> Callable[
    [web.Request], Awaitable[web.Response | None]
]:
    """``Expect: 100-continue`` on the inbox and history routes (RFC 9110 §10.1.1): the body
    is invited only when it would be read. A request refused before its body is read
    (:func:`_invited`: a content type other than the binding's, a declared length over the
    limit; :func:`_limited`: an address over its rate limit, §12.9-6) gets no
    ``100 Continue``: the route answers it at once, and the client does not send a body only
    to have it dropped (aiohttp's own handler invited it first). Any other expectation gets
    the signed ``malformed`` problem, where aiohttp answered a plain-text 417 (§12.4-2)."""

    async def expect(request: web.Request) -> web.Response | None:
        if request.version != HttpVersion11:
            return None  # HTTP/1.0 has no 100 Continue (RFC 9110 §10.1.1): nothing is sent
        if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
            return _web(endpoint.problem(
                Problem.MALFORMED, "the only expectation understood is 100-continue",
                clause="§12.4-2",
            ), close=True)  # fmt: skip
        if _invited(request, endpoint) and not await _limited(request, endpoint, deployment):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer proper has not started
        return None

    return expect


async def _read_envelope(request: web.Request, endpoint: Endpoint) -> bytes | web.Response:
    """The request body, or the problem answering why it was not read (§12.2-3, §12.9)."""
    limits = endpoint.limits
    declared = request.headers.get(hdrs.CONTENT_TYPE)
    if declared is None or request.content_type.lower() != CONTENT_TYPE:
        return _web(endpoint.problem(
            Problem.UNSUPPORTED_MEDIA_TYPE, f"the body must be {CONTENT_TYPE}",
            clause="§12.2-3",
        ), close=True)  # fmt: skip
    if not _framed(request):
        return _web(endpoint.problem(
            Problem.MALFORMED, "the only transfer coding understood is chunked alone",
            clause="§12.4-5",
        ), close=True)  # fmt: skip
    length = request.content_length
    if length is not None and length > limits.max_envelope_bytes:
        return _web(endpoint.problem(
            Problem.TOO_LARGE,
            f"{length} bytes declared; the limit is {limits.max_envelope_bytes}",
            clause="§12.9-2",
        ), close=True)  # fmt: skip
    try:
        if request.content.is_eof():  # the whole body has arrived: reading it cannot wait
            data = await _read_body(request, limits.max_envelope_bytes)
        else:
            async with asyncio.timeout(limits.body_read_timeout_ms / 1000):
                data = await _read_body(request, limits.max_envelope_bytes)
    except TimeoutError:
        return _web(endpoint.problem(
            Problem.REQUEST_TIMEOUT,
            f"the body did not arrive within {limits.body_read_timeout_ms} ms",
            clause="§12.9-4",
        ), close=True)  # fmt: skip
    except web.RequestPayloadError:  # its chunks or its Content-Encoding do not decode
        request.content.feed_eof()  # read no more of it (aiohttp would linger, and fail again)
        # closed: where the body ends, and a next request starts, is not known
        return _web(endpoint.problem(
            Problem.MALFORMED, "the request body is not valid HTTP/1.1 (its transfer or "
            "content coding does not decode)", clause="§12.4-5",
        ), close=True)  # fmt: skip
    request[BODY_KEY] = data
    return data


def make_app(
    endpoint: Endpoint,
    *,
    purge_every_s: float = 3600.0,
    deployment: Deployment = NOT_PROXIED,
    metrics: Metrics | None = None,
    drain_timeout_s: float = 5.0,
) -> web.Application:
    """The aiohttp application serving ``endpoint``: discovery, inbox and history export, and
    ``/healthz`` (live) and ``/readyz`` (the store answers); ``/metrics`` with ``metrics``.

    Mounted in a site of one's own (``shop.add_subapp("/vrm", make_app(endpoint))``), it
    advertises the URLs its routes really have there, and its signed problems answer only its
    own paths. ``deployment``: the public base URL discovery advertises and the proxies whose
    forwarding headers are believed (§12.13).

    While it runs, every ``purge_every_s`` seconds, expired replay records are purged and the
    data of expired shares is deleted (:meth:`Endpoint.purge`, :meth:`Endpoint.expire_shares`).
    The application must serve ``endpoint`` alone: it sets the endpoint's advertised inbox and
    history URLs when it starts. When it stops, it waits for the endpoint's hooks still
    running (:meth:`Endpoint.subscribe`, ``Policy.on_message``) at most ``drain_timeout_s``
    seconds, then cancels them (:meth:`Endpoint.drain`).
    """
    _check_type("deployment", deployment, Deployment)
    _check_seconds("purge_every_s", purge_every_s, at_least=MIN_PURGE_EVERY_S)
    _check_seconds("drain_timeout_s", drain_timeout_s)
    app = web.Application(
        client_max_size=endpoint.limits.max_envelope_bytes,
        middlewares=[proxy_middleware(deployment), observe(endpoint, metrics),
                     _middleware(endpoint)],
    )  # fmt: skip
    app[ENDPOINT_KEY] = endpoint
    inbox_path = urlsplit(endpoint.inbox_path).path
    history_path = urlsplit(endpoint.history_path).path

    async def discovery(request: web.Request) -> web.Response:
        return _web(_discovery(endpoint))

    async def inbox(request: web.Request) -> web.Response:
        data = await _read_envelope(request, endpoint)
        if isinstance(data, web.Response):
            return data
        return _web(await endpoint.handle_inbox(data, client=request.remote or ""))

    async def history(request: web.Request) -> web.Response:
        data = await _read_envelope(request, endpoint)
        if isinstance(data, web.Response):
            return data
        return _web(await endpoint.handle_history(data, client=request.remote or ""))

    async def drain(app: web.Application) -> None:
        await endpoint.drain(timeout_s=drain_timeout_s)

    app.router.add_get(WELL_KNOWN_PATH, discovery, name=DISCOVERY_ROUTE)
    expect = _expect(endpoint, deployment)
    app.router.add_post(inbox_path, inbox, name=INBOX_ROUTE, expect_handler=expect)
    app.router.add_post(history_path, history, name=HISTORY_ROUTE, expect_handler=expect)
    add_health_routes(app, endpoint, metrics)
    app.on_startup.append(_advertise(endpoint, deployment))
    app.cleanup_ctx.append(_maintenance(endpoint, purge_every_s))
    app.on_cleanup.append(drain)
    return app


def _discovery(endpoint: Endpoint) -> Response:
    """The signed discovery document (§13.1), as both the application's route and the lean
    connections (:mod:`vrmproto.server._lean`) answer it."""
    body, signature = endpoint.discovery()
    return Response(200, body, {hdrs.CONTENT_TYPE: JSON_TYPE, SIGNATURE_HEADER: signature,
                                hdrs.CACHE_CONTROL: cache_control(
                                    endpoint.discovery_lifetime_ms)})  # fmt: skip


def cache_control(lifetime_ms: int) -> str:
    """How long a cache may keep the discovery document (§13.1-8): five minutes, but never
    past its ``expires`` — a document served is re-signed once half its lifetime has passed,
    so it always has at least that half left (a ``discovery_lifetime_ms`` under ten minutes
    made ``max-age=300`` outlive the document)."""
    return f"max-age={min(300, lifetime_ms // 2000)}"


def _advertise(endpoint: Endpoint, deployment: Deployment) -> _Startup:
    """At start, when the application's place in a site is known: the inbox and history URLs
    discovery advertises, as its routes really are (§13.1-7), under the public URL if there is
    one (§12.13-3)."""

    async def advertise(app: web.Application) -> None:
        mount = str(app.router[DISCOVERY_ROUTE].url_for())[: -len(WELL_KNOWN_PATH)]
        base = deployment.public_url
        inbox = str(app.router[INBOX_ROUTE].url_for())
        history = str(app.router[HISTORY_ROUTE].url_for())
        endpoint.inbox_path = base + inbox[len(mount):] if base else inbox
        endpoint.history_path = base + history[len(mount):] if base else history

    return advertise


def _maintenance(endpoint: Endpoint, purge_every_s: float) -> _Context:
    async def purge_periodically(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(purge_every_s)
                try:
                    purged = await endpoint.purge()
                    erased = await endpoint.expire_shares()
                except Exception:
                    log.exception("periodic maintenance failed")
                else:
                    log.debug("purged %d replay records, erased %d expired shares", purged,
                              erased)  # fmt: skip

        task = asyncio.get_running_loop().create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return purge_periodically


@dataclass(slots=True)
class Server(AsyncClosing):
    """A running server: ``port`` is the bound port (useful with ``port=0``)."""

    endpoint: Endpoint
    runner: web.AppRunner
    site: web.BaseSite
    host: str
    port: int
    connections: ConnectionGuard
    scheme: str = "http"

    @property
    def url(self) -> str:
        """The base URL it listens at, e.g. ``http://127.0.0.1:8421`` (``https`` with TLS)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    async def close(self) -> None:
        """Stop accepting, finish in-flight requests, wait for hooks, release the port."""
        await self.runner.cleanup()


async def serve(
    endpoint: Endpoint,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_log: logging.Logger | None = None,
    shutdown_timeout: float = 5.0,
    lingering_time: float = 2.0,
    connection_limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS,
    backlog: int = 128,
    ssl_context: ssl.SSLContext | None = None,
    deployment: Deployment = NOT_PROXIED,
    metrics: Metrics | None = None,
    sock: socket.socket | None = None,
) -> Server:
    """Start serving ``endpoint`` on ``host:port`` (0 picks a free port); see :class:`Server`.

    ``sock``: serve on this listening socket instead of binding ``host:port`` (a worker of
    ``vrm vendor serve --workers``, sharing its supervisor's socket with the other workers).

    ``ssl_context``: serve HTTPS (§12.1-1); ``deployment`` and ``metrics``: see :func:`make_app`.

    ``lingering_time``: after refusing a request whose body was not read (413, 408, 415), how
    long to keep reading and discarding it before closing, so that the client, still sending,
    gets to read the refusal (§12.9-2, §12.9-4).

    ``connection_limits``: the header and idle deadlines and the connection caps (§10.1); the
    total cap is fitted to this process's open-file limit when the server starts.

    ``shutdown_timeout``: how long :meth:`Server.close` lets the requests in progress finish,
    and then the endpoint's hooks still running (``make_app``'s ``drain_timeout_s``).
    """

    _check_serving(backlog, ssl_context=ssl_context, connection_limits=connection_limits,
                   deployment=deployment, shutdown_timeout=shutdown_timeout,
                   lingering_time=lingering_time)  # fmt: skip

    def lean(app: web.Application) -> LeanRoutes:
        inbox, history = (str(app.router[name].url_for()) for name in (INBOX_ROUTE, HISTORY_ROUTE))
        return LeanRoutes(endpoint, inbox, history, deployment,
                          functools.partial(_discovery, endpoint), metrics)  # fmt: skip

    return await _serve(
        make_app(endpoint, deployment=deployment, metrics=metrics,
                 drain_timeout_s=shutdown_timeout), endpoint, host, port,
        access_log=access_log, shutdown_timeout=shutdown_timeout, lingering_time=lingering_time,
        connection_limits=connection_limits, backlog=backlog, ssl_context=ssl_context, sock=sock,
        deployment=deployment,
        lean=lean if access_log is None else None,  # aiohttp's access log sees every request
    )  # fmt: skip


async def serve_app(
    app: web.Application,
    endpoint: Endpoint,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_log: logging.Logger | None = None,
    shutdown_timeout: float = 5.0,
    lingering_time: float = 2.0,
    connection_limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS,
    backlog: int = 128,
    ssl_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
    deployment: Deployment = NOT_PROXIED,
) -> Server:
    """Like :func:`serve`, for an application of one's own whose routes answer for
    ``endpoint`` (a customer agent's, say): the same connection limits (§10.1), and the same
    signed problems for HTTP that does not parse (§12.4-5). ``app`` is served as it is, not
    changed: the connection itself knows when a request is being handled, and stops its
    deadlines meanwhile (§10.1-1), whatever the application's middlewares.

    ``deployment``: the one given to :func:`make_app` for the application mounted in ``app``;
    its trusted proxies' connections are not counted per address (§12.13-1, §10.1-4:
    :class:`~vrmproto.server.ConnectionGuard`)."""
    _check_serving(backlog, ssl_context=ssl_context, connection_limits=connection_limits,
                   deployment=deployment, shutdown_timeout=shutdown_timeout,
                   lingering_time=lingering_time)  # fmt: skip
    return await _serve(
        app, endpoint, host, port, access_log=access_log, shutdown_timeout=shutdown_timeout,
        lingering_time=lingering_time, connection_limits=connection_limits, backlog=backlog,
        ssl_context=ssl_context, sock=sock, deployment=deployment, lean=None,
    )  # fmt: skip


def _check_type(name: str, value: object, kind: type) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, not {type(value).__name__}")


def _check_seconds(name: str, value: float, *, at_least: float = 0.0) -> None:
    """``ValueError`` unless ``value`` is a finite number of seconds, at least ``at_least``."""
    if type(value) not in (int, float) or not math.isfinite(value) or value < at_least:
        raise ValueError(f"{name} must be a finite number of seconds, at least {at_least:g}, "
                         f"not {value!r}")  # fmt: skip


def _check_tls(context: ssl.SSLContext) -> None:
    """``ValueError`` for a context no customer could connect through (§12.1-1), which would
    reset every connection with nothing logged above debug: a client's context (it checks
    host names, and asks each customer for a certificate it does not have), or one that
    cannot finish a handshake — tried in memory with a client presenting no certificate, a
    context without a certificate of its own failing. Mutual TLS on purpose (client
    certificates required, no host-name check) is left as it is."""
    if context.check_hostname:
        raise ValueError("ssl_context is a client's context (ssl.create_default_context() "
                         "without ssl.Purpose.CLIENT_AUTH): it asks every customer for a "
                         "certificate; make one with ssl.Purpose.CLIENT_AUTH")  # fmt: skip
    if context.verify_mode == ssl.CERT_REQUIRED:
        return
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    sides = ((client.wrap_bio(client_in, client_out), client_out, server_in),
             (context.wrap_bio(server_in, server_out, server_side=True), server_out, client_in))
    for _ in range(4):  # round trips: TLS 1.3 takes two, TLS 1.2 three
        done = 0
        for side, sent, peer in sides:
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                raise ValueError(f"ssl_context cannot complete a TLS handshake as a server "
                                 f"({exc.reason or exc}): has it no certificate? Give it a "
                                 "certificate chain (load_cert_chain)") from None  # fmt: skip
            peer.write(sent.read())
        if done == len(sides):
            return


def _check_serving(
    backlog: int,
    *,
    ssl_context: ssl.SSLContext | None,
    connection_limits: ConnectionLimits,
    deployment: Deployment,
    shutdown_timeout: float,
    lingering_time: float,
) -> None:
    """``TypeError`` or ``ValueError`` for an argument :func:`serve` cannot serve with, before
    anything is bound: a ``backlog`` under 1 accepted no connection at all (asyncio accepts
    up to ``backlog`` per wake-up), a path given as ``ssl_context`` failed every handshake."""
    _check_seconds("shutdown_timeout", shutdown_timeout)
    _check_seconds("lingering_time", lingering_time)
    if type(backlog) is not int or backlog < 1:
        raise ValueError(f"backlog must be a positive integer, not {backlog!r}")
    if ssl_context is not None:
        _check_type("ssl_context", ssl_context, ssl.SSLContext)
        _check_tls(ssl_context)
    _check_type("connection_limits", connection_limits, ConnectionLimits)
    _check_type("deployment", deployment, Deployment)


async def _serve(
    app: web.Application,
    endpoint: Endpoint,
    host: str,
    port: int,
    *,
    access_log: logging.Logger | None,
    shutdown_timeout: float,
    lingering_time: float,
    connection_limits: ConnectionLimits,
    backlog: int,
    ssl_context: ssl.SSLContext | None,
    sock: socket.socket | None,
    deployment: Deployment,
    lean: Callable[[web.Application], LeanRoutes] | None,
) -> Server:
    """:func:`serve_app`; with ``lean``, the hot routes of the started ``app`` (what
    ``lean`` finds in it) are served by lean connections, which hand anything else to aiohttp
    (:mod:`vrmproto.server._lean`)."""
    runner = web.AppRunner(
        app,
        access_log=access_log,
        shutdown_timeout=shutdown_timeout,
        lingering_time=lingering_time,
    )
    await runner.setup()
    guard = ConnectionGuard(connection_limits, accept_burst=backlog, deployment=deployment)
    site = ConnectionSite(
        runner, host, port, guard=guard, answer=_error_answer(endpoint), backlog=backlog,
        handler_kwargs={"access_log": access_log, "lingering_time": lingering_time},
        ssl_context=ssl_context, sock=sock, shutdown_timeout=shutdown_timeout,
        lean=None if lean is None else lean(app),
    )  # fmt: skip
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    scheme = "http" if ssl_context is None else "https"
    return Server(endpoint, runner, site, host, int(bound), guard, scheme)
