"""Behind a trusted reverse proxy, the cap on connections per address (s20 hunt; §10.1-4,
§12.13-1).

Every connection a reverse proxy opens to the endpoint comes from the proxy's address, and each
carries the requests of whichever customers the proxy is serving at the time: nginx opens one
upstream connection per request in progress. The endpoint counted them all under the proxy's
address against ``max_connections_per_address``, so that many customers' requests in progress
at once — or one client holding that many slow requests open through the proxy — made the
endpoint abort every further connection of the proxy's, and every customer got the proxy's
``502``. §12.13-1 puts the limits kept per client address (§10.1-4 among them) on the client's
address, not the proxy's; a proxy's connections count only against the total
(``max_connections``, §10.1-3), and the connections per client are the proxy's to bound (nginx:
``limit_conn``, docs/deployment.md).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from _broken_vendor import make_endpoint
from _nginx import nginx_in_front

from vrmproto._binding import CONTENT_TYPE, WELL_KNOWN_PATH
from vrmproto.server import ConnectionGuard, ConnectionLimits, Deployment, Server, serve
from vrmproto.server._response import Response
from vrmproto.store import MemoryStore

CAPPED = ConnectionLimits(max_connections_per_address=2, max_connections=16)
PROXY = Deployment.of(None, ["127.0.0.1/32"])


class _Held:
    def drop(self) -> None:
        raise AssertionError("every connection is busy: none is closed to make room")


def _admit_busy(guard: ConnectionGuard, address: str) -> bool:
    held = _Held()
    taken = guard.admit(held, address)
    guard.busy(held)  # a request in progress on it
    return taken


def test_a_trusted_proxys_connections_are_not_capped_per_address() -> None:
    """The guard alone: a trusted proxy's third connection is taken in, up to the total cap,
    which still holds; another address's third is refused, as before."""
    guard = ConnectionGuard(CAPPED, open_files=1_000, deployment=PROXY)
    assert all(_admit_busy(guard, "127.0.0.1") for _ in range(16))
    assert guard.count("127.0.0.1") == 16
    assert not _admit_busy(guard, "127.0.0.1")  # max_connections, every one busy
    other = ConnectionGuard(CAPPED, open_files=1_000, deployment=PROXY)
    assert [_admit_busy(other, "127.0.0.2") for _ in range(3)] == [True, True, False]


def test_without_a_trusted_proxy_every_address_is_capped() -> None:
    guard = ConnectionGuard(CAPPED, open_files=1_000)
    assert [_admit_busy(guard, "127.0.0.1") for _ in range(3)] == [True, True, False]


async def _post(url: str, source: str) -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with (aiohttp.ClientSession(connector=connector) as http,
                http.post(url, data=b"\x80", headers={"Content-Type": CONTENT_TYPE}) as r):
        await r.read()
        return r.status


async def test_customers_behind_nginx_are_served_while_others_requests_are_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two customers' requests in progress through nginx (the cap per address is 2): a third
    customer's request is answered, not refused with nginx's 502."""
    endpoint = make_endpoint(MemoryStore())
    entered: list[int] = []
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def slow_inbox(data: bytes, *, client: str = "") -> Response:
        entered.append(1)
        if len(entered) == 2:
            arrived.set()
        await release.wait()
        return Response(204, b"")

    monkeypatch.setattr(endpoint, "handle_inbox", slow_inbox)
    upstream: Server = await serve(endpoint, connection_limits=CAPPED, deployment=PROXY)
    try:
        async with nginx_in_front(tmp_path, upstream.port) as proxy:
            inbox = f"{proxy}/vrm/inbox"
            busy = [asyncio.ensure_future(_post(inbox, f"127.0.0.{n}")) for n in (2, 3)]
            async with asyncio.timeout(10):
                await arrived.wait()
            connector = aiohttp.TCPConnector(local_addr=("127.0.0.4", 0), force_close=True)
            async with (aiohttp.ClientSession(connector=connector) as http,
                        http.get(f"{proxy}{WELL_KNOWN_PATH}") as r):
                status = r.status
            release.set()
            assert await asyncio.gather(*busy) == [204, 204]
    finally:
        release.set()
        await upstream.close()
    assert status == 200
