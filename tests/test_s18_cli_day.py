"""What a person and a vendor's operator met using ``vrm`` every day (session 18: the rough
edges left by session 17, then the README walkthrough on loopback), each fixed with the test
that shows it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from tests._cli_helpers import fails, new_home, ok, vendor_host, vrm
from tests._ports import closed_port
from tests._vendor_proc import ACCEPTED, VENDOR_SEED, Customer, InProcessVendor
from vrmproto import Identity
from vrmproto.server._retention import Retention, trim_feed
from vrmproto.store import Commit, SQLiteStore


def test_an_intentcast_says_each_decline_and_failure_once_on_a_pipe(tmp_path: Path) -> None:
    """Off a terminal the progress lines say each vendor's outcome as it comes; the summary
    after them said every decline (and every vendor not reached) a second time."""
    home = new_home(tmp_path)
    down = f"http://127.0.0.1:{closed_port()}"
    with vendor_host("avis", "outfitters") as host:
        r = ok(vrm("intent", "new", "4-wheel-drive SUV rental", "--no-discover", "--no-relays",
                   "--deadline", "3s", "--vendor", host["avis"].url, "--vendor",
                   host["outfitters"].url, "--vendor", down, home=home))  # fmt: skip
    assert r.stdout.count("nothing we offer matches this request") == 1, r
    assert "Wasatch Outfitters declined: nothing we offer" in r.stdout, r
    assert r.stdout.count("127.0.0.1:" + down.rsplit(":", 1)[1]) == 1, r
    assert "Avis Park City" in r.stdout, r


# -- a vendor's operator and the event feed ---------------------------------------------------


def _trimmed_feed(tmp_path: Path, customers: int = 3, keep: int = 2) -> tuple[Path, Path, str]:
    """A vendor file and its data directory whose feed holds two events per customer, all but
    the last ``keep`` trimmed; and the id of the first event."""
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\n')
    data = tmp_path / "data"
    data.mkdir(mode=0o700)

    async def fill() -> str:
        async with await SQLiteStore.open(data / "vendor.db") as store:
            vendor = InProcessVendor(store)
            for _ in range(customers):
                c = Customer(Identity(VENDOR_SEED))
                await vendor.deliver(c, c.offer(*ACCEPTED))
            first = (await store.events(0, 1))[0].id
            head = await store.feed_head()
            await store.trim_events(head - keep, recorded_before=2**62)
            return first

    return config, data, asyncio.run(fill())


def test_reading_the_feed_from_before_what_was_trimmed_says_where_it_goes_on(
    tmp_path: Path,
) -> None:
    """``--since 1`` after retention trimmed positions 2-4 ended with the library's sentence
    for a reader in code ("… read again from the oldest event kept (position 0) …"): not
    where the feed goes on, nor which option reads it."""
    config, data, first = _trimmed_feed(tmp_path)
    args = ["vendor", "events", "--config", str(config), "--data-dir", str(data)]
    r = fails(vrm(*args, "--since", "1", home=tmp_path), 1,
              "the events after position 1 up to 4 are no longer in the feed",
              "It now goes on at position 5", "`--since 4`")  # fmt: skip
    assert r.stdout == "", r
    told = ok(vrm(*args, "--since", "4", "--json", home=tmp_path))
    assert [json.loads(line)["pos"] for line in told.stdout.splitlines()] == [5, 6]
    assert first.startswith("evt_")
    fails(vrm(*args, "--since", first, home=tmp_path), 2, f"no event '{first}' in the feed",
          "trimmed up to position 4", "`--since 4`")  # fmt: skip


SECRET = "whsec_" + "a2tra2tra2tra2tra2tra2tra2tra2tr"


def test_an_operator_forgets_the_cursor_of_a_tryton_database_removed(tmp_path: Path) -> None:
    """A removed Tryton database left its ``tryton:<db>`` cursor, which kept the whole feed
    after it until ``[feed] max_days`` (365), and the operator had no command to drop it (the
    docs said: delete its ``event_cursors`` row)."""
    config, data, _ = _trimmed_feed(tmp_path, customers=4, keep=8)  # positions 1-8, none gone
    config.write_text(config.read_text() + '[feed]\nkeep_days = 0\nconsumers = ["bi"]\n'
                      f'[[webhooks]]\nurl = "https://crm.example/vrm"\nname = "crm"\n'
                      f'secret = "{SECRET}"\n')  # fmt: skip

    async def cursors(*names: tuple[str, int]) -> None:
        async with await SQLiteStore.open(data / "vendor.db") as store:
            await store.commit(Commit(event_cursors=names))

    async def trim() -> list[int]:
        async with await SQLiteStore.open(data / "vendor.db") as store:
            now = time.time_ns() // 1_000_000 + 1_000  # every event older than keep_days (0)
            await trim_feed(store, Retention(keep_s=0, consumers=("bi",)), ["crm"], now)
            return [e.pos for e in await store.events(0, 100)]

    asyncio.run(cursors(("tryton:old", 2), ("crm", 7), ("bi", 7), ("a-webhook-removed", 1)))
    assert asyncio.run(trim()) == [2, 3, 4, 5, 6, 7, 8]  # held back by tryton:old
    args = ["vendor", "events", "--config", str(config), "--data-dir", str(data)]
    listed = ok(vrm(*args, "--cursors", "--json", home=tmp_path)).stdout.splitlines()
    assert {(c["consumer"], c["pos"], c["behind"], c["keeps_feed"])
            for c in map(json.loads, listed)} == {
        ("tryton:old", 2, 6, True), ("crm", 7, 1, True), ("bi", 7, 1, True),
        ("a-webhook-removed", 1, 7, False)}  # fmt: skip
    fails(vrm(*args, "--forget", "crm", home=tmp_path), 2, "crm", "take it out of the file first")
    fails(vrm(*args, "--forget", "bi", home=tmp_path), 2, "take it out of the file first")
    fails(vrm(*args, "--forget", "tryton:0ld", home=tmp_path), 2, "no consumer named",
          "tryton:old")  # fmt: skip
    said = ok(vrm(*args, "--forget", "tryton:old", home=tmp_path)).stdout
    assert "forgot tryton:old (its cursor was at position 2)" in said, said
    assert asyncio.run(trim()) == [7, 8]  # what crm and bi still need
    left = ok(vrm(*args, "--cursors", home=tmp_path)).stdout
    assert "tryton:old" not in left
    assert "a-webhook-removed  at 1, 7 behind  (not in the vendor file: does not keep the feed)" \
        in left, left
