"""A CRM fed by the vendor's feed forgets an updated value with the share it is held under
(§5.3.6-2, §12.10-2, §12.10-4): ``changes_of`` holds an address update's fields under the
share each replaced (``Hold.share``, from the event's ``field_shares``/``field_expires``), and
the Tryton bridge, which applied the update while the share was live, deletes the new value at
the share's withdrawal and at its expiry, as it deletes the share's own.

Before: an address.updated event became one ``Hold`` without share or expiry, Tryton recorded
the update as the value's only source, and the withdrawal's ``Erase`` (which names the
data.shared event) or the expiry sweep never found it: the CRM kept the new email for ever.

The events come from the reference vendor (on a MemoryStore, its clock the test's), read as a
bridge reads them: each as soon as it is committed. The Tryton half is slow where it is the
first to need the session's Tryton database (tests/_tryton.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _vendor_proc import DAY_MS
from test_s18_held_update import Vendor

from tests._tryton import open_crm
from vrmproto._messages import DataWithdraw
from vrmproto.crm import Erase, Hold, changes_of
from vrmproto.server._events import follow
from vrmproto.store import MemoryStore

NEW_EMAIL, PHONE = "new@example.org", "+1 801 555 0142"


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    v = Vendor(MemoryStore())
    await v.agree()
    yield v
    await v.store.close()


async def since(v: Vendor, pos: int) -> list[dict[str, Any]]:
    """The events after ``pos`` as a consumer reads them now (the event JSON)."""
    return [e.as_json() async for e in follow(v.store, None, pos, clock=lambda: v.now)]


async def test_an_update_is_held_under_the_share_it_replaced(vendor: Vendor) -> None:
    v = vendor
    week = v.now + 7 * DAY_MS
    share = await v.share({"email": "old@example.org"}, expires=week)
    update = await v.update({"email": NEW_EMAIL, "phone": PHONE})
    (event,) = [e for e in await since(v, 0) if e["kind"] == "address.updated"]
    rel, source = event["relationship"], "evt_" + update.hex()
    assert changes_of(event) == (
        Hold(rel, source, {"email": NEW_EMAIL}, week, "evt_" + share.hex()),
        Hold(rel, source, {"phone": PHONE}, None),
    )
    await v.send(DataWithdraw(agreement=v.agreement, shares=(share,)))
    events = await since(v, 0)
    (event,) = [e for e in events if e["kind"] == "address.updated"]
    assert changes_of(event) == (Hold(rel, source, {"phone": PHONE}, None),)
    (withdrawn,) = [e for e in events if e["kind"] == "data.withdrawn"]
    assert changes_of(withdrawn)[0] == Erase(rel, ("evt_" + share.hex(),))


def test_a_country_is_held_before_a_region_of_another_share() -> None:
    """Tryton looks a region up in the held country: the Hold with the country comes first,
    whichever share each is held under."""
    event = {"id": "evt_u", "pos": 9, "relationship": "ab", "kind": "address.updated",
             "created": 0, "from": "customer", "body": {},
             "personal": {"fields": {"region": "UT", "country": "US"},
                          "field_shares": {"region": "evt_a", "country": "evt_b"},
                          "field_expires": {"region": 5, "country": 6}}}  # fmt: skip
    assert changes_of(event) == (Hold("ab", "evt_u", {"country": "US"}, 6, "evt_b"),
                                 Hold("ab", "evt_u", {"region": "UT"}, 5, "evt_a"))  # fmt: skip


# -- the Tryton bridge ---------------------------------------------------------------------


@pytest.fixture
def crm(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return open_crm(tmp_path_factory, tmp_path)  # it skips without Tryton


def values(name: str, rel: str) -> set[str]:
    """The values of the contact mechanisms Tryton holds for ``rel``."""
    from trytond.pool import Pool  # noqa: PLC0415
    from trytond.transaction import Transaction  # noqa: PLC0415

    with Transaction().start(name, 0, readonly=True):
        found = Pool().get("party.party").search([("code", "=", "vrm-" + rel)])
        return {c.value for p in found for c in p.contact_mechanisms}


def legacy(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as the feed wrote it before ``field_shares`` (before session 19)."""
    if event["kind"] != "address.updated" or not event["personal"]:
        return event
    personal = dict(event["personal"])
    personal.pop("field_shares")
    personal.pop("field_expires")
    return {**event, "personal": personal}


async def apply_new(v: Vendor, crm: Any, applied: int, *, old_feed: bool = False) -> int:
    """Apply to ``crm`` the events after ``applied``, at the vendor's clock; the last pos.
    ``old_feed``: each as a vendor before session 19 wrote it (:func:`legacy`)."""
    for event in await since(v, applied):
        crm.apply(legacy(event) if old_feed else event, v.now)
        applied = int(event["pos"])
    return applied


#: The feed as it is, and as a vendor before session 19 wrote it (test_s19_feedlegacy_crm).
FEEDS = pytest.mark.parametrize("old_feed", [False, True], ids=["feed", "feed-before-s19"])


@pytest.mark.slow
@FEEDS
async def test_tryton_forgets_an_updated_value_at_the_withdrawal(
    vendor: Vendor, crm: Any, old_feed: bool
) -> None:
    v = vendor
    share = await v.share({"email": "old@example.org"}, expires=v.now + 7 * DAY_MS)
    await v.update({"email": NEW_EMAIL, "phone": PHONE})
    applied = await apply_new(v, crm, 0, old_feed=old_feed)
    rel = v.c.thread.hex()
    assert values("crm", rel) == {NEW_EMAIL, PHONE}
    await v.send(DataWithdraw(agreement=v.agreement, shares=(share,)))
    await apply_new(v, crm, applied, old_feed=old_feed)
    assert values("crm", rel) == {PHONE}


@pytest.mark.slow
@FEEDS
async def test_tryton_forgets_an_updated_value_at_the_share_expiry(
    vendor: Vendor, crm: Any, old_feed: bool
) -> None:
    v = vendor
    day = v.now + DAY_MS
    await v.share({"email": "old@example.org"}, expires=day)
    await v.update({"email": NEW_EMAIL, "phone": PHONE})
    await apply_new(v, crm, 0, old_feed=old_feed)
    rel = v.c.thread.hex()
    assert crm.expire(day - 1) == 0
    assert values("crm", rel) == {NEW_EMAIL, PHONE}
    assert crm.expire(day) == 1
    assert values("crm", rel) == {PHONE}


@pytest.mark.slow
def test_a_tryton_database_of_an_older_bridge_gains_the_share_column(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, crm: Any
) -> None:
    """A database the bridge made before ``vrmproto_crm_field`` had its ``share`` column gets
    it when opened, its rows kept: one held with an expiry under its source (NULL, as before),
    one without (an address update's, which did not say its share) under ``LEGACY``
    (tests/test_s19_feedlegacy_crm.py)."""
    from vrmproto.crm._tryton import LEGACY, TrytonCRM  # noqa: PLC0415

    path = tmp_path / "crm.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO vrmproto_crm_field (relationship, field, source, model, record) "
                 "VALUES ('ab', 'email', 'evt_a', 'party.contact_mechanism', 1)")  # fmt: skip
    conn.execute("INSERT INTO vrmproto_crm_field (relationship, field, source, model, "
                 "record, expires) VALUES ('ab', 'phone', 'evt_s', 'party.contact_mechanism', "
                 "2, 9)")  # fmt: skip
    conn.execute("ALTER TABLE vrmproto_crm_field DROP COLUMN share")
    conn.commit()
    conn.close()
    TrytonCRM.open("crm", path=tmp_path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT field, source, share FROM vrmproto_crm_field "
                        "ORDER BY field").fetchall() == [
        ("email", "evt_a", LEGACY), ("phone", "evt_s", None)]  # fmt: skip
    conn.close()
