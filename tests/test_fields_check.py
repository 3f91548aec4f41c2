"""``StrMap.check``: the rules of a person's fields, checked by the agent before it encodes them
(``Agent.share``, ``Agent.update_address``), are ``StrMap.load``'s — the receiver's (§5.1-2) —
but for the key order the sender makes canonical itself."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vrmproto import ProtocolError
from vrmproto._codec import keys_sorted
from vrmproto.client._data import FIELDS

names = st.one_of(st.text(max_size=66), st.integers(0, 3))
values = st.one_of(st.text(max_size=8), st.just("v" * 4096), st.just("v" * 4097), st.none())


def refused(f: Any) -> bool:
    try:
        f()
    except ProtocolError:
        return True
    return False


@given(st.dictionaries(names, values, max_size=66))
def test_check_refuses_what_the_receiver_refuses(fields: dict[Any, Any]) -> None:
    by_receiver = (not all(type(k) is str for k in fields) or refused(
        lambda: FIELDS.load({k: fields[k] for k in sorted(fields)}, "$.fields")))
    assert refused(lambda: FIELDS.check(fields, "$.fields")) == by_receiver


def test_the_receiver_still_wants_the_keys_in_order() -> None:
    assert not keys_sorted({"b": "1", "a": "2"})
    with pytest.raises(ProtocolError):
        FIELDS.load({"b": "1", "a": "2"}, "$.fields")
    FIELDS.check({"b": "1", "a": "2"}, "$.fields")  # the sender sorts them itself
