"""A Tryton bridge that applies an address.updated event without ``field_shares`` (every
vendor's feed before session 19) forgets its values with the share they replaced (§5.3.6-2,
§5.3.2-2, §5.3.1-4): each is held as the value it replaces (that value's share and expiry; no
share for a field not held before). A database made before ``vrmproto_crm_field.share`` existed
marks its rows held without an expiry (an update's) ``LEGACY`` when the column is added, and a
withdrawal erases those from events after the first erased share's; a value from a legacy
update before the share stays.

Before: such a row had its source the update and no share, and neither the Erase (which
matched ``source`` or ``share``) nor the expiry sweep found it: the CRM kept the updated email
for ever.

The events come from the reference vendor (MemoryStore), with ``field_shares`` and
``field_expires`` taken out of each address.updated event as a vendor before session 19 wrote
it (after the reproduction of the session 19 review).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import test_s19_feed_privacy_crm as privacy
from _vendor_proc import DAY_MS
from test_s18_held_update import Vendor
from test_s19_feed_privacy_crm import NEW_EMAIL, PHONE, values

from vrmproto._messages import DataWithdraw

vendor, crm = privacy.vendor, privacy.crm


async def apply_legacy(v: Vendor, crm: Any, applied: int) -> int:
    return await privacy.apply_new(v, crm, applied, old_feed=True)


async def updated_then_shared(v: Vendor) -> bytes:
    """A phone given by an update before any share, a share of the email, an update of it."""
    await v.update({"phone": PHONE})
    share = await v.share({"email": "old@example.org"}, expires=v.now + 7 * DAY_MS)
    await v.update({"email": NEW_EMAIL})
    return share


@pytest.mark.slow
async def test_a_legacy_update_value_goes_with_the_share_before_it(vendor: Vendor,
                                                                   crm: Any) -> None:  # fmt: skip
    v = vendor
    share = await updated_then_shared(v)
    applied = await apply_legacy(v, crm, 0)
    rel = v.c.thread.hex()
    assert values("crm", rel) == {NEW_EMAIL, PHONE}
    await v.send(DataWithdraw(agreement=v.agreement, shares=(share,)))
    await apply_legacy(v, crm, applied)
    assert values("crm", rel) == {PHONE}, "the withdrawn share's updated value is still held"


# A legacy update of a shared field, at the withdrawal and at the expiry (the reviewer's case):
# test_s19_feed_privacy_crm's two tests with ``old_feed``.


@pytest.mark.slow
async def test_rows_of_an_older_bridge_are_marked_legacy_when_the_column_is_added(
    vendor: Vendor, crm: Any, tmp_path: Path
) -> None:
    from vrmproto.crm._tryton import LEGACY, TrytonCRM  # noqa: PLC0415 -- needs trytond

    v = vendor
    share = await updated_then_shared(v)
    applied = await apply_legacy(v, crm, 0)
    path = tmp_path / "crm.sqlite"  # as a bridge before the share column left it
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE vrmproto_crm_field DROP COLUMN share")
    conn.commit()
    conn.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE vrmproto_crm_field SET expires = NULL")  # the update's, as it was held
    conn.commit()
    conn.close()
    crm = TrytonCRM.open("crm", path=tmp_path)
    conn = sqlite3.connect(path)
    marked = dict(conn.execute("SELECT field, share FROM vrmproto_crm_field").fetchall())
    conn.close()
    assert marked == {"phone": LEGACY, "email": LEGACY}
    await v.send(DataWithdraw(agreement=v.agreement, shares=(share,)))
    await apply_legacy(v, crm, applied)
    assert values("crm", v.c.thread.hex()) == {PHONE}
