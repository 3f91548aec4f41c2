"""SQLite tables of the typed records (schema v3, :mod:`vrmproto.store._rows`): DDL, row
mapping, the statements that apply a :class:`~vrmproto.store.Commit`'s typed parts, and the
queries. Lists inside a record (``types``, ``purposes``, …) are JSON text columns: short,
readable in the ``sqlite3`` shell, and never searched.
"""

from __future__ import annotations

import _json
import functools
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from vrmproto.store._base import Commit, StoreConflict
from vrmproto.store._rows import (
    DraftRecord,
    HeldRecord,
    IntentRecord,
    OfferRecord,
    SavePoint,
    ShareNote,
    ThreadKind,
    ThreadRecord,
)

__all__ = ["SCHEMA_V3", "SCHEMA_V5", "apply_rows", "drop_thread_rows", "migrate_4_to_5"]

SCHEMA_V3 = (
    """CREATE TABLE threads (
        thread BLOB PRIMARY KEY, kind TEXT NOT NULL, vendor_key BLOB NOT NULL,
        name TEXT NOT NULL, inbox TEXT NOT NULL, history_url TEXT NOT NULL,
        lifetime_ms INTEGER NOT NULL, generation INTEGER NOT NULL, intent_id BLOB,
        last_activity_ms INTEGER NOT NULL, last_problem TEXT NOT NULL, types TEXT)""",
    "CREATE INDEX threads_by_vendor_key ON threads(vendor_key)",
    """CREATE TABLE drafts (
        thread BLOB NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, payload BLOB NOT NULL,
        PRIMARY KEY (thread, seq))""",
    """CREATE TABLE save_points (
        thread BLOB NOT NULL, msg_hash BLOB NOT NULL, length INTEGER NOT NULL,
        head BLOB NOT NULL, state BLOB NOT NULL, after INTEGER NOT NULL,
        PRIMARY KEY (thread, msg_hash))""",
    """CREATE TABLE held (
        thread BLOB NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
        category INTEGER NOT NULL, source TEXT NOT NULL, collected_ms INTEGER NOT NULL,
        purposes TEXT NOT NULL, share BLOB NOT NULL, expires_ms INTEGER,
        PRIMARY KEY (thread, field))""",
    "CREATE INDEX held_by_share ON held(thread, share)",
    "CREATE INDEX held_by_expiry ON held(expires_ms) WHERE expires_ms IS NOT NULL",
    """CREATE TABLE intents (
        intent_id BLOB PRIMARY KEY, what TEXT NOT NULL, place TEXT, start_ms INTEGER,
        end_ms INTEGER, max_price_amount INTEGER, max_price_currency TEXT,
        reply_by_ms INTEGER NOT NULL, sent_ms INTEGER NOT NULL, vendors TEXT NOT NULL,
        declines TEXT NOT NULL, constraints TEXT NOT NULL, memberships TEXT NOT NULL)""",
    "CREATE INDEX intents_by_sent ON intents(sent_ms, intent_id)",
    """CREATE TABLE offers (
        hash BLOB PRIMARY KEY, intent_id BLOB NOT NULL, thread BLOB NOT NULL,
        vendor TEXT NOT NULL, url TEXT NOT NULL, vendor_key BLOB NOT NULL,
        description TEXT NOT NULL, price_amount INTEGER NOT NULL, price_currency TEXT NOT NULL,
        valid_until_ms INTEGER NOT NULL, conditions TEXT NOT NULL, accepts_terms TEXT NOT NULL,
        received_ms INTEGER NOT NULL)""",
    "CREATE INDEX offers_by_intent ON offers(intent_id, received_ms, hash)",
    """CREATE TABLE share_notes (
        share BLOB PRIMARY KEY, thread BLOB NOT NULL, vendor TEXT NOT NULL,
        fields TEXT NOT NULL, purposes TEXT NOT NULL, categories TEXT NOT NULL,
        expires_ms INTEGER NOT NULL, shared_ms INTEGER NOT NULL, status TEXT NOT NULL,
        withdrawn_ms INTEGER)""",
    "CREATE INDEX share_notes_by_thread ON share_notes(thread)",
    "CREATE INDEX outbox_by_thread ON outbox(thread, item_id)",
)


#: Schema 4 → 5: an intentcast also published through relays keeps its index and relays
#: (:class:`~vrmproto.store.IntentRecord`, spec §15.2-4); older rows are HTTP-only.
SCHEMA_V5 = (
    "ALTER TABLE intents ADD COLUMN relay_index INTEGER",
    "ALTER TABLE intents ADD COLUMN relays TEXT NOT NULL DEFAULT '[]'",
)


def migrate_4_to_5(conn: sqlite3.Connection) -> None:
    """Add the relayed intentcast's columns to ``intents`` (:data:`SCHEMA_V5`)."""
    for statement in SCHEMA_V5:
        conn.execute(statement)


_ENCODER = json.JSONEncoder(separators=(",", ":"))
#: ``_ENCODER``'s C encoder, made once: ``JSONEncoder.encode`` builds one per call (with its
#: circular-reference dict), 4.4 µs for a share's eight fields against 1.4 µs this way (#12).
#: The same text: compact separators, ASCII escapes, no key sorting, NaN allowed. Without the
#: circular check: the store encodes tuples and lists of its records, never self-containing.
_C_ENCODER = _json.make_encoder(None, _ENCODER.default, _json.encode_basestring_ascii, None,
                                ":", ",", False, False, True)  # fmt: skip


def _encode(value: object) -> str:
    return "".join(_C_ENCODER(value, 0))


@functools.lru_cache(maxsize=4096)
def _js_tuple(value: tuple[Any, ...]) -> str:
    return _encode(value)


def _js(value: Sequence[Any]) -> str:
    """``value`` as compact JSON text (a tuple, like a list, becomes an array).

    The same short lists come back in every commit of a thread (its message types, a share's
    fields and purposes), and ``json.dumps`` with options builds an encoder per call: a
    hashable tuple is encoded once and then looked up (#12)."""
    if type(value) is tuple and set(map(type, value)) <= _PLAIN:
        return _js_tuple(value)
    return _encode(value)


#: Element types of a flat tuple whose cached text is right for every equal tuple: ``str`` and
#: exact ``int`` (``1 == 1.0 == True`` would share a cache slot; nested tuples are not cached).
_PLAIN = frozenset((str, int))


def _unjs(text: str) -> list[Any]:
    value = json.loads(text)
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON array, got {text[:40]!r}")
    return value


# -- row mapping: record -> row (tuple in column order), row -> record -------------------------

#: The ``threads`` columns of schema 3 to 10 (the v2 files' migration writes these).
THREAD_COLUMNS_V3 = ("thread, kind, vendor_key, name, inbox, history_url, lifetime_ms, "
                     "generation, intent_id, last_activity_ms, last_problem, types")  # fmt: skip
#: Schema 11 added ``doc_expires_ms`` (:mod:`vrmproto.store._migrate_v11`).
THREAD_COLUMNS = THREAD_COLUMNS_V3 + ", doc_expires_ms"


def thread_row(t: ThreadRecord) -> tuple[object, ...]:
    return (t.thread, t.kind.value, t.vendor_key, t.name, t.inbox, t.history_url, t.lifetime_ms,
            t.generation, t.intent_id, t.last_activity_ms, t.last_problem,
            None if t.types is None else _js(t.types), t.doc_expires_ms)  # fmt: skip


def thread_record(row: Sequence[Any]) -> ThreadRecord:
    types = None if row[11] is None else tuple(str(x) for x in _unjs(row[11]))
    return ThreadRecord(bytes(row[0]), ThreadKind(row[1]), bytes(row[2]), row[3], row[4], row[5],
                        row[6], row[7], None if row[8] is None else bytes(row[8]), row[9],
                        row[10], types, row[12])  # fmt: skip


DRAFT_COLUMNS = "thread, seq, kind, payload"


def draft_row(d: DraftRecord) -> tuple[object, ...]:
    return (d.thread, d.seq, d.kind, d.payload)


def draft_record(row: Sequence[Any]) -> DraftRecord:
    return DraftRecord(bytes(row[0]), row[1], row[2], bytes(row[3]))


SAVE_POINT_COLUMNS = "thread, msg_hash, length, head, state, after"


def save_point_row(p: SavePoint) -> tuple[object, ...]:
    return (p.thread, p.msg_hash, p.length, p.head, p.state, p.after)


def save_point_record(row: Sequence[Any]) -> SavePoint:
    return SavePoint(bytes(row[0]), bytes(row[1]), row[2], bytes(row[3]), bytes(row[4]), row[5])


HELD_COLUMNS = ("thread, field, value, category, source, collected_ms, purposes, share, "
                "expires_ms")  # fmt: skip


def held_row(h: HeldRecord) -> tuple[object, ...]:
    return (h.thread, h.field, h.value, h.category, h.source, h.collected_ms, _js(h.purposes),
            h.share, h.expires_ms)  # fmt: skip


def held_record(row: Sequence[Any]) -> HeldRecord:
    return HeldRecord(bytes(row[0]), row[1], row[2], row[3], row[4], row[5],
                      tuple(int(p) for p in _unjs(row[6])), bytes(row[7]), row[8])  # fmt: skip


INTENT_COLUMNS = ("intent_id, what, place, start_ms, end_ms, max_price_amount, "
                  "max_price_currency, reply_by_ms, sent_ms, vendors, declines, constraints, "
                  "memberships, relay_index, relays")  # fmt: skip


def intent_row(i: IntentRecord) -> tuple[object, ...]:
    amount, currency = i.max_price if i.max_price is not None else (None, None)
    return (i.intent_id, i.what, i.where, i.start_ms, i.end_ms, amount, currency, i.reply_by_ms,
            i.sent_ms, _js(i.vendors), _js(tuple(i.declines)), _js(i.constraints),
            _js(i.memberships), i.relay_index, _js(i.relays))  # fmt: skip


def intent_record(row: Sequence[Any]) -> IntentRecord:
    price = None if row[5] is None else (int(row[5]), str(row[6]))
    return IntentRecord(bytes(row[0]), row[1], row[2], row[3], row[4], price, row[7], row[8],
                        tuple(str(v) for v in _unjs(row[9])),
                        tuple((str(v), str(r)) for v, r in _unjs(row[10])),
                        tuple(str(c) for c in _unjs(row[11])),
                        tuple(str(m) for m in _unjs(row[12])), row[13],
                        tuple(str(u) for u in _unjs(row[14])))  # fmt: skip


OFFER_COLUMNS = (
    "hash, intent_id, thread, vendor, url, vendor_key, description, price_amount, "
    "price_currency, valid_until_ms, conditions, accepts_terms, received_ms"
)


def offer_row(o: OfferRecord) -> tuple[object, ...]:
    return (o.hash, o.intent_id, o.thread, o.vendor, o.url, o.vendor_key, o.description,
            o.price[0], o.price[1], o.valid_until_ms, _js(o.conditions), _js(o.accepts_terms),
            o.received_ms)  # fmt: skip


def offer_record(row: Sequence[Any]) -> OfferRecord:
    return OfferRecord(bytes(row[1]), bytes(row[0]), bytes(row[2]), row[3], row[4], bytes(row[5]),
                       row[6], (row[7], row[8]), row[9], tuple(str(c) for c in _unjs(row[10])),
                       tuple(str(t) for t in _unjs(row[11])), row[12])  # fmt: skip


NOTE_COLUMNS = ("share, thread, vendor, fields, purposes, categories, expires_ms, shared_ms, "
                "status, withdrawn_ms")  # fmt: skip


def note_row(n: ShareNote) -> tuple[object, ...]:
    return (n.share, n.thread, n.vendor, _fields_js(n.fields), _js(n.purposes),
            _js(n.categories), n.expires_ms, n.shared_ms, n.status, n.withdrawn_ms)  # fmt: skip


#: The fields tuple :func:`_fields_js` encoded last, and its text (one slot).
_LAST_FIELDS: list[tuple[object, str]] = [((), "[]")]


def _fields_js(fields: tuple[tuple[str, str], ...]) -> str:
    """A note's fields as JSON. The note of a share is written twice, queued and then with its
    outcome (``dataclasses.replace``: the same fields tuple), so the text of the last tuple
    encoded is kept, for that tuple only: the values are personal data, not kept any longer
    than the next note (#12). The slot holds one tuple, replaced whole: safe from any thread."""
    last = _LAST_FIELDS[0]
    if last[0] is fields:
        return last[1]
    text = _js(tuple(fields))
    if type(fields) is tuple and all(type(f) is tuple for f in fields):  # cannot change
        _LAST_FIELDS[0] = (fields, text)
    return text


def note_record(row: Sequence[Any]) -> ShareNote:
    return ShareNote(bytes(row[0]), bytes(row[1]), row[2],
                     tuple((str(k), str(v)) for k, v in _unjs(row[3])),
                     tuple(int(p) for p in _unjs(row[4])), tuple(int(c) for c in _unjs(row[5])),
                     row[6], row[7], row[8], row[9])  # fmt: skip


# -- writes ------------------------------------------------------------------------------------


#: Most rows one multi-row INSERT of a group writes (well under SQLite's variable limit).
ROWS_PER_INSERT = 128


def insert_rows(
    conn: sqlite3.Connection, columns: str, rows: list[tuple[object, ...]], tail: str = ""
) -> int:
    """``columns (?, …), (?, …) … tail``: many rows in one statement, so in one step (one
    release of the GIL instead of one per row); rows are applied in order, as executemany
    would. Statements hold a power of two of rows (23 rows: 16, 4, 2, 1), so a few prepared
    statements, kept in the connection's cache, serve every batch size. Returns the rows
    changed (inserted or updated)."""
    if not rows:
        return 0
    one = "(" + ", ".join("?" * len(rows[0])) + ")"
    start, left, changed = 0, len(rows), 0
    while left:
        size = min(ROWS_PER_INSERT, 1 << (left.bit_length() - 1))
        chunk = rows[start : start + size]
        sql = columns + ", ".join([one] * size) + tail
        changed += conn.execute(sql, [value for row in chunk for value in row]).rowcount
        start, left = start + size, left - size
    return changed


def upsert_sql(table: str, columns: str, key: str) -> tuple[str, str]:
    """``(INSERT INTO table (columns) VALUES , ON CONFLICT (key) DO UPDATE SET …)``: the two
    halves around the value tuples, for :func:`insert_rows`."""
    names = [c.strip() for c in columns.split(",")]
    keys = {k.strip() for k in key.split(",")}
    sets = ", ".join(f"{n} = excluded.{n}" for n in names if n not in keys)
    head = f"INSERT INTO {table} ({columns}) VALUES "  # noqa: S608 -- names from this module
    return head, f" ON CONFLICT ({key}) DO UPDATE SET {sets}"


def kept_upsert_sql(table: str, columns: str, key: str, kept: str) -> str:
    """One row's upsert that leaves the ``kept`` columns — indexed ones a row keeps for life,
    such as a relationship's keys — out of its SET, and updates only a row whose ``kept``
    columns already hold the new values (else it changes nothing: rowcount 0).

    An UPDATE rewrites the entries of every index one of whose columns it SETs, even to the
    same value: a page of each such index written to the WAL, per commit, for nothing (#12).
    The caller runs the full upsert when this one changed nothing (:func:`upsert_kept`)."""
    names = [c.strip() for c in columns.split(",")]
    keys = {k.strip() for k in key.split(",")}
    stay = [k.strip() for k in kept.split(",")]
    sets = ", ".join(f"{n} = excluded.{n}" for n in names if n not in keys and n not in stay)
    same = " AND ".join(f"{n} = excluded.{n}" for n in stay)
    return (f"INSERT INTO {table} ({columns}) VALUES {_one(columns)} "  # noqa: S608 -- ours
            f"ON CONFLICT ({key}) DO UPDATE SET {sets} WHERE {same}")  # fmt: skip


def upsert_kept(conn: sqlite3.Connection, kept_sql: str, full_sql: str,
                rows: Sequence[tuple[object, ...]]) -> None:  # fmt: skip
    """Upsert ``rows`` one by one with ``kept_sql`` (:func:`kept_upsert_sql`), and with
    ``full_sql`` each row whose kept columns changed (the kept upsert then wrote nothing)."""
    for row in rows:
        if conn.execute(kept_sql, row).rowcount != 1:
            conn.execute(full_sql, row)


def _one(columns: str) -> str:
    return "(" + ", ".join("?" * len(columns.split(","))) + ")"


_INSERT_DRAFT = f"INSERT INTO drafts ({DRAFT_COLUMNS}) VALUES (?, ?, ?, ?)"  # noqa: S608
THREADS_UPSERT = upsert_sql("threads", THREAD_COLUMNS, "thread")
SAVE_POINTS_UPSERT = upsert_sql("save_points", SAVE_POINT_COLUMNS, "thread, msg_hash")
HELD_UPSERT = upsert_sql("held", HELD_COLUMNS, "thread, field")
_INTENTS_UPSERT = upsert_sql("intents", INTENT_COLUMNS, "intent_id")
_OFFERS_UPSERT = upsert_sql("offers", OFFER_COLUMNS, "hash")
_NOTES_UPSERT = upsert_sql("share_notes", NOTE_COLUMNS, "share")
#: A thread's vendor key (indexed) and a share note's thread (indexed) do not change: not SET.
_THREADS_KEPT = kept_upsert_sql("threads", THREAD_COLUMNS, "thread", "vendor_key")
_NOTES_KEPT = kept_upsert_sql("share_notes", NOTE_COLUMNS, "share", "thread")


def upsert_held(conn: sqlite3.Connection, held: Sequence[HeldRecord]) -> None:
    """Part 16: upsert held rows by ``(thread, field)``, in order.

    The rows of one share differ only in field, value and category: each run of consecutive
    records sharing the rest is one statement binding those once (:func:`_held_run`) — a
    share's eight rows bind 30 values instead of 72, each a conversion and, for text and
    blobs, a copy (#12)."""
    start = 0
    for end in range(1, len(held) + 1):
        if end == len(held) or _held_shared(held[end]) != _held_shared(held[start]):
            _held_run(conn, held[start:end])
            start = end


def _held_shared(h: HeldRecord) -> tuple[object, ...]:
    return (h.thread, h.source, h.collected_ms, h.purposes, h.share, h.expires_ms)


def _held_run(conn: sqlite3.Connection, run: Sequence[HeldRecord]) -> None:
    """Upsert ``run`` (records equal in :func:`_held_shared`), in order, in statements of a
    power of two of rows (as :func:`insert_rows`)."""
    first = run[0]
    shared = (first.thread, first.source, first.collected_ms, _js(first.purposes), first.share,
              first.expires_ms)  # fmt: skip
    start, left = 0, len(run)
    while left:
        size = min(ROWS_PER_INSERT, 1 << (left.bit_length() - 1))
        values: list[object] = list(shared)
        for h in run[start : start + size]:
            values += (h.field, h.value, h.category)
        conn.execute(_held_run_sql(size), values)
        start, left = start + size, left - size


@functools.lru_cache(maxsize=16)
def _held_run_sql(size: int) -> str:
    """The upsert of ``size`` held rows sharing ``?1``–``?6`` (thread, source, collected_ms,
    purposes, share, expires_ms), each row's field, value and category after them. The rows
    of a ``VALUES`` list are inserted in order; ``WHERE true`` parses the upsert clause as one
    (https://www.sqlite.org/lang_upsert.html, "Parsing Ambiguity")."""
    rows = ", ".join(f"(?{7 + 3 * i}, ?{8 + 3 * i}, ?{9 + 3 * i})" for i in range(size))
    return (f"INSERT INTO held ({HELD_COLUMNS}) SELECT ?1, column1, column2, column3, ?2, ?3, "  # noqa: S608
            f"?4, ?5, ?6 FROM (VALUES {rows}) WHERE true{HELD_UPSERT[1]}")  # fmt: skip


@functools.lru_cache(maxsize=64)
def _upsert_one(sql: tuple[str, str], columns: str) -> str:
    return sql[0] + _one(columns) + sql[1]


def _upsert(conn: sqlite3.Connection, sql: tuple[str, str], columns: str,
            rows: Sequence[tuple[object, ...]]) -> None:  # fmt: skip
    """Upsert ``rows``: one ``execute`` for the usual single row (``executemany`` costs more
    per call), the statement text built once."""
    if len(rows) == 1:
        conn.execute(_upsert_one(sql, columns), rows[0])
    elif rows:
        conn.executemany(_upsert_one(sql, columns), rows)


def _delete(conn: sqlite3.Connection, sql: str, keys: Sequence[tuple[object, ...]]) -> None:
    if keys:
        conn.executemany(sql, keys)


def apply_threads(conn: sqlite3.Connection, c: Commit) -> None:
    """Part 2 of a Commit (thread records), applied right after its relationships."""
    if not c.threads:
        return
    upsert_kept(conn, _THREADS_KEPT, _upsert_one(THREADS_UPSERT, THREAD_COLUMNS),
                [thread_row(t) for t in c.threads])  # fmt: skip


def apply_rows(conn: sqlite3.Connection, c: Commit) -> None:
    """Parts 10–20 of a Commit (see :class:`~vrmproto.store.Commit`), in order."""
    if not (c.drafts_done or c.drafts_add or c.save_points_clear or c.save_points_done
            or c.save_points or c.held_drop or c.held or c.intents or c.offers
            or c.share_notes or c.intents_drop):  # fmt: skip
        return  # an inbox step without them: no statement to prepare
    _delete(conn, "DELETE FROM drafts WHERE thread = ? AND seq = ?", c.drafts_done)
    for d in c.drafts_add:  # one by one: a taken slot names itself in the conflict
        try:
            conn.execute(_INSERT_DRAFT, draft_row(d))
        except sqlite3.IntegrityError as exc:
            raise StoreConflict(f"draft {d.seq} of thread {d.thread.hex()} is taken") from exc
    _delete(conn, "DELETE FROM save_points WHERE thread = ?", [(t,) for t in c.save_points_clear])
    _delete(conn, "DELETE FROM save_points WHERE thread = ? AND msg_hash = ?", c.save_points_done)
    _upsert(
        conn, SAVE_POINTS_UPSERT, SAVE_POINT_COLUMNS, [save_point_row(p) for p in c.save_points]
    )
    _delete(conn, "DELETE FROM held WHERE thread = ? AND share = ?", c.held_drop)
    upsert_held(conn, c.held)
    _upsert(conn, _INTENTS_UPSERT, INTENT_COLUMNS, [intent_row(i) for i in c.intents])
    _upsert(conn, _OFFERS_UPSERT, OFFER_COLUMNS, [offer_row(o) for o in c.offers])
    upsert_kept(conn, _NOTES_KEPT, _upsert_one(_NOTES_UPSERT, NOTE_COLUMNS),
                [note_row(n) for n in c.share_notes])  # fmt: skip
    for intent_id in c.intents_drop:
        conn.execute("DELETE FROM offers WHERE intent_id = ?", (intent_id,))
        conn.execute("DELETE FROM intents WHERE intent_id = ?", (intent_id,))


def drop_thread_rows(conn: sqlite3.Connection, thread: bytes) -> None:
    """Part 21 for the typed tables: every row of ``thread`` but outbox items and share notes."""
    for table in ("threads", "drafts", "save_points", "held"):
        conn.execute(f"DELETE FROM {table} WHERE thread = ?", (thread,))  # noqa: S608


# -- reads -------------------------------------------------------------------------------------

SELECT_THREAD = f"SELECT {THREAD_COLUMNS} FROM threads "  # noqa: S608
SELECT_DRAFT = f"SELECT {DRAFT_COLUMNS} FROM drafts "  # noqa: S608
SELECT_SAVE_POINT = f"SELECT {SAVE_POINT_COLUMNS} FROM save_points "  # noqa: S608
SELECT_HELD = f"SELECT {HELD_COLUMNS} FROM held "  # noqa: S608
SELECT_INTENT = f"SELECT {INTENT_COLUMNS} FROM intents "  # noqa: S608
SELECT_OFFER = f"SELECT {OFFER_COLUMNS} FROM offers "  # noqa: S608
SELECT_NOTE = f"SELECT {NOTE_COLUMNS} FROM share_notes "  # noqa: S608
#: Every note, and one thread's (a range of the key ``(thread, share)``, schema 13).
NOTES_ALL = SELECT_NOTE + "ORDER BY shared_ms, share"
NOTES_OF_THREAD = SELECT_NOTE + "WHERE thread = ? ORDER BY shared_ms, share"
