"""The server's limit objects refuse a value they cannot use, when they are made (s22 hunt).

A vendor embedding the endpoint builds these in Python, often from its own settings:

- ``ConnectionLimits`` took any positive int: ``log_interval_ms=2**1100`` made ``serve()`` fail
  with an ``OverflowError`` from deep in the connection guard, and ``open_file_reserve=2**60``
  quietly cut the server to one connection. Every value is now at most 2^53 - 1, like
  ``Limits`` (§3.3), and still a positive int.
- ``StorageBudget`` checked nothing's type: ``retry_after_s=1.5`` (or NaN) had the endpoint
  sign ``rate_limited`` problems whose ``retry_after`` no customer can read (an integer,
  §5.6.2; ``Retry-After: 1.5`` is no HTTP delay either, RFC 9110 §10.2.3), and
  ``max_store_bytes="0"`` answered every first contact 500.
- ``RateLimiter`` took NaN (or infinity) for ``per_minute`` or ``burst`` and then limited
  nothing (every comparison with NaN is false), a non-number failed at the first request, and
  ``max_keys=-5`` failed every request with ``KeyError``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import aiohttp
import pytest
from _vendor_proc import ACCEPTED, Customer, post

from vrmproto._keys import Identity
from vrmproto.server import ConnectionLimits, Endpoint, RateLimiter, StorageBudget, serve
from vrmproto.store import MemoryStore

BAD_NUMBERS: list[Any] = [1.5, math.nan, math.inf, True, "10", None]


@pytest.mark.parametrize("name", ["max_connections", "open_file_reserve", "log_interval_ms",
                                  "max_connections_per_address"])  # fmt: skip
def test_a_connection_limit_past_2_53_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be at most 2"):
        ConnectionLimits(**{name: 2**53})
    assert getattr(ConnectionLimits(**{name: 2**53 - 1}), name) == 2**53 - 1


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_a_connection_limit_that_is_no_int_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="log_interval_ms must be a positive integer"):
        ConnectionLimits(log_interval_ms=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["min_free_bytes", "reserve_free_bytes", "retry_after_s",
                                  "check_every_ms", "max_store_bytes"])  # fmt: skip
@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_a_storage_budget_that_is_no_int_is_refused(name: str, value: object) -> None:
    if name == "max_store_bytes" and value is None:
        return  # None: no bound, as documented
    kw: dict[str, Any] = {name: value}
    if name in ("min_free_bytes", "reserve_free_bytes"):  # keep the pair's order valid
        kw = {"min_free_bytes": value, "reserve_free_bytes": value}
    with pytest.raises(ValueError, match="must be"):
        StorageBudget(**kw)


def test_a_storage_budget_keeps_its_documented_values() -> None:
    assert StorageBudget(max_store_bytes=0, min_free_bytes=0, reserve_free_bytes=0,
                         check_every_ms=0).max_store_bytes == 0  # fmt: skip
    assert StorageBudget(min_free_bytes=2**62, reserve_free_bytes=2**62).min_free_bytes == 2**62
    with pytest.raises(ValueError, match="retry_after_s"):
        StorageBudget(retry_after_s=0)


async def test_a_used_up_budget_answers_a_problem_the_customer_can_read() -> None:
    vendor = Identity(os.urandom(32))
    endpoint = Endpoint(vendor, store=MemoryStore(), storage=StorageBudget(max_store_bytes=0))
    server = await serve(endpoint, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            c = Customer(vendor, base_url=server.url)
            reply = await post(http, c.inbox, c.offer(*ACCEPTED).envelope)
    finally:
        await server.close()
    assert reply.status == 429
    assert reply.headers["Retry-After"] == "3600"
    assert reply.problem().body.retry_after == 3600


@pytest.mark.parametrize("kw", [{"per_minute": math.nan}, {"per_minute": math.inf},
                                {"per_minute": "10"}, {"per_minute": True},
                                {"per_minute": 10, "burst": math.nan},
                                {"per_minute": 10, "burst": math.inf},
                                {"per_minute": 10, "max_keys": 0},
                                {"per_minute": 10, "max_keys": -5},
                                {"per_minute": 10, "max_keys": 1.5}])  # fmt: skip
def test_a_rate_limiter_that_could_not_limit_is_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RateLimiter(clock=lambda: 0, **kw)


def test_a_rate_limiter_of_a_fraction_per_minute_still_limits() -> None:
    limiter = RateLimiter(0.5, clock=lambda: 0, burst=1)
    assert limiter.take("k") == 0
    assert limiter.take("k") == 120
