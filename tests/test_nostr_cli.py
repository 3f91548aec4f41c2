"""`vrm relay` and `vrm vendor serve --relay`, as a person runs them, with a real relay on
127.0.0.1 (spec §15): Hertz runs with --no-advertise, in no store of the customer's, and is
reached only through the relay; its offer comes back ranked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_helpers import VENDOR_FILES, VendorProcess, new_home, ok, vrm
from _nostr_relay import relay

from vrmproto.server._config import ConfigError, parse_vendor_file


@pytest.fixture(scope="module")
def relay_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with relay(tmp_path_factory.mktemp("relay")) as url:
        yield url


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return new_home(tmp_path)



def test_the_relays_you_keep_are_the_default(home: Path) -> None:
    ok(vrm("relay", "add", "wss://relay.example/", "ws://127.0.0.1:7000", home=home))
    ok(vrm("relay", "add", "wss://relay.example", home=home))
    assert ok(vrm("relay", "list", "--json", home=home)).json == {
        "relays": ["wss://relay.example", "ws://127.0.0.1:7000"]}  # fmt: skip
    ok(vrm("relay", "remove", "wss://relay.example", home=home))
    assert ok(vrm("relay", "list", "--json", home=home)).json == {
        "relays": ["ws://127.0.0.1:7000"]}  # fmt: skip
    bad = vrm("relay", "add", "https://relay.example", home=home)
    assert bad.code == 2
    assert "not a relay URL" in bad.stderr


def test_no_relay_at_all_is_a_usage_error(home: Path) -> None:
    r = vrm("relay", "intent", "suv", home=home)
    assert r.code == 2
    assert "no relays" in r.stderr


def test_hertz_reached_only_through_the_relay(home: Path, relay_url: str) -> None:
    hertz = VendorProcess("--config", str(VENDOR_FILES / "hertz.toml"), "--memory",
                          "--no-advertise", "--relay", relay_url)  # fmt: skip
    try:
        r = ok(vrm("relay", "intent", "4-wheel-drive SUV rental", "--relay", relay_url,
                   "--where", "Park City, UT", "--geohash", "9x0n8", "--max-price", "300USD",
                   "--constraint", "no prepaid gas", "--pow", "8", "--wait", "60s",
                   "--expect", "1", "--deadline", "90s", "--json", home=home))  # fmt: skip
    finally:
        hertz.stop()
    out = r.json
    assert out["answered"] == [hertz.url]
    assert out["published"] == {relay_url: None}
    assert [o["vendor"] for o in out["offers"]] == ["Hertz Wasatch"]
    assert "Relays keep what you publish" in r.stderr


def test_the_vendor_file_names_its_relays_work_and_areas() -> None:
    f = parse_vendor_file({"name": "Hertz", "relays": ["wss://relay.example", "ws://127.0.0.1:1"],
                           "relay_min_pow": 12, "relay_geohashes": ["9x0"]})  # fmt: skip
    assert (f.relays, f.relay_min_pow, f.relay_geohashes) == (
        ["wss://relay.example", "ws://127.0.0.1:1"], 12, ["9x0"])  # fmt: skip
    for bad in ({"relays": ["https://relay.example"]}, {"relay_min_pow": 33},
                {"relay_geohashes": ["Park City"]}):  # fmt: skip
        with pytest.raises(ConfigError):
            parse_vendor_file({"name": "Hertz", **bad})


def test_a_seed_imported_on_a_new_machine_reads_the_relays_answers_and_takes_the_offer(
    home: Path, relay_url: str, tmp_path: Path
) -> None:
    """Issue 16: `vrm intent new --relay` publishes and stops waiting before anyone answers;
    Avis (--no-advertise, in no record) starts listening afterwards. The seed, exported and
    imported into a new directory, is all the new machine has: `vrm relay answers` finds the
    intentcast on the relay, reads Avis's answer and gets its offer over HTTP; `vrm intent
    list` shows the intentcast with it, and `vrm intent accept` opens the relationship on the
    customer's terms (Avis here: Hertz would refuse them, as in the README's walkthrough)."""
    sent = ok(vrm("intent", "new", "4-wheel-drive SUV rental", "--relay", relay_url,
                  "--no-discover", "--where", "Park City, UT", "--geohash", "9x0n8",
                  "--max-price", "300USD", "--pow", "8", "--relay-wait", "1ms",
                  "--deadline", "5m", "--json", home=home))  # fmt: skip
    assert (sent.json["offers"], sent.json["answered"]) == ([], [])
    assert sent.json["relays"] == {relay_url: None}
    seed = ok(vrm("key", "export", "--json", home=home)).json["seed"]
    new = tmp_path / "new-machine"
    ok(vrm("key", "import", home=new, stdin=seed + "\n"))
    avis = VendorProcess("--config", str(VENDOR_FILES / "avis.toml"), "--memory",
                          "--no-advertise", "--relay", relay_url)  # fmt: skip
    try:
        read = ok(vrm("relay", "answers", "--relay", relay_url, "--wait", "60s",
                      "--expect", "1", "--json", home=new))  # fmt: skip
        [one] = read.json["intents"]
        assert one["answered"] == [avis.url]
        assert one["what"] == "4-wheel-drive SUV rental"
        assert [o["vendor"] for o in one["offers"]] == ["Avis Park City"]
        [listed] = ok(vrm("intent", "list", "--json", home=new)).json["intents"]
        assert (listed["offers"], listed["relays"], listed["where"]) == (
            1, [relay_url], "Park City, UT")  # fmt: skip
        shown = ok(vrm("intent", "show", listed["id"], home=new)).stdout
        assert f"published through {relay_url}" in shown
        assert "Avis Park City" in shown
        taken = ok(vrm("intent", "accept", one["offers"][0]["id"], home=new))
    finally:
        avis.stop()
    assert "accepted" in taken.stdout
    [rel] = ok(vrm("relationships", "--json", home=new)).json["relationships"]
    assert (rel["vendor"], rel["state"]) == ("Avis Park City", "agreed")
