"""A person's week with ``vrm`` (session 20): restoring the seed on a new machine from where it
was kept. A seed file saved by a Windows editor starts with a byte-order mark, and one typed
into a word processor has its dashes made en dashes: both were "not a valid seed: a vrm seed
starts with 'vrm1-'" (or "'–' cannot appear"), although every character of the seed was
there. Those separators are now read as the dashes they stand for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests._cli_helpers import ok, vrm
from vrmproto.cli._seedtext import SeedTextError, seed_from_text, seed_to_text

SEED = bytes(range(32))
TEXT = seed_to_text(SEED)


@pytest.mark.parametrize("written", [
    "\ufeff" + TEXT + "\r\n",                       # Notepad's UTF-8: a byte-order mark
    TEXT.replace("-", "\u2013"),                    # a word processor's en dashes
    TEXT.replace("-", " \u2014 "),                  # em dashes, spaced
    TEXT.replace("-", "\u200b-"),                   # copied from a web page: zero-width spaces
])  # fmt: skip
def test_a_seed_written_down_by_a_tool_reads_back(written: str) -> None:
    assert seed_from_text(written) == SEED


def test_separators_do_not_hide_a_mistyped_character() -> None:
    wrong = TEXT[:-1] + ("0" if TEXT[-1] != "0" else "1")
    with pytest.raises(SeedTextError, match="check value"):
        seed_from_text("\ufeff" + wrong.replace("-", "\u2013"))


def test_vrm_key_import_reads_a_seed_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    seed = os.urandom(32)
    home = tmp_path / "restored"
    ok(vrm("key", "import", home=home, stdin="\ufeff" + seed_to_text(seed) + "\r\n"))
    assert ok(vrm("key", "export", home=home)).stdout.strip() == seed_to_text(seed)
