"""The customer's side of §15: an intentcast published through relays, answers collected, and
the intentcast then sent over HTTP to every vendor that answered and every vendor given.

The relayed intentcast (§15.3) comes from a throw-away identity and a throw-away Nostr key, both
derived from the master seed for an intent id of its own (§2.4, §15.2-1). Vendors that would
make an offer answer with where to reach them (§15.4); the agent's ordinary intentcast then goes
to them and to ``vendors`` together, so offers from both are collected, de-duplicated (one thread
per vendor URL) and ranked as for any intentcast, and stored the same way (§15.4-3).

Nothing but what the person wrote goes to the relays: a fresh identity and thread, no endpoint
URL, no pairwise key (§11.14-1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from vrmproto._envelope import Signed, sign_message
from vrmproto._errors import ProtocolError
from vrmproto._messages import Intentcast, Money
from vrmproto._vocab import TermRef
from vrmproto.client._agent import Agent
from vrmproto.client._agent_base import norm_url
from vrmproto.client._fanout import Progress
from vrmproto.client._views import IntentcastResult
from vrmproto.nostr._binding import Answer, answer_filter, intentcast_event, open_answer
from vrmproto.nostr._crypto import NostrKey
from vrmproto.nostr._event import Event
from vrmproto.nostr._relay import PublishResult, RelayPool

__all__ = ["RelayedIntentcast", "publish_intentcast"]

log = logging.getLogger("vrmproto.nostr")
#: The proof of work a customer puts on a relayed intentcast unless told otherwise (§15.1-4).
DEFAULT_POW = 16
#: How long the customer waits for answers from relays unless told otherwise (ms).
DEFAULT_ANSWER_WAIT_MS = 5_000
#: Indices in a row whose key published nothing before a search for relayed intentcasts stops
#: (§15.2-4).
INDEX_GAP = 20


@dataclass(frozen=True, slots=True)
class RelayedIntentcast:
    """What the relays carried: the event, who stored it, which vendors answered where, and
    the agent's intentcast to those vendors and the ones given (``result``)."""

    relay_intent_id: bytes
    event: Event
    published: PublishResult
    answers: tuple[Answer, ...]
    result: IntentcastResult


def _relay_message(agent: Agent, body: Intentcast, intent_id: bytes) -> Signed[Intentcast]:
    identity = agent.ledger.master.for_intent(intent_id)
    now = agent.clock()
    return sign_message(body, identity=identity, recipient=identity.public_key,
                        thread=agent.random_id(), prev=None, now=now, msg_id=agent.random_id(),
                        lifetime_ms=max(body.reply_by - now, 1))  # fmt: skip


async def _collect(pool: RelayPool, key: NostrKey, message: Signed[Intentcast], since: int,
                   found: dict[str, Answer], *, expect: int | None) -> None:  # fmt: skip
    """Add each vendor URL that answers to ``found`` as it comes, until ``expect`` of them (or
    the caller cancels); answers that do not open are dropped (§15.4-3)."""
    async for ev in pool.subscribe(answer_filter(key.public, since)):
        try:
            a = open_answer(ev, key, message.hash)
        except ProtocolError as exc:
            log.info("answer %s dropped: %s", ev.id[:12], exc)
            continue
        found.setdefault(norm_url(a.url), a)
        if expect is not None and len(found) >= expect:
            return


async def _answers(pool: RelayPool, key: NostrKey, message: Signed[Intentcast], since: int,
                   *, wait_s: float, expect: int | None) -> list[Answer]:  # fmt: skip
    """The answers that came in ``wait_s`` seconds, or sooner once ``expect`` vendors did."""
    found: dict[str, Answer] = {}
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_collect(pool, key, message, since, found, expect=expect), wait_s)
    return list(found.values())


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
) -> RelayedIntentcast:
    """Publish an intentcast to ``relays``, wait ``answer_wait_ms`` for answers (or until
    ``expect_answers`` vendors answered), then send it over HTTP to them and to ``vendors``."""
    intent_id = agent.random_id()
    reply_by = agent.clock() + deadline_ms
    body = Intentcast(what=what, reply_by=reply_by, constraints=tuple(constraints),
                      memberships=tuple(memberships), where=where, start=start, end=end,
                      max_price=max_price, terms=tuple(terms) if terms else None)  # fmt: skip
    message = _relay_message(agent, body, intent_id)
    key = NostrKey.for_intent(agent.ledger.master.seed, intent_id)
    event = intentcast_event(message, key, geohash=geohash, pow_difficulty=pow_difficulty,
                             aux=agent.random_id() + agent.random_id())  # fmt: skip
    async with aiohttp.ClientSession() as session, RelayPool(relays, session) as pool:
        published = await pool.publish(event)
        wait_s = min(answer_wait_ms, deadline_ms // 2) / 1000
        answers = await _answers(pool, key, message, event.created_at, wait_s=wait_s,
                                 expect=expect_answers)  # fmt: skip
    targets = list(dict.fromkeys([*map(norm_url, vendors), *(norm_url(a.url) for a in answers)]))
    remaining = max(reply_by - agent.clock(), 1)
    result = await agent.intentcast(
        what, vendors=targets, where=where, start=start, end=end, constraints=constraints,
        memberships=memberships, max_price=max_price, terms=terms, deadline_ms=remaining,
        progress=progress)  # fmt: skip
    return RelayedIntentcast(intent_id, event, published, tuple(answers), result)
