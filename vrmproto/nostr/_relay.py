"""A small Nostr relay client over aiohttp's websockets (NIP-01 messages, NIP-20 ``OK``; §15.5).

:class:`Relay` is one connection: ``publish`` waits for the relay's ``OK``, ``subscribe`` yields
the verified events of a ``REQ``. :class:`RelayPool` is several relays as one: it publishes to
all, merges their subscriptions, drops events it has seen (by id) and keeps working while some
relays are down (§15.5-1, -2); :meth:`RelayPool.follow` is a subscription that lasts, connecting
again, with backoff, to each relay it loses or could not reach.

A vendor's subscription runs for months and a relay sends what it likes, so the pool's memory
is bounded: it remembers the last ``seen_window`` event ids (a copy from another relay arrives
within seconds of the first), and at most ``pump_queue`` events of a relay wait to be taken:
beyond that a relay that sends faster than the vendor reads loses the excess (counted in
:attr:`Relay.dropped`), as a relay under load does itself. Every limit is a field of
:class:`RelayLimits` (docs/nostr.md lists them with their defaults); whatever a relay sends,
the reader drops it or takes it, and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from vrmproto._errors import TransportError
from vrmproto.nostr._event import Event, EventError

__all__ = [
    "DEFAULT_RELAY_LIMITS",
    "MAX_RETRY_S",
    "PUMP_QUEUE",
    "RETRY_S",
    "SEEN_WINDOW",
    "PublishResult",
    "Relay",
    "RelayError",
    "RelayLimits",
    "RelayPool",
    "relay_session",
]

log = logging.getLogger("vrmproto.nostr")
#: The largest relay message read (bytes): an envelope (§10-1) in base64 and its event around it.
MAX_RELAY_MESSAGE = 1 << 20
#: The most characters of a relay's own words (an ``OK`` refusal, a ``NOTICE``) kept.
MAX_RELAY_WORDS = 200
#: How many event ids a :class:`RelayPool` subscription remembers to drop copies (§15.5-2).
SEEN_WINDOW = 16_384
#: How many events of one relay wait, at most, for the subscriber to take them.
PUMP_QUEUE = 256
#: How long :meth:`RelayPool.follow` waits before it connects again to a relay it lost or could
#: not reach (seconds); doubled after each failure in a row, up to :data:`MAX_RETRY_S`.
RETRY_S = 30.0
MAX_RETRY_S = 600.0
#: How long a relay has to accept a connection, to say OK to an event, and to send its stored
#: events and EOSE (seconds).
TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """Every limit of the relay client, in one place: the module's constants are the defaults
    (docs/nostr.md; spec §15.6 names the largest message). ``RelayLimits(timeout_s=30)``."""

    #: How long a relay has to accept the connection, say OK, and end its stored events (s).
    timeout_s: float = TIMEOUT_S
    #: The largest relay message read (bytes); a larger one closes the connection.
    max_message: int = MAX_RELAY_MESSAGE
    #: The most characters kept of a relay's own words (an OK refusal, a NOTICE, a CLOSED).
    max_words: int = MAX_RELAY_WORDS
    #: How many event ids a pool's subscription remembers to drop copies (§15.5-2).
    seen_window: int = SEEN_WINDOW
    #: How many events of one relay wait, at most, for their subscriber; more are dropped.
    pump_queue: int = PUMP_QUEUE
    #: :meth:`RelayPool.follow`: the wait before connecting again to a lost relay (s), doubled
    #: after each failure in a row up to ``max_retry_s``.
    retry_s: float = RETRY_S
    max_retry_s: float = MAX_RETRY_S
    #: At most this many events a second from one relay, on average, over bursts of at most
    #: ``events_burst`` (a token bucket); more are dropped before their signature is checked
    #: (``Relay.limited``). None: no such limit (a customer's short reads).
    events_per_s: float | None = None
    events_burst: int = 1000

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and self.max_message > 0 and self.max_words > 0
                and self.seen_window > 0 and self.pump_queue > 0
                and 0 < self.retry_s <= self.max_retry_s and self.events_burst >= 1
                and (self.events_per_s is None or self.events_per_s > 0)):  # fmt: skip
            raise ValueError(f"relay limits out of range: {self}")


DEFAULT_RELAY_LIMITS = RelayLimits()


def _said(text: str, most: int = MAX_RELAY_WORDS) -> str:
    """What a relay said (an ``OK`` refusal, a ``NOTICE``), cut to ``most`` characters: it is
    shown to the person, and a relay may send a megabyte of it."""
    return text if len(text) <= most else text[:most] + "…"


class RelayError(TransportError):
    """A relay that cannot be reached, refused an event, or closed a subscription."""


class _Redirected(aiohttp.ClientError):
    """A relay's handshake answered with a redirection, not followed."""


async def _refuse_redirect(session: aiohttp.ClientSession, ctx: object,
                           params: aiohttp.TraceRequestRedirectParams) -> None:  # fmt: skip
    where = _said(params.response.headers.get("Location", "?"))
    raise _Redirected(f"redirected to {where!r}, not followed")


def relay_session() -> aiohttp.ClientSession:
    """An HTTP session for relays that follows no redirection: a relay's URL is the one the
    person (or the vendor file) named, never another a relay points to — a host on the
    person's own network, or ``ws://`` for a ``wss://`` (§15.5-4)."""
    trace = aiohttp.TraceConfig()
    trace.on_request_redirect.append(_refuse_redirect)
    return aiohttp.ClientSession(trace_configs=[trace])


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What each relay said to one event: relay URL → None (stored) or why it failed."""

    event_id: str
    errors: dict[str, str | None] = field(default_factory=dict)

    @property
    def accepted(self) -> list[str]:
        return [u for u, e in self.errors.items() if e is None]


class Relay:
    """One websocket to one relay. Use ``async with Relay(url, session)``."""

    def __init__(self, url: str, session: aiohttp.ClientSession, *,
                 timeout_s: float | None = None,
                 limits: RelayLimits = DEFAULT_RELAY_LIMITS) -> None:  # fmt: skip
        """``timeout_s``, when given, stands for ``limits.timeout_s``."""
        self.url = url
        self._session = session
        self.limits = limits if timeout_s is None else replace(limits, timeout_s=timeout_s)
        self._timeout = self.limits.timeout_s
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._oks: dict[str, asyncio.Future[tuple[bool, str]]] = {}
        self._subs: dict[str, asyncio.Queue[Any]] = {}
        self._stored: set[str] = set()  # the subscriptions whose stored events have ended (EOSE)
        self._ended: dict[str, str] = {}  # the subscriptions the relay closed, and why
        #: Why the relay last closed a subscription of ours (CLOSED), if it did.
        self.last_closed: str | None = None
        #: Events dropped because a subscriber had ``limits.pump_queue`` of them waiting.
        self.dropped = 0
        #: Events dropped because the relay sent more than ``limits.events_per_s``.
        self.limited = 0
        self._tokens, self._filled = float(self.limits.events_burst), time.monotonic()

    async def __aenter__(self) -> Relay:
        await self.connect()
        return self

    @property
    def closed(self) -> bool:
        """Whether the websocket is closed (or was never open)."""
        return self._ws is None or self._ws.closed

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the websocket, within ``timeout_s``: a relay that takes the connection and never
        answers the handshake is down then, not after the HTTP library's minutes."""
        ws_timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self._timeout)
        try:
            async with asyncio.timeout(self._timeout):
                self._ws = await self._session.ws_connect(
                    self.url, timeout=ws_timeout, max_msg_size=self.limits.max_message,
                    heartbeat=30)  # fmt: skip
        except TimeoutError:
            raise RelayError(f"{self.url}: cannot connect: no answer within {self._timeout:g} s"
                             ) from None  # fmt: skip
        except (aiohttp.ClientError, OSError) as exc:
            raise RelayError(f"{self.url}: cannot connect: {exc}") from exc
        self._reader = asyncio.create_task(self._read(self._ws))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws is not None:
            await self._ws.close()
        self._fail_all("closed")

    def _fail_all(self, why: str) -> None:
        for fut in self._oks.values():
            if not fut.done():
                fut.set_result((False, why))
        for q in self._subs.values():
            q.put_nowait(None)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._dispatch(msg.data)
        finally:
            self._fail_all("the relay closed the connection")

    def _dispatch(self, text: str) -> None:
        """Take one relay message. Never raises, whatever the relay sent: the reader would end
        with it, and the relay's subscriptions with it (§15.5-4: a relay is not trusted)."""
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: [[[[…]]]] nested past the stack
            log.debug("%s: unreadable message dropped", self.url)
            return
        if not (isinstance(msg, list) and len(msg) >= 2 and isinstance(msg[0], str)
                and isinstance(msg[1], str)):  # fmt: skip
            log.debug("%s: message of no known form dropped", self.url)
            return
        kind, ref = msg[0], msg[1]
        if kind == "OK" and len(msg) >= 3 and (fut := self._oks.get(ref)):
            if not fut.done():
                why = msg[3] if len(msg) > 3 and isinstance(msg[3], str) else ""
                fut.set_result((msg[2] is True, _said(why, self.limits.max_words)))
        elif kind in ("EVENT", "EOSE", "CLOSED") and (q := self._subs.get(ref)) is not None:
            if kind == "EVENT":
                if len(msg) < 3 or not isinstance(msg[2], dict):  # no event: not even a marker
                    log.debug("%s: an EVENT with no event dropped", self.url)
                elif not self._allow():
                    self.limited += 1
                    if self.limited == 1 or self.limited % 10_000 == 0:
                        log.warning("%s: more than %g events a second: %d dropped", self.url,
                                    self.limits.events_per_s, self.limited)  # fmt: skip
                elif q.qsize() >= self.limits.pump_queue:  # read no faster than it is taken
                    self.dropped += 1
                    log.debug("%s: subscriber behind, event dropped", self.url)
                else:
                    q.put_nowait(msg[2])
            elif kind == "EOSE":
                if ref not in self._stored:  # once: a relay may repeat it without end
                    self._stored.add(ref)
                    q.put_nowait("EOSE")
            else:  # CLOSED: the end of it, and nothing of it is taken after
                del self._subs[ref]
                why = msg[2] if len(msg) > 2 and isinstance(msg[2], str) else ""
                self._ended[ref] = self.last_closed = (
                    f"the relay closed it: {_said(why, self.limits.max_words)}")
                log.info("%s: %s", self.url, self._ended[ref])
                q.put_nowait(None)
        elif kind == "NOTICE":
            log.info("%s: notice: %s", self.url, _said(ref, self.limits.max_words))

    def _allow(self) -> bool:
        """Whether one more event fits ``limits.events_per_s`` (a token bucket)."""
        rate = self.limits.events_per_s
        if rate is None:
            return True
        now = time.monotonic()
        self._tokens = min(float(self.limits.events_burst),
                           self._tokens + (now - self._filled) * rate)  # fmt: skip
        self._filled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def _send(self, msg: list[Any]) -> None:
        if self._ws is None or self._ws.closed:
            raise RelayError(f"{self.url}: not connected")
        try:
            await self._ws.send_str(json.dumps(msg, separators=(",", ":"), ensure_ascii=False))
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise RelayError(f"{self.url}: {exc}") from exc

    async def publish(self, event: Event) -> None:
        """Send ``event`` and wait for the relay's ``OK`` (NIP-20); raise if it refused it."""
        fut = asyncio.get_running_loop().create_future()
        self._oks[event.id] = fut
        try:
            await self._send(["EVENT", event.to_json()])
            async with asyncio.timeout(self._timeout):
                ok, why = await fut
        except TimeoutError as exc:
            raise RelayError(f"{self.url}: no OK for {event.id[:12]}") from exc
        finally:
            self._oks.pop(event.id, None)
        if not ok:
            raise RelayError(f"{self.url}: refused {event.id[:12]}: {why}")

    async def subscribe(self, *filters: dict[str, Any], until_eose: bool = False
                        ) -> AsyncIterator[Event]:  # fmt: skip
        """The events matching ``filters``, stored ones first, then live ones as they come
        (or only the stored ones with ``until_eose``). Events whose id or signature fails are
        dropped (§15.1-2). Ends when the relay closes the subscription or the connection.

        With ``until_eose``, the relay has ``timeout_s`` to send its stored events and say it
        has (EOSE); a relay that does not — stalled, sending for ever, or ending the
        subscription (CLOSED) or the connection first — is a :class:`RelayError`, with the
        events it sent before already yielded: its silence says nothing of what it holds."""
        sub = secrets.token_hex(8)
        q: asyncio.Queue[Any] = asyncio.Queue()
        self._subs[sub] = q
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout if until_eose else None
        try:
            await self._send(["REQ", sub, *filters])
            while (item := await self._next(q, deadline)) is not None:
                if item == "EOSE":
                    if until_eose:
                        return
                    continue
                try:
                    yield Event.from_json(item)
                except EventError as exc:
                    log.info("%s: event dropped: %s", self.url, exc)
            if until_eose:
                why = self._ended.get(sub, "the connection closed")
                raise RelayError(f"{self.url}: ended before EOSE: {why}")
        finally:
            self._subs.pop(sub, None)
            self._stored.discard(sub)
            self._ended.pop(sub, None)
            if self._ws is not None and not self._ws.closed:
                with contextlib.suppress(RelayError):
                    await self._send(["CLOSE", sub])


    async def _next(self, q: asyncio.Queue[Any], deadline: float | None) -> Any:
        """The next item of a subscription's queue, waiting until ``deadline`` (loop time)."""
        if deadline is None:
            return await q.get()
        try:
            async with asyncio.timeout_at(deadline):
                return await q.get()
        except TimeoutError:
            raise RelayError(f"{self.url}: sent no EOSE within {self._timeout:g} s") from None


class _Recent:
    """The last ``size`` keys seen, the oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self._keys: dict[str, None] = {}
        self._size = size

    def first(self, key: str) -> bool:
        """True the first time ``key`` is seen within the window, and remember it."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._size:
            del self._keys[next(iter(self._keys))]
        return True

    def __len__(self) -> int:
        return len(self._keys)


class RelayPool:
    """Several relays as one (§15.5). Relays that cannot be reached are logged in ``down``."""

    def __init__(self, urls: Sequence[str], session: aiohttp.ClientSession, *,
                 timeout_s: float | None = None,
                 limits: RelayLimits = DEFAULT_RELAY_LIMITS) -> None:  # fmt: skip
        self.urls = list(dict.fromkeys(urls))
        self.relays: list[Relay] = []
        self.down: dict[str, str] = {}
        self._session = session
        self.limits = limits if timeout_s is None else replace(limits, timeout_s=timeout_s)

    async def __aenter__(self) -> RelayPool:
        async def one(url: str) -> Relay | None:
            relay = Relay(url, self._session, limits=self.limits)
            try:
                await relay.connect()
            except RelayError as exc:
                self.down[url] = str(exc)
                log.warning("relay down: %s", exc)
                return None
            return relay

        self.relays = [r for r in await asyncio.gather(*map(one, self.urls)) if r is not None]
        if not self.relays and self.urls:
            raise RelayError("no relay could be reached: " + "; ".join(self.down.values()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(r.close() for r in self.relays))

    async def publish(self, event: Event) -> PublishResult:
        """Publish to every relay that is up; raise only if none stored the event (§15.5-1)."""
        result = PublishResult(event.id, dict.fromkeys(self.down, "down"))

        async def one(relay: Relay) -> None:
            try:
                await relay.publish(event)
                result.errors[relay.url] = None
            except RelayError as exc:
                result.errors[relay.url] = str(exc)

        await asyncio.gather(*map(one, self.relays))
        if not result.accepted:
            raise RelayError("no relay stored the event: " + "; ".join(
                f"{u}: {e}" for u, e in result.errors.items()))  # fmt: skip
        return result

    async def subscribe(self, *filters: dict[str, Any], until_eose: bool = False
                        ) -> AsyncIterator[Event]:  # fmt: skip
        """Every relay's matching events merged, each event id once (§15.5-2); with
        ``until_eose``, only the stored ones, ending when every relay has sent them (or failed
        to: logged), and a :class:`RelayError` at the end when none did."""
        q: asyncio.Queue[Event | None] = asyncio.Queue(self.limits.pump_queue)
        failed: list[str] = []

        async def pump(relay: Relay) -> None:
            try:
                async for ev in relay.subscribe(*filters, until_eose=until_eose):
                    await q.put(ev)
            except RelayError as exc:
                failed.append(str(exc))
                log.warning("subscription lost: %s", exc)
            finally:
                await q.put(None)

        tasks = [asyncio.create_task(pump(r)) for r in self.relays]
        seen = _Recent(self.limits.seen_window)
        live = len(tasks)
        try:
            while live:
                ev = await q.get()
                if ev is None:
                    live -= 1
                elif seen.first(ev.id):
                    yield ev
            if until_eose and tasks and len(failed) == len(tasks):
                raise RelayError("no relay sent its stored events: " + "; ".join(failed))
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def follow(self, filters: Callable[[], Sequence[dict[str, Any]]], *,
                     retry_s: float | None = None, max_retry_s: float | None = None
                     ) -> AsyncGenerator[Event, None]:  # fmt: skip
        """Every relay's live events, each id once (§15.5-2), until cancelled: a relay that is
        lost or closes the subscription — or that could not be reached at first — is connected
        again ``retry_s`` later, twice that after another failure in a row, up to
        ``max_retry_s``, and subscribed with ``filters()`` made anew (a ``since`` from the time
        then). The relay is in :attr:`relays` (and so takes :meth:`publish`) while it is up."""
        q: asyncio.Queue[Event] = asyncio.Queue(self.limits.pump_queue)
        first_s = self.limits.retry_s if retry_s is None else retry_s
        most_s = self.limits.max_retry_s if max_retry_s is None else max_retry_s
        up = {r.url: r for r in self.relays}
        loop = asyncio.get_running_loop()

        async def pump(url: str) -> None:
            delay = first_s
            while True:
                relay = up.pop(url, None)
                if relay is None:
                    relay = Relay(url, self._session, limits=self.limits)
                    try:
                        await relay.connect()
                    except RelayError as exc:
                        self.down[url] = str(exc)
                        log.warning("relay down: %s (again in %g s)", exc, delay)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, most_s)
                        continue
                    self.down.pop(url, None)
                    self.relays.append(relay)
                started = loop.time()
                try:
                    async for ev in relay.subscribe(*filters()):
                        await q.put(ev)
                    why = ("the connection closed" if relay.closed else
                           relay.last_closed or "subscription closed")  # fmt: skip
                except RelayError as exc:
                    why = str(exc)
                if loop.time() - started > delay:  # it worked a while: not a failure in a row
                    delay = first_s
                self.relays.remove(relay)
                self.down[url] = why
                await relay.close()
                log.warning("relay lost: %s: %s (again in %g s)", url, why, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, most_s)

        tasks = [asyncio.create_task(pump(u)) for u in self.urls]
        seen = _Recent(self.limits.seen_window)
        try:
            while True:
                ev = await q.get()
                if seen.first(ev.id):
                    yield ev
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
