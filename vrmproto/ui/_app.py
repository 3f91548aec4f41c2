"""The ``vrm ui`` web application: one customer node, its pages, and what they may do.

:class:`Ui` holds what every handler needs — the node, the :class:`~vrmproto.ui._guard.Guard`,
the templates, the jobs the page follows live, the last history comparison of each relationship
and the one-time messages shown after an action. :func:`make_app` mounts the pages
(:mod:`._pages`) and the actions (:mod:`._actions`) under the launch token's path; nothing is
served outside it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jinja2
import markupsafe
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from vrmproto.client import Agent, CustomerNode
from vrmproto.ui._guard import HEADERS, Guard
from vrmproto.ui._jobs import Jobs
from vrmproto.ui._present import when

__all__ = ["Flash", "Ui", "form_of", "make_app"]

UI_KEY: web.AppKey[Ui] = web.AppKey("ui")

#: How many one-time messages are kept for pages not yet shown.
MAX_FLASHES = 64


@dataclass(frozen=True, slots=True)
class Flash:
    """A message shown once, on the page an action leads to; ``records``: a data table."""

    text: str
    error: bool = False
    records: tuple[dict[str, str], ...] | None = None


#: What a page must not pass on as it is: bidirectional overrides, embeddings, isolates and marks
#: (a vendor named "\u202eEvil" would turn what follows around, as "moc.knab" reads
#: "bank.com"), control characters but tab and line breaks, and what prints as nothing — zero
#: width spaces, word joiners, the soft hyphen, the byte-order mark, Hangul fillers, line and
#: paragraph separators, tag characters ("Avis\u200b" would read as "Avis"). The zero-width
#: (non-)joiners stay: emoji and the letters of many scripts are written with them.
_HIDDEN = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
                     "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
                     "\u00ad\u034f\u115f\u1160\u180e\u200b\u2028\u2029\u2060-\u2064"
                     "\u206a-\u206f\u3164\ufeff\uffa0\ufff9-\ufffb"
                     "\U000e0000-\U000e007f]")  # fmt: skip


def shown(value: Any) -> Any:
    """Every ``{{ value }}`` of a page: text with what :data:`_HIDDEN` matches written as its
    escape (``\u202e``), as ``vrm`` shows it in a terminal (§11.12-1: a peer's text is shown,
    never interpreted); markup made by the page itself (``|safe``) as it is."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return _HIDDEN.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), value)
    return value


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("vrmproto.ui", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, finalize=shown,
    )  # fmt: skip
    env.filters["when"] = when
    return env


@dataclass(slots=True)
class Ui:
    """What every handler of one launch shares (see the module docstring)."""

    node: CustomerNode
    guard: Guard
    templates: jinja2.Environment = field(default_factory=_templates)
    jobs: Jobs = field(default_factory=Jobs)
    agreement: dict[bytes, tuple[str, str]] = field(default_factory=dict)
    flashes: dict[str, Flash] = field(default_factory=dict)
    #: Each relationship's ``updated_ms`` in the store when a page last read it (see
    #: :func:`vrmproto.ui._pages.fresh`).
    seen: dict[bytes, int] = field(default_factory=dict)

    @property
    def agent(self) -> Agent:
        return self.node.agent

    def render(self, name: str, **context: Any) -> str:
        return self.templates.get_template(name).render(base=self.guard.prefix, **context)

    def page(self, request: web.Request, name: str, **context: Any) -> web.Response:
        flash = self.flashes.pop(request.query.get("m", ""), None)
        html = self.render(name, flash=flash, **context)
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    def redirect(self, path: str, flash: Flash | None = None) -> web.Response:
        """303 to ``path`` (under the token), with ``flash`` shown there once."""
        location = self.guard.prefix + path
        if flash is not None:
            key = secrets.token_hex(8)
            self.flashes[key] = flash
            while len(self.flashes) > MAX_FLASHES:
                del self.flashes[next(iter(self.flashes))]
            location += ("&" if "?" in location else "?") + "m=" + key
        return web.Response(status=303, headers={"Location": location})


def ui_of(request: web.Request) -> Ui:
    return request.app[UI_KEY]


async def form_of(request: web.Request) -> MultiDictProxy[str | Any]:
    """The form the request posts; 400 if it cannot be read (a body that is not UTF-8, a
    broken multipart body): never a 500."""
    try:
        return await request.post()
    except (ValueError, HttpProcessingError):
        raise web.HTTPBadRequest(reason="the form could not be read") from None


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    kinds = {"ui.css": "text/css", "ui.js": "text/javascript"}
    if name not in kinds:
        raise web.HTTPNotFound
    text = resources.files("vrmproto.ui").joinpath("static", name).read_text("utf-8")
    return web.Response(text=text, content_type=kinds[name], charset="utf-8")


def make_app(ui: Ui) -> web.Application:
    """The application of ``ui``: every route under ``/t/TOKEN/``, behind the guard."""
    from vrmproto.ui import _actions, _pages  # noqa: PLC0415 -- they import this module

    app = web.Application(middlewares=[ui.guard.middleware], client_max_size=256 * 1024)
    app[UI_KEY] = ui
    p = "/t/{token}/"
    app.router.add_get(p + "static/{name}", _static)
    _pages.routes(app, p)
    _actions.routes(app, p)
    return app


def sse_headers() -> dict[str, str]:
    """The guard's headers, for a stream prepared before the middleware can add them."""
    return dict(HEADERS)
