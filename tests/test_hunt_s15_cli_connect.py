"""``vrm connect`` with a note the offer cannot carry (found by s15-huntcli).

Before: ``vrm connect URL --note ""`` or a note over 1000 characters (§5.2.1: a terms offer's
note is 1..1000 characters) was signed and sent; the vendor refused it ("the peer refused it
(invalid_field): must not be empty", exit 1), and a relationship in state ``none`` stayed in
``vrm relationships`` for good beside the one a later connect opened. Now it is a usage error
(exit 2) naming ``--note``, and nothing is signed, stored or sent.

``vrm connect --timeout S`` to a vendor that accepts the connection and never answers waited
twice S (the discovery request is tried once more after a timeout) before "it did not answer
in time"; now S bounds the wait for the vendor's document, retries included.

The library did the same (``Agent.connect(note=…)`` signed an offer every vendor refuses and
kept its thread); it now checks what the person gave first (``vrmproto._fields.check_fields``).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, fails, hosted, new_home, ok, relationships, vrm
from vrmproto import MasterSeed, ValidationError
from vrmproto.client import Agent
from vrmproto.store import MemoryStore

vendors = hosted("outfitters")


@pytest.mark.parametrize(("note", "says"), [("", "must not be empty"),
                                            ("é" * 1001, "at most 1000 characters")])
def test_a_note_the_offer_cannot_carry_is_a_usage_error(
    tmp_path: Path, vendors: VendorHost, note: str, says: str
) -> None:
    home = new_home(tmp_path)
    url = vendors["outfitters"].url
    fails(vrm("connect", url, "--note", note, home=home), 2, "--note", says)
    assert relationships(home) == []
    ok(vrm("connect", url, "--note", "é" * 1000, home=home))  # the longest the offer carries
    rels = relationships(home)
    assert [(r["vendor"], r["state"]) for r in rels] == [("Wasatch Outfitters", "agreed")]


async def test_the_library_refuses_an_offer_note_it_cannot_carry(vendors: VendorHost) -> None:
    url = vendors["outfitters"].url
    async with await Agent.open(MemoryStore(), MasterSeed(os.urandom(32))) as agent:
        with pytest.raises(ValidationError, match="1000"):
            await agent.connect(url, note="n" * 1001)
        assert await agent.relationships() == []  # no thread kept, nothing sent
        assert await agent.relationships() == []


def test_timeout_bounds_the_wait_for_a_vendor_that_never_answers(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    with socket.socket() as silent:  # the kernel accepts connections; nobody reads them
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        # nothing kept: exit 4, run it again later (the s17 contract; it was 1)
        fails(vrm("connect", f"http://127.0.0.1:{port}", "--timeout", "2", home=home), 4,
              "did not answer in time")  # fmt: skip
        took = time.monotonic() - started
    assert 2 <= took < 9, took  # 2 s, and the command's start; it was 20 s and more
    assert relationships(home) == []
