"""``vrm`` given odd but legal-looking input, as a person types it.

Before: an intentcast whose WHAT is longer than the protocol carries (500 characters, §5.4.1), or
with a ``--where``, ``--constraint`` or ``--member`` too long (or too many), was signed, sent to
every vendor (and published to the relays), refused by each with a bare ``invalid_field``, kept
in ``vrm intent list``, and ended with "No offers arrived before the deadline" and exit code 0.
A shared value over 4096 characters, or more than 64 fields, went out the same way and came
back as "the peer refused it (invalid_field)". Now each is a usage error (exit 2) naming the
option, and nothing is sent or kept.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, fails, new_home, ok, vendor_host, vrm


@pytest.fixture(scope="module")
def vendors() -> Iterator[VendorHost]:
    with vendor_host("outfitters") as h:
        yield h


@pytest.mark.parametrize(("args", "named"), [
    (["k" * 501], "WHAT"),
    (["kayak", "--where", "w" * 201], "--where"),
    (["kayak", "--constraint", "c" * 201], "--constraint"),
    (["kayak", *[a for i in range(33) for a in ("--member", f"club {i}")]], "--member"),
])  # fmt: skip
def test_an_intentcast_the_protocol_cannot_carry_is_a_usage_error(
    tmp_path: Path, vendors: VendorHost, args: list[str], named: str
) -> None:
    home = new_home(tmp_path)
    url = vendors["outfitters"].url
    fails(vrm("intent", "new", *args, "--vendor", url, "--no-discover", "--no-relays",
              "--deadline", "5s", home=home), 2, named)  # fmt: skip
    fails(vrm("relay", "intent", *args, "--relay", "ws://127.0.0.1:9", home=home), 2, named)
    assert json.loads(ok(vrm("intent", "list", "--json", home=home)).stdout)["intents"] == []


def test_a_share_the_protocol_cannot_carry_is_a_usage_error(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = new_home(tmp_path)
    ok(vrm("connect", vendors["outfitters"].url, home=home))
    fails(vrm("share", "Wasatch", "note=" + "n" * 4097, home=home), 2, "note", "4096")
    many = [f"f{i}=x" for i in range(65)]
    fails(vrm("share", "Wasatch", *many, home=home), 2, "64")
    fails(vrm("address", "set", *many, home=home), 2, "64")
    # at the limits, all goes
    ok(vrm("share", "Wasatch", "note=" + "n" * 4096, *many[:63], home=home))
    ok(vrm("intent", "new", "k" * 500, "--where", "w" * 200, "--vendor",
           vendors["outfitters"].url, "--no-discover", "--no-relays", "--deadline", "5s",
           home=home))  # fmt: skip


@pytest.mark.parametrize("url", ["ws://", "ws://a b", "ws://relay.example:99999", "wss://:443",
                                 "ws://x\x1b[2J", "http://relay.example"])  # fmt: skip
def test_a_relay_url_with_no_host_or_a_bad_port_is_not_kept(tmp_path: Path, url: str) -> None:
    """Before, ``vrm relay add ws://`` kept ``ws:`` (and ``ws://a b``, port 99999): every later
    ``vrm intent new`` tried it and, with no other relay up, asked no vendor at all."""
    home = new_home(tmp_path)
    fails(vrm("relay", "add", url, home=home), 2, "not a relay URL")
    assert json.loads(ok(vrm("relay", "list", "--json", home=home)).stdout) == {"relays": []}


def test_relays_all_down_says_how_to_ask_the_vendors_anyway(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = new_home(tmp_path)
    ok(vrm("relay", "add", "ws://127.0.0.1:9", home=home))
    # no relay reached, nothing kept: exit 4 (the s17 contract; it was 2, a usage error)
    fails(vrm("intent", "new", "kayak", "--vendor", vendors["outfitters"].url, "--no-discover",
              "--pow", "0", home=home), 4, "--no-relays", "vrm relay remove")  # fmt: skip
    ok(vrm("intent", "new", "kayak", "--vendor", vendors["outfitters"].url, "--no-discover",
           "--no-relays", "--deadline", "5s", home=home))  # fmt: skip


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_intentcast_no_vendor_received_is_not_done(tmp_path: Path,
                                                      vendors: VendorHost) -> None:  # fmt: skip
    """An intentcast every vendor refused or could not be reached for ended 'No offers arrived
    before the deadline' with exit 0, as if the vendors had seen it and had nothing to offer.
    It exited 1; since the s17 contract, none could be reached and nothing was kept: 4."""
    home = new_home(tmp_path)
    down = f"http://127.0.0.1:{_closed_port()}"
    cast = ["intent", "new", "kayak", "--no-discover", "--no-relays", "--deadline", "5s"]
    fails(vrm(*cast, "--vendor", down, home=home), 4, "no vendor received")
    r = vrm(*cast, "--vendor", down, "--json", home=home)
    assert r.code == 4, r
    assert json.loads(r.stdout)["offers"] == []  # the JSON is still written
    ok(vrm(*cast, "--vendor", down, "--vendor", vendors["outfitters"].url, home=home))
