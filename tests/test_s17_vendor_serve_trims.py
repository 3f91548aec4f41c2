"""``vrm vendor serve`` trims its event feed by the vendor file's ``[feed]`` (docs/events.md,
"Retention"): the settings were read and checked, but the server never ran the trimmer, so the
feed grew for as long as the vendor ran.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from tests._cli_helpers import VendorProcess, new_home, ok, vrm

CONFIG = """name = "Corner Shop"
accepts_terms = "all"

[feed]
keep_days = 0        # every event a consumer has passed may go (none is configured)
trim_every_s = 0.05
"""
TRIMMED = re.compile(r"feed: (\d+) event\(s\) trimmed")


def test_the_server_trims_its_feed_by_the_vendor_file(tmp_path: Path) -> None:
    config = tmp_path / "shop.toml"
    config.write_text(CONFIG)
    vendor = VendorProcess("--config", str(config), "--data-dir", str(tmp_path / "shop"),
                           "--no-advertise")  # fmt: skip
    seen: list[str] = []
    trimmed = threading.Event()

    def read_log() -> None:
        assert vendor.proc.stdout is not None
        for line in vendor.proc.stdout:  # the log, after the line saying where it listens
            seen.append(line)
            found = TRIMMED.search(line)
            if found and int(found.group(1)) > 0:
                trimmed.set()
                return

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        for who in ("ada", "bo"):  # each connect puts events in the feed (offered, accepted)
            ok(vrm("connect", vendor.url, home=new_home(tmp_path / who)))
        assert trimmed.wait(30), "".join(seen)
    finally:
        code, _ = vendor.stop()
    assert code == 0
