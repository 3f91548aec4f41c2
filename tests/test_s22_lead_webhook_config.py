"""``vrm vendor check-config`` refuses a webhook ``vrm vendor serve`` would refuse: s22-crm made
``Webhook`` refuse an infinite ``timeout_s`` (a receiver that never answers held the feed for
ever), but the file's ``[[webhooks]]`` section took ``inf`` and check-config said "ok" — the
vendor learnt at the next start."""

from __future__ import annotations

from pathlib import Path

import pytest

from vrmproto.server import ConfigError, load_vendor_config

FILE = """name = "Wasatch Outfitters"
seed = "{seed}"
accepts_terms = ["vrm.no-tracking"]

[[webhooks]]
url = "https://crm.example/vrm"
secret = "whsec_{secret}="
{line}
"""


@pytest.mark.parametrize("line", ["timeout_s = inf", "timeout_s = nan", "timeout_s = 7200",
                                  "dead_after_s = nan"])
def test_a_webhook_serve_would_refuse_is_refused_by_the_file(tmp_path: Path, line: str) -> None:
    path = tmp_path / "vendor.toml"
    path.write_text(FILE.format(seed="ab" * 32, secret="A" * 43, line=line), encoding="utf-8")
    with pytest.raises(ConfigError, match="webhooks"):
        load_vendor_config(path)


def test_a_usable_webhook_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "vendor.toml"
    path.write_text(FILE.format(seed="ab" * 32, secret="A" * 43, line="timeout_s = 30"),
                    encoding="utf-8")  # fmt: skip
    load_vendor_config(path)
