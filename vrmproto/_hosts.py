"""Where a URL's host is — this machine, a local network, or the Internet — read from the URL
alone (sans-IO: nothing is resolved).

A party that takes URLs from others and then sends requests to them (an intentcast's answers
from anyone on a relay, §15.4-2; a vendor's discovery document and where it redirects, §13.1-7)
must not let them aim its requests at the person's own machine or network — the router, the
printer, a cloud's metadata service — on a path the stranger chose. :func:`nearer` is the rule
the agent applies: a URL given by another may be as far as, or farther than, where it came
from, never nearer.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Literal
from urllib.parse import urlsplit

__all__ = ["HostClass", "host_class", "nearer", "relay_url", "url_class"]

HostClass = Literal["loopback", "local", "public"]
_RANK: dict[HostClass | None, int] = {"public": 0, "local": 1, "loopback": 2, None: 3}


def host_class(host: str) -> HostClass:
    """Where ``host`` is: this machine, a local network, or the Internet. Numbers are read as
    the resolver reads them (``127.1``, ``2130706433`` and ``0x7f.1`` are 127.0.0.1); an
    unspecified address (``0.0.0.0/8``, ``::``), which a connection reaches this machine
    through, is this machine's; a name other than ``localhost`` and ``*.local`` is taken as
    public (it is not resolved here)."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    if host.endswith(".local"):  # multicast DNS: the local network
        return "local"
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return "public"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified or ip in _THIS_NETWORK:
        return "loopback"  # (a connection to 0.0.0.0, 0.1.2.3 or :: reaches this machine)
    return "public" if ip.is_global else "local"


#: "This network" (RFC 1122 §3.2.1.3): Linux connects an address in it to this machine.
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def url_class(url: str) -> HostClass | None:
    """Where the host of ``url`` is (:func:`host_class`); None when it has none."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host_class(host) if host else None


def nearer(origin: str, target: str) -> bool:
    """Whether ``target`` lies nearer to this machine than ``origin`` (a public URL's redirect
    or document naming a local network's or this machine's address), or has no host."""
    return _RANK[url_class(target)] > _RANK[url_class(origin)]


def relay_url(text: str) -> str:
    """``text`` if it is a relay URL: ``wss://``, or ``ws://`` (loopback and tests, §15.5-4),
    with a host, a port in range, no spaces or control characters, at most 2,048 characters;
    else ValueError. The rule of ``vrm relay add`` and of a vendor file's ``relays``."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        parts = None
    if (parts is None or len(text) > 2048 or parts.scheme.lower() not in ("wss", "ws")
            or not parts.hostname or any(c.isspace() or not c.isprintable() for c in text)):
        raise ValueError(f"{text!r} is not a relay URL (wss://host…)")
    return text
