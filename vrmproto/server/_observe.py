"""Watching a vendor's application: each request logged and counted, and the health routes.

:func:`observe` is a middleware of the vrm application (so it sees only vrm's own routes when
the application is mounted in a site): it logs every inbox and history request and every
refusal once (:mod:`vrmproto.server._logging`) and feeds the metrics
(:mod:`vrmproto.server._metrics`). ``GET /healthz`` answers while the process serves;
``GET /readyz`` only while the store answers too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from vrmproto.server._endpoint import Endpoint
from vrmproto.server._logging import (
    REQUEST_LOG,
    RequestLine,
    Summary,
    problem_code,
    summarize,
)

_log = logging.getLogger("vrmproto.server")

if TYPE_CHECKING:  # prometheus-client is loaded only by an endpoint that serves metrics
    from vrmproto.server._metrics import Metrics

__all__ = [
    "BODY_KEY",
    "DISCOVERY_ROUTE",
    "HISTORY_ROUTE",
    "INBOX_ROUTE",
    "UNLIMITED_ROUTES",
    "add_health_routes",
    "observe",
    "record",
]

DISCOVERY_ROUTE = "vrm-discovery"
INBOX_ROUTE = "vrm-inbox"
HISTORY_ROUTE = "vrm-history"
_HEALTH_ROUTE = "vrm-healthz"
_READY_ROUTE = "vrm-readyz"
_METRICS_ROUTE = "vrm-metrics"
#: Routes for the operator's probes: not rate limited per address (§12.9-5 is about customers).
UNLIMITED_ROUTES = frozenset({_HEALTH_ROUTE, _READY_ROUTE, _METRICS_ROUTE})
_ROUTE_LABELS = {
    DISCOVERY_ROUTE: "discovery", INBOX_ROUTE: "inbox", HISTORY_ROUTE: "history",
    _HEALTH_ROUTE: "health", _READY_ROUTE: "health", _METRICS_ROUTE: "metrics",
}  # fmt: skip
#: The request body, as the inbox or history handler read it.
BODY_KEY: web.RequestKey[bytes] = web.RequestKey("vrm_body", bytes)
_READY_TIMEOUT_S = 5.0
#: ``/readyz`` reads the store again only this many ms after its last read ended, and no sooner
#: than this factor times that read's duration (see :class:`_Readiness`).
READY_READ_MIN_MS = 1000
READY_READ_FACTOR = 10.0


def route_name(request: web.Request) -> str | None:
    route = request.match_info.route
    return None if route is None else route.name


def observe(endpoint: Endpoint, metrics: Metrics | None) -> Middleware:
    """Log (inbox, history, every refusal) and count each request once it is answered."""

    @web.middleware
    async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # what the problem middleware let through (< 400)
            _record(request, endpoint, metrics, exc, time.perf_counter() - started)
            raise
        except ConnectionError:  # the client went away: nothing was answered
            raise
        except Exception:  # logged with its traceback where it is turned into a 500
            _record(request, endpoint, metrics, None, time.perf_counter() - started)
            raise
        _record(request, endpoint, metrics, response, time.perf_counter() - started)
        return response

    return observed


def _record(request: web.Request, endpoint: Endpoint, metrics: Metrics | None,
            response: web.StreamResponse | None, seconds: float) -> None:  # fmt: skip
    status = response.status if response is not None else 500
    body = response.body if isinstance(response, web.Response) else None
    record(endpoint, metrics, route_name(request), path=request.path,
           remote=request.remote or "", status=status,
           body=body if isinstance(body, bytes) else None, data=request.get(BODY_KEY),
           seconds=seconds)  # fmt: skip


def record(endpoint: Endpoint, metrics: Metrics | None, name: str | None, *, path: str,
           remote: str, status: int, body: bytes | None, data: bytes | None,
           seconds: float) -> None:  # fmt: skip
    """Log and count one answered request: route ``name``, ``status`` and the answer's
    ``body``; ``data``: the request body the route read (None: not read). What :func:`observe`
    does for a request aiohttp served, and the lean connections (:mod:`._lean`) for theirs."""
    logged = ((name in (INBOX_ROUTE, HISTORY_ROUTE) or status >= 400)
              and REQUEST_LOG.isEnabledFor(logging.INFO))  # fmt: skip
    if metrics is None and not logged:  # nobody reads it: no decoding, no formatting
        return
    code = problem_code(body) if status >= 400 and body is not None else None
    summary = summarize(data) if data is not None else Summary()
    if metrics is not None:
        route = _ROUTE_LABELS.get(name or "", "other")
        metrics.observe(route, summary.kind, status, seconds, code)
    if logged:
        RequestLine(endpoint.name, path, remote, status, seconds * 1000, summary, code).log()


def add_health_routes(app: web.Application, endpoint: Endpoint, metrics: Metrics | None) -> None:
    """``/healthz``, ``/readyz`` and (with ``metrics``) ``/metrics`` on ``app``."""

    async def healthz(request: web.Request) -> web.Response:
        return _json(200, {"status": "ok", "name": endpoint.name})

    app.router.add_get("/healthz", healthz, name=_HEALTH_ROUTE)
    app.router.add_get("/readyz", _Readiness(endpoint).handle, name=_READY_ROUTE)
    if metrics is not None:
        from vrmproto.server._metrics import metrics_handler  # noqa: PLC0415

        app.router.add_get("/metrics", metrics_handler(metrics, endpoint.store),
                           name=_METRICS_ROUTE)  # fmt: skip


class _Readiness:
    """``GET /readyz``: 200 while the store answers, 503 naming the kind of failure otherwise.

    Like ``/metrics``, the route is not rate limited (the operator's probes, §12.9-5 is about
    customers), so the store is read at most every :data:`READY_READ_MIN_MS`, and no sooner
    than :data:`READY_READ_FACTOR` times the last read's duration (by the endpoint's clock);
    probes in between answer what the last read found, and probes at once share one read. A
    flood of probes then costs the store a read a second, not one per probe. The answer names
    only the kind of failure: this port may be public, and a store's error text can name its
    hosts, paths or user. The whole error goes to the log, once per change of kind."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._reading = asyncio.Lock()
        self._read_at: int | None = None  # when the last read ended (endpoint clock, ms)
        self._next_ms = 0  # how long after that the store is read again
        self._failure = ""  # the kind of the last read's failure; "": it answered
        self._logged = ""  # the failure last logged: one line per change, not one per probe

    def _fresh(self) -> bool:
        at = self._read_at
        now = self._endpoint.clock()
        return at is not None and 0 <= now - at < self._next_ms  # a clock set back: read

    async def handle(self, request: web.Request) -> web.Response:
        if not self._fresh():
            async with self._reading:  # the probes that came meanwhile: one read for all
                if not self._fresh():
                    await self._read()
        if self._failure:
            return _json(503, {"status": "unavailable", "reason": f"store: {self._failure}"})
        return _json(200, {"status": "ok"})

    async def _read(self) -> None:
        clock = self._endpoint.clock
        started = clock()
        try:
            async with asyncio.timeout(_READY_TIMEOUT_S):
                await self._endpoint.store.get_meta("vrmproto/readyz")
        except Exception as exc:  # any failure means not ready
            kind = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            if kind != self._logged:
                _log.warning("not ready: the store failed: %r", exc)
                self._logged = kind
            self._failure = kind
        else:
            self._failure = self._logged = ""
        self._read_at = ended = clock()
        self._next_ms = max(READY_READ_MIN_MS, int(READY_READ_FACTOR * (ended - started)))


def _json(status: int, data: dict[str, object]) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")
