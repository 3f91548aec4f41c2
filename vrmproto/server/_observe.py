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

    logged = ""  # the failure last logged: one line per change, not one per probe

    async def readyz(request: web.Request) -> web.Response:
        """The answer names only the kind of failure: this port may be public, and a store's
        error text can name its hosts, paths or user. The whole error goes to the log."""
        nonlocal logged
        try:
            async with asyncio.timeout(_READY_TIMEOUT_S):
                await endpoint.store.get_meta("vrmproto/readyz")
        except Exception as exc:  # any failure means not ready
            kind = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            if kind != logged:
                _log.warning("not ready: the store failed: %r", exc)
                logged = kind
            return _json(503, {"status": "unavailable", "reason": f"store: {kind}"})
        logged = ""
        return _json(200, {"status": "ok"})

    app.router.add_get("/healthz", healthz, name=_HEALTH_ROUTE)
    app.router.add_get("/readyz", readyz, name=_READY_ROUTE)
    if metrics is not None:
        from vrmproto.server._metrics import metrics_handler  # noqa: PLC0415

        app.router.add_get("/metrics", metrics_handler(metrics, endpoint.store),
                           name=_METRICS_ROUTE)  # fmt: skip


def _json(status: int, data: dict[str, object]) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")
