"""A customer node's inbound endpoint: each relationship at a path of its own (§11.6-1, §12.11-4).

Every vendor is told a different base URL, ``<agent URL>/r/<token>``
(:func:`vrmproto.client._paths.endpoint_path`), and finds there the three routes of §12:

- ``GET  /r/<token>/.well-known/vrm`` — the discovery document of that relationship's endpoint:
  signed by a key derived for that relationship alone, naming no person (role ``customer``);
- ``POST /r/<token>/vrm/inbox`` and ``POST /r/<token>/vrm/history`` — handled by one
  :class:`~vrmproto.server.Endpoint` engine on the node's store, after checking that the message
  (or history request) belongs to the thread of that path: another thread is ``no_relationship``.

The engine works under the node's own :class:`~vrmproto.client._ledger.Ledger`: its thread
lock is the ledger's (so a vendor's message and the node's own sending in the same thread take
turns, in this process and across processes on the store, §11.11-2), and our key in each thread
is looked up in the ledger, which derives it from the thread's meta (§2.3, §2.4) — no search.

Nothing is served at the origin: a path that names no relationship of ours is ``not_found``,
so someone who knows only the host and port learns nothing about the person, and one vendor
cannot reach the agent on another vendor's behalf. Problems that belong to no relationship are
signed by a throw-away key of this process, which no vendor holds anything against.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgpack
from aiohttp import hdrs, web

from vrmproto._binding import SIGNATURE_HEADER, WELL_KNOWN_PATH, build_discovery
from vrmproto._errors import Problem
from vrmproto._keys import ID_BYTES, Identity, sha256
from vrmproto._state import Role
from vrmproto.client._ledger import Ledger, is_ours
from vrmproto.client._paths import ENDPOINT_PREFIX, endpoint_identity, endpoint_token
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.server._app import _middleware, _read_envelope, _web, cache_control
from vrmproto.server._endpoint import JSON_TYPE, Response
from vrmproto.store import Commit, HistoryEntry, RelationshipRecord

log = logging.getLogger("vrmproto.agent")

__all__ = ["AGENT_NAME", "InboundEndpoint", "claimed_thread"]

#: The name in every discovery document of an agent endpoint: never the person's (§11.6-1).
AGENT_NAME = "vrm agent"
_INBOX = "/vrm/inbox"
_HISTORY = "/vrm/history"
#: Most often an unknown token makes us re-read the relationships, per second.
_REFRESH_EVERY_MS = 1_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _ticks_ms() -> int:
    """A clock no one sets back (an NTP step would hold back the next re-read for as long)."""
    return time.monotonic_ns() // 1_000_000


def claimed_thread(data: bytes) -> bytes | None:
    """The thread an envelope or a signed history request (§12.5-1) claims, unverified."""
    try:
        outer = msgpack.unpackb(data, raw=False)
        inner = outer.get("hdr", outer.get("req")) if type(outer) is dict else None
        fields = msgpack.unpackb(inner, raw=False) if type(inner) is bytes else None
    except Exception:  # the engine refuses it properly, with the right code
        return None
    thread = fields.get("thread") if type(fields) is dict else None
    return thread if type(thread) is bytes and len(thread) == ID_BYTES else None


@dataclass(slots=True)
class _Doc:
    signed_ms: int
    body: bytes
    signature: str


class InboundEndpoint:
    """The agent endpoint's aiohttp application on a node's ledger: see the module docstring.

    ``engine`` handles every message; the relationships' tokens are read from the store at
    :meth:`refresh`, and again, at most once a second, when a request names a token we do not
    know yet (a relationship opened by another ``vrm`` process meanwhile).
    """

    def __init__(self, ledger: Ledger, *, lifetime_ms: int = 86_400_000) -> None:
        self.ledger = ledger
        self.master = ledger.master
        self.store = ledger.store
        self.engine = Endpoint(
            Identity(os.urandom(32)), store=ledger.store, role=Role.CUSTOMER,
            identity_for=self.identity_for, name=AGENT_NAME,
            policy=ReferencePolicy(name=AGENT_NAME), thread_lock=self._thread_lock,
            limits=ledger.limits,
        )  # fmt: skip
        self.lifetime_ms = lifetime_ms
        self._threads: dict[str, bytes] = {}  # token -> thread
        self._docs: dict[bytes, _Doc] = {}
        self._refreshed_ms = -_REFRESH_EVERY_MS  # (monotonic: the first may come at once)

    def identity_for(self, record: RelationshipRecord) -> Identity:
        """Our key in ``record``'s thread, as the ledger derived it from the thread's meta
        (learnt before the engine asks: :meth:`_thread_lock`, :meth:`_thread`)."""
        known = self.ledger.identity_of(record.local_key)
        if known is not None:
            return known
        # Not ours: any identity makes the endpoint refuse the message as wrong_recipient.
        return Identity(sha256(b"vrmproto/agent/unknown-thread\x00" + record.thread))

    @contextlib.asynccontextmanager
    async def _thread_lock(self, thread: bytes) -> AsyncIterator[None]:
        """The ledger's lock of ``thread``, the one the node's own sending takes: a vendor's
        message waits while the node, or another ``vrm`` process, works in the same
        relationship (§11.11-2). Inside it our key in the thread is read afresh."""

        def waiting() -> None:
            log.info("another vrm is working on relationship %s; the vendor's message waits",
                     thread.hex()[:12])  # fmt: skip

        async with self.ledger.lock(thread, on_wait=waiting):
            await self.ledger.learn_identity(thread)
            head = await self.store.history_head(thread)
            try:
                yield
            finally:
                self.ledger.forget(thread)  # the engine changed it behind the cache
            await self._moved_on(thread, head)

    async def _moved_on(self, thread: bytes, head: HistoryEntry | None) -> None:
        """After the engine's step in ``thread`` (its history's head was ``head``): if it
        logged the vendor's message, no message of ours logged before it may be taken back out
        of our history any more (§8.1-6), so their save points go. The node keeps one for each
        message of ours until the vendor answers it (§8.1-5); a refusal that came after the
        vendor's own message (a ``data.share`` refused because the vendor ended the
        relationship meanwhile, §12.8-3) truncated our history to it, losing the vendor's
        signed message and our receipt for it, which the vendor holds."""
        now = await self.store.history_head(thread)
        if now is None or (head is not None and now.index == head.index):
            return  # nothing logged
        if await self.store.save_points(thread):
            await self.store.commit(Commit(save_points_clear=(thread,)))

    async def refresh(self) -> None:
        """Learn the token of every customer relationship in the store."""
        self._refreshed_ms = _ticks_ms()
        for record in await self.store.relationships(with_data=False):
            if is_ours(record):
                self._threads.setdefault(endpoint_token(self.master, record.thread),
                                         record.thread)  # fmt: skip

    async def _thread(self, token: str) -> bytes | None:
        thread = self._threads.get(token)
        if thread is None and _ticks_ms() - self._refreshed_ms >= _REFRESH_EVERY_MS:
            await self.refresh()
            thread = self._threads.get(token)
        if thread is not None:
            await self.ledger.learn_identity(thread)  # a history request takes no lock
        return thread

    def discovery(self, thread: bytes) -> tuple[bytes, str]:
        """The relationship's discovery document (§13.1, §12.11-3, §12.11-4), re-signed once half
        its lifetime has passed."""
        now = _now_ms()
        doc = self._docs.get(thread)
        if doc is None or not 0 <= now - doc.signed_ms < self.lifetime_ms // 2:
            base = ENDPOINT_PREFIX + endpoint_token(self.master, thread)
            body, signature = build_discovery(
                endpoint_identity(self.master, thread), name=AGENT_NAME,
                role=Role.CUSTOMER.value, now=now, limits=self.engine.limits,
                types=self.engine.receive_types, inbox=base + _INBOX, history=base + _HISTORY,
                lifetime_ms=self.lifetime_ms,
            )  # fmt: skip
            doc = self._docs[thread] = _Doc(now, body, signature)
        return doc.body, doc.signature

    def _not_ours(self) -> web.Response:
        return _web(self.engine.problem(Problem.NOT_FOUND, "no such path", clause="§12.2-5"))

    def app(self) -> web.Application:
        """The aiohttp application: the three routes of each relationship, nothing else."""
        engine = self.engine
        app = web.Application(client_max_size=engine.limits.max_envelope_bytes,
                              middlewares=[_middleware(engine)])  # fmt: skip

        async def discovery(request: web.Request) -> web.Response:
            thread = await self._thread(request.match_info["token"])
            if thread is None:
                return self._not_ours()
            body, signature = self.discovery(thread)
            return web.Response(body=body, headers={
                hdrs.CONTENT_TYPE: JSON_TYPE, SIGNATURE_HEADER: signature,
                hdrs.CACHE_CONTROL: cache_control(self.lifetime_ms),
            })  # fmt: skip

        def receiver(history: bool) -> Any:
            async def route(request: web.Request) -> web.Response:
                thread = await self._thread(request.match_info["token"])
                if thread is None:
                    return self._not_ours()
                data = await _read_envelope(request, engine)
                if isinstance(data, web.Response):
                    return data
                if claimed_thread(data) not in (thread, None):
                    return _web(engine.problem(
                        Problem.NO_RELATIONSHIP,
                        "this path belongs to another relationship", clause="§12.11-4",
                    ))  # fmt: skip
                handle = engine.handle_history if history else engine.handle_inbox
                answer: Response = await handle(data, client=request.remote or "")
                return _web(answer)

            return route

        async def drain(app: web.Application) -> None:
            await engine.drain()

        prefix = ENDPOINT_PREFIX + "{token}"
        app.router.add_get(prefix + WELL_KNOWN_PATH, discovery)
        app.router.add_post(prefix + _INBOX, receiver(history=False))
        app.router.add_post(prefix + _HISTORY, receiver(history=True))
        app.on_cleanup.append(drain)
        return app
