"""Local discovery of vrmproto endpoints with DNS-SD over multicast DNS (spec §13.2).

A vendor endpoint on a local network advertises itself as a ``_vrm._tcp.local.`` service whose TXT
record carries the path of its discovery document and the fingerprint of its key::

    async with advertise("Avis Park City", port, identity.public_key):
        ...  # serve

A customer's agent browses for such services and checks each one: it fetches the signed
discovery document (§13.1), verifies the signature, and compares the document's key with the TXT
fingerprint (§13.2-6). A TXT record alone is never trusted (§13.2-7)::

    for found in await browse(timeout=2.0):
        if found.verified:
            print(found.name, found.url, found.fingerprint)

Everything here binds to the interfaces it is given — ``127.0.0.1`` by default — so a test or a
demo never multicasts on a real network. This module is an I/O layer: the document's byte format
and its verification live in :mod:`vrmproto.binding`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from vrmproto._errors import ProtocolError
from vrmproto._keys import fingerprint
from vrmproto.binding import MAX_DISCOVERY_BYTES, WELL_KNOWN_PATH, DiscoveryDocument, discovery_url
from vrmproto.client._errors import InvalidResponse
from vrmproto.client._transport import Answer, discovery_from_answer

__all__ = [
    "MAX_FOUND",
    "MAX_TXT_BYTES",
    "RESOLVE_AT_ONCE",
    "SERVICE_TYPE",
    "Found",
    "advertise",
    "browse",
    "fetch_discovery",
    "instance_name",
    "txt_record",
]

#: The DNS-SD service type (§13.2-1).
SERVICE_TYPE = "_vrm._tcp.local."
#: The TXT record's whole encoded size stays under this many bytes (§13.2-3; RFC 6763 §6.2).
MAX_TXT_BYTES = 200
#: Longest DNS-SD instance name, in UTF-8 bytes (one DNS label, RFC 6763 §4.1.1).
MAX_INSTANCE_BYTES = 63
#: Most endpoints one :func:`browse` reports (and resolves): anyone on the local network can
#: announce services, thousands of them, each costing a resolve and a document fetch.
MAX_FOUND = 256
#: Most endpoints one :func:`browse` asks the network for the records of at once, and most it
#: checks the discovery document of at once (a connection each).
RESOLVE_AT_ONCE = 16
_FINGERPRINT_RE = re.compile(r"[a-z2-7]{4}(?:-[a-z2-7]{4}){3}")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # RFC 1122 §3.2.1.3: never a destination
#: A path of printable characters, without a query, a fragment or white space (RFC 3986 §3.3).
_PATH_RE = re.compile(r"[^\s?#\x00-\x1f\x7f]+")

Clock = Callable[[], int]


def _default_clock() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Found:
    """One endpoint seen on the local network, and what checking it showed (§13.2).

    ``url`` is the endpoint's URL: the base URL ``http://<address>:<port>`` (§13.2-4) followed
    by the path whose ``/.well-known/vrm`` the TXT ``path`` is (§13.3-2) — what a connect
    fetches the document of again. ``document_url`` is the document's own.

    ``verified`` is True only when the discovery document at ``url`` verified (§13.1) and its key
    has the fingerprint the TXT record announced (§13.2-6); ``key`` and ``document`` are then
    set. Otherwise ``problem`` says why in one sentence, and the endpoint must not be used
    without the person checking the fingerprint by other means (§13.2-7).
    """

    name: str
    url: str
    fingerprint: str
    host: str
    port: int
    path: str
    verified: bool = False
    key: bytes | None = None
    document: DiscoveryDocument | None = None
    problem: str = ""
    txt: Mapping[str, str] = field(default_factory=dict)

    @property
    def document_url(self) -> str:
        return urljoin(self.url, self.path)

    @property
    def document_name(self) -> str | None:
        """The name the document gives, where the endpoint is advertised under another: not
        that name as an instance name (§13.2-1: dots replaced, cut to 63 bytes) — renamed by
        mDNS because another took it (RFC 6762 §9), or claiming a name it was not heard by."""
        if self.document is None or instance_name(self.document.name) == self.name:
            return None
        return self.document.name


def _names(found: Found) -> set[str]:
    names = {found.name.strip().casefold()}
    if found.document is not None:
        names.add(found.document.name.strip().casefold())
    return names


def _rivals(found: Sequence[Found], of: Found) -> list[Found]:
    """The verified endpoints of ``found`` that go by a name ``of`` goes by — advertised under
    it, or so named by their signed document — with another key than ``of``'s. A name is a
    claim (§13.2-7, §13.3-4): where two keys make it, at most one is the vendor's."""
    if not of.verified:
        return []
    names = _names(of)
    return [f for f in found
            if f.verified and f.key != of.key and names & _names(f)]  # fmt: skip


def instance_name(name: str) -> str:
    """``name`` as a DNS-SD instance label: no dots or control characters, at most 63 bytes."""
    cleaned = "".join(c if c.isprintable() and c != "." else " " for c in name).strip()
    cleaned = re.sub(r"\s+", " ", cleaned) or "vrm endpoint"
    data = cleaned.encode("utf-8")[:MAX_INSTANCE_BYTES]
    return data.decode("utf-8", "ignore").rstrip()


def txt_record(key: bytes, *, path: str = WELL_KNOWN_PATH) -> dict[str, str]:
    """The TXT key/value pairs an endpoint advertises (§13.2-2), checked against §13.2-3."""
    txt = {"txtvers": "1", "v": "1", "path": path, "fp": fingerprint(key)}
    size = sum(1 + len(k) + 1 + len(v.encode("utf-8")) for k, v in txt.items())
    if size >= MAX_TXT_BYTES:
        raise ValueError(f"the TXT record would be {size} bytes; keep it under {MAX_TXT_BYTES}")
    return txt


def _base_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def advertise(
    name: str,
    port: int,
    key: bytes,
    host: str = "127.0.0.1",
    *,
    path: str = WELL_KNOWN_PATH,
) -> AsyncIterator[AsyncServiceInfo]:
    """Advertise an endpoint listening on ``host:port`` as ``_vrm._tcp`` while the block runs.

    Multicast DNS is bound to ``host`` only (``127.0.0.1`` by default, which never reaches a
    real network). The instance name is ``name`` (§13.2-1); if another endpoint on the link
    holds it, mDNS's conflict rule picks a new one (RFC 6762 §9). The advertisement is
    withdrawn (a goodbye packet) when the block exits. ``ValueError`` where ``host`` is not
    an IPv4 address (:func:`_check_interfaces`).
    """
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 -- we compare, we do not bind
        raise ValueError("advertise on a specific interface address, not a wildcard")
    _check_interfaces([host])
    instance = instance_name(name)
    info = AsyncServiceInfo(
        SERVICE_TYPE,
        f"{instance}.{SERVICE_TYPE}",
        addresses=[socket.inet_aton(host)],
        port=port,
        properties=txt_record(key, path=path),
        server=f"vrm-{fingerprint(key)[:9].replace('-', '')}.local.",
    )
    aiozc = AsyncZeroconf(interfaces=[host], ip_version=IPVersion.V4Only)
    try:
        await (await aiozc.async_register_service(info, allow_name_change=True))
        try:
            yield info
        finally:
            await (await aiozc.async_unregister_service(info))
    finally:
        await aiozc.async_close()


async def fetch_discovery(
    url: str,
    *,
    now: int | None = None,
    expected_key: bytes | None = None,
    session: aiohttp.ClientSession | None = None,
    timeout_s: float = 5.0,
    role: str | None = None,
) -> DiscoveryDocument:
    """GET the discovery document of ``url`` — an endpoint URL, whose document is at its path
    followed by ``/.well-known/vrm`` (§13.3-2), or the document's own URL — and verify it (§13.1;
    ``role``: the role it must have, §13.1-10); inbox and history become absolute URLs
    (§13.1-7). Raises :class:`~vrmproto.ProtocolError` when it does not verify,
    :class:`aiohttp.ClientError` or :class:`TimeoutError` when it cannot be fetched,
    :class:`ValueError` when the answer is not a document. A session made here keeps no
    cookies (§11.6-3)."""
    doc_url = url if urlsplit(url).path.endswith(WELL_KNOWN_PATH) else discovery_url(url)
    own = session is None
    client = session or aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    try:
        async with client.get(
            doc_url, timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False
        ) as resp:
            if resp.status != 200:
                raise ValueError(f"{doc_url} answered HTTP {resp.status}, not a discovery document")
            body = await resp.content.read(MAX_DISCOVERY_BYTES + 1)
            answer = Answer(resp.status, resp.headers, body, str(resp.url))
    finally:
        if own:
            await client.close()
    try:
        return discovery_from_answer(answer, now=_default_clock() if now is None else now,
                                     expected_key=expected_key, role=role)  # fmt: skip
    except InvalidResponse as exc:
        raise ValueError(exc.detail) from None


def _txt_dict(info: AsyncServiceInfo) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in info.properties.items():
        if v is None:
            continue
        with contextlib.suppress(UnicodeDecodeError):
            out[k.decode("utf-8")] = v.decode("utf-8")
    return out


async def _check(found: Found, session: aiohttp.ClientSession, now: int) -> Found:
    """Fetch and verify the found endpoint's discovery document (§13.2-5, §13.2-6)."""
    try:
        doc = await fetch_discovery(found.document_url, now=now, session=session, timeout_s=3.0,
                                    role="vendor")  # only vendors advertise (§13.2-1)
    except ProtocolError as exc:
        return replace(found, problem=f"its discovery document does not verify: {exc.detail}")
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        return replace(found, problem=f"its discovery document could not be fetched: {reason}")
    if doc.fingerprint != found.fingerprint:
        return replace(
            found,
            problem=(
                f"the document is signed by key {doc.fingerprint}, not {found.fingerprint} as "
                "the advertisement says"
            ),
            key=doc.key,
            document=doc,
        )
    return replace(found, verified=True, key=doc.key, document=doc)


def _reachable(address: str, *, loopback: bool) -> bool:
    """Whether an announced address can be an endpoint's (§13.2-4): a unicast address, and a
    loopback one only where the browse is on a loopback interface (``loopback``) — on a
    network, such an announcement would point the agent at the person's own machine."""
    ip = ipaddress.ip_address(address)
    if ip in _THIS_NETWORK or ip.is_multicast or ip.is_reserved:  # 0.0.0.0 is this machine
        return False
    return loopback or not ip.is_loopback


def _parse_info(name: str, info: AsyncServiceInfo, *, loopback: bool = False) -> Found | None:
    """What one resolved service is; ``loopback``: the browse is on a loopback interface."""
    addresses = info.parsed_addresses(IPVersion.V4Only)
    if not addresses or not info.port:
        return None
    txt = _txt_dict(info)
    instance = name[: -len(SERVICE_TYPE) - 1] if name.endswith("." + SERVICE_TYPE) else name
    usable = [a for a in addresses if _reachable(a, loopback=loopback)]
    host = usable[0] if usable else addresses[0]
    path = txt.get("path", WELL_KNOWN_PATH)
    found = Found(
        name=instance,
        url=_base_url(host, info.port),
        fingerprint=txt.get("fp", ""),
        host=host,
        port=info.port,
        path=path,
        txt=txt,
    )
    if not usable:
        return replace(found, problem=f"it points at the address {host}, which no endpoint on "
                                      "the local network has")  # fmt: skip
    if txt.get("v") != "1":
        return replace(found, problem=f"it speaks protocol version {txt.get('v')!r}, not 1")
    if not _FINGERPRINT_RE.fullmatch(found.fingerprint):
        return replace(found, problem="its TXT record has no valid key fingerprint (fp)")
    if not path.startswith("/") or path.startswith("//") or not _PATH_RE.fullmatch(path):
        # "//host/…" is a network-path reference: it would fetch the document from another
        # host than the one advertised (§13.2-5: at the TXT path on that base URL); "?" and "#"
        # start a query and a fragment, which an endpoint URL's document drops (§13.3-2)
        return replace(found, problem="its TXT path is not an absolute path")
    if not path.endswith(WELL_KNOWN_PATH):
        # an endpoint's document is at its URL's path followed by /.well-known/vrm (§13.3-2):
        # a document elsewhere is no endpoint's, and the agent could not ask for it again
        return replace(found, problem=f"its TXT path is not an endpoint's discovery document "
                                      f"(…{WELL_KNOWN_PATH}, §13.3-2)")  # fmt: skip
    # the endpoint is at the path the document's path extends (§13.3-2): "/shop/.well-known/vrm"
    # is the document of http://<address>:<port>/shop, which a connect asks for it again
    return replace(found, url=found.url + path[: -len(WELL_KNOWN_PATH)])


def _check_interfaces(interfaces: Sequence[str]) -> list[str]:
    """``interfaces`` as :func:`browse` takes them: one or more IPv4 interface addresses
    (multicast DNS is bound to them, over IPv4 only, §13.2-4); ``ValueError`` naming the first
    that is not one. zeroconf itself listened nowhere on an IPv6 address and reported nothing
    found, or failed with a ``RuntimeError``."""
    if not interfaces:
        raise ValueError("name at least one interface address to browse on")
    for address in interfaces:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise ValueError(f"{address!r} is not an IPv4 interface address: local discovery "
                             "is multicast DNS over IPv4 only") from None  # fmt: skip
    return list(interfaces)


async def browse(
    timeout: float,  # noqa: ASYNC109 -- browsing *is* listening for a while: the API's point
    interfaces: Sequence[str] = ("127.0.0.1",),
    *,
    verify: bool = True,
    clock: Clock = _default_clock,
    stop_when: Callable[[Sequence[Found]], bool] | None = None,
    max_found: int = MAX_FOUND,
) -> list[Found]:
    """Browse for ``_vrm._tcp`` endpoints for up to ``timeout`` seconds (§13.2-4).

    Multicast DNS is bound to ``interfaces``, IPv4 addresses (loopback by default;
    :func:`_check_interfaces`: ``ValueError`` for another; ``OSError`` where no multicast can be
    had on them). Each endpoint found is resolved and, when ``verify`` is true, checked against
    its discovery document (§13.2-5, §13.2-6). Returns as soon as ``stop_when(found_so_far)``
    is true, else when the time is up; the list is sorted by name.

    A hostile network can announce any number of services: at most ``max_found`` service names
    are taken (the first announced; the rest are ignored), each resolved once at a time; at
    most :data:`RESOLVE_AT_ONCE` of them wait for their records at once (those whose records
    came with the announcement do not wait), and at most as many documents are fetched at once.
    An endpoint that withdraws its advertisement before the browse ends (§13.2-1) is not
    reported; one whose document is still awaited then is, unverified, with that reason.
    """
    interfaces = _check_interfaces(interfaces)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    names = _Names(max_found)
    results: dict[str, Found] = {}
    changed = asyncio.Event()
    resolving = asyncio.Semaphore(RESOLVE_AT_ONCE)  # asking the network for records
    checking_at_once = asyncio.Semaphore(RESOLVE_AT_ONCE)  # fetching documents

    gone: set[str] = set()
    checking: dict[str, Found] = {}  # resolved, its document awaited

    def on_change(
        zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            # withdrawn (a goodbye, or its records expired): it no longer serves (§13.2-1)
            gone.add(name)
            if results.pop(name, None) is not None:
                changed.set()
        else:
            gone.discard(name)
            names.offer(name)

    loopback = any(ipaddress.ip_address(i).is_loopback for i in interfaces)
    aiozc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
    session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
    tasks: set[asyncio.Task[None]] = set()

    async def resolve(name: str) -> None:
        try:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            # Records that came with the announcement (RFC 6763 §12.1) are in the cache: no
            # slot is waited for. Names announced without them, which anyone can send by the
            # dozen in one packet, took every slot for 3 s while the vendor heard after them
            # waited behind (a 2 s `vrm connect NAME` never found it).
            if not info.load_from_cache(aiozc.zeroconf):
                async with resolving:
                    remaining_ms = max(100.0, (deadline - loop.time()) * 1000)
                    if not await info.async_request(aiozc.zeroconf, min(remaining_ms, 3000.0)):
                        return
            found = _parse_info(name, info, loopback=loopback)
            if found is None:
                return
            if verify and not found.problem:
                checking[name] = found
                async with checking_at_once:
                    found = await _check(found, session, clock())
                del checking[name]
            if name not in gone:  # withdrawn while it was checked
                results[name] = found
                changed.set()
        finally:
            names.done(name)

    # Multicast (QM) questions from the first one on: zeroconf's default first question asks
    # for unicast answers (QU, RFC 6762 §5.4), and on a host where the advertisers share port
    # 5353 with us those answers reach one socket only, often not ours; the next question went
    # a second later, so a 1 s browse found nothing (issue 11 item 11).
    browser = AsyncServiceBrowser(aiozc.zeroconf, SERVICE_TYPE, handlers=[on_change],
                                  question_type=DNSQuestionType.QM)
    try:
        while True:
            if stop_when is not None and stop_when(sorted(results.values(), key=_by_name)):
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            getter = asyncio.ensure_future(names.queue.get())
            waiter = asyncio.ensure_future(changed.wait())
            done, _ = await asyncio.wait(
                {getter, waiter}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for pending in (getter, waiter):
                if pending not in done:
                    pending.cancel()
            changed.clear()
            if getter in done:
                task = asyncio.ensure_future(resolve(getter.result()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await browser.async_cancel()
        await aiozc.async_close()
        await session.close()
    for name, found in checking.items():  # heard, but the browse ended first: said so
        if name not in gone:
            results[name] = replace(found, problem="its discovery document did not come within "
                                                   f"the browse ({timeout:g} s)")  # fmt: skip
    return sorted(results.values(), key=_by_name)


class _Names:
    """The service names a :func:`browse` resolves: each at most once at a time, at most
    ``cap`` distinct ones. An update of a name being resolved is resolved again after it."""

    __slots__ = ("_again", "_busy", "_cap", "_taken", "queue")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._taken: set[str] = set()
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    def offer(self, name: str) -> None:
        """``name`` was announced, or its records changed."""
        if name not in self._taken:
            if len(self._taken) >= self._cap:
                return
            self._taken.add(name)
        if name in self._busy:
            self._again.add(name)
            return
        self._busy.add(name)
        self.queue.put_nowait(name)

    def done(self, name: str) -> None:
        """The resolve of ``name`` ended."""
        self._busy.discard(name)
        if name in self._again:
            self._again.discard(name)
            self.offer(name)


def _by_name(found: Found) -> tuple[str, str]:
    return (found.name.lower(), found.url)
