"""Durable sending, one thread's queue at a time: persist, deliver, apply the replies (§12).

Every message the agent sends goes the same way (spec §12, ordering and durability):

1. the core signs it (``Relationship.send``) — nothing is changed if that raises;
2. ONE :class:`~vrmproto.store.Commit` writes the relationship, the history entry and an outbox
   item, before any network I/O ("persist the head before sending");
3. the envelope is POSTed to the vendor's inbox;
4. on ``200`` every reply is applied to the relationship, the receipt first and checked to
   acknowledge exactly this message; one Commit stores the replies, the relationship and the
   outbox item's removal;
5. on a transient failure the item stays in the outbox, rescheduled with exponential backoff
   and full jitter (``Retry-After`` respected); on a verified refusal (a signed problem) the
   problem is recorded and the item removed — the vendor's signed word is final. An item that
   went out before without an answer is given up as expired only once the vendor's history
   shows that it never took it (§8.1-8, :mod:`vrmproto.client._peer_copy`).

Replies in a ``200`` are acknowledged like any message (§5.6.1-2): a receipt of ours, signed and
queued in the Commit that stores them, delivered next (answered ``204``); one that expires in
the outbox leaves our chain with what followed it (§8.1-5), and a fresh one is owed.

**Step 4's Commit may return before its fsync** where delivering again repairs its loss
(:meth:`Sender._close`); step 2 always waits: nothing goes out that a power loss could erase.

**One message in flight per thread.** Both parties log a thread's messages in one sequence
(§8.2); if we signed a second message before the first was answered, we would log
``m1 m2 r1 r2`` while the vendor logs ``m1 r1 m2 r2``, and the histories would fork. So a
message for a thread that has an undelivered one becomes a draft (:mod:`vrmproto.client._drafts`)
— what to send, as data, with its message id already chosen — stored as the thread's next
:class:`~vrmproto.store.DraftRecord` and signed only when its turn comes, in the same Commit
that closes the message before it. Messages are thus delivered strictly in order, and each is
signed against the state the vendor will see. Before each message of ours is signed — receipts
too — where the relationship stood is kept as a :class:`~vrmproto.store.SavePoint`
(:mod:`vrmproto._records`), so that a final refusal takes the message back out of our chain and
history (§8.1-5).

An item's id, type and expiry are read from its own header (:func:`~vrmproto.client._own.
own_header`), not by verifying our signature again. :class:`Sender` is that mechanism;
:class:`~vrmproto.client._outbox.Outbox` adds the public operations on it (send, a fan-out,
the periodic run, a person's way out).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from vrmproto._errors import PeerProblemError, Problem, TransportError, VrmError
from vrmproto._messages import DataShare, Receipt
from vrmproto._quick import quick_make
from vrmproto._relationship import Sent
from vrmproto.client._answer import apply_answer
from vrmproto.client._delivery import Delivery
from vrmproto.client._drafts import QUEUED, Draft, Signer, decode_draft, with_status
from vrmproto.client._errors import InvalidResponse, Transient
from vrmproto.client._held import hold_if_key_changed
from vrmproto.client._lazy import may_close_lazily
from vrmproto.client._ledger import Ledger, Thread, to_row
from vrmproto.client._meta import lost_by_vendor
from vrmproto.client._moved import Documents, current, deadline_in, left, passed, post_following
from vrmproto.client._own import own_header
from vrmproto.client._peer_copy import delivered_after_all
from vrmproto.client._schedule import DEFAULT_SCHEDULE, HELD_CHECK_S, RETRYABLE, is_due
from vrmproto.client._transport import Clock, RandomId, RetryPolicy, Transport
from vrmproto.store import Commit, HistoryEntry, NewOutboxItem, OutboxItem, ShareNote, Store

__all__ = ["Sender", "may_close_lazily"]

#: Most signed messages whose header fields a :class:`Sender` keeps until it delivers them.
KEPT_HEADERS = 4096

_new_outbox_item = quick_make(NewOutboxItem)  # NewOutboxItem(...), once per message (#12)


class Sender:
    """Delivers a thread's messages durably and in order, one item at a time: signs each
    draft when its turn comes, applies the vendor's replies, reschedules what could not be
    sent. ``held_check_s`` bounds a §8.1-8 check no caller's deadline bounds."""

    held_check_s: float = HELD_CHECK_S

    def __init__(
        self,
        ledger: Ledger,
        client: Transport,
        signer: Signer,
        *,
        clock: Clock,
        random_id: RandomId,
        schedule: RetryPolicy = DEFAULT_SCHEDULE,
        concurrency: int = 16,
        retry: RetryPolicy | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.signer = signer
        self.clock = clock
        self.random_id = random_id
        self.schedule = schedule
        self.concurrency = concurrency
        self.retry = retry
        self._rand = rand
        #: The notes of shares sent by this outbox and not yet answered, by message hash: the
        #: Commit that closes a share confirms its note (one Commit, not a read and a second).
        self._notes: dict[bytes, ShareNote] = {}
        #: For a thread whose item :meth:`_close` just closed (under the thread's lock): how
        #: many items its Commit queued (receipts for replies, the next draft signed) or took
        #: out with it (:meth:`_take_out`).
        self._queued_by_close: dict[bytes, int] = {}
        #: The id, expiry and type of the messages this sender signed and has not yet tried to
        #: deliver, by message hash (at most :data:`KEPT_HEADERS`).
        self._signed: dict[bytes, tuple[bytes, int, str]] = {}
        #: When the vendor documents of threads expire, as this process read them (§13.1-8).
        self.documents = Documents()

    @property
    def store(self) -> Store:
        return self.ledger.store

    def _build(self, t: Thread, draft: Draft, now: int) -> Sent:
        return draft.sign(t, self.signer, now)

    def _sign_next(self, t: Thread, draft: Draft, now: int) -> Sent:
        """Sign ``draft`` as the thread's next message, keeping where the relationship stood
        before it (a save point, §8.1-5) until the vendor answers."""
        point = t.point()
        sent = self._build(t, draft, now)
        t.guard(point, sent.message.hash)
        return sent

    def _new_item(self, t: Thread, sent: Sent, now: int) -> NewOutboxItem:
        msg = sent.message
        if len(self._signed) >= KEPT_HEADERS:  # never delivered here: read them back if need be
            self._signed.clear()
        self._signed[msg.hash] = (msg.header.id, msg.header.expires, msg.header.type)
        return _new_outbox_item(destination=t.url, thread=t.id, msg_hash=msg.hash,
                                envelope=msg.envelope, next_attempt_ms=now, created_ms=now)

    # -- delivering one item -----------------------------------------------------------------

    async def _deliver_locked(
        self,
        t: Thread,
        item: OutboxItem,
        *,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> list[Delivery]:
        """Deliver ``item`` (the thread's oldest); on any final outcome, sign the next draft
        in the same Commit. Returns the item's delivery, then any drafts that were dropped."""
        signed = self._signed.pop(item.msg_hash, None)
        # Signed here and not tried yet; else it may have gone out already, in an attempt no
        # one recorded (a process stopped by kill -9 or a power cut while it waited, §8.1-8).
        fresh = signed is not None and not item.attempts
        if signed is not None:
            msg_id, expires, mtype = signed
        elif (header := own_header(item.envelope)) is not None:  # ours: nothing to verify again
            msg_id, expires, mtype = header.id, header.expires, header.type
        else:  # not ours to deliver: nothing the vendor could accept
            msg_id, expires, mtype = bytes(16), -1, ""
        now = self.clock()
        if expires < now:
            why = (f"the {mtype or 'message'} expired before it could be delivered (valid "
                   f"until {expires} ms, §4.5-3); it was dropped")  # fmt: skip
            if held := await self._held(t, item, msg_id, mtype, deadline=deadline,
                                        sent=not fresh):  # fmt: skip
                return held
            t.meta.last_problem = f"expired: {why}"
            d = Delivery(t.id, msg_id, item.msg_hash, "dropped", attempts=item.attempts,
                         error=TransportError(why), type=mtype)
            # It leaves our chain as a refused message does (§8.1-7, §8.1-5): or every later
            # one would link to one the vendor never accepted, and be refused chain_broken.
            return await self._take_out(t, item, d, now, expired=True)
        try:
            envelopes = await post_following(self, t, item, now, deadline=deadline,
                                             retry=retry if retry is not None else self.retry)
        except PeerProblemError as exc:
            if exc.problem in RETRYABLE:  # the same bytes may be accepted later (§9.1-9)
                return [await self._reschedule(t, item, msg_id, exc, mtype)]
            if exc.problem is Problem.EXPIRED and (h := await self._held(
                    t, item, msg_id, mtype, deadline=deadline)):  # fmt: skip
                return h
            t.meta.last_problem = f"{exc.code}: {exc.detail}"
            d = Delivery(t.id, msg_id, item.msg_hash, "refused", error=exc,
                         attempts=item.attempts + 1, type=mtype)
            # A refused message never joined the relationship: take it back out of our chain
            # and history, so the next message links to what the vendor holds (§8.1-5).
            return await self._take_out(t, item, d, self.clock())
        except TransportError as exc:
            return [await hold_if_key_changed(self, t, item, exc, deadline=deadline)
                    or await self._reschedule(t, item, msg_id, exc, mtype)]  # fmt: skip
        now = self.clock()
        if mtype == Receipt.TYPE:  # owed no receipt: accepted with 204 (§12.3-3)
            if envelopes:
                return [await self._reschedule(t, item, msg_id, InvalidResponse(
                    "a receipt was answered with envelopes", status=200), mtype)]
            d = Delivery(t.id, msg_id, item.msg_hash, "confirmed", attempts=item.attempts + 1,
                         type=mtype)
            return await self._close(t, item, d, (), now)
        try:
            receipt, replies = apply_answer(t, item.msg_hash, envelopes, now)
        except InvalidResponse as exc:  # e.g. a recorded answer whose receipt expired (§8.1-8)
            self.ledger.forget(t.id)
            t = await self.ledger.load(t.id)
            return (await self._held(t, item, msg_id, mtype, deadline=deadline)
                    or [await self._reschedule(t, item, msg_id, exc, mtype)])  # fmt: skip
        entries = [r.entry for r in (receipt, *replies) if r.entry is not None]
        d = Delivery(t.id, msg_id, item.msg_hash, "confirmed", receipt=receipt.message,
                     replies=replies, attempts=item.attempts + 1, type=mtype)
        return await self._close(t, item, d, tuple(to_row(t.id, e, now) for e in entries), now)

    async def _held(self, t: Thread, item: OutboxItem, msg_id: bytes, mtype: str, *,
                    deadline: float | None = None, sent: bool | None = None,
                    ) -> list[Delivery] | None:  # fmt: skip
        """``item``, if it went out before without a usable answer and the vendor holds it,
        closed as delivered (§8.1-8); else None; rescheduled while the vendor can't be asked
        (or not before ``deadline``, the caller's; else :attr:`held_check_s` from now). Its
        history is read where its current document says (§13.1-8). ``sent``: whether it may
        have gone out before (by default, whether an attempt was recorded)."""
        deadline = deadline_in(self.held_check_s) if deadline is None else deadline
        sent = bool(item.attempts) if sent is None else sent
        try:
            if sent and t.rel.peer_key is not None:
                await current(self, t, self.clock(), timeout_s=left(deadline), deadline=deadline)
            held = sent and await delivered_after_all(
                self.client, self.ledger, t, item, self.clock(), msg_id=msg_id, mtype=mtype,
                deadline=deadline)  # fmt: skip
        except TransportError as exc:
            return [await hold_if_key_changed(self, t, item, exc, deadline=deadline)
                    or await self._reschedule(t, item, msg_id, exc, mtype)]  # fmt: skip
        return await self._close(t, item, *held) if held else None

    async def _close(
        self,
        t: Thread,
        item: OutboxItem,
        d: Delivery,
        rows: tuple[HistoryEntry, ...],
        now: int,
        *,
        truncate: tuple[tuple[bytes, int], ...] = (),
        later: Sequence[OutboxItem] = (),
        owed: Sequence[bytes] = (),
    ) -> list[Delivery]:
        """One Commit: the outcome of ``item`` (and of its share's note, §5.3.1), our receipts
        for the replies that came with it (§5.6.1-2), and the next draft signed and queued.

        ``truncate``, ``later`` and ``owed`` are those of a message taken back out of our chain
        (:meth:`_take_out`): the history to truncate, the thread's items logged after it —
        dropped with it, each reported after ``d`` — and the messages of the vendor whose
        receipts went with them and are signed again (§5.6.1-2).

        It does not wait for its fsync (``durable=False``, where the store takes it:
        :func:`may_close_lazily`) when ``item`` was confirmed, the Commit queues nothing and
        truncates nothing. Losing such a Commit — only a power loss before the store's next
        durable commit can — is losing the vendor's answer in the network: after a restart
        the item is still in the outbox, unconfirmed, and our chain still ends with its
        message, so nothing was signed at a place the vendor holds something else at. We
        deliver the same stored bytes again (§5.6.1-4, §12.6-5) and the vendor answers with
        the receipt it stored, byte for byte, applying nothing twice (§12.6-2, §12.7-3). And
        nothing outside depended on the lost Commit: we acknowledge no receipt (§5.6.1-2), no
        message was queued by it, and whatever is sent next is first stored by a durable
        Commit, whose fsync covers this one (:mod:`vrmproto.store._sqlite_durable`). The
        caller may be told "confirmed" at once: the vendor's receipt proves it stored the
        message (§12.7-1), whatever we lose. A kill -9 loses nothing (the WAL holds it).

        Every other close waits: our receipts for replies may go out next and acknowledge
        what we must hold (§5.6.1-2); a next draft signed here goes on the wire next (it must
        never be signed again differently at that place); a rollback (§8.1-5) moves the chain
        back, so the next message signed at that place must not find it undone."""
        out = [d]
        history = list(rows)
        added: list[NewOutboxItem] = []
        await self._settle(t, item, d)
        out.extend([await self._settle(t, other, None, after=d) for other in later])
        self._acknowledge(t, [*(r.message.hash for r in d.replies), *owed], history, added, now)
        if t.meta.drafts and not await self._awaiting_answer(t, (item, *later)):
            self._sign_next_draft(t, out, history, added, now)
        t.meta.last_activity_ms = now
        if d.confirmed and lost_by_vendor(t.meta.last_problem):
            t.meta.last_problem = ""  # the vendor holds the relationship again (a backup back)
        self._keep_notes(t)
        c = self.ledger.commit((t,), now, history=history, outbox_add=added, truncate=truncate,
                               outbox_done=(item.item_id, *(o.item_id for o in later)))
        lazy = d.confirmed and not added and not truncate and len(out) == 1  # none dropped
        await self._commit(t, c, durable=not lazy)
        self._queued_by_close[t.id] = len(added) + len(later)
        return out

    async def _take_out(self, t: Thread, item: OutboxItem, d: Delivery, now: int, *,
                        expired: bool = False) -> list[Delivery]:  # fmt: skip
        """Close ``item``, refused or given up (``d``), taking its message back out of our
        chain and history to the save point kept before it (§8.1-5) — with every message of
        ours logged after it: only receipts of ours, and the draft signed behind them, can be
        (one message in flight, §8.2), and none of them can go now, as each links to the one
        before it. The vendor's messages that the receipts taken out acknowledged are owed a
        receipt still (§5.6.1-2): for an ``expired`` item, fresh ones are signed in their place
        (a new id, created now) and delivered next. Not after a refusal: the vendor's signed
        word is final, and the same receipt signed again could be refused again, and again."""
        before = frozenset(t.rel.owed_receipts)
        truncate = t.roll_back(item.msg_hash, self.ledger.identity)
        later: list[OutboxItem] = []
        if truncate:
            pending = await self.ledger.pending(t.id)
            at = next((i for i, o in enumerate(pending) if o.item_id == item.item_id), None)
            later = pending[at + 1:] if at is not None else []
        owed = sorted(t.rel.owed_receipts - before) if expired else []
        return await self._close(t, item, d, (), now, truncate=truncate, later=later, owed=owed)

    async def _settle(self, t: Thread, item: OutboxItem, d: Delivery | None, *,
                      after: Delivery | None = None) -> Delivery:  # fmt: skip
        """Forget ``item``'s save point and settle its share's note (§5.3.1): with ``d``, its
        outcome; else ``item`` is dropped with the message ``after`` (§8.1-5), said so."""
        t.meta.points.pop(item.msg_hash, None)
        if d is None:
            assert after is not None
            signed = self._signed.pop(item.msg_hash, None)
            header = own_header(item.envelope) if signed is None else None
            msg_id, mtype = (signed[0], signed[2]) if signed is not None else (
                (header.id, header.type) if header is not None else (bytes(16), ""))
            d = Delivery(t.id, msg_id, item.msg_hash, "dropped", attempts=item.attempts,
                         type=mtype, error=VrmError(
                             f"it was logged after a {after.type or 'message'} of ours that "
                             f"was {after.status}, and left our chain with it (§8.1-5)"))
        note = self._notes.pop(item.msg_hash, None)
        if note is None and d.type == DataShare.TYPE:  # queued by another agent, or before
            note = await self._stored_note(t.id, item.msg_hash)  # a restart
        if note is not None:  # confirmed: the vendor's receipt is in (§5.3.1); or given up
            t.meta.notes.append(with_status(note, d.status))
        return d

    def _acknowledge(self, t: Thread, acks: Sequence[bytes], history: list[HistoryEntry],
                     added: list[NewOutboxItem], now: int) -> None:  # fmt: skip
        """Sign a receipt for each message of the vendor in ``acks`` (§5.6.1-2), into
        ``history`` and ``added``, each with a save point (§8.1-5): a receipt that expires
        before it is delivered leaves our chain like any message (:meth:`_take_out`)."""
        for h in acks:
            point = t.point()
            ack = t.rel.send(Receipt(ack=h), now=now, msg_id=self.random_id(),
                             lifetime_ms=t.meta.lifetime_ms)
            t.guard(point, ack.message.hash)
            history.append(to_row(t.id, ack.entry, now))
            added.append(self._new_item(t, ack, now))

    async def _stored_note(self, thread: bytes, share: bytes) -> ShareNote | None:
        """The stored note of ``share`` while it still says queued."""
        for note in await self.store.share_notes(thread):
            if note.share == share and note.status == QUEUED:
                return note
        return None

    async def _awaiting_answer(self, t: Thread, closing: Sequence[OutboxItem]) -> bool:
        """Whether a message of ours other than those ``closing`` still waits in ``t`` for the
        vendor's answer.

        The next draft is signed only once none does: one message in flight per thread
        (§8.2), so both parties log the same order, and a ``key.rotate`` is never signed while
        a message before it still expects a receipt addressed to the old key (§2.6-5).
        Our receipts are answered with nothing (§12.3-3): a draft may follow them.
        """
        done = {c.item_id for c in closing}
        for other in await self.ledger.pending(t.id):
            if other.item_id in done:
                continue
            header = own_header(other.envelope)
            if header is None or header.type != Receipt.TYPE:
                return True
        return False

    def _sign_next_draft(self, t: Thread, out: list[Delivery], history: list[HistoryEntry],
                         added: list[NewOutboxItem], now: int) -> None:  # fmt: skip
        """Sign the thread's first draft that can still be signed, into ``history`` and
        ``added``; each one that cannot be read or signed is dropped, and said so in ``out``."""
        while t.meta.drafts:
            queued = t.meta.drafts.pop(0)
            try:
                draft = decode_draft(queued.payload)
            except (VrmError, ValueError, KeyError) as exc:  # written by a later release?
                t.meta.last_problem = f"a queued {queued.kind} could not be read: {exc}"
                out.append(Delivery(t.id, b"", b"", "dropped", error=VrmError(str(exc))))
                continue
            try:
                sent = self._sign_next(t, draft, now)
            except (VrmError, ValueError) as exc:
                err = exc if isinstance(exc, VrmError) else VrmError(str(exc))
                t.meta.last_problem = f"a queued {draft.MESSAGE_TYPE} could not be sent: {exc}"
                out.append(Delivery(t.id, draft.msg_id, b"", "dropped", error=err,
                                    type=draft.MESSAGE_TYPE))
                continue
            history.append(to_row(t.id, sent.entry, now))
            added.append(self._new_item(t, sent, now))
            return

    def _keep_notes(self, t: Thread) -> None:
        """Remember the notes of shares about to be stored unanswered (status queued), for the
        Commit that closes them."""
        for note in t.meta.notes:
            if note.status == QUEUED:
                self._notes[note.share] = note

    async def _reschedule(
        self, t: Thread, item: OutboxItem, msg_id: bytes, exc: TransportError, mtype: str
    ) -> Delivery:
        attempts = item.attempts + 1
        delay_s = self.schedule.backoff(attempts, self._rand)
        if isinstance(exc, Transient) and exc.retry_after is not None:
            delay_s = max(delay_s, exc.retry_after)
        now = self.clock()
        await self.store.outbox_retry(item.item_id, attempts, now + int(delay_s * 1000),
                                      str(exc)[:500])
        return Delivery(t.id, msg_id, item.msg_hash, "queued", error=exc, attempts=attempts,
                        type=mtype)

    async def _commit(self, t: Thread, c: Commit, *, durable: bool = True
                      ) -> tuple[int, ...] | None:  # fmt: skip
        """Commit ``c`` for ``t``; ``durable=False``: without waiting for its fsync, if the
        store allows it (:func:`may_close_lazily`; only :meth:`_close` asks). Returns the ids
        the store gave ``c``'s outbox items, None if the store does not say."""
        own = may_close_lazily(self.store)
        try:
            ids = None if own is None else await own.commit_ids(c, durable=durable)
            if own is None:
                await self.store.commit(c)
        except BaseException:
            self.ledger.forget(t.id)
            raise
        t.saved()
        return ids

    async def _flush_locked(
        self,
        t: Thread,
        *,
        due_by: int | None,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
        queue: list[OutboxItem] | None = None,
    ) -> list[Delivery]:
        """Deliver the thread's queue in order; stop at the first message still queued, or
        at ``deadline`` (the loop's time: every request and retry, :meth:`Outbox.send`).

        The queue is read again only when a delivery's Commit queued something: we hold the
        thread's lock, so what is left of it otherwise is what we read less the item closed.
        ``queue``: the thread's queue, if the caller knows it (it just queued the only item)."""
        out: list[Delivery] = []
        rest = queue
        while True:
            pending = rest if rest is not None else await self.ledger.pending(t.id)
            if not pending and t.meta.drafts:  # nothing in flight (an item was dropped)
                out.extend(await self._promote(t))
                pending = await self.ledger.pending(t.id)
            if not pending:
                t.idle = True  # until a Commit of ours queues in it (or another one's does)
                return out
            if not is_due(pending[0], due_by, self.schedule) or passed(deadline):
                return out  # (past the deadline: the rest waits in the outbox, queued)
            self._queued_by_close.pop(t.id, None)
            done = await self._deliver_locked(t, pending[0], deadline=deadline, retry=retry)
            out.extend(done)
            if done[0].status == "queued":
                return out
            rest = None if self._queued_by_close.pop(t.id, 1) else pending[1:]
            t = await self.ledger.load(t.id)  # re-read if a failure dropped it from the cache

    async def _promote(self, t: Thread) -> list[Delivery]:
        """Sign the first draft of a thread with nothing in flight, in one Commit (its turn
        came without a delivery closing: the message before it was dropped)."""
        out: list[Delivery] = []
        history: list[HistoryEntry] = []
        added: list[NewOutboxItem] = []
        now = self.clock()
        self._sign_next_draft(t, out, history, added, now)
        self._keep_notes(t)
        await self._commit(t, self.ledger.commit((t,), now, history=history, outbox_add=added))
        self.ledger.adopt(t)
        return out
