"""Admission control for first contact (spec §11.8-2, §10-13 to §10-18).

Anyone can open a relationship with a vendor: a valid ``terms.offer`` or ``intentcast`` from a
fresh key is all it takes, and what is accepted is kept. :class:`Admission` decides, per client
address prefix, whether one more relationship may be opened, and whether a large first-contact
message may be kept:

- a *first contact* is a message that opens a relationship, or a customer message in one that
  holds no agreement yet; it is *large* when its envelope is over ``max_first_contact_bytes`` or
  its body's unknown keys take over ``max_unknown_body_bytes``. A prefix may send
  ``large_first_contacts_per_address_per_day`` large ones a day (§10-15), then gets ``too_large``;
- a prefix may open ``first_contacts_per_address_per_day`` relationships a day (§10-16), and hold
  ``open_relationships_per_address`` open negotiations (§10-17); beyond either, a
  first contact gets ``rate_limited`` with the seconds until one is free.

Addresses are aggregated to prefixes (:func:`address_prefix`): an IPv4 /24 and an IPv6 /64 each
count as one address, since whoever holds one address usually holds its neighbours. Everything
here is in memory and bounded (:data:`MAX_PREFIXES`); after a restart the counts start empty,
while the relationships opened before it still expire on their own (§11.8-3). The clock is
injected, in ms.

Charges are taken when the message is admitted, so that concurrent first contacts see them, and
given back (:meth:`Ticket.cancel`) when the message is not stored after all.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from vrmproto._errors import Problem
from vrmproto._limits import DAY_MS, Limits
from vrmproto.server._ratelimit import RateLimiter

__all__ = ["MAX_PREFIXES", "Admission", "Refusal", "StorageBudget", "Ticket", "address_prefix"]

#: Most client prefixes whose open relationships are tracked; the least recently active one is
#: forgotten beyond (memory stays bounded whatever addresses a flood comes from).
MAX_PREFIXES = 100_000
_MINUTES_PER_DAY = DAY_MS // 60_000


def address_prefix(client: str) -> str:
    """The prefix a client address counts under: ``"192.0.2.0/24"``, ``"2001:db8:1:2::/64"``.

    An IPv4-mapped IPv6 address counts as its IPv4 address. Anything that is not an IP address
    (a Unix socket, a test's label) counts as itself.
    """
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    bits = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


@dataclass(frozen=True, slots=True)
class StorageBudget:
    """The vendor-wide storage budget (§11.8-4): a vendor's own setting, not a protocol limit.

    While the store holds ``max_store_bytes`` or more (None: no bound), or its file system has
    less than ``min_free_bytes`` free, no relationship is opened: a first contact gets
    ``rate_limited`` with ``retry_after_s``. Below ``reserve_free_bytes`` free, nothing more is
    stored at all: every message gets ``storage_full`` (507), so that the disk never fills up
    half way through a transaction. The store is measured at most every ``check_every_ms``.
    """

    max_store_bytes: int | None = None
    min_free_bytes: int = 256 * 2**20
    reserve_free_bytes: int = 32 * 2**20
    retry_after_s: int = 3600
    check_every_ms: int = 1000

    def __post_init__(self) -> None:
        if self.reserve_free_bytes > self.min_free_bytes:
            raise ValueError("reserve_free_bytes must not exceed min_free_bytes")
        if self.retry_after_s <= 0 or self.check_every_ms < 0:
            raise ValueError("retry_after_s must be positive and check_every_ms not negative")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a first contact is not admitted: the problem to answer with."""

    code: Problem
    detail: str
    clause: str
    retry_after: int | None = None


@dataclass(slots=True)
class Ticket:
    """What admitting one message took; :meth:`cancel` gives it back."""

    admission: Admission
    prefix: str
    thread: bytes | None = None  # a relationship counted as open
    day: bool = False  # a token of first_contacts_per_address_per_day
    large: bool = False  # a token of large_first_contacts_per_address_per_day
    cancelled: bool = field(default=False)

    def cancel(self) -> None:
        """The message was not stored: give back everything this ticket took."""
        if self.cancelled:
            return
        self.cancelled = True
        a = self.admission
        if self.day:
            a.first_contacts.refund(self.prefix)
        if self.large:
            a.large.refund(self.prefix)
        if self.thread is not None:
            a.close(self.thread)


class Admission:
    """Per-prefix budgets for first contact (§11.8-2); one per endpoint."""

    def __init__(self, limits: Limits, *, clock: Callable[[], int]) -> None:
        self.limits = limits
        self.clock = clock
        self.first_contacts = RateLimiter(
            limits.first_contacts_per_address_per_day / _MINUTES_PER_DAY, clock=clock,
            burst=limits.first_contacts_per_address_per_day, max_keys=MAX_PREFIXES,
        )  # fmt: skip
        self.large = RateLimiter(
            limits.large_first_contacts_per_address_per_day / _MINUTES_PER_DAY, clock=clock,
            burst=limits.large_first_contacts_per_address_per_day, max_keys=MAX_PREFIXES,
        )  # fmt: skip
        # prefix -> {thread: ms of its last message}, least recently active prefix first
        self._open: OrderedDict[str, dict[bytes, int]] = OrderedDict()
        self._prefix_of: dict[bytes, str] = {}

    def open_count(self, prefix: str) -> int:
        """How many relationships without an agreement ``prefix`` holds (as far as known)."""
        return len(self._open.get(prefix, ()))

    def admit(self, client: str, thread: bytes, *, opens: bool, large: bool) -> Ticket | Refusal:
        """Admit one first-contact message from ``client``: ``opens`` when it opens the
        relationship ``thread``, ``large`` when it is over the first-contact size limits."""
        prefix = address_prefix(client)
        ticket = Ticket(self, prefix)
        limits = self.limits
        if large:
            if self.large.take(prefix):
                return Refusal(
                    Problem.TOO_LARGE,
                    f"a first contact is at most {limits.max_first_contact_bytes} bytes with at "
                    f"most {limits.max_unknown_body_bytes} bytes of unknown body keys; this "
                    f"address has sent its {limits.large_first_contacts_per_address_per_day} "
                    "larger ones of the day",
                    "§10-15",
                )  # fmt: skip
            ticket.large = True
        if not opens:
            self.touch(thread)
            return ticket
        held = self._open.get(prefix)
        if held is not None and len(held) >= limits.open_relationships_per_address:
            ticket.cancel()
            oldest = min(held.values())
            wait = math.ceil((oldest + limits.open_relationship_ttl_ms - self.clock()) / 1000)
            return Refusal(
                Problem.RATE_LIMITED,
                f"this address holds {len(held)} relationships without an agreement; no more "
                "are opened from it until one is agreed or expires",
                "§10-17", retry_after=min(max(wait, 1), 86_400),
            )  # fmt: skip
        wait = self.first_contacts.take(prefix)
        if wait:
            ticket.cancel()
            return Refusal(
                Problem.RATE_LIMITED,
                "this address has opened its "
                f"{limits.first_contacts_per_address_per_day} relationships of the day",
                "§10-16", retry_after=min(wait, 86_400),
            )  # fmt: skip
        ticket.day = True
        self._track(prefix, thread)
        ticket.thread = thread
        return ticket

    def _track(self, prefix: str, thread: bytes) -> None:
        held = self._open.setdefault(prefix, {})
        held[thread] = self.clock()
        self._prefix_of[thread] = prefix
        self._open.move_to_end(prefix)
        while len(self._open) > MAX_PREFIXES:
            _, dropped = self._open.popitem(last=False)
            for old in dropped:
                self._prefix_of.pop(old, None)

    def touch(self, thread: bytes) -> None:
        """A message was accepted in ``thread``: its expiry counts from now (§10-18)."""
        prefix = self._prefix_of.get(thread)
        if prefix is not None:
            self._open[prefix][thread] = self.clock()

    def close(self, thread: bytes) -> None:
        """``thread`` reached an agreement or was deleted: it no longer counts as open."""
        prefix = self._prefix_of.pop(thread, None)
        if prefix is None:
            return
        held = self._open.get(prefix)
        if held is not None:
            held.pop(thread, None)
            if not held:
                del self._open[prefix]
