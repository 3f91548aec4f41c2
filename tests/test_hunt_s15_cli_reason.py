"""``vrm withdraw --reason`` and ``vrm end --reason`` the message cannot carry (found by
s15-huntcli).

Before: a reason over 1000 characters, or an empty one (§5.3.2, §5.6.4: 1..1000 characters),
was signed and sent; the vendor refused it ("the peer refused it (invalid_field): at most 1000
characters", exit 1). The page's "End the relationship" did the same with a long reason. Now
each is a usage error naming ``--reason`` (on the page: "the reason: …"), and nothing is
signed, stored or sent. The library checks them too (``Agent.end``, ``Agent.withdraw``,
``vrmproto._fields.check_fields``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests._cli_helpers import (
    VendorHost,
    connected,
    fails,
    history_length,
    hosted,
    ok,
    relationships,
    vrm,
)
from tests._world import post, serving, ui_page
from vrmproto.store import MemoryStore

vendors = hosted("outfitters")


def test_a_reason_the_message_cannot_carry_is_a_usage_error(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = connected(tmp_path, vendors["outfitters"].url)
    ok(vrm("share", "Wasatch", "email=doc@example.org", home=home))
    before = history_length("Wasatch", home)
    for command in ("withdraw", "end"):
        fails(vrm(command, "Wasatch", "--reason", "r" * 1001, home=home), 2, "--reason",
              "at most 1000 characters")  # fmt: skip
        fails(vrm(command, "Wasatch", "--reason", "", home=home), 2, "--reason",
              "must not be empty")  # fmt: skip
    assert history_length("Wasatch", home) == before
    (rel,) = relationships(home)
    assert (rel["state"], rel["last_problem"], len(rel["shares"])) == ("agreed", "", 1)
    ok(vrm("end", "Wasatch", "--reason", "é" * 1000, "--keep-data", home=home))


async def test_the_page_refuses_an_end_reason_it_cannot_send() -> None:
    async with serving("outfitters") as (vendor,), ui_page() as (ui, client):
        thread = (await ui.node.agent.connect(vendor.url)).thread
        html = await post(ui, client, f"r/{thread.hex()}/end",
                          {"sure": "yes", "reason": "r" * 1001})  # fmt: skip
        assert "the reason: at most 1000 characters" in html
        (view,) = await ui.node.agent.relationships()
        assert (view.state, view.last_problem) == ("agreed", "")


async def test_the_library_refuses_a_reason_it_cannot_send(vendors: VendorHost) -> None:
    from vrmproto import MasterSeed, ValidationError  # noqa: PLC0415
    from vrmproto.client import Agent  # noqa: PLC0415

    async with await Agent.open(MemoryStore(), MasterSeed(os.urandom(32))) as agent:
        thread = (await agent.connect(vendors["outfitters"].url)).thread
        with pytest.raises(ValidationError, match="1000"):
            await agent.end(thread, "r" * 1001)
        with pytest.raises(ValidationError, match="empty"):
            await agent.withdraw(thread, reason="")
        assert await agent.pending() == []  # nothing signed or kept
        assert (await agent.relationships())[0].state == "agreed"
