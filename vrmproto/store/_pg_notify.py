"""Wake-ups for the event feed across processes: PostgreSQL's LISTEN/NOTIFY.

Every transaction that writes events also runs ``pg_notify('vrm_events', <schema>)`` (in
:func:`vrmproto.store._pg_events.apply_events`, in the statement that takes the feed's order
lock). PostgreSQL delivers a notification only when its transaction commits, to every session
listening on the channel, in commit order; one rolled back — or a savepoint of it — notifies
nobody. The payload is the store's schema, so stores of several schemas in one database wake only
their own readers.

:class:`EventNotices` is the listening side of one :class:`~vrmproto.store.PostgresStore`: one
dedicated connection, opened when the first reader watches (a process that never reads the feed
listens on nothing), that calls every watcher on each notification. If the connection is lost it
is opened again, after a wait that doubles from :data:`RETRY_MIN_S` to :data:`RETRY_MAX_S`;
notifications sent meanwhile are lost, so each (re)connection wakes every watcher once as well.
A connection that is silently gone (a network partition, no FIN) is noticed by a query every
:data:`CHECK_S`. Readers keep their poll as the fallback (``Wakeup.poll_s``), so a notification
lost anyway delays an event, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = ["CHANNEL", "CHECK_S", "RETRY_MAX_S", "RETRY_MIN_S", "EventNotices"]

log = logging.getLogger("vrmproto.store")

#: The channel every store's event-writing transactions notify; the payload is the schema.
CHANNEL = "vrm_events"
#: The wait before opening a lost listening connection again: doubling from min to max.
RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0
#: How often an idle listening connection is checked with a query.
CHECK_S = 30.0


class EventNotices:
    """Calls each watcher when a commit to ``schema`` wrote events (see the module docstring).
    ``connect`` opens a connection (the store's)."""

    def __init__(self, connect: Callable[[], Awaitable[Connection]], schema: str) -> None:
        self._connect = connect
        self._schema = schema
        self._watchers: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._conn: Connection | None = None
        self._changed = asyncio.Event()  # set and replaced when a connection starts or ends
        #: How many times a connection started listening (tests wait for the next one).
        self.connections = 0

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` on each notification (and each reconnection) until the returned
        function is called. The first watcher starts the listening connection."""
        self._watchers.append(wake)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"vrm-pg-listen-{self._schema}"
            )

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._watchers.remove(wake)

        return unwatch

    async def listening(self, after: int = 0) -> int:
        """Wait until a connection listens that is not among the first ``after``; its number
        (:attr:`connections`)."""
        assert self._task is not None, "nobody watches: nothing listens"
        while self.connections <= after or self._conn is None:
            await self._changed.wait()
        return self.connections

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection, if one listens (for tests)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else conn.get_server_pid()

    def _wake(self) -> None:
        for wake in list(self._watchers):
            try:
                wake()
            except Exception:
                log.exception("event notifications: a watcher failed")

    def _on_notification(self, conn: object, pid: int, channel: str, payload: object) -> None:
        if payload == self._schema:
            self._wake()

    def _set_up(self, conn: Connection | None) -> None:
        self._conn = conn
        if conn is not None:
            self.connections += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            conn: Connection | None = None
            try:
                conn = await self._connect()
                await self._listen(conn)
                delay = RETRY_MIN_S
                log.warning("event notifications: the listening connection was lost")
            except Exception as exc:
                log.warning("event notifications: %s; listening again in %.1f s", exc, delay)
            finally:
                self._set_up(None)
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _listen(self, conn: Connection) -> None:
        """Listen on ``conn`` until it is lost."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        await conn.add_listener(CHANNEL, self._on_notification)
        self._set_up(conn)
        self._wake()  # what was committed while nobody listened
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), CHECK_S)
            if not lost.is_set():
                await asyncio.wait_for(conn.execute("SELECT 1"), CHECK_S)

    async def close(self) -> None:
        """Stop listening."""
        task, self._task = self._task, None
        self._watchers.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
