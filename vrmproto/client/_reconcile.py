"""Looking back: the relationships as a person sees them, our history, and comparing and
reconciling it with the vendor's copy (§8.2, §8.3)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Literal

from vrmproto._errors import PeerProblemError, Problem, ProtocolError, StateError
from vrmproto._history import Divergence, Entry, compare, verify_entries
from vrmproto._state import State
from vrmproto.client._agent_base import AgentBase
from vrmproto.client._errors import InvalidResponse, Unreachable
from vrmproto.client._ledger import Thread, ThreadKind, is_ours, to_row
from vrmproto.client._moved import current, deadline_in, left
from vrmproto.client._views import Reconciliation, Ref, RelationshipView
from vrmproto.store import HistoryEntry

__all__ = ["HISTORY_TIMEOUT_S", "MAX_LOST_ROTATIONS", "HistoryOps"]

#: Rotations of our own key a restored store may have missed; :meth:`Agent.reconcile` tries the
#: keys of that many later generations when the vendor no longer knows ours (§12.5-4).
MAX_LOST_ROTATIONS = 8

#: How long :meth:`Agent.compare_history` and :meth:`Agent.reconcile` wait for the vendor unless
#: told: its document, every page of its copy of the history and every retry (§12.5-7). Without
#: a bound a vendor answering page after page slowly held them — and, for ``reconcile``, the
#: relationship's lock, so that nothing could be sent in it — for as long as it liked.
HISTORY_TIMEOUT_S = 60.0


class HistoryOps(AgentBase):
    """:meth:`relationships`, :meth:`history`, :meth:`compare_history`, :meth:`reconcile`."""

    async def relationships(self) -> list[RelationshipView]:
        """Every relationship, most recently active first.

        A vendor thread whose first terms offer the vendor refused with a problem is none: the
        offer left our chain and history (§8.1-5), nothing else was ever in it, and the
        refusal was the answer to :meth:`connect` (its thread keeps it as ``last_problem``).
        Listing it beside the relationship a later connect opens, in state ``none``, read as
        a second relationship with the vendor. A thread whose first offer still waits in the
        outbox is listed."""
        waiting: dict[bytes, int] = {}
        for item in await self.store.outbox_all():
            waiting[item.thread] = waiting.get(item.thread, 0) + 1
        views = []
        for record in await self.store.relationships(with_data=False):
            if not is_ours(record):
                continue
            self.ledger.refresh(record)  # what another `vrm` on the store did meanwhile
            try:
                t = await self.ledger.load(record.thread)
            except LookupError:
                continue
            rel = t.rel
            pending = waiting.get(record.thread, 0) + len(t.meta.drafts)
            if rel.state is State.NONE and t.meta.kind is ThreadKind.VENDOR and not pending:
                continue  # its first offer was refused: never opened
            views.append(RelationshipView(
                thread=record.thread, kind=t.meta.kind.value, vendor=t.meta.name, url=t.url,
                state=rel.state.value, terms=rel.terms, agreement=rel.agreement,
                shares=tuple(sorted(rel.shares.items())),
                # the thread's row keeps its last activity only when it changes for another
                # reason; every Commit of it writes the relationship's updated_ms (_meta.holds)
                last_activity_ms=max(t.meta.last_activity_ms, record.updated_ms),
                pending=pending,
                last_problem=t.meta.last_problem, local_key=rel.identity.public_key,
                peer_key=record.peer_key, generation=t.meta.generation,
            ))  # fmt: skip
        views.sort(key=lambda v: v.last_activity_ms, reverse=True)
        return views

    async def history(self, ref: Ref) -> list[Entry]:
        """Our history of the relationship, every link and signature verified (§8.2)."""
        return await self.ledger.entries(await self.resolve(ref))

    async def compare_history(self, ref: Ref, *, timeout_s: float | None = HISTORY_TIMEOUT_S
                              ) -> Divergence | None:  # fmt: skip
        """Fetch the vendor's copy of the history, verify it, and compare it with ours (§8.3).

        None when both are identical; otherwise where they part. Raises
        :class:`~vrmproto.client.InvalidResponse` if the vendor's copy does not verify (a
        ``PeerRuleError``: also the :class:`~vrmproto.ProtocolError` it carries as ``error``).
        ``timeout_s`` bounds the whole wait for the vendor, every page and retry (None: no
        bound): past it, :class:`~vrmproto.client.Unreachable` (timed out).
        """
        thread = await self.resolve(ref)
        async with self.ledger.lock(thread):
            deadline = deadline_in(timeout_s)  # (waiting for the lock is not for the vendor)
            t = await self.ledger.load(thread)
            if t.rel.peer_key is None:
                raise StateError("the vendor's key is not known", clause="§12.5")
            await current(self.outbox, t, self.clock(), timeout_s=left(deadline),
                          deadline=deadline)  # its history URL may have moved  # fmt: skip
            ours = await self.ledger.entries(thread)
        theirs = await self._their_history(t, deadline)
        return compare(ours, theirs)

    async def _their_history(self, t: Thread, deadline: float | None) -> list[Entry]:
        """The vendor's copy of ``t``'s history, verified (§8.3-2), by ``deadline`` (the
        running loop's time; None: no bound), every page and retry included.

        The vendor answers only our current key (§12.5-4). A store restored from a backup may
        not know of rotations made after it was taken, so when the vendor says we are not a
        party, the next pairwise keys are tried: the master seed derives them all (§2.3).
        """
        assert t.rel.peer_key is not None
        meta = t.meta
        generations = 1 if meta.kind is ThreadKind.INTENT else 1 + MAX_LOST_ROTATIONS
        for generation in range(meta.generation, meta.generation + generations):
            identity = self.ledger.identity(replace(meta, generation=generation))
            try:
                async with asyncio.timeout_at(deadline):
                    theirs = await self.client.fetch_history(
                        meta.history, identity, t.id, t.rel.peer_key, timeout_s=left(deadline)
                    )  # fmt: skip
            except TimeoutError:  # the deadline's (the transport's own failures are Unreachable)
                raise Unreachable(f"POST {meta.history}: timed out") from None
            except PeerProblemError as exc:
                if exc.problem is not Problem.NOT_A_PARTY or generation + 1 == (
                    meta.generation + generations
                ):
                    raise
                continue
            try:
                verify_entries(theirs)
            except ProtocolError as exc:  # the vendor's bytes (§8.3-2), not a message of ours
                raise InvalidResponse.of(exc, "the vendor's copy of the history") from None
            return theirs
        raise AssertionError("unreachable")  # pragma: no cover

    async def reconcile(self, ref: Ref, *, timeout_s: float | None = HISTORY_TIMEOUT_S
                        ) -> Reconciliation:  # fmt: skip
        """Compare our history with the vendor's and, if ours lacks entries, adopt them (§8.3).

        The vendor's copy is verified first (§8.3-2); each entry we lack is then applied in
        order, by the rules we would have applied at the time (:meth:`Relationship.adopt`), and
        everything adopted is stored in one commit. The thread stays locked throughout, so
        nothing is sent in it while we are behind (§8.3-3). Call it for every relationship after
        restoring a backup of the store, before sending anything (§8.3-4). Raises
        :class:`~vrmproto.client.InvalidResponse` if the vendor's copy does not verify, as
        :meth:`compare_history` does. ``timeout_s`` bounds the wait for the vendor, and so how
        long the thread stays locked, as :meth:`compare_history`'s; past it,
        :class:`~vrmproto.client.Unreachable` and nothing adopted.
        """
        thread = await self.resolve(ref)
        async with self.ledger.lock(thread):
            deadline = deadline_in(timeout_s)  # (waiting for the lock is not for the vendor)
            t = await self.ledger.load(thread)
            if t.rel.peer_key is None:
                raise StateError("the vendor's key is not known", clause="§12.5")
            await current(self.outbox, t, self.clock(), timeout_s=left(deadline),
                          deadline=deadline)  # its history URL may have moved  # fmt: skip
            ours = await self.ledger.entries(thread)
            theirs = await self._their_history(t, deadline)
            div = compare(ours, theirs)
            if div is None:
                return Reconciliation(thread, "equal")
            if div.kind != "behind":
                return Reconciliation(thread, div.kind, divergence=div)
            now = self.clock()
            work, rows, stopped = self._adopt(t, theirs[div.index :], now)
            if rows:
                await self._store_adopted(work, rows, now)
            kind: Literal["adopted", "fork"] = "fork" if stopped is not None else "adopted"
            return Reconciliation(thread, kind, len(rows), div, stopped)

    def _adopt(self, t: Thread, lacking: list[Entry], now: int
               ) -> tuple[Thread, list[HistoryEntry], ProtocolError | None]:  # fmt: skip
        """Apply ``lacking`` to a copy of ``t`` in order, up to the first that cannot be."""
        work, rows = t.copy(), list[HistoryEntry]()
        rotated_to = self.next_identity(work)  # should the entries hold a rotation of ours
        for entry in lacking:
            try:
                adopted = work.rel.adopt(entry.envelope, rotated_to=rotated_to)
            except ProtocolError as exc:
                return work, rows, exc
            if work.rel.identity is rotated_to:
                work.meta.generation += 1
                rotated_to = self.next_identity(work)
            rows.append(to_row(t.id, adopted, now))
        return work, rows, None

    async def _store_adopted(self, work: Thread, rows: list[HistoryEntry], now: int) -> None:
        work.meta.last_activity_ms = now
        try:
            await self.store.commit(self.ledger.commit((work,), now, history=rows))
        except BaseException:
            self.ledger.forget(work.id)
            raise
        self.ledger.adopt(work)
