"""``vrm share --expires DATE`` names that very moment (§5.3.1 ``expires``).

Before: the date was turned into a duration when the command line was read and added to the
agent's clock once the store was open, so ``--expires 2030-01-01`` told the vendor to delete
the data some milliseconds after midnight (11 ms on a laptop, more on a slow disk) — the
``--json`` answer and ``vrm relationships`` said so too.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from tests._cli_helpers import VendorHost, new_home, ok, vendor_host, vrm
from vrmproto.cli._parse import parse_date, parse_until


@pytest.fixture(scope="module")
def host() -> object:
    with vendor_host("outfitters") as h:
        yield h


@pytest.mark.parametrize("when", ["2030-01-01", "2030-06-15T12:30:00Z"])
def test_a_share_until_a_date_ends_at_that_moment(tmp_path: Path, host: VendorHost,
                                                   when: str) -> None:  # fmt: skip
    home = new_home(tmp_path)
    ok(vrm("connect", host["outfitters"].url, home=home))
    shared = ok(vrm("--json", "share", "Wasatch Outfitters", "email=doc@example.org",
                    "--expires", when, home=home)).json  # fmt: skip
    assert shared["status"] == "confirmed"
    assert shared["expires"] == parse_date(when)
    listed = ok(vrm("relationships", "--json", home=home)).json["relationships"][0]["shares"]
    assert [s["expires"] for s in listed] == [parse_date(when)]


def test_until_a_date_or_for_a_while() -> None:
    now = 1_800_000_000_123
    assert parse_until("2030-01-01", now) == parse_date("2030-01-01")
    assert parse_until("2030-01-01", now + 5_000) == parse_date("2030-01-01")
    assert parse_until("30d", now, default_unit="d") == now + 30 * 86_400_000
    assert parse_until("7", now, default_unit="d") == now + 7 * 86_400_000
    with pytest.raises(click.BadParameter, match="not in the future"):
        parse_until("2020-01-01", now)
