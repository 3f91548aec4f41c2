"""``vrm relay …`` and ``vrm intent … --relay`` when relays fail, as a person meets it (spec §15.5;
exit codes: the README's table). A real ``nostr-relay`` on 127.0.0.1 where one is needed.

Before:

- ``vrm relay answers`` while the relays of an open intentcast were down said "No relayed
  intentcast of yours is still open on these relays." and exit 0 (``--json``: done, no intents);
- ``vrm relay remove`` of a URL that was not kept (a typo) said nothing and exit 0: the person
  believed the relay forgotten, and every intentcast still went to it.
"""

from __future__ import annotations

from pathlib import Path

from _cli_helpers import fails, new_home, ok, vrm
from _nostr_relay import relay


def test_relay_answers_with_the_relays_down_is_exit_4_not_none_open(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    with relay(tmp_path) as url:
        ok(vrm("relay", "intent", "kayak for a day", "--relay", url, "--pow", "0", "--wait",
               "1ms", "--deadline", "10m", home=home))  # fmt: skip
        assert len(ok(vrm("relay", "answers", "--wait", "1ms", "--json",
                          home=home)).json["intents"]) == 1  # fmt: skip
    r = fails(vrm("relay", "answers", "--wait", "1ms", home=home), 4, "no relay could be reached:")
    assert "still open" not in r.stdout
    assert f"the relay {url} could not be reached" in r.stderr


def test_removing_a_relay_that_is_not_kept_says_so_and_forgets_nothing(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    ok(vrm("relay", "add", "wss://relay.example", "wss://other.example", home=home))
    fails(vrm("relay", "remove", "wss://other.example", "wss://relay.exmaple", home=home), 2,
          "wss://relay.exmaple", "not one of your relays")  # fmt: skip
    assert ok(vrm("relay", "list", "--json", home=home)).json == {
        "relays": ["wss://relay.example", "wss://other.example"]}  # fmt: skip
    ok(vrm("relay", "remove", "wss://other.example/", home=home))
    assert ok(vrm("relay", "list", "--json", home=home)).json == {
        "relays": ["wss://relay.example"]}  # fmt: skip
