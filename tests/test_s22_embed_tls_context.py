"""``serve(ssl_context=…)`` with a context that cannot serve TLS to a customer (s22 hunt).

Each of these started an ``https://`` server that reset every connection, logging nothing
above debug — the vendor saw a running server that no customer could reach:

- a context with no certificate (``ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)`` before
  ``load_cert_chain``);
- a client's context, ``ssl.create_default_context()`` without ``Purpose.CLIENT_AUTH``: it
  asks every customer for a certificate it does not have (and has none of its own).

Now ``serve()`` and ``serve_app()`` refuse such a context before binding (``ValueError``,
saying what is missing), by checking it host names, and by a TLS handshake in memory with a
client that presents no certificate. A context asking for client certificates on purpose
(``verify_mode = CERT_REQUIRED`` without host-name checks: mutual TLS behind a proxy) is
served as it is.
"""

from __future__ import annotations

import ssl

import pytest
from _broken_vendor import make_endpoint
from _tls import tls_contexts
from aiohttp import web

from vrmproto.server import make_app, serve, serve_app
from vrmproto.store import MemoryStore


def _no_certificate() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)


@pytest.mark.parametrize(("make", "words"), [
    (_no_certificate, "no certificate"),
    (ssl.create_default_context, "a client's context"),
])  # fmt: skip
async def test_a_context_no_customer_can_reach_is_refused(make: object, words: str) -> None:
    context = make()  # type: ignore[operator]
    endpoint = make_endpoint(MemoryStore())
    with pytest.raises(ValueError, match=words):
        await serve(endpoint, ssl_context=context)
    app = web.Application()
    app.add_subapp("/vrm", make_app(endpoint))
    with pytest.raises(ValueError, match=words):
        await serve_app(app, endpoint, ssl_context=context)


async def test_a_context_with_a_certificate_is_served() -> None:
    server_context, _ = tls_contexts()
    server = await serve(make_endpoint(MemoryStore()), ssl_context=server_context)
    assert server.url.startswith("https://")
    await server.close()


async def test_mutual_tls_on_purpose_is_served() -> None:
    server_context, _ = tls_contexts()
    server_context.verify_mode = ssl.CERT_REQUIRED
    server = await serve(make_endpoint(MemoryStore()), ssl_context=server_context)
    await server.close()
