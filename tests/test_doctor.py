"""``vrm doctor`` (issue 11 item 13): one line per check, exit 1 only when a person must act."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._cli_helpers import VENDOR_FILES, Result, VendorHost, new_home, vendor_host, vrm
from vrmproto.cli import LocalVendor, load_vendor_config
from vrmproto.cli._seedtext import seed_to_text


@pytest.fixture(scope="module")
def host() -> Iterator[VendorHost]:
    with vendor_host("avis") as h:
        yield h


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return new_home(tmp_path)


@contextlib.contextmanager
def in_place_of_avis(host: VendorHost, toml: str) -> Iterator[None]:
    """The vendor of ``examples/vendors/<toml>`` on Avis's port while Avis is stopped."""
    port = host["avis"].port
    host.stop("avis")
    try:
        other = LocalVendor.of(load_vendor_config(VENDOR_FILES / toml))
        other.port = port
        host.vendors["other"] = other
        host.start("other")
        yield
    finally:
        if "other" in host.vendors:
            host.stop("other")
            host.vendors.pop("other")
        host.start("avis")


def checks(r: Result) -> dict[str, dict[str, Any]]:
    assert "Traceback" not in r.stderr, r
    return {c["check"]: c for c in r.json["checks"]}


def test_all_in_order(home: Path, host: VendorHost) -> None:
    assert vrm("connect", host["avis"].url, home=home).code == 0
    r = vrm("doctor", "--json", home=home)
    assert r.code == 0, r
    found = checks(r)
    assert r.json["ok"] is True
    for name in ("data directory", "seed", "schema", "integrity", "seed ↔ store",
                 "vendor Avis Park City", "clock vs Avis Park City", "outbox"):
        assert found[name]["status"] == "ok", found
    human = vrm("doctor", home=home)
    assert human.code == 0
    assert len(human.stdout.strip().splitlines()) == len(found)  # one line each


def test_what_needs_a_person(home: Path, host: VendorHost, tmp_path: Path) -> None:
    assert vrm("connect", host["avis"].url, home=home).code == 0
    (home / "settings.json").chmod(0o644)
    r = vrm("doctor", "--json", home=home)
    assert r.code == 1
    assert checks(r)["data directory"]["status"] == "fail"
    assert "settings.json" in checks(r)["data directory"]["detail"]
    assert vrm("doctor", home=home).code == 0  # tightened by the first run
    seed = (home / "seed").read_text()
    (home / "seed").write_text(seed_to_text(os.urandom(32)) + "\n")
    r = vrm("doctor", "--json", home=home)
    assert r.code == 1
    assert checks(r)["seed ↔ store"]["status"] == "fail"
    (home / "seed").write_text(seed)
    for extra in ("agent.db-wal", "agent.db-shm"):
        (home / extra).unlink(missing_ok=True)
    (home / "agent.db").write_bytes(os.urandom(8192))
    r = vrm("doctor", "--json", home=home)
    assert r.code == 1
    bad = [c for c in r.json["checks"] if c["status"] == "fail"]
    assert bad
    assert bad[0]["check"] in ("store", "integrity", "schema")
    assert vrm("doctor", home=tmp_path / "nobody").code == 1


def test_a_vendor_with_another_key_and_a_stuck_outbox(home: Path, host: VendorHost) -> None:
    assert vrm("connect", host["avis"].url, home=home).code == 0
    with in_place_of_avis(host, "hertz.toml"):  # an impostor
        r = vrm("doctor", "--json", home=home)
        assert r.code == 1, r
        assert checks(r)["vendor Avis Park City"]["status"] == "fail"
        assert "bad_key" in checks(r)["vendor Avis Park City"]["detail"]
        host.stop("other")
        host.vendors.pop("other")
        down = checks(vrm("doctor", "--json", home=home))
        assert down["vendor Avis Park City"]["status"] == "warn"
        assert down["vendor Avis Park City"]["detail"].endswith(
            ": unreachable: connection refused")  # said once, not "unreachable (unreachable: …)"
        assert vrm("share", "Avis Park City", "email=doc@example.org", home=home).code == 3
        assert checks(vrm("doctor", "--json", home=home))["outbox"]["status"] == "warn"
        for _ in range(4):  # still queued: 3 (the s17 contract; share said 0, outbox run 1)
            assert vrm("outbox", "run", home=home).code == 3
        r = vrm("doctor", "--json", home=home)
        assert r.code == 1
        assert checks(r)["outbox"]["status"] == "fail"


def test_a_vendor_that_forgot_the_relationship(home: Path, host: VendorHost) -> None:
    """The vendor comes back with its key but without its data (a fresh store): it answers
    ``no_relationship``. Our side still reads "agreed"; the doctor says what happened."""
    assert vrm("connect", host["avis"].url, home=home).code == 0
    assert checks(vrm("doctor", "--json", home=home)).get(
        "relationship with Avis Park City") is None
    with in_place_of_avis(host, "avis.toml"):  # its key, a fresh store
        vrm("share", "Avis Park City", "email=doc@example.org", home=home)
        r = vrm("doctor", "--json", home=home)
        assert r.code == 1, r
        forgot = checks(r)["relationship with Avis Park City"]
        assert forgot["status"] == "fail"
        assert "holds no such relationship" in forgot["detail"]
        # it said `vrm connect URL` opens a new one: it answered "already connected" (s17)
        assert host["avis"].url in forgot["detail"]
        assert "--export FILE" in forgot["detail"]
