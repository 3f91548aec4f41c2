"""The typed records' queries of :class:`~vrmproto.store.PostgresStore` (schema version 2).

The same queries, orderings and row mapping as the SQLite store's
(:mod:`vrmproto.store._sqlite_rows`), with ``$n`` parameters; a mixin over the store's
``_rows`` (one pooled query, rows as tuples).
"""

from __future__ import annotations

from typing import Any

from vrmproto.store import _sqlite_rows as rows
from vrmproto.store._base import (
    DraftRecord,
    HeldRecord,
    IntentRecord,
    OfferRecord,
    OutboxItem,
    SavePoint,
    ShareNote,
    ThreadKind,
    ThreadRecord,
)

__all__ = ["SELECT_OUTBOX", "TypedReads"]

SELECT_OUTBOX = (
    "SELECT item_id, destination, thread, msg_hash, envelope, attempts, next_attempt_ms, "
    "last_error, created_ms FROM outbox "
)


class TypedReads:
    """Queries of the typed records and the per-thread outbox."""

    async def _rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # the store's

    async def outbox_for(self, thread: bytes) -> list[OutboxItem]:
        found = await self._rows(SELECT_OUTBOX + "WHERE thread = $1 ORDER BY item_id", thread)
        return [OutboxItem(*row) for row in found]

    async def get_thread(self, thread: bytes) -> ThreadRecord | None:
        found = await self._rows(rows.SELECT_THREAD + "WHERE thread = $1", thread)
        return rows.thread_record(found[0]) if found else None

    async def threads(self, *, vendor_key: bytes | None = None, kind: ThreadKind | None = None
                      ) -> list[ThreadRecord]:  # fmt: skip
        found = await self._rows(
            rows.SELECT_THREAD + "WHERE ($1::bytea IS NULL OR vendor_key = $1) "
            "AND ($2::text IS NULL OR kind = $2) ORDER BY thread",
            vendor_key, None if kind is None else kind.value,
        )  # fmt: skip
        return [rows.thread_record(row) for row in found]

    async def drafts(self, thread: bytes | None = None) -> list[DraftRecord]:
        found = await self._rows(
            rows.SELECT_DRAFT + "WHERE ($1::bytea IS NULL OR thread = $1) ORDER BY thread, seq",
            thread,
        )
        return [rows.draft_record(row) for row in found]

    async def save_point(self, thread: bytes, msg_hash: bytes) -> SavePoint | None:
        found = await self._rows(
            rows.SELECT_SAVE_POINT + "WHERE thread = $1 AND msg_hash = $2", thread, msg_hash
        )
        return rows.save_point_record(found[0]) if found else None

    async def save_points(self, thread: bytes) -> list[SavePoint]:
        found = await self._rows(
            rows.SELECT_SAVE_POINT + "WHERE thread = $1 ORDER BY msg_hash", thread
        )
        return [rows.save_point_record(row) for row in found]

    async def held(self, thread: bytes) -> list[HeldRecord]:
        found = await self._rows(rows.SELECT_HELD + "WHERE thread = $1 ORDER BY field", thread)
        return [rows.held_record(row) for row in found]

    async def held_expired(self, now_ms: int) -> list[tuple[bytes, bytes]]:
        found = await self._rows(
            "SELECT DISTINCT thread, share FROM held WHERE expires_ms IS NOT NULL "
            "AND expires_ms <= $1 ORDER BY thread, share",
            now_ms,
        )
        return [(bytes(t), bytes(s)) for t, s in found]

    async def get_intent(self, intent_id: bytes) -> IntentRecord | None:
        found = await self._rows(rows.SELECT_INTENT + "WHERE intent_id = $1", intent_id)
        return rows.intent_record(found[0]) if found else None

    async def intents(self) -> list[IntentRecord]:
        found = await self._rows(rows.SELECT_INTENT + "ORDER BY sent_ms, intent_id")
        return [rows.intent_record(row) for row in found]

    async def offers(self, intent_id: bytes | None = None) -> list[OfferRecord]:
        found = await self._rows(
            rows.SELECT_OFFER + "WHERE ($1::bytea IS NULL OR intent_id = $1) "
            "ORDER BY intent_id, received_ms, hash",
            intent_id,
        )
        return [rows.offer_record(row) for row in found]

    async def get_offer(self, offer_hash: bytes) -> OfferRecord | None:
        found = await self._rows(rows.SELECT_OFFER + "WHERE hash = $1", offer_hash)
        return rows.offer_record(found[0]) if found else None

    async def share_notes(self, thread: bytes | None = None) -> list[ShareNote]:
        # Two statements, not "$1 IS NULL OR thread = $1": a generic plan of that (PostgreSQL
        # may choose one for a prepared statement after five runs) scans every note.
        if thread is None:
            found = await self._rows(rows.SELECT_NOTE + "ORDER BY shared_ms, share")
        else:
            found = await self._rows(rows.SELECT_NOTE + "WHERE thread = $1 ORDER BY shared_ms, "
                                     "share", thread)  # fmt: skip
        return [rows.note_record(row) for row in found]
