"""``vrm connect NAME`` for a vendor found on the local network, when others claim the name (s21).

Before, the first endpoint heard whose instance name matched was taken and the browse stopped:
- another endpoint whose signed document claims the same name with another key — an impostor,
  or the real vendor renamed by mDNS because the impostor took its name first (RFC 6762 §9) —
  was never seen, and the agent opened a relationship with whichever answered first;
- an unverified lookalike ("hertz", a fingerprint that is not its key's) heard first made the
  command fail although the real "Hertz" answered too.
``vrm discover`` listed both claimants as verified, the impostor under its advertised name
only. Now the whole browse is heard: several keys claiming the name is refused (exit 2) with each
fingerprint, so the person compares them with one the vendor publishes and connects by URL
(§11.10-2, §13.2-7); of a verified endpoint and unverified lookalikes, the verified one is
taken; ``vrm discover`` says which keys share a name, and what a document calls an endpoint
advertised under another name. Run in a private network namespace (tests/test_discovery.py).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.test_discovery import _run_in_namespace
from vrmproto import Identity
from vrmproto._keys import fingerprint

SEEDS = {"avis": 1, "impostor": 2, "hertz": 3, "budget": 5}

_INSIDE = textwrap.dedent(
    """
    import asyncio, json, os, sys, tempfile
    from pathlib import Path
    from vrmproto import Identity
    from vrmproto.cli._home import Home, Settings
    from vrmproto.discovery import advertise
    from vrmproto.server import Endpoint, ReferencePolicy, serve
    from vrmproto.store import MemoryStore

    TERMS = ["vrm.no-tracking", "vrm.no-third-party", "vrm.delete-after", "vrm.return-on-request"]

    def who(n):
        return Identity(bytes([n]) * 32)

    # (signing seed, the name its document gives, advertised as, fingerprint advertised)
    VENDORS = [
        (1, "Avis Park City", "Avis Park City", 1),
        (2, "Avis Park City", "Avis PC", 2),      # claims Avis's name in its signed document
        (3, "Hertz", "Hertz", 3),
        (4, "Hertz", "hertz", 3),                 # a lookalike: Hertz's fingerprint, not its key
        (5, "Budget", "Budget", 5),
    ]

    sys.path.insert(0, os.getcwd())
    from tests._cli_helpers import cli_server

    async def vrm(forks, *args, columns="200"):
        home = Path(tempfile.mkdtemp()) / "you"
        Home(home).init(os.urandom(32), Settings(name="Doc"))
        env = {**os.environ, "VRM_HOME": str(home), "COLUMNS": columns}
        code, out, err = await asyncio.to_thread(
            forks.run, ["-m", "vrmproto.cli", *args], env=env, cwd=Path.cwd(), stdin="",
            timeout=60)
        return {"code": code, "out": out, "err": err}

    async def main():
        servers, ads = [], []
        for seed, doc_name, ad_name, fp_seed in VENDORS:
            policy = ReferencePolicy(accepts_terms=TERMS, name=doc_name)
            ep = Endpoint(who(seed), store=MemoryStore(), name=doc_name, policy=policy)
            servers.append(await serve(ep, "127.0.0.1", 0))
            ads.append(advertise(ad_name, servers[-1].port, who(fp_seed).public_key))
        # each advertisement probes for 1.5 s; meanwhile a fork server for `vrm` starts in
        # this namespace (a `vrm` forked from the test session's would browse outside it)
        forks, *_ = await asyncio.gather(asyncio.to_thread(cli_server, dict(os.environ)),
                                         *(ad.__aenter__() for ad in ads))
        runs = await asyncio.gather(
            *(vrm(forks, "connect", n, "--json") for n in ("Avis Park City", "Hertz", "Budget")),
            vrm(forks, "discover", "--timeout", "2", "--json"),
            vrm(forks, "discover", "--timeout", "2"),
            vrm(forks, "discover", "--timeout", "2", columns="80"))
        await asyncio.gather(*(ad.__aexit__(None, None, None) for ad in ads))
        for s in servers:
            await s.close()
        forks.close()
        print(json.dumps(runs))

    asyncio.run(main())
    """
)


def fp(name: str) -> str:
    return fingerprint(Identity(bytes([SEEDS[name]]) * 32).public_key)


def test_connect_by_a_name_others_claim_too(tmp_path: Path) -> None:
    avis, hertz, budget, listed, shown, narrow = _run_in_namespace(tmp_path, _INSIDE)
    # two keys claim "Avis Park City": refused, both fingerprints shown, nothing opened
    assert avis["code"] == 2, avis
    error = json.loads(avis["out"])["error"]
    assert error["kind"] == "ambiguous", avis
    assert fp("avis") in error["message"], avis
    assert fp("impostor") in error["message"], avis
    assert "vrm connect URL" in error["message"], avis
    # the verified Hertz, whatever its unverified lookalike did
    assert hertz["code"] == 0, hertz
    assert json.loads(hertz["out"])["vendor_fingerprint"] == fp("hertz"), hertz
    assert json.loads(hertz["out"])["status"] == "accepted", hertz
    # one vendor of that name: found, its key shown before the offer (§11.10-2), connected
    assert budget["code"] == 0, budget
    assert json.loads(budget["out"])["vendor_fingerprint"] == fp("budget"), budget
    assert f"key {fp('budget')}" in budget["err"], budget
    # `vrm discover` lists both Avis claimants as verified — and says another key goes by
    # the name; and what the document calls an endpoint advertised under another name
    assert listed["code"] == 0, listed
    rows = {r["name"]: r for r in json.loads(listed["out"])["found"]}
    assert rows["Avis Park City"]["rivals"] == [fp("impostor")], listed
    assert rows["Avis PC"]["rivals"] == [fp("avis")], listed
    assert rows["Budget"]["rivals"] == [], listed
    assert rows["Hertz"]["rivals"] == [], listed  # its lookalike is not verified
    assert shown["code"] == 0, shown
    assert shown["out"].count("another key goes by its name") == 2, shown["out"]
    assert "(its document: Avis Park City)" in shown["out"], shown["out"]
    # in an 80-column terminal, every fingerprint and address is shown whole: they are what
    # the person compares (before, "3nv4-hogl-3ft4-x…" and "http://127.0.0.1…")
    assert narrow["code"] == 0, narrow
    assert "…" not in narrow["out"], narrow["out"]
    for name in SEEDS:
        assert fp(name) in narrow["out"], narrow["out"]
    for r in rows.values():
        assert r["url"] in narrow["out"], narrow["out"]
