"""An endpoint that withdraws its advertisement during a browse is not reported (s21).

Before: :func:`~vrmproto.discovery.browse` ignored ``Removed``: a vendor that stopped serving
and said goodbye (§13.2-1: it MUST withdraw its records) while ``vrm discover`` listened was
still listed — verified — and ``vrm connect NAME`` could pick it. Run in a private network
namespace (tests/test_discovery.py).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.test_discovery import _run_in_namespace

_INSIDE = textwrap.dedent(
    """
    import asyncio, json
    from vrmproto import Identity
    from vrmproto.discovery import advertise, browse
    from vrmproto.server import Endpoint, ReferencePolicy, serve
    from vrmproto.store import MemoryStore

    async def main():
        servers, ads = [], []
        for i, name in enumerate(("Stays", "Leaves")):
            who = Identity(bytes([i + 1]) * 32)
            ep = Endpoint(who, store=MemoryStore(), name=name, policy=ReferencePolicy())
            servers.append(await serve(ep, "127.0.0.1", 0))
            ads.append(advertise(name, servers[-1].port, who.public_key))
        await asyncio.gather(*(ad.__aenter__() for ad in ads))  # each probes for 1.5 s
        both_seen = asyncio.Event()
        seen = []

        def stop_when(found):
            names = {f.name for f in found}
            seen.append(sorted(names))
            if {"Stays", "Leaves"} <= names:
                both_seen.set()
            return both_seen.is_set() and names == {"Stays"}

        async def leave():
            await both_seen.wait()
            await ads[1].__aexit__(None, None, None)  # a goodbye: TTL 0 (RFC 6762 §10.1)

        leaving = asyncio.ensure_future(leave())
        found = await browse(8.0, stop_when=stop_when)
        await leaving
        await ads[0].__aexit__(None, None, None)
        for s in servers:
            await s.close()
        print(json.dumps({"found": [f.name for f in found], "both_seen": both_seen.is_set()}))

    asyncio.run(main())
    """
)


def test_a_vendor_that_says_goodbye_is_no_longer_listed(tmp_path: Path) -> None:
    result = _run_in_namespace(tmp_path, _INSIDE)
    assert result["both_seen"] is True
    assert result["found"] == ["Stays"]
