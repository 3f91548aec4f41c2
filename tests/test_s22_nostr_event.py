"""An event's JSON types, exactly as NIP-01 has them (spec §15.1-2).

Before: ``Event.from_json`` made its tags with ``tuple(tuple(t) for t in obj["tags"])``, so tags
given as a string, or as an array of strings, were read as the tags they spell letter by letter
(``["ex"]`` as ``[["e", "x"]]``) and, signed in that form, accepted: a malformed event passed
as valid, one event with two spellings. ``true`` was taken as the integer 1 for ``created_at``
or ``kind``, and any integer, negative or past 65535, as a kind.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from vrmproto.nostr import Event, EventError, NostrKey, sign_event


def signed(**change: Any) -> dict[str, Any]:
    """An event signed over ``[["e", "x"]]`` tags, with JSON fields then changed."""
    event = sign_event(NostrKey(os.urandom(32)), 1_700_000_000, 7390, [("e", "x")], "hi",
                       aux=os.urandom(32))  # fmt: skip
    return {**event.to_json(), **change}


@pytest.mark.parametrize("change", [{"tags": ["ex"]}, {"tags": "ex"}, {"tags": {"ex": 1}},
                                    {"tags": [["e", "x"], "y"]}])  # fmt: skip
def test_tags_that_are_not_arrays_of_strings_are_malformed(change: dict[str, Any]) -> None:
    with pytest.raises(EventError) as caught:
        Event.from_json(signed(**change))
    assert (caught.value.code.value, caught.value.clause) == ("malformed", "§15.1-2")


@pytest.mark.parametrize("field", ["created_at", "kind"])
def test_true_is_not_an_integer(field: str) -> None:
    # signed over the JSON ``true``, which NIP-01's integer is not
    event = sign_event(NostrKey(os.urandom(32)), field == "created_at" or 1,
                       field == "kind" or 1, [], "hi", aux=os.urandom(32))  # fmt: skip
    assert event.to_json()[field] is True
    with pytest.raises(EventError) as caught:
        Event.from_json(event.to_json())
    assert caught.value.code.value == "malformed"


@pytest.mark.parametrize(("field", "value"), [("kind", 65536), ("kind", -1), ("created_at", -1)])
def test_integers_out_of_range_are_malformed(field: str, value: int) -> None:
    with pytest.raises(EventError) as caught:
        Event.from_json(signed(**{field: value}))
    assert caught.value.code.value == "malformed"


def test_the_same_event_in_its_proper_form_is_read() -> None:
    assert Event.from_json(signed()).tags == (("e", "x"),)
