"""The examples run and come out as their scenarios say; ``vrm demo`` passes end to end."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests._cli_helpers import EXAMPLES, ROOT, VENDOR_FILES, cli_env, vrm_command
from vrmproto.cli import parse_vendor_config
from vrmproto.cli._demo_vendors import DEMO_VENDORS


@pytest.fixture
def examples() -> Iterator[None]:
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLES))


def example(name: str) -> ModuleType:
    return importlib.import_module(name)


def test_vendor_files_are_the_demo_vendors() -> None:
    """`vrm demo` carries the same vendors as examples/vendors, byte for byte."""
    files = {p.stem: p.read_text() for p in VENDOR_FILES.glob("*.toml")}
    assert files == DEMO_VENDORS
    for name, text in files.items():
        config = parse_vendor_config(tomllib.loads(text), source=name)
        assert config.seed is not None
        assert config.catalogue


@pytest.mark.usefixtures("examples")
def test_car_rental_intentcast() -> None:
    out: Any = example("car_rental_intentcast").main()
    assert [vendor for vendor, _ in out.offers] == ["Avis Park City", "Budget Salt Lake",
                                                   "Hertz Wasatch"]
    assert out.offers[0] == ("Avis Park City", "289.00 USD")
    assert out.declined == ["Wasatch Outfitters"]
    assert out.taken == "Avis Park City"
    assert out.status == "accepted"
    assert out.agreed_terms == ["vrm.no-tracking", "vrm.no-third-party", "vrm.delete-after",
                                "vrm.return-on-request"]


@pytest.mark.usefixtures("examples")
def test_dont_track_me() -> None:
    out: Any = example("dont_track_me").main()
    assert out.answers == {"Wasatch Outfitters": "accepted", "Budget Salt Lake": "countered",
                           "Hertz Wasatch": "rejected"}
    assert out.final == {"Wasatch Outfitters": "accepted", "Budget Salt Lake": "accepted",
                         "Hertz Wasatch": "rejected"}
    assert out.rejection_kept is True
    assert out.returned == {"email": "provided", "phone": "provided", "boot_size": "observed"}
    assert out.erased_shares == 1
    assert out.left_after_withdraw == ["boot_size"]


@pytest.mark.usefixtures("examples")
def test_change_of_address() -> None:
    out: Any = example("change_of_address").main()
    assert sorted(out.at_once.values()) == ["confirmed"] * 4 + ["queued"]
    assert out.at_once["Silver Star Lodge"] == "queued"
    assert out.after_outbox == ["confirmed"]
    assert out.waiting == 0
    assert out.lodge_street == "1 Main Street"
    assert len(out.histories_equal) == 5
    assert all(out.histories_equal.values())


def test_examples_run_as_scripts() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "car_rental_intentcast.py")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=cli_env(None), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Avis Park City's offer" in proc.stdout


def test_vrm_demo_passes() -> None:
    proc = subprocess.run([*vrm_command(), "demo"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=cli_env(None), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for line in ("✓ 1. The Park City intentcast", "✓ 2. “Don't track me”, as a dialog",
                 "✓ 3. Change of address, everywhere at once"):
        assert line in proc.stdout
    report = subprocess.run([*vrm_command(), "demo", "--json"], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env=cli_env(None), check=False)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["ok"] is True
    assert [s["ok"] for s in data["scenarios"]] == [True, True, True]
