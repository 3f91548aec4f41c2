"""A Tryton row of an older bridge held under ``LEGACY`` goes at its share's expiry too
(§5.3.1-4, §5.3.6-2; docs/events.md, the item session 19 left open).

A ``vrmproto_crm_field`` made before its ``share`` column marks the rows an address update gave
``LEGACY``: which share their value was held under, and so its expiry, was never recorded. A
withdrawal reaches them (a positional rule), but the expiry sweep did not: the updated email
stayed in Tryton for ever after its share expired, the vendor having deleted it. The bridge
reading the vendor's store (``vrm vendor tryton``, ``run`` over a ``follow``) now asks the
vendor's ``held`` rows: a legacy field the vendor no longer holds (or holds past its expiry)
goes, at start and at every sweep; one it still holds stays.
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
from test_s19_feedlegacy_crm import apply_legacy

from vrmproto.server._events import follow

vendor, crm = privacy.vendor, privacy.crm


def as_an_older_bridge_left_it(path: Path) -> None:
    """``path``'s ``vrmproto_crm_field`` without its ``share`` column, each row held without
    an expiry as an address update's was."""
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE vrmproto_crm_field DROP COLUMN share")
    conn.execute("UPDATE vrmproto_crm_field SET expires = NULL")
    conn.commit()
    conn.close()


@pytest.mark.slow
async def test_a_legacy_row_goes_when_the_vendor_lets_its_share_expire(
    vendor: Vendor, crm: Any, tmp_path: Path
) -> None:
    from vrmproto.crm._tryton import LEGACY  # noqa: PLC0415 -- needs trytond
    from vrmproto.crm.tryton import TrytonBridge  # noqa: PLC0415

    v = vendor
    await v.update({"phone": PHONE})  # no share: held for good
    day = v.now + DAY_MS
    await v.share({"email": "old@example.org"}, expires=day)
    await v.update({"email": NEW_EMAIL})  # held under the share, until its expiry
    await apply_legacy(v, crm, 0)
    as_an_older_bridge_left_it(tmp_path / "crm.sqlite")
    rel = v.c.thread.hex()

    bridge = await TrytonBridge.open("crm", path=tmp_path, clock=lambda: v.now)
    try:
        assert await bridge._call(bridge.crm.legacy) == {rel: ["email", "phone"]}
        assert bridge.crm.cursor() > 0
        v.now = day - 1  # the vendor holds both: both stay
        await bridge.run(lambda after: follow(v.store, None, after, clock=lambda: v.now))
        assert values("crm", rel) == {NEW_EMAIL, PHONE}

        v.now = day
        assert await v.endpoint.expire_shares() == 1  # the vendor deletes the email
        await bridge.run(lambda after: follow(v.store, None, after, clock=lambda: v.now))
        assert values("crm", rel) == {PHONE}, "Tryton keeps the email its share took"
        assert await bridge._call(bridge.crm.legacy) == {rel: ["phone"]}
        assert LEGACY == "legacy"
    finally:
        await bridge.close()


@pytest.mark.slow
async def test_a_legacy_row_goes_at_the_expiry_before_the_vendor_sweeps(
    vendor: Vendor, crm: Any, tmp_path: Path
) -> None:
    """The vendor's row is still there, past its expiry, until its sweep: it is not held."""
    from vrmproto.crm.tryton import TrytonBridge  # noqa: PLC0415 -- needs trytond

    v = vendor
    day = v.now + DAY_MS
    await v.share({"email": "old@example.org"}, expires=day)
    await v.update({"email": NEW_EMAIL})
    await apply_legacy(v, crm, 0)
    as_an_older_bridge_left_it(tmp_path / "crm.sqlite")
    bridge = await TrytonBridge.open("crm", path=tmp_path, clock=lambda: v.now)
    try:
        v.now = day
        assert [h.field for h in await v.store.held(v.c.thread)] == ["email"]  # not swept
        assert await bridge.forget_unheld(v.store) == 1
        assert values("crm", v.c.thread.hex()) == set()
    finally:
        await bridge.close()
