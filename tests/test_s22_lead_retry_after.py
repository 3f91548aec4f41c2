"""A webhook receiver that answers ``429`` (or ``503``) with ``Retry-After`` is given that long.

RFC 9110 §10.2.3, RFC 6585 §4: a CRM's rate limit says how long to wait. The deliverer read the
status alone (its response reader kept no field but a redirect's Location) and retried on its
own backoff — 1 s, 2 s, 4 s… — into a receiver that had asked for a minute, each retry counted
against it. Now the wait is at least what the receiver asked, up to ``backoff_max_s``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer
from _vendor_proc import InProcessVendor as Vendor
from aiohttp import web

from tests._loopback import serving_app
from vrmproto._http1 import ResponseReader
from vrmproto._keys import Identity
from vrmproto.server._webhook_http import retry_after_s
from vrmproto.server._webhooks import Deliverer, Webhook, parse_secret
from vrmproto.store import SQLiteStore, Store

SECRET = parse_secret("whsec_" + "A" * 43 + "=")
VENDOR = Identity(VENDOR_SEED)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await SQLiteStore.open(tmp_path / "vendor.db")
    yield s
    await s.close()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[int]]]:
    """A receiver that answers 429 with ``Retry-After: 7``, then 503 with an HTTP date (in
    the past: no wait), then 200; the statuses it gave."""
    answers = [(429, {"Retry-After": "7"}),
               (503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), (200, {})]  # fmt: skip
    given: list[int] = []

    async def take(request: web.Request) -> web.Response:
        await request.read()
        status, headers = answers[min(len(given), len(answers) - 1)]
        given.append(status)
        return web.Response(status=status, headers=headers)

    app = web.Application()
    app.router.add_post("/hook", take)
    async with serving_app(app) as url:
        yield f"{url}/hook", given


async def _waits(store: Store, url: str, backoff_max_s: float) -> list[float]:
    """Deliver a relationship's events to ``url``; the waits between attempts."""
    v, c = Vendor(store), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    waits: list[float] = []

    async def sleep(s: float) -> None:  # (no test sleeps: the waits are recorded)
        waits.append(s)

    hook = Webhook("crm", url, SECRET, "https://shop.example/vrm", backoff_s=0.01,
                   backoff_max_s=backoff_max_s)  # fmt: skip
    async with Deliverer(hook, store, sleep=sleep) as d:
        while await d.step():
            pass
    return waits


async def test_a_receivers_retry_after_is_waited(
    store: Store, receiver: tuple[str, list[int]]
) -> None:
    url, given = receiver
    waits = await _waits(store, url, 60.0)
    assert given[:3] == [429, 503, 200]  # (then the next event, 200)
    assert len(waits) == 2
    assert waits[0] >= 7.0  # was ~0.01: its own backoff
    assert waits[1] < 1.0  # a date already past asks for no wait


async def test_retry_after_is_bounded_by_backoff_max_s(
    store: Store, receiver: tuple[str, list[int]]
) -> None:
    url, _ = receiver
    waits = await _waits(store, url, 3.0)
    assert 0 < waits[0] <= 3.0


def test_the_reader_keeps_retry_after_of_a_429_without_the_other_fields() -> None:
    reader = ResponseReader(keep_body=False)
    answer = reader.feed(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\n"
                         b"X-Other: 1\r\nContent-Length: 0\r\n\r\n")  # fmt: skip
    assert answer is not None
    assert list(answer.headers) == [("retry-after", "120")]


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0), (" 5 ", 5.0), ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),
    ("Thu, 01 Jan 2026 00:01:00 GMT", 60.0), ("soon", None), ("-1", None), ("1.5", None),
    ("9" * 40, 1e9),
])  # fmt: skip
def test_retry_after_values(value: str, seconds: float | None) -> None:
    assert retry_after_s(value, now_s=1_767_225_600.0) == seconds  # 2026-01-01T00:00:00Z
