"""The feed forgets a share's values wherever they are: once a share is withdrawn (§12.10-2) or
expires (§12.10-4), no event keeps a value it governed — its own data.shared event, and the
address.updated events that replaced its fields' values, which are held as the share's
(§5.3.6-2). An address update of a field no share held keeps it.

Before: the withdrawal or sweep dropped the data.shared event's ``personal`` only; every
address.updated event kept the new values for ever, and a reader (``vrm vendor events``, the
Tryton bridge) went on getting them after the share expired. Now each address.updated event
names per field the event it is held under (``field_shares``) and that share's expiry
(``field_expires``), and the store's ``held_drop`` takes the share's fields out of those events
(docs/events.md, "Personal data").

Against the reference vendor on memory, SQLite and PostgreSQL (skipped where there is none).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _postgres
import pytest
import test_s18_held_update as held_update
from _vendor_proc import DAY_MS
from test_s18_held_update import STORES, Vendor

from vrmproto._messages import DataWithdraw
from vrmproto.server._events import follow
from vrmproto.store import Commit, EventRecord, HeldRecord, Store
from vrmproto.testing.store_contract import digest

postgres_cluster = _postgres.postgres_cluster

NEW_EMAIL, NEW_CITY, PHONE = "new@example.org", "Lyon", "+1 555 0100"


vendor = held_update.vendor  # the reference vendor, agreed, on each store

def evt(msg_hash: bytes) -> str:
    return "evt_" + msg_hash.hex()


async def stored(v: Vendor, msg_hash: bytes) -> dict[str, Any] | None:
    """The ``personal`` the store holds for the event of ``msg_hash``."""
    (e,) = [e for e in await v.store.events(0, 1000) if e.msg_hash == msg_hash]
    return None if e.personal is None else json.loads(e.personal)  # type: ignore[no-any-return]


async def read(v: Vendor, msg_hash: bytes) -> dict[str, Any] | None:
    """The ``personal`` a reader of the feed gets for that event, at the vendor's clock."""
    found = [e async for e in follow(v.store, None, clock=lambda: v.now) if e.id == evt(msg_hash)]
    return found[0].personal


async def everywhere(v: Vendor) -> bytes:
    """Every byte of every stored event."""
    events: list[EventRecord] = await v.store.events(0, 1000)
    return b"".join(e.data + (e.personal or b"") for e in events)


async def test_a_withdrawal_takes_the_updated_values_out_of_the_feed(vendor: Vendor) -> None:
    """Two shares, an update of a field of each and of a new one: withdrawing the first takes
    its updated value out of the update's event, the second's and the new one's stay; then
    withdrawing the second leaves the update's event the new field alone."""
    v = vendor
    week = v.now + 7 * DAY_MS
    first = await v.share({"email": "old@example.org"}, expires=week)
    second = await v.share({"city": "Paris"}, expires=week + 1)
    update = await v.update({"email": NEW_EMAIL, "city": NEW_CITY, "phone": PHONE})
    assert await stored(v, update) == {
        "fields": {"email": NEW_EMAIL, "city": NEW_CITY, "phone": PHONE},
        "field_purposes": {"email": [2], "city": [2], "phone": [1]}, "purposes": [1, 2],
        "field_shares": {"email": evt(first), "city": evt(second)},  # phone: no share's
        "field_expires": {"email": week, "city": week + 1},
    }  # fmt: skip

    got = await v.send(DataWithdraw(agreement=v.agreement, shares=(first,)))
    assert [g.message.type for g in got] == ["receipt", "data.erased"]
    assert await stored(v, first) is None
    after = {
        "fields": {"city": NEW_CITY, "phone": PHONE},
        "field_purposes": {"city": [2], "phone": [1]}, "purposes": [1, 2],
        "field_shares": {"city": evt(second)}, "field_expires": {"city": week + 1},
    }  # fmt: skip
    assert await stored(v, update) == after
    assert await read(v, update) == after
    assert NEW_EMAIL.encode() not in await everywhere(v)

    await v.send(DataWithdraw(agreement=v.agreement, shares=(second,)))
    only_phone = {"fields": {"phone": PHONE}, "field_purposes": {"phone": [1]},
                  "purposes": [1], "field_shares": {}, "field_expires": {}}  # fmt: skip
    assert await stored(v, update) == only_phone
    assert await read(v, update) == only_phone
    assert NEW_CITY.encode() not in await everywhere(v)
    assert await v.returned() == {"phone": PHONE}


async def test_an_expired_share_takes_the_updated_values_out_of_the_feed(vendor: Vendor) -> None:
    """At the share's expiry a reader no longer gets its updated value (before the sweep), and
    the sweep deletes it from the store; the field no share held stays."""
    v = vendor
    day = v.now + DAY_MS
    share = await v.share({"email": "old@example.org"}, expires=day)
    update = await v.update({"email": NEW_EMAIL, "phone": PHONE})
    assert (await read(v, update) or {})["fields"] == {"email": NEW_EMAIL, "phone": PHONE}

    v.now = day
    only_phone = {"fields": {"phone": PHONE}, "field_purposes": {"phone": [1]},
                  "purposes": [1], "field_shares": {}, "field_expires": {}}  # fmt: skip
    assert await read(v, update) == only_phone
    assert await v.endpoint.expire_shares() == 1
    assert await stored(v, share) is None
    assert await stored(v, update) == only_phone
    assert NEW_EMAIL.encode() not in await everywhere(v)


STORES_KEEPING_NONE = pytest.mark.parametrize("vendor", [
    "memory", "sqlite", "postgres"], indirect=True)


@STORES_KEEPING_NONE
async def test_an_update_of_the_shared_fields_alone_keeps_no_personal_data(
    vendor: Vendor,
) -> None:
    """An update every field of which the withdrawn share held keeps no ``personal``; nor does
    an earlier update of a field the share then replaced: the vendor holds no value of it
    after the withdrawal, so no event does (a reader of the whole feed would hold it again).
    A field no share held, or replaced, stays: test_s20_crm_superseded.py."""
    v = vendor
    own = await v.update({"phone": PHONE})
    share = await v.share({"email": "old@example.org", "phone": "+1 555 0199"},
                          expires=v.now + DAY_MS)  # fmt: skip
    update = await v.update({"email": NEW_EMAIL, "phone": "+1 555 0101"})
    await v.send(DataWithdraw(agreement=v.agreement, shares=()))  # every share
    assert await stored(v, share) is None
    assert await stored(v, update) is None
    assert await read(v, update) is None
    assert await v.returned() == {}
    assert await stored(v, own) is None
    assert PHONE.encode() not in await everywhere(v)
    assert b"+1 555 0101" not in await everywhere(v)


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with _postgres.opened_store(request, tmp_path, request.param) as s:
        yield s


def _event(thread: bytes, seq: int, kind: str, personal: dict[str, Any]) -> EventRecord:
    msg_hash = digest(thread, seq, kind)
    return EventRecord("evt_" + msg_hash.hex(), thread, seq, kind, msg_hash, 100 + seq, b"{}",
                       json.dumps(personal, separators=(",", ":"), sort_keys=True).encode())


async def test_an_update_written_before_it_named_its_shares_loses_the_shares_fields(
    store: Store,
) -> None:
    """An address.updated event from before ``field_shares`` cannot say what each field is
    held under: of one after the dropped share's event, the fields the share carried go (the
    values it may have replaced); one before it, and another thread's, stay as they are."""
    t, other = b"\x01" * 16, b"\x02" * 16
    before = _event(t, 1, "address.updated", {"fields": {"email": "z@example.org"},
                                                "field_purposes": {"email": [1]},
                                                "purposes": [1]})  # fmt: skip
    share = _event(t, 2, "data.shared", {"fields": {"email": "a@example.org", "city": "Paris"},
                                         "purposes": [2], "categories": [2], "expires": 9})
    after = _event(t, 3, "address.updated", {
        "fields": {"email": "b@example.org", "city": "Lyon", "phone": "+1 5"},
        "field_purposes": {"email": [2], "city": [2], "phone": [1]}, "purposes": [1, 2]})
    elsewhere = _event(other, 4, "address.updated", {"fields": {"email": "b@example.org"},
                                                     "purposes": [2]})  # fmt: skip
    # the vendor holds an email after the drop (shared again, from a share with no event
    # here): the earlier update's value of it is one that led to it, and stays where it is
    # (with no email held it would go too: test_s20_crm_superseded.py)
    again = HeldRecord(t, "email", "c@example.org", 2, "provided", 100, (2,), b"\x09" * 32, 99)
    await store.commit(Commit(events=(before, share, after, elsewhere), held=(again,)))
    await store.commit(Commit(held_drop=((t, share.msg_hash),)))
    got = {e.msg_hash: e.personal for e in await store.events(0, 10)}
    assert got[share.msg_hash] is None
    assert json.loads(got[after.msg_hash] or b"null") == {
        "fields": {"phone": "+1 5"}, "field_purposes": {"phone": [1]}, "purposes": [1]}
    assert got[before.msg_hash] == before.personal
    assert got[elsewhere.msg_hash] == elsewhere.personal
