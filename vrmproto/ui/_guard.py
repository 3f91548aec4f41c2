"""Who may talk to ``vrm ui``: the launch token, the ``Host`` and the origin of every request.

The page is a control panel for the person's relationships, served on their own machine. Any
web site they visit could send their browser to ``http://127.0.0.1:PORT/…`` (cross-site request
forgery), or point a name it controls at 127.0.0.1 and read the answers as its own origin (DNS
rebinding). So:

- the server listens on 127.0.0.1 only (:mod:`vrmproto.ui._server`);
- every URL carries a random token made for this launch (``/t/TOKEN/…``): a request without it,
  or with another, is answered 404 with nothing of the page — not even the style sheet;
- every request must name this server in ``Host`` (``127.0.0.1:PORT`` or ``localhost:PORT``,
  the port left out on port 80):
  a rebound name is refused (421) before the token is even looked at;
- every request that changes anything (any method but GET and HEAD) must come from this
  origin: ``Origin`` equal to the page's own, or, where a browser sends no ``Origin``,
  ``Sec-Fetch-Site: same-origin``; with neither it is refused (403);
- answers say ``no-store``, ``Referrer-Policy: same-origin`` (the token never leaves in a
  ``Referer`` to another site; ``no-referrer`` would make the browser send ``Origin: null`` on
  the page's own forms), forbid framing and allow scripts and styles from this origin only.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["Guard", "new_token"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The methods that change nothing (RFC 9110 §9.2.1) — every other one is origin-checked.
SAFE_METHODS = frozenset({"GET", "HEAD"})

#: Sent with every answer, refusals included.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def new_token() -> str:
    """A launch token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


class Guard:
    """The checks above as an aiohttp middleware; :attr:`port` is set once the server listens."""

    def __init__(self, token: str, port: int = 0) -> None:
        self.token = token
        self.port = port

    @property
    def prefix(self) -> str:
        """The path every page lives under."""
        return f"/t/{self.token}/"

    @property
    def hosts(self) -> frozenset[str]:
        """What ``Host`` may say: this address with its port — or without it on port 80, as a
        browser leaves the default port out (RFC 9110 §7.2; ``Origin`` too, RFC 6454 §6.1)."""
        names = ("127.0.0.1", "localhost")
        bare = frozenset(names) if self.port == 80 else frozenset()
        return frozenset(f"{n}:{self.port}" for n in names) | bare

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{h}" for h in self.hosts)

    def refusal(self, request: web.Request) -> web.Response | None:
        """Why ``request`` is refused, as the answer to give; None if it may go on."""
        if request.headers.get("Host", "") not in self.hosts:
            return _refuse(421, "this server answers only to its own address")
        path = request.raw_path.split("?", 1)[0]
        given = path[len("/t/"):].split("/", 1)[0] if path.startswith("/t/") else ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return _refuse(404, "not found")
        if request.method not in SAFE_METHODS and not self._same_origin(request):
            return _refuse(403, "a change must come from this page itself")
        return None

    def _same_origin(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is not None:
            return origin in self.origins
        return request.headers.get("Sec-Fetch-Site") == "same-origin"

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = self.refusal(request)
        response: web.StreamResponse
        if refused is not None:
            response = refused
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # the router's 404 and 405: plain, headed like all
                response = _refuse(exc.status, exc.reason.lower())
        if not response.prepared:  # a stream sent its own (see _app.sse_headers)
            for name, value in HEADERS.items():
                response.headers.setdefault(name, value)
        return response


def _refuse(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain")
