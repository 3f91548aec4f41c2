"""Storage: the :class:`Store` protocol, its SQLite default and an in-memory twin.

A store keeps what the protocol layer hands it — opaque bytes plus a few indexed columns — and
enforces spec §12 (durability): one :class:`Commit` per protocol step, written all or nothing,
and ``await store.commit(c)`` returns only once ``c`` is durable, so a receipt is sent only
after commit. Uniqueness rules make retries and replays safe (:class:`StoreConflict`).

- :class:`SQLiteStore` — the default: one file, WAL, ``synchronous=FULL``, group commit; with
  ``inline=True`` (the customer's agent) commits run on the caller's thread and one fsync of the
  WAL covers all made before it (``docs/storage.md``).
- :class:`MemoryStore` — the same semantics in dictionaries, for tests and in-memory pairs.
- :class:`PostgresStore` — PostgreSQL through asyncpg, for many server processes
  (``pip install 'vrmproto[postgres]'``).

Beside relationships, histories, replay records and the outbox, every persistent thing a node
keeps is a typed record with its own Commit parts and queries (schema v3): :class:`ThreadRecord`,
:class:`DraftRecord`, :class:`SavePoint`, :class:`HeldRecord`, :class:`IntentRecord`,
:class:`OfferRecord`, :class:`ShareNote`. ``meta`` keeps only store-level settings.
A new backend proves itself with :mod:`vrmproto.testing.store_contract`.

Exceptions::

    VrmError
    └── StoreError          storage failed or was misused; nothing of the Commit was written
        ├── SchemaTooNew    the database was written by a newer vrmproto (left as it is)
        ├── StoreBusy       another process held the write lock too long (try again later)
        └── StoreConflict   a history slot or a dedupe key already exists
"""

from vrmproto.store._base import (
    Commit,
    DeadLetter,
    DedupeRecord,
    DraftRecord,
    EventRecord,
    EventWatch,
    FailingEvent,
    HeldRecord,
    HistoryEntry,
    IntentRecord,
    NewOutboxItem,
    OfferRecord,
    OutboxItem,
    RelationshipRecord,
    SavePoint,
    SchemaTooNew,
    ShareNote,
    Store,
    StoreBusy,
    StoreConflict,
    StoreCounts,
    StoreError,
    StoreUsage,
    ThreadKind,
    ThreadRecord,
)
from vrmproto.store._memory import MemoryStore
from vrmproto.store._postgres import PostgresConfig, PostgresStore
from vrmproto.store._sqlite import SQLiteStore, StoreStats

__all__ = [
    "Commit",
    "DeadLetter",
    "DedupeRecord",
    "DraftRecord",
    "EventRecord",
    "EventWatch",
    "FailingEvent",
    "HeldRecord",
    "HistoryEntry",
    "IntentRecord",
    "MemoryStore",
    "NewOutboxItem",
    "OfferRecord",
    "OutboxItem",
    "PostgresConfig",
    "PostgresStore",
    "RelationshipRecord",
    "SQLiteStore",
    "SavePoint",
    "SchemaTooNew",
    "ShareNote",
    "Store",
    "StoreBusy",
    "StoreConflict",
    "StoreCounts",
    "StoreError",
    "StoreStats",
    "StoreUsage",
    "ThreadKind",
    "ThreadRecord",
]
