"""The endpoint engine: one durable protocol step per incoming message (spec §12).

:class:`Endpoint` is the server without HTTP: it takes the bytes of a request and returns a
:class:`Response` (status, body, headers). The aiohttp layer (``_app.py``) only reads bodies
under limits and copies responses out, so everything the spec requires of a receiver — the order
of checks, de-duplication, per-thread ordering, "receipt only after commit", the signed problem
for every refusal — is here and is tested without a socket.

One inbox step (§12.3, §12.6, §12.7)::

    peek header ─ sender rate check ─ open_envelope (verify) ─ charge sender
      ─ coalesce with an identical in-flight request ─ per-thread lock ─ load relationship
      ─ admit a first contact (§11.8-2) ─ receive ─ storage budget (§11.8-4)
      ─ policy replies ─ send receipt, then replies
      ─ ONE store Commit (relationship, history, dedupe + exact response, held data, erasures)
      ─ 200 ─ hooks (as tasks, after the commit)
      ─ the sender's token given back unless the message was stored as new (§12.9-6)

A replay is recognised without a read before every message: it cannot pass ``receive`` (its
``prev`` no longer links) nor commit (its dedupe key is taken), and both of those paths look up
the stored response before answering (§12.6-2).

Error contract: every input gets a :class:`Response`; a refusal is a signed ``problem`` with the
status of its code. Only a failure of our own (a store that is down, a bug) gives 500
``internal_error``, and the hostile-input tests hold the engine to that.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack

from vrmproto import _codec
from vrmproto._binding import (
    CONTENT_TYPE,
    DEFAULT_HISTORY_PATH,
    DEFAULT_INBOX_PATH,
    build_discovery,
    encode_history,
    encode_replies,
    open_history_request,
)
from vrmproto._envelope import SUPPORTED_VERSIONS, Signed, open_envelope, unknown_body_bytes
from vrmproto._errors import RETRYABLE, Problem, ProtocolError, ValidationError
from vrmproto._history import Entry, History
from vrmproto._keys import ID_BYTES, KEY_BYTES, SIG_BYTES, Identity, fingerprint, sha256
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._messages import (
    MESSAGE_TYPES,
    AddressUpdate,
    Body,
    DataErased,
    DataRequest,
    DataReturn,
    DataShare,
    DataWithdraw,
    FieldsContent,
    Intentcast,
    ProblemReport,
    Receipt,
    RecordsContent,
    TermsOffer,
)
from vrmproto._relationship import Relationship, Sent, problem_for, sign_problem
from vrmproto._state import Role, State
from vrmproto._vocab import DATA_FORMAT, DataRecord
from vrmproto.server._admission import Admission, Refusal, StorageBudget, Ticket
from vrmproto.server._held import (
    HeldRecord,
    decode_held,
    encode_held,
    held_key,
    merge_fields,
    without,
)
from vrmproto.server._policy import Event, Policy, ReferencePolicy
from vrmproto.server._ratelimit import RateLimiter
from vrmproto.store import Commit, DedupeRecord, HistoryEntry, RelationshipRecord, Store
from vrmproto.store import StoreConflict as _StoreConflict

__all__ = ["JSON_TYPE", "NO_CONTENT", "Endpoint", "Hook", "Response"]

log = logging.getLogger("vrmproto.server")

JSON_TYPE = "application/json"
NO_CONTENT = 204
_ZERO_THREAD = bytes(ID_BYTES)
_OPENING_TYPES = frozenset({TermsOffer.TYPE, Intentcast.TYPE})
#: States a relationship can be in only while it has never reached an agreement (§7.2).
_NEVER_AGREED = frozenset(s.value for s in (
    State.OFFERED, State.REJECTED, State.COUNTERED,
    State.INTENT_OPEN, State.INTENT_ANSWERED, State.INTENT_DECLINED,
))  # fmt: skip
#: States of a negotiation still waiting on someone: what counts against a prefix's
#: open_relationships_per_address (§10-17). A settled one (agreed, rejected, declined, ended)
#: does not; one that never agreed still expires (§11.8-3).
_LIVE = frozenset({State.OFFERED, State.COUNTERED, State.INTENT_OPEN, State.INTENT_ANSWERED})
#: Messages that answer nothing and are owed no receipt: 204 (§12.3-3).
_UNACKNOWLEDGED = frozenset({Receipt.TYPE, ProblemReport.TYPE})
#: Problems after which the same message may be accepted later: they refuse nothing for good.
#: A code this version does not know is final (§9.1-8).
_RETRYABLE: frozenset[Problem | None] = frozenset(RETRYABLE)


class _Outcome(enum.Enum):
    """What one delivery of a verified message did: what it counts against (§12.9-6)."""

    STORED = "stored"  # applied and stored as new: the sender's allowance
    REPLAYED = "replayed"  # answered from the replay record: the client address's
    REFUSED = "refused"  # refused: neither (the request itself counted against the address)


_STORED, _REPLAYED, _REFUSED = _Outcome.STORED, _Outcome.REPLAYED, _Outcome.REFUSED
#: Levels of :meth:`Endpoint._room` (§11.8-4): no relationship is opened; nothing is stored.
_NO_NEW, _FULL = 1, 2


def _rollback_key(thread: bytes) -> str:
    """Store meta key: the state before our last replies in ``thread`` (§8.1-5)."""
    return f"rollback:{thread.hex()}"
#: Largest history export page, in envelope bytes (§12.5-5); at least one entry is always sent.
HISTORY_PAGE_BYTES = 8 * 1024 * 1024
HISTORY_PAGE_ENTRIES = 1000
#: Most history requests remembered to tell a replay from a new request (§12.9-6).
HISTORY_NONCES = 100_000

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


@dataclass(frozen=True, slots=True)
class Response:
    """What the HTTP layer sends back: a status, the exact body bytes and headers."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Peek:
    """What could be read from a request before verifying it (nothing here is trusted)."""

    sender: bytes | None = None
    thread: bytes | None = None
    ref: bytes | None = None
    kind: str | None = None


def _peek(data: bytes) -> _Peek:
    """The claimed sender, thread and hash of an envelope, or as much of them as decode.

    A lenient, fast look for the rate limit and for addressing a problem; never trusted, and
    anything that fails here fails again, properly, in open_envelope.
    """
    try:
        env = msgpack.unpackb(data, raw=False)
        hdr = env.get("hdr") if type(env) is dict else None
        if type(hdr) is not bytes:
            return _Peek()
        fields = msgpack.unpackb(hdr, raw=False)
    except Exception:
        return _Peek()
    if type(fields) is not dict:
        return _Peek(ref=sha256(hdr))
    sender, thread, kind = fields.get("from"), fields.get("thread"), fields.get("type")
    return _Peek(
        sender if type(sender) is bytes and len(sender) == KEY_BYTES else None,
        thread if type(thread) is bytes and len(thread) == ID_BYTES else None,
        sha256(hdr),
        kind if type(kind) is str else None,
    )


def _signed_request(data: bytes) -> tuple[bytes, bytes | None] | None:
    """``(req bytes, thread or None)`` if ``data`` has the shape of a signed request (§12.5-1),
    else None; nothing here is verified yet."""
    try:
        outer = _codec.decode(data, max_depth=1)
    except ProtocolError:
        return None
    if type(outer) is not dict or outer.keys() != {"req", "sig"}:
        return None
    req, sig = outer["req"], outer["sig"]
    if type(req) is not bytes or type(sig) is not bytes or len(sig) != SIG_BYTES:
        return None
    try:
        fields = _codec.decode(req, max_depth=1)
    except ProtocolError:
        return req, None
    thread = fields.get("thread") if type(fields) is dict else None
    return req, thread if type(thread) is bytes and len(thread) == ID_BYTES else None


def _stored_message(envelope: bytes) -> Signed[Any]:
    """A message from our own history, opened without the time window (erased ones too)."""
    limits = Limits(max_envelope_bytes=max(len(envelope), 1))
    return open_envelope(envelope, now=0, check_time=False, allow_erased=True, limits=limits)


SharedLock = Callable[[bytes], AbstractAsyncContextManager[None]]


class _KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it (§12.8-1); with
    ``shared``, also the lock it names for the key, taken inside the asyncio one (§11.11-2)."""

    def __init__(self, shared: SharedLock | None = None) -> None:
        self._locks: dict[bytes, tuple[asyncio.Lock, int]] = {}
        self._shared = shared

    def hold(self, key: bytes) -> _Hold:
        """``async with locks.hold(key):`` — the key's lock, held for the block."""
        return _Hold(self._locks, key, self._shared)

    def __len__(self) -> int:
        return len(self._locks)


class _Hold:
    """The async context manager of :meth:`_KeyedLocks.hold` (a plain class: cheaper per
    message than an async generator)."""

    __slots__ = ("_held", "_key", "_lock", "_locks", "_shared")

    def __init__(self, locks: dict[bytes, tuple[asyncio.Lock, int]], key: bytes,
                 shared: SharedLock | None) -> None:  # fmt: skip
        self._locks = locks
        self._key = key
        self._shared = shared
        self._held: AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> None:
        locks, key = self._locks, self._key
        lock, users = locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        locks[key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._leave()
            raise
        self._lock = lock
        if self._shared is not None:
            held = self._shared(key)
            try:
                await held.__aenter__()
            except BaseException:
                lock.release()
                self._leave()
                raise
            self._held = held

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._held is not None:
                await self._held.__aexit__(None, None, None)
        finally:
            self._lock.release()
            self._leave()

    def _leave(self) -> None:
        locks, key = self._locks, self._key
        lock, users = locks[key]
        if users == 1:
            del locks[key]
        else:
            locks[key] = (lock, users - 1)


class _Step:
    """What one accepted message produced, before it is committed."""

    __slots__ = ("erase", "event", "held", "rel", "replies", "rollback", "state")

    def __init__(self, rel: Relationship, event: Event) -> None:
        self.rel = rel
        self.event = event
        self.replies: list[Sent] = []
        self.held: list[HeldRecord] | None = None  # None: unchanged
        self.erase: list[tuple[bytes, bytes, bytes]] = []
        self.rollback: bytes | None = None
        self.state: bytes | None = None  # rel.to_state(), when already computed


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
        self._room_checked: tuple[int, int] | None = None  # (ms, level of :meth:`_room`)
        # (sender, id) -> futures of identical requests waiting for the one being handled
        self._inflight: dict[tuple[bytes, bytes], list[asyncio.Future[tuple[bytes, Response]]]]
        self._inflight = {}
        self._threads = _KeyedLocks(thread_lock)
        self._hooks: list[Hook] = []
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._discovery: tuple[int, bytes, str] | None = None
        self._history_nonces: OrderedDict[tuple[bytes, bytes], int] = OrderedDict()

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

    def _fire(self, event: Event) -> None:
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

    async def drain(self) -> None:
        """Wait for every hook task started so far (for shutdown and tests)."""
        while self._hook_tasks:
            await asyncio.gather(*self._hook_tasks, return_exceptions=True)

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
        now = self.clock() if now is None else now
        cutoff = now - self.limits.open_relationship_ttl_ms
        expired = 0
        for record in await self.store.relationships():
            if record.role != Role.VENDOR.value or record.updated_ms >= cutoff:
                continue
            if record.state == State.AGREED.value:
                self.admission.close(record.thread)
                continue
            async with self._threads.hold(record.thread):
                fresh = await self.store.get_relationship(record.thread)
                if fresh is None or fresh.updated_ms >= cutoff:
                    continue
                if self._ever_agreed(fresh):
                    self.admission.close(fresh.thread)  # agreed since, outside an inbox step
                    continue
                thread = fresh.thread
                await self.store.commit(Commit(
                    drop=(thread,), unset=(held_key(thread), _rollback_key(thread)),
                ))  # fmt: skip
            self.admission.close(thread)
            expired += 1
        if expired:
            log.info("expired %d relationships that never reached an agreement", expired)
        return expired

    def _ever_agreed(self, record: RelationshipRecord) -> bool:
        """Whether the relationship holds, or held, an agreement: only ``agreed`` and ``ended``
        can follow one (§7.2), and an ended one tells by its agreement id."""
        if record.state in _NEVER_AGREED:
            return False
        if record.state != State.ENDED.value:
            return True
        identity = self._identity_for(record) if self._identity_for else self.identity
        rel = Relationship.from_state(record.data, identity=identity, limits=self.limits)
        return rel.agreement is not None

    async def expire_shares(self) -> int:
        """Delete the held data of every share past its expiry and erase the share's body from
        the history (§5.3.1-4, §12.10-4); returns how many bodies were erased. The app calls
        this periodically, and before every history export of the thread concerned."""
        if self.role is not Role.VENDOR:
            return 0
        erased = 0
        for record in await self.store.relationships():
            erased += await self._expire(record)
        return erased

    async def _expire(self, record: RelationshipRecord) -> int:
        if record.role != Role.VENDOR.value:
            return 0
        now = self.clock()
        async with self._threads.hold(record.thread):
            fresh = await self.store.get_relationship(record.thread)
            if fresh is None:  # pragma: no cover - records are never deleted
                return 0
            identity = self._identity_for(fresh) if self._identity_for else self.identity
            rel = Relationship.from_state(fresh.data, identity=identity, limits=self.limits)
            expired = {h for h, expires in rel.shares.items() if expires <= now}
            if not expired:
                return 0
            held = await self._held(record.thread)
            kept = without(held, expired)
            erase = []
            for share_hash in sorted(expired):
                entry = await self.store.history_entry(record.thread, share_hash)
                if entry is not None:
                    msg = _stored_message(entry.envelope)
                    if not msg.erased:
                        erase.append((record.thread, share_hash, msg.without_body().envelope))
            if not erase and len(kept) == len(held):
                return 0
            await self.store.commit(Commit(
                meta=((held_key(record.thread), encode_held(kept)),), erase=tuple(erase)
            ))  # fmt: skip
            return len(erase)

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

    def _refuse(self, error: ProtocolError, peek: _Peek, identity: Identity | None = None) -> (
        Response
    ):
        if peek.kind == ProblemReport.TYPE:  # a problem is never answered with one (§12.3-5)
            return Response(error.code.status, b"")
        return self.problem(
            error.code, error.detail, error=error, identity=identity,
            to=peek.sender, thread=peek.thread, ref=peek.ref,
        )  # fmt: skip

    def check_address(self, client: str) -> Response | None:
        """The per-address rate limit, checked before a body is read (§12.9-5, §12.9-6)."""
        wait = self.address_limit.take(client)
        if not wait:
            return None
        return self.problem(
            Problem.RATE_LIMITED, "too many requests from this address", clause="§12.9-5",
            retry_after=wait,
        )  # fmt: skip

    # -- the inbox (§12.2, §12.3) -------------------------------------------------------------

    async def handle_inbox(self, data: bytes, *, client: str = "") -> Response:
        """Answer one posted envelope (§12.3). Never raises; 500 only for our own failures."""
        try:
            return await self._inbox(data, client)
        except Exception:
            log.exception("inbox: unexpected failure (client %s)", client)
            return self.problem(Problem.INTERNAL, "the receiver failed; the message was not stored")

    async def _inbox(self, data: bytes, client: str) -> Response:
        peek = _peek(data)
        if peek.sender is not None:
            wait = self.sender_limit.retry_after(peek.sender)
            if wait and peek.kind == ProblemReport.TYPE:  # §12.3-5
                return Response(Problem.RATE_LIMITED.status, b"", {"Retry-After": str(wait)})
            if wait:
                return self.problem(
                    Problem.RATE_LIMITED, "too many messages from this key", clause="§12.9-5",
                    retry_after=wait, to=peek.sender, thread=peek.thread, ref=peek.ref,
                )  # fmt: skip
        now = self.clock()
        try:
            msg = open_envelope(data, now=now, recipients=self._recipients, limits=self.limits)
        except ProtocolError as exc:
            return self._refuse(exc, peek)
        # Only a verified message the receiver stores as new counts against its sender; a replay
        # counts against the address it came from (§12.9-6). The token is taken now, so that
        # concurrent messages see it, and given back when nothing new was stored.
        self.sender_limit.charge(msg.sender)
        outcome = _REFUSED
        try:
            if msg.type == ProblemReport.TYPE:
                return await self._peer_problem(msg)
            response, outcome = await self._deliver(msg, now, client)
            return response
        finally:
            if outcome is not _STORED:
                self.sender_limit.refund(msg.sender)
            if outcome is _REPLAYED and client:
                self.address_limit.charge(client)

    async def _deliver(
        self, msg: Signed[Any], now: int, client: str
    ) -> tuple[Response, _Outcome]:
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
                return self._id_conflict(msg), _REFUSED
            return response, _REPLAYED
        waiters = self._inflight[key] = []  # a future only for each request that waits
        outcome: tuple[Response, _Outcome] | None = None
        try:
            outcome = await self._accept(msg, now, client)
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

    def _replay(self, stored: DedupeRecord, msg: Signed[Any]) -> tuple[Response, _Outcome]:
        """The stored answer to a message seen before (§12.6-2), or id_conflict (§12.6-3)."""
        if stored.msg_hash != msg.hash:
            return self._id_conflict(msg), _REFUSED
        if not stored.response:
            return Response(NO_CONTENT, b""), _REPLAYED
        return Response(200, stored.response, {"Content-Type": CONTENT_TYPE}), _REPLAYED

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
                await self._roll_back(record, msg.body.ref)
            self._fire(Event(msg.type, msg.thread, msg))
        return Response(NO_CONTENT, b"")

    async def _roll_back(self, record: RelationshipRecord, ref: bytes) -> None:
        raw = await self.store.get_meta(_rollback_key(record.thread))
        if not raw:
            return
        hashes, length, _head, state, after = _codec.decode_form(raw)
        latest = await self.store.history_head(record.thread)
        if ref not in hashes or latest is None or latest.index + 1 != after:
            return  # not one of our last replies, or the relationship moved on since
        restored = replace(record, state=Relationship.from_state(
            state, identity=self.identity if self._identity_for is None
            else self._identity_for(record)).state.value, data=state, updated_ms=self.clock())
        await self.store.commit(Commit(
            relationships=(restored,),
            truncate=((record.thread, length),),
            meta=((_rollback_key(record.thread), b""),),
        ))

    async def _accept(
        self, msg: Signed[Any], now: int, client: str = ""
    ) -> tuple[Response, _Outcome]:
        """Run the step under the thread's lock; after a store conflict, again from what is
        stored (§12.7-4). A replay is found by the store's uniqueness rules, not by a read
        before every message: a stored message can never be applied twice (its ``prev`` no
        longer links, and its dedupe key and history slot are taken), and every such refusal
        looks up the stored response before answering (§12.6-2)."""
        # A message that opens a relationship is first tried without reading the store: if the
        # thread exists after all, the commit conflicts on history slot 0 and we start over.
        optimistic = (
            self.role is Role.VENDOR and msg.type in _OPENING_TYPES and msg.header.prev is None
        )
        attempts = 3 if optimistic else 2
        async with self._threads.hold(msg.thread):  # one step at a time per thread (§12.8-1)
            for attempt in range(1, attempts + 1):
                try:
                    return await self._step(
                        msg, now, fresh=optimistic and attempt == 1, client=client
                    )
                except _StoreConflict:
                    if attempt == attempts:
                        raise
                    log.debug("store conflict on thread %s; retrying", msg.thread.hex())
                stored = await self.store.get_dedupe(msg.sender, msg.id)
                if stored is not None:
                    return self._replay(stored, msg)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- one protocol step --------------------------------------------------------------------

    async def _load(self, msg: Signed[Any], record: RelationshipRecord | None) -> Relationship:
        """The relationship ``msg`` belongs to, as stored (or a new one it opens)."""
        if record is None or record.role != self.role.value:
            if record is not None or self.role is Role.CUSTOMER or msg.type not in _OPENING_TYPES:
                raise ValidationError(
                    "there is no relationship with this thread id here",
                    code=Problem.NO_RELATIONSHIP, clause="§12.11-1" if self.role is Role.CUSTOMER
                    else "§12.2-6", path="$.hdr.thread",
                )  # fmt: skip
            return Relationship(
                role=self.role, identity=self.identity, thread=msg.thread, limits=self.limits
            )
        identity = self._identity_for(record) if self._identity_for else self.identity
        if msg.recipient != identity.public_key:
            raise ValidationError(
                "this message is addressed to another key than ours in this relationship",
                code=Problem.WRONG_RECIPIENT, clause="§4.5-2", path="$.hdr.to",
            )  # fmt: skip
        head = await self.store.history_head(msg.thread)
        history = History.resume(head.index + 1, head.entry_hash) if head else History()
        return Relationship.from_state(
            record.data, identity=identity, history=history, limits=self.limits
        )

    async def _step(
        self, msg: Signed[Any], now: int, *, fresh: bool, client: str = ""
    ) -> tuple[Response, _Outcome]:
        """One protocol step; ``fresh``: assume the thread is new (see :meth:`_accept`).
        ``client``: the address the message came from, for first-contact admission (§11.8-2);
        "" (unknown) admits without per-address budgets."""
        record = None if fresh else await self.store.get_relationship(msg.thread)
        rel: Relationship | None = None
        ticket: Ticket | None = None
        try:
            rel = await self._load(msg, record)
            if self.role is Role.VENDOR:
                admitted = await self._admit(msg, record, rel, client, fresh=fresh)
                if isinstance(admitted, tuple):
                    return admitted
                ticket = admitted
            received = rel.receive(msg, now=now)
            if self.storage is not None and await self._room() >= _FULL:
                if ticket is not None:
                    ticket.cancel()
                return self.problem(
                    Problem.STORAGE_FULL, "the receiver has no room to store this message now",
                    clause="§11.8-4", retry_after=self.storage.retry_after_s, to=msg.sender,
                    thread=msg.thread, ref=msg.hash,
                ), _REFUSED  # fmt: skip
            step = _Step(rel, Event(msg.type, msg.thread, msg, received.content))
            await self._take_data(step, msg, received.content, now)
        except ProtocolError as exc:
            if ticket is not None:
                ticket.cancel()
            stored = await self.store.get_dedupe(msg.sender, msg.id)
            if stored is not None:  # a replay: the stored answer, not a refusal (§12.6-2)
                return self._replay(stored, msg)
            if fresh and await self.store.get_relationship(msg.thread) is not None:
                raise _StoreConflict("a held thread: steps 23-29 of §4.5-1 first") from None
            return self._refuse(
                exc, _Peek(msg.sender, msg.thread, msg.hash), rel.identity if rel else None
            ), _REFUSED
        try:
            response = await self._respond(step, msg, record, now)
        except BaseException:
            if ticket is not None:
                ticket.cancel()
            raise
        if rel.state not in _LIVE:
            self.admission.close(msg.thread)  # settled: no longer an open negotiation (§10-17)
        self._fire(step.event)  # after the commit, never before (§12.7-1)
        return response, _STORED

    async def _respond(
        self, step: _Step, msg: Signed[Any], record: RelationshipRecord | None, now: int
    ) -> Response:
        """Receipt and replies for an accepted message, committed with it (§12.3, §12.7-1)."""
        rel = step.rel
        if msg.type in _UNACKNOWLEDGED:
            response = Response(NO_CONTENT, b"")
        else:
            receipt = rel.send(msg.receipt(), now=now, msg_id=self.random_id())
            point = (len(rel.history), rel.history.head, rel.to_state())
            await self._reply(step, msg, now)
            if step.replies:  # what to return to if the peer refuses a reply (§8.1-5)
                step.rollback = _codec.encode([
                    [s.message.hash for s in step.replies], *point, len(rel.history),
                ])
            else:
                step.state = point[2]  # nothing changed since: the state to store
            envelopes = [receipt.message.envelope, *(s.message.envelope for s in step.replies)]
            response = Response(200, encode_replies(envelopes), {"Content-Type": CONTENT_TYPE})
        await self.store.commit(self._commit(step, msg, record, response, now))
        return response

    # -- admission of first contact (§11.8-2) and the storage budget (§11.8-4) ---------------

    async def _room(self) -> int:
        """0 while the store is within its budget, ``_NO_NEW`` once no relationship may be
        opened, ``_FULL`` once nothing more may be stored (§11.8-4); measured at most every
        ``storage.check_every_ms``."""
        budget = self.storage
        if budget is None:
            return 0
        now = self.clock()
        checked = self._room_checked
        if checked is not None and 0 <= now - checked[0] < budget.check_every_ms:
            return checked[1]
        usage = await self.store.usage()
        free = usage.free_bytes if usage.free_bytes is not None else budget.min_free_bytes
        level = 0
        if free < budget.reserve_free_bytes:
            level = _FULL
        elif free < budget.min_free_bytes or (
            budget.max_store_bytes is not None and usage.stored_bytes >= budget.max_store_bytes
        ):
            level = _NO_NEW
        if level and (checked is None or checked[1] != level):
            log.warning("storage budget: %s (store %d bytes, %s bytes free)",
                        "nothing more is stored" if level == _FULL else "no new relationships",
                        usage.stored_bytes, usage.free_bytes)  # fmt: skip
        self._room_checked = (now, level)
        return level

    def _large(self, msg: Signed[Any]) -> bool:
        """Whether a first-contact message is over the size limits of §10-13 and §10-14."""
        limits = self.limits
        if len(msg.envelope) > limits.max_first_contact_bytes:
            return True
        body = msg.body_bytes or b""
        return len(body) > limits.max_unknown_body_bytes and (
            unknown_body_bytes(msg) > limits.max_unknown_body_bytes
        )

    async def _admit(
        self,
        msg: Signed[Any],
        record: RelationshipRecord | None,
        rel: Relationship,
        client: str,
        *,
        fresh: bool,
    ) -> Ticket | tuple[Response, _Outcome] | None:
        """Admit a first-contact message from ``client`` (§11.8-2): a :class:`Ticket` for what
        it took, None when the message is no first contact, or the refusal to answer with."""
        # a new offer after a rejection opens a negotiation again: it counts as one (§10-17)
        opens = record is None or (
            rel.state is State.REJECTED and isinstance(msg.body, TermsOffer)
        )
        if not opens and (rel.agreement is not None or msg.sender != rel.peer_key):
            return None  # an agreed relationship, or the vendor's own key
        admitted: Ticket | Refusal | None = None
        if opens and self.storage is not None and await self._room() == _NO_NEW:
            admitted = Refusal(
                Problem.RATE_LIMITED,
                "the receiver's storage budget is used up: it opens no relationships now",
                "§11.8-4", retry_after=self.storage.retry_after_s,
            )  # fmt: skip
        elif not client:
            return None  # no address: nothing to count against
        else:
            large = self._large(msg)
            if not opens and not large:
                self.admission.touch(msg.thread)
                return None
            admitted = self.admission.admit(client, msg.thread, opens=opens, large=large)
            if isinstance(admitted, Ticket):
                return admitted
        if opens:  # refused as a first contact: unless it is none (a replay, a known thread)
            stored = await self.store.get_dedupe(msg.sender, msg.id)
            if stored is not None:
                return self._replay(stored, msg)
            if fresh and record is None and await self.store.get_relationship(msg.thread):
                raise _StoreConflict("the thread exists: not a first contact")  # _accept retries
        log.debug("first contact refused (%s, client %s): %s", admitted.code.value, client,
                 admitted.detail)  # fmt: skip
        return self.problem(
            admitted.code, admitted.detail, clause=admitted.clause,
            retry_after=admitted.retry_after, to=msg.sender, thread=msg.thread, ref=msg.hash,
        ), _REFUSED  # fmt: skip

    async def _held(self, thread: bytes) -> list[HeldRecord]:
        return decode_held(await self.store.get_meta(held_key(thread)))

    async def _take_data(
        self,
        step: _Step,
        msg: Signed[Any],
        content: FieldsContent | RecordsContent | None,
        now: int,
    ) -> None:
        """Keep shared fields as held data; delete and erase withdrawn ones (§12.10)."""
        if self.role is not Role.VENDOR:
            return
        body = msg.body
        if isinstance(body, DataShare | AddressUpdate) and isinstance(content, FieldsContent):
            step.held = merge_fields(
                self._live(await self._held(msg.thread), step.rel, now),
                content.fields,
                source_msg=msg.hash,
                now=now,
                categories=body.categories if isinstance(body, DataShare) else None,
                purposes=body.purposes if isinstance(body, DataShare) else None,
            )
        elif isinstance(body, DataWithdraw):
            shares = step.rel.pending_withdraws[msg.hash]
            step.held = without(self._live(await self._held(msg.thread), step.rel, now), shares)
            for share_hash in shares:
                entry = await self.store.history_entry(msg.thread, share_hash)
                if entry is not None:
                    stored = _stored_message(entry.envelope)
                    step.erase.append((msg.thread, share_hash, stored.without_body().envelope))

    @staticmethod
    def _live(held: list[HeldRecord], rel: Relationship, now: int) -> list[HeldRecord]:
        """Held records minus those of shares past their expiry (§12.10-4)."""
        expired = {h for h, expires in rel.shares.items() if expires <= now}
        return without(held, expired) if expired else held

    async def _reply(self, step: _Step, msg: Signed[Any], now: int) -> None:
        """The policy's answers, chained after the receipt (§12.3-2). An answer our own rules
        refuse is logged and dropped: the peer still gets its receipt."""
        rel, body = step.rel, msg.body
        answer: Body | None = None
        try:
            if isinstance(body, TermsOffer):
                answer = await self.policy.on_terms_offer(rel, msg)
            elif isinstance(body, Intentcast):
                if now <= body.reply_by:
                    answer = await self.policy.on_intentcast(rel, msg)
            elif isinstance(body, DataWithdraw):
                answer = DataErased(withdraw=msg.hash, shares=rel.pending_withdraws[msg.hash])
            elif isinstance(body, DataRequest):
                await self._data_return(step, msg, now)
                return
        except Exception:
            log.exception("policy failed on %s %s", msg.type, msg.hash.hex())
            return
        if answer is not None:
            self._send(step, answer, now, self.random_id())

    async def _data_return(self, step: _Step, msg: Signed[DataRequest], now: int) -> None:
        rel = step.rel
        held = [h.record for h in self._live(await self._held(msg.thread), rel, now)]
        extra: Sequence[DataRecord] = await self.policy.on_data_request(rel, msg, held)
        msg_id = self.random_id()
        try:
            sealed = rel.seal(RecordsContent(records=(*held, *extra)), msg_id=msg_id)
            answer = DataReturn(request=msg.hash, format=DATA_FORMAT, sealed=sealed)
        except (ProtocolError, ValueError):
            log.exception("cannot build the data.return for %s", msg.hash.hex())
            return
        self._send(step, answer, now, msg_id)

    @staticmethod
    def _send(step: _Step, body: Body, now: int, msg_id: bytes) -> None:
        try:
            step.replies.append(step.rel.send(body, now=now, msg_id=msg_id))
        except (ProtocolError, ValueError):
            log.exception("dropping a %s reply our own rules refuse", body.TYPE)

    def _commit(
        self,
        step: _Step,
        msg: Signed[Any],
        record: RelationshipRecord | None,
        response: Response,
        now: int,
    ) -> Commit:
        """Everything the step changed, for ONE transaction (§12.7-1)."""
        rel = step.rel
        assert rel.peer_key is not None
        peer_url = record.peer_url if record else ""
        if isinstance(msg.body, TermsOffer) and msg.body.endpoint:
            peer_url = msg.body.endpoint
        rel_record = RelationshipRecord(
            thread=rel.thread,
            role=self.role.value,
            local_key=rel.identity.public_key,
            peer_key=rel.peer_key,
            state=rel.state.value,
            data=step.state if step.state is not None else rel.to_state(),
            label=record.label if record else fingerprint(rel.peer_key),
            peer_url=peer_url,
            updated_ms=now,
        )
        history = tuple(self._history_entry(rel.thread, e, now) for e in rel.history.entries())
        dedupe = DedupeRecord(
            msg.sender, msg.id, msg.hash, response.body, now + self.limits.replay_window_ms
        )
        meta: tuple[tuple[str, bytes], ...] = ()
        if step.held is not None:
            meta = ((held_key(rel.thread), encode_held(step.held)),)
        if step.rollback is not None:
            meta = (*meta, (_rollback_key(rel.thread), step.rollback))
        return Commit(
            relationships=(rel_record,),
            history=history,
            dedupe=(dedupe,),
            erase=tuple(step.erase),
            meta=meta,
        )

    @staticmethod
    def _history_entry(thread: bytes, e: Entry, now: int) -> HistoryEntry:
        return HistoryEntry(
            thread, e.index, e.msg_hash, e.link, e.envelope, "out" if e.outgoing else "in", now
        )

    # -- the history export (§12.5) -----------------------------------------------------------

    def _seen_request(self, sender: bytes, nonce: bytes, now: int) -> bool:
        """Whether this history request was seen before: its ``(sender, nonce)`` is remembered
        for as long as a request is valid (twice ``max_clock_skew_ms``, §12.5-2), and for at
        most :data:`HISTORY_NONCES` requests, so that a replay is counted against the address
        it comes from rather than its sender (§12.9-6)."""
        seen = self._history_nonces
        horizon = now - 2 * self.limits.max_clock_skew_ms
        while seen and (next(iter(seen.values())) < horizon or len(seen) >= HISTORY_NONCES):
            seen.popitem(last=False)
        key = (sender, nonce)
        if key in seen:
            return True
        seen[key] = now
        return False

    async def handle_history(self, data: bytes, *, client: str = "") -> Response:
        """Answer a signed history request with one page of the thread's history (§12.5)."""
        try:
            return await self._history(data, client)
        except Exception:
            log.exception("history: unexpected failure (client %s)", client)
            return self.problem(Problem.INTERNAL, "the receiver failed")

    async def _history(self, data: bytes, client: str = "") -> Response:
        now = self.clock()
        shape = _signed_request(data)
        if shape is None:
            return self.problem(
                Problem.UNAUTHORIZED, "the history export answers only a signed request",
                clause="§12.5-1",
            )  # fmt: skip
        thread = shape[1]
        record = await self.store.get_relationship(thread) if thread is not None else None
        if record is not None and record.role != self.role.value:
            record = None
        identity = self.identity
        if record is not None and self._identity_for is not None:
            identity = self._identity_for(record)
        try:
            req = open_history_request(
                data, now=now, recipient=identity.public_key, limits=self.limits
            )
        except ProtocolError as exc:
            return self._refuse(exc, _Peek(thread=thread), identity)
        if self._seen_request(req.sender, req.nonce, now):  # a replay: the address pays (§12.9-6)
            if client:
                self.address_limit.charge(client)
        else:
            wait = self.sender_limit.retry_after(req.sender)
            if wait:
                return self.problem(
                    Problem.RATE_LIMITED, "too many requests from this key", clause="§12.9-5",
                    retry_after=wait, to=req.sender, thread=req.thread,
                )  # fmt: skip
            self.sender_limit.charge(req.sender)
        if record is None:
            return self.problem(
                Problem.NO_RELATIONSHIP, "there is no relationship with this thread id here",
                clause="§12.5-4", to=req.sender, thread=req.thread,
            )  # fmt: skip
        if req.sender != record.peer_key:
            return self.problem(
                Problem.NOT_A_PARTY, "only the thread's peer, by its current key, may fetch it",
                clause="§12.5-4", identity=identity, to=req.sender, thread=req.thread,
            )  # fmt: skip
        await self._expire(record)  # the export never shows data past its expiry (§5.3.1-4)
        rows = await self.store.history(req.thread, start=req.start, limit=HISTORY_PAGE_ENTRIES)
        page: list[Entry] = []
        size = 0
        for row in rows:
            size += len(row.envelope)
            if page and size > HISTORY_PAGE_BYTES:
                break
            page.append(Entry(row.index, row.msg_hash, row.entry_hash, row.envelope,
                              row.direction == "out"))  # fmt: skip
        return Response(200, encode_history(page), {"Content-Type": CONTENT_TYPE})

