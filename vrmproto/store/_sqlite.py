"""The embedded store: one SQLite file in WAL mode, one writer thread doing group commit.

Durability, spec §12 (durability). The database runs with ``journal_mode=WAL`` and
``synchronous=FULL``: every COMMIT fsyncs the WAL before it returns (with NORMAL a committed
transaction may still roll back after a power loss). A :meth:`SQLiteStore.commit` call resolves
only after the COMMIT that contains its changes has returned — "receipt only after commit".

Group commit. One dedicated thread owns the only write connection. ``commit()`` puts the Commit
on a queue and awaits a future. The writer takes everything queued (up to :data:`BATCH_CAP`),
runs ``BEGIN IMMEDIATE``, applies each Commit inside its own ``SAVEPOINT`` — a Commit that hits
a uniqueness rule is rolled back alone and gets :class:`StoreConflict` — and then issues one
``COMMIT``: one fsync for the whole batch (a batch of one job needs no savepoint: its
transaction is rolled back instead). Only then are the futures resolved on their event
loops (one wake-up per loop and batch). If the COMMIT fails, every future of the batch gets
:class:`StoreError`. So many concurrent messages share one fsync while each receipt still waits
for its own commit. Two refinements keep the writer's cost per message low under load:
consecutive Commits that only upsert and insert (one inbox step each) are written together, a
few multi-row statements in one savepoint, falling back to one savepoint each if any of them
would fail (:func:`_apply_group`); and a batch taken while writes were queued waits
:data:`GATHER_DELAY_S` once for more (:data:`GATHER_BELOW`), as does a lone write taken just
after a group (:data:`GATHER_AFTER_S`). Statement journals stay in memory
(``temp_store = MEMORY``, :func:`_connect_writer`).
Reads use separate read-only connections on a small thread pool; WAL lets them run beside the
writer, and each read sees every commit whose future has resolved.

Inline commits (``SQLiteStore.open(path, inline=True)``, the customer's agent, #12). A write
runs its transaction right on the calling thread, on a ``synchronous=NORMAL`` connection
without automatic checkpoints, and the writer thread only fsyncs the ``-wal`` file — once for
every commit made before that fsync started — and checkpoints now and then; ``commit()``
returns only after the fsync covering it returned, and a read waits for the commits made
before it to be durable. A write whose ``BEGIN IMMEDIATE`` finds the write lock taken (another
process or store object), or that comes from a thread other than the opener's, goes to the
writer thread as above. Why this is as durable as ``synchronous=FULL``, and safe on power loss
across checkpoints and WAL restarts: :mod:`vrmproto.store._sqlite_durable`. The writes that
concurrent tasks make in one turn of the event loop after its first — a fan-out's branches —
run together in one transaction, each in its own savepoint (:meth:`SQLiteStore._write_in_turn`):
group commit across an agent's relationships, the pages they share written once.

Schema. ``PRAGMA user_version`` numbers the schema; ``_MIGRATIONS`` brings an older file up one
version per transaction when it is opened, and a newer file is refused. Version 2 dropped
``UNIQUE (thread, msg_hash)`` from ``history`` (see :mod:`vrmproto.store._base` for why the
store need not keep that rule): its index, keyed by a random hash, cost a write to a random page
per stored message. ``history_entry`` and erasure now find a hash through the thread prefix of
the ``(thread, idx)`` index; both are rare (withdrawn or expired shares).
Version 3 made every persistent thing a typed record with its own table
(:mod:`vrmproto.store._sqlite_rows`): the v2 blobs in ``meta`` (``client.thread.``,
``client.types.``, ``held:``, ``rollback:``) become rows in the step's transaction, and
``meta`` keeps only store-level settings (:mod:`vrmproto.store._migrate_v3`). Version 4 added
the event feed (:mod:`vrmproto.store._sqlite_events`), version 5 the relayed intentcast's
``intents.relay_index`` and ``intents.relays`` (spec §15.2-4); version 6 indexes by share only
the events that carry personal data (the full index cost a random page write per event);
version 7 indexes a customer's relationships by URL and by name and drops ``held_by_share``
(:mod:`vrmproto.store._rel_query`); version 8 numbers events without ``AUTOINCREMENT``, whose
counter row cost a page of the WAL per transaction (:mod:`vrmproto.store._migrate_v8`);
version 9 drops the outbox's index by due time, two pages of the agent's WAL per message it
sends (:mod:`vrmproto.store._migrate_v9`); version 10 drops ``share_notes_by_thread``, which
no query used, and the outbox's index by thread, three pages of the agent's WAL per share
(:mod:`vrmproto.store._migrate_v10`); version 11 adds ``threads.doc_expires_ms``, when the
vendor's discovery document expires (:mod:`vrmproto.store._migrate_v11`); version 12 keeps the
events a webhook is retrying, since when and how often (:mod:`vrmproto.store._migrate_v12`);
version 13 keys ``share_notes`` by ``(thread, share)``, so that one thread's notes are read
through the key, not by scanning every note, and takes the values of shares dropped before it
out of older address.updated events (:mod:`vrmproto.store._migrate_v13`,
:func:`vrmproto.store._redact.dropped_before`; docs/events.md); version 14 changes no table: from
it on a relationship's ``data`` may hold the core's stored state form (its shares in fixed-width
entries that keep their places, :meth:`vrmproto.Relationship.to_state`), which older code cannot
read — the version makes it refuse the file instead (rows written before stay as they are and
are read as before); version 15 changes no table either: it takes out of the feed, once, the
values that shares dropped before session 20 had replaced (:mod:`vrmproto.store._migrate_v15`).

Files (spec §11.13-1). The database holds histories and, at a vendor, customers' shared data in
clear, so :meth:`SQLiteStore.open` creates it with mode 0600 (SQLite gives its ``-wal`` and
``-shm`` files the database file's mode) and tightens a database, WAL or SHM file that others
may read to 0600, with a warning on the ``vrmproto.files`` logger. The directory is the
caller's: a data directory's owner makes it 0700 (:func:`vrmproto._files.private_dir`).

Locks (spec §11.11-2). :meth:`SQLiteStore.lock` hands out named locks shared with every other
process and store object on the same file (:class:`~vrmproto.store._locks.FileLocks`, in
``<db>-locks/``); the customer's agent holds one per relationship for each step it takes in it.

A PostgreSQL backend (a vendor running many server processes against one database) implements
the same :class:`~vrmproto.store.Store` protocol, so it is a backend, not a rewrite: each
``commit()`` is one transaction on a pooled connection (asyncpg); the same UNIQUE constraints on
``history(thread, idx)`` and ``dedupe(sender, msg_id)`` do the de-duplication across processes
(a unique violation maps to :class:`StoreConflict`, and a losing process re-reads the stored
response). ``history(thread, msg_hash)`` needs no constraint there either: a message's hash
covers its header (§4.4-1), whose ``prev`` is the hash of the previous message the same sender
sent in the thread (§4.2-8); the relationship engine signs each of its messages with ``prev`` its
own last one, and accepts a message only when ``prev`` is the last one it holds from that sender
(§4.5-6), which a message already in the history no longer passes — so the same message cannot
stand at two places in one thread's history (§8.2-2). Two processes applying the same message at
once both pass that check, and then collide on its history slot and its dedupe key.
Relationship upserts are ``INSERT … ON CONFLICT DO UPDATE`` or take ``SELECT … FOR UPDATE`` row
locks; outbox workers claim rows with ``FOR UPDATE SKIP LOCKED``. Group commit needs no writer
thread there: with ``synchronous_commit=on`` PostgreSQL already flushes concurrent transactions'
WAL together, and ``commit_delay`` widens the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vrmproto._closing import AsyncClosing
from vrmproto._files import private_dir, private_file
from vrmproto.store import _sqlite_durable as durable
from vrmproto.store import _sqlite_events as feed
from vrmproto.store import _sqlite_rows as typed
from vrmproto.store._base import (
    Commit,
    DeadLetter,
    DedupeRecord,
    DraftRecord,
    EventRecord,
    FailingEvent,
    HeldRecord,
    HistoryEntry,
    IntentRecord,
    OfferRecord,
    OutboxItem,
    RelationshipRecord,
    SavePoint,
    SchemaTooNew,
    ShareNote,
    StoreBusy,
    StoreConflict,
    StoreCounts,
    StoreError,
    StoreUsage,
    ThreadKind,
    ThreadRecord,
    check_next_index,
)
from vrmproto.store._counts import read_counts
from vrmproto.store._locks import FileLocks
from vrmproto.store._migrate_v3 import migrate_2_to_3
from vrmproto.store._migrate_v8 import migrate_7_to_8
from vrmproto.store._migrate_v9 import migrate_8_to_9
from vrmproto.store._migrate_v10 import migrate_9_to_10
from vrmproto.store._migrate_v11 import migrate_10_to_11
from vrmproto.store._migrate_v12 import migrate_11_to_12
from vrmproto.store._migrate_v13 import migrate_12_to_13
from vrmproto.store._migrate_v15 import migrate_14_to_15
from vrmproto.store._rel_query import RelationshipsWhere, migrate_6_to_7
from vrmproto.store._trim import TRIM_BATCH

__all__ = ["BATCH_CAP", "SCHEMA_VERSION", "SQLiteStore", "StoreStats"]

BATCH_CAP = 256
"""Most Commits (and other writes) one transaction takes from the queue."""

GATHER_BELOW = 32
"""A batch smaller than this, taken while other writes were queued (so under concurrent load),
waits :data:`GATHER_DELAY_S` once for more: fewer, larger transactions cost less per write
(one fsync and one write of each shared page per transaction). A lone write never waits."""
GATHER_DELAY_S = 0.001
GATHER_AFTER_S = 0.005
"""A lone write taken less than this after a transaction of several writes returned waits
:data:`GATHER_DELAY_S` too. A few customers sending steadily reach the writer one by one, just
after each group commit: each first one was written alone, with a COMMIT and fsync of its own
(``bench/e2e.py --k 4 --m 256``: a third of the transactions; each costs the vendor ~200 us of
CPU beyond its rows). A lone writer (one customer) never made a group, so never waits."""

_T = TypeVar("_T")

# The ``sqlite3`` module binds a parameter of type int, float, str or bytearray as it is, and
# passes every other one — every ``bytes``: keys, hashes, envelopes, state blobs, some forty
# per vendor Commit — through its adapter look-up first: a key tuple built, the registry
# searched, ``__adapt__`` looked up on its protocol type (an AttributeError formatted and
# dropped) and ``__conform__`` on the value, before the value itself is bound. An adapter
# registered for exactly ``bytes`` ends that look-up at the registry; ``bytes.__bytes__(b)``
# returns ``b`` itself (a method call without arguments to parse: ``bytes(b)`` cost half of
# what it saved), so what is bound is unchanged, for this module and for any other user of
# ``sqlite3`` in the process (the registry is the module's). Callgrind, the vendor Commits of
# ``bench/steps.py`` replayed in a plain loop: 716 K -> 634 K instructions per Commit (#12).
# An adapter for ``bytes`` the application registered before it is left in place.
if (bytes, sqlite3.PrepareProtocol) not in sqlite3.adapters:
    sqlite3.register_adapter(bytes, bytes.__bytes__)

_BUSY_TIMEOUT_S = 5.0

# -- schema ----------------------------------------------------------------------------------

_SCHEMA_V1 = (
    """CREATE TABLE relationships (
        thread BLOB PRIMARY KEY, role TEXT NOT NULL, local_key BLOB NOT NULL,
        peer_key BLOB NOT NULL, state TEXT NOT NULL, data BLOB NOT NULL, label TEXT NOT NULL,
        peer_url TEXT NOT NULL, updated_ms INTEGER NOT NULL)""",
    "CREATE INDEX relationships_by_local_key ON relationships(local_key)",
    "CREATE INDEX relationships_by_peer_key ON relationships(peer_key)",
    """CREATE TABLE history (
        thread BLOB NOT NULL REFERENCES relationships(thread), idx INTEGER NOT NULL,
        msg_hash BLOB NOT NULL, entry_hash BLOB NOT NULL, envelope BLOB NOT NULL,
        direction TEXT NOT NULL, recorded_ms INTEGER NOT NULL,
        UNIQUE (thread, idx), UNIQUE (thread, msg_hash))""",
    """CREATE TABLE dedupe (
        sender BLOB NOT NULL, msg_id BLOB NOT NULL, msg_hash BLOB NOT NULL,
        response BLOB NOT NULL, expires_ms INTEGER NOT NULL, PRIMARY KEY (sender, msg_id))""",
    "CREATE INDEX dedupe_by_expiry ON dedupe(expires_ms)",
    """CREATE TABLE outbox (
        item_id INTEGER PRIMARY KEY AUTOINCREMENT, destination TEXT NOT NULL,
        thread BLOB NOT NULL, msg_hash BLOB NOT NULL, envelope BLOB NOT NULL,
        attempts INTEGER NOT NULL, next_attempt_ms INTEGER NOT NULL, last_error TEXT NOT NULL,
        created_ms INTEGER NOT NULL)""",
    "CREATE INDEX outbox_by_due ON outbox(next_attempt_ms, item_id)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
)


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1:
        conn.execute(statement)


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Rebuild ``history`` without ``UNIQUE (thread, msg_hash)``.

    That rule is the engine's, not the store's (see :mod:`vrmproto.store._base`), and its
    index, keyed by a random hash, cost a random page write per stored message. SQLite cannot
    drop a constraint, so the table is rebuilt (https://www.sqlite.org/lang_altertable.html,
    "Making Other Kinds Of Table Schema Changes": create, copy, drop, rename) inside the step's
    transaction. The procedure's ``foreign_keys = OFF`` (impossible inside a transaction) is
    not needed: nothing references ``history``, so dropping it deletes no parent row, and each
    row copied keeps its ``thread``, which the same foreign key already held to. An orphan row
    (only possible if written with foreign keys off) makes the copy fail and the step roll back.
    """
    conn.execute(
        """CREATE TABLE history_v2 (
        thread BLOB NOT NULL REFERENCES relationships(thread), idx INTEGER NOT NULL,
        msg_hash BLOB NOT NULL, entry_hash BLOB NOT NULL, envelope BLOB NOT NULL,
        direction TEXT NOT NULL, recorded_ms INTEGER NOT NULL,
        UNIQUE (thread, idx))"""
    )
    conn.execute(
        "INSERT INTO history_v2 (rowid, thread, idx, msg_hash, entry_hash, envelope, "
        "direction, recorded_ms) SELECT rowid, thread, idx, msg_hash, entry_hash, envelope, "
        "direction, recorded_ms FROM history ORDER BY rowid"
    )
    conn.execute("DROP TABLE history")
    conn.execute("ALTER TABLE history_v2 RENAME TO history")


def _migrate_13_to_14(conn: sqlite3.Connection) -> None:
    """No table changes: the version says that ``data`` may hold the core's stored state form,
    so that older code refuses the file rather than fail on a row (see the module docstring)."""


_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migrate_0_to_1,
    _migrate_1_to_2,
    migrate_2_to_3,
    feed.migrate_3_to_4,
    typed.migrate_4_to_5,
    feed.migrate_5_to_6,
    migrate_6_to_7,
    migrate_7_to_8,
    migrate_8_to_9,
    migrate_9_to_10,
    migrate_10_to_11,
    migrate_11_to_12,
    migrate_12_to_13,
    _migrate_13_to_14,
    migrate_14_to_15,
)
"""``_MIGRATIONS[n]`` takes the schema from version n to n + 1 (``PRAGMA user_version``)."""

SCHEMA_VERSION = len(_MIGRATIONS)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`, one step per transaction.

    The version is re-read under the write lock, so two processes opening a fresh file at once
    do not both run a step.
    """
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(version, SCHEMA_VERSION)
            if version == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return
            _MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1:d}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _connect_writer(path: Path) -> sqlite3.Connection:
    """The writer thread's connection. ``temp_store = MEMORY``: a statement that may fail
    half-way inside a transaction (each multi-row INSERT of a group, each statement after a
    SAVEPOINT) keeps a statement journal of the pages it changes, which SQLite spills to a
    temporary file past 64 KiB — a group of relationships whose state blobs run to kilobytes
    did so per transaction (``/var/tmp/etilqs_*``: an access, open, unlink, close and a pwrite
    per page, next to the WAL's own writes; ``bench/e2e.py --m 600`` under strace). In memory
    they cost a copy of each page."""
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"cannot put {path} in WAL mode (journal_mode is {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")  # fsync the WAL on every COMMIT
        conn.execute("PRAGMA fullfsync = ON")  # macOS: F_FULLFSYNC; ignored elsewhere
        conn.execute("PRAGMA temp_store = MEMORY")  # statement journals: see _connect_writer
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000):d}")
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_inline(path: Path) -> sqlite3.Connection:
    """The connection for commits made on the caller's thread (:mod:`._sqlite_durable`):
    ``synchronous=NORMAL`` (no sync inside COMMIT; still the WAL header sync on a WAL restart
    and the syncs of a checkpoint), no automatic checkpoint, and no busy wait: a taken write
    lock sends the write to the writer thread instead of blocking the caller."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{path} is not in WAL mode (journal_mode is {mode!r})")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA fullfsync = ON")  # macOS, for the WAL header sync; ignored elsewhere
        conn.execute("PRAGMA checkpoint_fullfsync = ON")
        conn.execute("PRAGMA temp_store = MEMORY")  # see _connect_writer
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 0")
    except BaseException:
        conn.close()
        raise
    return conn


def _busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is SQLITE_BUSY (another connection holds the write lock) or LOCKED."""
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    )


def _private_files(path: Path, locks: FileLocks) -> None:
    """Create the database file 0600 if it is missing, tighten it and its WAL and SHM files to
    0600 if they are looser (with a warning), and the lock directory to 0700 (§11.13-1)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for suffix in ("", "-wal", "-shm"):
            private_file(path.with_name(path.name + suffix))
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror or exc}") from exc
    else:
        try:
            os.fchmod(fd, 0o600)  # exactly: whatever the umask (SQLite copies it to the WAL)
        finally:
            os.close(fd)
    private_dir(locks.directory, create=False)  # made on first use


def _connect_reader(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(
        uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )


# -- SQL ----------------------------------------------------------------------------------------

_SELECT_REL = (
    "SELECT thread, role, local_key, peer_key, state, data, label, peer_url, updated_ms "
    "FROM relationships "
)
#: The same columns with ``data`` read as empty: the state blob is not read.
_SELECT_REL_NO_DATA = (
    "SELECT thread, role, local_key, peer_key, state, X'', label, peer_url, updated_ms "
    "FROM relationships "
)
_SELECT_HIST = (
    "SELECT thread, idx, msg_hash, entry_hash, envelope, direction, recorded_ms FROM history "
)
_SELECT_DEDUPE = "SELECT sender, msg_id, msg_hash, response, expires_ms FROM dedupe "
_SELECT_OUTBOX = (
    "SELECT item_id, destination, thread, msg_hash, envelope, attempts, next_attempt_ms, "
    "last_error, created_ms FROM outbox "
)


_REL_COLUMNS = (
    "INSERT INTO relationships (thread, role, local_key, peer_key, state, data, label, "
    "peer_url, updated_ms) VALUES "
)
_REL_UPSERT = (
    " ON CONFLICT (thread) DO UPDATE SET role = excluded.role, "
    "local_key = excluded.local_key, peer_key = excluded.peer_key, "
    "state = excluded.state, data = excluded.data, label = excluded.label, "
    "peer_url = excluded.peer_url, updated_ms = excluded.updated_ms"
)
_UPSERT_REL = _REL_COLUMNS + "(?, ?, ?, ?, ?, ?, ?, ?, ?)" + _REL_UPSERT
#: :data:`_REL_UPSERT` leaving the indexed keys, URL and label out of the SET: it updates only
#: a row whose keys already hold the new values (see :func:`typed.kept_upsert_sql`). The role
#: stays out too: the partial URL and name indexes (``WHERE role = 'customer'``) are rewritten
#: by an UPDATE that SETs a column of their WHERE, even to the same value — two pages of the
#: WAL per customer's commit, four per share (an agent's WAL read with autocheckpoint off, #12).
_REL_UPSERT_KEPT = (
    " ON CONFLICT (thread) DO UPDATE SET state = excluded.state, "
    "data = excluded.data, updated_ms = excluded.updated_ms "
    "WHERE role = excluded.role AND local_key = excluded.local_key "
    "AND peer_key = excluded.peer_key AND label = excluded.label "
    "AND peer_url = excluded.peer_url"
)
_UPSERT_REL_KEPT = _REL_COLUMNS + "(?, ?, ?, ?, ?, ?, ?, ?, ?)" + _REL_UPSERT_KEPT
_META_COLUMNS = "INSERT INTO meta (key, value) VALUES "
_META_UPSERT = " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
_UPSERT_META = _META_COLUMNS + "(?, ?)" + _META_UPSERT
_HIST_COLUMNS = (
    "INSERT INTO history (thread, idx, msg_hash, entry_hash, envelope, direction, "
    "recorded_ms) VALUES "
)
_INSERT_HIST = _HIST_COLUMNS + "(?, ?, ?, ?, ?, ?, ?)"
_DEDUPE_COLUMNS = "INSERT INTO dedupe (sender, msg_id, msg_hash, response, expires_ms) VALUES "
_INSERT_DEDUPE = _DEDUPE_COLUMNS + "(?, ?, ?, ?, ?)"
_HEAD = "SELECT max(idx) FROM history WHERE thread = ?"
#: A history row inserted only if its index is the next of its thread (``?1`` thread, ``?2``
#: index): nothing is inserted, and ``rowcount`` is 0, otherwise.
_INSERT_HIST_NEXT = (
    "INSERT INTO history (thread, idx, msg_hash, entry_hash, envelope, direction, recorded_ms) "
    "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 "
    "WHERE coalesce((SELECT max(idx) FROM history WHERE thread = ?1), -1) = ?2 - 1"
)
_insert_rows = typed.insert_rows


def _rel_row(r: RelationshipRecord) -> tuple[object, ...]:
    return (r.thread, r.role, r.local_key, r.peer_key, r.state, r.data, r.label, r.peer_url,
            r.updated_ms)  # fmt: skip


def _hist_row(h: HistoryEntry) -> tuple[object, ...]:
    return (h.thread, h.index, h.msg_hash, h.entry_hash, h.envelope, h.direction, h.recorded_ms)


def _dedupe_row(d: DedupeRecord) -> tuple[object, ...]:
    return (d.sender, d.msg_id, d.msg_hash, d.response, d.expires_ms)


def _discontinuous(conn: sqlite3.Connection, h: HistoryEntry) -> None:
    """Raise why :data:`_INSERT_HIST_NEXT` inserted nothing: the index is taken or leaves a
    gap (StoreConflict or StoreError)."""
    last: int | None = conn.execute(_HEAD, (h.thread,)).fetchone()[0]
    check_next_index(h, 0 if last is None else last + 1)
    raise StoreError(f"history entry {h.index} of thread {h.thread.hex()} was not inserted")


def _apply_commit(conn: sqlite3.Connection, c: Commit) -> tuple[int, ...]:
    """Apply one Commit's parts in the documented order (see :class:`Commit`); the ids given
    to its outbox items, in order.

    Runs on the writer thread inside the batch transaction and the Commit's own savepoint.
    """
    typed.upsert_kept(conn, _UPSERT_REL_KEPT, _UPSERT_REL, [_rel_row(r) for r in c.relationships])
    return _apply_after_relationships(conn, c)


def _apply_after_relationships(conn: sqlite3.Connection, c: Commit) -> tuple[int, ...]:
    """Parts 2 to 26 of ``c``: :func:`_apply_commit` once its relationships are written."""
    typed.apply_threads(conn, c)
    for key, value in c.meta:
        conn.execute(_UPSERT_META, (key, value))
    for thread, index in c.truncate:
        conn.execute("DELETE FROM history WHERE thread = ? AND idx >= ?", (thread, index))
    heads: dict[bytes, int] = {}  # the next free index per thread, once its first entry is in
    for h in c.history:
        expected = heads.get(h.thread)
        if expected is None:
            # the thread's first entry of the Commit: inserted only if it continues the stored
            # history, one statement (one step of the writer) instead of a read and an insert
            if conn.execute(_INSERT_HIST_NEXT, _hist_row(h)).rowcount != 1:
                _discontinuous(conn, h)
        else:
            check_next_index(h, expected)
            conn.execute(_INSERT_HIST, _hist_row(h))
        heads[h.thread] = h.index + 1
    for thread, msg_hash, envelope in c.erase:
        # every entry of the thread holding the message (one, as the engine keeps it, §8.2-2):
        # the thread's rows through UNIQUE (thread, idx), filtered by hash; erasing is rare
        conn.execute(
            "UPDATE history SET envelope = ? WHERE thread = ? AND msg_hash = ?",
            (envelope, thread, msg_hash),
        )
    for d in c.dedupe:
        conn.execute(_INSERT_DEDUPE, _dedupe_row(d))
    for item_id in c.outbox_done:
        conn.execute("DELETE FROM outbox WHERE item_id = ?", (item_id,))
    ids = tuple(
        conn.execute(
            "INSERT INTO outbox (destination, thread, msg_hash, envelope, attempts, "
            "next_attempt_ms, last_error, created_ms) VALUES (?, ?, ?, ?, 0, ?, '', ?)",
            (o.destination, o.thread, o.msg_hash, o.envelope, o.next_attempt_ms, o.created_ms),
        ).lastrowid or 0
        for o in c.outbox_add
    )
    typed.apply_rows(conn, c)
    feed.redact(conn, c.held_drop)
    feed.forget_threads(conn, c.drop)
    for thread in c.drop:  # history first: its rows reference the relationship's
        conn.execute("DELETE FROM history WHERE thread = ?", (thread,))
        conn.execute("DELETE FROM relationships WHERE thread = ?", (thread,))
        typed.drop_thread_rows(conn, thread)
    for key in c.unset:
        conn.execute("DELETE FROM meta WHERE key = ?", (key,))
    feed.apply_events(conn, c)
    return ids


def _holds(conn: sqlite3.Connection, expect: RelationshipRecord) -> bool:
    """Whether the thread's relationship row is exactly ``expect`` (on the writer, inside the
    transaction: the row's pages are in the writer's cache)."""
    row: tuple[object, ...] | None = conn.execute(
        _SELECT_REL + "WHERE thread = ?", (expect.thread,)
    ).fetchone()
    return row == _rel_row(expect)


#: A relationship's new state, written only if its row is still exactly the one expected
#: (``?1``–``?3`` the new state, data and time; ``?4``–``?12`` the expected row): one statement
#: where reading the row back and comparing it in Python, then upserting, took two — and the
#: state blob, kilobytes, copied out into Python for the comparison (#12).
_UPDATE_REL_EXPECTING = (
    "UPDATE relationships SET state = ?1, data = ?2, updated_ms = ?3 WHERE thread = ?4 "
    "AND role = ?5 AND local_key = ?6 AND peer_key = ?7 AND state = ?8 AND data = ?9 "
    "AND label = ?10 AND peer_url = ?11 AND updated_ms = ?12"
)


def _apply_expecting(
    conn: sqlite3.Connection, c: Commit, expect: RelationshipRecord
) -> tuple[int, ...]:
    """:func:`_apply_commit`, only if the thread's row is still exactly ``expect``.

    The usual step (a vendor's: its one relationship, keys, label and URL as expected) checks
    and writes the row in one UPDATE (:data:`_UPDATE_REL_EXPECTING`); any other Commit reads
    the row and compares it first."""
    rels = c.relationships
    if len(rels) == 1 and _same_keys(rels[0], expect):
        r = rels[0]
        if conn.execute(_UPDATE_REL_EXPECTING, (r.state, r.data, r.updated_ms, *_rel_row(expect))
                        ).rowcount != 1:  # fmt: skip
            raise StoreConflict(f"relationship {expect.thread.hex()} changed since it was read")
        return _apply_after_relationships(conn, c)
    if not _holds(conn, expect):
        raise StoreConflict(f"relationship {expect.thread.hex()} changed since it was read")
    return _apply_commit(conn, c)


def _same_keys(r: RelationshipRecord, expect: RelationshipRecord) -> bool:
    """Whether ``r`` writes ``expect``'s row leaving every column but state, data and time as
    it is (so an UPDATE of those three is its whole upsert)."""
    return (r.thread == expect.thread and r.role == expect.role
            and r.local_key == expect.local_key and r.peer_key == expect.peer_key
            and r.label == expect.label and r.peer_url == expect.peer_url)  # fmt: skip


def _expecting_group(conn: sqlite3.Connection, jobs: list[_Job]) -> set[int] | None:
    """Check every ``expect`` of ``jobs`` before the group is written: None if one does not
    hold, or another Commit of the group writes its thread (whose row it would then have to
    expect). A Commit that keeps its row's keys has its relationship written here, checked in
    the same UPDATE (:data:`_UPDATE_REL_EXPECTING`); the ids of the records so written are
    returned, for :func:`_apply_group` to leave out."""
    done: set[int] = set()
    expecting = [(job.commit, job.expect) for job in jobs
                 if job.commit is not None and job.expect is not None]  # fmt: skip
    if not expecting:
        return done
    written: dict[bytes, int] = {}
    for job in jobs:
        if job.commit is not None:
            for r in job.commit.relationships:
                written[r.thread] = written.get(r.thread, 0) + 1
    for c, e in expecting:
        if written.get(e.thread, 0) > 1:
            return None
        rels = c.relationships
        if len(rels) == 1 and _same_keys(rels[0], e):
            r = rels[0]
            if conn.execute(_UPDATE_REL_EXPECTING, (r.state, r.data, r.updated_ms, *_rel_row(e))
                            ).rowcount != 1:  # fmt: skip
                return None
            done.add(id(r))
        elif not _holds(conn, e):
            return None
    return done


def _groupable(c: Commit | None) -> bool:
    """Whether ``c`` may join a group written statement by statement (:func:`_apply_group`):
    only upserts and inserts (and clearing save points), and history only for threads the
    Commit itself upserts. The parts an inbox step writes are groupable; the customer's are
    not (they are few, and deletions of theirs would not commute)."""
    if c is None or c.truncate or c.erase or c.outbox_add or c.outbox_done or c.drop or c.unset:
        return False
    if (c.threads or c.drafts_add or c.drafts_done or c.save_points_done or c.held_drop
            or c.intents or c.offers or c.share_notes or c.intents_drop):  # fmt: skip
        return False
    if feed.has_event_parts(c):
        return False
    if not c.history:
        return True
    threads = {r.thread for r in c.relationships}
    return all(h.thread in threads for h in c.history)


def _apply_group(
    conn: sqlite3.Connection, commits: list[Commit], written: Collection[int] = ()
) -> bool:
    """Write several :func:`_groupable` Commits as if one after another, with one multi-row
    INSERT per table (:func:`_insert_rows`); False if any of them would fail (the caller then
    rolls back whatever was written).

    Applying them in order and applying each part for all of them in order end in the same
    rows: upserts keep the last value either way, inserts add the same rows, and each Commit's
    history threads have their relationship row first either way. A failure is a uniqueness
    rule (raised by SQLite for the whole group) or a history index that does not continue its
    thread (checked here first); then the caller rolls the group back and writes the Commits
    one by one, each in its own savepoint, so that only the failing ones fail. ``written``: ids
    of relationship records already written (:func:`_expecting_group`), left out here.
    """
    nexts: dict[bytes, int] = {}
    firsts: list[tuple[bytes, int]] = []
    for c in commits:
        for h in c.history:
            expected = nexts.get(h.thread)
            if expected is None:
                firsts.append((h.thread, h.index))
            elif h.index != expected:
                return False
            nexts[h.thread] = h.index + 1
    for thread, first in firsts:
        # index 0 needs no read: if the thread has history, the insert hits UNIQUE (thread, idx)
        if first < 0 or (first and conn.execute(_HEAD, (thread,)).fetchone()[0] != first - 1):
            return False
    if not _clears_commute(commits):
        return False
    rels = [_rel_row(r) for c in commits for r in c.relationships if id(r) not in written]
    if _insert_rows(conn, _REL_COLUMNS, rels, _REL_UPSERT_KEPT) != len(rels):
        return False  # a relationship's keys changed: one by one (the full upsert for it)
    _insert_rows(conn, _META_COLUMNS, [m for c in commits for m in c.meta], _META_UPSERT)
    _insert_rows(conn, _HIST_COLUMNS, [_hist_row(h) for c in commits for h in c.history])
    _insert_rows(conn, _DEDUPE_COLUMNS, [_dedupe_row(d) for c in commits for d in c.dedupe])
    conn.executemany("DELETE FROM save_points WHERE thread = ?",
                     [(t,) for c in commits for t in c.save_points_clear])  # fmt: skip
    points = [typed.save_point_row(p) for c in commits for p in c.save_points]
    _insert_rows(conn, typed.SAVE_POINTS_UPSERT[0], points, typed.SAVE_POINTS_UPSERT[1])
    typed.upsert_held(conn, [h for c in commits for h in c.held])
    _insert_rows(conn, feed.INSERT_EVENTS, [feed.event_row(e) for c in commits for e in c.events])
    return True


def _clears_commute(commits: list[Commit]) -> bool:
    """Whether clearing save points group-wise (every clear before every upsert) ends as
    clearing them Commit by Commit: no thread cleared by one Commit has its save points
    touched by another of the group."""
    touched: dict[bytes, int] = {}
    for i, c in enumerate(commits):
        for thread in {*c.save_points_clear, *(p.thread for p in c.save_points)}:
            if touched.setdefault(thread, i) != i and (
                thread in c.save_points_clear
                or thread in commits[touched[thread]].save_points_clear
            ):
                return False
    return True


def _translate(exc: Exception) -> Exception:
    """Map a sqlite3 error to the store's exception tree; leave others as they are."""
    if isinstance(exc, sqlite3.IntegrityError):
        name = exc.sqlite_errorname
        if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
            err: Exception = StoreConflict(str(exc))
        elif name == "SQLITE_CONSTRAINT_FOREIGNKEY":
            err = StoreError("history entry for a thread that has no relationship record")
        else:
            err = StoreError(str(exc))
    elif isinstance(exc, sqlite3.Error):
        err = StoreError(f"sqlite: {exc}")
    else:
        return exc
    err.__cause__ = exc
    return err


# -- the store ---------------------------------------------------------------------------------


@dataclass(slots=True)
class StoreStats:
    """Counters kept by the writer thread (read them from anywhere; they only grow)."""

    transactions: int = 0  # COMMITs that succeeded (on the writer thread, one fsync each)
    writes: int = 0  # Commits and other writes that landed
    conflicts: int = 0  # writes rolled back alone with StoreConflict
    largest_batch: int = 0
    inline: int = 0  # of the transactions, committed on the caller's thread (``inline=True``)
    fallbacks: int = 0  # inline writes sent to the writer thread (write lock taken, other thread)
    syncs: int = 0  # fsyncs of the WAL covering inline commits
    checkpoints: int = 0  # PASSIVE checkpoints run for inline commits


_SYNC = "sync"
"""Queued for the writer thread: fsync the WAL for the inline commits made so far."""


@dataclass(slots=True)
class _Job:
    apply: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    commit: Commit | None = None  # set for store.commit(): such jobs may be written as a group
    expect: RelationshipRecord | None = None  # commit(expect=): the row the Commit requires


_settle = durable.settle


@dataclass(slots=True)
class _InlineJob:
    """A write queued for the next event-loop turn's inline transaction
    (:meth:`SQLiteStore._write_in_turn`)."""

    apply: Callable[[sqlite3.Connection], Any]
    durable: bool
    future: asyncio.Future[Any]


def _settle_all(outcomes: list[tuple[asyncio.Future[Any], object, BaseException | None]]) -> None:
    for future, result, exc in outcomes:
        _settle(future, result, exc)


def _resolve_all(jobs: list[_Job], outcomes: list[tuple[object, BaseException | None]]) -> None:
    """Resolve the futures of a batch: one wake-up of each event loop, not one per job."""
    by_loop: dict[
        asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object, BaseException | None]]
    ] = {}
    for job, (result, exc) in zip(jobs, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, result, exc))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the caller's loop has closed: nobody to tell
            loop.call_soon_threadsafe(_settle_all, settled)


class SQLiteStore(AsyncClosing):
    """The default :class:`~vrmproto.store.Store`: one SQLite file, WAL, group commit.

    Open with ``store = await SQLiteStore.open(path)`` (or ``async with await
    SQLiteStore.open(path) as store``); the directory must exist. ``stats`` counts transactions.

    ``inline=True`` (a customer's agent): writes run their transaction on the calling thread
    and the writer thread only fsyncs the WAL, once for every commit made before it started;
    each write still returns only once durable (:mod:`vrmproto.store._sqlite_durable`). A write
    falls back to the writer thread when another connection holds the write lock or when it
    comes from a thread other than the one that opened the store.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, readers: int = 4, inline: bool = False
    ) -> None:
        """Prefer :meth:`open`; a store made here is usable only after ``await start()``."""
        self.path = Path(path)
        self.stats = StoreStats()
        self._n_readers = readers
        self._inline_wanted = inline
        self._here: sqlite3.Connection | None = None  # the inline write connection
        self._owner = 0  # the thread that may use it
        self._horizon = durable.Horizon(self._request_sync)
        self._wal = durable.WalFile(self.path)
        self._checkpointed_at = 0  # horizon.committed at the last checkpoint (writer thread)
        self._sync_wanted = False  # writer thread: a sync was asked for since the last one
        self._busy_until = 0.0  # writer thread: while before this, a lone write waits for company
        # SimpleQueue: a put never takes a lock the waking writer holds while it waits for the
        # GIL (queue.Queue's Condition did: 14% of an agent's event-loop time, #12)
        self._queue: queue.SimpleQueue[_Job | str | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders "closed" against queue puts
        self._closed = True
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._reader_conns: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._inline = threading.local()  # each calling thread's point-read connection
        self._inline_conns: list[sqlite3.Connection] = []
        self._turn: list[_InlineJob] = []  # writes waiting for the next turn's transaction
        self._ran_in_turn = False  # an inline transaction ran in this turn of the event loop
        self._turn_loop: asyncio.AbstractEventLoop | None = None  # the loop of those two
        self._locks = FileLocks(self.path.with_name(self.path.name + "-locks"))

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], *, readers: int = 4, inline: bool = False
    ) -> SQLiteStore:
        """Open (creating or migrating) the database at ``path``; ``inline``: see the class."""
        store = cls(path, readers=readers, inline=inline)
        await store.start()
        return store

    async def start(self) -> None:
        """Start the writer thread (which opens and migrates the file) and the reader pool."""
        if self._writer is not None:
            raise StoreError("store already started")
        await asyncio.to_thread(_private_files, self.path, self._locks)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._writer = threading.Thread(
            target=self._writer_main, args=(loop, ready), name="vrm-store-writer", daemon=True
        )
        self._writer.start()
        await ready
        self._readers = ThreadPoolExecutor(self._n_readers, thread_name_prefix="vrm-store-read")
        try:
            for _ in range(self._n_readers):
                conn = await loop.run_in_executor(self._readers, _connect_reader, self.path)
                self._reader_conns.put(conn)
            if self._inline_wanted:  # opened after the writer made the file WAL and migrated it
                self._here = _connect_inline(self.path)
                self._owner = threading.get_ident()
        except BaseException:
            self._closed = False
            await self.close()
            raise
        self._closed = False

    async def close(self) -> None:
        """Let the writer finish everything already queued, then stop it and close connections.

        The writer's connection closes last: SQLite checkpoints the WAL into the database file
        (and removes it) when the last connection to it closes, and a read-only reader cannot.
        Closed in any other order, a ``vrm`` command that commits a little and ends left its
        work only in ``-wal``, which grew with every command; a copy of the database file — the
        one a person backs up — held none of it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True  # no new write from here on
        with contextlib.suppress(StoreError):  # inline commits whose awaiter went away
            await self._horizon.settle(self._horizon.committed)
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown, wait=True)
        while not self._reader_conns.empty():
            self._reader_conns.get_nowait().close()
        with self._lock:
            inline, self._inline_conns = self._inline_conns, []
        for conn in inline:
            conn.close()
        if self._here is not None:
            self._here.close()
            self._here = None
        with self._lock:
            self._queue.put(None)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
        self._locks.close()

    # -- the writer thread --

    def _writer_main(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = _connect_writer(self.path)
        except Exception as exc:  # reported to open(); the thread ends
            err = _translate(exc)
            if isinstance(exc, sqlite3.Error) and _busy(exc):  # another process migrates it
                err = StoreBusy(f"{self.path} is busy: another connection held its write lock "
                                f"for more than {_BUSY_TIMEOUT_S:g} s")  # fmt: skip
                err.__cause__ = exc
            loop.call_soon_threadsafe(_settle, ready, None, err)
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is None:
                    break
                self._sync_wanted = first == _SYNC
                batch = [first] if isinstance(first, _Job) else []
                stop = self._take(batch)
                if (
                    not stop
                    and batch
                    and len(batch) < GATHER_BELOW
                    and (len(batch) > 1 or time.monotonic() < self._busy_until)
                ):
                    time.sleep(GATHER_DELAY_S)
                    stop = self._take(batch)
                if batch:
                    self._run_batch(conn, batch)
                if self._sync_wanted:
                    self._sync(conn)
        finally:
            self._wal.close()
            conn.close()

    def _take(self, batch: list[_Job]) -> bool:
        """Add what is queued to ``batch`` (up to :data:`BATCH_CAP`), noting a sync request;
        True once told to stop."""
        while len(batch) < BATCH_CAP:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            if isinstance(item, _Job):
                batch.append(item)
            else:
                self._sync_wanted = True
        return False

    # -- durability of inline commits (:mod:`vrmproto.store._sqlite_durable`) --

    def _request_sync(self) -> None:
        self._queue.put(_SYNC)  # after close() only when close() itself waits for it

    def _sync(self, conn: sqlite3.Connection) -> None:
        """On the writer thread: one fsync of the WAL for every inline commit whose COMMIT
        returned before it started; then, now and then, a PASSIVE checkpoint from this
        ``synchronous=FULL`` connection."""
        target = self._horizon.target()
        error: StoreError | None = None
        try:
            self._wal.sync()
        except Exception as exc:  # (any: the thread must live to settle the waiting commits)
            error = StoreError(f"fsync of {self._wal.path} failed, so commits since the last "
                               f"one are not known durable; reopen the store: {exc}")  # fmt: skip
        self.stats.syncs += 1
        self._horizon.synced(target, error)
        if error is None and target - self._checkpointed_at >= durable.CHECKPOINT_EVERY:
            self._checkpointed_at = target
            with contextlib.suppress(sqlite3.Error):  # a checkpoint is an optimisation here
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.stats.checkpoints += 1

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        """One transaction for the batch; each job in its own savepoint; one COMMIT, one fsync.

        Consecutive Commits that only upsert and insert are first tried together, a few
        multi-row statements in one savepoint (:func:`_apply_group`); if any of them would
        fail, the group is rolled back and its jobs run one by one like the others.
        Futures are resolved only after COMMIT returned (spec §12 (durability)).
        """
        if len(batch) == 1:
            self._run_alone(conn, batch[0])
            return
        outcomes: list[tuple[object, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            i, n = 0, len(batch)
            while i < n:
                j = i
                while j < n and _groupable(batch[j].commit):
                    j += 1
                if j - i >= 2 and self._try_group(conn, batch[i:j]):
                    outcomes.extend((None, None) for _ in range(j - i))
                    i = j
                    continue
                outcomes.extend(self._run_job(conn, job) for job in batch[i : max(j, i + 1)])
                i = max(j, i + 1)
            conn.execute("COMMIT")
        except Exception as exc:  # BEGIN, a savepoint step or COMMIT failed: nothing landed
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            failure = StoreError(f"transaction failed, nothing of it was written: {exc}")
            self._busy_until = time.monotonic() + GATHER_AFTER_S
            _resolve_all(batch, [(None, failure)] * len(batch))
            return
        # before the futures resolve: a write their awaiters make at once is "just after"
        self._busy_until = time.monotonic() + GATHER_AFTER_S
        self.stats.transactions += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for _, error in outcomes:
            if error is None:
                self.stats.writes += 1
            elif isinstance(error, StoreConflict):
                self.stats.conflicts += 1
        _resolve_all(batch, outcomes)

    def _run_alone(self, conn: sqlite3.Connection, job: _Job) -> None:
        """A batch of one job (a lone write, as when one customer talks to the vendor): its
        own transaction and no savepoint — rolling the transaction back undoes exactly what
        rolling back a savepoint around the job would. Resolved after COMMIT returned."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = job.apply(conn)
            except Exception as exc:
                conn.execute("ROLLBACK")
                error = _translate(exc)
                if isinstance(error, StoreConflict):
                    self.stats.conflicts += 1
                _resolve_all([job], [(None, error)])
                return
            conn.execute("COMMIT")
        except Exception as exc:  # BEGIN, ROLLBACK or COMMIT failed: nothing landed
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            failure = StoreError(f"transaction failed, nothing of it was written: {exc}")
            _resolve_all([job], [(None, failure)])
            return
        self.stats.transactions += 1
        self.stats.writes += 1
        self.stats.largest_batch = max(self.stats.largest_batch, 1)
        _resolve_all([job], [(result, None)])

    @staticmethod
    def _run_job(conn: sqlite3.Connection, job: _Job) -> tuple[object, BaseException | None]:
        """One job in its own savepoint: a failure undoes only this job's changes."""
        conn.execute("SAVEPOINT job")
        try:
            result = job.apply(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            return None, _translate(exc)
        conn.execute("RELEASE job")
        return result, None

    @staticmethod
    def _try_group(conn: sqlite3.Connection, jobs: list[_Job]) -> bool:
        """Write the Commits of ``jobs`` together in one savepoint; False if nothing was
        written because one of them would fail (see :func:`_apply_group`)."""
        conn.execute("SAVEPOINT grp")
        try:
            done = _expecting_group(conn, jobs)
            written = done is not None and _apply_group(
                conn, [job.commit for job in jobs if job.commit is not None], done
            )
        except Exception:
            written = False
        if not written:
            conn.execute("ROLLBACK TO grp")
        conn.execute("RELEASE grp")
        return written

    async def _write(
        self,
        apply: Callable[[sqlite3.Connection], _T],
        commit: Commit | None = None,
        expect: RelationshipRecord | None = None,
        *,
        inline: bool = True,
        durable: bool = True,
    ) -> _T:
        """Run ``apply`` in a transaction and return its result once durable: here, on the
        inline connection, if the store has one, this is its thread and the write lock is free;
        else on the writer thread. ``inline=False``: on the writer thread in any case.
        ``durable=False``: written here, return once committed, without waiting for an fsync
        (:mod:`vrmproto.store._sqlite_durable`, "Commits that do not wait"); on the writer
        thread it is durable anyway."""
        here = self._here
        if inline and here is not None:
            if threading.get_ident() != self._owner:
                self.stats.fallbacks += 1  # the inline connection is its opener thread's
            elif self._closed:
                raise StoreError("store is closed")
            else:
                if asyncio.get_running_loop() is not self._turn_loop:
                    self._new_loop()
                try:
                    if self._turn or self._ran_in_turn:
                        written = await self._write_in_turn(apply, durable)
                    else:
                        written = self._write_first(here, apply, durable)
                except Exception:
                    await self._horizon.settle(self._horizon.committed)
                    raise
                if written is not None:
                    if durable:
                        await self._horizon.settle(written[1])
                    return written[0]
                self.stats.fallbacks += 1  # the write lock is taken: wait on the writer thread
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        with self._lock:
            if self._closed:
                raise StoreError("store is closed")
            self._queue.put(_Job(apply, future, loop, commit, expect))
        return await future

    def _write_first(
        self, here: sqlite3.Connection, apply: Callable[[sqlite3.Connection], _T], durable: bool
    ) -> tuple[_T, int] | None:
        """The first inline write of a turn of the event loop: at once, in its own transaction
        (:meth:`_write_here`), as a lone step's; ``(result, commit number)``, or None if it
        must go to the writer thread. The writes other tasks make in the same turn wait for
        the next one (:meth:`_write_in_turn`)."""
        self._ran_in_turn = True
        asyncio.get_running_loop().call_soon(self._end_turn)
        written = self._write_here(here, apply, durable)
        return None if written is None else (written[0], self._horizon.committed)

    def _write_in_turn(
        self, apply: Callable[[sqlite3.Connection], _T], durable: bool
    ) -> asyncio.Future[tuple[_T, int] | None]:
        """Queue ``apply`` behind the turn's first write (:meth:`_write_first`): a future of
        ``(result, commit number)``, None if it must go to the writer thread, or what
        ``apply`` raised.

        The writes other tasks make in the turn of an inline write — a fan-out's branches,
        started together — run together at the start of the next turn (:meth:`_flush_inline`),
        one ``BEGIN IMMEDIATE`` and one ``COMMIT`` for all of them: group commit across an
        agent's relationships (#12), the pages they share (the database header, the tails of
        the history, the outbox and the notes) written once instead of once each. Deferring
        every write, the first too, cost a lone agent's lazy commit ~10 us more (a future and
        a pass of the loop) for nothing: a lone writer never has company.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[_T, int] | None] = loop.create_future()
        self._turn.append(_InlineJob(apply, durable, future))
        if len(self._turn) == 1:
            loop.call_soon(self._flush_inline)
        return future

    def _end_turn(self) -> None:
        self._ran_in_turn = False

    def _new_loop(self) -> None:
        """Inline writes from another event loop than the last one's (the store outlived a
        loop): the turn state was that loop's. Writes still queued there, whose flush never
        ran (the loop was closed without running it), wrote nothing and have no awaiter left."""
        self._turn_loop = asyncio.get_running_loop()
        self._turn, self._ran_in_turn = [], False

    def _flush_inline(self) -> None:
        """Write the writes queued last turn (:meth:`_write_in_turn`) in one transaction and
        resolve their futures once its COMMIT returned: one job as before
        (:meth:`_write_here`); several each in a savepoint, so that a failing one is rolled
        back alone, as on the writer thread (:meth:`_run_job`)."""
        jobs, self._turn = self._turn, []
        here = self._here
        if here is None:  # closed meanwhile: nothing was written
            for job in jobs:
                _settle(job.future, None, StoreError("store is closed"))
            return
        if len(jobs) == 1:
            job = jobs[0]
            try:
                written = self._write_here(here, job.apply, job.durable)
            except BaseException as exc:  # to its awaiter, as before (KeyboardInterrupt too)
                _settle(job.future, None, exc)
                return
            _settle(job.future, None if written is None else (written[0], self._horizon.committed),
                    None)  # fmt: skip
            return
        for job, outcome in zip(jobs, self._write_here_group(here, jobs), strict=True):
            _settle(job.future, *outcome)

    def _write_here_group(
        self, conn: sqlite3.Connection, jobs: list[_InlineJob]
    ) -> list[tuple[object, BaseException | None]]:
        """:meth:`_write_here` for several jobs in one transaction, each in its own savepoint:
        per job ``((result, commit number), None)``, ``(None, error)``, or ``(None, None)``
        when it must go to the writer thread (the write lock was taken: nothing was written)."""
        fallback: list[tuple[object, BaseException | None]] = [(None, None)] * len(jobs)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if _busy(exc):
                return fallback
            return [(None, _translate(exc))] * len(jobs)
        results: list[tuple[object, BaseException | None]] = []
        try:
            for i, job in enumerate(jobs):
                conn.execute("SAVEPOINT job")
                try:
                    results.append((job.apply(conn), None))
                except BaseException as exc:
                    if not isinstance(exc, Exception):  # nothing lands; the rest, elsewhere
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                        return [*fallback[:i], (None, exc), *fallback[i + 1 :]]
                    conn.execute("ROLLBACK TO job")
                    if isinstance(exc, sqlite3.Error) and _busy(exc):
                        raise  # as one write alone (_write_here): to the writer thread
                    error = _translate(exc)
                    if isinstance(error, StoreConflict):
                        self.stats.conflicts += 1
                    results.append((None, error))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # a savepoint step or COMMIT failed: nothing landed
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if _busy(exc):
                return fallback
            failure = StoreError(f"transaction failed, nothing of it was written: {exc}")
            return [(None, failure)] * len(jobs)
        seq = self._horizon.commit_returned(any(job.durable for job in jobs))
        self.stats.transactions += 1
        self.stats.inline += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))
        out: list[tuple[object, BaseException | None]] = []
        for result, failed in results:
            if failed is None:
                self.stats.writes += 1
                out.append(((result, seq), None))
            else:
                out.append((None, failed))
        return out

    def _write_here(
        self,
        conn: sqlite3.Connection,
        apply: Callable[[sqlite3.Connection], _T],
        durable: bool = True,
    ) -> tuple[_T] | None:
        """One transaction on the inline connection, no fsync in it: ``(result,)``, or None
        if the write lock was taken (nothing was written; the caller falls back to the writer
        thread). Raises what ``apply`` raised (mapped by :func:`_translate`),
        after the rollback. The caller then waits until the commits made so far are durable —
        also after a failure, which may have been decided by a row not yet durable."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if _busy(exc):
                return None
            raise _translate(exc) from exc
        try:
            result = apply(conn)
        except BaseException as exc:
            if conn.in_transaction:  # never leave the connection inside a transaction
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if not isinstance(exc, Exception):
                raise
            if isinstance(exc, sqlite3.Error) and _busy(exc):
                return None
            error = _translate(exc)
            if isinstance(error, StoreConflict):
                self.stats.conflicts += 1
            if error is exc:
                raise
            raise error from exc
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise StoreError(f"transaction failed, nothing of it was written: {exc}") from exc
        self._horizon.commit_returned(durable)
        self.stats.transactions += 1
        self.stats.inline += 1
        self.stats.writes += 1
        self.stats.largest_batch = max(self.stats.largest_batch, 1)
        return (result,)

    # -- reads --

    def _with_reader(self, read: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._reader_conns.get()
        try:
            return read(conn)
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        finally:
            self._reader_conns.put(conn)

    async def _read(self, read: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed or self._readers is None:
            raise StoreError("store is closed")
        if self._horizon.pending():  # see _point
            await self._horizon.settle(self._horizon.wanted)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._with_reader, read)

    async def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        return await self._read(lambda conn: conn.execute(sql, params).fetchall())

    async def _point(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        """A point read (:meth:`_point_now`), once the inline commits made before it are
        durable (:mod:`vrmproto.store._sqlite_durable`, "What readers see") — all but those
        made with ``durable=False``, which it does not wait for."""
        if self._horizon.pending():
            await self._horizon.settle(self._horizon.wanted)
        return self._point_now(sql, params)

    def _point_now(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        """A point read — a primary-key or per-thread index look-up returning a handful of
        rows — run right here on a read-only connection of the calling thread.

        Handing such a read to the pool costs more than the read: a thread wake-up each way and
        the GIL passed twice, twice per message on a vendor and several times per send on an
        agent. WAL readers do not wait for the writer, so the caller's event loop is held only
        for the index look-up itself; scans that may return many rows stay on the pool. Each
        statement runs in autocommit (no read transaction is left open), so, as on the pool,
        it sees every commit whose future has resolved.

        With ``inline=True``, on the opener's thread, the read runs on the inline write
        connection (never inside a transaction between two awaits): its page cache holds what
        it just wrote, where a separate reader would re-read every page a commit changed
        (issue 12: ~4% of the agent's CPU). It has no busy timeout, so a read it finds busy
        (another connection recovering the WAL) is retried on the reader, which waits.
        """
        if self._closed:
            raise StoreError("store is closed")
        here = self._here
        if here is not None and threading.get_ident() == self._owner:
            try:
                return here.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                if not _busy(exc):
                    raise _translate(exc) from exc
        conn: sqlite3.Connection | None = getattr(self._inline, "conn", None)
        try:
            if conn is None:
                conn = self._inline.conn = _connect_reader(self.path)
                with self._lock:
                    self._inline_conns.append(conn)
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    # -- the Store protocol --

    async def commit(
        self, c: Commit, *, expect: RelationshipRecord | None = None, durable: bool = True
    ) -> None:
        """Write ``c`` in the next group transaction; return after its COMMIT (receipt only
        after commit, spec §12 (durability)). Cancelling the wait does not cancel the write.

        ``expect``: write ``c`` only if the thread's relationship row is exactly this record
        when the transaction applies it — checked on the writer, under the write lock, so no
        other process or store object can change it in between — else :class:`StoreConflict`
        and nothing of ``c`` is written. A vendor endpoint commits a step taken from the
        relationship it kept warm this way instead of reading the record first
        (:mod:`vrmproto.server._warm`).

        ``durable=False`` (an inline store, the customer's agent): return once ``c`` is
        committed, before the fsync that makes it durable; reads do not wait for it either.
        It survives a crash of the process, and the next durable commit returns only once it
        is durable too; a power loss before then may take it back, so the caller passes it
        only for a Commit whose loss the protocol repairs (:mod:`vrmproto.store._sqlite_durable`,
        "Commits that do not wait"). On the writer thread it is durable anyway."""
        await self.commit_ids(c, expect=expect, durable=durable)

    async def commit_ids(
        self, c: Commit, *, expect: RelationshipRecord | None = None, durable: bool = True
    ) -> tuple[int, ...]:
        """:meth:`commit`, returning the ids given to the items of ``c.outbox_add``, in
        order (the row ids their inserts were given, in the same transaction)."""
        if expect is None:
            return await self._write(lambda conn: _apply_commit(conn, c), c, durable=durable)
        return await self._write(
            lambda conn: _apply_expecting(conn, c, expect), c, expect, durable=durable
        )

    def lock(
        self, name: bytes, *, on_wait: Callable[[], None] | None = None
    ) -> AbstractAsyncContextManager[None]:
        """The lock ``name``, shared with every process and store object on this file
        (spec §11.11-2; see :mod:`vrmproto.store._locks`)."""
        if self._closed:
            raise StoreError("store is closed")
        return self._locks.hold(name, on_wait)

    async def outbox_retry(
        self, item_id: int, attempts: int, next_attempt_ms: int, last_error: str
    ) -> None:
        """Record a failed delivery attempt durably; a missing item is ignored."""
        await self._write(
            lambda conn: conn.execute(
                "UPDATE outbox SET attempts = ?, next_attempt_ms = ?, last_error = ? "
                "WHERE item_id = ?",
                (attempts, next_attempt_ms, last_error, item_id),
            )
        )

    async def events(
        self, after: int = 0, limit: int = 100, *, thread: bytes | None = None
    ) -> list[EventRecord]:
        return await self._read(lambda conn: feed.read_events(conn, after, limit, thread))

    async def event(self, event_id: str) -> EventRecord | None:
        return await self._read(lambda conn: feed.read_event(conn, event_id))

    async def event_cursor(self, name: str) -> int:
        return await self._read(lambda conn: feed.read_cursor(conn, name))

    async def feed_head(self) -> int:
        return await self._read(feed.read_head)

    async def dead_letters(self, name: str | None = None) -> list[DeadLetter]:
        return await self._read(lambda conn: feed.read_dead_letters(conn, name))

    async def failing(self, name: str | None = None) -> list[FailingEvent]:
        return await self._read(lambda conn: feed.read_failing(conn, name))

    async def event_cursors(self) -> dict[str, int]:
        return await self._read(feed.read_cursors)

    async def feed_floor(self) -> int:
        return await self._read(feed.read_floor)

    async def forget_consumer(self, name: str) -> bool:
        return await self._write(lambda conn: feed.forget(conn, name))

    async def trim_events(self, upto: int, *, recorded_before: int, keep: Collection[int] = (),
                          limit: int = TRIM_BATCH) -> int:  # fmt: skip
        """One step of trimming, a short transaction on the writer (:mod:`._trim`)."""
        return await self._write(
            lambda conn: feed.trim(conn, upto, recorded_before, keep, limit), inline=False)

    async def purge_dedupe(self, now_ms: int) -> int:
        """Delete de-duplication records that expired before ``now_ms``; return how many."""
        return await self._write(
            lambda conn: conn.execute("DELETE FROM dedupe WHERE expires_ms < ?", (now_ms,)).rowcount
        )

    async def get_dedupe(self, sender: bytes, msg_id: bytes) -> DedupeRecord | None:
        rows = await self._point(
            _SELECT_DEDUPE + "WHERE sender = ? AND msg_id = ?", (sender, msg_id)
        )
        return DedupeRecord(*rows[0]) if rows else None

    async def get_relationship(self, thread: bytes) -> RelationshipRecord | None:
        rows = await self._point(_SELECT_REL + "WHERE thread = ?", (thread,))
        return RelationshipRecord(*rows[0]) if rows else None

    async def relationships(self, *, with_data: bool = True) -> list[RelationshipRecord]:
        """Every relationship; ``with_data=False`` reads no state blob and runs right here
        (:meth:`_point`): its rows are small, and a customer's agent resolves the name or URL
        of a vendor this way per message, where a hop to the reader pool and back cost more
        than the read (#12)."""
        if not with_data:
            found = await self._point(_SELECT_REL_NO_DATA + "ORDER BY thread", ())
            return [RelationshipRecord(*row) for row in found]
        rows = await self._rows(_SELECT_REL + "ORDER BY thread")
        return [RelationshipRecord(*row) for row in rows]

    async def relationships_where(
        self,
        *,
        role: str | None = None,
        peer_key: bytes | None = None,
        peer_url: str | None = None,
        label: str | None = None,
        states: Collection[str] | None = None,
        thread_range: tuple[bytes, bytes] | None = None,
    ) -> list[RelationshipRecord]:
        """Without the state blob, right here (:meth:`_point`): a look-up by an indexed column
        returning the few rows that match."""
        where = RelationshipsWhere(role, peer_key, peer_url, label, states, thread_range)
        sql, params = where.sql(lambda n: f"?{n}")
        found = await self._point(_SELECT_REL_NO_DATA + sql + "ORDER BY thread", params)
        return [RelationshipRecord(*row) for row in found]

    async def find_relationship(
        self, local_key: bytes | None = None, peer_key: bytes | None = None
    ) -> list[RelationshipRecord]:
        rows = await self._rows(
            _SELECT_REL + "WHERE (?1 IS NULL OR local_key = ?1) AND (?2 IS NULL OR peer_key = ?2) "
            "ORDER BY thread",
            (local_key, peer_key),
        )
        return [RelationshipRecord(*row) for row in rows]

    async def history(
        self, thread: bytes, start: int = 0, limit: int | None = None
    ) -> list[HistoryEntry]:
        rows = await self._rows(
            _SELECT_HIST + "WHERE thread = ? AND idx >= ? ORDER BY idx LIMIT ?",
            (thread, start, -1 if limit is None else limit),
        )
        return [HistoryEntry(*row) for row in rows]

    async def history_head(self, thread: bytes) -> HistoryEntry | None:
        rows = await self._point(
            _SELECT_HIST + "WHERE thread = ? ORDER BY idx DESC LIMIT 1", (thread,)
        )
        return HistoryEntry(*rows[0]) if rows else None

    async def history_entry(self, thread: bytes, msg_hash: bytes) -> HistoryEntry | None:
        """The first entry of ``thread`` holding ``msg_hash`` (lowest index), or None."""
        rows = await self._rows(
            _SELECT_HIST + "WHERE thread = ? AND msg_hash = ? ORDER BY idx LIMIT 1",
            (thread, msg_hash),
        )
        return HistoryEntry(*rows[0]) if rows else None

    async def outbox_due(self, now_ms: int, limit: int = 100) -> list[OutboxItem]:
        rows = await self._rows(
            _SELECT_OUTBOX + "WHERE next_attempt_ms <= ? ORDER BY next_attempt_ms, item_id LIMIT ?",
            (now_ms, limit),
        )
        return [OutboxItem(*row) for row in rows]

    async def outbox_all(self) -> list[OutboxItem]:
        rows = await self._rows(_SELECT_OUTBOX + "ORDER BY item_id")
        return [OutboxItem(*row) for row in rows]

    async def get_meta(self, key: str) -> bytes | None:
        found = await self._point("SELECT value FROM meta WHERE key = ?", (key,))
        return bytes(found[0][0]) if found else None

    async def outbox_for(self, thread: bytes) -> list[OutboxItem]:
        found = await self._point(_SELECT_OUTBOX + "WHERE thread = ? ORDER BY item_id", (thread,))
        return [OutboxItem(*row) for row in found]

    # -- typed records (schema v3) --

    async def get_thread(self, thread: bytes) -> ThreadRecord | None:
        found = await self._point(typed.SELECT_THREAD + "WHERE thread = ?", (thread,))
        return typed.thread_record(found[0]) if found else None

    async def threads(self, *, vendor_key: bytes | None = None, kind: ThreadKind | None = None
                      ) -> list[ThreadRecord]:  # fmt: skip
        spelled = None if kind is None else kind.value
        if vendor_key is not None:  # by its index, right here: a connect's or intentcast's
            found = await self._point(
                typed.SELECT_THREAD + "WHERE vendor_key = ?1 AND (?2 IS NULL OR kind = ?2) "
                "ORDER BY thread", (vendor_key, spelled),
            )  # fmt: skip
            return [typed.thread_record(row) for row in found]
        found = await self._rows(
            typed.SELECT_THREAD + "WHERE (?1 IS NULL OR kind = ?1) ORDER BY thread", (spelled,)
        )
        return [typed.thread_record(row) for row in found]

    async def drafts(self, thread: bytes | None = None) -> list[DraftRecord]:
        if thread is not None:  # one thread's queue: a point read
            found = await self._point(
                typed.SELECT_DRAFT + "WHERE thread = ? ORDER BY seq", (thread,)
            )
            return [typed.draft_record(row) for row in found]
        found = await self._rows(typed.SELECT_DRAFT + "ORDER BY thread, seq")
        return [typed.draft_record(row) for row in found]

    async def save_point(self, thread: bytes, msg_hash: bytes) -> SavePoint | None:
        found = await self._point(
            typed.SELECT_SAVE_POINT + "WHERE thread = ? AND msg_hash = ?", (thread, msg_hash)
        )
        return typed.save_point_record(found[0]) if found else None

    async def save_points(self, thread: bytes) -> list[SavePoint]:
        found = await self._point(
            typed.SELECT_SAVE_POINT + "WHERE thread = ? ORDER BY msg_hash", (thread,)
        )
        return [typed.save_point_record(row) for row in found]

    async def held(self, thread: bytes) -> list[HeldRecord]:
        found = await self._point(typed.SELECT_HELD + "WHERE thread = ? ORDER BY field", (thread,))
        return [typed.held_record(row) for row in found]

    async def held_expired(self, now_ms: int) -> list[tuple[bytes, bytes]]:
        found = await self._rows(
            "SELECT DISTINCT thread, share FROM held WHERE expires_ms IS NOT NULL "
            "AND expires_ms <= ? ORDER BY thread, share",
            (now_ms,),
        )
        return [(bytes(t), bytes(s)) for t, s in found]

    async def get_intent(self, intent_id: bytes) -> IntentRecord | None:
        found = await self._point(typed.SELECT_INTENT + "WHERE intent_id = ?", (intent_id,))
        return typed.intent_record(found[0]) if found else None

    async def intents(self) -> list[IntentRecord]:
        found = await self._rows(typed.SELECT_INTENT + "ORDER BY sent_ms, intent_id")
        return [typed.intent_record(row) for row in found]

    async def offers(self, intent_id: bytes | None = None) -> list[OfferRecord]:
        found = await self._rows(
            typed.SELECT_OFFER + "WHERE (?1 IS NULL OR intent_id = ?1) "
            "ORDER BY intent_id, received_ms, hash",
            (intent_id,),
        )
        return [typed.offer_record(row) for row in found]

    async def get_offer(self, offer_hash: bytes) -> OfferRecord | None:
        found = await self._point(typed.SELECT_OFFER + "WHERE hash = ?", (offer_hash,))
        return typed.offer_record(found[0]) if found else None

    async def share_notes(self, thread: bytes | None = None) -> list[ShareNote]:
        """Every note (on the pool), or one thread's through the key ``(thread, share)``
        (schema 13, :mod:`vrmproto.store._migrate_v13`), a point read as :meth:`held` is: a
        statement per case, as ``?1 IS NULL OR thread = ?1`` is planned as a scan."""
        if thread is None:
            found = await self._rows(typed.NOTES_ALL)
        else:
            found = await self._point(typed.NOTES_OF_THREAD, (thread,))
        return [typed.note_record(row) for row in found]

    async def usage(self) -> StoreUsage:
        """The database file and its WAL, and the free space of their file system (read on a
        reader thread: two stats and a statvfs)."""
        if self._closed or self._readers is None:
            raise StoreError("store is closed")

        def measure() -> StoreUsage:
            stored = 0
            for path in (self.path, self.path.with_name(self.path.name + "-wal")):
                with contextlib.suppress(FileNotFoundError):
                    stored += path.stat().st_size
            return StoreUsage(stored, shutil.disk_usage(self.path.parent).free)

        return await asyncio.get_running_loop().run_in_executor(self._readers, measure)

    async def counts(self) -> StoreCounts:
        """Counted by SQLite on a reader thread (:mod:`vrmproto.store._counts`): never on the
        event loop's, as :meth:`relationships` without data is."""
        return await self._read(read_counts)

    async def pragmas(self) -> dict[str, Any]:
        """The write connection's settings (journal_mode, synchronous, foreign_keys,
        busy_timeout, user_version), read on the writer thread; for diagnostics and tests."""

        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "user_version")
            return {n: conn.execute(f"PRAGMA {n}").fetchone()[0] for n in names}

        return await self._write(read, inline=False)
