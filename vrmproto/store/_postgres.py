"""The server store: PostgreSQL through asyncpg, for a vendor running many server processes.

The same :class:`~vrmproto.store.Store` protocol as :class:`~vrmproto.store.SQLiteStore`, on a
database that many processes on many machines share (spec §12.7-4: uniqueness is kept by the
database across receiver processes). Install with ``pip install 'vrmproto[postgres]'``.

Durability, spec §12 (durability). Every connection runs with ``synchronous_commit = on``
whatever the server's default: COMMIT returns only once the transaction's WAL is flushed (and,
where ``synchronous_standby_names`` is set, confirmed by a synchronous standby). A
:meth:`PostgresStore.commit` resolves only after the COMMIT containing its changes returned.

Group commit, as in the SQLite store. ``commit()`` queues the Commit and awaits a future. Each
of :attr:`PostgresConfig.writers` writer tasks owns one connection; a free writer takes
everything queued (up to :attr:`PostgresConfig.batch_cap`), opens one transaction, applies the
Commits — consecutive ones that only upsert and insert together, one ``unnest`` statement per
table (:func:`~vrmproto.store._pg_apply.apply_group`), the others each in its own ``SAVEPOINT``
— and COMMITs once: one WAL flush and a handful of round trips for the whole batch. A Commit
that hits a uniqueness rule is rolled back alone and gets :class:`StoreConflict`; if the COMMIT
fails, every Commit of the batch gets :class:`StoreError`. A batch that PostgreSQL aborts as a
deadlock victim or serialization failure is retried whole (nothing of it was written). While one
writer waits for its flush, the others fill and send the next batches, and PostgreSQL flushes
concurrent transactions' WAL together — across processes too.

A lost connection makes the batch on it fail with :class:`StoreError`; the writer reconnects for
the next one. So does one that answers nothing for :attr:`PostgresConfig.command_timeout_s` (a
database host gone without a reset), and a lock another session keeps for
:attr:`PostgresConfig.lock_timeout_ms`. If the connection broke after COMMIT was sent, the
outcome is unknown to this process: the Commit may have landed. A caller that retries then meets
:class:`StoreConflict` on the message's dedupe key and answers with the stored response, as for
any replay.

Reads run on :attr:`PostgresConfig.pool_size` connections handed out in turn
(:mod:`vrmproto.store._pg_conns`); each sees every Commit whose future has resolved. Locks
(spec §11.11-2) are session advisory locks on one more connection
(:mod:`vrmproto.store._pg_locks`). A transaction that writes events notifies every process's
feed readers at its COMMIT; they listen (LISTEN/NOTIFY, :mod:`vrmproto.store._pg_notify`) on
one more connection per store, opened only once a reader watches
(:meth:`PostgresStore.watch_events`). The schema is versioned (:mod:`vrmproto.store._pg_schema`)
and migrated on open.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from vrmproto._closing import AsyncClosing
from vrmproto.store._base import (
    Commit,
    DedupeRecord,
    HistoryEntry,
    OutboxItem,
    RelationshipRecord,
    StoreConflict,
    StoreCounts,
    StoreError,
    StoreUsage,
)
from vrmproto.store._counts import STATEMENTS as COUNTS
from vrmproto.store._counts import counts_of
from vrmproto.store._pg_apply import apply_expecting, apply_group, groupable
from vrmproto.store._pg_conns import Connections
from vrmproto.store._pg_events import EventReads
from vrmproto.store._pg_events import forget as forget_step
from vrmproto.store._pg_events import trim as trim_step
from vrmproto.store._pg_locks import AdvisoryLocks
from vrmproto.store._pg_notify import EventNotices
from vrmproto.store._pg_reads import SELECT_OUTBOX, TypedReads
from vrmproto.store._pg_schema import SCHEMA_VERSION, check_schema_name, migrate
from vrmproto.store._rel_query import RelationshipsWhere
from vrmproto.store._sqlite import StoreStats
from vrmproto.store._trim import TRIM_BATCH

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = ["SCHEMA_VERSION", "PostgresConfig", "PostgresStore"]

_T = TypeVar("_T")

#: SQLSTATEs after which a batch is retried whole: deadlock victim, serialization failure.
_RETRY_STATES = frozenset({"40P01", "40001"})
_RETRIES = 3
_UNIQUE_VIOLATION = "23505"
_FOREIGN_KEY_VIOLATION = "23503"

_SELECT_REL = (
    "SELECT thread, role, local_key, peer_key, state, data, label, peer_url, updated_ms "
    "FROM relationships "
)
_SELECT_REL_NO_DATA = (
    "SELECT thread, role, local_key, peer_key, state, ''::bytea, label, peer_url, updated_ms "
    "FROM relationships "
)
_SELECT_HIST = (
    "SELECT thread, idx, msg_hash, entry_hash, envelope, direction, recorded_ms FROM history "
)
_USAGE = (
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'"
)


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    """Where the store is and how many connections it opens (``pool_size + writers + 1``).

    ``dsn`` is a libpq-style ``postgresql://`` URL as asyncpg reads it. :meth:`from_url` also
    takes the settings below from its query (``?vrm_schema=…&vrm_pool_size=…&vrm_writers=…``,
    ``vrm_batch_cap``, ``vrm_lock_timeout_ms``, ``vrm_command_timeout_s``).
    """

    dsn: str
    schema: str = "vrm"  # the PostgreSQL schema holding the tables
    pool_size: int = 4  # connections for reads and single-statement writes
    writers: int = 2  # connections each running group transactions
    batch_cap: int = 256  # most Commits one transaction takes
    connect_timeout_s: float = 10.0
    #: How long a statement may wait for a lock another session holds (PostgreSQL's
    #: ``lock_timeout``; 0: for ever). Past it the statement fails, and with it the Commits of
    #: its transaction (:class:`StoreError`, nothing written): a lock kept by another program
    #: or a session left open ends in errors the customers retry, not in requests that hang.
    #: The store's own waits (a row another writer commits, the feed's order) last
    #: milliseconds. Opening the store (the schema steps) waits for ever.
    lock_timeout_ms: int = 10_000
    #: How long the store waits for PostgreSQL's answer to a statement (asyncpg's
    #: ``command_timeout``) before it takes the connection for lost: a database host gone
    #: without a reset (a failover, a cut network) leaves a connection that answers nothing
    #: until TCP gives up, a quarter of an hour or for ever. The statement fails with
    #: :class:`StoreError` (a COMMIT's outcome is then unknown, as after any lost connection)
    #: and the connection is dropped without waiting for the server. Opening the store (the
    #: schema steps) has no such limit.
    command_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        check_schema_name(self.schema)
        if self.pool_size < 1 or self.writers < 1 or self.batch_cap < 1:
            raise ValueError("pool_size, writers and batch_cap must be at least 1")
        if self.lock_timeout_ms < 0:
            raise ValueError("lock_timeout_ms must be 0 (none) or more")
        if not self.command_timeout_s > 0:
            raise ValueError("command_timeout_s must be more than 0")

    @classmethod
    def from_url(cls, url: str) -> PostgresConfig:
        """A config from a URL whose ``vrm_*`` query parameters name the settings."""
        parts = urlsplit(url)
        ours: dict[str, Any] = {}
        theirs = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "vrm_schema":
                ours["schema"] = value
            elif key in ("vrm_pool_size", "vrm_writers", "vrm_batch_cap", "vrm_lock_timeout_ms"):
                ours[key.removeprefix("vrm_")] = int(value)
            elif key == "vrm_command_timeout_s":
                ours["command_timeout_s"] = float(value)
            else:
                theirs.append((key, value))
        return cls(urlunsplit(parts._replace(query=urlencode(theirs))), **ours)


@dataclass(slots=True)
class _Job:
    commit: Commit
    future: asyncio.Future[None]
    expect: RelationshipRecord | None = None
    ids: tuple[int, ...] = ()  # given to the Commit's outbox items (set when it is written)


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def _translate(exc: Exception) -> Exception:
    """Map an asyncpg error to the store's exception tree; leave ours as they are."""
    if isinstance(exc, StoreError):
        return exc
    state = _sqlstate(exc)
    err: StoreError
    if state == _UNIQUE_VIOLATION:
        err = StoreConflict(str(exc))
    elif state == _FOREIGN_KEY_VIOLATION:
        err = StoreError("history entry for a thread that has no relationship record")
    else:
        err = StoreError(f"postgresql: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():  # the caller stopped waiting; the write itself still stands
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)


class PostgresStore(TypedReads, EventReads, AsyncClosing):
    """A :class:`~vrmproto.store.Store` on PostgreSQL (see the module docstring).

    ``store = await PostgresStore.open("postgresql://…")`` or ``await
    PostgresStore.open(PostgresConfig(...))``; ``stats`` counts transactions.
    """

    def __init__(self, config: PostgresConfig) -> None:
        """Prefer :meth:`open`; a store made here is usable only after ``await start()``."""
        self.config = config
        self.stats = StoreStats()
        self._closed = True
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._writers: list[asyncio.Task[None]] = []
        self._readers = Connections(self._connect, config.pool_size, config.command_timeout_s)
        self._started = False
        self._locks = AdvisoryLocks(self._connect, config.schema, config.command_timeout_s)
        self.notices = EventNotices(self._connect, config.schema)

    @classmethod
    async def open(cls, config: PostgresConfig | str) -> PostgresStore:
        """Connect (creating or migrating the schema) and start the writers."""
        if isinstance(config, str):
            config = PostgresConfig.from_url(config)
        store = cls(config)
        await store.start()
        return store

    def _settings(self, *, waits: bool = False) -> dict[str, str]:
        return {
            "search_path": self.config.schema,
            "synchronous_commit": "on",
            "application_name": f"vrmproto {self.config.schema}",
            "lock_timeout": "0" if waits else str(self.config.lock_timeout_ms),
        }

    async def _connect(self, *, waits: bool = False) -> Connection:
        """A connection with the store's settings; ``waits``: without the lock timeout (the
        schema steps, which wait for another process's step however long it takes)."""
        try:
            asyncpg = importlib.import_module("asyncpg")
        except ImportError as exc:
            raise StoreError(
                "PostgresStore needs asyncpg: pip install 'vrmproto[postgres]'"
            ) from exc
        try:
            conn: Connection = await asyncpg.connect(
                self.config.dsn,
                timeout=self.config.connect_timeout_s,
                command_timeout=None if waits else self.config.command_timeout_s,
                server_settings=self._settings(waits=waits),
            )
        except (OSError, TimeoutError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        except Exception as exc:
            raise _translate(exc) from exc
        return conn

    async def start(self) -> None:
        """Migrate the schema and start the writer tasks (connections open when first used)."""
        if self._started:
            raise StoreError("store already started")
        self._started = True
        conn = await self._connect(waits=True)
        try:
            await migrate(conn, self.config.schema)
        except Exception as exc:
            raise _translate(exc) from exc
        finally:
            await conn.close()
        self._closed = False
        self._writers = [
            asyncio.create_task(self._writer_main(), name=f"vrm-pg-writer-{n}")
            for n in range(self.config.writers)
        ]

    async def close(self) -> None:
        """Let the writers finish everything queued, then close every connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        await asyncio.gather(*self._writers, return_exceptions=True)
        await self.notices.close()
        await self._locks.close()
        await self._readers.close()

    # -- the writers --

    async def _writer_main(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                first = await self._queue.get()
                if first is None:
                    self._queue.put_nowait(None)  # for the other writers
                    return
                batch = [first]
                while len(batch) < self.config.batch_cap and not self._queue.empty():
                    job = self._queue.get_nowait()
                    if job is None:
                        self._queue.put_nowait(None)
                        break
                    batch.append(job)
                conn = await self._run_batch(conn, batch)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=self.config.command_timeout_s)

    async def _run_batch(self, conn: Connection | None, batch: list[_Job]) -> Connection | None:
        """One transaction for ``batch`` (retried whole after a deadlock); resolve its futures.
        Returns the connection to use next (None after it broke)."""
        failure: Exception = StoreError("no attempt")
        for _ in range(_RETRIES):
            try:
                if conn is None or conn.is_closed():
                    conn = await self._connect()
                outcomes = await self._transact(conn, batch)
            except Exception as exc:
                failure = exc
                if _sqlstate(exc) in _RETRY_STATES:
                    continue
                break
            self._count(outcomes, len(batch))
            for job, error in zip(batch, outcomes, strict=True):
                _settle(job.future, error)
            return conn
        if _sqlstate(failure) is None and not isinstance(failure, StoreError):
            # the connection failed: if that was during COMMIT, the outcome is unknown here
            error = StoreError(f"PostgreSQL connection failed during a transaction: {failure}")
        else:
            error = StoreError(f"transaction failed, nothing of it was written: {failure}")
        error.__cause__ = failure
        for job in batch:
            _settle(job.future, error)
        if conn is not None and (_sqlstate(failure) is None or conn.is_closed()):
            conn.terminate()  # not a database answer: the connection is suspect (and may
            conn = None  # never answer again: no goodbye awaited)
        return conn

    def _count(self, outcomes: list[Exception | None], size: int) -> None:
        self.stats.transactions += 1
        self.stats.largest_batch = max(self.stats.largest_batch, size)
        self.stats.writes += sum(1 for e in outcomes if e is None)
        self.stats.conflicts += sum(1 for e in outcomes if isinstance(e, StoreConflict))

    async def _transact(self, conn: Connection, batch: list[_Job]) -> list[Exception | None]:
        """BEGIN; groups of consecutive groupable Commits together, the rest one by one, each
        in a savepoint; COMMIT. Raises (with nothing written) if the transaction fails."""
        outcomes: list[Exception | None] = []
        async with conn.transaction():
            i, n = 0, len(batch)
            while i < n:
                j = i
                while j < n and groupable(batch[j].commit):
                    j += 1
                if j - i >= 2 and await self._try_group(conn, batch[i:j]):
                    outcomes.extend([None] * (j - i))
                    i = j
                    continue
                outcomes.extend(
                    [await self._run_job(conn, job) for job in batch[i : max(j, i + 1)]]
                )
                i = max(j, i + 1)
        return outcomes

    @staticmethod
    async def _in_savepoint(conn: Connection, name: str, work: Awaitable[_T]) -> _T:
        """``work`` inside ``SAVEPOINT name``: undone alone if it raises (then re-raised),
        except a deadlock or serialization failure, which the whole batch retries."""
        await conn.execute(f"SAVEPOINT {name}")
        try:
            result = await work
        except Exception as exc:
            if _sqlstate(exc) in _RETRY_STATES:
                raise
            await conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            await conn.execute(f"RELEASE SAVEPOINT {name}")
            raise _translate(exc) from exc
        await conn.execute(f"RELEASE SAVEPOINT {name}")
        return result

    async def _run_job(self, conn: Connection, job: _Job) -> Exception | None:
        try:
            job.ids = await self._in_savepoint(
                conn, "job", apply_expecting(conn, job.commit, job.expect)
            )
        except StoreError as exc:
            return exc
        return None

    async def _try_group(self, conn: Connection, jobs: list[_Job]) -> bool:
        """The Commits of ``jobs`` written together; False, with nothing written, if one of
        them would fail (then they run one by one)."""
        try:
            return await self._in_savepoint(
                conn,
                "grp",
                apply_group(
                    conn,
                    [j.commit for j in jobs],
                    [j.expect for j in jobs if j.expect is not None],
                ),
            )
        except StoreError:
            return False

    # -- the Store protocol: writes --

    async def commit(
        self, c: Commit, *, expect: RelationshipRecord | None = None, durable: bool = True
    ) -> None:
        """Write ``c`` in the next group transaction; return after its COMMIT (receipt only
        after commit, spec §12 (durability)). Cancelling the wait does not cancel the write.

        ``expect``: write ``c`` only if the thread's relationship row is exactly this record
        when the transaction applies it, else :class:`StoreConflict` and nothing of ``c`` is
        written. The row is read ``FOR UPDATE`` in the same transaction, so no other process
        sharing the database can change it before the COMMIT (spec §12.7-4); a vendor endpoint
        commits a step taken from the relationship it kept warm this way instead of reading
        the record first (:mod:`vrmproto.server._warm`). ``durable=False`` is allowed and
        ignored: the commit is durable when it returns, as always."""
        await self.commit_ids(c, expect=expect, durable=durable)

    async def commit_ids(
        self, c: Commit, *, expect: RelationshipRecord | None = None, durable: bool = True
    ) -> tuple[int, ...]:
        """:meth:`commit`, returning the ids given to the items of ``c.outbox_add``, in
        order (``RETURNING`` of their insert)."""
        if self._closed:
            raise StoreError("store is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        job = _Job(c, future, expect)
        self._queue.put_nowait(job)
        await asyncio.shield(future)
        return job.ids

    async def _pooled(self, run: Callable[[Connection], Awaitable[_T]]) -> _T:
        if self._closed:
            raise StoreError("store is closed")
        try:
            return await self._readers.run(run)
        except StoreError:
            raise
        except (OSError, TimeoutError) as exc:
            raise StoreError(f"PostgreSQL connection failed: {exc}") from exc
        except Exception as exc:
            raise _translate(exc) from exc

    async def outbox_retry(
        self, item_id: int, attempts: int, next_attempt_ms: int, last_error: str
    ) -> None:
        """Record a failed delivery attempt durably; a missing item is ignored."""
        await self._pooled(lambda conn: conn.execute(
            "UPDATE outbox SET attempts = $2, next_attempt_ms = $3, last_error = $4 "
            "WHERE item_id = $1", item_id, attempts, next_attempt_ms, last_error,
        ))  # fmt: skip

    async def purge_dedupe(self, now_ms: int) -> int:
        """Delete de-duplication records that expired before ``now_ms``; return how many."""
        status = await self._pooled(
            lambda conn: conn.execute("DELETE FROM dedupe WHERE expires_ms < $1", now_ms)
        )
        return int(status.split()[-1])

    def watch_events(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` after each commit, by any process on this database and schema, that
        wrote events (LISTEN/NOTIFY on one connection of its own, opened again if lost; see
        :mod:`vrmproto.store._pg_notify`); returns what stops it
        (:class:`~vrmproto.store.EventWatch`)."""
        if self._closed:
            raise StoreError("store is closed")
        return self.notices.watch(wake)

    def lock(
        self, name: bytes, *, on_wait: Callable[[], None] | None = None
    ) -> AbstractAsyncContextManager[None]:
        """The lock ``name``, shared with every process and store object on this database and
        schema (spec §11.11-2; see :mod:`vrmproto.store._pg_locks`)."""
        if self._closed:
            raise StoreError("store is closed")
        return self._locks.hold(name, on_wait)

    # -- the Store protocol: reads --

    async def _rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        records = await self._pooled(lambda conn: conn.fetch(sql, *args))
        return [tuple(r) for r in records]

    async def get_dedupe(self, sender: bytes, msg_id: bytes) -> DedupeRecord | None:
        rows = await self._rows(
            "SELECT sender, msg_id, msg_hash, response, expires_ms FROM dedupe "
            "WHERE sender = $1 AND msg_id = $2", sender, msg_id,
        )  # fmt: skip
        return DedupeRecord(*rows[0]) if rows else None

    async def get_relationship(self, thread: bytes) -> RelationshipRecord | None:
        rows = await self._rows(_SELECT_REL + "WHERE thread = $1", thread)
        return RelationshipRecord(*rows[0]) if rows else None

    async def relationships(self, *, with_data: bool = True) -> list[RelationshipRecord]:
        select = _SELECT_REL if with_data else _SELECT_REL_NO_DATA
        return [RelationshipRecord(*r) for r in await self._rows(select + "ORDER BY thread")]

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
        where = RelationshipsWhere(role, peer_key, peer_url, label, states, thread_range)
        sql, params = where.sql(lambda n: f"${n}")
        rows = await self._rows(_SELECT_REL_NO_DATA + sql + "ORDER BY thread", *params)
        return [RelationshipRecord(*r) for r in rows]

    async def find_relationship(
        self, local_key: bytes | None = None, peer_key: bytes | None = None
    ) -> list[RelationshipRecord]:
        rows = await self._rows(
            _SELECT_REL + "WHERE ($1::bytea IS NULL OR local_key = $1) "
            "AND ($2::bytea IS NULL OR peer_key = $2) ORDER BY thread", local_key, peer_key,
        )  # fmt: skip
        return [RelationshipRecord(*r) for r in rows]

    async def history(
        self, thread: bytes, start: int = 0, limit: int | None = None
    ) -> list[HistoryEntry]:
        rows = await self._rows(
            _SELECT_HIST + "WHERE thread = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
            thread, start, limit,
        )  # fmt: skip
        return [HistoryEntry(*r) for r in rows]

    async def history_head(self, thread: bytes) -> HistoryEntry | None:
        rows = await self._rows(
            _SELECT_HIST + "WHERE thread = $1 ORDER BY idx DESC LIMIT 1", thread
        )
        return HistoryEntry(*rows[0]) if rows else None

    async def history_entry(self, thread: bytes, msg_hash: bytes) -> HistoryEntry | None:
        """The first entry of ``thread`` holding ``msg_hash`` (lowest index), or None."""
        rows = await self._rows(
            _SELECT_HIST + "WHERE thread = $1 AND msg_hash = $2 ORDER BY idx LIMIT 1",
            thread, msg_hash,
        )  # fmt: skip
        return HistoryEntry(*rows[0]) if rows else None

    async def outbox_due(self, now_ms: int, limit: int = 100) -> list[OutboxItem]:
        rows = await self._rows(
            SELECT_OUTBOX + "WHERE next_attempt_ms <= $1 ORDER BY next_attempt_ms, item_id "
            "LIMIT $2", now_ms, limit,
        )  # fmt: skip
        return [OutboxItem(*r) for r in rows]

    async def outbox_all(self) -> list[OutboxItem]:
        return [OutboxItem(*r) for r in await self._rows(SELECT_OUTBOX + "ORDER BY item_id")]

    async def get_meta(self, key: str) -> bytes | None:
        rows = await self._rows("SELECT value FROM meta WHERE key = $1", key)
        return bytes(rows[0][0]) if rows else None

    async def forget_consumer(self, name: str) -> bool:
        """One transaction on a pooled connection (:func:`forget_step`)."""
        return await self._pooled(lambda conn: forget_step(conn, name))

    async def trim_events(self, upto: int, *, recorded_before: int, keep: Collection[int] = (),
                          limit: int = TRIM_BATCH) -> int:  # fmt: skip
        """One step of trimming, one transaction on a pooled connection (:mod:`._trim`)."""
        return await self._pooled(
            lambda conn: trim_step(conn, upto, recorded_before, keep, limit))

    async def counts(self) -> StoreCounts:
        """Counted by PostgreSQL (:mod:`vrmproto.store._counts`), in one snapshot (a
        repeatable-read, read-only transaction on one pooled connection)."""

        async def read(conn: Connection) -> StoreCounts:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return counts_of([[tuple(r) for r in await conn.fetch(sql)] for sql in COUNTS])

        return await self._pooled(read)

    async def usage(self) -> StoreUsage:
        """The size of the store's tables with their indexes and TOAST (spec §11.8-4). The
        free space is the database server's, which a client cannot see: None."""
        rows = await self._rows(_USAGE, self.config.schema)
        return StoreUsage(int(rows[0][0]), None)

    async def settings(self) -> dict[str, Any]:
        """What the store's connections run with (``synchronous_commit``, ``search_path``,
        ``server_version``) and the schema version; for diagnostics and tests."""
        names = ("synchronous_commit", "search_path", "server_version")

        async def read(conn: Connection) -> dict[str, Any]:
            out: dict[str, Any] = {n: await conn.fetchval(f"SHOW {n}") for n in names}
            out["schema_version"] = await conn.fetchval("SELECT version FROM schema_version")
            return out

        return await self._pooled(read)
