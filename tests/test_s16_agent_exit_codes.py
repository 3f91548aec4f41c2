"""Exit codes as documented: 0 done, 1 refused or failed, 2 usage or environment, 4 no one
could be reached (since s17: tests/test_s17_cli_exit_codes.py).

Before: ``vrm relay answers`` (and ``vrm relay intent``) with every relay down exited 2, as if
the command were mistyped, with aiohttp's own words ("… ssl:default [Connect call failed …]");
``vrm address set`` with no agreed relationship sent nothing and exited 0, as if done. Now they
exit 4 (no relay reached, nothing kept) and 1, with one plain sentence.
"""

from __future__ import annotations

from pathlib import Path

from tests._cli_helpers import fails, new_home, vrm
from tests._ports import closed_port


def test_relay_answers_with_every_relay_down_fails_in_plain_words(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    relay = f"ws://127.0.0.1:{closed_port()}"
    r = fails(vrm("relay", "answers", "--relay", relay, home=home), 4,
              "no relay could be reached", relay, "connection refused")
    assert "ssl:default" not in r.stderr, r
    assert "Connect call failed" not in r.stderr, r


def test_address_set_with_no_agreed_relationship_is_not_done(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    fails(vrm("address", "set", "city=Paris", home=home), 1, "no agreed relationships",
          "nothing was sent")
    r = fails(vrm("address", "set", "city=Paris", "--json", home=home), 1,
              "no agreed relationships")
    assert r.json["results"] == []
