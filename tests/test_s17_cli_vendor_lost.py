"""``vrm relationships`` says when a vendor no longer holds the relationship (§4.5-5).

Before: a vendor that lost its data (or went back to an older backup) answers
``no_relationship`` to what we send, and our side still read "agreed" in ``vrm relationships``
and its ``--json``; only ``vrm doctor`` said so. What we send there will not be taken: the
person learnt it by a refusal on each try. The vendor's answer is already kept as the
relationship's ``last_problem``: no store change was needed.

And there was no way out: ``vrm connect URL`` (which ``vrm doctor`` advised) answered "already
connected ✓ accepted" with the relationship the vendor no longer holds, and ``vrm end`` was
refused ``no_relationship``. ``Agent.connect`` now opens a new relationship beside it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, fails, new_home, ok, vendor_host, vrm
from vrmproto import Identity, PeerProblemError
from vrmproto.cli._common import lost_by_vendor
from vrmproto.client import DEFAULT_TERMS, Agent
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport

URL = "http://acme.test"

WASATCH = "Wasatch Outfitters"


@pytest.fixture
def host() -> Iterator[VendorHost]:
    with vendor_host("outfitters") as h:
        yield h


def row(home: Path) -> dict[str, object]:
    (only,) = ok(vrm("relationships", "--json", home=home)).json["relationships"]
    assert isinstance(only, dict)
    return only


def test_a_vendor_that_lost_the_relationship_is_shown_so(tmp_path: Path,
                                                         host: VendorHost) -> None:  # fmt: skip
    home = new_home(tmp_path)
    url = host["outfitters"].url
    ok(vrm("connect", url, home=home))
    assert row(home)["lost_by_vendor"] is False
    host.stop("outfitters")
    host["outfitters"].store = MemoryStore()  # back with its key, without its data
    host.start("outfitters")
    fails(vrm("share", WASATCH, "email=doc@example.org", home=home), 1, "no_relationship")

    lost = row(home)
    assert (lost["state"], lost["lost_by_vendor"]) == ("agreed", True)
    text = " ".join(ok(vrm("relationships", home=home)).stdout.split())
    assert "lost by the vendor" in text, text
    assert "holds no such relationship" in text, text
    assert f"`vrm connect {url}` opens a new one" in text, text  # what the person can do

    # `vrm connect` said "already connected … ✓ accepted", exit 0, and nothing the person could
    # do opened a relationship the vendor holds (`vrm end` is refused no_relationship too)
    again = ok(vrm("connect", url, "--json", home=home)).json
    assert (again["status"], again["existing"]) == ("accepted", False)
    r = ok(vrm("share", WASATCH, "email=doc@example.org", "--json", home=home))  # the new one
    assert r.json["outcome"] == "done"
    rows = ok(vrm("relationships", "--json", home=home)).json["relationships"]
    assert sorted((x["thread"] == again["thread"], x["lost_by_vendor"]) for x in rows) == [
        (False, True), (True, False)]
    # connecting again is the new relationship, not a third one
    assert ok(vrm("connect", url, "--json", home=home)).json["existing"] is True


class Acme:
    """The vendor at :data:`URL`, in memory, under one key, which can lose its data (a vendor
    that went back to a backup older than the relationship, §4.5-5) and have it back."""

    def __init__(self) -> None:
        self.seed = os.urandom(32)
        self.key = Identity(self.seed).public_key
        self.transport = MemoryTransport()
        self.kept = self._endpoint()
        self.transport.add(URL, self.kept)

    def _endpoint(self) -> Endpoint:
        policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
        return Endpoint(Identity(self.seed), store=MemoryStore(), policy=policy, name="Acme")

    def loses_its_data(self) -> None:
        self.transport.add(URL, self._endpoint())

    def has_it_back(self) -> None:
        self.transport.add(URL, self.kept)


async def test_agent_connect_opens_a_new_relationship_beside_one_the_vendor_lost() -> None:
    """The library's side (``Agent.connect``), in memory."""
    acme = Acme()
    async with await Agent.open(MemoryStore(), os.urandom(32), client=acme.transport) as agent:
        old = (await agent.connect(URL)).thread
        assert (await agent.connect(URL)).existing  # one live relationship per vendor
        acme.loses_its_data()
        with pytest.raises(PeerProblemError, match="no_relationship"):
            await agent.request_data(old)
        new = await agent.connect(URL)
        assert (new.status, new.existing) == ("accepted", False)
        assert new.thread != old
        assert await agent.live_thread(acme.key) == new.thread
        assert (await agent.connect(URL)).thread == new.thread


async def test_the_new_relationship_is_the_live_one_even_within_the_same_millisecond() -> None:
    """Both relationships are live on our side; the one the vendor holds is the live one, not
    the newer by ``updated_ms`` — within one millisecond (a frozen clock here) the lost one won
    whenever its thread id sorted first (first CI run of session 17's last tree, 1 in 2 here)."""
    now = time.time_ns() // 1_000_000
    for _ in range(8):
        acme = Acme()
        async with await Agent.open(MemoryStore(), os.urandom(32), client=acme.transport,
                                    clock=lambda: now) as agent:  # fmt: skip
            old = (await agent.connect(URL)).thread
            acme.loses_its_data()
            with pytest.raises(PeerProblemError, match="no_relationship"):
                await agent.request_data(old)
            new = (await agent.connect(URL)).thread
            assert await agent.live_thread(acme.key) == new
            assert (await agent.connect(URL)).thread == new


async def test_a_vendor_that_answers_again_is_no_longer_lost() -> None:
    """The vendor restored its backup: once it confirms a delivery, its last answer is no longer
    no_relationship, so the relationship is not shown lost and connect answers it, instead of
    opening a second relationship beside a live one (the thread kept that answer as its
    ``last_problem`` for good)."""
    acme = Acme()
    async with await Agent.open(MemoryStore(), os.urandom(32), client=acme.transport) as agent:
        thread = (await agent.connect(URL)).thread
        acme.loses_its_data()
        with pytest.raises(PeerProblemError, match="no_relationship"):
            await agent.request_data(thread)
        (view,) = await agent.relationships()
        assert lost_by_vendor(view)
        acme.has_it_back()
        await agent.request_data(thread)
        (view,) = await agent.relationships()
        assert not lost_by_vendor(view)
        again = await agent.connect(URL)
        assert (again.thread, again.existing) == (thread, True)
