"""Purpose and category names read once (spec §6.6, §6.7): what a person typed is remembered,
per table, so a sender naming the same ones share after share does not parse them again."""

from __future__ import annotations

import pytest

from vrmproto import _vocab
from vrmproto._vocab import parse_category, parse_purpose


class StrSub(str):
    __slots__ = ()

    def strip(self, chars: str | None = None) -> str:
        return "junk"


def test_a_name_means_the_same_each_time_and_per_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_vocab, "_PARSED", {})
    for _ in range(3):  # the second and third time from what was remembered
        assert parse_purpose("contact") == 4
        assert parse_category("contact") == 2  # the same text in the other table
        assert parse_purpose(" 3 - Delivery ") == 3
        assert parse_purpose("delivery") == 3
    assert len(_vocab._PARSED) == 4
    with pytest.raises(ValueError, match="not a purpose"):
        parse_purpose("no-such-purpose")
    assert len(_vocab._PARSED) == 4  # a refusal is never remembered


def test_only_exact_text_is_remembered_and_only_so_much(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_vocab, "_PARSED", {})
    assert parse_purpose("delivery") == 3
    with pytest.raises(ValueError, match="not a purpose"):  # its own strip(): read afresh
        parse_purpose(StrSub("delivery"))
    monkeypatch.setattr(_vocab, "_PARSED_MAX", 2)
    for name in ("core-function", "contact", "marketing"):
        parse_purpose(name)
    assert len(_vocab._PARSED) == 2
