"""``vrm vendor events`` refuses options it would ignore (session 22).

``--dead`` and ``--replay`` act on the webhooks' dead letters, all of them; ``--since`` and
``--follow`` are for reading the feed. Given together, the feed options were ignored without a
word: ``--replay --since 500`` (meaning "only those after 500") delivered every dead letter
again, and ``--dead --follow`` printed the list once and ended. Now they are refused as
``--cursors`` and ``--forget`` with anything else already were (exit code 2, one sentence).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli_helpers import fails, vrm
from _vendor_proc import VENDOR_SEED


@pytest.mark.parametrize("args", [("--replay", "--since", "500"), ("--dead", "--follow"),
                                  ("--dead", "--since", "3"), ("--replay", "--follow")])
def test_dead_letter_options_take_no_feed_option(tmp_path: Path, args: tuple[str, ...]) -> None:
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\n', "utf-8")
    r = vrm("vendor", "events", "--config", str(config), "--data-dir", str(tmp_path), *args,
            home=tmp_path)  # fmt: skip
    fails(r, 2, "do not go together", args[0], args[1])
