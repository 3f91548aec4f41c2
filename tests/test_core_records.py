"""A data record's usual-case check against its full one (spec §6.8).

A vendor makes a :class:`~vrmproto.DataRecord` for every field of every share, so the usual
record — exact types, a short value, sorted distinct purposes — is recognised in one pass
(``DataRecord._usual``) and only anything else runs every check in order (``_check``). On a
corpus of records with each argument varied, both must give the same record or the same error.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from vrmproto import DataRecord, ProtocolError, _vocab


class StrSub(str):
    __slots__ = ()


class IntSub(int):
    pass


FIELDS: list[Any] = ["email", "address.street", "a" * 64, "a" * 65, "Email", "e-mail", "", "1a",
                     "a.", StrSub("email"), 1, None]  # fmt: skip
VALUES: list[Any] = ["ada@example.org", "", "x" * 1024, "x" * 1025, "é" * 1024, "é" * 2049,
                     "\U0001f600" * 1024, "\U0001f600" * 1025, "\ud800" * 1365, "\ud800" * 1366,
                     "x" * 4096, "x" * 4097, StrSub("v"), b"v", None]  # fmt: skip
CATEGORIES: list[Any] = [1, 2, 16, 0, 17, -1, True, IntSub(2), 2.0, "2", None]
SOURCES: list[Any] = ["provided", "observed", "derived", "other", StrSub("provided"), None]
COLLECTED: list[Any] = [0, 1_700_000_000_000, 2**53 - 1, 2**53, -1, True, IntSub(5), 1.0, None]
PURPOSES: list[Any] = [(3,), (1, 16), (2, 3, 5), (3, 2), (3, 3), (), (0,), (17,), (True,),
                       (IntSub(3),), [3], [3, 2], (3.0,), ("3",), None, 3, (1, 2, 17)]  # fmt: skip

BASE = ("email", "ada@example.org", 2, "provided", 1_700_000_000_000, (3,))


def outcome(args: tuple[Any, ...]) -> Any:
    try:
        r = DataRecord(*args)
    except ProtocolError as exc:
        return ("error", type(exc), exc.code, exc.clause, exc.path, exc.detail)
    except (TypeError, ValueError) as exc:
        return ("error", type(exc))
    return ("record", [(getattr(r, f), type(getattr(r, f))) for f in
                       ("field", "value", "category", "source", "collected", "purposes")])


def corpus() -> list[tuple[Any, ...]]:
    out = []
    for i, options in enumerate((FIELDS, VALUES, CATEGORIES, SOURCES, COLLECTED, PURPOSES)):
        for v in options:
            args = list(BASE)
            args[i] = v
            out.append(tuple(args))
    # every pairing of a few unusual values, so a check skipped on one path shows
    out.extend(itertools.product(FIELDS[:4], VALUES[:4], CATEGORIES[:3], SOURCES[:2],
                                 COLLECTED[:2], PURPOSES[:5]))  # fmt: skip
    return out


def test_the_usual_check_agrees_with_every_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """§6.8-1..7: the same record (purposes included) or the same error, for every input."""
    cases = corpus()
    ours = [outcome(args) for args in cases]
    usual = sum(1 for args in cases if DataRecord._usual(_unchecked(args)))
    monkeypatch.setattr(DataRecord, "_usual", lambda self: False)
    _vocab._GOOD_FIELDS.clear()
    reference = [outcome(args) for args in cases]
    for args, a, b in zip(cases, ours, reference, strict=True):
        assert a == b, args
    assert usual > 100  # the usual record is among them


def _unchecked(args: tuple[Any, ...]) -> DataRecord:
    r = object.__new__(DataRecord)
    for name, v in zip(("field", "value", "category", "source", "collected", "purposes"), args,
                       strict=True):  # fmt: skip
        object.__setattr__(r, name, v)
    return r


def test_field_names_are_remembered_only_so_many(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache of valid names is bounded: ever-new names are checked, never kept."""
    monkeypatch.setattr(_vocab, "_GOOD_FIELDS", set())
    monkeypatch.setattr(_vocab, "_GOOD_FIELDS_MAX", 3)
    for i in range(10):
        DataRecord(f"f{i}", "v", 1, "provided", 0, (1,))
    assert {"f0", "f1", "f2"} == _vocab._GOOD_FIELDS
    with pytest.raises(ProtocolError):
        DataRecord("Bad", "v", 1, "provided", 0, (1,))
    assert "Bad" not in _vocab._GOOD_FIELDS
