"""What an agent's ``share`` does per message, made cheaper (#12), still says the same.

Purposes and categories given by name are parsed once for the same names (§6.6, §6.7); numbers
are parsed every time, as ``1 == True == 1.0`` would otherwise let one stand for another.
"""

from __future__ import annotations

import pytest

from vrmproto.client._data import _parse_terms


def test_names_parse_the_same_when_remembered() -> None:
    first = _parse_terms(["delivery", "contact"], ["contact"])
    assert first == ((3, 4), (2,))
    assert _parse_terms(("delivery", "contact"), iter(["contact"])) == first
    assert _parse_terms([3, 4], [2]) == first


@pytest.mark.parametrize("bad", [True, 1.0, [3], "no-such-purpose"])
def test_what_is_no_purpose_is_refused_after_a_remembered_one(bad: object) -> None:
    assert _parse_terms([1], ["contact"]) == ((1,), (2,))
    assert _parse_terms(["core-function"], ["contact"]) == ((1,), (2,))
    with pytest.raises(ValueError, match="is not a purpose"):
        _parse_terms([bad], ["contact"])  # type: ignore[list-item]
