"""Rough edges of `vrm` left by session 18, each with the test that shows it (session 19)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests._cli_helpers import fails, new_home, ok, vendor_host, vrm
from tests._vendor_proc import VENDOR_SEED
from vrmproto.store import SQLiteStore


def test_relationships_says_a_share_not_delivered_yet(tmp_path: Path) -> None:
    """`vrm relationships` listed a share still waiting in the outbox under "shared", as if the
    vendor had it: the share is in our relationship from the moment it is signed (§8.1-2), but
    the vendor holds it only once it confirms it."""
    home = new_home(tmp_path)
    with vendor_host("outfitters") as host:
        ok(vrm("connect", host["outfitters"].url, home=home))
        host.stop("outfitters")
        fails(vrm("share", "Wasatch", "email=doc@example.org", home=home), 3)
        (row,) = ok(vrm("relationships", "--json", home=home)).json["relationships"]
        (share,) = row["shares"]
        assert (share["fields"], share["delivered"]) == (["email"], False)
        text = " ".join(ok(vrm("relationships", home=home)).stdout.split())
        assert "not delivered yet" in text, text
        host.start("outfitters")
        ok(vrm("outbox", "run", home=home))
        (row,) = ok(vrm("relationships", "--json", home=home)).json["relationships"]
        assert [s["delivered"] for s in row["shares"]] == [True]
        text = " ".join(ok(vrm("relationships", home=home)).stdout.split())
        assert "email (until" in text, text
        assert "not delivered" not in text, text


def test_address_set_on_a_pipe_names_each_vendor_once(tmp_path: Path) -> None:
    """Off a terminal, `vrm address set` printed a line per vendor as each answered, then the
    table of the same vendors and outcomes: every vendor twice. The lines stay (a pipe still
    sees progress); the table is for a terminal, where the live view gives way to it."""
    home = new_home(tmp_path)
    with vendor_host("outfitters", "lodge") as host:
        for key in ("outfitters", "lodge"):
            ok(vrm("connect", host[key].url, home=home))
        host.stop("outfitters")
        r = fails(vrm("address", "set", "city=Park City", home=home), 3)
    for name in ("Silver Star Lodge", "Wasatch Outfitters"):
        assert r.stdout.count(name) == 1, r
    assert "1 confirmed, 1 queued, 0 refused, 0 failed" in r.stdout, r


def _vendor_files(tmp_path: Path) -> list[str]:
    """`vrm vendor events` arguments for a vendor file and a data directory with a store."""
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\n')
    data = tmp_path / "data"
    data.mkdir(mode=0o700)

    async def make() -> None:
        async with await SQLiteStore.open(data / "vendor.db"):
            pass

    asyncio.run(make())
    return ["vendor", "events", "--config", str(config), "--data-dir", str(data)]


def test_vendor_events_dead_with_none_says_so(tmp_path: Path) -> None:
    """`vrm vendor events --dead` with no dead letters printed nothing: an operator could not
    tell "none" from a command that did not look. JSON lines stay none."""
    args = _vendor_files(tmp_path)
    said = ok(vrm(*args, "--dead", home=tmp_path)).stdout
    assert said.startswith("No dead letters"), said
    assert ok(vrm(*args, "--dead", "--json", home=tmp_path)).stdout == ""


def test_commands_that_read_no_data_directory_do_not_offer_one() -> None:
    """`vrm verify --help` listed `--data-dir` though it needs no data directory (its own help
    says so); so did `vrm terms list` (the roster, built in) and `vrm discover` (the network)."""
    for command in (["verify"], ["terms", "list"], ["discover"]):
        text = ok(vrm(*command, "--help", home=None)).stdout
        assert "--json" in text, text
        assert "--data-dir" not in text, text
    assert "--data-dir" in ok(vrm("history", "--help", home=None)).stdout  # one that does
