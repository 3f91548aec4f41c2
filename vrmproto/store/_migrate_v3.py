"""Schema 2 → 3: typed records instead of string-keyed blobs in ``meta``.

Runs inside the migration step's transaction (:func:`vrmproto.store._sqlite._migrate`): it
creates the tables of :mod:`vrmproto.store._sqlite_rows`, converts every v2 blob to rows and
deletes its meta key. A blob it cannot read fails the step, and the rollback leaves the file at
version 2 as it was: nothing is dropped silently. The v2 keys:

- ``client.thread.<hex>`` — the customer's ``ThreadMeta`` as JSON → a ``threads`` row; its
  ``drafts`` (hex of msgpack ``{"args", "id", "op"}``) → ``drafts`` rows in order (kind: the
  ``op``, payload: the msgpack bytes); its ``rollback`` (msg hash hex → ``[length, head hex,
  state hex]``) → ``save_points`` rows with ``after = length + 1``.
- ``client.types.<hex>`` — the discovery document's ``types`` as JSON → ``threads.types``
  (dropped when the thread has no ``client.thread.`` record: it was never opened).
- ``held:<hex>`` — the vendor's held data, msgpack ``[{"record": vrm-data/1 map, "share":
  hash}, …]`` → ``held`` rows, each with its share's expiry from the relationship's state.
- ``rollback:<hex>`` — the vendor's point before its last replies, msgpack ``[reply hashes,
  length, head, state, after]`` (or empty: none) → one ``save_points`` row per reply hash.

Other meta keys (the master-seed check ``client.master``) stay: they are store-level settings.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from vrmproto import _codec
from vrmproto._errors import ProtocolError
from vrmproto._vocab import DataRecord
from vrmproto.store._base import StoreError
from vrmproto.store._rows import DraftRecord, HeldRecord, SavePoint, ThreadKind, ThreadRecord
from vrmproto.store._sqlite_rows import (
    DRAFT_COLUMNS,
    HELD_COLUMNS,
    SAVE_POINT_COLUMNS,
    SCHEMA_V3,
    THREAD_COLUMNS_V3,
    draft_row,
    held_row,
    save_point_row,
    thread_row,
)

__all__ = ["V2_PREFIXES", "MigrationError", "migrate_2_to_3"]

_THREAD = "client.thread."
_TYPES = "client.types."
_HELD = "held:"
_ROLLBACK = "rollback:"
#: The meta key prefixes schema v3 turns into rows.
V2_PREFIXES = (_THREAD, _TYPES, _HELD, _ROLLBACK)


class MigrationError(StoreError):
    """A v2 blob could not be read; the step rolled back and the file is at version 2."""


def migrate_2_to_3(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA_V3:
        conn.execute(statement)
    blobs = _v2_blobs(conn)
    for key, raw in blobs:
        try:
            _convert(conn, key, raw, blobs)
        except (ValueError, KeyError, TypeError, IndexError, ProtocolError) as exc:
            raise MigrationError(f"cannot migrate meta key {key!r} to schema 3: {exc}") from exc
    conn.executemany("DELETE FROM meta WHERE key = ?", [(key,) for key, _ in blobs])


def _v2_blobs(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
    where = " OR ".join("substr(key, 1, ?) = ?" for _ in V2_PREFIXES)
    params = [p for prefix in V2_PREFIXES for p in (len(prefix), prefix)]
    found = conn.execute(f"SELECT key, value FROM meta WHERE {where} ORDER BY key", params)  # noqa: S608
    return [(str(k), bytes(v)) for k, v in found.fetchall()]


def _convert(conn: sqlite3.Connection, key: str, raw: bytes,
             blobs: list[tuple[str, bytes]]) -> None:  # fmt: skip
    if key.startswith(_THREAD):
        thread = bytes.fromhex(key.removeprefix(_THREAD))
        types = dict(blobs).get(_TYPES + thread.hex())
        _client_thread(conn, thread, json.loads(raw), None if types is None else json.loads(types))
    elif key.startswith(_HELD):
        _held(conn, bytes.fromhex(key.removeprefix(_HELD)), raw)
    elif key.startswith(_ROLLBACK):
        _server_rollback(conn, bytes.fromhex(key.removeprefix(_ROLLBACK)), raw)
    # client.types.<hex> is read with its thread's record


def _client_thread(conn: sqlite3.Connection, thread: bytes, d: dict[str, Any],
                   types: list[Any] | None) -> None:  # fmt: skip
    record = ThreadRecord(
        thread=thread, kind=ThreadKind(d["kind"]), vendor_key=bytes.fromhex(d["vendor_key"]),
        name=str(d["name"]), inbox=str(d["inbox"]), history_url=str(d["history"]),
        lifetime_ms=int(d["lifetime_ms"]), generation=int(d["generation"]),
        intent_id=bytes.fromhex(d["intent_id"]) if d["intent_id"] else None,
        last_activity_ms=int(d["last_activity_ms"]), last_problem=str(d["last_problem"]),
        types=None if types is None else tuple(str(t) for t in types),
    )  # fmt: skip
    conn.execute(f"INSERT INTO threads ({THREAD_COLUMNS_V3}) VALUES "  # noqa: S608
                 f"({', '.join('?' * 12)})", thread_row(record)[:12])  # fmt: skip
    for seq, hexed in enumerate(d.get("drafts", [])):
        payload = bytes.fromhex(hexed)
        op = _codec.decode(payload, max_depth=16)["op"]
        draft = DraftRecord(thread, seq, str(op), payload)
        conn.execute(f"INSERT INTO drafts ({DRAFT_COLUMNS}) VALUES (?, ?, ?, ?)", draft_row(draft))  # noqa: S608
    for msg_hex, (length, head, state) in sorted(d.get("rollback", {}).items()):
        point = SavePoint(thread, bytes.fromhex(msg_hex), int(length), bytes.fromhex(head),
                          bytes.fromhex(state), int(length) + 1)  # fmt: skip
        _insert_point(conn, point)


def _insert_point(conn: sqlite3.Connection, p: SavePoint) -> None:
    conn.execute(f"INSERT INTO save_points ({SAVE_POINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",  # noqa: S608
                 save_point_row(p))  # fmt: skip


def _held(conn: sqlite3.Connection, thread: bytes, raw: bytes) -> None:
    found = conn.execute("SELECT data FROM relationships WHERE thread = ?", (thread,)).fetchone()
    expiry: dict[bytes, int] = {}
    if found is not None:
        state = _codec.decode_form(bytes(found[0]))
        expiry = {bytes(h): int(e) for h, e in state.get("shares", [])}
    for item in _codec.decode(raw, max_depth=4):
        share = bytes(item["share"])
        r = DataRecord.from_wire(item["record"])
        held = HeldRecord(thread, r.field, r.value, r.category, r.source, r.collected,
                          tuple(r.purposes), share, expiry.get(share))  # fmt: skip
        conn.execute(f"INSERT INTO held ({HELD_COLUMNS}) VALUES ({', '.join('?' * 9)}) "  # noqa: S608
                     "ON CONFLICT (thread, field) DO UPDATE SET value = excluded.value, "
                     "category = excluded.category, source = excluded.source, "
                     "collected_ms = excluded.collected_ms, purposes = excluded.purposes, "
                     "share = excluded.share, expires_ms = excluded.expires_ms",
                     held_row(held))  # fmt: skip


def _server_rollback(conn: sqlite3.Connection, thread: bytes, raw: bytes) -> None:
    if not raw:  # restored or never set: no point
        return
    hashes, length, head, state, after = _codec.decode_form(raw)
    for msg_hash in hashes:
        _insert_point(conn, SavePoint(thread, bytes(msg_hash), int(length), bytes(head),
                                      bytes(state), int(after)))  # fmt: skip
