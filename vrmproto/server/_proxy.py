"""Where a vendor is reached from outside: its public base URL and the proxies in front of it
(spec §12.13).

A reverse proxy (nginx, a load balancer) connects to the endpoint itself, so ``request.remote``
is the proxy's address for every customer. The client's own address, and the scheme it used,
come from the ``Forwarded`` header (RFC 7239) or ``X-Forwarded-For`` / ``X-Forwarded-Proto``
— and only when the connection comes from a proxy the vendor trusts; anyone else can write
those headers (§12.13-1, §12.13-2).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

__all__ = ["Deployment", "Fields", "Network", "client_from", "client_of", "may_be_a_proxy",
           "note_forwarding", "proxy_middleware"]  # fmt: skip

log = logging.getLogger("vrmproto.server")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The values of a request's header fields of a name (any case), in order.
Fields = Callable[[str], Sequence[str]]

_X_FORWARDED_FOR = "X-Forwarded-For"
_X_FORWARDED_PROTO = "X-Forwarded-Proto"


@dataclass(frozen=True, slots=True)
class Deployment:
    """How the endpoint is reached: ``public_url``, the base URL customers use (what discovery
    advertises, §12.13-3; None: relative paths), and ``trusted_proxies``, the networks whose
    ``Forwarded`` / ``X-Forwarded-*`` headers are believed (§12.13-1)."""

    public_url: str | None = None
    trusted_proxies: tuple[Network, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "trusted_proxies", _networks(self.trusted_proxies))
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"the public URL must be an http(s) URL, not {self.public_url!r}")
            if parts.query or parts.fragment:
                raise ValueError("the public URL must not have a query or a fragment")
            if parts.scheme == "http" and not _local(parts.hostname or ""):
                raise ValueError(f"the public URL {self.public_url!r} must be https: plain "
                                 "http only on loopback and private networks (§12.13-3)")

    @classmethod
    def of(cls, public_url: str | None = None, trusted_proxies: Iterable[str] = ()) -> Deployment:
        """From text: ``trusted_proxies`` as networks or addresses (``10.0.0.0/8``, ``::1``)."""
        proxies = trusted_proxies if isinstance(trusted_proxies, str) else tuple(trusted_proxies)
        return cls(public_url.rstrip("/") if public_url else None,
                   proxies)  # type: ignore[arg-type]  # read by _networks

    def trusts(self, address: str | None) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in net for net in self.trusted_proxies)


def _networks(proxies: object) -> tuple[Network, ...]:
    """The trusted proxies as networks: each a network, or text naming one or an address
    (``10.0.0.0/8``, ``::1``); ``ValueError`` for anything else, and for a lone string (its
    characters are no networks)."""
    if isinstance(proxies, str | bytes) or not isinstance(proxies, Iterable):
        raise ValueError(f"trusted proxy networks are a list of networks, not {proxies!r}")
    nets: list[Network] = []
    for proxy in proxies:
        if isinstance(proxy, ipaddress.IPv4Network | ipaddress.IPv6Network):
            nets.append(proxy)
            continue
        try:
            if not isinstance(proxy, str):
                raise TypeError(proxy)
            nets.append(ipaddress.ip_network(proxy.strip(), strict=False))
        except (TypeError, ValueError):
            raise ValueError(f"a trusted proxy must be a network or an address, not "
                             f"{proxy!r}") from None  # fmt: skip
    return tuple(nets)


def _local(host: str) -> bool:
    """A loopback or private address, ``localhost`` or a ``.local`` name (§12.1-1)."""
    if host == "localhost" or host.endswith((".localhost", ".local")):
        return True
    ip = _ip(host)
    return ip is not None and (ip.is_loopback or ip.is_private or ip.is_link_local)


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _node(value: str) -> str | None:
    """The address of an RFC 7239 node (``192.0.2.1``, ``"[2001:db8::1]:4711"``, ``1.2.3.4:80``);
    None for ``unknown``, an obfuscated name or anything else that is not an address."""
    text = value.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    ip = _ip(text)
    return None if ip is None else str(ip)


def _pairs(element: str) -> dict[str, str]:
    """The forwarded-pairs of one element of a ``Forwarded`` field (RFC 7239 §4), by name in
    lower case: split at each ``;`` and at the first ``=`` of each pair, in time linear in the
    element's length. (A regular expression tried at each position of the element took 0.6 s
    for 8 000 bytes of a token without ``=``.)"""
    pairs = {}
    for pair in element.split(";"):
        name, eq, value = pair.partition("=")
        if eq:
            pairs[name.strip().lower()] = value.strip()
    return pairs


def _hops(fields: Fields) -> Iterator[tuple[str | None, str | None]]:
    """``(for, proto)`` of each hop of the proxies' chain, from the right (the nearest proxy's
    first), each read only when the walk gets to it: ``Forwarded`` when present,
    ``X-Forwarded-For`` / ``-Proto`` otherwise, each element with its own proto
    (:func:`_proto_of`). What a client wrote itself is left of its address, which ends the
    walk: it is split from the rest but never read (an address parsed for each of the 4 000
    entries of an 8 KB ``X-Forwarded-For`` took 20 ms)."""
    forwarded = fields(hdrs.FORWARDED)
    if forwarded:
        for header in reversed(forwarded):
            for element in reversed(header.split(",")):
                pairs = _pairs(element)
                if not pairs:
                    continue
                node = pairs.get("for")
                proto = pairs.get("proto")
                yield (None if node is None else _node(node),
                       None if proto is None else proto.strip('"').lower())  # fmt: skip
        return
    chain = [a for h in fields(_X_FORWARDED_FOR) for a in h.split(",")]
    protos = [p for h in fields(_X_FORWARDED_PROTO) for a in h.split(",")
              if (p := a.strip().lower())]  # fmt: skip
    hop = 0  # elements read, from the right
    for i in range(len(chain) - 1, -1, -1):
        if chain[i].strip():
            yield _node(chain[i]), _proto_of(protos, hop)
            hop += 1


def _proto_of(protos: list[str], hop: int) -> str | None:
    """The ``X-Forwarded-Proto`` element of the ``hop``-th ``X-Forwarded-For`` element from the
    right (§12.13-1): each proxy appends one of each, so they pair from the right (what a
    client wrote itself is left of what its proxy added); a single value is one a proxy set
    for the whole request, every element's. None: no element for that hop."""
    if len(protos) == 1:
        return protos[0]
    return protos[-1 - hop] if hop < len(protos) else None


def client_of(request: web.BaseRequest, deployment: Deployment) -> tuple[str, str]:
    """``(client address, scheme)`` of a request (§12.13-1, §12.13-2): walking the proxies'
    chain from the right for as long as each hop was added by a trusted proxy. ``Forwarded``
    is read when present, ``X-Forwarded-For`` / ``-Proto`` otherwise."""
    return client_from(request.remote or "", request.scheme,
                       lambda name: request.headers.getall(name, []), deployment)  # fmt: skip


def client_from(peer: str, scheme: str, fields: Fields,
                deployment: Deployment) -> tuple[str, str]:  # fmt: skip
    """:func:`client_of` for a request read without aiohttp (:mod:`._lean`): ``peer``, the
    connection's address, ``scheme`` its own, and ``fields(name)``, the values of the header
    fields named ``name``."""
    if not deployment.trusts(peer):
        return peer, scheme
    client = peer
    for node, proto in _hops(fields):
        if node is None:
            break
        client = node
        if proto in ("http", "https"):
            scheme = proto
        if not deployment.trusts(client):
            break
    return client, scheme


class _Warned:
    done = False  # once a process: a line in the log, not one a request


def may_be_a_proxy(peer: str, deployment: Deployment) -> bool:
    """Whether a connection from ``peer`` should be looked at by :func:`note_forwarding`: not
    warned yet, ``peer`` not trusted, and local — a proxy in front of a vendor is on its own
    machine or network; an address on the Internet that writes ``X-Forwarded-For`` is only a
    client claiming to be someone else, which §12.13-1 already ignores."""
    return not _Warned.done and not deployment.trusts(peer) and _local(peer)


def note_forwarding(peer: str, fields: Fields) -> None:
    """Warn, once, that a request from ``peer`` (see :func:`may_be_a_proxy`) carries forwarding
    fields the endpoint does not believe: behind a proxy the vendor did not name, every customer
    has the proxy's address, so the limits per address (§12.9-6, first contacts per address)
    count them all as one and soon refuse everyone."""
    if _Warned.done or not (fields(hdrs.FORWARDED) or fields(_X_FORWARDED_FOR)):
        return
    _Warned.done = True
    log.warning("requests from %s carry Forwarded / X-Forwarded-For fields, but %s is not a "
                "trusted proxy: every customer behind it counts as %s for the limits per "
                "address. If it is your proxy, name it: --trusted-proxy %s (the server's "
                "trusted_proxies)", peer, peer, peer, peer)  # fmt: skip


def proxy_middleware(deployment: Deployment) -> Middleware:
    """The request as the client sent it: ``remote`` and ``scheme`` from trusted proxies."""

    @web.middleware
    async def proxied(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not deployment.trusted_proxies:
            if not _Warned.done and may_be_a_proxy(request.remote or "", deployment):
                note_forwarding(request.remote or "", lambda n: request.headers.getall(n, []))
            return await handler(request)
        client, scheme = client_of(request, deployment)
        if client == request.remote and scheme == request.scheme:
            return await handler(request)
        return await handler(request.clone(remote=client, scheme=scheme))

    return proxied
