"""How a :class:`~vrmproto.store.Commit` is written to PostgreSQL: one Commit, or a group at once.

Both paths run inside the writer's open transaction (see :mod:`vrmproto.store._postgres`) with
the store's schema on ``search_path``. Rows go in as arrays (``INSERT … SELECT * FROM
unnest($1::bytea[], …)``): one statement, one round trip and one plan per table, whatever the
number of rows. An upsert may not touch one row twice in a statement, so the rows of each upsert
are reduced to the last one per key — what applying them one after another leaves — and sorted by
key, so that concurrent transactions lock the same rows in the same order.

Uniqueness is the database's: ``PRIMARY KEY (thread, idx)`` on ``history`` and ``(sender,
msg_id)`` on ``dedupe`` raise a unique violation (mapped to
:class:`~vrmproto.store.StoreConflict` by the caller) in whichever process writes second, once
the first has committed. The history index check here (a taken index is a conflict, a skipped
one an error) reads the thread's head first, as the SQLite store does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from vrmproto.store import _pg_events as feed
from vrmproto.store import _pg_rows as typed
from vrmproto.store import _sqlite_events as lite
from vrmproto.store._base import (
    Commit,
    DedupeRecord,
    HistoryEntry,
    NewOutboxItem,
    RelationshipRecord,
    StoreConflict,
    check_next_index,
)

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = ["apply_commit", "apply_expecting", "apply_group", "expectations_hold", "groupable"]

_K = TypeVar("_K", bytes, str)
_V = TypeVar("_V")

_UPSERT_REL = """
    INSERT INTO relationships (thread, role, local_key, peer_key, state, data, label, peer_url,
        updated_ms)
    SELECT * FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::bytea[], $5::text[],
        $6::bytea[], $7::text[], $8::text[], $9::int8[])
    ON CONFLICT (thread) DO UPDATE SET role = EXCLUDED.role, local_key = EXCLUDED.local_key,
        peer_key = EXCLUDED.peer_key, state = EXCLUDED.state, data = EXCLUDED.data,
        label = EXCLUDED.label, peer_url = EXCLUDED.peer_url, updated_ms = EXCLUDED.updated_ms"""
_UPSERT_META = """
    INSERT INTO meta (key, value) SELECT * FROM unnest($1::text[], $2::bytea[])
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"""
_INSERT_HIST = """
    INSERT INTO history (thread, idx, msg_hash, entry_hash, envelope, direction, recorded_ms)
    SELECT * FROM unnest($1::bytea[], $2::int4[], $3::bytea[], $4::bytea[], $5::bytea[],
        $6::text[], $7::int8[])"""
_INSERT_DEDUPE = """
    INSERT INTO dedupe (sender, msg_id, msg_hash, response, expires_ms)
    SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::int8[])"""
_INSERT_OUTBOX = """
    INSERT INTO outbox (destination, thread, msg_hash, envelope, attempts, next_attempt_ms,
        last_error, created_ms)
    SELECT d, t, h, e, 0, n, '', c FROM unnest($1::text[], $2::bytea[], $3::bytea[],
        $4::bytea[], $5::int8[], $6::int8[]) WITH ORDINALITY AS u(d, t, h, e, n, c, o)
    ORDER BY o"""
_HEADS = "SELECT thread, max(idx) FROM history WHERE thread = ANY($1::bytea[]) GROUP BY thread"


def _columns(rows: Iterable[tuple[object, ...]]) -> list[list[object]]:
    """Rows to one list per column, the arguments of an ``unnest`` insert."""
    return [list(column) for column in zip(*rows, strict=True)]


def _last_by_key(pairs: Iterable[tuple[_K, _V]]) -> list[_V]:
    """The last value given for each key, sorted by key."""
    last: dict[_K, _V] = dict(pairs)
    return [last[k] for k in sorted(last)]


def _rel_row(r: RelationshipRecord) -> tuple[object, ...]:
    return (r.thread, r.role, r.local_key, r.peer_key, r.state, r.data, r.label, r.peer_url,
            r.updated_ms)  # fmt: skip


def _hist_row(h: HistoryEntry) -> tuple[object, ...]:
    return (h.thread, h.index, h.msg_hash, h.entry_hash, h.envelope, h.direction, h.recorded_ms)


def _dedupe_row(d: DedupeRecord) -> tuple[object, ...]:
    return (d.sender, d.msg_id, d.msg_hash, d.response, d.expires_ms)


def _outbox_row(o: NewOutboxItem) -> tuple[object, ...]:
    return (o.destination, o.thread, o.msg_hash, o.envelope, o.next_attempt_ms, o.created_ms)


async def _heads(conn: Connection, threads: Iterable[bytes]) -> dict[bytes, int]:
    """The next free history index of each of ``threads`` (0 for a thread with no history)."""
    wanted = list(dict.fromkeys(threads))
    found = {bytes(t): int(last) + 1 for t, last in await conn.fetch(_HEADS, wanted)}
    return {t: found.get(t, 0) for t in wanted}


async def _write_rows(conn: Connection, commits: list[Commit]) -> None:
    """The upserts and inserts of ``commits``, table by table, in the Commit part order."""
    rels = _last_by_key((r.thread, _rel_row(r)) for c in commits for r in c.relationships)
    if rels:
        await conn.execute(_UPSERT_REL, *_columns(rels))
    metas = _last_by_key((k, (k, v)) for c in commits for k, v in c.meta)
    if metas:
        await conn.execute(_UPSERT_META, *_columns(metas))
    history = [_hist_row(h) for c in commits for h in c.history]
    if history:
        await conn.execute(_INSERT_HIST, *_columns(history))
    dedupe = [_dedupe_row(d) for c in commits for d in c.dedupe]
    if dedupe:
        await conn.execute(_INSERT_DEDUPE, *_columns(dedupe))


def _check_indexes(entries: Iterable[HistoryEntry], heads: dict[bytes, int]) -> None:
    """Each entry must take exactly its thread's next index: less is a conflict (the slot is
    taken), more an error (a gap)."""
    for h in entries:
        check_next_index(h, heads[h.thread])
        heads[h.thread] += 1


async def apply_commit(conn: Connection, c: Commit) -> tuple[int, ...]:
    """Apply one Commit's parts in the documented order (see :class:`~vrmproto.store.Commit`);
    the ids given to its outbox items, in order."""
    await _write_rows(conn, [Commit(relationships=c.relationships)])
    await typed.apply_threads(conn, c)
    await _write_rows(conn, [Commit(meta=c.meta)])
    for thread, index in c.truncate:
        await conn.execute("DELETE FROM history WHERE thread = $1 AND idx >= $2", thread, index)
    if c.history:
        _check_indexes(c.history, await _heads(conn, (h.thread for h in c.history)))
    await _write_rows(conn, [Commit(history=c.history)])
    if c.erase:
        await conn.executemany(
            "UPDATE history SET envelope = $3 WHERE thread = $1 AND msg_hash = $2", c.erase
        )
    await _write_rows(conn, [Commit(dedupe=c.dedupe)])
    if c.outbox_done:
        await conn.execute(
            "DELETE FROM outbox WHERE item_id = ANY($1::int8[])", list(c.outbox_done)
        )
    ids: tuple[int, ...] = ()
    if c.outbox_add:  # numbered as inserted, in the order given (ORDER BY o)
        rows = await conn.fetch(_INSERT_OUTBOX + " RETURNING item_id",
                                *_columns(_outbox_row(o) for o in c.outbox_add))  # fmt: skip
        ids = tuple(sorted(int(r[0]) for r in rows))
    await typed.apply_typed(conn, c)
    await feed.redact(conn, c.held_drop)
    await feed.forget_threads(conn, c.drop)
    if c.drop:  # history first: its rows reference the relationship's
        await conn.execute("DELETE FROM history WHERE thread = ANY($1::bytea[])", list(c.drop))
        await conn.execute(
            "DELETE FROM relationships WHERE thread = ANY($1::bytea[])", list(c.drop)
        )
        await typed.drop_typed(conn, list(c.drop))
    if c.unset:
        await conn.execute("DELETE FROM meta WHERE key = ANY($1::text[])", list(c.unset))
    await feed.apply_events(conn, [c])
    return ids


_LOCK_RELS = """
    SELECT thread, role, local_key, peer_key, state, data, label, peer_url, updated_ms
    FROM relationships WHERE thread = ANY($1::bytea[]) ORDER BY thread FOR UPDATE"""


async def expectations_hold(conn: Connection, expects: Sequence[RelationshipRecord]) -> bool:
    """Whether each thread's relationship row is exactly its record in ``expects``, read with
    ``FOR UPDATE``: the rows stay locked until the transaction ends, so no other process can
    change them between this check and the COMMIT (a thread with no row does not hold)."""
    if not expects:
        return True
    rows = await conn.fetch(_LOCK_RELS, sorted({e.thread for e in expects}))
    stored = {r[0]: RelationshipRecord(*r) for r in rows}
    return all(stored.get(e.thread) == e for e in expects)


async def apply_expecting(
    conn: Connection, c: Commit, expect: RelationshipRecord | None
) -> tuple[int, ...]:
    """:func:`apply_commit`, only if the thread's row is still exactly ``expect`` (when given):
    else :class:`~vrmproto.store.StoreConflict`, with nothing of ``c`` written."""
    if expect is not None and not await expectations_hold(conn, (expect,)):
        raise StoreConflict(f"relationship {expect.thread.hex()} changed since it was read")
    return await apply_commit(conn, c)


def groupable(c: Commit | None) -> bool:
    """Whether ``c`` may be written together with others (:func:`apply_group`): only upserts
    and inserts (and clearing save points), and history only for threads the Commit itself
    upserts — the parts an inbox step writes, as in the SQLite store."""
    if c is None or c.truncate or c.erase or c.outbox_add or c.outbox_done or c.drop or c.unset:
        return False
    if (c.threads or c.drafts_add or c.drafts_done or c.save_points_done or c.held_drop
            or c.intents or c.offers or c.share_notes or c.intents_drop):  # fmt: skip
        return False
    if lite.has_event_parts(c):
        return False
    threads = {r.thread for r in c.relationships}
    return all(h.thread in threads for h in c.history)


async def apply_group(
    conn: Connection, commits: list[Commit], expects: Sequence[RelationshipRecord] = ()
) -> bool:
    """Write several :func:`groupable` Commits as if one after another, one statement per
    table; False, with nothing written, if a history index does not continue its thread, or
    if a record of ``expects`` (the ``expect=`` of the group's Commits) does not hold or is
    written by more than one Commit of the group (the later one would have to expect the
    earlier one's row).

    Applying them in order and applying each part for all of them end in the same rows (see
    :func:`vrmproto.store._sqlite._apply_group`). A uniqueness rule hit by any of them raises
    for the whole group; the caller rolls it back and writes the Commits one by one.
    """
    nexts: dict[bytes, int] = {}
    firsts: dict[bytes, int] = {}
    for c in commits:
        for h in c.history:
            expected = nexts.get(h.thread)
            if expected is None:
                firsts[h.thread] = h.index
            elif h.index != expected:
                return False
            nexts[h.thread] = h.index + 1
    if expects:
        written = Counter(r.thread for c in commits for r in c.relationships)
        if any(written[e.thread] > 1 for e in expects):
            return False
        if not await expectations_hold(conn, expects):
            return False
    # a first index of 0 needs no read: if the thread has history, the insert hits the key
    later = [t for t, first in firsts.items() if first]
    if later:
        heads = await _heads(conn, later)
        if any(heads[t] != firsts[t] for t in later):
            return False
    if not typed.clears_commute(commits):
        return False
    await _write_rows(conn, commits)
    await typed.apply_group_typed(conn, commits)
    await feed.apply_events(conn, commits)
    return True
