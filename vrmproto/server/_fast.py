"""Building the frozen records of the vendor's hot path without their generated ``__init__``.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (the class's
own refuses): ~0.15 µs a field, so a ``data.share``'s eight :class:`~vrmproto.store.HeldRecord`
rows cost the vendor ~10 µs of CPU per message before anything is stored (#12). A slotted
class's fields are member descriptors, whose ``__set__`` sets the slot directly, three times
faster. :func:`setters` hands them out, checked: only for a frozen slotted dataclass with
exactly the fields named, in that order, and nothing run at construction (no
``__post_init__``, which such a record would skip). A record built with them is the same
record: equal to, and indistinguishable from, the one its constructor makes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["setters"]

Setter = Callable[[Any, Any], None]


def setters(cls: type, names: tuple[str, ...]) -> tuple[Setter, ...]:
    """The ``__set__`` of each field of ``cls``, in the order of ``names``, which must be
    exactly its fields in declaration order; TypeError if ``cls`` is not a frozen slotted
    dataclass without ``__post_init__``."""
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} is not slotted, or runs code at construction")
    fields = tuple(f.name for f in dataclasses.fields(cls))
    if fields != names:
        raise TypeError(f"{cls.__name__} has the fields {fields}, not {names}")
    return tuple(cls.__dict__[name].__set__ for name in names)
