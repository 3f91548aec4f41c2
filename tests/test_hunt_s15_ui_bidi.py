"""``vrm ui`` shows what a vendor wrote, never lets it turn the page's text around (found by
s15-huntcli; §11.12-1, as the terminal does since the s12 hunt).

Before: a vendor whose signed discovery document named it ``"Acme \\u202eelif.exe"`` — any
vendor on the local network can announce one — was written into the relationships page and the
vendor's page as it was: the right-to-left override reversed what followed it ("Acme exe.file"),
the way "moc.knab" is made to read "bank.com". Its control characters went through too. Now
every value a page shows has bidirectional controls and control characters (but tab and line
breaks) written as their escapes (``\\u202e``), as ``vrm`` writes them in a terminal.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests._world import serving, ui_page
from vrmproto.cli import LocalVendor

NAME = "Acme \u202eelif.exe\u2066 \x07Co \U0001F469\u200d\U0001F467"


@pytest.fixture
async def vendor(tmp_path: Path) -> AsyncIterator[LocalVendor]:
    path = tmp_path / "bidi.toml"
    name = json.dumps(NAME, ensure_ascii=False)
    path.write_text(f'name = {name}\nseed = "{"cd" * 32}"\naccepts_terms = "all"\n')
    async with serving(path) as (v,):
        yield v


async def test_a_vendors_name_cannot_turn_the_page_around(vendor: LocalVendor) -> None:
    async with ui_page() as (ui, client):
        thread = (await ui.node.agent.connect(vendor.url)).thread
        for path in ("", f"r/{thread.hex()}"):
            html = await (await client.get(ui.guard.prefix + path)).text()
            assert "Acme \\u202eelif.exe\\u2066 \\x07Co" in html, path
            for hidden in ("\u202e", "\u2066", "\x07"):
                assert hidden not in html, (path, hidden)
            assert "\U0001F469\u200d\U0001F467" in html  # what is printable stays as it is
