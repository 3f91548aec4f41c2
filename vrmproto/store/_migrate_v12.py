"""Schema 11 → 12 (PostgreSQL 7 → 8): the events a webhook is retrying, kept with its cursor.

A webhook's event that keeps failing becomes a dead letter ``dead_after_s`` after its first
failed attempt (docs/events.md, "Dead letters"). That first attempt's time was kept only in the
deliverer's memory, so a vendor restarted more often than ``dead_after_s`` (daily, with the
default of three days) started the clock again at every start and never set the event aside:
the feed stayed blocked behind it for ever. Version 12 adds ``webhook_failing``, one row per
event being retried (:class:`~vrmproto.store.FailingEvent`: since when, how many attempts, the
last error, and whether the receiver answered 410 Gone — which pauses the webhook), written with
each failed attempt and deleted with the cursor record that passes the event; a deliverer that
starts reads it, and goes on with the same deadline and backoff.
"""

from __future__ import annotations

import sqlite3

__all__ = ["PG_SCHEMA_V8", "migrate_11_to_12"]

_TABLE = """CREATE TABLE webhook_failing (
        name {text} NOT NULL, pos {int} NOT NULL, since_ms {int} NOT NULL,
        attempts {int} NOT NULL, error {text} NOT NULL, gone {small} NOT NULL,
        PRIMARY KEY (name, pos))"""

#: PostgreSQL's step 7 → 8: the same table.
PG_SCHEMA_V8 = (_TABLE.format(text="text", int="bigint", small="smallint"),)


def migrate_11_to_12(conn: sqlite3.Connection) -> None:
    """Add ``webhook_failing`` (see the module)."""
    conn.execute(_TABLE.format(text="TEXT", int="INTEGER", small="INTEGER"))
