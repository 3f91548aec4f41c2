"""The JSON text of the SQLite store's list columns (:mod:`vrmproto.store._sqlite_rows`): the
encoder made once writes what ``json.dumps`` with compact separators writes."""

from __future__ import annotations

import json

import pytest

from vrmproto.store._sqlite_rows import _js


@pytest.mark.parametrize("value", [
    (), ("a", "b"), (1, 2, 3), (("email", "a@example.org"), ("name", "Ann")),
    ("é", "\u2028", '"', "\\", "\x00"), [1.5, float("nan"), None, True], [[], [[]]],
    ({"k": 1},), (("k", "v"),) * 3,
])  # fmt: skip
def test_the_text_is_json_dumps_compact(value: object) -> None:
    assert isinstance(value, (tuple, list))
    assert _js(value) == json.dumps(value, separators=(",", ":"))
    assert _js(value) == _js(value)  # cached or not, the same


def test_what_json_cannot_encode_is_refused() -> None:
    with pytest.raises(TypeError):
        _js((object(),))
