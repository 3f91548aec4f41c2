"""Building frozen dataclasses on hot paths without their ``__init__``'s frozen-class detour.

A frozen dataclass's generated ``__init__`` stores each field with ``object.__setattr__`` (its
own ``__setattr__`` refuses), about 80 ns a field plus the call; the records every message makes
— history entries, what ``send`` and ``receive`` hand back, store rows — paid that several times
per message (#12). :func:`quick_new` gives a constructor that stores each slot through its
descriptor instead and then runs ``__post_init__`` as ``__init__`` would: the same object, about
half the time. Only for slotted dataclasses whose every field is a positional ``__init__``
argument, given in declaration order (the order ``cls(...)`` takes them in); for any other
class it returns the class itself, so a caller never depends on the shortcut
(``tests/test_core_s12_quick.py`` holds both to ``cls(...)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["quick_init", "quick_make", "quick_new"]

T = TypeVar("T")


def _settable(cls: type[Any]) -> list[Any] | None:
    """Each field's slot setter, in declaration order, or None when ``cls`` is not a slotted
    dataclass whose generated ``__init__`` takes every field and only stores it."""
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        return None
    code = getattr(cls.__init__, "__code__", None)
    if code is None or code.co_filename != "<string>":  # an __init__ of its own
        return None
    fields = dataclasses.fields(cls)
    params = code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]
    if sorted(params) != sorted(f.name for f in fields):  # a field not taken, or an InitVar
        return None
    if any(f.kw_only for f in fields):  # its positional order is not the declaration's
        return None
    setters = []
    for f in fields:
        slot: Any = cls.__dict__.get(f.name)
        if type(slot).__name__ != "member_descriptor":
            return None
        setters.append(slot.__set__)
    return setters


def quick_new(cls: type[T]) -> Callable[..., T]:
    """A constructor of ``cls`` taking every field positionally, in declaration order, that
    builds exactly what ``cls(*fields)`` builds (``__post_init__`` included); ``cls`` itself when
    that cannot be promised."""
    setters = _settable(cls)
    if setters is None:
        return cls
    args = [f"a{i}" for i in range(len(setters))]
    ns: dict[str, Any] = {"new": object.__new__, "cls": cls,
                          "post": getattr(cls, "__post_init__", None)}  # fmt: skip
    lines = [f"def make({', '.join(args)}):", "    o = new(cls)"]
    for i, setter in enumerate(setters):
        ns[f"s{i}"] = setter
        lines.append(f"    s{i}(o, a{i})")
    if ns["post"] is not None:
        lines.append("    post(o)")
    lines.append("    return o")
    # The source is made here from field positions only; nothing from a caller reaches it.
    exec("\n".join(lines), ns)  # noqa: S102
    make: Callable[..., T] = ns["make"]
    make.__qualname__ = f"quick_new({cls.__qualname__})"
    return make


_PREFIX = "_q_"  # of the names the generated __init__ reads besides its arguments


class _Factory:
    """The default of a field made by its factory (shown as dataclasses shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


def _init_source(cls: type[Any], name: str, first: str
                 ) -> tuple[list[str], dict[str, Any]] | None:  # fmt: skip
    """The source of a function ``name`` taking ``cls.__init__``'s parameters after ``first``
    (its own first one: ``self``, or nothing), storing each field of ``first`` through its slot;
    None when that cannot be promised (see :func:`quick_init`)."""
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        return None
    code = getattr(cls.__init__, "__code__", None)
    if code is None or code.co_filename != "<string>":
        return None
    fields = dataclasses.fields(cls)
    params = code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]
    if sorted(params) != sorted(f.name for f in fields) or any(
        not f.init or f.name.startswith(_PREFIX) for f in fields
    ):
        return None
    ns: dict[str, Any] = {f"{_PREFIX}post": getattr(cls, "__post_init__", None),
                          f"{_PREFIX}factory": _Factory()}  # fmt: skip
    positional: list[str] = []
    keywords: list[str] = []
    body: list[str] = []
    for i, f in enumerate(fields):
        slot: Any = cls.__dict__.get(f.name)
        if type(slot).__name__ != "member_descriptor":
            return None
        ns[f"{_PREFIX}s{i}"] = slot.__set__
        param, value = f.name, f.name
        if f.default is not dataclasses.MISSING:
            ns[f"{_PREFIX}d{i}"] = f.default
            param = f"{f.name}={_PREFIX}d{i}"
        elif f.default_factory is not dataclasses.MISSING:
            ns[f"{_PREFIX}f{i}"] = f.default_factory
            param = f"{f.name}={_PREFIX}factory"
            value = f"{_PREFIX}f{i}() if {f.name} is {_PREFIX}factory else {f.name}"
        (keywords if f.kw_only else positional).append(param)
        body.append(f"    {_PREFIX}s{i}({first}, {value})")
    own = ["self"] if first == "self" else []
    signature = ", ".join([*own, *positional, *(["*", *keywords] if keywords else [])])
    lines = [f"def {name}({signature}):"]
    if first != "self":
        ns[f"{_PREFIX}new"], ns[f"{_PREFIX}cls"] = object.__new__, cls
        lines.append(f"    {first} = {_PREFIX}new({_PREFIX}cls)")
    lines.extend(body)
    if ns[f"{_PREFIX}post"] is not None:
        lines.append(f"    {_PREFIX}post({first})")
    if first != "self":
        lines.append(f"    return {first}")
    elif not body and ns[f"{_PREFIX}post"] is None:
        lines.append("    pass")
    return lines, ns


def quick_init(cls: type[T]) -> type[T]:
    """Class decorator, below nothing but above ``@dataclass(..., slots=True)``: the same
    ``__init__`` — its parameters, order, defaults and factories, keyword-only ones, and
    ``__post_init__`` — storing each field through its slot rather than ``object.__setattr__``,
    so that every ``cls(...)``, positional or by keyword, costs about two thirds. A class it
    cannot promise that for (a field left out of ``__init__``, an ``InitVar``, an ``__init__``
    of its own, no slots) is returned as it is."""
    source = _init_source(cls, "__init__", "self")
    if source is None:
        return cls
    lines, ns = source
    # The source is made here from the dataclass's own field names (identifiers), as
    # dataclasses makes its __init__; nothing from a caller reaches it.
    exec("\n".join(lines), ns)  # noqa: S102
    init = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


def quick_make(cls: type[T]) -> Callable[..., T]:
    """A constructor of ``cls`` taking what ``cls(...)`` takes — positionally or by keyword,
    with its defaults and factories — that builds exactly what ``cls(...)`` builds, storing each
    field through its slot: :func:`quick_init` for a class that is not ours to decorate (a
    store's records, built on the agent's hot path). ``cls`` itself when that cannot be
    promised."""
    source = _init_source(cls, "make", f"{_PREFIX}o")
    if source is None:
        return cls
    lines, ns = source
    exec("\n".join(lines), ns)  # noqa: S102  -- field names only, as in quick_init
    make: Callable[..., T] = ns["make"]
    make.__qualname__ = f"quick_make({cls.__qualname__})"
    return make
