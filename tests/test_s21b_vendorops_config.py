"""Session 21b, a vendor's configuration: a mistake in the vendor file (or on ``vrm vendor
serve``'s command line) is named before anything serves, with exit 2 — not found later as a
relay that "cannot connect", a 500 on every message, or a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path

import pytest
from _cli_helpers import ROOT, fails, ok, vrm

from vrmproto._codec import MAX_SAFE_INT
from vrmproto.server._config import ConfigError, parse_vendor_file

BASE = 'name = "Corner Shop"\naccepts_terms = "all"\n'
SEED = 'seed = "eef7010a19794491b6779e2795788d233186a0c4a13fbb27846f000390d0ded5"\n'


def _parse(text: str) -> None:
    parse_vendor_file(tomllib.loads(BASE + text), source="v.toml")


# -- relays (spec §15.5-4): the rule of `vrm relay add` ---------------------------------------


@pytest.mark.parametrize("url", [
    "ws://", "wss://", "wss://:443", "wss://relay.example:99999", "wss://relay .example",
    "wss://relay.example/\n", "https://relay.example", "wss:relay.example",
])  # fmt: skip
def test_a_relay_without_a_host_or_with_a_bad_port_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"relays\[0\]: .*not a relay URL"):
        _parse(f"relays = [{json.dumps(url)}]\n")


@pytest.mark.parametrize("url", ["wss://relay.example", "ws://127.0.0.1:7000",
                                 "wss://[::1]:7447/nostr"])  # fmt: skip
def test_a_relay_url_that_names_a_host_is_kept(url: str) -> None:
    file = parse_vendor_file(tomllib.loads(BASE + f'relays = ["{url}"]\n'))
    assert file.relays == [url]


def test_vrm_vendor_serve_refuses_a_relay_without_a_host(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text(BASE + SEED + 'relays = ["ws://"]\n', "utf-8")
    fails(vrm("vendor", "serve", "--config", str(path), "--memory", "--no-advertise",
              home=tmp_path / "home"), 2, "relays[0]", "not a relay URL")  # fmt: skip


# -- limits beyond the protocol's integers ----------------------------------------------------


@pytest.mark.parametrize(("section", "name"), [
    ("limits", "replay_window_ms"),  # stored in SQLite/PostgreSQL (64-bit) with the time added
    ("limits", "max_depth"),
    ("connections", "log_interval_ms"),  # divided into a float at start
    ("connections", "max_connections"),
])  # fmt: skip
def test_a_limit_beyond_the_largest_integer_is_a_config_error(section: str, name: str) -> None:
    for value in (MAX_SAFE_INT + 1, 10**400):
        with pytest.raises(ConfigError, match=rf"{section}\.{name}: .*9007199254740991"):
            _parse(f"[{section}]\n{name} = {value}\n")
    _parse(f"[{section}]\n{name} = {MAX_SAFE_INT}\n")  # the largest is still accepted


def test_vrm_vendor_serve_refuses_a_huge_limit_before_serving(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text(BASE + SEED + f"[connections]\nlog_interval_ms = {10**400}\n", "utf-8")
    fails(vrm("vendor", "serve", "--config", str(path), "--memory", "--no-advertise",
              home=tmp_path / "home"), 2, "connections.log_interval_ms")  # fmt: skip


# -- the command line's options: the same sentence as the file's ------------------------------


@pytest.mark.parametrize(("args", "words"), [
    (["--workers", "2"], ["server.workers above 1 needs a postgresql store"]),
    (["--relay", "ftp://relay.example"], ["relays[0]", "not a relay URL"]),
    (["--max-connections", str(10**400)], ["connections.max_connections"]),
    (["--tls-cert", "cert.pem"], ["server.tls_cert", "tls_key"]),  # not plain HTTP instead
])  # fmt: skip
def test_a_bad_option_is_named_in_one_sentence(tmp_path: Path, args: list[str],
                                               words: list[str]) -> None:  # fmt: skip
    path = tmp_path / "v.toml"
    path.write_text(BASE + SEED, "utf-8")
    r = fails(vrm("vendor", "serve", "--config", str(path), "--memory", "--no-advertise",
                  *args, home=tmp_path / "home"), 2, "command line", *words)  # fmt: skip
    assert "pydantic" not in r.stderr, r
    assert "input_value" not in r.stderr, r
    assert SEED.split('"')[1] not in r.stderr, r


# -- the store URL's own parameters (docs/deployment.md "Connecting") -------------------------


@pytest.mark.parametrize(("query", "words"), [
    ("vrm_pool_size=abc", ["vrm_pool_size must be an integer", "'abc'"]),
    ("vrm_command_timeout_s=soon", ["vrm_command_timeout_s must be a number"]),
    ("vrm_poolsize=8", ["vrm_poolsize is not a parameter", "did you mean 'vrm_pool_size'"]),
    ("vrm_writers=0", ["writers", "at least 1"]),
    ("vrm_schema=Bad-Name", ["schema name must match"]),
    ("vrm_lock_timeout_ms=-1", ["lock_timeout_ms"]),
])  # fmt: skip
def test_a_bad_store_url_parameter_is_a_config_error(query: str, words: list[str]) -> None:
    url = f"postgresql://vrm:s3cret@db1.internal/vrm?{query}"
    for text in (f'store = "{url}"\n', f'[store]\nurl = "{url}"\n'):
        with pytest.raises(ConfigError, match=r"^v\.toml: store") as info:
            _parse(text)
        for word in words:
            assert word in str(info.value)
        assert "s3cret" not in str(info.value)


def test_the_store_url_parameters_of_the_docs_are_accepted() -> None:
    _parse('store = "postgresql://vrm@db1/vrm?vrm_schema=vrm&vrm_pool_size=8&vrm_writers=2'
           '&vrm_batch_cap=64&vrm_lock_timeout_ms=0&vrm_command_timeout_s=30&sslmode=require"\n')


def test_vrm_vendor_check_config_refuses_a_bad_store_url_parameter(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text(BASE + SEED + 'store = "postgresql://vrm@db1/vrm?vrm_pool_size=abc"\n',
                    "utf-8")  # fmt: skip
    fails(vrm("vendor", "check-config", str(path), home=tmp_path / "home"), 2,
          "store", "vrm_pool_size must be an integer")  # fmt: skip


def test_the_deployment_guide_lists_every_store_url_parameter() -> None:
    from vrmproto.server._config import _PG_PARAMETERS  # noqa: PLC0415
    from vrmproto.store import PostgresConfig  # noqa: PLC0415

    table = (ROOT / "docs" / "deployment.md").read_text("utf-8")
    rows = set(re.findall(r"^\| `(vrm_[a-z_]+)` \|", table, re.MULTILINE))
    read = {f"vrm_{f.name}" for f in dataclasses.fields(PostgresConfig)
            if f.name not in ("dsn", "connect_timeout_s")}  # fmt: skip
    assert rows == read == set(_PG_PARAMETERS)


def test_the_help_says_the_connection_caps_hold_in_each_worker(tmp_path: Path) -> None:
    """With --workers N each process has its own connection guard (§10.1-3, §10.1-4): the
    service holds up to N times the caps, while the rate limits are shared (§12.9-8). A
    vendor reading the caps in --help (or docs/deployment.md) is told so."""
    text = " ".join(ok(vrm("vendor", "serve", "--help", home=tmp_path)).stdout.split())
    assert "capped in total and per client address (spec §10.1), in each process" in text
    assert "per client address or prefix, in each worker process" in text
    assert "the connection caps hold in each (N workers: up to N times" in text
    guide = " ".join((ROOT / "docs" / "deployment.md").read_text("utf-8").split())
    assert "The connection caps (`[connections]`" in guide
    assert "hold in **each** worker" in guide


def test_a_price_beyond_what_an_offer_carries_is_a_config_error() -> None:
    """Money's ``amount`` is ``int(0..9007199254740991)`` minor units (spec §5): a larger
    catalogue price was accepted, and each intentcast it matched failed in the policy (no
    offer, a traceback in the log) instead of the file being refused."""
    item = '[[catalogue]]\ndescription = "Jeep"\nkeywords = ["suv"]\nprice = "{}"\n'
    with pytest.raises(ConfigError, match=r"catalogue\[0\]\.price: .*more than an offer"):
        _parse(item.format("99999999999999999999999 USD"))
    with pytest.raises(ConfigError, match=r"catalogue\[0\]\.price"):
        _parse(item.format(f"{MAX_SAFE_INT // 100 + 1} USD"))
    _parse(item.format(f"{MAX_SAFE_INT // 100} USD"))  # the largest whole amount that fits


@pytest.mark.parametrize(("line", "where"), [
    ('category = "nope"', r"observed\[1\]\.category: 'nope' is not a category"),
    ('purposes = ["core-function", "nope"]', r"observed\[1\]\.purposes: 'nope' is not a purp"),
    ("collected = -5", r"observed\[1\]: .*milliseconds since the epoch.* collected"),
])  # fmt: skip
def test_a_mistaken_observed_entry_is_named(line: str, where: str) -> None:
    """A vendor with many ``[[observed]]`` entries is told which one is wrong (before: only
    the file, ``v.toml: 'nope' is not a category``)."""
    entries = '[[observed]]\nfield = "a"\nvalue = "1"\n' + \
        f'[[observed]]\nfield = "b"\nvalue = "2"\n{line}\n'  # fmt: skip
    with pytest.raises(ConfigError, match=rf"^v\.toml: {where}"):
        _parse(entries)


@pytest.mark.parametrize(("var", "words"), [
    ("VRM_STORE", ["store:", "VRM_STORE_URL"]),
    ("VRM_SEED", ["seed:", "seed_file"]),
    ("VRM_SEED_FILE", ["seed_file:"]),
    ("VRM_RELAYS", ["relays:"]),
    ("VRM_RELAY_MIN_POW", ["relay_min_pow:"]),
])  # fmt: skip
def test_a_variable_outside_the_sections_is_refused(var: str, words: list[str]) -> None:
    """``VRM_STORE=postgresql://…`` was ignored (the vendor served from SQLite on the
    container's disk), and ``VRM_SEED`` too (a fresh key in the data directory: every
    customer's relationship with the old key gone); only sections' fields come from the
    environment, and a variable for another is now named as the mistake."""
    with pytest.raises(ConfigError, match=rf"^environment variable {var}: ") as info:
        parse_vendor_file(tomllib.loads(BASE), environ={var: "postgresql://db/vrm"})
    for word in words:
        assert word in str(info.value)
    assert parse_vendor_file(tomllib.loads(BASE), environ={"VRM_HOME": "/x", "VRM_TEST": "1"})
