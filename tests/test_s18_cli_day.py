"""What a person and a vendor's operator met using ``vrm`` every day (session 18: the rough
edges left by session 17, then the README walkthrough on loopback), each fixed with the test
that shows it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests._cli_helpers import fails, new_home, ok, vendor_host, vrm
from tests._ports import closed_port
from tests._vendor_proc import ACCEPTED, VENDOR_SEED, Customer, InProcessVendor
from vrmproto import Identity
from vrmproto.store import SQLiteStore


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
