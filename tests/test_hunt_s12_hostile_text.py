"""What a vendor writes is shown, never interpreted, by ``vrm`` (§11.12-1).

rich reads ``[…]`` as markup, and neither rich nor click touches control characters. Before:
a vendor whose name held ``[/]`` — any vendor on the local network can announce one, and
``Acme [/] Co`` is a valid name in a signed discovery document — stopped ``vrm connect`` after
the relationship was made (exit 1, ``MarkupError``) and ``vrm relationships``, ``vrm history``
and ``vrm data`` for as long as the relationship existed; ``[link=…]`` turned its words into a
hyperlink; and ``ESC`` sequences in a name, an offer or a returned record reached the
person's terminal as they were (retitling it, recolouring what followed, or worse).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, new_home, ok, vrm
from vrmproto.cli import LocalVendor, load_vendor_config

NAME = "Acme [/] \x1b]0;pwned\x07\x1b[31m[link=http://evil.example]Co[/link]"
WORDS = "[/bold] Ski \x1b[2J rental"
TOML = f"""
name = {json.dumps(NAME)}
seed = "{"ab" * 32}"
accepts_terms = "all"

[[catalogue]]
description = {json.dumps(WORDS)}
keywords = ["ski"]
price = "160 USD"
conditions = [{json.dumps(WORDS)}]

[[observed]]
field = "boot_size"
value = {json.dumps(WORDS)}
category = "biographical"
source = "observed"
collected = 1767225600000
purposes = ["contracted-service"]
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VendorHost]:
    path = tmp_path_factory.mktemp("hostile") / "hostile.toml"
    path.write_text(TOML)
    h = VendorHost()
    try:
        h.vendors["hostile"] = LocalVendor.of(load_vendor_config(path))
        h.start("hostile")
        yield h
    finally:
        h.close()


def shown(*args: str, home: Path) -> str:
    """``vrm ARGS``: it succeeds, and writes no control character of the vendor's."""
    r = ok(vrm(*args, home=home))
    for text in (r.stdout, r.stderr):
        assert "\x1b" not in text, r
        assert "\x07" not in text, r
    return r.stdout


def test_a_vendors_words_are_shown_as_written(tmp_path: Path, hostile: VendorHost) -> None:
    home = new_home(tmp_path)
    url = hostile["hostile"].url
    out = shown("connect", url, home=home)
    assert "Acme [/] \\x1b]0;pwned\\x07\\x1b[31m[link=http://evil.example]Co[/link]" in out
    assert "Acme [/]" in shown("relationships", home=home)
    assert "Acme [/]" in shown("history", url, home=home)
    assert "[/bold] Ski \\x1b[2J rental" in shown("data", url, home=home)
    out = shown("intent", "new", "ski rental", "--deadline", "10s", "--no-discover",
                "--no-relays", "--vendor", url, home=home)  # fmt: skip
    assert "[/bold] Ski" in out
    listed = json.loads(shown("intent", "list", "--json", home=home))
    assert "[/bold] Ski" in shown("intent", "show", listed["intents"][0]["id"], home=home)
    shown("outbox", home=home)
    shown("doctor", home=home)


def test_a_refusals_words_reach_the_terminal_escaped() -> None:
    """The one sentence a failed command ends with quotes the vendor's problem detail."""
    from vrmproto import VrmError  # noqa: PLC0415
    from vrmproto.cli._errors import explain  # noqa: PLC0415

    said = explain(VrmError("no\x1b]52;c;cm0gLXJmIH4=\x07 way\u202e")).message
    assert said == "no\\x1b]52;c;cm0gLXJmIH4=\\x07 way\\u202e."
