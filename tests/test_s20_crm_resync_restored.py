"""``--resync`` after the vendor's store was restored from a backup applies the new events,
even where Tryton holds a value from an event of the lost timeline at a later position.

The restored store numbers its new events from the backup's last position, so Tryton's own
table of applied events (``vrmproto_crm_event``) holds positions of the lost timeline that the
feed now gives to other events. The bridge keeps a late event from replacing a value held from
a later one (a replayed dead letter must not put an old address back): so the customer's new
email, at a position below that of the lost event that gave the held one, was taken for a late
event and skipped — Tryton kept an email the vendor never had after the restore — and the
lost event's position stayed Tryton's cursor (a later start stopped again, or read on from
the wrong event). Now a resync checks, before it applies an event, that the events holding its
fields from later positions are this feed's: one that is not is set aside (its position
negated: older than the whole feed); and an event applied at a position sets aside any other
recorded at it. Events of this feed are never set aside, so a resync over a database fed from
webhooks (with holes) still keeps a late event from replacing a later one's value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import test_s19_feed_privacy_crm as privacy
from test_s19_feed_privacy_crm import values

from vrmproto.server._events import FeedEvent, follow, to_feed_event
from vrmproto.store import Commit, EventRecord, SQLiteStore

crm = privacy.crm
THREAD = b"\xab" * 16
REL = THREAD.hex()


def record(seq: int, kind: str, msg: str, fields: dict[str, str] | None = None) -> EventRecord:
    personal = None
    if fields is not None:
        personal = json.dumps({"fields": fields, "field_purposes": {k: [1] for k in fields},
                               "purposes": [1], "field_shares": {}, "field_expires": {}},
                              sort_keys=True).encode()  # fmt: skip
    data = json.dumps({"type": "x", "from": "customer", "created": 1_000 + seq, "body": {}})
    return EventRecord("evt_" + msg, THREAD, seq, kind, msg.encode().ljust(32, b"."),
                       1_000 + seq, data.encode(), personal)  # fmt: skip


def at(pos: int, e: EventRecord) -> FeedEvent:
    return to_feed_event(EventRecord(e.id, e.thread, e.seq, e.kind, e.msg_hash, e.recorded_ms,
                                     e.data, e.personal, pos), 0)  # fmt: skip


@pytest.mark.slow
async def test_a_resync_of_a_restored_feed_applies_the_new_email(crm: Any, tmp_path: Path) -> None:
    from vrmproto.crm.tryton import TrytonBridge  # noqa: PLC0415 -- needs trytond

    kept = [record(1, "relationship.opened", "a"),
            record(2, "address.updated", "b", {"email": "one@example.org"})]  # fmt: skip
    lost = [record(3, "terms.offered", "c"),
            record(4, "address.updated", "d", {"email": "lost@example.org"})]  # fmt: skip
    for pos, e in enumerate(kept + lost, start=1):  # Tryton applied the feed before the restore
        crm.apply(at(pos, e).as_json(), 0)
    assert values("crm", REL) == {"lost@example.org"}
    new = [record(3, "address.updated", "e", {"email": "new@example.org"}),
           record(4, "terms.offered", "f")]  # fmt: skip

    async with await SQLiteStore.open(tmp_path / "vendor.db") as store, \
            await TrytonBridge.open("crm", path=tmp_path) as bridge:  # fmt: skip
        await store.commit(Commit(events=(*kept, *new)))  # the restored store, and what came
        assert [e.id for e in await store.events()] == ["evt_a", "evt_b", "evt_e", "evt_f"]
        await bridge.run(lambda after: follow(store, None, after), after=0)  # --resync
        assert values("crm", REL) == {"new@example.org"}, "the new email was skipped"
        assert await bridge.cursor() == 4
        assert [await bridge.applied_at(p) for p in (1, 2, 3, 4)] == [
            "evt_a", "evt_b", "evt_e", "evt_f"]  # fmt: skip
        await store.commit(Commit(events=(record(5, "address.updated", "g",
                                                 {"email": "newer@example.org"}),)))  # fmt: skip
        await bridge.run(lambda after: follow(store, None, after))  # a later start goes on
        assert values("crm", REL) == {"newer@example.org"}


@pytest.mark.slow
async def test_a_resync_keeps_a_later_value_of_this_feed(crm: Any, tmp_path: Path) -> None:
    """A database fed from webhooks missed an event (a dead letter); the resync applies it,
    and the value a later event of the same feed gave stays."""
    from vrmproto.crm.tryton import TrytonBridge  # noqa: PLC0415 -- needs trytond

    events = [record(1, "relationship.opened", "a"),
              record(2, "address.updated", "b", {"email": "old@example.org"}),
              record(3, "address.updated", "c", {"email": "new@example.org"})]  # fmt: skip
    for pos in (1, 3):
        crm.apply(at(pos, events[pos - 1]).as_json(), 0)
    async with await SQLiteStore.open(tmp_path / "vendor.db") as store, \
            await TrytonBridge.open("crm", path=tmp_path) as bridge:  # fmt: skip
        await store.commit(Commit(events=tuple(events)))
        await bridge.run(lambda after: follow(store, None, after), after=0)
        assert values("crm", REL) == {"new@example.org"}
        assert await bridge.applied_at(2) == "evt_b"
