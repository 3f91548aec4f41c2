"""A Tryton database resynchronised from scratch holds what one fed event by event holds, and
what the vendor holds (§12.10-1, §12.10-2, §12.10-4): a value that a share replaced does not
come back once that share is withdrawn or expires.

Before: the vendor's feed kept, in the earlier events, the values the share had replaced; the
bridge fed event by event had replaced them and then erased the share's, but a new database
going through the feed (``vrm vendor tryton --resync`` on a new database, the remedy
docs/events.md gives for a database of an older bridge) held the old phone and nickname again.

The vendor is the reference one on SQLite (the store whose feed the bridge reads).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _vendor_proc import DAY_MS
from test_s18_held_update import Vendor
from test_s19_feed_privacy_crm import since

from vrmproto._messages import DataWithdraw
from vrmproto.store import SQLiteStore


@pytest.fixture
def databases(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two copies of the session's Tryton database in ``tmp_path``: ``inc`` and ``res``."""
    pytest.importorskip("trytond", reason="trytond is not installed: pip install "
                                          "'vrmproto[tryton]'")  # fmt: skip
    pytest.importorskip("trytond.modules.sale_opportunity",
                        reason="trytond-sale-opportunity is not installed: pip install "
                               "'vrmproto[tryton]'")  # fmt: skip
    from tests._tryton import tryton_database  # noqa: PLC0415 -- needs trytond

    for name in ("inc", "res"):
        tryton_database(tmp_path_factory, tmp_path, name)
    return tmp_path


@pytest.fixture
async def vendor(tmp_path: Path) -> AsyncIterator[Vendor]:
    async with await SQLiteStore.open(tmp_path / "vendor.db") as store:
        v = Vendor(store)
        await v.agree()
        yield v


def contact_points(name: str, rel: str) -> list[tuple[str, str]]:
    """What Tryton database ``name`` holds for ``rel``: each contact mechanism's name (its
    type, for an email or phone) and value, and each address field set."""
    from trytond.pool import Pool  # noqa: PLC0415
    from trytond.transaction import Transaction  # noqa: PLC0415

    with Transaction().start(name, 0, readonly=True):
        found = Pool().get("party.party").search([("code", "=", "vrm-" + rel)])
        held = [(c.name or c.type, c.value) for p in found for c in p.contact_mechanisms]
        held += [(attr, getattr(a, attr)) for p in found for a in p.addresses
                 for attr in ("street_unstructured", "city", "postal_code")
                 if getattr(a, attr)]  # fmt: skip
    return sorted(held)


@pytest.mark.slow
async def test_a_resync_from_scratch_holds_what_the_incremental_bridge_holds(
    vendor: Vendor, databases: Path
) -> None:
    from vrmproto.crm._tryton import TrytonCRM  # noqa: PLC0415 -- needs trytond

    v = vendor
    inc = TrytonCRM.open("inc", path=databases)
    applied = 0

    async def step() -> None:
        nonlocal applied
        for event in await since(v, applied):
            inc.apply(event, v.now)
            applied = int(event["pos"])
        inc.expire(v.now)

    await v.update({"phone": "+1 801 555 0100", "nickname": "ada", "city": "Lyon"})
    await step()
    week = v.now + 7 * DAY_MS
    withdrawn = await v.share({"phone": "+1 801 555 0199"}, expires=week)  # replaces the phone
    await v.share({"nickname": "countess"}, expires=v.now + DAY_MS)  # and the nickname
    await v.share({"email": "ada@example.org"}, expires=week)
    await step()
    await v.send(DataWithdraw(agreement=v.agreement, shares=(withdrawn,)))
    await step()
    v.now += DAY_MS  # the nickname's share expires
    assert await v.endpoint.expire_shares() == 1
    await step()

    rel = v.c.thread.hex()
    vendor_holds = sorted((h.field, h.value) for h in await v.store.held(v.c.thread))
    assert vendor_holds == [("city", "Lyon"), ("email", "ada@example.org")]
    names = {"city": "city", "email": "email"}
    assert contact_points("inc", rel) == sorted((names[f], value) for f, value in vendor_holds)

    res = TrytonCRM.open("res", path=databases)
    for event in await since(v, 0):
        res.apply(event, v.now)
    res.expire(v.now)
    assert contact_points("res", rel) == contact_points("inc", rel)
