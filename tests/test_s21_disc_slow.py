"""An endpoint whose discovery document does not come before the browse ends is listed, with
that reason (s21).

Before: :func:`~vrmproto.discovery.browse` dropped it: a vendor whose server accepted the
connection and answered slowly (or a tarpit) was missing from ``vrm discover``, and ``vrm
connect NAME`` said the name was "not a URL, a vendor you know, or a vendor on the local
network" although it had been heard. Run in a private network namespace (tests/test_discovery.py).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.test_discovery import _run_in_namespace

_INSIDE = textwrap.dedent(
    """
    import asyncio, json, socket
    from vrmproto import Identity
    from vrmproto.discovery import advertise, browse

    async def main():
        silent = socket.socket()  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        key = Identity(bytes(range(32))).public_key
        async with advertise("Slow Shop", silent.getsockname()[1], key):
            found = await browse(1.5)
        silent.close()
        print(json.dumps([{"name": f.name, "verified": f.verified, "problem": f.problem}
                          for f in found]))

    asyncio.run(main())
    """
)


def test_a_vendor_whose_document_is_slow_is_listed_with_the_reason(tmp_path: Path) -> None:
    found = _run_in_namespace(tmp_path, _INSIDE)
    assert [f["name"] for f in found] == ["Slow Shop"], found
    assert found[0]["verified"] is False
    assert "did not come" in found[0]["problem"], found
