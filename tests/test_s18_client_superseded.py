"""An address update goes to the relationship a vendor holds now, not to one it replaced
(§5.3.6-3, §11.10-3, §4.5-5; :meth:`vrmproto.client.Agent.superseded`).

After the person accepted a vendor's new key (a new relationship under it) or connected again
to a vendor that lost the relationship, the old one still reads "agreed" on our side, and
`vrm address set` sent there too: held under the old key (exit 5), or refused
``no_relationship`` — while the commands by vendor name already skipped it (s18-cli-day).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests._cli_helpers import new_home, ok, relationships, vendor_host, vrm
from tests.test_s17_cli_vendor_lost import URL, Acme
from vrmproto import Identity, PeerProblemError, fingerprint
from vrmproto.client import Agent
from vrmproto.store import MemoryStore


async def test_an_update_skips_a_relationship_the_vendor_said_it_lost() -> None:
    acme = Acme()
    async with await Agent.open(MemoryStore(), os.urandom(32), client=acme.transport) as agent:
        old = (await agent.connect(URL)).thread
        acme.loses_its_data()
        with pytest.raises(PeerProblemError, match="no_relationship"):
            await agent.request_data(old)
        new = (await agent.connect(URL)).thread
        report = await agent.update_address({"city": "Park City"})
        assert [(r.thread, r.status) for r in report.results] == [(new, "confirmed")]
        live = await agent.store.relationships_where(role="customer")
        assert await agent.superseded(live) == {old: new}


def test_vrm_address_set_after_accepting_a_vendors_new_key_goes_to_the_new_relationship(
    tmp_path: Path,
) -> None:
    home = new_home(tmp_path)
    with vendor_host("avis") as host:
        ok(vrm("connect", host["avis"].url, home=home))
        v = host["avis"]
        host.stop("avis")
        v.identity = Identity(os.urandom(32))  # back under a new key, with its data
        host.start("avis")
        new_fp = fingerprint(v.identity.public_key)
        ok(vrm("connect", host["avis"].url, "--accept-new-key", new_fp, home=home))
        new = next(r["thread"] for r in relationships(home) if r["vendor_fingerprint"] == new_fp)
        r = vrm("address", "set", "city=Park City", "--json", home=home)
        assert r.code == 0, r  # it was 5: the copy for the old relationship was held
        assert [(x["thread"], x["status"]) for x in r.json["results"]] == [(new, "confirmed")], r
        assert ok(vrm("outbox", "--json", home=home)).json["pending"] == []
