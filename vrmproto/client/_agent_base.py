"""What every operation of the customer's agent shares: its parts, and how it finds and checks
the relationship an operation is about.

:class:`AgentBase` holds the store, the ledger (one lock registry and cache per customer node),
the outbox and the HTTP client, and the small steps every operation takes: resolving a *ref*
(:meth:`AgentBase.resolve`), the pins on a vendor's key (§11.10-1) and the message types it
receives (§13.1-3). The operations themselves live in modules named for what they own
(:mod:`._terms`, :mod:`._data`, :mod:`._intents`, :mod:`._reconcile`), combined in
:class:`~vrmproto.client.Agent`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import replace
from typing import Self

import aiohttp

from vrmproto._binding import DiscoveryDocument
from vrmproto._closing import AsyncClosing
from vrmproto._fields import check_fields
from vrmproto._keys import Identity, MasterSeed, fingerprint, key_to_text
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._messages import RelationshipEnd
from vrmproto._state import Role, State
from vrmproto._vocab import TermRef
from vrmproto.client._drafts import Draft, EndDraft, RotateDraft
from vrmproto.client._errors import ForeignStore, NotFound
from vrmproto.client._fanout import DEFAULT_CONCURRENCY
from vrmproto.client._http import EndpointClient
from vrmproto.client._ledger import Ledger, Thread, ThreadKind, ThreadMeta
from vrmproto.client._locks import ThreadLocks
from vrmproto.client._meta import lost_by_vendor
from vrmproto.client._outbox import DEFAULT_SCHEDULE, Delivery, Outbox, OutboxRun
from vrmproto.client._paths import endpoint_path
from vrmproto.client._transport import (
    Clock,
    RandomId,
    RetryPolicy,
    Transport,
    default_clock,
    default_random_id,
)
from vrmproto.client._views import DEFAULT_TERMS, FANOUT_RETRY, KeyChangedError, Ref
from vrmproto.client._waiting import Waiting, find, waiting
from vrmproto.store import Commit, OutboxItem, RelationshipRecord, Store

__all__ = ["AgentBase", "norm_url", "prefix_range", "refusal"]

#: The states of a vendor relationship that is still going on (one per vendor key).
LIVE = frozenset({State.OFFERED, State.AGREED, State.COUNTERED})
_LIVE_SPELLINGS = frozenset(s.value for s in LIVE)  # as stored: no enum look-up per row
_CUSTOMER = Role.CUSTOMER.value

#: The store-level setting naming the master seed the store belongs to (a public key).
_MASTER_CHECK_KEY = "client.master"


def norm_url(url: str) -> str:
    """A base URL as the agent stores it (a relationship's ``peer_url``) and looks it up."""
    return url.strip().rstrip("/")


def prefix_range(digits: str) -> tuple[bytes, bytes]:
    """The first and last 16-byte thread ids whose hex spelling starts with ``digits``."""
    whole = bytes.fromhex(digits[: len(digits) // 2 * 2])
    low, high = whole, whole
    if len(digits) % 2:
        nibble = int(digits[-1], 16) << 4
        low, high = whole + bytes([nibble]), whole + bytes([nibble | 0xF])
    return low.ljust(16, b"\0"), high.ljust(16, b"\xff")


def _names_key(text: str, key: bytes) -> bool:
    """Whether a person's ``text`` names ``key``: its fingerprint (§2.5-3, dashes optional) or
    the full key in its text form (§2.5-1)."""
    text = text.strip()
    fp = fingerprint(key)
    return text.lower() in (fp, fp.replace("-", "")) or text == key_to_text(key)


def refusal(d: Delivery) -> Delivery:
    """Raise a refusal or a drop; hand back a confirmed or queued delivery."""
    if d.status in ("refused", "dropped"):
        assert d.error is not None
        raise d.error
    return d


async def check_master(store: Store, master: MasterSeed) -> None:
    """Refuse a store that belongs to another master seed (``ValueError``)."""
    check = master.for_intent(bytes(16)).public_key  # public: identifies, reveals nothing
    stored = await store.get_meta(_MASTER_CHECK_KEY)
    if stored is None:
        await store.commit(Commit(meta=((_MASTER_CHECK_KEY, check),)))
    elif stored != check:
        raise ForeignStore("this store belongs to another master seed")


class AgentBase(AsyncClosing):
    """The parts of a customer's agent: see the module docstring."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        client: Transport,
        owns_client: bool,
        clock: Clock,
        random_id: RandomId,
        terms: Sequence[TermRef],
        endpoint: str | None,
        concurrency: int,
        fanout_retry: RetryPolicy,
        schedule: RetryPolicy,
        rand: Callable[[], float],
    ) -> None:
        self.ledger = ledger
        self.store = ledger.store
        self.limits = ledger.limits
        self.client = client
        self._owns_client = owns_client
        self.clock = clock
        self.random_id = random_id
        self.terms = tuple(terms)
        self.endpoint = endpoint
        self.concurrency = concurrency
        self.fanout_retry = fanout_retry
        self.outbox = Outbox(
            ledger, client, self, clock=clock, random_id=random_id, schedule=schedule,
            rand=rand, concurrency=concurrency,
        )  # fmt: skip
        #: One connect at a time per vendor key, from the check for a live relationship to the
        #: Commit of the new one: concurrent connects to one vendor open one relationship.
        self.vendor_locks = ThreadLocks()

    @classmethod
    async def open(
        cls,
        store: Store,
        master_seed: MasterSeed | bytes,
        *,
        clock: Clock = default_clock,
        random_id: RandomId = default_random_id,
        client: Transport | None = None,
        session: aiohttp.ClientSession | None = None,
        terms: Sequence[TermRef] = DEFAULT_TERMS,
        endpoint: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        fanout_retry: RetryPolicy = FANOUT_RETRY,
        schedule: RetryPolicy = DEFAULT_SCHEDULE,
        limits: Limits = DEFAULT_LIMITS,
        rand: Callable[[], float] = random.random,
        ledger: Ledger | None = None,
    ) -> Self:
        """Open the agent of ``master_seed`` on ``store``.

        A store belongs to one master seed: opening it with another raises ``ValueError``.
        ``client`` (any :class:`~vrmproto.client.Transport`, or an aiohttp ``session`` for a new
        HTTP client) may be shared; otherwise the agent makes one and closes it in
        :meth:`close`. ``endpoint`` is this agent's own base
        URL; each vendor is told a path of its own under it (:meth:`endpoint_for`). ``retry``
        governs one-vendor requests, ``fanout_retry`` each branch of a fan-out, ``schedule`` the
        outbox's retries. ``ledger`` is the customer node's (:class:`~vrmproto.client.
        CustomerNode`), when the agent is one part of a node; otherwise it has its own.
        """
        master = master_seed if isinstance(master_seed, MasterSeed) else MasterSeed(master_seed)
        await check_master(store, master)
        if ledger is None:
            ledger = Ledger(store, master, limits=limits)
        elif ledger.store is not store or ledger.master.seed != master.seed:
            raise ForeignStore("the ledger belongs to another store or master seed")
        owns = client is None
        if client is None:
            client = EndpointClient(
                session=session, clock=clock, random_id=random_id, retry=retry,
                timeout_s=timeout_s, limits=ledger.limits,
            )  # fmt: skip
        return cls(
            ledger, client=client, owns_client=owns, clock=clock, random_id=random_id,
            terms=terms, endpoint=endpoint, concurrency=concurrency, fanout_retry=fanout_retry,
            schedule=schedule, rand=rand,
        )  # fmt: skip

    async def close(self) -> None:
        """Close the HTTP client if the agent made it (the store is the caller's)."""
        if self._owns_client and isinstance(self.client, AsyncClosing):
            await self.client.close()

    # -- what signing a draft needs (the outbox's Signer) -------------------------------------

    def endpoint_for(self, thread: bytes) -> str | None:
        """The base URL of our agent endpoint told to the vendor of ``thread``: a path of its
        own under :attr:`endpoint`, so vendors hold no common identifier (§11.6-1, §12.11-4)."""
        if not self.endpoint:
            return None
        return self.endpoint.rstrip("/") + endpoint_path(self.ledger.master, thread)

    def next_identity(self, t: Thread) -> Identity:
        """Our key in ``t`` after one more rotation (§2.3, §2.6)."""
        return self.ledger.identity(replace(t.meta, generation=t.meta.generation + 1))

    # -- finding relationships -------------------------------------------------------------

    async def resolve(self, ref: Ref) -> bytes:
        """The thread id ``ref`` names (see :mod:`vrmproto.client._agent`); :class:`NotFound`
        if none."""
        if isinstance(ref, bytes):
            if len(ref) != 16:
                raise NotFound("a thread id is 16 bytes")
            return ref
        text = ref.strip()
        if len(text) == 32:
            try:
                return bytes.fromhex(text)
            except ValueError:
                pass
        url = "://" in text  # (not hex digits either)
        if not url and 6 <= len(text) < 32 and all(c in "0123456789abcdef" for c in text.lower()):
            hits = await self._ours(thread_range=prefix_range(text.lower()))
            if len(hits) == 1:
                return hits[0].thread
        named = await self._ours(peer_url=norm_url(text))  # stored as norm_url spells it
        # A URL names a vendor by its address only: a vendor's name is its own claim, and one
        # calling itself "https://bank.example" must not receive what is meant for that URL.
        by_label = [] if url else await self._ours(label=text)
        if by_label:
            named = sorted({r.thread: r for r in (*named, *by_label)}.values(),
                           key=lambda r: r.thread)  # fmt: skip
        if not named:
            raise NotFound(f"no relationship with {ref!r}")
        if len(named) > 1:  # (one, mostly: no key to compute)
            named.sort(key=lambda r: (State(r.state) is State.AGREED, r.updated_ms))
        return named[-1].thread

    def _ours(self, *, peer_key: bytes | None = None, peer_url: str | None = None,
              label: str | None = None, states: Collection[str] | None = None,
              thread_range: tuple[bytes, bytes] | None = None,
              ) -> Awaitable[list[RelationshipRecord]]:  # fmt: skip
        """Our relationships (a customer's, not a vendor's) matching every criterion given, by
        thread, read by the store's index (:meth:`~vrmproto.store.Store.relationships_where`):
        as many rows as match, however many relationships there are (#12). (The store's
        coroutine itself, to await: a share by URL takes two.)"""
        return self.store.relationships_where(
            role=_CUSTOMER, peer_key=peer_key, peer_url=peer_url, label=label, states=states,
            thread_range=thread_range,
        )  # fmt: skip

    async def _generation_for(self, vendor_key: bytes) -> int:
        """The pairwise key generation now in use with this vendor (0 if none yet, §2.6)."""
        return max((r.generation for r in await self.store.threads(
            vendor_key=vendor_key, kind=ThreadKind.VENDOR)), default=0)  # fmt: skip

    async def _check_pins(self, url: str, doc: DiscoveryDocument, *, by_name: bool,
                          accept_new_key: str | None = None) -> None:  # fmt: skip
        """Refuse a known vendor's document signed by another key (§11.10-1, §13.1-4).

        A vendor is known by its base URL (any relationship with it, intentcasts included) and,
        when ``by_name``, by the name it claimed in a relationship of ours: a new URL claiming a
        known vendor's name with an unknown key is an impostor until a person decides otherwise.
        The keys held are the current peer keys of those relationships (a ``key.rotate`` in them
        moves the pin, §2.6). ``accept_new_key`` — the fingerprint of ``doc.key``, or the key in
        its text form — is that explicit decision.
        """
        at_url = {r.peer_key for r in await self._ours(peer_url=norm_url(url))}
        named: set[bytes] = set()
        name = doc.name.strip().lower()
        # By name: each vendor relationship's, as the vendor spelled it (the relationship's
        # label is its thread's name). Names compare case-folded, which no store indexes the
        # same way, so this reads one record per vendor relationship (not per intentcast
        # thread) — on a connect, not per message.
        for t in await self.store.threads(kind=ThreadKind.VENDOR) if by_name else ():
            if t.name.strip().lower() != name:
                continue
            for r in await self._ours(thread_range=(t.thread, t.thread)):
                if r.peer_url != norm_url(url) and r.label.strip().lower() == name:
                    named.add(r.peer_key)
        for by, keys in (("url", at_url), ("name", named)):
            if keys and doc.key not in keys:
                if accept_new_key is not None and _names_key(accept_new_key, doc.key):
                    return
                raise KeyChangedError(norm_url(url), doc.name, by=by, pinned=keys,
                                      offered=doc.key)  # fmt: skip

    async def superseded(self, records: Sequence[RelationshipRecord]) -> dict[bytes, bytes]:
        """Which of our live vendor relationships ``records`` a newer one with the same vendor
        (base URL) replaced, each with the thread of the one that did: the person accepted the
        vendor's new key, which opened a relationship under it (§11.10-3), or connect opened one
        beside a relationship the vendor said it lost (§4.5-5). Nothing we send in a replaced
        one reaches the vendor (held, §11.10-1, or refused). The current one at a URL is one the
        vendor still holds, then the one opened last. Reads history only for a URL with more
        than one live relationship — none, mostly."""
        groups: dict[str, list[RelationshipRecord]] = {}
        for r in records:
            if r.peer_url and r.state in _LIVE_SPELLINGS:
                groups.setdefault(r.peer_url, []).append(r)
        out: dict[bytes, bytes] = {}
        for group in groups.values():
            if len(group) < 2:
                continue
            ranked = []
            for r in group:
                meta = await self.store.get_thread(r.thread)
                if meta is None or meta.kind is not ThreadKind.VENDOR:
                    continue
                first = await self.store.history(r.thread, 0, 1)
                opened = first[0].recorded_ms if first else 0
                ranked.append(((not lost_by_vendor(meta.last_problem), opened, r.thread), r))
            if len(ranked) < 2:
                continue
            newest = max(ranked)[1].thread
            out.update((r.thread, newest) for _, r in ranked if r.thread != newest)
        return out

    async def live_thread(self, vendor_key: bytes) -> bytes | None:
        """Our live relationship (offered, agreed or countered; not ended, not rejected) with
        the vendor that signs with ``vendor_key`` now or did at first contact; None if there
        is none. There is at most one: :meth:`connect` reuses it."""
        live = {r.thread: r for r in await self._ours(peer_key=vendor_key,
                                                      states=_LIVE_SPELLINGS)}  # fmt: skip
        first = {t.thread for t in await self.store.threads(vendor_key=vendor_key,
                                                            kind=ThreadKind.VENDOR)}  # fmt: skip
        for thread in first - live.keys():  # first contacted under it; the vendor rotated since
            live.update((r.thread, r) for r in await self._ours(
                thread_range=(thread, thread), states=_LIVE_SPELLINGS))  # fmt: skip
        # One the vendor still holds before one it answered it lost (§4.5-5: connect opened a
        # new one beside it), then the newest; the thread's id breaks a tie in one millisecond.
        best: tuple[bool, int, bytes] | None = None
        for thread, r in live.items():
            meta = await self.store.get_thread(thread)
            if meta is None or (thread not in first and meta.kind is not ThreadKind.VENDOR):
                continue
            key = (not lost_by_vendor(meta.last_problem), r.updated_ms, thread)
            if best is None or key > best:
                best = key
        return best[2] if best is not None else None

    async def _check_type(self, thread: bytes, mtype: str) -> None:
        """Refuse a message of a type the vendor did not list in ``types`` (§13.1-3, §13.1-10)."""
        meta = await self.store.get_thread(thread)
        if meta is not None:
            ThreadMeta.of(meta).check_receives(mtype)

    def _lifetime(self, doc: DiscoveryDocument) -> int:
        published = doc.limits.get("max_lifetime_ms", self.limits.max_lifetime_ms)
        return max(60_000, min(published, self.limits.max_lifetime_ms))

    async def _send(self, ref: Ref, draft: Draft, *, timeout_s: float | None = None) -> Delivery:
        """Send ``draft`` in the relationship ``ref`` names; ``timeout_s`` bounds the whole wait
        for the vendor, retries included: a message not delivered by then stays ``queued`` in
        the outbox (:meth:`Outbox.send`)."""
        thread = await self.resolve(ref)
        return refusal(await self.outbox.send(thread, draft, check_type=True,
                                              timeout_s=timeout_s))  # fmt: skip

    # -- control ---------------------------------------------------------------------------

    async def rotate_key(self, ref: Ref, *, reason: str = "rotate",
                         timeout_s: float | None = None) -> Delivery:  # fmt: skip
        """Move this relationship to our next pairwise key (§2.6); ``reason="compromise"``
        revokes the old one. ``timeout_s`` bounds the whole wait, as for :meth:`share`."""
        return await self._send(ref, RotateDraft(msg_id=self.random_id(), reason=reason),
                                timeout_s=timeout_s)  # fmt: skip

    async def end(self, ref: Ref, reason: str | None = None, *,
                  timeout_s: float | None = None) -> Delivery:  # fmt: skip
        """End the relationship (§5.6.4); nothing more may be sent in it. ``timeout_s`` bounds
        the whole wait, as for :meth:`share`."""
        check_fields(RelationshipEnd, "$.body", reason=reason)  # before it is signed or kept
        return await self._send(ref, EndDraft(msg_id=self.random_id(), reason=reason),
                                timeout_s=timeout_s)  # fmt: skip

    # -- the outbox ------------------------------------------------------------------------

    async def run_outbox(self, now: int | None = None) -> OutboxRun:
        """Deliver every due queued message (call it periodically); see :class:`Outbox`."""
        return await self.outbox.run(now)

    async def pending(self) -> list[OutboxItem]:
        """Every signed message waiting in the outbox, oldest first."""
        return await self.store.outbox_all()

    async def waiting(self) -> list[Waiting]:
        """Every message waiting for its vendor — signed, or a draft behind an undelivered
        one — relationship by relationship, in the order each will go, with the reason it
        waits (:mod:`vrmproto.client._waiting`)."""
        return waiting(await self.store.outbox_all(), await self.store.drafts())

    async def drop_waiting(self, msg_id: str) -> Delivery:
        """Drop the waiting message whose id starts with ``msg_id`` (hex, at least 4 digits):
        see :meth:`Outbox.drop`. LookupError if no one message has such an id."""
        return await self.outbox.drop(find(await self.waiting(), msg_id))

    async def retry_waiting(self, msg_id: str | None = None) -> OutboxRun:
        """Deliver now, whatever the retry schedule says, the relationship of the waiting
        message ``msg_id`` (hex prefix) — or every relationship if None."""
        thread = find(await self.waiting(), msg_id).thread if msg_id is not None else None
        return await self.outbox.retry_now(thread)
