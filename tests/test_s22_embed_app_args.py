"""``make_app``'s and ``serve``'s times in seconds are checked when given (s22 hunt).

``make_app(endpoint, purge_every_s=0)`` (or negative, or 1e-9: "as often as possible")
started a maintenance loop that purged without pause: some 100,000 store purges a second in
memory — on SQLite or PostgreSQL a DELETE each, the store kept busy for nothing. NaN went the
other way, never purging. Now ``purge_every_s`` is at least 1 s and finite (``ValueError``),
and ``drain_timeout_s``, ``shutdown_timeout`` and ``lingering_time`` are finite and not
negative.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from _broken_vendor import make_endpoint

from vrmproto.server import make_app, serve
from vrmproto.store import MemoryStore


@pytest.mark.parametrize("value", [0, -1, 1e-9, 0.5, math.nan, math.inf, "3600"])
def test_a_purge_interval_that_would_hammer_or_never_purge_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="purge_every_s"):
        make_app(make_endpoint(MemoryStore()), purge_every_s=value)


@pytest.mark.parametrize("value", [-1, math.nan, math.inf])
def test_a_drain_timeout_that_is_no_time_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="drain_timeout_s"):
        make_app(make_endpoint(MemoryStore()), drain_timeout_s=value)


@pytest.mark.parametrize("name", ["shutdown_timeout", "lingering_time"])
@pytest.mark.parametrize("value", [-1, math.nan])
async def test_serve_refuses_a_time_that_is_no_time(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        await serve(make_endpoint(MemoryStore()), **{name: value})


def test_the_documented_values_are_taken() -> None:
    make_app(make_endpoint(MemoryStore()), purge_every_s=1, drain_timeout_s=0)
    make_app(make_endpoint(MemoryStore()), purge_every_s=3600.0)
