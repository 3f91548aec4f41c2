"""A hook that never returns no longer holds the server's shutdown for ever (s22 hunt, §12.12).

``Server.close()`` (and ``vrm vendor serve`` on SIGTERM) waits for the hooks still running —
``Endpoint.subscribe`` and ``Policy.on_message``, which a vendor points at its CRM. A hook
stuck on a CRM that does not answer (no timeout of its own) kept ``close()`` waiting without
end: the process never stopped until killed. Now ``make_app(drain_timeout_s=5.0)`` bounds the
wait (``serve()`` gives it its ``shutdown_timeout``); hooks still running then are cancelled
and logged. ``Endpoint.drain(timeout_s)`` does the same for an application of one's own.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest
from _vendor_proc import ACCEPTED, Customer, post

from vrmproto._keys import Identity
from vrmproto.server import Endpoint, Event, ReferencePolicy, make_app, serve, serve_app
from vrmproto.store import MemoryStore


def _vendor() -> tuple[Identity, Endpoint, asyncio.Event, list[str]]:
    vendor = Identity(os.urandom(32))
    endpoint = Endpoint(vendor, store=MemoryStore(), policy=ReferencePolicy(accepts_terms=ACCEPTED))
    started = asyncio.Event()
    ended: list[str] = []

    async def crm(event: Event) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # the CRM never answers
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    endpoint.subscribe(crm)
    return vendor, endpoint, started, ended


async def test_close_cancels_a_hook_still_running_after_the_drain_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vendor, endpoint, started, ended = _vendor()
    app = make_app(endpoint, drain_timeout_s=0.05)
    server = await serve_app(app, endpoint)
    async with aiohttp.ClientSession() as http:
        c = Customer(vendor, base_url=server.url)
        assert (await post(http, c.inbox, c.offer(*ACCEPTED).envelope)).status == 200
    await started.wait()
    async with asyncio.timeout(10):
        await server.close()
    assert ended == ["cancelled"]
    assert any("1 hook" in r.getMessage() and "cancelled" in r.getMessage()
               for r in caplog.records)  # fmt: skip


async def test_serve_closes_in_bounded_time_with_a_stuck_hook() -> None:
    vendor, endpoint, started, ended = _vendor()
    server = await serve(endpoint, shutdown_timeout=0.05)  # hooks too; 5 s by default
    async with aiohttp.ClientSession() as http:
        c = Customer(vendor, base_url=server.url)
        assert (await post(http, c.inbox, c.offer(*ACCEPTED).envelope)).status == 200
    await started.wait()
    async with asyncio.timeout(10):
        await server.close()
    assert ended == ["cancelled"]


async def test_drain_waits_for_hooks_that_finish() -> None:
    vendor = Identity(os.urandom(32))
    endpoint = Endpoint(vendor, store=MemoryStore(), policy=ReferencePolicy(accepts_terms=ACCEPTED))
    done: list[bytes] = []

    async def quick(event: Event) -> None:
        await asyncio.sleep(0)
        done.append(event.thread)

    endpoint.subscribe(quick)
    c = Customer(vendor)
    assert (await endpoint.handle_inbox(c.offer(*ACCEPTED).envelope)).status == 200
    await endpoint.drain(timeout_s=5.0)
    assert done == [c.thread]
