"""`vrm vendor events` at the edges of the feed (session 21b).

``--since`` past the feed's newest event printed nothing and exited 0 — and with ``--follow``
waited for ever, showing none of the events committed next: positions are never handed out
again, so every one up to the position given was skipped without a word (a typo, or a cursor
kept from a store since restored from a backup). Now it is a usage error naming the newest
position; ``--since`` at the newest event still reads what comes next.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests._cli_helpers import fails, ok, vrm
from tests._vendor_proc import VENDOR_SEED
from vrmproto.store import Commit, SQLiteStore
from vrmproto.testing.store_contract import T1, event


def _vendor_files(tmp_path: Path, events: int) -> list[str]:
    """`vrm vendor events` arguments for a vendor whose store holds ``events`` events."""
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\n')
    data = tmp_path / "data"
    data.mkdir(mode=0o700)

    async def make() -> None:
        async with await SQLiteStore.open(data / "vendor.db") as store:
            for seq in range(events):
                await store.commit(Commit(events=(event(T1, seq),)))

    asyncio.run(make())
    return ["vendor", "events", "--config", str(config), "--data-dir", str(data)]


def test_since_past_the_newest_event_is_refused(tmp_path: Path) -> None:
    args = _vendor_files(tmp_path, 3)
    for extra in ((), ("--follow",)):
        r = fails(vrm(*args, "--since", "99", *extra, home=tmp_path, timeout=20), 2,
                  "position 99", "newest event is at position 3", "--since 3")  # fmt: skip
        assert r.stdout == "", r
    assert len(ok(vrm(*args, "--since", "2", home=tmp_path)).stdout.splitlines()) == 1
    assert ok(vrm(*args, "--since", "3", home=tmp_path)).stdout == ""  # at the newest: none yet


def test_since_on_an_empty_feed_is_refused_past_zero(tmp_path: Path) -> None:
    args = _vendor_files(tmp_path, 0)
    fails(vrm(*args, "--since", "5", home=tmp_path), 2, "position 5", "holds no event")
    assert ok(vrm(*args, home=tmp_path)).stdout == ""


def test_forget_a_name_two_webhooks_show_as_says_which_to_give(tmp_path: Path) -> None:
    """Two webhooks taken out of the file whose urls differ only in their password show as the
    same name (``https://***@crm.example/hook``): `--forget` with it said "no consumer named"
    that name, and listed it twice. Now it says the name is ambiguous and how to name one."""
    args = _vendor_files(tmp_path, 1)
    a, b = "https://u:first@crm.example/hook", "https://u:second@crm.example/hook"

    async def cursors() -> None:
        async with await SQLiteStore.open(tmp_path / "data" / "vendor.db") as store:
            await store.commit(Commit(event_cursors=((a, 1), (b, 1))))

    asyncio.run(cursors())
    shown = "https://***@crm.example/hook"
    r = fails(vrm(*args, "--forget", shown, home=tmp_path), 2, "2 consumers", "password")
    assert "no consumer named" not in r.stderr, r
    ok(vrm(*args, "--forget", a, home=tmp_path))  # the url itself names one
    said = ok(vrm(*args, "--forget", shown, home=tmp_path)).stdout  # now only one shows so
    assert said.startswith(f"forgot {shown}"), said
