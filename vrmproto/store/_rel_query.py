"""The SQL of :meth:`~vrmproto.store.Store.relationships_where`, for the SQLite and PostgreSQL
stores alike: a ``WHERE`` clause naming only the criteria given, so the database looks up the
column indexed for one of them (the peer key, URL or label, the thread id) instead of scanning
every row; and those indexes (:data:`INDEXES`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from vrmproto.store._base import RelationshipRecord

__all__ = ["INDEXES", "RelationshipsWhere", "migrate_6_to_7"]

#: SQLite's version 7, PostgreSQL's version 6: a customer's relationships by the two columns a
#: person names one by (its vendor's base URL, its vendor's name), beside those by key and
#: thread id. Partial: only the customer's own rows are in them (a query names ``role =
#: 'customer'`` to use them, :meth:`RelationshipsWhere.sql`), so a vendor, which never looks a
#: customer up by URL or name, writes no entry to either for each first contact — the label is
#: a key fingerprint, a random page of the index per new relationship. Version 7 also drops
#: ``held_by_share``: its one statement, dropping a withdrawn share's rows, names the thread
#: too, which the primary key ``(thread, field)`` finds, while every held row a share writes
#: (one per field, every share) also rewrote an entry of it (#12).
INDEXES = (
    "CREATE INDEX IF NOT EXISTS relationships_by_peer_url ON relationships (peer_url) "
    "WHERE role = 'customer'",
    "CREATE INDEX IF NOT EXISTS relationships_by_label ON relationships (label) "
    "WHERE role = 'customer'",
    "DROP INDEX IF EXISTS held_by_share",
)
#: The roles a query spells as a literal: a partial index is used only by a query whose terms
#: imply its ``WHERE``, and a parameter does not in PostgreSQL's generic plan of a prepared
#: statement (SQLite looks at the value bound).
_ROLES = frozenset({"customer", "vendor"})


def migrate_6_to_7(conn: sqlite3.Connection) -> None:
    """Index a customer's relationships by URL and by name, drop ``held_by_share``
    (:data:`INDEXES`). A relationship's Commit rewrites neither new index while URL and name
    stay the same (``_REL_UPSERT_KEPT`` leaves them out of its SET), so a message costs no
    write to them (#12). ``IF [NOT] EXISTS``: a file an older vrmproto left at version 6 may
    not be the first to see them (tests downgrade fresh files so)."""
    for statement in INDEXES:
        conn.execute(statement)


class RelationshipsWhere(NamedTuple):
    """The criteria of one :meth:`~vrmproto.store.Store.relationships_where` call (a tuple:
    made per look-up, per message)."""

    role: str | None = None
    peer_key: bytes | None = None
    peer_url: str | None = None
    label: str | None = None
    states: Collection[str] | None = None
    thread_range: tuple[bytes, bytes] | None = None

    def sql(self, mark: Callable[[int], str]) -> tuple[str, tuple[object, ...]]:
        """``"WHERE …"`` (or ``""``) and its parameters; ``mark(n)`` spells the n-th (from 1)."""
        terms: list[str] = []
        params: list[object] = []

        def term(template: str, *values: object) -> None:
            marks = [mark(len(params) + i + 1) for i in range(len(values))]
            terms.append(template.format(*marks))
            params.extend(values)

        if self.role in _ROLES:
            terms.append(f"role = '{self.role}'")  # a literal, for the partial indexes
        elif self.role is not None:
            term("role = {0}", self.role)
        for column in ("peer_key", "peer_url", "label"):
            value = getattr(self, column)
            if value is not None:
                term(column + " = {0}", value)
        if self.states is not None:
            states = sorted(self.states)
            if not states:
                return "WHERE FALSE ", ()
            term("state IN (" + ", ".join(f"{{{i}}}" for i in range(len(states))) + ")", *states)
        if self.thread_range is not None:
            term("thread BETWEEN {0} AND {1}", *self.thread_range)
        return ("WHERE " + " AND ".join(terms) + " ") if terms else "", tuple(params)

    def matches(self, r: RelationshipRecord) -> bool:
        """Whether ``r`` meets every criterion (the in-memory store's filter)."""
        return ((self.role is None or r.role == self.role)
                and (self.peer_key is None or r.peer_key == self.peer_key)
                and (self.peer_url is None or r.peer_url == self.peer_url)
                and (self.label is None or r.label == self.label)
                and (self.states is None or r.state in self.states)
                and (self.thread_range is None
                     or self.thread_range[0] <= r.thread <= self.thread_range[1]))  # fmt: skip
