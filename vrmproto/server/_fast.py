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
from typing import Any, TypeVar

__all__ = ["maker", "setters"]

Setter = Callable[[Any, Any], None]
T = TypeVar("T")


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


def maker(cls: type[T]) -> Callable[..., T]:
    """A function building ``cls`` from keyword arguments (each field's default when not
    given) through its slots: what ``cls(**kw)`` makes, faster (a :class:`~vrmproto.store.Commit`
    has 26 fields: its generated ``__init__`` costs ~4 µs, this ~1.5). TypeError as for
    :func:`setters`, and for a field whose default comes from a factory."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # TypeError unless a dataclass
    names = tuple(f.name for f in fields)
    sets = setters(cls, names)
    if any(f.default_factory is not dataclasses.MISSING for f in fields):
        raise TypeError(f"{cls.__name__} has a field with a default factory")
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    params, body = [], []
    for i, f in enumerate(fields):
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            scope[f"_d{i}"] = f.default
            params.append(f"{f.name}=_d{i}")
        scope[f"_s{i}"] = sets[i]
        body.append(f"    _s{i}(o, {f.name})")
    source = (f"def make(*, {', '.join(params)}):\n    o = _new(_cls)\n"
              + "\n".join(body) + "\n    return o\n")  # fmt: skip
    exec(source, scope)  # noqa: S102 - code made here, from the dataclass's own field names
    make: Callable[..., T] = scope["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make
