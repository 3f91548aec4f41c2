"""Token-bucket rate limits, keyed by sender key or client address (spec §12.9).

A bucket holds up to ``burst`` tokens and refills at ``per_minute / 60`` tokens a second (a
fraction for a daily budget); a request takes one. The clock is injected (ms), so tests drive
time by hand. Buckets are kept in least-recently-used order and the oldest is dropped once
``max_keys`` are held: a dropped bucket is the same as a full one, so memory stays bounded
whatever keys a flood invents.

Several server processes over one database (``vrm vendor serve --workers``, or several machines)
keep these buckets in the database instead (§12.9-8): :class:`SharedRateLimiter`, whose
awaitable methods (the ``a``-prefixed ones, which the endpoint calls) read and update one row
per key atomically, the requests of one process made at once in one statement
(:mod:`vrmproto.store._pg_batch`). A :class:`RateLimiter`'s awaitable methods are its own, in
memory.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Protocol

__all__ = ["BucketStore", "RateLimiter", "SharedRateLimiter", "address_key"]

#: IPv6 client addresses seen, by the key their requests count under (:func:`address_key`):
#: bounded, as the buckets are, whatever addresses a flood comes from.
_V6_KEYS: dict[str, str] = {}
_V6_KEYS_MAX = 4096


def address_key(client: str) -> str:
    """What a client address's requests count under for ``rate_per_address_per_minute``
    (§10-7): an IPv6 address as its /64, which one subscriber usually holds whole (so that
    its 2**64 addresses are one client, not as many); an IPv4-mapped one as its IPv4 address;
    an IPv4 address, or anything else (a Unix socket, a test's label), as itself. Per request:
    IPv4 costs one look for a colon, IPv6 a dictionary look-up once seen."""
    if ":" not in client:
        return client
    key = _V6_KEYS.get(client)
    if key is None:
        try:
            address = ipaddress.IPv6Address(client.split("%", 1)[0])
        except ValueError:
            return client
        if address.ipv4_mapped is not None:
            key = str(address.ipv4_mapped)
        else:
            key = str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
        if len(_V6_KEYS) >= _V6_KEYS_MAX:
            _V6_KEYS.clear()
        _V6_KEYS[client] = key
    return key


def _positive(name: str, value: float) -> float:
    """``value``, a finite positive number (an int or a float, not a bool); else
    ``ValueError``: a bucket of NaN or infinite tokens never runs out, and limits nothing."""
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"rate limit {name} must be a finite positive number")
    return value


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
        self.per_minute = _positive("per_minute", per_minute)
        self.burst = _positive("burst", burst if burst is not None else per_minute)
        if type(max_keys) is not int or max_keys <= 0:
            raise ValueError("max_keys must be a positive integer")
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

    # -- what the endpoint awaits: in memory here, in the database in SharedRateLimiter ------

    async def atake(self, key: Hashable) -> int:
        """:meth:`take`, awaited."""
        return self.take(key)

    async def aretry_after(self, key: Hashable) -> int:
        """:meth:`retry_after`, awaited."""
        return self.retry_after(key)

    async def acharge(self, key: Hashable) -> None:
        """:meth:`charge`, awaited."""
        self.charge(key)

    async def arefund(self, key: Hashable) -> None:
        """:meth:`refund`, awaited."""
        self.refund(key)


class BucketStore(Protocol):
    """Token buckets kept in a database that every server process shares (§12.9-8):
    :class:`vrmproto.store._pg_rates.PgRateBuckets`. ``name`` tells the limits apart; each
    call takes the bucket's ``rate`` (tokens a minute), ``burst`` and the time ``now`` (ms),
    and returns the level after it (None from :meth:`level`/:meth:`refund` where the key has
    no bucket, which is the same as a full one)."""

    async def take(self, name: str, key: bytes, rate: float, burst: float,
                   now: int) -> tuple[float, bool]: ...  # fmt: skip

    async def charge(self, name: str, key: bytes, rate: float, burst: float,
                     now: int) -> float: ...  # fmt: skip

    async def refund(self, name: str, key: bytes, rate: float, burst: float,
                     now: int) -> float | None: ...  # fmt: skip

    async def level(self, name: str, key: bytes, rate: float, burst: float,
                    now: int) -> float | None: ...  # fmt: skip


def _key_bytes(key: Hashable) -> bytes:
    if isinstance(key, bytes):
        return key
    return str(key).encode("utf-8")


class SharedRateLimiter(RateLimiter):
    """Token buckets in a database shared by every server process (§12.9-8): the same rule as
    :class:`RateLimiter` (§12.9-5), one row per key, each update atomic, so two
    processes taking from one bucket at once take two tokens. The synchronous methods are
    :class:`RateLimiter`'s own and keep nothing shared; the endpoint awaits the others."""

    __slots__ = ("_db", "_name")

    def __init__(self, db: BucketStore, name: str, per_minute: float, *,
                 clock: Callable[[], int], burst: int | None = None) -> None:  # fmt: skip
        super().__init__(per_minute, clock=clock, burst=burst)
        self._db = db
        self._name = name

    def _args(self, key: Hashable) -> tuple[str, bytes, float, float, int]:
        return self._name, _key_bytes(key), self.per_minute, float(self.burst), self._clock()

    async def atake(self, key: Hashable) -> int:
        tokens, taken = await self._db.take(*self._args(key))
        return 0 if taken else self._wait_s(tokens)

    async def aretry_after(self, key: Hashable) -> int:
        tokens = await self._db.level(*self._args(key))
        return 0 if tokens is None or tokens >= 1.0 else self._wait_s(tokens)

    async def acharge(self, key: Hashable) -> None:
        await self._db.charge(*self._args(key))

    async def arefund(self, key: Hashable) -> None:
        await self._db.refund(*self._args(key))
