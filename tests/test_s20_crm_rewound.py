"""A Tryton bridge following a vendor store restored from a backup that holds fewer events than
Tryton applied says so at once, rather than wait, silently, for the feed to reach its cursor.

The store numbers its new events from the backup's last position. When fewer have come since
than Tryton had applied past the backup, the feed's newest position is below Tryton's cursor:
the bridge (``vrm vendor tryton``, following the store) read the feed after its cursor, found
nothing, and waited for new events — the customers' new events, withdrawals included, never
reached the CRM until the feed grew past the old cursor, when the mismatch finally showed.
Now the bridge stops with :class:`FeedRewound` as it starts (``--resync`` then applies them).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from test_s16_vendor_tryton import _vendor

from vrmproto.server._events import Wakeup, follow
from vrmproto.store import SQLiteStore


@pytest.fixture
def tryton_dir(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("trytond", reason="trytond is not installed: pip install "
                                          "'vrmproto[tryton]'")  # fmt: skip
    pytest.importorskip("trytond.modules.sale_opportunity",
                        reason="trytond-sale-opportunity is not installed: pip install "
                               "'vrmproto[tryton]'")  # fmt: skip
    from tests._tryton import tryton_database  # noqa: PLC0415 -- needs trytond

    tryton_database(tmp_path_factory, tmp_path / "tryton", "spare")
    return tmp_path / "tryton"


@pytest.mark.slow
async def test_a_feed_restored_behind_the_cursor_stops_a_following_bridge_at_once(
    tryton_dir: Path, tmp_path: Path
) -> None:
    from vrmproto.crm.tryton import FeedRewound, TrytonBridge  # noqa: PLC0415 -- needs trytond

    db = tmp_path / "vendor.db"
    await _vendor(db, {"email": "one@example.org"})
    shutil.copyfile(db, tmp_path / "backup.db")  # the store is closed: one file, checkpointed
    await _vendor(db, {"email": "two@example.org"})
    async with await SQLiteStore.open(db) as store, \
            await TrytonBridge.open("spare", path=tryton_dir) as bridge:  # fmt: skip
        await bridge.run(lambda after: follow(store, None, after))
        assert bridge.position == 6
    shutil.copyfile(tmp_path / "backup.db", db)  # positions 4 to 6 are free again
    await _vendor(db)  # nothing yet
    async with await SQLiteStore.open(db) as store, \
            await TrytonBridge.open("spare", path=tryton_dir) as bridge:  # fmt: skip
        assert await store.feed_head() == 3 < await bridge.cursor()
        following = bridge.run(lambda after: follow(store, Wakeup(), after))  # as the CLI
        with pytest.raises(FeedRewound, match="restored from a backup"):
            await asyncio.wait_for(following, 10)  # before: waited for position 6 for ever
