"""One exit-code contract for every ``vrm`` command (README "Exit codes", ``vrm --help``).

0 done, 1 refused or failed, 2 usage, 3 queued (goes by itself), 4 unreachable (nothing kept),
5 held (the vendor now has another key); with ``--json``, ``outcome`` names it.

Before: a message that could not be delivered now and stayed queued exited 0 from ``vrm share``,
``withdraw``, ``end``, ``rotate`` and ``connect`` but 1 from ``vrm data`` and ``vrm outbox run``;
a held message exited 1 like a refusal; ``vrm intent new`` with every
relay down exited 2 (usage), ``vrm relay answers`` 1. A script could not tell "do not send it
again" from "send it again later" from "a person must decide".

Each sending command runs here in each situation against the reference vendor of
``examples/vendors/outfitters.toml``: delivered; the vendor down (queued); the vendor back
without our relationship (refused, ``no_relationship``); the vendor back under another key
(held); and a usage error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, fails, new_home, ok, vendor_host, vrm
from tests._ports import closed_port
from vrmproto import Identity
from vrmproto.store import MemoryStore

WASATCH = "Wasatch Outfitters"

#: Each sending command, as a person types it once related to Wasatch Outfitters.
SENDS: dict[str, list[str]] = {
    "share": ["share", WASATCH, "email=doc@example.org"],
    "withdraw": ["withdraw", WASATCH],
    "data": ["data", WASATCH],
    "end": ["end", WASATCH, "--keep-data"],  # its share stays with it (§5.6.4-2)
    "rotate": ["rotate", WASATCH],
    "address": ["address", "set", "city=Park City"],
}


def delivered(host: VendorHost) -> None:
    """The vendor as it was."""


def down(host: VendorHost) -> None:
    host.stop("outfitters")


def lost_its_data(host: VendorHost) -> None:
    """Back from an empty store: it answers ``no_relationship`` (§4.5-5), a signed refusal."""
    host.stop("outfitters")
    host["outfitters"].store = MemoryStore()
    host.start("outfitters")


def rekeyed(host: VendorHost) -> None:
    """Back under another key: what is sent to it is held until the person decides (§11.10-1)."""
    host.stop("outfitters")
    host["outfitters"].identity = Identity(os.urandom(32))
    host.start("outfitters")


SITUATIONS: dict[str, tuple[Callable[[VendorHost], None], int, str]] = {
    "delivered": (delivered, 0, "done"),
    "queued": (down, 3, "queued"),
    "refused": (lost_its_data, 1, "failed"),
    "held": (rekeyed, 5, "held"),
}


@pytest.fixture
def host() -> Iterator[VendorHost]:
    with vendor_host("outfitters") as h:
        yield h


def related(tmp_path: Path, host: VendorHost) -> Path:
    """A person with an agreement with Wasatch Outfitters and a live share."""
    home = new_home(tmp_path)
    ok(vrm("connect", host["outfitters"].url, home=home))
    ok(vrm("share", WASATCH, "phone=+1 801 555 0142", home=home))
    return home


@pytest.mark.parametrize("situation", list(SITUATIONS))
@pytest.mark.parametrize("command", list(SENDS))
def test_every_sending_command_ends_with_the_code_of_what_became_of_it(
    tmp_path: Path, host: VendorHost, command: str, situation: str
) -> None:
    home = related(tmp_path, host)
    make, code, outcome = SITUATIONS[situation]
    make(host)
    r = vrm(*SENDS[command], "--json", home=home)
    if code == 0:
        ok(r)
    else:
        fails(r, code)
    assert r.json["outcome"] == outcome, r


@pytest.mark.parametrize("command", list(SENDS))
def test_a_usage_error_is_2_and_sends_nothing(tmp_path: Path, host: VendorHost,
                                              command: str) -> None:  # fmt: skip
    home = related(tmp_path, host)
    fails(vrm(*SENDS[command], "--timeout", "0", home=home), 2, "--timeout")
    assert ok(vrm("outbox", "--json", home=home)).json["pending"] == []


def test_what_the_relationship_does_not_allow_is_1_not_a_usage_error(
    tmp_path: Path, host: VendorHost
) -> None:
    """Nothing live to withdraw said 2, as if the command were mistyped; no agreement says 1."""
    home = related(tmp_path, host)
    ok(vrm("withdraw", WASATCH, home=home))
    r = fails(vrm("withdraw", WASATCH, "--json", home=home), 1, "nothing to withdraw")
    assert (r.json["outcome"], r.json["error"]["kind"]) == ("failed", "nothing_shared")
    fails(vrm("withdraw", WASATCH, "--share", "abcd", home=home), 2, "abcd")  # mistyped: 2


def test_the_person_reads_the_same_code_and_one_sentence(tmp_path: Path,
                                                         host: VendorHost) -> None:  # fmt: skip
    """Without --json: queued says not to send it again; held, that a person decides;
    refused, the vendor's code."""
    home = related(tmp_path, host)
    down(host)
    r = fails(vrm("share", WASATCH, "email=doc@example.org", home=home), 3, "waits in the outbox",
              "do not send it again")  # fmt: skip
    assert "⏸ queued" in r.stdout
    host.start("outfitters")
    rekeyed(host)
    r = fails(vrm("end", WASATCH, "--keep-data", home=home), 5, "another key", "held")
    assert "⏸ held" in r.stdout


def test_a_refused_share_names_the_vendors_code_and_keeps_nothing(
    tmp_path: Path, host: VendorHost
) -> None:
    home = related(tmp_path, host)
    lost_its_data(host)
    fails(vrm("share", WASATCH, "email=doc@example.org", home=home), 1, "refused",
          "no_relationship")  # fmt: skip
    assert ok(vrm("outbox", "--json", home=home)).json["pending"] == []


# -- connect -----------------------------------------------------------------------------------


def test_connect_codes(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    with vendor_host("outfitters", "hertz") as h:
        r = ok(vrm("connect", h["outfitters"].url, "--json", home=home))
        assert r.json["outcome"] == "done"
        r = fails(vrm("connect", h["hertz"].url, "--json", home=home), 1, "rejected")
        assert r.json["outcome"] == "failed"
        fails(vrm("connect", "ftp://127.0.0.1:1", home=home), 2, "not an http")
        # first contact with a vendor that is down: nothing kept, so run it again later
        r = fails(vrm("connect", f"http://127.0.0.1:{closed_port()}", "--json", home=home), 4,
                  "could not reach")  # fmt: skip
        assert r.json["outcome"] == "unreachable"
        assert ok(vrm("outbox", "--json", home=home)).json["pending"] == []
        # a vendor we know, now under another key: a person decides (--accept-new-key)
        rekeyed(h)
        r = fails(vrm("connect", WASATCH, "--json", home=home), 5, "--accept-new-key")
        assert r.json["outcome"] == "held"
        assert r.json["error"]["kind"] == "key_changed"


def test_a_queued_connect_is_3(tmp_path: Path) -> None:
    """The vendor's document is read, its inbox answers 503 until the time runs out: the offer
    waits in the outbox."""
    from test_client import FakeVendor  # noqa: PLC0415

    home = new_home(tmp_path)
    h = VendorHost()
    v = FakeVendor("Acme")
    try:
        h.call(v.start())
        v.fail_next = [(503, {})] * 10
        r = fails(vrm("connect", v.url, "--json", "--timeout", "2", home=home), 3,
                  "waits in the outbox")  # fmt: skip
        assert (r.json["status"], r.json["outcome"], r.json["held"]) == ("queued", "queued",
                                                                         False)  # fmt: skip
        assert [p["type"] for p in ok(vrm("outbox", "--json", home=home)).json["pending"]] \
            == ["terms.offer"]
    finally:
        h.call(v.stop())
        h.close()


# -- several at once: the outbox, an intentcast ------------------------------------------------


@pytest.mark.parametrize("situation", ["delivered", "queued", "refused", "held"])
def test_outbox_run_ends_with_what_is_left(tmp_path: Path, host: VendorHost,
                                           situation: str) -> None:  # fmt: skip
    home = related(tmp_path, host)
    down(host)
    fails(vrm("share", WASATCH, "email=doc@example.org", home=home), 3)
    make, code, outcome = SITUATIONS[situation]
    if situation != "queued":
        host.start("outfitters")
        make(host)
    r = vrm("outbox", "run", "--json", home=home)
    if code == 0:
        ok(r)
    else:
        fails(r, code)
    assert r.json["outcome"] == outcome, r


def test_outbox_run_with_only_held_messages_is_5_not_0(tmp_path: Path, host: VendorHost) -> None:
    home = related(tmp_path, host)
    rekeyed(host)
    fails(vrm("share", WASATCH, "email=doc@example.org", home=home), 5)
    r = fails(vrm("outbox", "run", "--json", home=home), 5, "held")
    assert r.json["waiting"] == 1


def test_an_intentcast_no_vendor_could_be_reached_is_4(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    cast = ["intent", "new", "kayak", "--no-discover", "--no-relays", "--deadline", "2s",
            "--vendor", f"http://127.0.0.1:{closed_port()}", "--json"]  # fmt: skip
    r = fails(vrm(*cast, home=home), 4, "no vendor received")
    assert r.json["outcome"] == "unreachable"


def test_relays_all_down_is_4_for_every_command(tmp_path: Path) -> None:
    """``vrm intent new`` said 2 (usage), ``vrm relay answers`` and ``vrm relay intent`` 1."""
    home = new_home(tmp_path)
    relay = f"ws://127.0.0.1:{closed_port()}"
    ok(vrm("relay", "add", relay, home=home))
    fails(vrm("intent", "new", "kayak", "--vendor", f"http://127.0.0.1:{closed_port()}",
              "--no-discover", "--pow", "0", home=home), 4, "no relay could be reached")
    fails(vrm("relay", "answers", home=home), 4, "no relay could be reached")
    r = fails(vrm("relay", "intent", "kayak", "--pow", "0", "--json", home=home), 4,
              "no relay could be reached")  # fmt: skip
    assert r.json["outcome"] == "unreachable"


def test_help_states_the_contract() -> None:
    text = " ".join(ok(vrm("--help", home=None)).stdout.split())
    for line in ("0 done", "1 failed", "2 usage", "3 queued", "4 unreachable", "5 held"):
        assert line in text, text


def test_json_names_the_outcome_its_exit_code_says(tmp_path: Path, host: VendorHost) -> None:
    """Commands that printed their JSON and then failed: the JSON said nothing of it
    (``vrm doctor``, ``vrm history --compare``), or "done" beside exit 1 (``vrm intent
    accept`` of an offer from a vendor already related: not taken up)."""
    home = related(tmp_path, host)
    cast = ok(vrm("intent", "new", "ski rental", "--no-discover", "--no-relays", "--deadline",
                  "3s", "--json", home=home)).json  # fmt: skip
    (offer,) = cast["offers"]
    r = fails(vrm("intent", "accept", offer["id"], "--json", home=home), 1, "not taken up")
    assert r.json["outcome"] == "failed"
    assert ok(vrm("history", WASATCH, "--compare", "--json", home=home)).json["outcome"] \
        == "done"
    assert ok(vrm("doctor", "--json", home=home)).json["outcome"] == "done"
    rekeyed(host)
    r = fails(vrm("doctor", "--json", home=home), 1, "need you")
    assert r.json["outcome"] == "failed"
