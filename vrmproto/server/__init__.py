"""The HTTP server side of vrmproto: a vendor endpoint and a customer agent endpoint (spec §12).

- :class:`Endpoint` — the engine, without HTTP: ``await endpoint.handle_inbox(bytes)`` runs one
  durable protocol step and returns a :class:`Response`; receipts only after the commit.
- :func:`make_app` — the aiohttp application around it (discovery, inbox, history export,
  limits, rate limits, problems instead of HTML errors); :func:`serve` starts it and returns a
  :class:`Server` that knows its bound port. :class:`ConnectionLimits` bounds the HTTP
  connections it holds: header and idle deadlines, caps in total and per address (§10.1).
- :class:`Policy` — the business decisions an endpoint delegates; :class:`ReferencePolicy` is
  the reference vendor's; :class:`VendorConfig` and :class:`LocalVendor` run one (what the
  examples and ``vrm demo`` start). Hooks (:meth:`Endpoint.subscribe`) hear of every accepted
  :class:`Event` after it is stored.
- :class:`StorageBudget` — the vendor-wide storage budget; first contact per client address is
  admitted by the published limits (``Limits``, spec §10-13 to §10-18, §11.8).

Example::

    store = await SQLiteStore.open("vendor.db")
    endpoint = Endpoint(identity, store=store, name="Avis",
                        policy=ReferencePolicy(accepts_terms=["vrm.no-tracking"]))
    server = await serve(endpoint, port=8421)
"""

import typing

from vrmproto.server._admission import StorageBudget
from vrmproto.server._app import ENDPOINT_KEY, Server, make_app, serve, serve_app
from vrmproto.server._connections import (
    DEFAULT_CONNECTION_LIMITS,
    ConnectionGuard,
    ConnectionLimits,
)
from vrmproto.server._endpoint import NO_CONTENT, Endpoint, Hook, Response
from vrmproto.server._held import HeldRecord
from vrmproto.server._policy import CatalogueItem, Event, Policy, ReferencePolicy
from vrmproto.server._proxy import Deployment
from vrmproto.server._ratelimit import RateLimiter
from vrmproto.server._runner import LocalVendor, VendorConfig

if typing.TYPE_CHECKING:
    from vrmproto.server._config import ConfigError, load_vendor_config


def __getattr__(name: str) -> typing.Any:
    """The vendor file's reader (pydantic) is loaded when first asked for: a customer's agent,
    which imports this package for its inbound endpoint, never needs it."""
    if name in ("ConfigError", "load_vendor_config"):
        from vrmproto.server import _config  # noqa: PLC0415

        return getattr(_config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_CONNECTION_LIMITS",
    "ENDPOINT_KEY",
    "NO_CONTENT",
    "CatalogueItem",
    "ConfigError",
    "ConnectionGuard",
    "ConnectionLimits",
    "Deployment",
    "Endpoint",
    "Event",
    "HeldRecord",
    "Hook",
    "LocalVendor",
    "Policy",
    "RateLimiter",
    "ReferencePolicy",
    "Response",
    "Server",
    "StorageBudget",
    "VendorConfig",
    "load_vendor_config",
    "make_app",
    "serve",
    "serve_app",
]
