"""``serve()`` and ``serve_app()`` refuse, before binding, arguments they cannot serve with
(s22 hunt).

- ``backlog=0`` (or negative), read as "the system's default": the server started, and
  accepted nothing — asyncio accepts at most ``backlog`` connections per wake-up, so none;
  every client waited until its own timeout.
- ``ssl_context="cert.pem"`` (a path where a context is meant): the server started, said
  ``https://`` and failed every connection's handshake.
- ``connection_limits`` or ``deployment`` of another type: ``AttributeError`` from deep
  inside.

Now each is ``TypeError`` (a wrong type) or ``ValueError`` (a wrong value), naming it.
"""

from __future__ import annotations

from typing import Any

import pytest
from _broken_vendor import make_endpoint
from aiohttp import web

from vrmproto.server import make_app, serve, serve_app
from vrmproto.store import MemoryStore

BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"backlog": 0}, ValueError, "backlog"),
    ({"backlog": -1}, ValueError, "backlog"),
    ({"backlog": 1.5}, ValueError, "backlog"),
    ({"ssl_context": "cert.pem"}, TypeError, "ssl_context"),
    ({"connection_limits": {"max_connections": 5}}, TypeError, "connection_limits"),
    ({"deployment": "https://shop.example"}, TypeError, "deployment"),
]


@pytest.mark.parametrize(("kw", "error", "name"), BAD)
async def test_serve_refuses_what_it_cannot_serve_with(kw: dict[str, Any],
                                                       error: type[Exception],
                                                       name: str) -> None:  # fmt: skip
    with pytest.raises(error, match=name):
        await serve(make_endpoint(MemoryStore()), **kw)


@pytest.mark.parametrize(("kw", "error", "name"), BAD)
async def test_serve_app_refuses_what_it_cannot_serve_with(kw: dict[str, Any],
                                                           error: type[Exception],
                                                           name: str) -> None:  # fmt: skip
    endpoint = make_endpoint(MemoryStore())
    app = web.Application()
    app.add_subapp("/vrm", make_app(endpoint))
    with pytest.raises(error, match=name):
        await serve_app(app, endpoint, **kw)


async def test_make_app_refuses_a_deployment_of_another_type() -> None:
    with pytest.raises(TypeError, match="deployment"):
        make_app(make_endpoint(MemoryStore()), deployment="https://shop.example")  # type: ignore[arg-type]


async def test_a_backlog_of_one_serves() -> None:
    server = await serve(make_endpoint(MemoryStore()), backlog=1)
    await server.close()
