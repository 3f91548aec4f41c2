"""The ``vrm`` command line, driven as a subprocess against real reference vendors on 127.0.0.1.

Every command, its ``--json`` output, and the failures a person meets: a bad URL, a vendor that
is down, refused terms, a damaged data directory, a mistyped or wrong seed. Errors must be one
plain sentence on stderr and a documented exit code (0 done, 1 refused/failed, 2 usage or
environment), never a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests._cli_helpers import (
    ROOT,
    VENDOR_FILES,
    VendorHost,
    VendorProcess,
    cli_env,
    fails,
    new_home,
    ok,
    vendor_host,
    vrm,
    vrm_command,
)
from tests._ports import closed_port
from vrmproto import Money
from vrmproto.cli._home import Home
from vrmproto.cli._parse import parse_duration, parse_money, parse_term
from vrmproto.cli._seedtext import SeedTextError, seed_from_text, seed_to_text
from vrmproto.client._paths import endpoint_path

# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host() -> Iterator[VendorHost]:
    with vendor_host("avis", "budget", "hertz", "outfitters", "market") as h:
        yield h


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return new_home(tmp_path)




# -- what a person types, read ----------------------------------------------------------------


@given(st.binary(min_size=32, max_size=32))
def test_seed_text_round_trips(seed: bytes) -> None:
    text = seed_to_text(seed)
    assert text.startswith("vrm1-")
    assert len(text.split("-")) == 15
    assert seed_from_text(text) == seed
    assert seed_from_text(text.upper().replace("-", " ")) == seed  # case and spacing are free


@given(st.binary(min_size=32, max_size=32), st.integers(0, 55), st.integers(1, 31))
def test_a_mistyped_seed_character_is_detected(seed: bytes, position: int, delta: int) -> None:
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    text = seed_to_text(seed)
    body = list(text[5:].replace("-", ""))
    body[position] = alphabet[(alphabet.index(body[position]) + delta) % 32]
    with pytest.raises(SeedTextError, match="check value"):
        seed_from_text("vrm1-" + "".join(body))


def test_seed_text_refuses_what_is_not_a_seed() -> None:
    with pytest.raises(SeedTextError, match="starts with"):
        seed_from_text("abandon ability able")
    with pytest.raises(SeedTextError, match="56"):
        seed_from_text("vrm1-abcd-efgh")
    good = seed_to_text(bytes(range(32)))
    with pytest.raises(SeedTextError, match="'u'"):
        seed_from_text(good[:-1] + "u")
    lenient = "vrm1-" + good[5:].replace("1", "l").replace("0", "o")
    assert seed_from_text(lenient) == bytes(range(32))


def test_money_durations_and_terms_are_read_as_typed() -> None:
    assert parse_money("300USD") == Money(30000, "USD")
    assert parse_money("289.5 eur") == Money(28950, "EUR")
    assert parse_money("USD 12.34") == Money(1234, "USD")
    assert parse_money("5000 JPY") == Money(5000, "JPY")  # yen have no minor unit
    assert parse_money("12.345 bhd") == Money(12345, "BHD")  # three decimal places (fils)
    for bad in ("300", "USD", "3.141USD", "300 USD EUR", "300.5 JPY", "1.2345 BHD"):
        with pytest.raises(click.BadParameter):
            parse_money(bad)
    assert parse_duration("30d") == 30 * 86_400_000
    assert parse_duration("90s") == 90_000
    assert parse_duration("45") == 45_000
    with pytest.raises(click.BadParameter):
        parse_duration("soon")
    ref = parse_term("vrm.delete-after:days=30")
    assert (ref.id, dict(ref.params)) == ("vrm.delete-after", {"days": 30})
    assert dict(parse_term("vrm.return-on-request").params) == {"format": "vrm-data/1"}
    for bad in ("vrm.nope", "vrm.delete-after", "vrm.delete-after:days=0",
                "vrm.delete-after:weeks=2", "vrm.delete-after:days=many",
                "vrm.delete-after:days=30,days=40"):  # not 40 kept silently
        with pytest.raises(click.BadParameter):
            parse_term(bad)


# -- init, key, terms --------------------------------------------------------------------------


def test_init_makes_a_data_directory_the_person_owns(tmp_path: Path) -> None:
    home = tmp_path / "you"
    r = ok(vrm("init", "--name", "Doc", "--json", home=home))
    assert r.json["data_dir"] == str(home)
    assert [t["id"] for t in r.json["terms"]] == [
        "vrm.no-tracking", "vrm.no-third-party", "vrm.delete-after", "vrm.return-on-request",
    ]
    assert stat.S_IMODE((home / "seed").stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert json.loads((home / "settings.json").read_text())["name"] == "Doc"
    fails(vrm("init", home=home), 2, "already")
    other = tmp_path / "other"  # --data-dir wins over VRM_HOME
    ok(vrm("--data-dir", str(other), "init", home=home))
    assert (other / "seed").exists()


def test_terms_show_list_and_set(home: Path) -> None:
    roster = ok(vrm("terms", "list", "--json", home=home)).json["roster"]
    assert {"vrm.no-tracking", "myterms.SD-BASE"} <= {t["id"] for t in roster}
    r = ok(vrm("terms", "set", "vrm.no-tracking", "vrm.delete-after:days=30", "--json",
               home=home))
    assert [(t["id"], t.get("params")) for t in r.json["terms"]] == [
        ("vrm.no-tracking", None), ("vrm.delete-after", {"days": 30}),
    ]
    assert "vrm.delete-after:days=30" in ok(vrm("terms", home=home)).stdout
    fails(vrm("terms", "set", "vrm.no-tracking", "vrm.no-such-term", home=home), 2,
          "vrm.no-such-term")


def test_key_export_and_import(home: Path, tmp_path: Path) -> None:
    text = ok(vrm("key", "export", home=home)).stdout.strip()
    assert text.startswith("vrm1-")
    assert ok(vrm("key", "import", text, "--json", home=home)).json["status"] == "unchanged"
    mistyped = text[:12] + ("a" if text[12] != "a" else "b") + text[13:]
    fails(vrm("key", "import", mistyped, home=home), 2, "check value")
    restored = tmp_path / "restored"
    assert ok(vrm("key", "import", *text.split("-"), "--json", home=restored)).json["status"] \
        == "created"
    assert ok(vrm("key", "export", "--json", home=restored)).json["seed"] == text
    other = seed_to_text(os.urandom(32))
    assert ok(vrm("key", "import", other, "--json", home=restored)).json["status"] == "replaced"


def test_key_import_refuses_a_seed_that_does_not_match_the_relationships(
    home: Path, host: VendorHost
) -> None:
    text = ok(vrm("key", "export", home=home)).stdout.strip()
    ok(vrm("connect", host["avis"].url, home=home))
    other = seed_to_text(os.urandom(32))
    fails(vrm("key", "import", other, home=home), 1, "does not match the relationships",
          str(home))
    (home / "seed").write_text("garbage\n")
    fails(vrm("relationships", home=home), 2, "damaged", "seed")
    assert ok(vrm("key", "import", text, "--json", home=home)).json["status"] == "restored"
    assert len(ok(vrm("relationships", "--json", home=home)).json["relationships"]) == 1


# -- connect ------------------------------------------------------------------------------------


def test_connect_accepted(home: Path, host: VendorHost) -> None:
    r = ok(vrm("connect", host["avis"].url, "--json", home=home))
    assert r.json["status"] == "accepted"
    assert r.json["vendor"] == "Avis Park City"
    assert len(r.json["agreement"]) == 64
    assert r.json["terms"][0]["id"] == "vrm.no-tracking"
    human = ok(vrm("connect", "Avis Park City", home=home))  # by name: already agreed
    assert "already connected" in human.stdout
    assert "on the terms agreed then" in human.stdout


def test_connect_countered_then_accepted_declined_or_asked(home: Path, host: VendorHost) -> None:
    url = host["budget"].url
    r = ok(vrm("connect", url, "--accept-counter", "--json", home=home))
    assert r.json["status"] == "accepted"
    assert r.json["counter_answer"] == "accepted"
    assert r.json["refused"] == ["vrm.no-third-party"]
    assert "vrm.purpose-only" in [t["id"] for t in r.json["counter"]]
    assert "vrm.purpose-only" in [t["id"] for t in r.json["terms"]]
    ok(vrm("end", "Budget Salt Lake", home=home))  # one live relationship per vendor (#11 6)
    d = fails(vrm("connect", url, "--decline-counter", "--json", home=home), 1, "declined")
    assert d.json["counter_answer"] == "declined"
    asked = ok(vrm("connect", url, home=home, stdin="y\n"))
    assert "Accept these terms instead?" in asked.stderr
    assert "you accepted the counter-offer" in asked.stdout
    ok(vrm("end", "Budget Salt Lake", home=home))
    left_open = fails(vrm("connect", url, home=home, stdin=""), 1, "counter-offer is open")
    assert "left open" in left_open.stdout + left_open.stderr
    answered = ok(vrm("connect", "Budget Salt Lake", "--accept-counter", "--json", home=home))
    assert answered.json["status"] == "accepted"


def test_connect_rejected_is_a_signed_no_that_is_kept(home: Path, host: VendorHost) -> None:
    r = fails(vrm("connect", host["hertz"].url, "--json", home=home), 1, "rejected",
              "vrm.delete-after")
    assert r.json["status"] == "rejected"
    assert r.json["refused"] == ["vrm.delete-after"]
    rejection = r.json["rejection"]
    h = ok(vrm("history", "Hertz Wasatch", "--json", home=home)).json
    kept = [e for e in h["entries"] if e["hash"] == rejection["hash"]]
    assert kept
    assert kept[0]["type"] == "terms.reject"
    assert kept[0]["direction"] == "in"
    fails(vrm("share", "Hertz Wasatch", "email=doc@example.org", home=home), 1, "no agreement")


# -- data ---------------------------------------------------------------------------------------


def test_share_data_withdraw(home: Path, host: VendorHost) -> None:
    ok(vrm("connect", host["outfitters"].url, home=home))
    s = ok(vrm("share", "wasatch outfitters", "email=doc@example.org", "phone=+1 801 555 0142",
               "--purpose", "contracted-service", "--expires", "30d", "--json", home=home))
    assert s.json["status"] == "confirmed"
    assert s.json["categories"] == [2]
    share = s.json["share"]
    rels = ok(vrm("relationships", "--json", home=home)).json["relationships"]
    assert rels[0]["shares"][0]["hash"] == share
    assert rels[0]["shares"][0]["fields"] == ["email", "phone"]
    data = ok(vrm("data", "Wasatch Outfitters", "--json", home=home)).json
    assert data["format"] == "vrm-data/1"
    sources = {r["field"]: r["source"] for r in data["records"]}
    assert sources == {"email": "provided", "phone": "provided", "boot_size": "observed"}
    w = ok(vrm("withdraw", "Wasatch Outfitters", "--share", share[:10], "--json", home=home))
    assert w.json["erased"]["shares"] == [share]
    assert w.json["erased"]["signed_by"] == host["outfitters"].identity.fingerprint
    after = ok(vrm("data", "Wasatch Outfitters", "--json", home=home)).json["records"]
    assert [r["field"] for r in after] == ["boot_size"]
    fails(vrm("withdraw", "Wasatch Outfitters", home=home), 1, "nothing shared")  # 2 before s17
    fails(vrm("share", "Wasatch Outfitters", "Email=x", "--purpose", "spying", home=home), 2)


def test_address_update_reaches_everyone_and_a_down_vendor_later(
    home: Path, host: VendorHost
) -> None:
    host.add("lodge")
    try:
        for key in ("avis", "market", "lodge"):
            ok(vrm("connect", host[key].url, home=home))
        host.stop("lodge")
        r = fails(vrm("address", "set", "street=1 Main Street", "city=Park City", "--json",
                      home=home), 3, "waits in the outbox")  # queued: exit 3 (the contract)
        assert r.json["counts"] == {"confirmed": 2, "queued": 1, "refused": 0, "failed": 0}
        queued = [x for x in r.json["results"] if x["status"] == "queued"]
        assert [x["vendor"] for x in queued] == ["Silver Star Lodge"]
        human = ok(vrm("outbox", home=home))
        assert "Silver Star Lodge" in human.stdout
        assert "address.update" in human.stdout
        assert "connection refused" in human.stdout
        fails(vrm("outbox", "run", home=home), 3, "still waiting")  # queued: 3 (the contract)
        host.start("lodge")
        ran = ok(vrm("outbox", "run", "--json", home=home)).json
        assert ran["counts"]["confirmed"] == 1
        assert [d["type"] for d in ran["deliveries"]] == ["address.update"]
        assert ran["waiting"] == 0
        held = ok(vrm("data", "Silver Star Lodge", "--json", home=home)).json["records"]
        assert {r["field"]: r["value"] for r in held}["street"] == "1 Main Street"
        cmp = ok(vrm("history", "Silver Star Lodge", "--compare", "--json", home=home)).json
        assert cmp["comparison"]["equal"] is True
    finally:
        host.stop("lodge")


# -- intentcasts --------------------------------------------------------------------------------


def test_intentcast_ranks_offers_and_one_is_taken_up(home: Path, host: VendorHost) -> None:
    args = ["intent", "new", "4-wheel-drive SUV rental", "--where", "Park City, UT",
            "--from", "2027-03-20", "--to", "2027-03-25", "--max-price", "300USD",
            "--member", "Avis Wizard", "--member", "Budget FastBreak",
            "--member", "Hertz 1 Club", "--constraint", "no prepaid gas",
            "--constraint", "no insurance", "--deadline", "10s", "--no-discover"]
    for key in ("avis", "budget", "hertz", "outfitters"):
        args += ["--vendor", host[key].url]
    r = ok(vrm(*args, "--json", home=home)).json
    assert [o["vendor"] for o in r["offers"]] == ["Avis Park City", "Budget Salt Lake",
                                                  "Hertz Wasatch"]
    assert r["offers"][0]["missing_terms"] == []
    assert r["offers"][1]["missing_terms"] == ["vrm.no-third-party"]
    assert [d["vendor"] for d in r["declines"]] == ["Wasatch Outfitters"]
    assert r["offers"][0]["price"] == {"amount": 28900, "currency": "USD", "text": "289.00 USD"}
    taken = ok(vrm("intent", "accept", r["offers"][0]["id"][:6], "--json", home=home)).json
    assert taken["status"] == "accepted"
    assert taken["vendor"] == "Avis Park City"
    fails(vrm("intent", "accept", "ffffffff", home=home), 2, "no offer")
    human = ok(vrm(*args, home=home))
    assert "best first" in human.stdout
    assert "offer: Jeep Grand Cherokee" in human.stdout  # shown as it arrived
    assert "vrm intent accept" in human.stdout


# -- failures a person meets ---------------------------------------------------------------------


def test_bad_url_and_vendor_down(home: Path) -> None:
    fails(vrm("connect", "htp://example", home=home), 2, "not an http")
    fails(vrm("intent", "new", "SUV", "--vendor", "ftp://x", "--no-discover", home=home), 2)
    fails(vrm("intent", "new", "SUV", "--no-discover", home=home), 2, "no vendors")
    fails(vrm("data", "Nobody", home=home), 2, "no relationship")
    down = f"http://127.0.0.1:{closed_port()}"
    r = fails(vrm("connect", down, "--json", home=home), 4, "could not reach", "refused")
    assert r.json["error"]["kind"] == "unreachable"


def test_no_or_damaged_data_directory(home: Path, tmp_path: Path) -> None:
    fails(vrm("relationships", home=tmp_path / "nobody"), 2, "vrm init")
    (home / "seed").write_bytes(os.urandom(64))
    fails(vrm("relationships", home=home), 2, "damaged", "seed")
    other = tmp_path / "other"
    ok(vrm("init", home=other))
    (other / "agent.db").write_bytes(os.urandom(4096))
    r = fails(vrm("relationships", "--json", home=other), 2, "damaged", "agent.db")
    assert r.json["error"]["kind"] == "damaged"
    (other / "settings.json").write_text("{not json")
    fails(vrm("terms", home=other), 2, "damaged", "settings.json")


# -- servers -------------------------------------------------------------------------------------


def test_vendor_serve_from_toml(home: Path, tmp_path: Path) -> None:
    vendor = VendorProcess("--config", str(VENDOR_FILES / "avis.toml"), "--memory",
                           "--no-advertise", "--port", "0")
    try:
        assert vendor.info["event"] == "listening"
        assert vendor.info["name"] == "Avis Park City"
        assert vendor.url.startswith("http://127.0.0.1:")
        r = ok(vrm("connect", vendor.url, "--json", home=home)).json
        assert r["status"] == "accepted"
        heard = next(vendor.lines())
        assert (heard["event"], heard["kind"]) == ("message", "terms.offer")
        assert heard["thread"] == r["thread"]
    finally:
        code, rest = vendor.stop()
    assert code == 0
    assert '"stopped"' in rest
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "X"\naccepts_terms = ["vrm.nope"]\n')
    fails(vrm("vendor", "serve", "--config", str(bad), home=home), 2, "vrm.nope")
    fails(vrm("vendor", "serve", "--config", str(tmp_path / "missing.toml"), home=home), 2)


def test_connect_refuses_a_known_vendors_new_key_until_it_is_accepted(
    home: Path, tmp_path: Path
) -> None:
    config = tmp_path / "shop.toml"
    config.write_text('name = "Corner Shop"\naccepts_terms = "all"\n')
    first = VendorProcess("--config", str(config), "--data-dir", str(tmp_path / "a"),
                          "--no-advertise")  # fmt: skip
    try:
        url, port = first.url, str(first.info["port"])
        ok(vrm("connect", url, home=home))
    finally:
        first.stop()
    # the same URL, another key (§11.10-1, §11.10-3)
    second = VendorProcess("--config", str(config), "--data-dir", str(tmp_path / "b"),
                           "--port", port, "--no-advertise")  # fmt: skip
    try:
        new = second.info["fingerprint"]
        for target in (url, "Corner Shop"):  # other terms: not the agreement we already hold
            r = fails(vrm("connect", target, "--term", "vrm.no-tracking", home=home), 5)
            assert new in r.stderr
            assert "impostor" in r.stderr
            assert f"--accept-new-key {new}" in r.stderr
        # the agreement we hold, asked for again: the vendor is asked, and refused as well
        # (before, 'You already have an agreement' came from our own store, and the same
        # command with --accept-new-key said so too: the key could never be accepted)
        r = fails(vrm("connect", url, home=home), 5)
        assert f"--accept-new-key {new}" in r.stderr
        assert len(ok(vrm("relationships", "--json", home=home)).json["relationships"]) == 1
        r = ok(vrm("connect", url, "--accept-new-key", new, "--json", home=home))
        assert r.json["status"] == "accepted"
        assert r.json["vendor_fingerprint"] == new
        assert not r.json["existing"]
    finally:
        second.stop()


def test_vendor_serve_keeps_its_key_in_its_data_directory(tmp_path: Path) -> None:
    config = tmp_path / "shop.toml"
    config.write_text('name = "Corner Shop"\naccepts_terms = "all"\n')
    data = tmp_path / "shop-data"
    first = VendorProcess("--config", str(config), "--data-dir", str(data), "--no-advertise")
    first.stop()
    second = VendorProcess("--config", str(config), "--data-dir", str(data), "--no-advertise")
    second.stop()
    assert first.info["key"] == second.info["key"]
    assert (data / "vendor.db").exists()


def test_vendor_serve_caps_connections_per_address(tmp_path: Path) -> None:
    """``vrm vendor serve`` holds its HTTP connections to spec §10.1: the defaults, and a cap
    per address given on the command line (issue 10)."""
    config = tmp_path / "shop.toml"
    config.write_text('name = "Corner Shop"\naccepts_terms = "all"\n')
    vendor = VendorProcess("--config", str(config), "--data-dir", str(tmp_path / "shop"),
                           "--no-advertise", "--max-connections-per-address", "2")  # fmt: skip
    held: list[socket.socket] = []
    try:
        limits = vendor.info["connections"]
        assert limits["per_address"] == 2
        assert (limits["header_timeout_ms"], limits["idle_timeout_ms"]) == (10_000, 20_000)
        port = vendor.info["port"]
        held.extend(socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3))
        try:  # the third is closed at once, unanswered
            got = held[2].recv(1)
        except ConnectionResetError:
            got = b""
        assert got == b""
        held[0].setblocking(False)  # the first two are held: nothing to read, and not closed
        with pytest.raises(BlockingIOError):
            held[0].recv(1)
    finally:
        for s in held:
            s.close()
        vendor.stop()


def test_agent_serve_delivers_the_outbox_and_serves_discovery(
    home: Path, host: VendorHost
) -> None:
    host.add("lodge2", "lodge")
    try:
        thread = bytes.fromhex(ok(vrm("connect", host["lodge2"].url, "--json",
                                      home=home)).json["thread"])  # fmt: skip
        host.stop("lodge2")
        fails(vrm("address", "set", "city=Park City", home=home), 3)  # queued
        host.start("lodge2")
        proc = subprocess.Popen(
            [*vrm_command(), "agent", "serve", "--json", "--port", "0", "--interval", "0.5"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(home),
            cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            listening = json.loads(proc.stdout.readline())
            url = listening["url"]
            settings = json.loads((home / "settings.json").read_text())
            assert settings["agent_url"] == url
            # Nothing at the origin: each relationship has its own path (§11.6-1, §12.11-4)...
            with pytest.raises(urllib.error.HTTPError) as missing:
                urllib.request.urlopen(url + "/.well-known/vrm", timeout=10)
            missing.value.close()
            assert missing.value.code == 404
            path = endpoint_path(Home(home).master(), thread)
            with urllib.request.urlopen(url + path + "/.well-known/vrm", timeout=10) as resp:
                raw = resp.read()
            doc = json.loads(raw)
            assert doc["role"] == "customer"
            assert doc["inbox"] == path + "/vrm/inbox"
            assert b"Doc" not in raw  # ...and its document names no person
            for line in proc.stdout:
                event = json.loads(line)
                if event["event"] == "delivery":
                    assert event["status"] == "confirmed"
                    break
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert '"stopped"' in out
        assert "agent_url" not in json.loads((home / "settings.json").read_text())
        assert ok(vrm("outbox", "--json", home=home)).json["pending"] == []
    finally:
        host.stop("lodge2")


def test_agent_serve_exposes_its_outbox_depth_as_a_metric(home: Path, host: VendorHost) -> None:
    """Issue 13: ``vrm_outbox_depth`` of the customer's agent, on a loopback listener of its own
    (``--metrics-port``), read with Prometheus's own parser: what waits, then nothing."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        return {f.name: [(s.labels, s.value) for s in f.samples]
                for f in text_string_to_metric_families(text)}  # fmt: skip

    host.add("lodge3", "lodge")
    try:
        ok(vrm("connect", host["lodge3"].url, home=home))
        host.stop("lodge3")
        fails(vrm("address", "set", "city=Park City", home=home), 3)  # queued
        fails(vrm("share", host["lodge3"].name, "email=doc@example.org", home=home), 3)
        waiting = len(ok(vrm("outbox", "--json", home=home)).json["pending"])
        assert waiting >= 1
        proc = subprocess.Popen(
            [*vrm_command(), "agent", "serve", "--json", "--port", "0", "--interval", "0.5",
             "--metrics-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(home),
            cwd=ROOT,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            listening = json.loads(proc.stdout.readline())
            metrics = listening["metrics"]
            assert metrics.startswith("http://127.0.0.1:")
            got = scrape(metrics)
            assert got["vrm_outbox_depth"] == [({}, float(waiting))]
            assert ({"state": "agreed"}, 1.0) in got["vrm_relationships"]
            host.start("lodge3")
            delivered = 0
            for line in proc.stdout:
                event = json.loads(line)
                if event["event"] == "delivery" and event["status"] == "confirmed":
                    delivered += 1
                    if delivered == waiting:
                        break
            assert scrape(metrics)["vrm_outbox_depth"] == [({}, 0.0)]
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
    finally:
        host.stop("lodge3")


def test_conformance_is_mounted(home: Path) -> None:
    r = ok(vrm("conformance", "--list", "--json", home=home))
    assert "DISC-001" in r.stdout


def test_rotate_then_end(home: Path, host: VendorHost) -> None:
    ok(vrm("connect", host["outfitters"].url, home=home))
    r = ok(vrm("rotate", "Wasatch Outfitters", "--json", home=home)).json
    assert r["status"] == "confirmed"
    assert r["old_key"] != r["new_key"]
    # the relationship goes on under the new key, and both histories still agree
    s = ok(vrm("share", "Wasatch Outfitters", "email=doc@example.org", "--json", home=home))
    assert s.json["status"] == "confirmed"
    cmp = ok(vrm("history", "Wasatch Outfitters", "--compare", "--json", home=home)).json
    assert cmp["comparison"]["equal"] is True
    e = ok(vrm("end", "Wasatch Outfitters", "--reason", "moving away", "--keep-data", "--json",
               home=home))  # fmt: skip
    assert e.json["status"] == "confirmed"
    rels = ok(vrm("relationships", "--json", home=home)).json["relationships"]
    assert rels[0]["state"] == "ended"
    fails(vrm("share", "Wasatch Outfitters", "email=x@example.org", home=home), 1, "ended")


def test_history_reconcile_after_restoring_a_backup(home: Path, host: VendorHost) -> None:
    """§8.3-4: after the data directory is restored from a backup, ``history --reconcile``
    adopts what the backup lacks (a key rotation among it), and the relationship goes on."""
    ok(vrm("connect", host["outfitters"].url, home=home))
    saved = {name: (home / name).read_bytes() for name in ("agent.db", "agent.db-wal")
             if (home / name).exists()}  # fmt: skip
    ok(vrm("rotate", "Wasatch Outfitters", home=home))
    ok(vrm("share", "Wasatch Outfitters", "email=doc@example.org", home=home))
    for name in ("agent.db", "agent.db-wal", "agent.db-shm"):
        (home / name).unlink(missing_ok=True)
    for name, data in saved.items():
        (home / name).write_bytes(data)
    fails(vrm("history", "Wasatch Outfitters", "--compare", home=home), 1, "differ")
    r = ok(vrm("history", "Wasatch Outfitters", "--reconcile", "--json", home=home)).json
    assert r["reconciliation"]["kind"] == "adopted"
    assert r["reconciliation"]["adopted"] == len(r["entries"]) - r["reconciliation"]["index"] > 0
    assert r["comparison"]["equal"] is True
    human = ok(vrm("history", "Wasatch Outfitters", "--reconcile", home=home))
    assert "nothing to adopt" in human.stdout
    s = ok(vrm("share", "Wasatch Outfitters", "phone=555", "--json", home=home))
    assert s.json["status"] == "confirmed"


def test_every_command_has_help_and_json() -> None:
    out = subprocess.run([*vrm_command(), "--help"], capture_output=True, text=True, check=True,
                         env=cli_env(None)).stdout
    commands = ["address", "agent", "conformance", "connect", "data", "demo", "discover",
                "history", "init", "intent", "key", "outbox", "relationships", "share", "terms",
                "vendor", "withdraw", "rotate", "end"]
    for name in commands:
        assert name in out
    from vrmproto.cli import cli  # noqa: PLC0415

    def walk(cmd: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        if isinstance(cmd, click.Group):
            for sub_name, sub in cmd.commands.items():
                yield from walk(sub, f"{path} {sub_name}")
        else:
            yield path, cmd

    for path, cmd in walk(cli, "vrm"):
        names = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert "--json" in names, path


def test_an_everyday_command_loads_only_what_it_needs(tmp_path: Path) -> None:
    """``vrm`` starts on every command a person types: `vrm relationships` must not load the
    vendor's configuration (pydantic), metrics, webhooks, the Nostr keys, the browser page or
    the conformance suite (each is loaded by the command that uses it)."""
    heavy = ("pydantic", "prometheus_client", "cloudevents", "jinja2", "coincurve",
             "cryptography", "vrmproto.testing", "vrmproto.nostr", "vrmproto.ui")  # fmt: skip
    code = ("import sys\nfrom vrmproto.cli import main\ntry:\n    main(['relationships'])\n"
            "except SystemExit:\n    pass\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "VRM_HOME": str(tmp_path / "none")}, timeout=60,
                         check=True).stdout  # fmt: skip
    assert out.strip().splitlines()[-1] == "[]"
