"""The vendor's fast record builders (vrmproto/server/_fast.py) make the records their
constructors make, and refuse classes they cannot build that way."""

from __future__ import annotations

import dataclasses

import pytest

from vrmproto.server._fast import setters
from vrmproto.server._held import _HELD_FIELDS, held_row
from vrmproto.store import HeldRecord


@pytest.mark.parametrize("expires", [None, 1_900_000_000_000])
def test_held_row_is_the_record_its_constructor_makes(expires: int | None) -> None:
    args = (b"t" * 16, "email", "ada@example.org", 2, "provided", 1_700_000_000_000, (1, 3),
            b"s" * 32, expires)  # fmt: skip
    fast, slow = held_row(*args), HeldRecord(*args)
    assert fast == slow
    assert dataclasses.astuple(fast) == args  # each value in its own field
    assert hash(fast) == hash(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.value = "other"  # type: ignore[misc]


def test_the_held_fields_are_the_records() -> None:
    assert tuple(f.name for f in dataclasses.fields(HeldRecord)) == _HELD_FIELDS


@dataclasses.dataclass(frozen=True, slots=True)
class _Pair:
    a: int
    b: str


@dataclasses.dataclass(frozen=True)
class _Unslotted:
    a: int


@dataclasses.dataclass(slots=True)
class _Mutable:
    a: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    a: int

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("negative")


def test_setters_set_the_named_slots() -> None:
    set_a, set_b = setters(_Pair, ("a", "b"))
    p = _Pair.__new__(_Pair)
    set_a(p, 1)
    set_b(p, "x")
    assert p == _Pair(1, "x")


@pytest.mark.parametrize(("cls", "names"), [
    (_Pair, ("b", "a")),  # another order
    (_Pair, ("a",)),  # a field left unset
    (_Unslotted, ("a",)),
    (_Mutable, ("a",)),
    (_Checked, ("a",)),  # its check would be skipped
    (int, ()),
])  # fmt: skip
def test_setters_refuse_what_they_cannot_build(cls: type, names: tuple[str, ...]) -> None:
    with pytest.raises(TypeError):
        setters(cls, names)
