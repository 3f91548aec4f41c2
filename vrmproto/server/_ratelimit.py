"""Token-bucket rate limits, keyed by sender key or client address (spec §12.9).

A bucket holds up to ``burst`` tokens and refills at ``per_minute / 60`` tokens a second (a
fraction for a daily budget); a request takes one. The clock is injected (ms), so tests drive
time by hand. Buckets are kept in least-recently-used order and the oldest is dropped once
``max_keys`` are held: a dropped bucket is the same as a full one, so memory stays bounded
whatever keys a flood invents.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets, one per key (§12.9-5)."""

    __slots__ = ("_buckets", "_clock", "burst", "max_keys", "per_minute")

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], int],
        burst: int | None = None,
        max_keys: int = 100_000,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute = per_minute
        self.burst = burst if burst is not None else per_minute
        if self.burst <= 0:
            raise ValueError("burst must be positive")
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def _level(self, key: Hashable, now: int) -> float:
        held = self._buckets.get(key)
        if held is None:
            return float(self.burst)
        tokens, at = held
        refill = max(now - at, 0) * self.per_minute / 60_000
        return min(float(self.burst), tokens + refill)

    def _store(self, key: Hashable, tokens: float, now: int) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def _wait_s(self, tokens: float) -> int:
        """Whole seconds until the bucket holds one token again (at least 1)."""
        missing = 1.0 - tokens
        return max(1, math.ceil(missing * 60 / self.per_minute))

    def retry_after(self, key: Hashable) -> int:
        """0 if ``key`` may send now, else the seconds to wait; takes nothing."""
        tokens = self._level(key, self._clock())
        return 0 if tokens >= 1.0 else self._wait_s(tokens)

    def charge(self, key: Hashable) -> None:
        """Take one token whether or not one is there (the level may dip below zero)."""
        now = self._clock()
        tokens = self._level(key, now) - 1.0
        self._store(key, max(tokens, -float(self.burst)), now)

    def refund(self, key: Hashable) -> None:
        """Give back one token taken by :meth:`charge` (never above ``burst``): for a request
        that turned out not to count against ``key`` (§12.9-6)."""
        held = self._buckets.get(key)
        if held is None:  # a dropped bucket is a full one
            return
        now = self._clock()
        self._store(key, min(float(self.burst), self._level(key, now) + 1.0), now)

    def take(self, key: Hashable) -> int:
        """Take a token and return 0, or take nothing and return the seconds to wait."""
        now = self._clock()
        tokens = self._level(key, now)
        if tokens < 1.0:
            return self._wait_s(tokens)
        self._store(key, tokens - 1.0, now)
        return 0

    def __len__(self) -> int:
        return len(self._buckets)
