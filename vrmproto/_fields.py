"""Wire field kinds: how one body field is checked when decoded and written when encoded.

A message body class (``_messages.py``) declares each field once, with a kind from here in the
dataclass field metadata; decoding, encoding and the spec's field tables all come from that one
declaration (spec §5.1).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from vrmproto._codec import check_value, keys_sorted
from vrmproto._errors import DecodeError, Problem, ValidationError


def _bad(path: str, detail: str, clause: str = "§5.1-2") -> ValidationError:
    return ValidationError(detail, code=Problem.INVALID_FIELD, clause=clause, path=path)


class Kind:
    """A field kind: ``load`` checks a decoded wire value, ``dump`` produces one."""

    name: ClassVar[str] = "any"

    def load(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value

    def describe(self) -> str:
        return self.name


class Bin(Kind):
    """Bytes: exactly ``size`` long, or at most ``max_size`` when ``size`` is None."""

    name = "bin"

    def __init__(self, size: int | None = None, max_size: int | None = None) -> None:
        self.size = size
        self.max_size = max_size

    def load(self, value: Any, path: str) -> bytes:
        if type(value) is not bytes:
            raise _bad(path, "expected binary")
        if self.size is not None and len(value) != self.size:
            raise _bad(path, f"expected {self.size} bytes, got {len(value)}")
        if self.max_size is not None and len(value) > self.max_size:
            raise _bad(path, f"at most {self.max_size} bytes")
        return value

    def describe(self) -> str:
        return f"bin({self.size})" if self.size is not None else "bin"


class Str(Kind):
    """UTF-8 text of 1..``max_len`` characters (or 0.. when ``empty`` is allowed)."""

    name = "str"

    def __init__(self, max_len: int = 1000, *, empty: bool = False, pattern: str = "") -> None:
        self.max_len = max_len
        self.empty = empty
        self.pattern = re.compile(pattern) if pattern else None

    def load(self, value: Any, path: str) -> str:
        if type(value) is not str:
            raise _bad(path, "expected text")
        if not value and not self.empty:
            raise _bad(path, "must not be empty")
        if len(value) > self.max_len:
            raise _bad(path, f"at most {self.max_len} characters")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise _bad(path, f"must match {self.pattern.pattern}")
        return value

    def describe(self) -> str:
        return f"str(≤{self.max_len})"


class Int(Kind):
    """An integer within ``lo..hi`` inclusive."""

    name = "int"

    def __init__(self, lo: int = 0, hi: int = 2**53 - 1) -> None:
        self.lo = lo
        self.hi = hi

    def load(self, value: Any, path: str) -> int:
        if type(value) is not int:
            raise _bad(path, "expected an integer")
        if not self.lo <= value <= self.hi:
            raise _bad(path, f"must be within {self.lo}..{self.hi}")
        return value

    def describe(self) -> str:
        return f"int({self.lo}..{self.hi})"


class Bool(Kind):
    name = "bool"

    def load(self, value: Any, path: str) -> bool:
        if type(value) is not bool:
            raise _bad(path, "expected true or false")
        return value


class Choice(Kind):
    """Text from a fixed set."""

    name = "choice"

    def __init__(self, *values: str) -> None:
        self.values = values

    def load(self, value: Any, path: str) -> str:
        if value not in self.values or type(value) is not str:
            raise _bad(path, f"must be one of {', '.join(self.values)}")
        return str(value)

    def describe(self) -> str:
        return "one of " + "|".join(self.values)


class List(Kind):
    """An array of ``item`` values, ``min_len``..``max_len`` long; a tuple in Python."""

    name = "list"

    def __init__(self, item: Kind, max_len: int = 64, min_len: int = 0) -> None:
        self.item = item
        self.max_len = max_len
        self.min_len = min_len

    def load(self, value: Any, path: str) -> tuple[Any, ...]:
        if type(value) is not list:
            raise _bad(path, "expected an array")
        if not self.min_len <= len(value) <= self.max_len:
            raise _bad(path, f"must hold {self.min_len}..{self.max_len} items")
        return tuple(self.item.load(v, f"{path}[{i}]") for i, v in enumerate(value))

    def dump(self, value: Any) -> list[Any]:
        return [self.item.dump(v) for v in value]

    def describe(self) -> str:
        return f"array of {self.item.describe()}"


class StrMap(Kind):
    """A map of text keys to text values (personal data fields); read-only in Python."""

    name = "map"

    def __init__(self, max_items: int = 64, max_value: int = 4096, min_items: int = 0) -> None:
        self.max_items = max_items
        self.max_value = max_value
        self.min_items = min_items

    def load(self, value: Any, path: str) -> Mapping[str, str]:
        if type(value) is not dict:
            raise _bad(path, "expected a map")
        if not keys_sorted(value):
            raise DecodeError("map keys must be unique text in ascending order",
                              clause="§3.3-3", path=path)
        if not self.min_items <= len(value) <= self.max_items:
            raise _bad(path, f"must hold {self.min_items}..{self.max_items} entries")
        for k, v in value.items():
            if not k or len(k) > 64:
                raise _bad(f"{path}.{k}", "field names are 1..64 characters")
            if type(v) is not str or len(v) > self.max_value:
                raise _bad(f"{path}.{k}", f"values are text of at most {self.max_value} characters")
        return MappingProxyType(dict(value))

    def dump(self, value: Any) -> dict[str, str]:
        return {k: value[k] for k in sorted(value)}

    def describe(self) -> str:
        return "map of str → str"


class Record(Kind):
    """A nested record: a frozen dataclass declared with kinds, like a body."""

    name = "record"

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls

    def load(self, value: Any, path: str) -> Any:
        return load_record(self.cls, value, path)

    def dump(self, value: Any) -> dict[str, Any]:
        return dump_record(value)

    def describe(self) -> str:
        return str(self.cls.__name__)


def _freeze(value: Any) -> Any:
    """A hashable image of a decoded value that keeps map key order (for :class:`Custom`).

    int, str and bytes stand for themselves; anything else is tagged with its type, so that
    ``True``, ``1.0`` and ``1`` (equal and hash-equal in Python) never share a cache entry.
    """
    t = type(value)
    if t is int or t is str or t is bytes:
        return value
    if t is dict:
        return (dict, *[(k, _freeze(v)) for k, v in value.items()])
    if t is list:
        return (list, *[_freeze(v) for v in value])
    return (t, value)


class Custom(Kind):
    """An immutable value with its own ``from_wire``/``to_wire`` (e.g. a TermRef).

    Decoded values are cached by their exact wire image (key order included): the same term
    reference arrives in message after message, and a hit was fully checked when first seen.
    """

    name = "custom"
    cache_max = 4096

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self._cache: dict[Any, Any] = {}

    def load(self, value: Any, path: str) -> Any:
        key = _freeze(value)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if not _sorted_deep(value):
            raise DecodeError("map keys must be unique text in ascending order",
                              clause="§3.3-3", path=path)
        try:
            loaded = self.cls.from_wire(value)
        except ValueError as exc:
            raise _bad(path, str(exc)) from None
        if len(self._cache) < self.cache_max:
            self._cache[key] = loaded
        return loaded

    def dump(self, value: Any) -> Any:
        return value.to_wire()

    def describe(self) -> str:
        return str(self.cls.__name__)


def wire(kind: Kind, *, optional: bool = False, doc: str = "") -> Any:
    """Declare a dataclass field's wire kind. Optional fields default to None (absent on wire)."""
    meta = {"kind": kind, "optional": optional, "doc": doc}
    if optional:
        return dataclasses.field(default=None, metadata=meta)
    return dataclasses.field(metadata=meta)


_SPECS: dict[type[Any], tuple[tuple[str, Kind, bool], ...]] = {}


def specs(cls: type[Any]) -> tuple[tuple[str, Kind, bool], ...]:
    """``(name, kind, optional)`` of each declared field of ``cls``, sorted by name."""
    found = _SPECS.get(cls)
    if found is None:
        found = tuple(
            (f.name, f.metadata["kind"], f.metadata["optional"])
            for f in sorted(dataclasses.fields(cls), key=lambda f: f.name)
            if "kind" in f.metadata
        )
        _SPECS[cls] = found
    return found


def _sorted_deep(value: Any) -> bool:
    """Every map inside ``value`` has text keys in ascending order (§3.3-3)."""
    t = type(value)
    if t is dict:
        if not keys_sorted(value):
            return False
        items: Any = value.values()
    elif t is list:
        items = value
    else:
        return True
    for v in items:
        tv = type(v)
        if (tv is dict or tv is list) and not _sorted_deep(v):
            return False
    return True


def load_record(cls: type[Any], value: Any, path: str, max_depth: int = 16) -> Any:
    """Build ``cls`` from a decoded map, checking every declared field (§5.1-1, §5.1-2).

    Also applies the §3.3 rules the form check leaves to typed readers: key order here, the
    declared kinds' types and ranges, and the generic walk for unknown keys, which are
    otherwise ignored (§5.1-3): they stay in the signed bytes, which is what is kept.
    """
    if type(value) is not dict:
        raise _bad(path, "expected a map")
    if not keys_sorted(value):
        raise DecodeError("map keys must be unique text in ascending order", clause="§3.3-3",
                          path=path)
    kwargs: dict[str, Any] = {}
    declared = specs(cls)
    for name, kind, optional in declared:
        if name not in value:
            if optional:
                continue
            raise _bad(f"{path}.{name}", "required field is missing", "§5.1-1")
        raw = value[name]
        if raw is None:
            raise _bad(f"{path}.{name}", "an absent value is omitted, never nil", "§5.1-4")
        kwargs[name] = kind.load(raw, f"{path}.{name}")
    if len(kwargs) != len(value):
        names = {name for name, _, _ in declared}
        for key, item in value.items():
            if key not in names:
                check_value(item, depth=1, max_depth=max_depth, path=f"{path}.{key}")
    try:
        return cls(**kwargs)
    except ValidationError:
        raise
    except ValueError as exc:
        raise _bad(path, str(exc)) from None


def dump_record(obj: Any) -> dict[str, Any]:
    """The wire map of a declared dataclass, keys in canonical (sorted) order."""
    out: dict[str, Any] = {}
    for name, kind, _ in specs(type(obj)):
        v = getattr(obj, name)
        if v is not None:
            out[name] = kind.dump(v)
    return out
