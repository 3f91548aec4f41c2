"""The customer's side of §15: an intentcast published through relays, answers collected, and
the intentcast then sent over HTTP to every vendor that answered and every vendor given.

The relayed intentcast (§15.3) comes from a throw-away identity and a throw-away Nostr key, both
derived from the master seed and the intentcast's index, the count of relayed intentcasts before
it (§2.4, §15.2-1). Vendors that would make an offer answer with where to reach them (§15.4);
the agent's ordinary intentcast then goes to them and to ``vendors`` together, so offers from
both are collected, de-duplicated (one thread per vendor URL) and ranked as for any intentcast,
and stored the same way (§15.4-3): one :class:`~vrmproto.store.IntentRecord`, stored before
anything is published, which keeps the index and the relays. Answers that come later — after
the wait, after a restart — are read with :func:`relay_answers`, which also finds, for an agent
restored from its master seed alone, the relayed intentcasts its store has no record of
(§15.2-4).

Nothing but what the person wrote goes to the relays: a fresh identity and thread, no endpoint
URL, no pairwise key (§11.14-1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from vrmproto._envelope import Signed, sign_message
from vrmproto._errors import ProtocolError
from vrmproto._messages import Intentcast, Money
from vrmproto._vocab import TermRef
from vrmproto.client._agent import Agent
from vrmproto.client._agent_base import norm_url
from vrmproto.client._fanout import Progress
from vrmproto.client._intents import intent_record_of
from vrmproto.client._views import IntentcastResult
from vrmproto.nostr._binding import (
    KIND_INTENTCAST,
    Answer,
    answer_filter,
    check_answer_url,
    intentcast_event,
    open_answer,
    open_intentcast,
)
from vrmproto.nostr._crypto import NostrKey, relay_intent_id
from vrmproto.nostr._event import Event
from vrmproto.nostr._relay import (
    DEFAULT_RELAY_LIMITS,
    PublishResult,
    RelayError,
    RelayLimits,
    RelayPool,
    relay_session,
)
from vrmproto.store import Commit, IntentRecord

__all__ = ["INDEX_GAP", "MAX_ANSWERS", "RelayedIntentcast", "publish_intentcast", "relay_answers"]

log = logging.getLogger("vrmproto.nostr")
#: The proof of work a customer puts on a relayed intentcast unless told otherwise (§15.1-4).
DEFAULT_POW = 16
#: How long the customer waits for answers from relays unless told otherwise (ms).
DEFAULT_ANSWER_WAIT_MS = 5_000
#: Indices in a row whose key published nothing before a search for relayed intentcasts stops
#: (§15.2-4).
INDEX_GAP = 20
#: Most vendors one relayed intentcast is then sent to over HTTP (§15.4-3): answers are sealed to
#: a public key, so anyone — a relay among them — can send thousands, each naming a URL the
#: agent would then contact (on the person's own network too). The first ones are taken.
MAX_ANSWERS = 256
#: How many relayed intentcasts ``relay_answers`` reads from their relays at once (each waits
#: up to ``answer_wait_ms`` for its answers).
READING = 8
#: The store's setting (meta) that keeps one past the last index asked about in a search.
NEXT_INDEX_KEY = "client.nostr.next_index"


@dataclass(frozen=True, slots=True)
class RelayedIntentcast:
    """What the relays carried: the event, who stored it (``published``, None when it was read
    back from the relays rather than published now), which vendors answered where, and the
    agent's intentcast to those vendors and the ones given (``result``); ``record`` is the
    intentcast as stored."""

    relay_intent_id: bytes
    event: Event
    published: PublishResult | None
    answers: tuple[Answer, ...]
    result: IntentcastResult
    record: IntentRecord


def relay_key(seed: bytes, index: int) -> tuple[bytes, NostrKey]:
    """The ``intent_id`` and Nostr key of the relayed intentcast number ``index`` (§15.2-1)."""
    intent_id = relay_intent_id(seed, index)
    return intent_id, NostrKey.for_intent(seed, intent_id)


def _relay_message(agent: Agent, body: Intentcast, intent_id: bytes) -> Signed[Intentcast]:
    identity = agent.ledger.master.for_intent(intent_id)
    now = agent.clock()
    return sign_message(body, identity=identity, recipient=identity.public_key,
                        thread=agent.random_id(), prev=None, now=now, msg_id=agent.random_id(),
                        lifetime_ms=max(body.reply_by - now, 1))  # fmt: skip


async def _stored_next(agent: Agent) -> int:
    """One past the highest index the store has a record of, or asked relays about (§15.2-4)."""
    floor = await agent.store.get_meta(NEXT_INDEX_KEY)
    used = [r.relay_index + 1 for r in await agent.intents() if r.relay_index is not None]
    return max([*used, int.from_bytes(floor, "big") if floor else 0])


async def _used_next(agent: Agent) -> int:
    """One past the highest index the store has a record of (§15.2-4): where a search starts.
    Not past the ones asked about: asking again for keys that published nothing links nothing,
    and a search that skipped them would leave a gap a restored agent stops at."""
    return max((r.relay_index + 1 for r in await agent.intents() if r.relay_index is not None),
               default=0)  # fmt: skip


def _next_meta(index: int) -> tuple[str, bytes]:
    return NEXT_INDEX_KEY, index.to_bytes(4, "big")


async def _events_of(pool: RelayPool, keys: dict[str, int]) -> dict[int, Event]:
    """The relayed intentcasts the relays hold from the Nostr keys ``keys`` (hex → index)."""
    found: dict[int, Event] = {}
    async for ev in pool.subscribe({"kinds": [KIND_INTENTCAST], "authors": list(keys)},
                                   until_eose=True):  # fmt: skip
        if ev.pubkey in keys:
            found.setdefault(keys[ev.pubkey], ev)
    return found


async def _free_index(pool: RelayPool, seed: bytes, start: int) -> int:
    """The first index from ``start`` whose key published nothing the relays hold (§15.2-2),
    asking about one key at a time: the relays learn no key but the one then published from.
    When no relay answers the question (each closed it, or stalled), the store's index is
    taken as it is, and a warning says so: the store is the record, the relays a check."""
    index = start
    try:
        while await _events_of(pool, {relay_key(seed, index)[1].public.hex(): index}):
            index += 1
    except RelayError as exc:
        log.warning("could not check with the relays that intentcast key %d is unused: %s",
                    index, exc)  # fmt: skip
    return index


async def _search(pool: RelayPool, seed: bytes, start: int) -> tuple[dict[int, Event], int]:
    """The relayed intentcasts the relays hold from the keys of indices ``start``, ``start+1``…
    until :data:`INDEX_GAP` indices in a row published nothing (§15.2-4), by index; and one past
    the last index asked about, which no later intentcast uses: the relays saw those keys
    asked for together."""
    found: dict[int, Event] = {}
    low = start
    while True:
        found |= await _events_of(pool, {relay_key(seed, i)[1].public.hex(): i
                                         for i in range(low, low + INDEX_GAP)})  # fmt: skip
        last = max(found, default=start - 1)
        if last < low:
            return found, low + INDEX_GAP
        low = last + 1


async def _collect(pool: RelayPool, key: NostrKey, message: Signed[Intentcast], since: int,
                   found: dict[str, Answer], *, expect: int | None,
                   clock: Callable[[], int]) -> None:  # fmt: skip
    """Add each vendor URL that answers to ``found`` as it comes, until ``expect`` of them (or
    the caller cancels); answers that do not open are dropped (§15.4-3).

    So are answers naming this machine or a local network, unless one of the relays is there
    too (a relay of one's own, tests; §15.4-6): anyone can seal an answer to the intentcast's
    key, and the agent would then send HTTP requests, on a path the answer chose, to the
    person's router, printer or cloud metadata service."""
    async for ev in pool.subscribe(answer_filter(key.public, since)):
        try:
            a = open_answer(ev, key, message.hash, now_ms=clock())
            check_answer_url(a.url, pool.urls)
        except ProtocolError as exc:
            log.info("answer %s dropped: %s", ev.id[:12], exc)
            continue
        found.setdefault(norm_url(a.url), a)
        if (expect is not None and len(found) >= expect) or len(found) >= MAX_ANSWERS:
            return


def _answers_since(agent: Agent, event: Event) -> int:
    """The ``since`` of the subscription to an intentcast's answers (§15.4-1): the clock skew
    peers allow (§10-3) before the intentcast event, as a vendor whose clock is that much behind
    dates its answer."""
    return max(event.created_at - agent.limits.max_clock_skew_ms // 1000, 0)


async def _answers(pool: RelayPool, key: NostrKey, message: Signed[Intentcast], since: int,
                   *, wait_s: float, expect: int | None,
                   clock: Callable[[], int]) -> list[Answer]:  # fmt: skip
    """The answers that came in ``wait_s`` seconds, or sooner once ``expect`` vendors did."""
    found: dict[str, Answer] = {}
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_collect(pool, key, message, since, found, expect=expect,
                                        clock=clock), wait_s)  # fmt: skip
    return list(found.values())


async def _to_answerers(agent: Agent, record: IntentRecord, body: Intentcast,
                        answers: Sequence[Answer], *, vendors: Sequence[str] = (),
                        progress: Progress | None) -> IntentcastResult:  # fmt: skip
    """The intentcast over HTTP to ``vendors`` and to each vendor that answered and was not
    asked yet (§15.4-3), its offers stored with ``record``."""
    asked = set(record.vendors)
    targets = [u for u in dict.fromkeys([*map(norm_url, vendors),
                                         *(norm_url(a.url) for a in answers)])
               if u not in asked]  # fmt: skip
    return await agent.intentcast_more(record, body, targets, progress=progress)


async def publish_intentcast(
    agent: Agent,
    what: str,
    *,
    relays: Sequence[str],
    vendors: Sequence[str] = (),
    geohash: str | None = None,
    pow_difficulty: int = DEFAULT_POW,
    answer_wait_ms: int = DEFAULT_ANSWER_WAIT_MS,
    expect_answers: int | None = None,
    where: str | None = None,
    start: int | None = None,
    end: int | None = None,
    constraints: Sequence[str] = (),
    memberships: Sequence[str] = (),
    max_price: Money | None = None,
    terms: Sequence[TermRef] | None = None,
    deadline_ms: int = 30_000,
    progress: Progress | None = None,
    relay_limits: RelayLimits = DEFAULT_RELAY_LIMITS,
) -> RelayedIntentcast:
    """Publish an intentcast to ``relays``, wait ``answer_wait_ms`` for answers (or until
    ``expect_answers`` vendors answered), then send it over HTTP to them and to ``vendors``.

    ``deadline_ms`` is at most the agent's ``max_lifetime_ms`` (7 days), else ValueError:
    the envelope lives until the deadline, and vendors drop a longer one (§4.2-11, §15.3-2).

    The intentcast is stored (with its index and relays) before it is published, so that
    :func:`relay_answers` reads the answers that come after the wait; when no relay stored it
    (:class:`RelayError`), it is dropped again, and only its index stays spent."""
    most = agent.limits.max_lifetime_ms
    if deadline_ms > most:  # every vendor would drop it (§15.3-6), and say nothing (§15.4-4)
        raise ValueError(f"a relayed intentcast waits for offers at most {_days(most)}: its "
                         f"envelope lives until its reply_by (§15.3-2, §4.2-11), and vendors "
                         f"drop a longer one unanswered; not {_days(deadline_ms)}")  # fmt: skip
    reply_by = agent.clock() + deadline_ms
    body = Intentcast(what=what, reply_by=reply_by, constraints=tuple(constraints),
                      memberships=tuple(memberships), where=where, start=start, end=end,
                      max_price=max_price, terms=tuple(terms) if terms else None)  # fmt: skip
    seed = agent.ledger.master.seed
    async with (relay_session() as session,
                RelayPool(relays, session, limits=relay_limits) as pool):  # fmt: skip
        index = await _free_index(pool, seed, await _stored_next(agent))
        intent_id, key = relay_key(seed, index)
        message = _relay_message(agent, body, intent_id)
        # the work (§15.1-4) may take minutes: mined off the loop, which keeps answering the
        # relays' pings meanwhile (a relay closes a connection that stops answering them); the
        # thread is told to stop when this is cancelled (Ctrl-C), else the interpreter would
        # wait for it to finish before it exits
        stop = threading.Event()
        try:
            event = await asyncio.to_thread(intentcast_event, message, key, geohash=geohash,
                                            pow_difficulty=pow_difficulty, stop=stop.is_set,
                                            aux=agent.random_id() + agent.random_id())  # fmt: skip
        finally:
            stop.set()
        record = intent_record_of(body, agent.random_id(), agent.clock(), relay_index=index,
                                  relays=relays)  # fmt: skip
        await agent.store.commit(Commit(intents=(record,), meta=(_next_meta(index + 1),)))
        try:
            published = await pool.publish(event)
        except RelayError:  # nothing was asked: not an intentcast of the person's; its index
            # stays spent, as a relay may hold the event without having said so (§15.2-2)
            await agent.store.commit(Commit(intents_drop=(record.intent_id,)))
            raise
        wait_s = min(answer_wait_ms, deadline_ms // 2) / 1000
        answers = await _answers(pool, key, message, _answers_since(agent, event),
                                 wait_s=wait_s, expect=expect_answers,
                                 clock=agent.clock)  # fmt: skip
    result = await _to_answerers(agent, record, body, answers, vendors=vendors,
                                 progress=progress)  # fmt: skip
    record = await agent.store.get_intent(record.intent_id) or record
    return RelayedIntentcast(intent_id, event, published, tuple(answers), result, record)


def _days(ms: int) -> str:
    days = ms / 86_400_000
    return f"{days:g} days" if days >= 1 else f"{ms / 3_600_000:g} hours"


async def relay_answers(
    agent: Agent,
    relays: Sequence[str] = (),
    *,
    answer_wait_ms: int = DEFAULT_ANSWER_WAIT_MS,
    expect_answers: int | None = None,
    progress: Progress | None = None,
    relay_limits: RelayLimits = DEFAULT_RELAY_LIMITS,
) -> list[RelayedIntentcast]:
    """Read the answers to the relayed intentcasts that have not expired, and send each one over
    HTTP to the vendors that answered since (§15.4-3, §15.2-4); their offers are stored with it.

    Each stored one is read from the relays it was published to, plus ``relays``. The relays
    given are also searched, from the index after the last one stored, for relayed intentcasts
    the store has no record of (an agent restored from its master seed alone, §15.2-4); each one
    found is stored, from the body of its envelope, and read like the others; the indices a
    search asked about are never published from when it found one, and stay free when it found
    none (nothing to link them to). Waits at most
    ``answer_wait_ms`` for each intentcast's answers, or until ``expect_answers`` answered.

    An intentcast none of whose relays could be reached is not read, and said so (a warning on
    the ``vrmproto.nostr`` logger); when no intentcast could be read for that reason, this
    raises :class:`RelayError`: an intentcast whose relays are down is not one that ended."""
    seed = agent.ledger.master.seed
    now = agent.clock()
    live = [r for r in await agent.intents()
            if r.relay_index is not None and r.reply_by_ms > now]  # fmt: skip
    done: list[RelayedIntentcast] = []
    async with relay_session() as session:
        if relays:
            floor = await _stored_next(agent)
            async with RelayPool(relays, session, limits=relay_limits) as pool:
                found, searched = await _search(pool, seed, await _used_next(agent))
            if found:  # the relays would link a later intentcast from an asked key to these
                await agent.store.commit(Commit(meta=(_next_meta(max(floor, searched)),)))
            live += await _adopt(agent, found, relays)
        # the relays of every intentcast are read at once (each waits for its answers), then
        # each is sent over HTTP to its new vendors in turn
        reading = asyncio.Semaphore(READING)

        async def read(record: IntentRecord) -> _Read | RelayError | None:
            async with reading:
                try:
                    return await _read_relays(agent, session, record, relays,
                                              wait_ms=answer_wait_ms, expect=expect_answers,
                                              limits=relay_limits)  # fmt: skip
                except RelayError as exc:  # none of its relays could be reached: still open
                    return exc

        unread: list[tuple[IntentRecord, RelayError]] = []
        for record, got in zip(live, await asyncio.gather(*map(read, live)), strict=True):
            if isinstance(got, RelayError):
                unread.append((record, got))
            elif got is not None:
                done.append(await _send_read(agent, record, got, progress=progress))
    if unread and not done:
        raise unread[0][1]
    for record, why in unread:
        log.warning("relayed intentcast %s “%s” not read: %s", record.intent_id.hex()[:8],
                    record.what, why)  # fmt: skip
    return done


async def _adopt(agent: Agent, found: dict[int, Event], relays: Sequence[str]
                 ) -> list[IntentRecord]:  # fmt: skip
    """Store the relayed intentcasts ``found`` on ``relays`` that have not expired."""
    adopted = []
    for index, ev in sorted(found.items()):
        try:
            message = open_intentcast(ev, now_ms=agent.clock(), limits=agent.limits)
        except ProtocolError as exc:  # expired since, most likely: nothing to read
            log.info("relayed intentcast %d not read: %s", index, exc)
            continue
        if message.sender != agent.ledger.master.for_intent(relay_key(
                agent.ledger.master.seed, index)[0]).public_key:  # fmt: skip
            continue  # signed by an identity that is not ours: not our intentcast
        record = intent_record_of(message.body, agent.random_id(), message.header.created,
                                  relay_index=index, relays=relays)  # fmt: skip
        await agent.store.commit(Commit(intents=(record,)))
        adopted.append(record)
    return adopted


@dataclass(frozen=True, slots=True)
class _Read:
    """A relayed intentcast read back from its relays, and the answers that came."""

    intent_id: bytes
    event: Event
    message: Signed[Intentcast]
    answers: list[Answer]


async def _send_read(agent: Agent, record: IntentRecord, read: _Read, *,
                     progress: Progress | None) -> RelayedIntentcast:  # fmt: skip
    """The HTTP intentcast to the vendors that answered ``read`` and were not asked yet."""
    result = await _to_answerers(agent, record, read.message.body, read.answers,
                                 progress=progress)  # fmt: skip
    record = await agent.store.get_intent(record.intent_id) or record
    return RelayedIntentcast(read.intent_id, read.event, None, tuple(read.answers), result,
                             record)  # fmt: skip


async def _read_relays(agent: Agent, session: aiohttp.ClientSession, record: IntentRecord,
                       extra: Sequence[str], *, wait_ms: int, expect: int | None,
                       limits: RelayLimits) -> _Read | None:  # fmt: skip
    """One stored relayed intentcast: its event read back and its answers. None when no relay
    holds it any more; :class:`RelayError` when none of its relays could be reached."""
    if record.relay_index is None:
        raise ValueError("not a relayed intentcast")
    intent_id, key = relay_key(agent.ledger.master.seed, record.relay_index)
    urls = list(dict.fromkeys([*record.relays, *extra]))
    async with RelayPool(urls, session, limits=limits) as pool:  # RelayError: none reached
        event = None
        wanted = {"kinds": [KIND_INTENTCAST], "authors": [key.public.hex()]}
        async for ev in pool.subscribe(wanted, until_eose=True):
            if ev.pubkey == key.public.hex():  # a relay sends what it likes (§15.5)
                event = ev
        if event is None:
            return None
        try:
            message = open_intentcast(event, now_ms=agent.clock(), limits=agent.limits)
        except ProtocolError as exc:  # expired since, most likely
            log.info("relayed intentcast %s not read: %s", record.intent_id.hex()[:8], exc)
            return None
        if message.sender != agent.ledger.master.for_intent(intent_id).public_key:
            return None  # signed by our Nostr key, but not by the intentcast's identity
        remaining = max(record.reply_by_ms - agent.clock(), 1)
        answers = await _answers(pool, key, message, _answers_since(agent, event),
                                 clock=agent.clock, wait_s=min(wait_ms, remaining) / 1000,
                                 expect=expect)  # fmt: skip
    return _Read(intent_id, event, message, answers)
