"""``_fast.maker`` (vrmproto/server/_fast.py) builds the records its class's constructor builds,
given fields and defaults alike, and refuses classes it cannot build that way; the endpoint's
per-message rate limits skip their awaitables only for the in-memory limiter."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from vrmproto.server._fast import maker
from vrmproto.server._policy import Event
from vrmproto.store import Commit, DedupeRecord


@dataclasses.dataclass(frozen=True, slots=True)
class _Defaults:
    a: int
    b: str = "b"
    c: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class _Factory:
    a: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Unslotted:
    a: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    a: int

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("negative")


@pytest.mark.parametrize(("cls", "kw"), [
    (_Defaults, {"a": 1}),
    (_Defaults, {"a": 1, "c": (2, 3)}),
    (DedupeRecord, {"sender": b"s" * 32, "msg_id": b"i" * 16, "msg_hash": b"h" * 32,
                    "response": b"r", "expires_ms": 5}),
    (Event, {"kind": "data.share", "thread": b"t" * 16, "message": "a message"}),
    (Commit, {}),
    (Commit, {"relationships": (1,), "history": (2,), "events": (3,), "held": (4, 5)}),
])  # fmt: skip
def test_maker_builds_what_the_constructor_builds(cls: type, kw: dict[str, Any]) -> None:
    fast, slow = maker(cls)(**kw), cls(**kw)
    assert fast == slow
    assert repr(fast) == repr(slow)  # every field set, each to its own value
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    name = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(fast, name, None)


def test_maker_refuses_unknown_and_missing_fields() -> None:
    make = maker(_Defaults)
    with pytest.raises(TypeError):
        make(b="x")  # a required field missing
    with pytest.raises(TypeError):
        make(a=1, z=2)
    with pytest.raises(TypeError):
        make(1)  # keywords only: no field taken for another


@pytest.mark.parametrize("cls", [_Factory, _Unslotted, _Checked, int])
def test_maker_refuses_what_it_cannot_build(cls: type) -> None:
    with pytest.raises(TypeError):
        maker(cls)
