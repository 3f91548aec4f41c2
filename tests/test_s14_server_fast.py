"""The records the vendor builds per accepted message (server/_accept.py: ``Commit``,
``DedupeRecord``, ``Event``) are built by :func:`~vrmproto._quick.quick_make`, which takes its
shortcut for each and builds what the class's constructor builds (its refusals are held by
tests/test_core_s12_quick.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from vrmproto._quick import quick_make
from vrmproto.server import _accept
from vrmproto.server._policy import Event
from vrmproto.store import Commit, DedupeRecord


@pytest.mark.parametrize(("cls", "kw"), [
    (DedupeRecord, {"sender": b"s" * 32, "msg_id": b"i" * 16, "msg_hash": b"h" * 32,
                    "response": b"r", "expires_ms": 5}),
    (Event, {"kind": "data.share", "thread": b"t" * 16, "message": "a message"}),
    (Commit, {}),
    (Commit, {"relationships": (1,), "history": (2,), "events": (3,), "held": (4, 5)}),
])  # fmt: skip
def test_the_vendors_records_are_built_as_their_constructors_build_them(
    cls: type, kw: dict[str, Any]
) -> None:
    make = quick_make(cls)
    assert make is not cls  # the shortcut is taken: a field added with a factory would not
    fast, slow = make(**kw), cls(**kw)
    assert fast == slow
    assert repr(fast) == repr(slow)  # every field set, each to its own value
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    name = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(fast, name, None)


def test_the_endpoint_uses_them() -> None:
    assert isinstance(_accept._commit(), Commit)
    assert type(_accept._event(kind="x", thread=b"t" * 16, message=None)) is Event
