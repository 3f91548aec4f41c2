"""The vendor's side of §15: intentcasts from relays, checked, put to its policy, answered.

:class:`RelayVendor` subscribes to its relays with a filter made from its catalogue (§15.5-3),
drops every event that fails §15.3-6 before its policy sees it, and answers an intentcast its
policy would make an offer for with a sealed answer that tells the customer where to send the
intentcast over HTTP (§15.4). The offer itself, the relationship and everything after travel
over HTTP, through the vendor's endpoint, as for any intentcast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from vrmproto._envelope import Signed
from vrmproto._errors import ProtocolError
from vrmproto._keys import Identity
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._messages import Intentcast, IntentOffer
from vrmproto._relationship import Relationship
from vrmproto._state import Role
from vrmproto.nostr._binding import (
    answer_event,
    answer_url_class,
    followed,
    intentcast_filter,
    open_intentcast,
    tag_words,
)
from vrmproto.nostr._crypto import NostrKey
from vrmproto.nostr._event import Event
from vrmproto.nostr._relay import RelayError, RelayLimits, RelayPool, relay_session
from vrmproto.server._policy import CatalogueItem, Policy

if TYPE_CHECKING:
    from vrmproto.server._runner import VendorConfig

__all__ = ["RelayVendor", "catalogue_keywords", "relay_vendor", "vendor_on_relays"]

log = logging.getLogger("vrmproto.nostr")
#: How far back (seconds) a vendor asks relays for intentcasts when it subscribes (§15.5-3).
LOOKBACK_S = 3600
#: How many answered intentcasts (each with the key of the event that carried it) a vendor
#: remembers, not to answer one twice (§15.4-5).
REMEMBERED = 10_000
#: How many answers a vendor publishes at once (each waits up to the relays' timeout for OK).
PUBLISHING = 64
#: A vendor's relay client: a relay may send 100 events a second, in bursts of 1000; more are
#: dropped unchecked, so that a relay flooding junk does not take the vendor's CPU (its HTTP
#: endpoint runs on the same event loop).
VENDOR_RELAY_LIMITS = RelayLimits(events_per_s=100, events_burst=1000)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def catalogue_keywords(catalogue: Iterable[CatalogueItem]) -> list[str]:
    """The vendor's ``#t`` filter (§15.5-3): the words of the catalogue's keywords as a
    customer tags them (§15.3-3), so that ``4-wheel-drive`` is asked for as ``wheel`` and
    ``drive``. Empty — every intentcast, to the checks and the policy — when an item's keywords
    hold no word a customer tags (``4``): no filter on tags would let its intentcasts through."""
    found: set[str] = set()
    for item in catalogue:
        words = tag_words(item.keywords)
        if not words:
            return []
        found.update(words)
    return sorted(found)


@dataclass
class RelayVendor:
    """One vendor listening on relays. ``url`` is the base URL its answers give (§15.4-2)."""

    policy: Policy
    identity: Identity
    url: str
    keywords: Sequence[str]
    geohashes: Sequence[str] = ()
    min_pow: int = 0
    limits: Limits = DEFAULT_LIMITS
    #: The relay client's limits (timeouts, queues, reconnection: :class:`RelayLimits`).
    relay_limits: RelayLimits = VENDOR_RELAY_LIMITS
    #: How far back (seconds) it asks relays for intentcasts when it subscribes (§15.5-3).
    lookback_s: int = LOOKBACK_S
    #: How many answered (intentcast, event key) pairs it remembers, not to answer one twice
    #: (§15.4-5).
    remembered: int = REMEMBERED
    #: How many answers it publishes at once.
    publishing: int = PUBLISHING
    clock: Callable[[], int] = _wall_ms
    rand: Callable[[int], bytes] = os.urandom
    dropped: Counter[str] = field(default_factory=Counter)
    _answered: OrderedDict[tuple[bytes, str], None] = field(default_factory=OrderedDict)

    def filter(self) -> dict[str, object]:
        return intentcast_filter(self.keywords, self.geohashes,
                                 self.clock() // 1000 - self.lookback_s)  # fmt: skip

    async def consider(self, event: Event) -> Event | None:
        """The answer to ``event``, or None: checked first (§15.3-6), then the policy's."""
        try:
            message = open_intentcast(event, now_ms=self.clock(), min_pow=self.min_pow,
                                      limits=self.limits)  # fmt: skip
        except ProtocolError as exc:
            self.dropped[exc.code.value] += 1
            log.info("relayed event %s dropped: %s", event.id[:12], exc)
            return None
        # once per intentcast and event key (§15.4-5): anyone may carry the envelope in an
        # event of their own key, and an answer to that key is no answer to the customer's
        answered = (message.hash, event.pubkey)
        if answered in self._answered:
            return None
        offer = await self._ask_policy(message)
        if offer is None:
            return None
        self._answered[answered] = None
        if len(self._answered) > self.remembered:
            self._answered.popitem(last=False)
        return answer_event(event, message, self.url, key=self._answer_key(),
                            now_ms=self.clock(), nonce=self.rand(32),
                            aux=self.rand(32))  # fmt: skip

    async def _ask_policy(self, message: Signed[Intentcast]) -> IntentOffer | None:
        rel = Relationship(role=Role.VENDOR, identity=self.identity, thread=message.thread,
                           peer_key=message.sender, limits=self.limits)  # fmt: skip
        reply = await self.policy.on_intentcast(rel, message)
        return reply if isinstance(reply, IntentOffer) else None  # silence otherwise (§15.4-4)

    def _answer_key(self) -> NostrKey:
        while True:  # a fresh key for every answer (§15.2-3)
            try:
                return NostrKey(self.rand(32))
            except ValueError:  # pragma: no cover - probability 2^-128
                continue

    async def run(self, pool: RelayPool, *, retry_s: float | None = None,
                  max_retry_s: float | None = None) -> None:  # fmt: skip
        """Answer the pool's intentcasts until cancelled. A relay lost, or down from the start,
        is connected again ``retry_s`` later, with backoff up to ``max_retry_s`` (by default the
        pool's :class:`RelayLimits`; :meth:`RelayPool.follow`), the others listened to meanwhile.

        Answers are published in the background, at most ``publishing`` at once, so that a
        relay slow to say OK (up to the pool's timeout) does not hold the events that follow."""
        publishing: set[asyncio.Task[None]] = set()
        events = pool.follow(lambda: [self.filter()], retry_s=retry_s, max_retry_s=max_retry_s)
        try:
            # aclosing: its relays' tasks end here, however this ends, not at the collector's
            # leisure after the pool and its session are closed (they would reconnect to them)
            async with contextlib.aclosing(events):
                async for event in events:
                    try:
                        answer = await self.consider(event)
                    except Exception:  # one event must not end the listening for good: the
                        # task runs in the background (nothing would say it stopped), and the
                        # same event, read again after a reconnection, would stop it again
                        self.dropped["error"] += 1
                        log.exception("relayed event %s not considered", event.id[:12])
                        continue
                    if answer is None:
                        continue
                    if len(publishing) >= self.publishing:
                        await asyncio.wait(publishing, return_when=asyncio.FIRST_COMPLETED)
                    task = asyncio.create_task(_publish(pool, answer))
                    publishing.add(task)
                    task.add_done_callback(publishing.discard)
        except BaseException:
            for task in publishing:
                task.cancel()
            raise
        finally:
            await asyncio.gather(*publishing, return_exceptions=True)

    async def serve(self, relays: Sequence[str], *, retry_s: float | None = None,
                    max_retry_s: float | None = None) -> None:  # fmt: skip
        """Answer the intentcasts of ``relays`` until cancelled. Each relay lost, or down from
        the start, is connected again ``retry_s`` later, then twice as late after each failure
        in a row, up to ``max_retry_s``; when none could be reached at all, every one is tried
        again ``retry_s`` later. Both default to :attr:`relay_limits`'s."""
        limits = self.relay_limits
        if retry_s is not None or max_retry_s is not None:
            limits = replace(limits, retry_s=retry_s or limits.retry_s,
                             max_retry_s=max_retry_s or max(limits.max_retry_s,
                                                            retry_s or 0))  # fmt: skip
        while True:
            try:
                async with (relay_session() as session,
                            RelayPool(relays, session, limits=limits) as pool):  # fmt: skip
                    await self.run(pool)
            except RelayError as exc:
                log.warning("relays: %s", exc)
            await asyncio.sleep(limits.retry_s)


async def _publish(pool: RelayPool, answer: Event) -> None:
    try:
        await pool.publish(answer)
    except RelayError as exc:
        log.warning("answer not published: %s", exc)


def warn_unreachable_url(url: str, relays: Sequence[str]) -> None:
    """Warn when the answers' ``url`` is on this machine or a local network and a relay is not
    there too: customers reading that relay drop such an answer (it could point them at their
    own network), so the vendor would answer them for nothing. ``server.public_url`` in the
    vendor file is the cure."""
    if any(not followed(url, [r]) for r in relays):  # the customer's rule, §15.4-6
        log.warning("answers through relays will name %s, a %s address customers elsewhere "
                    "drop: set server.public_url in the vendor file to a public URL",
                    url, answer_url_class(url) or "hostless")  # fmt: skip


@contextlib.asynccontextmanager
async def relay_vendor(vendor: RelayVendor, relays: Sequence[str]) -> AsyncIterator[RelayVendor]:
    """Run ``vendor`` on ``relays`` in the background while the block runs."""
    task = asyncio.create_task(vendor.serve(relays))
    try:
        yield vendor
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def vendor_on_relays(config: VendorConfig, identity: Identity, url: str
                     ) -> contextlib.AbstractAsyncContextManager[RelayVendor]:  # fmt: skip
    """The relay side of ``vrm vendor serve``: the file's ``relays``, ``relay_min_pow`` and
    ``relay_geohashes``, the policy and catalogue of ``config``, answering with ``url``."""
    file = config.file
    if file is None or not file.relays:
        raise ValueError("only for a vendor file that names relays")
    vendor = RelayVendor(config.policy(), identity, url, catalogue_keywords(config.catalogue),
                         geohashes=tuple(file.relay_geohashes), min_pow=file.relay_min_pow,
                         limits=config.limits)  # fmt: skip
    log.info("listening on relays %s", ", ".join(file.relays))
    warn_unreachable_url(url, file.relays)
    return relay_vendor(vendor, file.relays)
