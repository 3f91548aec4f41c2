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

Several server processes over one database keep these budgets in it instead (§12.9-8):
:class:`SharedAdmission`, whose awaitable :meth:`~Admission.aadmit` and
:meth:`~Admission.aclose` the endpoint calls when :attr:`Admission.shared` is set (the
in-memory path awaits nothing of its own).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from vrmproto._errors import Problem
from vrmproto._limits import DAY_MS, Limits
from vrmproto.server._ratelimit import BucketStore, RateLimiter, SharedRateLimiter

__all__ = ["MAX_PREFIXES", "Admission", "NegotiationStore", "Refusal", "SharedAdmission",
           "StorageBudget", "Ticket", "address_prefix"]  # fmt: skip

log = logging.getLogger("vrmproto.server")

#: Most client prefixes whose open relationships are tracked; the least recently active one is
#: forgotten beyond (memory stays bounded whatever addresses a flood comes from).
MAX_PREFIXES = 100_000
_MINUTES_PER_DAY = DAY_MS // 60_000


#: Client addresses whose prefix is remembered: parsing one costs ~6 µs, on every first-contact
#: message (most come from addresses seen before); the least recently used is dropped beyond.
_PREFIXES_CACHED = 4096


@functools.lru_cache(maxsize=_PREFIXES_CACHED)
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
        """Each value an int (``retry_after_s`` positive, the others not negative;
        ``max_store_bytes`` may be None): ``retry_after_s`` goes into signed problems, whose
        ``retry_after`` is an integer (§5.6.2, §11.8-4)."""
        for name in ("max_store_bytes", "min_free_bytes", "reserve_free_bytes",
                     "retry_after_s", "check_every_ms"):  # fmt: skip
            value = getattr(self, name)
            if value is None and name == "max_store_bytes":
                continue
            if type(value) is not int or value < (name == "retry_after_s"):
                what = "positive" if name == "retry_after_s" else "non-negative"
                raise ValueError(f"storage budget {name} must be a {what} integer")
        if self.retry_after_s > 86_400:  # a problem's retry_after is at most a day (§5.6.2)
            raise ValueError("storage budget retry_after_s must be at most 86400 (a day)")
        if self.reserve_free_bytes > self.min_free_bytes:
            raise ValueError("reserve_free_bytes must not exceed min_free_bytes")


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
    #: Where ``thread`` counted before this admission counted it (a prefix and the time of its
    #: last message), if it did: what giving the ticket back restores.
    before: tuple[str, int] | None = None
    day: bool = False  # a token of first_contacts_per_address_per_day
    large: bool = False  # a token of large_first_contacts_per_address_per_day
    cancelled: bool = field(default=False)

    def cancel(self) -> None:
        """The message was not stored: give back everything this ticket took."""
        if self.cancelled:
            return
        self.cancelled = True
        self.admission.give_back(self)


def _too_many_large(limits: Limits) -> Refusal:
    return Refusal(
        Problem.TOO_LARGE,
        f"a first contact is at most {limits.max_first_contact_bytes} bytes with at most "
        f"{limits.max_unknown_body_bytes} bytes of unknown body keys; this address has sent its "
        f"{limits.large_first_contacts_per_address_per_day} larger ones of the day",
        "§10-15",
    )


def _too_many_open(limits: Limits, held: int, oldest: int, now: int) -> Refusal:
    wait = math.ceil((oldest + limits.open_relationship_ttl_ms - now) / 1000)
    return Refusal(
        Problem.RATE_LIMITED,
        f"this address holds {held} relationships without an agreement; no more are opened "
        "from it until one is agreed or expires",
        "§10-17", retry_after=min(max(wait, 1), 86_400),
    )  # fmt: skip


def _too_many_today(limits: Limits, wait: int) -> Refusal:
    return Refusal(
        Problem.RATE_LIMITED,
        f"this address has opened its {limits.first_contacts_per_address_per_day} "
        "relationships of the day",
        "§10-16", retry_after=min(wait, 86_400),
    )  # fmt: skip


class Admission:
    """Per-prefix budgets for first contact (§11.8-2); one per endpoint."""

    #: Whether the budgets are kept outside this process: the endpoint then awaits
    #: :meth:`aadmit` and :meth:`aclose` instead of calling :meth:`admit` and :meth:`close`.
    shared: ClassVar[bool] = False

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
                return _too_many_large(limits)
            ticket.large = True
        if not opens:
            self.touch(thread)
            return ticket
        held = self._open.get(prefix)
        if held is not None and len(held) >= limits.open_relationships_per_address:
            ticket.cancel()
            return _too_many_open(limits, len(held), min(held.values()), self.clock())
        wait = self.first_contacts.take(prefix)
        if wait:
            ticket.cancel()
            return _too_many_today(limits, wait)
        ticket.day = True
        ticket.before = self._track(prefix, thread)
        ticket.thread = thread
        return ticket

    def give_back(self, ticket: Ticket) -> None:
        """What :meth:`Ticket.cancel` gives back (see there)."""
        if ticket.day:
            self.first_contacts.refund(ticket.prefix)
        if ticket.large:
            self.large.refund(ticket.prefix)
        if ticket.thread is not None:
            self.close(ticket.thread)
            if ticket.before is not None:
                prefix, at = ticket.before
                self._track(prefix, ticket.thread, at=at)

    # -- what the endpoint awaits where the budgets are shared (SharedAdmission) --------------

    async def aadmit(self, client: str, thread: bytes, *, opens: bool,
                     large: bool) -> Ticket | Refusal:  # fmt: skip
        """:meth:`admit`, awaited."""
        return self.admit(client, thread, opens=opens, large=large)

    async def aclose(self, thread: bytes) -> None:
        """:meth:`close`, awaited."""
        self.close(thread)

    def _track(
        self, prefix: str, thread: bytes, *, at: int | None = None
    ) -> tuple[str, int] | None:
        """Count ``thread`` as an open negotiation of ``prefix`` (§10-17), under that prefix
        alone: where it counted before, if anywhere, is returned (the prefix and the time of
        its last message), and counts it no longer."""
        before = None
        counted = self._prefix_of.get(thread)
        if counted is not None:
            held_before = self._open.get(counted)
            if held_before is not None and thread in held_before:
                before = (counted, held_before[thread])
            self.close(thread)
        held = self._open.setdefault(prefix, {})
        held[thread] = self.clock() if at is None else at
        self._prefix_of[thread] = prefix
        self._open.move_to_end(prefix)
        while len(self._open) > MAX_PREFIXES:
            _, dropped = self._open.popitem(last=False)
            for old in dropped:
                self._prefix_of.pop(old, None)
        return before

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


class NegotiationStore(Protocol):
    """The open negotiations per prefix kept in a database that every server process shares
    (§10-17, §12.9-8): :class:`vrmproto.store._pg_admission.PgOpenNegotiations`.

    :meth:`admit` counts ``thread`` against ``prefix`` unless the prefix holds ``budget``
    open negotiations, then takes a token from the day bucket ``name`` (``rate`` a minute,
    ``burst``, at ``now``) of the :class:`~vrmproto.server._ratelimit.BucketStore` in the same
    database, all at once; it answers (0 admitted, 1 refused by §10-17, 2 refused by §10-16;
    the open negotiations held; the last activity (ms) of the oldest when refused by §10-17;
    the day bucket's level after the take)."""

    async def admit(
        self, prefix: bytes, thread: bytes, *, now: int, budget: int, name: str, rate: float,
        burst: float,
    ) -> tuple[int, int, int | None, float | None]: ...

    async def close(self, thread: bytes, *, unless_open: bool = False) -> None: ...


class SharedAdmission(Admission):
    """The first-contact budgets of :class:`Admission`, kept in a database that every server
    process shares (§12.9-8), so that a prefix gets no more than the published budgets because
    its requests reach different processes:

    - the large first contacts a day (§10-15) and the relationships opened a day (§10-16):
      token buckets of the ``buckets`` store, as :class:`SharedRateLimiter`;
    - the open negotiations (§10-17): counted per prefix in ``negotiations``, checked and
      counted in one statement with the day's token.

    A message that opens a relationship costs one request to the database (none more for
    one that does not), sent together with the others this process makes meanwhile
    (:mod:`vrmproto.store._pg_batch`); settling an open negotiation costs one round trip
    (:meth:`aclose`). What a ticket
    gives back when its message is not stored is given back in the background (a ticket is
    cancelled from exception handlers, cancellation among them)."""

    shared: ClassVar[bool] = True

    def __init__(self, limits: Limits, *, clock: Callable[[], int], buckets: BucketStore,
                 negotiations: NegotiationStore) -> None:  # fmt: skip
        super().__init__(limits, clock=clock)
        self.first_contacts = SharedRateLimiter(
            buckets, "first_contact",
            limits.first_contacts_per_address_per_day / _MINUTES_PER_DAY, clock=clock,
            burst=limits.first_contacts_per_address_per_day)  # fmt: skip
        self.large = SharedRateLimiter(
            buckets, "large_first_contact",
            limits.large_first_contacts_per_address_per_day / _MINUTES_PER_DAY, clock=clock,
            burst=limits.large_first_contacts_per_address_per_day)  # fmt: skip
        self._negotiations = negotiations
        self._giving_back: set[asyncio.Task[None]] = set()

    def open_count(self, prefix: str) -> int:
        raise NotImplementedError("the open negotiations are counted in the database")

    async def aadmit(self, client: str, thread: bytes, *, opens: bool,
                     large: bool) -> Ticket | Refusal:  # fmt: skip
        prefix = address_prefix(client)
        ticket = Ticket(self, prefix)
        limits = self.limits
        if large:
            if await self.large.atake(prefix):
                return _too_many_large(limits)
            ticket.large = True
        if not opens:
            return ticket
        day = self.first_contacts
        now = self.clock()
        code, held, oldest, tokens = await self._negotiations.admit(
            prefix.encode(), thread, now=now, budget=limits.open_relationships_per_address,
            name="first_contact", rate=day.per_minute, burst=float(day.burst))  # fmt: skip
        if code == 1:
            ticket.cancel()
            return _too_many_open(limits, held, now if oldest is None else oldest, now)
        if code == 2:
            ticket.cancel()
            return _too_many_today(limits, day._wait_s(0.0 if tokens is None else tokens))
        ticket.day = True
        ticket.thread = thread
        return ticket

    async def aclose(self, thread: bytes) -> None:
        await self._negotiations.close(thread)

    def touch(self, thread: bytes) -> None:
        """Nothing to do: the database reads a relationship's last activity from the store."""

    def close(self, thread: bytes) -> None:
        """:meth:`aclose`, in the background."""
        self._background(self._negotiations.close(thread))

    def give_back(self, ticket: Ticket) -> None:
        self._background(self._give_back(ticket))

    async def _give_back(self, ticket: Ticket) -> None:
        if ticket.day:
            await self.first_contacts.arefund(ticket.prefix)
        if ticket.large:
            await self.large.arefund(ticket.prefix)
        if ticket.thread is not None:  # unless another process stored it meanwhile
            await self._negotiations.close(ticket.thread, unless_open=True)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._giving_back.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._giving_back.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("first-contact budgets: giving back failed: %s", task.exception())

    async def settled(self) -> None:
        """Wait until everything given back has reached the database (for tests)."""
        while self._giving_back:
            await asyncio.gather(*self._giving_back, return_exceptions=True)
