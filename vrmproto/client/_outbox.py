"""The outbox: what the agent sends goes through it, and what could not be sent waits in it
until it can (§12). The mechanism — persist, deliver, apply the replies, one message in flight
per thread — is :mod:`vrmproto.client._sending`.

**A fan-out is queued whole before anything is sent.** :meth:`Outbox.enqueue` signs (or, behind
an undelivered message, stores as a draft) one message for each of many threads and writes them
all in ONE Commit; only then does :meth:`Outbox.deliver` send each. A crash at any point of the
sending leaves every vendor's message in the outbox, and a crash before the Commit leaves none
(§12.7-5).

:meth:`Outbox.run` delivers every due item — threads in parallel, each thread in order — and is
what an agent node calls periodically. An item whose envelope expired can never be accepted
(§4.5-3); it is dropped and the drop recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from vrmproto._envelope import Signed, open_envelope
from vrmproto._errors import ProtocolError, StateError, TransportError, VrmError
from vrmproto._messages import Receipt
from vrmproto._quick import quick_make
from vrmproto._records import to_entry
from vrmproto._relationship import Received
from vrmproto.client._delivery import Delivery, DeliveryStatus, OutboxRun
from vrmproto.client._drafts import Draft, DraftKind, decode_draft, encode_draft
from vrmproto.client._errors import NotFound
from vrmproto.client._held import is_held
from vrmproto.client._ledger import Thread, to_row
from vrmproto.client._moved import deadline_in
from vrmproto.client._own import own_header
from vrmproto.client._schedule import DEFAULT_SCHEDULE, RETRYABLE, is_due
from vrmproto.client._sending import Sender
from vrmproto.client._transport import RetryPolicy
from vrmproto.client._waiting import Waiting
from vrmproto.store import HistoryEntry, NewOutboxItem, OutboxItem

__all__ = [
    "DEFAULT_SCHEDULE",
    "ENQUEUE_CHUNK",
    "RETRYABLE",
    "Delivery",
    "DeliveryStatus",
    "Outbox",
    "OutboxRun",
]

#: Most threads :meth:`Outbox.enqueue` locks and writes at once (one Commit each chunk).
ENQUEUE_CHUNK = 256
#: History entries read at a time when looking back for a message another agent delivered.
HISTORY_PAGE = 64

_new_item = quick_make(OutboxItem)  # OutboxItem(...), once per message sent (#12)


def queued(item_id: int, new: NewOutboxItem) -> OutboxItem:
    """The outbox item the store made of ``new`` (never tried yet) under ``item_id``."""
    return _new_item(item_id, new.destination, new.thread, new.msg_hash, new.envelope, 0,
                      new.next_attempt_ms, "", new.created_ms)  # fmt: skip


def _draft_id(payload: bytes) -> bytes | None:
    """The message id a stored draft was given, or None if it cannot be read."""
    try:
        return decode_draft(payload).msg_id
    except (VrmError, ValueError, KeyError):
        return None


def _refuse_behind_end(t: Thread, draft: Draft) -> None:
    """Refuse to queue ``draft`` behind a ``relationship.end`` still queued in ``t``: once the
    end goes, nothing more may be sent in the relationship (§5.6.4-1), so the draft would be
    dropped then — after the person was told it waits. Said now instead, as a message that
    could never be signed is (a signed end already makes ``_build`` refuse)."""
    if any(d.kind == DraftKind.END.value for d in t.meta.drafts):
        raise StateError(
            f"a relationship.end waits to be sent in this relationship: nothing can follow it, "
            f"so this {draft.KIND.value} is not queued", clause="§5.6.4-1",
        )  # fmt: skip


class Outbox(Sender):
    """Sends a thread's messages durably and in order, and retries what could not be sent."""

    # -- sending ---------------------------------------------------------------------------

    async def send(
        self,
        thread: bytes,
        draft: Draft,
        *,
        new: Thread | None = None,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        check_type: bool = False,
    ) -> Delivery:
        """Send ``draft`` as the next message of ``thread``: persist it, then deliver it.

        ``new`` is a thread not yet stored (its first message). If the thread has undelivered
        messages, the draft waits behind them (and they are tried first, in order). Raises what
        signing raises (a :class:`~vrmproto.ProtocolError`: nothing was stored) and store
        errors; with ``check_type``, a StateError if the vendor does not receive the draft's
        type (:meth:`ThreadMeta.check_receives`, §13.1-10), nothing stored either.

        ``timeout_s`` bounds the whole wait for the vendor — every request and retry of every
        message delivered here (only requests are cut short, never a Commit): what is not
        delivered by then stays in the outbox, ``queued``.
        """
        async with self.ledger.lock(thread):
            deadline = deadline_in(timeout_s)  # from now: not the wait for the lock
            t = new if new is not None else await self.ledger.load(thread)
            if check_type:
                t.meta.check_receives(draft.MESSAGE_TYPE)
            waiting = t.meta.drafts or (not t.idle and await self.ledger.pending(thread))
            if new is None and waiting:
                return await self._queue_draft(t, draft, deadline=deadline, retry=retry)
            now = self.clock()
            try:
                sent = self._sign_next(t, draft, now)
            except BaseException:
                self.ledger.forget(thread)
                raise
            t.meta.last_activity_ms = now
            self._keep_notes(t)
            new_item = self._new_item(t, sent, now)
            ids = await self._commit(t, self.ledger.commit(
                (t,), now, history=(to_row(t.id, sent.entry, now),), outbox_add=(new_item,),
            ))  # fmt: skip
            self.ledger.adopt(t)
            # nothing was waiting, so the thread's queue is the item just stored
            queue = None if ids is None or waiting else [queued(ids[0], new_item)]
            done = await self._flush_locked(t, due_by=None, deadline=deadline, retry=retry,
                                            queue=queue)  # fmt: skip
            return self._find(done, t.id, draft)

    async def _queue_draft(
        self, t: Thread, draft: Draft, *, deadline: float | None, retry: RetryPolicy | None
    ) -> Delivery:
        """Store ``draft`` behind the thread's undelivered messages, then try them in order."""
        now = self.clock()
        _refuse_behind_end(t, draft)
        self._build(t.copy(), draft, now)  # refuse now what could never be signed
        t.meta.queue(t.id, draft.KIND.value, encode_draft(draft))
        await self._commit(t, self.ledger.commit((t,), now))
        done = await self._flush_locked(t, due_by=None, deadline=deadline, retry=retry)
        return self._find(done, t.id, draft)

    async def enqueue(self, drafts: Sequence[tuple[bytes, Draft]]) -> dict[bytes, VrmError]:
        """Persist one draft for each of several stored threads, sending nothing (the first
        half of a fan-out, §12.7-5; :meth:`deliver` is the second).

        Each draft becomes its thread's next message, signed and put in the outbox, or, behind
        an undelivered message or stored drafts (§8.2), the thread's next draft. The threads
        are taken in sorted chunks of :data:`ENQUEUE_CHUNK` (each lock holds a file open):
        each chunk is locked (:meth:`Ledger.lock_all`) and written in ONE Commit. A draft that
        cannot be signed, or whose thread is not stored, is left out and named in the returned
        mapping with the reason; store errors are raised, and then nothing of that chunk or
        later ones was stored — and nothing at all was sent.
        """
        by_thread = dict(drafts)
        failed: dict[bytes, VrmError] = {}
        ordered = sorted(by_thread)
        for start in range(0, len(ordered), ENQUEUE_CHUNK):
            chunk = ordered[start : start + ENQUEUE_CHUNK]
            failed.update(await self._enqueue_chunk({th: by_thread[th] for th in chunk}))
        return failed

    async def _enqueue_chunk(self, by_thread: dict[bytes, Draft]) -> dict[bytes, VrmError]:
        failed: dict[bytes, VrmError] = {}
        async with self.ledger.lock_all(by_thread) as threads:
            waiting = {o.thread for o in await self.store.outbox_all()}
            loaded = await asyncio.gather(*(self.ledger.load(th) for th in threads),
                                          return_exceptions=True)  # fmt: skip
            now = self.clock()
            ready: list[Thread] = []
            history: list[HistoryEntry] = []
            added: list[NewOutboxItem] = []
            for thread, t in zip(threads, loaded, strict=True):
                draft = by_thread[thread]
                try:
                    if isinstance(t, BaseException):
                        raise t
                    if thread in waiting or t.meta.drafts:  # behind them (§8.2), as send does
                        _refuse_behind_end(t, draft)
                        self._build(t.copy(), draft, now)  # refuse now what could never be signed
                        t.meta.queue(t.id, draft.KIND.value, encode_draft(draft))
                    else:
                        sent = self._sign_next(t, draft, now)
                        t.meta.last_activity_ms = now
                        history.append(to_row(t.id, sent.entry, now))
                        added.append(self._new_item(t, sent, now))
                except (VrmError, ValueError, LookupError) as exc:
                    self.ledger.forget(thread)
                    failed[thread] = exc if isinstance(exc, VrmError) else VrmError(str(exc))
                    continue
                ready.append(t)
            if not ready:
                return failed
            try:
                await self.store.commit(self.ledger.commit(ready, now, history=history,
                                                           outbox_add=added))  # fmt: skip
            except BaseException:
                for t in ready:
                    self.ledger.forget(t.id)
                raise
            for t in ready:
                self.ledger.adopt(t)
        return failed

    async def deliver(
        self,
        thread: bytes,
        draft: Draft,
        *,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Delivery:
        """Deliver ``thread``'s queue in order, as far as the message of ``draft`` (stored by
        :meth:`enqueue`), and say what became of it.

        Another agent on the same store — another ``vrm`` process on the data directory — or
        this node's own outbox run may have taken the thread between :meth:`enqueue` and this
        call, and delivered the thread's queue as far as it went, this message too
        (§11.11-2): then its outcome is read from what was stored (:meth:`_settled_elsewhere`),
        not reported ``queued`` when nothing of it waits any more.
        """
        async with self.ledger.lock(thread):
            deadline = deadline_in(timeout_s)  # the whole wait, as for send
            t = await self.ledger.load(thread)
            done = await self._flush_locked(t, due_by=None, deadline=deadline, retry=retry)
            if any(d.msg_id == draft.msg_id for d in done):
                return self._find(done, t.id, draft)
            settled = await self._settled_elsewhere(thread, draft, done)
            return settled if settled is not None else self._find(done, t.id, draft)

    async def _settled_elsewhere(self, thread: bytes, draft: Draft, done: list[Delivery]
                                 ) -> Delivery | None:  # fmt: skip
        """What became of ``draft``'s message if it no longer waits in ``thread`` — neither
        as a draft nor in the outbox — and this call did not deliver it: another one did.
        ``confirmed`` if our history holds it (a message refused or given up leaves the chain,
        §8.1-5), with the vendor's receipt and replies logged after it; else ``dropped``, with
        what the thread last noted (``last_problem``). None while it still waits.

        Called under the thread's lock, rarely (only when the flush did not reach it), so it
        reads the stored history back from its end until it finds the message."""
        t = await self.ledger.load(thread)
        if any(_draft_id(d.payload) == draft.msg_id for d in t.meta.drafts):
            return None
        for item in await self.ledger.pending(thread):
            header = own_header(item.envelope)
            if header is not None and header.id == draft.msg_id:
                return None
        earlier = tuple(done)
        rows = await self._history_from(thread, draft.msg_id)
        if not rows:
            why = t.meta.last_problem or "it is no longer in the relationship's history"
            return Delivery(thread, draft.msg_id, b"", "dropped", type=draft.MESSAGE_TYPE,
                            earlier=earlier, error=VrmError(
                                f"it was sent meanwhile by another run of the outbox (another "
                                f"vrm on this data directory, say) and did not stay in the "
                                f"relationship: {why}"))  # fmt: skip
        ours, after = rows[0], rows[1:]
        receipt: Signed[Receipt] | None = None
        replies: list[Received] = []
        for row in after:
            if row.direction == "out":
                break  # our receipts for the replies, or our next message
            try:  # verified when it came; an erased one (§8.4) no longer opens
                msg = open_envelope(row.envelope, now=0, check_time=False,
                                    limits=self.ledger.limits)  # fmt: skip
            except ProtocolError:
                break
            if receipt is None:
                if isinstance(msg.body, Receipt) and msg.body.ack == ours.msg_hash:
                    receipt = msg
                continue
            replies.append(Received(msg, to_entry(row)))
        return Delivery(thread, draft.msg_id, ours.msg_hash, "confirmed", receipt=receipt,
                        replies=tuple(replies), type=draft.MESSAGE_TYPE,
                        earlier=earlier)  # fmt: skip

    async def _history_from(self, thread: bytes, msg_id: bytes) -> list[HistoryEntry]:
        """The stored history of ``thread`` from our message ``msg_id`` on (empty if it holds
        no such message), read in pages of :data:`HISTORY_PAGE` back from its end."""
        head = await self.store.history_head(thread)
        end = 0 if head is None else head.index + 1
        rows: list[HistoryEntry] = []
        while end > 0:
            start = max(0, end - HISTORY_PAGE)
            page = await self.store.history(thread, start=start, limit=end - start)
            rows[:0] = page
            for i in range(len(page) - 1, -1, -1):
                row = page[i]
                header = own_header(row.envelope) if row.direction == "out" else None
                if header is not None and header.id == msg_id:
                    return rows[i:]
            end = start
        return []

    @staticmethod
    def _find(done: list[Delivery], thread: bytes, draft: Draft) -> Delivery:
        """The delivery of ``draft`` among a flush's, with the ones before it as ``earlier``.
        Behind a message held until a person acts (the vendor answers with another key,
        :func:`~vrmproto.client._held.hold_if_key_changed`), it is held too: its error is
        that message's, which says why and what to do."""
        for i, d in enumerate(done):
            if d.msg_id == draft.msg_id:
                return replace(d, earlier=tuple(done[:i])) if i else d
        held = next((d.error for d in done if d.status == "queued" and is_held(d.error)), None)
        return Delivery(thread, draft.msg_id, b"", "queued",
                        error=held or TransportError("queued behind earlier undelivered messages"),
                        type=draft.MESSAGE_TYPE, earlier=tuple(done))

    # -- the periodic run ------------------------------------------------------------------

    async def run(self, now: int | None = None, *, threads: set[bytes] | None = None
                  ) -> OutboxRun:  # fmt: skip
        """Deliver every due item: threads in parallel (bounded), each thread in order, as far
        as it goes — so one run empties every relationship whose vendor answers.

        ``now`` (ms) decides what is due; it defaults to the clock. ``threads``: only these.
        """
        due_by = self.clock() if now is None else now
        firsts: dict[bytes, OutboxItem] = {}
        for item in await self.store.outbox_all():
            firsts.setdefault(item.thread, item)
        due = {th for th, item in firsts.items() if is_due(item, due_by, self.schedule)}
        # drafts with nothing in flight before them (what preceded them was dropped)
        due.update(d.thread for d in await self.store.drafts() if d.thread not in firsts)
        sem = asyncio.Semaphore(self.concurrency)

        async def one(thread: bytes) -> list[Delivery]:
            async with sem, self.ledger.lock(thread):
                try:
                    t = await self.ledger.load(thread)
                except LookupError:
                    return []
                return await self._flush_locked(t, due_by=due_by)

        if threads is not None:
            due &= threads
        results = await asyncio.gather(*(one(th) for th in sorted(due)))
        return OutboxRun(tuple(d for ds in results for d in ds))

    # -- a person's way out (:mod:`vrmproto.client._waiting`) --------------------------------

    async def drop(self, w: Waiting) -> Delivery:
        """Drop the waiting message ``w``: a signed one is taken back out of our chain and
        history as a refused one is (§8.1-5), a draft is forgotten; the next draft then takes
        its turn. A receipt of ours is owed to the vendor and is not dropped (§5.6.1-2)."""
        if w.type == Receipt.TYPE:
            raise StateError("a receipt of ours is owed to the vendor and already in our "
                             "history; it cannot be dropped", clause="§5.6.1-2")  # fmt: skip
        async with self.ledger.lock(w.thread):
            t = await self.ledger.load(w.thread)
            now = self.clock()
            gone = NotFound("that message is no longer waiting")
            err = VrmError("dropped by you")
            if w.item_id is None:
                kept = [d for d in t.meta.drafts if d.seq != w.draft_seq]
                if len(kept) == len(t.meta.drafts):
                    raise gone
                t.meta.drafts = kept
                t.meta.last_problem = f"a queued {w.type} was dropped by you"
                await self._commit(t, self.ledger.commit((t,), now))
                self.ledger.adopt(t)
                return Delivery(t.id, w.msg_id, b"", "dropped", error=err, type=w.type)
            item = next((i for i in await self.ledger.pending(w.thread)
                         if i.item_id == w.item_id), None)  # fmt: skip
            if item is None:
                raise gone
            t.meta.last_problem = f"a {w.type} was dropped by you before it was delivered"
            d = Delivery(t.id, w.msg_id, item.msg_hash, "dropped", error=err,
                         attempts=item.attempts, type=w.type)  # fmt: skip
            await self._take_out(t, item, d, now)
            self.ledger.adopt(t)
            return d

    async def retry_now(self, thread: bytes | None = None) -> OutboxRun:
        """Deliver ``thread``'s queue now (every relationship's if None), whatever the retry
        schedule said."""
        now = self.clock()
        for item in await self.store.outbox_all():
            if thread is None or item.thread == thread:
                await self.store.outbox_retry(item.item_id, item.attempts, now, item.last_error)
        return await self.run(now, threads=None if thread is None else {thread})
