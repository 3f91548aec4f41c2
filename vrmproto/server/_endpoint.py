"""The endpoint engine: one durable protocol step per incoming message (spec §12).

:class:`Endpoint` is the server without HTTP: it takes the bytes of a request and returns a
:class:`Response` (status, body, headers). The aiohttp layer (``_app.py``) only reads bodies
under limits and copies responses out, so everything the spec requires of a receiver — the order
of checks, de-duplication, per-thread ordering, "receipt only after commit", the signed problem
for every refusal — is in this package and is tested without a socket.

One inbox step (§12.3, §12.6, §12.7)::

    peek header ─ sender rate check ─ open_envelope (verify) ─ take the sender's token
      ─ coalesce with an identical in-flight request ─ per-thread lock ─ load relationship
      ─ admit a first contact (§11.8-2) ─ receive ─ storage budget (§11.8-4)
      ─ policy replies ─ send receipt, then replies
      ─ ONE store Commit (relationship, history, dedupe + exact response, held data, erasures)
      ─ 200 ─ hooks (as tasks, after the commit)
      ─ the sender's token given back unless the message was stored as new (§12.9-6)

This module owns the endpoint's configuration, discovery, hooks, problems and the inbox up to
the verified message; the rest is in modules named for what they own:

- ``_accept``: the accept step under the thread's lock and its one commit;
- ``_replies``: the replies to each message type, by body class (§12.3-2);
- ``_rollback``: save points, and the return to one when the peer refuses a reply (§8.1-5);
- ``_held``: the customer data a vendor holds, and erasure of share bodies (§12.10);
- ``_expiry``: the sweeps of unagreed relationships and expired shares (§11.8-3, §12.10-4);
- ``_first_contact``: first-contact admission and the storage budget (§11.8-2, §11.8-4);
- ``_export``: the history export (§12.5); ``_locks``: the per-thread lock registry;
- ``_response``: :class:`Response`, what a delivery did, and the unverified peek at a request.

Error contract: every input gets a :class:`Response`; a refusal is a signed ``problem`` with the
status of its code. Only a failure of our own (a store that is down, a bug) gives 500
``internal_error``, and the hostile-input tests hold the engine to that.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from vrmproto._binding import (
    CONTENT_TYPE,
    DEFAULT_HISTORY_PATH,
    DEFAULT_INBOX_PATH,
    build_discovery,
)
from vrmproto._envelope import SUPPORTED_VERSIONS, Signed, open_envelope
from vrmproto._errors import RETRYABLE, Problem, ProtocolError
from vrmproto._keys import ID_BYTES, Identity, fingerprint
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._messages import MESSAGE_TYPES, ProblemReport
from vrmproto._relationship import problem_for, sign_problem
from vrmproto._state import Role
from vrmproto.server import _accept, _events, _expiry, _export
from vrmproto.server._admission import Admission, StorageBudget
from vrmproto.server._events import FeedEvent
from vrmproto.server._first_contact import StorageGauge
from vrmproto.server._guards import cancelling, check_discovery, drain_tasks
from vrmproto.server._locks import KeyedLocks, SharedLock
from vrmproto.server._policy import Event, Policy, ReferencePolicy
from vrmproto.server._ratelimit import RateLimiter, address_key
from vrmproto.server._response import (
    JSON_TYPE,
    NO_CONTENT,
    Outcome,
    Peek,
    Response,
    peek_sender,
    stored_answer,
)
from vrmproto.server._response import peek as read_peek
from vrmproto.server._rollback import roll_back
from vrmproto.server._warm import WarmRelationships
from vrmproto.store import DedupeRecord, RelationshipRecord, Store

__all__ = ["JSON_TYPE", "NO_CONTENT", "Endpoint", "Hook", "Response"]

log = logging.getLogger("vrmproto.server")

_ZERO_THREAD = bytes(ID_BYTES)
#: Problems after which the same message may be accepted later: they refuse nothing for good.
#: A code this version does not know is final (§9.1-8).
_RETRYABLE: frozenset[Problem | None] = frozenset(RETRYABLE)

Hook = Callable[[Event], Awaitable[None]]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Ids:
    """Random 16-byte ids from the OS, fetched 4 KiB at a time: one system call per 256 ids
    (each call releases the GIL, which costs a busy server a thread switch)."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def __call__(self) -> bytes:
        if self._pos + ID_BYTES > len(self._buf):
            self._buf, self._pos = os.urandom(4096), 0
        out = self._buf[self._pos : self._pos + ID_BYTES]
        self._pos += ID_BYTES
        return out


class Endpoint:
    """A vendor endpoint (``role=Role.VENDOR``) or a customer agent endpoint (§12.11).

    ``identity`` signs discovery and problems that belong to no thread, and is the vendor's key
    in every relationship. A customer agent holds a different key per relationship:
    ``identity_for(record)`` returns it (it is also accepted for a vendor whose key differs
    between relationships).

    Messages of one thread are handled one at a time in this process (§12.8-1). When other
    processes write the same store (a customer's ``vrm`` commands beside its agent endpoint),
    ``thread_lock(thread)`` names the lock they share, held with the thread's own (§11.11-2).
    """

    def __init__(
        self,
        identity: Identity,
        *,
        store: Store,
        policy: Policy | None = None,
        limits: Limits = DEFAULT_LIMITS,
        name: str = "vrmproto endpoint",
        role: Role = Role.VENDOR,
        clock: Callable[[], int] = _now_ms,
        random_id: Callable[[], bytes] | None = None,
        identity_for: Callable[[RelationshipRecord], Identity] | None = None,
        inbox_path: str = DEFAULT_INBOX_PATH,
        history_path: str = DEFAULT_HISTORY_PATH,
        discovery_lifetime_ms: int = 86_400_000,
        storage: StorageBudget | None = StorageBudget(),  # noqa: B008 - frozen, never mutated
        thread_lock: SharedLock | None = None,
    ) -> None:
        if role is Role.CUSTOMER and identity_for is None:
            raise ValueError("a customer agent endpoint needs identity_for (one key per thread)")
        self.identity = identity
        self.store = store
        self.policy: Policy = policy if policy is not None else ReferencePolicy(name=name)
        self.limits = limits
        self.name = name
        self.role = role
        self.clock = clock
        self.random_id = random_id if random_id is not None else _Ids()
        self.inbox_path = inbox_path
        self.history_path = history_path
        self.discovery_lifetime_ms = discovery_lifetime_ms
        self._identity_for = identity_for
        # A vendor is addressed by its one key: open_envelope refuses any other (§4.5-2). A
        # customer agent checks the recipient against the thread's key once the thread is known.
        self._recipients = (identity.public_key,) if identity_for is None else None
        self.sender_limit = RateLimiter(limits.rate_per_sender_per_minute, clock=clock)
        self.address_limit = RateLimiter(limits.rate_per_address_per_minute, clock=clock)
        self.admission = Admission(limits, clock=clock)  # first contact per address (§11.8-2)
        self.storage = storage  # the vendor-wide storage budget (§11.8-4)
        self._gauge = StorageGauge(store, clock)
        # (sender, id) -> futures of identical requests waiting for the one being handled
        self._inflight: dict[tuple[bytes, bytes], list[asyncio.Future[tuple[bytes, Response]]]]
        self._inflight = {}
        self._threads = KeyedLocks(thread_lock)
        self._warm = WarmRelationships()  # relationships just stored (see _warm)
        self._hooks: list[Hook] = []
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[Callable[[], None]] = []  # see _listen
        self._discovery: tuple[int, bytes, str] | None = None
        self._history_requests = _export.SeenRequests()  # to tell replays (§12.9-6)
        check_discovery(self)  # arguments no reader could take a document of: ValueError

    def __repr__(self) -> str:
        return f"<Endpoint {self.role.value} {self.name!r} {fingerprint(self.identity.public_key)}>"

    # -- the message types this endpoint receives, for discovery (§13) ------------------------

    @property
    def receive_types(self) -> tuple[str, ...]:
        """Every type the peer role may send us (§7-2): the discovery document's ``types``."""
        peer = self.role.other.value
        return tuple(t for t, cls in MESSAGE_TYPES.items() if cls.SENT_BY in ("either", peer))

    def discovery(self) -> tuple[bytes, str]:
        """The signed discovery document and its ``Vrm-Signature`` value (§13.1), cached and
        re-signed once half its lifetime has passed."""
        now = self.clock()
        cached = self._discovery
        if cached is None or now - cached[0] >= self.discovery_lifetime_ms // 2 or now < cached[0]:
            body, sig = build_discovery(
                self.identity,
                name=self.name,
                role=self.role.value,
                now=now,
                limits=self.limits,
                types=self.receive_types,
                accepts_terms=self.policy.accepts_terms,
                inbox=self.inbox_path,
                history=self.history_path,
                lifetime_ms=self.discovery_lifetime_ms,
            )
            cached = self._discovery = (now, body, sig)
        return cached[1], cached[2]

    # -- hooks (§12.12) -----------------------------------------------------------------------

    def subscribe(self, hook: Hook) -> Callable[[], None]:
        """Call ``await hook(event)`` after every accepted message is committed; returns an
        unsubscribe function. A hook runs as its own task: a slow or failing hook never delays
        or fails a receipt; its exceptions are logged."""
        self._hooks.append(hook)
        return lambda: self._hooks.remove(hook) if hook in self._hooks else None

    def _listen(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` right after each accepted message is committed, in the step itself
        (no task, unlike :meth:`subscribe`): for the library's own cheap, non-failing wake-ups,
        such as the event feed's readers (``_events.Wakeup``). Returns an unsubscribe
        function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _fire(self, event: Event) -> None:
        for listener in self._listeners:
            listener()
        hooks = self._hooks
        if type(self.policy).on_message is not ReferencePolicy.on_message:  # that one is a no-op
            hooks = [self.policy.on_message, *hooks]
        for hook in hooks:
            task = asyncio.get_running_loop().create_task(self._run_hook(hook, event))
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    @staticmethod
    async def _run_hook(hook: Hook, event: Event) -> None:
        try:
            await hook(event)
        except Exception:
            log.exception("hook %r failed on %s %s", hook, event.kind, event.message.hash.hex())

    def events(self, after: int | str = 0) -> AsyncGenerator[FeedEvent, None]:
        """The vendor's event feed (docs/events.md): every event after ``after`` (a feed
        position, or an event id), in order, then each one as it is committed."""
        return _events.follow(self.store, _events.wakeup_of(self), after, clock=self.clock)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait for every hook task started so far (for shutdown and tests); with
        ``timeout_s``, at most that long, then cancel those still running (§12.12)."""
        await drain_tasks(self._hook_tasks, timeout_s)

    async def purge(self) -> int:
        """Drop replay records past their ``replay_window_ms`` (§12.6-1) and the relationships
        that never reached an agreement and had no message for ``open_relationship_ttl_ms``
        (§11.8-3); returns how many records and relationships went. The app built by
        :func:`~vrmproto.server.make_app` calls this periodically."""
        now = self.clock()
        return await self.store.purge_dedupe(now) + await self.expire_unagreed(now)

    async def expire_unagreed(self, now: int | None = None) -> int:
        """Delete every relationship that never reached an agreement and whose last message is
        older than ``open_relationship_ttl_ms``, with its history and held data (§11.8-3);
        returns how many. Its replay records stay until their window ends (§10-5), so that a
        replay of its first message is still answered from the record and opens nothing."""
        if self.role is not Role.VENDOR:
            return 0
        return await _expiry.expire_unagreed(self, self.clock() if now is None else now)

    async def expire_shares(self) -> int:
        """Delete the held data of every share past its expiry and erase the share's body from
        the history, with those of the address.updates after it (§5.3.1-4, §12.10-4); returns
        how many shares' bodies were erased. The app calls
        this periodically, and before every history export of the thread concerned."""
        if self.role is not Role.VENDOR:
            return 0
        return await _expiry.expire_shares(self)

    def identity_of(self, record: RelationshipRecord) -> Identity:
        """Our key in the relationship ``record`` (``identity_for``, or the one identity)."""
        return self._identity_for(record) if self._identity_for else self.identity

    # -- problems (§12.3-4, §12.4) ------------------------------------------------------------

    def problem(
        self,
        code: Problem,
        detail: str,
        *,
        clause: str = "",
        path: str = "",
        identity: Identity | None = None,
        to: bytes | None = None,
        thread: bytes | None = None,
        ref: bytes | None = None,
        retry_after: int | None = None,
        error: ProtocolError | None = None,
    ) -> Response:
        """A signed problem response with the status of ``code`` (§12.3-4, §12.4-1)."""
        now = self.clock()
        kw: dict[str, Any] = {
            "identity": identity or self.identity,
            "now": now,
            "msg_id": self.random_id(),
            "to": to,
            "thread": thread or _ZERO_THREAD,
            "ref": ref,
        }
        if code in (Problem.CLOCK_SKEW, Problem.EXPIRED):
            kw["server_time"] = now
        if code is Problem.UNSUPPORTED_VERSION:
            kw["supported_versions"] = SUPPORTED_VERSIONS
        headers = {"Content-Type": CONTENT_TYPE}
        if retry_after is not None:
            kw["retry_after"] = min(retry_after, 86_400)
            headers["Retry-After"] = str(kw["retry_after"])
        if error is not None:
            msg = problem_for(error, **kw)
        else:
            msg = sign_problem(code, detail, clause=clause, path=path, **kw)
        return Response(code.status, msg.envelope, headers)

    def _refuse(self, error: ProtocolError, peek: Peek, identity: Identity | None = None) -> (
        Response
    ):
        """The signed problem refusing a request for ``error`` (§12.3-4)."""
        if peek.kind == ProblemReport.TYPE:  # a problem is never answered with one (§12.3-5)
            return Response(error.code.status, b"")
        return self.problem(
            error.code, error.detail, error=error, identity=identity,
            to=peek.sender, thread=peek.thread, ref=peek.ref,
        )  # fmt: skip

    def check_address(self, client: str) -> Response | None:
        """The per-address rate limit, checked before a body is read (§12.9-5, §12.9-6); an
        IPv6 address counts as its /64 (§10-7, :func:`address_key`)."""
        return self._address_refusal(self.address_limit.take(address_key(client)))

    async def acheck_address(self, client: str) -> Response | None:
        """:meth:`check_address`, with a limiter that may be shared by processes (§12.9-8)."""
        limit = self.address_limit
        if type(limit) is RateLimiter:  # in memory: no awaitable around it (one per request)
            return self._address_refusal(limit.take(address_key(client)))
        return self._address_refusal(await limit.atake(address_key(client)))

    async def charge_address(self, client: str) -> None:
        """Take one more of the address's requests (a replayed message or history request
        pays for the work it cost, §12.9-6), counted as :meth:`check_address` counts it."""
        await self.address_limit.acharge(address_key(client))

    def _address_refusal(self, wait: int) -> Response | None:
        if not wait:
            return None
        return self.problem(
            Problem.RATE_LIMITED, "too many requests from this address", clause="§12.9-5",
            retry_after=wait,
        )  # fmt: skip

    # -- the inbox (§12.2, §12.3) -------------------------------------------------------------

    async def handle_inbox(self, data: bytes, *, client: str = "") -> Response:
        """Answer one posted envelope (§12.3). Never raises; 500 only for our own failures —
        a ``CancelledError`` that no cancellation of this request raised (a future a store's
        driver cancelled elsewhere) among them; a request really cancelled is cancelled."""
        try:
            return await self._inbox(data, client)
        except Exception:
            log.exception("inbox: unexpected failure (client %s)", client)
        except asyncio.CancelledError:
            if cancelling():
                raise
            log.exception("inbox: unexpected failure (client %s)", client)
        return self.problem(Problem.INTERNAL, "the receiver failed; the message was not stored")

    def _sender_refusal(self, wait: int, peek: Peek) -> Response:
        """A message over its sender's rate limit (§12.9-5)."""
        if peek.kind == ProblemReport.TYPE:  # §12.3-5
            return Response(Problem.RATE_LIMITED.status, b"", {"Retry-After": str(wait)})
        return self.problem(
            Problem.RATE_LIMITED, "too many messages from this key", clause="§12.9-5",
            retry_after=wait, to=peek.sender, thread=peek.thread, ref=peek.ref,
        )  # fmt: skip

    async def _inbox(self, data: bytes, client: str) -> Response:
        sender = peek_sender(data, self.limits)  # the rest of the peek only for a refusal
        limit = self.sender_limit
        local = type(limit) is RateLimiter  # in memory: no awaitable around it (per message)
        if sender is not None:
            wait = limit.retry_after(sender) if local else await limit.aretry_after(sender)
            if wait:
                return self._sender_refusal(wait, read_peek(data, self.limits))
        now = self.clock()
        try:
            msg = open_envelope(data, now=now, recipients=self._recipients, limits=self.limits)
        except ProtocolError as exc:
            return self._refuse(exc, read_peek(data, self.limits))
        # Only a verified message the receiver stores as new counts against its sender; a replay
        # counts against the address it came from (§12.9-6). The token is taken now, so that
        # concurrent messages see it, and given back when nothing new was stored. It is taken
        # only if it is there: where the limit is shared by processes (§12.9-8), messages of
        # the sender checked at once elsewhere may have taken the last ones since the check.
        wait = limit.take(msg.sender) if local else await limit.atake(msg.sender)
        if wait:
            return self._sender_refusal(wait, Peek(msg.sender, msg.thread, msg.hash, msg.type))
        outcome = Outcome.REFUSED
        try:
            if msg.type == ProblemReport.TYPE:
                return await self._peer_problem(msg)
            response, outcome = await self._deliver(msg, now, client)
            return response
        finally:
            if outcome is not Outcome.STORED:
                await self.sender_limit.arefund(msg.sender)
            if outcome is Outcome.REPLAYED and client:
                await self.charge_address(client)

    async def _deliver(
        self, msg: Signed[Any], now: int, client: str
    ) -> tuple[Response, Outcome]:
        """The response to a verified message, and what this delivery did with it."""
        key = (msg.sender, msg.id)
        waiters = self._inflight.get(key)
        if waiters is not None:  # an identical or conflicting request is being handled (§12.6-4)
            waiter: asyncio.Future[tuple[bytes, Response]] = (
                asyncio.get_running_loop().create_future()
            )
            waiters.append(waiter)
            msg_hash, response = await waiter
            if msg_hash != msg.hash:
                return self._id_conflict(msg), Outcome.REFUSED
            return response, Outcome.REPLAYED
        waiters = self._inflight[key] = []  # a future only for each request that waits
        outcome: tuple[Response, Outcome] | None = None
        try:
            outcome = await _accept.accept(self, msg, now, client)
        finally:
            del self._inflight[key]
            if waiters:
                result = (msg.hash, outcome[0] if outcome else self.problem(
                    Problem.INTERNAL, "the receiver failed; nothing was stored"))
                for waiter in waiters:
                    if not waiter.done():  # a waiter cancelled meanwhile needs no answer
                        waiter.set_result(result)
        return outcome

    def _id_conflict(self, msg: Signed[Any]) -> Response:
        return self.problem(
            Problem.ID_CONFLICT, "this sender already used this message id for another message",
            clause="§12.6-3", path="$.hdr.id", to=msg.sender, thread=msg.thread, ref=msg.hash,
        )  # fmt: skip

    def _replay(self, stored: DedupeRecord, msg: Signed[Any]) -> tuple[Response, Outcome]:
        """The stored answer to a message seen before (§12.6-2), or id_conflict (§12.6-3)."""
        if stored.msg_hash != msg.hash:
            return self._id_conflict(msg), Outcome.REFUSED
        return stored_answer(stored), Outcome.REPLAYED

    async def _peer_problem(self, msg: Signed[ProblemReport]) -> Response:
        """A problem is outside every chain: no receipt, no history; hooks hear of it when it
        comes from the thread's peer (§12.3-3). When it finally refuses one of our replies that
        nothing has followed yet, that reply never joined the relationship: it is dropped from
        our history and the state before it restored (§8.1-5)."""
        async with self._threads.hold(msg.thread):
            record = await self.store.get_relationship(msg.thread)
            if record is None or record.peer_key != msg.sender:
                return Response(NO_CONTENT, b"")
            problem = Problem.from_wire(msg.body.code)
            if msg.body.ref is not None and problem not in _RETRYABLE:
                self._warm.drop(msg.thread)  # whatever the rollback writes, rebuild from it
                await roll_back(self, record, msg.body.ref)
            self._fire(Event(msg.type, msg.thread, msg))
        return Response(NO_CONTENT, b"")

    # -- the history export (§12.5) -----------------------------------------------------------

    async def handle_history(self, data: bytes, *, client: str = "") -> Response:
        """Answer a signed history request with one page of the thread's history (§12.5)."""
        try:
            return await _export.export(self, data, client)
        except Exception:
            log.exception("history: unexpected failure (client %s)", client)
        except asyncio.CancelledError:
            if cancelling():
                raise
            log.exception("history: unexpected failure (client %s)", client)
        return self.problem(Problem.INTERNAL, "the receiver failed")
