"""``vrm vendor events --cursors`` of a consumer whose cursor is past the feed's newest event (a
vendor store restored from an older backup): it said "-3 behind"; now "3 past the feed's newest
event", with the likely cause, and the JSON has ``behind`` 0 and ``ahead`` 3 (s22-crm's note)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from test_s18_cli_day import _trimmed_feed

from tests._cli_helpers import ok, vrm
from vrmproto.store import Commit, SQLiteStore


def test_a_cursor_past_the_newest_event_is_said_to_be_ahead(tmp_path: Path) -> None:
    config, data, _ = _trimmed_feed(tmp_path, customers=2, keep=4)  # positions 1-4

    async def cursor() -> None:
        async with await SQLiteStore.open(data / "vendor.db") as store:
            await store.commit(Commit(event_cursors=(("tryton:crm", 7),)))

    asyncio.run(cursor())
    args = ["vendor", "events", "--config", str(config), "--data-dir", str(data), "--cursors"]
    (row,) = map(json.loads, ok(vrm(*args, "--json", home=tmp_path)).stdout.splitlines())
    assert (row["pos"], row["behind"], row["ahead"]) == (7, 0, 3)  # was behind -3
    line = ok(vrm(*args, home=tmp_path)).stdout
    assert "3 past the feed's newest event" in line, line
    assert "-3" not in line, line
