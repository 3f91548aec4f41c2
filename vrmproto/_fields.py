"""Wire field kinds: how one body field is checked when decoded and written when encoded.

A message body class (``_messages.py``) declares each field once, with a kind from here in the
dataclass field metadata; decoding, encoding and the spec's field tables all come from that one
declaration (spec §5.1).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from vrmproto._codec import check_value, keys_sorted, pack_sorted
from vrmproto._errors import DecodeError, Problem, ProtocolError, ValidationError

# The caches of the hot paths below hold what peers send and what we sign again and again —
# references to the roster's terms, small maps. Only small encodings are kept, and only so
# many: a peer sending large or ever-new values cannot make them pin memory (§10, §11); those
# values are simply read (or written) each time. (entries, bytes per encoding): at most ~1 MB.
_ITEM_CACHE = (4096, 256)
_LIST_CACHE = (512, 2048)


def _cacheable(cache: dict[Any, Any], encoding: bytes, limits: tuple[int, int]) -> bool:
    return len(encoding) <= limits[1] and len(cache) < limits[0]


def _bad(path: str, detail: str, clause: str = "§5.1-2") -> ValidationError:
    return ValidationError(detail, code=Problem.INVALID_FIELD, clause=clause, path=path)


#: Returned by :meth:`Kind.fast` when a value is not on the happy path.
MISS: Any = object()


class Kind:
    """A field kind: ``load`` checks a decoded wire value, ``dump`` produces one.

    ``fast`` is ``load`` without a path: it returns the loaded value, or :data:`MISS` for any
    value ``load`` would refuse — the caller then runs ``load`` for the error and its path.
    """

    name: ClassVar[str] = "any"
    #: True when ``dump`` returns its argument unchanged.
    plain_dump: ClassVar[bool] = True

    def load(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def fast(self, value: Any) -> Any:
        try:
            return self.load(value, "$")
        except ProtocolError:
            return MISS

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

    def fast(self, value: Any) -> Any:
        if type(value) is not bytes:
            return MISS
        if self.size is not None and len(value) != self.size:
            return MISS
        if self.max_size is not None and len(value) > self.max_size:
            return MISS
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

    def fast(self, value: Any) -> Any:
        if type(value) is not str or (not value and not self.empty) or len(value) > self.max_len:
            return MISS
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return MISS
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

    def fast(self, value: Any) -> Any:
        if type(value) is not int or not self.lo <= value <= self.hi:
            return MISS
        return value

    def describe(self) -> str:
        return f"int({self.lo}..{self.hi})"


class Bool(Kind):
    name = "bool"

    def load(self, value: Any, path: str) -> bool:
        if type(value) is not bool:
            raise _bad(path, "expected true or false")
        return value

    def fast(self, value: Any) -> Any:
        return value if type(value) is bool else MISS


class Choice(Kind):
    """Text from a fixed set."""

    name = "choice"

    def __init__(self, *values: str) -> None:
        self.values = values

    def load(self, value: Any, path: str) -> str:
        if value not in self.values or type(value) is not str:
            raise _bad(path, f"must be one of {', '.join(self.values)}")
        return str(value)

    def fast(self, value: Any) -> Any:
        # str() of an exact str is that str: the value itself is what load returns.
        return value if type(value) is str and value in self.values else MISS

    def describe(self) -> str:
        return "one of " + "|".join(self.values)


class List(Kind):
    """An array of ``item`` values, ``min_len``..``max_len`` long; a tuple in Python."""

    name = "list"

    plain_dump = False

    def __init__(self, item: Kind, max_len: int = 64, min_len: int = 0) -> None:
        self.item = item
        self.max_len = max_len
        self.min_len = min_len
        self._by_wire: dict[bytes, tuple[Any, ...]] = {}  # lists of Custom values (see fast)
        self._packed_seqs: dict[tuple[int, ...], tuple[tuple[Any, ...], bytes]] = {}  # (packed)

    def load(self, value: Any, path: str) -> tuple[Any, ...]:
        if type(value) is not list:
            raise _bad(path, "expected an array")
        if not self.min_len <= len(value) <= self.max_len:
            raise _bad(path, f"must hold {self.min_len}..{self.max_len} items")
        return tuple(self.item.load(v, f"{path}[{i}]") for i, v in enumerate(value))

    def fast(self, value: Any) -> Any:
        if type(value) is not list or not self.min_len <= len(value) <= self.max_len:
            return MISS
        item = self.item
        if type(item) is Int:
            lo, hi = item.lo, item.hi
            for v in value:
                if type(v) is not int or not lo <= v <= hi:
                    return MISS
            return tuple(value)
        if type(item) is not Custom:
            return _fast_items(item.fast, value)
        # A list of immutable values (term references) recurs as a whole — an acceptance
        # repeats the offer's terms — so it is cached like its items, by exact encoding.
        key = pack_sorted(value)
        hit = self._by_wire.get(key)
        if hit is not None:
            return hit
        loaded = _fast_items(item.fast, value)
        if loaded is not MISS and _cacheable(self._by_wire, key, _LIST_CACHE):
            self._by_wire[key] = loaded
        return loaded

    def dump(self, value: Any) -> list[Any]:
        return [self.item.dump(v) for v in value]

    def packed(self, value: Any) -> bytes | None:
        """The encoding of ``dump(value)`` for a list of :class:`Custom` values, from their
        remembered encodings; None unless ``value`` is a tuple or list (hot path)."""
        if type(value) is not tuple and type(value) is not list:
            return None
        # The same values recur in the same order (a relationship's terms, an acceptance
        # repeating the offer's): the whole encoding is remembered by the values' ids — held,
        # so an id in a key is that very value for as long as the entry lives.
        key = tuple(map(id, value))
        hit = self._packed_seqs.get(key)
        if hit is not None:
            return hit[1]
        item = self.item
        assert type(item) is Custom
        n = len(value)
        if n < 16:
            head = _FIXARRAY[n]
        elif n < 0x1_0000:
            head = b"\xdc" + n.to_bytes(2, "big")
        else:
            head = b"\xdd" + n.to_bytes(4, "big")
        out = head + b"".join([item.packed(v) for v in value])
        if _cacheable(self._packed_seqs, out, _LIST_CACHE):
            self._packed_seqs[key] = (tuple(value), out)
        return out

    def describe(self) -> str:
        return f"array of {self.item.describe()}"


def _fast_items(item_fast: Callable[[Any], Any], value: list[Any]) -> Any:
    out = []
    for v in value:
        got = item_fast(v)
        if got is MISS:
            return MISS
        out.append(got)
    return tuple(out)


class StrMap(Kind):
    """A map of text keys to text values (personal data fields); read-only in Python."""

    name = "map"
    plain_dump = False

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
        self.check(value, path)
        return MappingProxyType(dict(value))

    def check(self, value: Mapping[Any, Any], path: str) -> None:
        """``load``'s rules for the entries (§5.1-2), on a map in any key order: what a sender
        checks of a person's fields before it encodes them (sorted, so canonical)."""
        if not self.min_items <= len(value) <= self.max_items:
            raise _bad(path, f"must hold {self.min_items}..{self.max_items} entries")
        for k, v in value.items():
            if type(k) is not str or not k or len(k) > 64:
                raise _bad(path, f"field names are text of 1..64 characters, not {k!r:.70}")
            if type(v) is not str or len(v) > self.max_value:
                raise _bad(f"{path}.{k}", f"values are text of at most {self.max_value} characters")

    def dump(self, value: Any) -> dict[str, str]:
        return {k: value[k] for k in sorted(value)}

    def describe(self) -> str:
        return "map of str → str"


class Record(Kind):
    """A nested record: a frozen dataclass declared with kinds, like a body."""

    name = "record"
    plain_dump = False

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls

    def load(self, value: Any, path: str) -> Any:
        return load_record(self.cls, value, path)

    def fast(self, value: Any) -> Any:
        return record_loader(self.cls).fast(value)

    def dump(self, value: Any) -> dict[str, Any]:
        return dump_record(value)

    def describe(self) -> str:
        return str(self.cls.__name__)


class Custom(Kind):
    """An immutable value with its own ``from_wire``/``to_wire`` (e.g. a TermRef).

    Decoded values are cached by their exact wire image (key order included): the same term
    reference arrives in message after message, and a hit was fully checked when first seen.
    """

    name = "custom"
    plain_dump = False

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self._by_wire: dict[bytes, Any] = {}  # decoded values by their exact encoding
        # id(value) -> encoding of its dump, for values held in _held: a held value's id is its
        # own as long as the entry lives (never removed), so a hit is that very value.
        self.packed_by_id: dict[int, bytes] = {}
        self._held: dict[int, Any] = {}

    def fast(self, value: Any) -> Any:
        # Keyed by the value's exact encoding: for values as msgpack decodes them (exact
        # builtin types) that is one-to-one, and cheap to compute.
        key = pack_sorted(value)
        hit = self._by_wire.get(key)
        if hit is not None:
            return hit
        try:
            loaded = self.load(value, "$")
        except ProtocolError:
            return MISS
        if _cacheable(self._by_wire, key, _ITEM_CACHE):
            self._by_wire[key] = loaded
        return loaded

    def load(self, value: Any, path: str) -> Any:
        # The same bounded cache as fast(): only small encodings, at most _ITEM_CACHE[0] of
        # them, so values from throw-away keys cannot pin memory (the key is the exact
        # encoding: key order and types included; a hit was fully checked when first seen).
        try:
            key = pack_sorted(value)
        except (TypeError, ValueError):
            key = b""
        hit = self._by_wire.get(key) if key else None
        if hit is not None:
            return hit
        if not _sorted_deep(value):
            raise DecodeError("map keys must be unique text in ascending order",
                              clause="§3.3-3", path=path)
        try:
            loaded = self.cls.from_wire(value)
        except ProtocolError as exc:  # keep the code and clause; extend the path (§9.1)
            inner = exc.path if not exc.path or exc.path.startswith("[") else f".{exc.path}"
            raise ValidationError(exc.detail, code=exc.code, clause=exc.clause,
                                  path=path + inner) from None
        except ValueError as exc:
            raise _bad(path, str(exc)) from None
        if key and _cacheable(self._by_wire, key, _ITEM_CACHE):
            self._by_wire[key] = loaded
        return loaded

    def dump(self, value: Any) -> Any:
        return value.to_wire()

    def packed(self, value: Any) -> bytes:
        """The encoding of ``dump(value)``, remembered per value: the values are immutable and
        recur in message after message (hot path of signing)."""
        hit = self.packed_by_id.get(id(value))
        if hit is not None:
            return hit
        out = pack_sorted(value.to_wire())
        if _cacheable(self._held, out, _ITEM_CACHE):
            self._held[id(value)] = value  # first: an entry never outlives its value
            self.packed_by_id[id(value)] = out
        return out

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


def check_record(obj: Any, path: str = "$") -> None:
    """Raise :class:`ValidationError` (``invalid_field``, with its path) for anything in a
    built ``obj`` its receiver would refuse (§5.1-2): its wire map read back with the field
    rules. Constructors do not check (a decoded value was checked as it was read); a sender
    checks what the person gave before it signs, stores or sends anything."""
    load_record(type(obj), dump_record(obj), path)


def check_fields(cls: type[Any], path: str = "$", **values: Any) -> None:
    """:func:`check_record` for some fields of ``cls`` given by name, before the rest of the
    body exists: what a person gave (a note, a reason, the terms) checked with the field rules
    its receiver applies (§5.1-2), before the relationship supplies the rest at signing. None
    is an absent optional field."""
    for name, kind, optional in specs(cls):
        if name not in values:
            continue
        value = values[name]
        if value is None:
            if not optional:
                raise _bad(f"{path}.{name}", "required field is missing", "§5.1-1")
            continue
        kind.load(kind.dump(value), f"{path}.{name}")
    unknown = values.keys() - {name for name, _, _ in specs(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {sorted(unknown)[0]!r}")


# -- specialised readers and writers (the hot paths of open_envelope and sign_message) ----------
#
# load_record and dump_record above are the definitions. For each declared class, the functions
# below are generated once — as dataclasses generates __init__ — as straight-line code over its
# fields: the same steps without the per-field loop, and, on the happy path only. A reader
# returns MISS for anything unusual and the caller then runs load_record for the error; a writer
# returns None and the caller runs dump_record. tests/test_codec_fastpaths.py holds them equal.

_MAX_PLANNED_OPTIONALS = 8
_FIXARRAY = [bytes((0x90 | n,)) for n in range(16)]  # array heads of 0..15 items
_NO_DEFAULT = dataclasses.MISSING


def _compile(name: str, lines: list[str], namespace: dict[str, Any]) -> Any:
    # The source is built in this module from dataclass field names (identifiers) and repr()s
    # of them; nothing from a message or a caller reaches it.
    exec("\n".join(lines), namespace)  # noqa: S102
    return namespace[name]


def _direct_setters(cls: type[Any]) -> dict[str, Any] | None:
    """Slot setters that build ``cls`` exactly as its dataclass ``__init__`` would, or None.

    Only for a slotted dataclass whose ``__init__`` is the generated one and whose every field is
    declared with :func:`wire` (optional ⇔ default None, no factories): then ``__init__`` only
    stores its arguments (and calls ``__post_init__``, which the reader does too).
    """
    if not dataclasses.is_dataclass(cls):
        return None
    code = getattr(cls.__init__, "__code__", None)
    if code is None or code.co_filename != "<string>":  # not the generated __init__
        return None
    setters: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init or "kind" not in f.metadata or f.default_factory is not _NO_DEFAULT:
            return None
        if f.default is not (None if f.metadata["optional"] else _NO_DEFAULT):
            return None
        slot: Any = cls.__dict__.get(f.name)
        if type(slot).__name__ != "member_descriptor":
            return None
        setters[f.name] = slot.__set__
    return setters


class RecordLoader:
    """The reader of one declared class: :func:`load_record` in one pass on the happy path.

    For values as msgpack decodes them (exact builtin types). A map whose keys are exactly
    declared fields in canonical order (so: sorted, unique, every required one present, no
    unknown key) and whose every value passes its kind's ``fast`` check is built directly;
    anything else goes to :func:`load_record`, which stays the one definition of the rules and
    of the error, its clause and its path (§3.3-3, §5.1).
    """

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self.fast: Any = _no_fast
        declared = specs(cls)
        required = [name for name, _, optional in declared if not optional]
        optional = [name for name, _, optional in declared if optional]
        setters = _direct_setters(cls)
        if setters is None or len(optional) > _MAX_PLANNED_OPTIONALS:
            return
        orders = frozenset(
            tuple(sorted(required + [n for i, n in enumerate(optional) if mask >> i & 1]))
            for mask in range(1 << len(optional))
        )
        ns: dict[str, Any] = {"MISS": MISS, "new": object.__new__, "cls": cls, "orders": orders,
                              "post": getattr(cls, "__post_init__", None),
                              "ProtocolError": ProtocolError}
        lines = [
            "def fast(value):",
            "    if type(value) is not dict or tuple(value) not in orders:",
            "        return MISS",
            "    obj = new(cls)",
        ]
        for i, (name, kind, is_optional) in enumerate(declared):
            ns[f"check_{i}"], ns[f"set_{i}"] = kind.fast, setters[name]
            step = [
                "if v is None:",  # present but nil (§5.1-4)
                "    return MISS",
                f"v = check_{i}(v)",
                "if v is MISS:",
                "    return MISS",
            ]
            if is_optional:
                lines += [f"    v = value.get({name!r}, MISS)", "    if v is MISS:",
                          "        v = None", "    else:", *("        " + x for x in step)]
            else:
                lines += [f"    v = value[{name!r}]", *("    " + x for x in step)]
            lines.append(f"    set_{i}(obj, v)")
        if ns["post"] is not None:
            lines += ["    try:", "        post(obj)", "    except (ValueError, ProtocolError):",
                      "        return MISS"]
        lines.append("    return obj")
        self.fast = _compile("fast", lines, ns)

    def load(self, value: Any, path: str, max_depth: int = 16) -> Any:
        """Exactly :func:`load_record`, for a value as msgpack decodes it (``max_depth`` only
        matters for unknown keys, which take that path)."""
        got = self.fast(value)
        if got is MISS:
            return load_record(self.cls, value, path, max_depth)
        return got


def _no_fast(value: Any) -> Any:
    return MISS


_LOADERS: dict[type[Any], RecordLoader] = {}


def record_loader(cls: type[Any]) -> RecordLoader:
    """The :class:`RecordLoader` of a declared class (built once)."""
    found = _LOADERS.get(cls)
    if found is None:
        found = _LOADERS[cls] = RecordLoader(cls)
    return found


def _spliced(kind: Kind) -> bool:
    return type(kind) is List and type(kind.item) is Custom


def _list_of(kind: Kind) -> List:
    assert isinstance(kind, List)
    return kind


def _spliced_last(i: int, name: str) -> list[str]:
    """Writer lines for a spliced list that is the last field: the map of all fields, this one
    nil — the last byte — then replaced by the list's remembered encoding."""
    return [
        f"    v = o.{name}",
        "    if v is None:",
        "        return pack(run)",
        f"    raw = packed_{i}(v)",
        "    if raw is None:",
        "        return None",
        f"    run[{name!r}] = None",
        "    return pack(run)[:-1] + raw",
    ]


def _spliced_between(i: int) -> list[str]:
    """Writer lines for a spliced list among other fields: the entries so far as a map without
    its head, then this key and the list."""
    return [
        f"        raw = packed_{i}(v)",
        "        if raw is None:",
        "            return None",
        "        if run:",
        "            parts.append(pack(run)[1:])",
        "            count += len(run)",
        "            run = {}",
        f"        parts.append(key_{i})",
        "        parts.append(raw)",
        "        count += 1",
    ]


def _writer(cls: type[Any]) -> Any:
    """The writer of one declared class, generated: straight-line ``dump_record`` packed, where
    a list of :class:`Custom` values is spliced in from their remembered encodings."""
    declared = specs(cls)
    ns: dict[str, Any] = {"pack": pack_sorted, "FIXMAP": [bytes((0x80 | n,)) for n in range(16)]}
    # Splicing joins maps' entries under one head written apart: only fixmaps (one-byte heads).
    spliced = [i for i, (_, kind, _) in enumerate(declared) if _spliced(kind)]
    if len(declared) >= 16:
        spliced = []
    # The usual case: the one spliced list is the last field (terms.offer, terms.accept).
    last_only = spliced == [len(declared) - 1]
    lines = ["def write(o):", "    run = {}"]
    if spliced and not last_only:
        lines += ["    parts = []", "    count = 0"]
    for i, (name, kind, _) in enumerate(declared):
        if i in spliced and last_only:
            ns[f"packed_{i}"] = _list_of(kind).packed
            return _compile("write", lines + _spliced_last(i, name), ns)
        lines += [f"    v = o.{name}", "    if v is not None:"]
        if i in spliced:
            ns[f"packed_{i}"], ns[f"key_{i}"] = _list_of(kind).packed, pack_sorted(name)
            lines += _spliced_between(i)
        elif kind.plain_dump:
            lines.append(f"        run[{name!r}] = v")
        elif type(kind) is List and kind.item.plain_dump:
            # A tuple or list of plain values packs as the list List.dump would make of it.
            ns[f"dump_{i}"] = kind.dump
            lines.append(f"        run[{name!r}] = v if type(v) is tuple or type(v) is list"
                         f" else dump_{i}(v)")
        else:
            ns[f"dump_{i}"] = kind.dump
            lines.append(f"        run[{name!r}] = dump_{i}(v)")
    if not spliced:
        lines.append("    return pack(run)")
    else:
        lines += [
            "    if run:",
            "        parts.append(pack(run)[1:])",
            "        count += len(run)",
            "    return FIXMAP[count] + b''.join(parts)",
        ]
    return _compile("write", lines, ns)


_WRITERS: dict[type[Any], Callable[[Any], bytes | None]] = {}


def record_writer(cls: type[Any]) -> Callable[[Any], bytes | None]:
    """For a declared class, the function giving ``pack_sorted(dump_record(obj))`` — the bytes —
    or None when a value is unusual (e.g. a list field given as a generator): then the caller
    runs that (hot path of signing)."""
    found = _WRITERS.get(cls)
    if found is None:
        found = _WRITERS[cls] = _writer(cls)
    return found
