"""The terms vocabulary and the data-share vocabularies (spec §6). Sans-IO: no clock, no I/O.

A *term* is a short plain-language text a customer proffers ("don't track me outside your own
site"), identified by a stable id and a version and bound to its exact words by the SHA-256 of its
UTF-8 text. It is always cited by a :class:`TermRef` — ``(id, version, hash)`` plus any parameter
values — never by bare name (§6.2-1)::

    >>> ref = TermRef.of(get_term("vrm.delete-after", 1), days=90)
    >>> check_known(TermRef.from_wire(ref.to_wire())).title
    'Delete after a set number of days'

The data-share vocabularies are Kantara Consent Receipt 1.1's sixteen purpose categories and
sixteen personal-data categories (§6.6, §6.7), whose numbers are the wire values, and
:class:`DataRecord`, one datum in the ``vrm-data/1`` standard form a vendor returns data in (§6.8).

Every refusal raises :class:`VocabError`, a :class:`ValueError` that also carries the problem
code (``unknown_term`` or ``invalid_field``), the clause broken and the path of the offending field
relative to the object being checked (``"params.days"``, ``"records[3].category"``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import re
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from vrmproto._errors import Problem, ValidationError, excerpt

__all__ = [
    "DATA_FORMAT",
    "DATA_SOURCES",
    "MAX_DATA_RECORDS",
    "PII_CATEGORIES",
    "PII_CATEGORY_SLUGS",
    "PURPOSES",
    "PURPOSE_SLUGS",
    "ROSTER",
    "STANDARD_FIELDS",
    "DataRecord",
    "DataSource",
    "MatchResult",
    "ParamSpec",
    "ParamValue",
    "Params",
    "Term",
    "TermRef",
    "VocabError",
    "category_label",
    "check_known",
    "check_refs",
    "data_from_wire",
    "data_to_wire",
    "get_term",
    "latest",
    "matches",
    "parse_category",
    "parse_purpose",
    "purpose_label",
    "suggest_category",
]

ParamValue: TypeAlias = int | str
DataSource: TypeAlias = Literal["provided", "observed", "derived"]

#: The standard form a vendor returns the data it holds about a customer in (§6.8).
DATA_FORMAT: Final = "vrm-data/1"
#: Where a datum came from (§6.8-5): the customer gave it, the vendor saw it, or worked it out.
DATA_SOURCES: Final[tuple[DataSource, ...]] = ("provided", "observed", "derived")
#: Most records in one ``vrm-data/1`` document (§6.8-8).
MAX_DATA_RECORDS: Final = 10_000

# Limits (§6.1-1, §6.2-4, §6.3-4, §6.8-2, §6.8-3).
_MAX_ID = 64
_MAX_VERSION = 2**32 - 1
_MAX_PARAMS = 16
_MAX_PARAM_NAME = 32
_MAX_PARAM_STR = 256
_MAX_FIELD = 64
_MAX_VALUE = 4096
# The wire's integer range (§3.3-4): what every JavaScript peer can hold exactly.
_INT_MIN, _INT_MAX = -(2**53 - 1), 2**53 - 1

_ID_RE = re.compile(r"[a-z][a-z0-9-]*(?:\.[A-Za-z0-9][A-Za-z0-9-]*)+")
_PARAM_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
_FIELD_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
#: Field names seen to be valid (§6.8-2), so the usual record skips the pattern; bounded, so
#: ever-new names cannot pin memory.
_GOOD_FIELDS: set[str] = set()
_GOOD_FIELDS_MAX = 4096
_REF_KEYS = frozenset({"id", "version", "hash", "params"})
_RECORD_KEYS = frozenset({"field", "value", "category", "source", "collected", "purposes"})
_DATA_KEYS = frozenset({"format", "records"})


class VocabError(ValidationError, ValueError):
    """A term reference, parameter, category or data record that breaks a rule of §6.

    ``code`` is :attr:`Problem.UNKNOWN_TERM` for a reference to a term the roster does not hold
    with that exact text (§6.2-3) and :attr:`Problem.INVALID_FIELD` for everything else.
    """


def _invalid(detail: str, path: str, clause: str) -> VocabError:
    return VocabError(detail, code=Problem.INVALID_FIELD, clause=clause, path=path)


def _kind(value: object) -> str:
    """The wire-ish name of a value's type, for error messages."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bytes | bytearray | memoryview):
        return "bin"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, float):
        return "float"
    return type(value).__name__


def _is_int(value: object) -> bool:
    """True for a wire integer: a Python int that is not a bool."""
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def _slug(text: str) -> str:
    """Lower-case ``text`` and join its runs of letters and digits with ``-``."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter a term's text refers to (§6.3): its name, type and allowed values.

    An ``"int"`` parameter has an inclusive range ``minimum..maximum``; a ``"str"`` parameter a
    non-empty tuple of allowed ``values``.
    """

    name: str
    type: Literal["int", "str"]
    minimum: int | None = None
    maximum: int | None = None
    values: tuple[str, ...] = ()
    required: bool = True

    def __post_init__(self) -> None:
        if not _PARAM_NAME_RE.fullmatch(self.name) or len(self.name) > _MAX_PARAM_NAME:
            raise ValueError(f"bad parameter name {self.name!r}")
        if self.type == "int":
            if self.minimum is None or self.maximum is None or self.minimum > self.maximum:
                raise ValueError(f"int parameter {self.name!r} needs minimum <= maximum")
            if self.values:
                raise ValueError(f"int parameter {self.name!r} cannot list str values")
        elif self.type == "str":
            if not self.values or self.minimum is not None or self.maximum is not None:
                raise ValueError(f"str parameter {self.name!r} needs allowed values, no range")
        else:
            raise ValueError(f"parameter {self.name!r} has unknown type {self.type!r}")

    def check(self, value: object) -> ParamValue:
        """Return ``value`` if this parameter allows it; raise :class:`VocabError` (§6.3-3)."""
        path = f"params.{self.name}"
        if self.type == "int":
            if not _is_int(value):
                raise _invalid(f"expected int, got {_kind(value)}", path, "§6.3-3")
            assert isinstance(value, int)
            assert self.minimum is not None
            assert self.maximum is not None
            if not self.minimum <= value <= self.maximum:
                raise _invalid(f"{value} is outside {self.minimum}..{self.maximum}", path, "§6.3-3")
            return value
        if not isinstance(value, str):
            raise _invalid(f"expected str, got {_kind(value)}", path, "§6.3-3")
        if value not in self.values:
            allowed = ", ".join(repr(v) for v in self.values)
            raise _invalid(f"{excerpt(value)} is not one of {allowed}", path, "§6.3-3")
        return value

    def describe(self) -> str:
        """A one-line human description, as the spec's tables print it."""
        if self.type == "int":
            allowed = f"int {self.minimum}..{self.maximum}"
        else:
            allowed = "str, one of " + ", ".join(f'"{v}"' for v in self.values)
        return f"{self.name}: {allowed}" + ("" if self.required else " (optional)")


class Params(Mapping[str, ParamValue]):
    """An immutable, hashable map of parameter names to values, in canonical key order.

    Construction checks only the wire shape (§6.3-4): names, value types and sizes. Whether the
    values suit a particular term is :func:`check_known`'s job.
    """

    __slots__ = ("_items", "_map")

    def __init__(self, items: Mapping[str, object] | Iterable[tuple[str, object]] = ()) -> None:
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        if len(pairs) > _MAX_PARAMS:
            raise _invalid(f"{len(pairs)} parameters, at most {_MAX_PARAMS}", "params", "§6.3-4")
        checked: dict[str, ParamValue] = {}
        for name, value in pairs:
            if not isinstance(name, str):
                raise _invalid(f"parameter name must be str, got {_kind(name)}", "params", "§6.3-4")
            path = f"params.{name}"
            if not _PARAM_NAME_RE.fullmatch(name) or len(name) > _MAX_PARAM_NAME:
                where = path if len(name) <= _MAX_PARAM_NAME else "params"
                raise _invalid(f"bad parameter name {excerpt(name)}", where, "§6.3-4")
            if name in checked:
                raise _invalid("parameter given twice", path, "§6.3-4")
            if _is_int(value):
                assert isinstance(value, int)
                if not _INT_MIN <= value <= _INT_MAX:
                    raise _invalid("int outside ±(2^53-1)", path, "§6.3-4")
                checked[name] = value
            elif isinstance(value, str):
                if len(value.encode("utf-8", "surrogatepass")) > _MAX_PARAM_STR:
                    raise _invalid(f"str longer than {_MAX_PARAM_STR} bytes", path, "§6.3-4")
                checked[name] = value
            else:
                raise _invalid(f"expected int or str, got {_kind(value)}", path, "§6.3-4")
        order = sorted(checked, key=lambda n: n.encode())
        self._items: tuple[tuple[str, ParamValue], ...] = tuple((n, checked[n]) for n in order)
        self._map: Mapping[str, ParamValue] = types.MappingProxyType(dict(self._items))

    def __getitem__(self, key: str) -> ParamValue:
        return self._map[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Params):
            return self._items == other._items
        return Mapping.__eq__(self, other)

    def __repr__(self) -> str:
        return f"Params({dict(self._items)!r})"


# --------------------------------------------------------------------------------------------
# Terms
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """A term of the roster (§6.4): immutable once published under its ``(id, version)``.

    ``url`` is set for the IEEE 7012 "MyTerms" agreements, whose official texts live there;
    our ``text`` for those is a summary (§6.4-4).
    """

    id: str
    version: int
    title: str
    text: str
    params: tuple[ParamSpec, ...] = ()
    url: str | None = None

    def __post_init__(self) -> None:
        if not _ID_RE.fullmatch(self.id) or len(self.id) > _MAX_ID:
            raise ValueError(f"bad term id {self.id!r}")
        if not _is_int(self.version) or not 1 <= self.version <= _MAX_VERSION:
            raise ValueError(f"bad version {self.version!r} for {self.id}")
        if not self.text or self.text != self.text.strip() or "\n" in self.text:
            raise ValueError(f"text of {self.id} must be one paragraph, no outer whitespace")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.id} declares a parameter twice")

    @property
    def text_hash(self) -> bytes:
        """SHA-256 of the exact UTF-8 bytes of :attr:`text` (§6.1-3)."""
        return hashlib.sha256(self.text.encode("utf-8")).digest()

    def ref(self, **params: ParamValue) -> TermRef:
        """Shorthand for :meth:`TermRef.of`."""
        return TermRef.of(self, **params)

    def check_params(self, params: Mapping[str, object]) -> Params:
        """Check ``params`` against this term's :class:`ParamSpec` s (§6.3-2, §6.3-3)."""
        specs = {p.name: p for p in self.params}
        for name in params:
            if name not in specs:
                known = ", ".join(specs) or "none"
                raise _invalid(
                    f"{self.id} has no parameter {excerpt(name)} (it has: {known})",
                    f"params.{name}",
                    "§6.3-3",
                )
        for spec in self.params:
            if spec.name in params:
                spec.check(params[spec.name])
            elif spec.required:
                raise _invalid(
                    f"{self.id} requires parameter {spec.name!r}", f"params.{spec.name}", "§6.3-3"
                )
        return params if isinstance(params, Params) else Params(params)


@dataclass(frozen=True, slots=True)
class TermRef:
    """A citation of one term: ``(id, version, hash)`` and the parameter values (§6.2).

    Construction checks the shape only; :func:`check_known` checks it against the roster.
    """

    id: str
    version: int
    hash: bytes
    params: Params = dataclasses.field(default_factory=Params)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            raise _invalid(f"expected str, got {_kind(self.id)}", "id", "§6.2-4")
        if len(self.id) > _MAX_ID or not _ID_RE.fullmatch(self.id):
            raise _invalid(f"{excerpt(self.id)} is not a term id", "id", "§6.1-1")
        if not _is_int(self.version):
            raise _invalid(f"expected int, got {_kind(self.version)}", "version", "§6.2-4")
        if not 1 <= self.version <= _MAX_VERSION:
            raise _invalid(f"{self.version} is outside 1..{_MAX_VERSION}", "version", "§6.1-2")
        if not isinstance(self.hash, bytes):
            raise _invalid(f"expected bin, got {_kind(self.hash)}", "hash", "§6.2-4")
        if len(self.hash) != 32:
            raise _invalid(f"expected 32 bytes, got {len(self.hash)}", "hash", "§6.2-4")
        params: object = self.params
        if not isinstance(params, Params):
            if not isinstance(params, Mapping):
                raise _invalid(f"expected map, got {_kind(params)}", "params", "§6.2-4")
            object.__setattr__(self, "params", Params(params))

    @classmethod
    def of(cls, term: Term, **params: ParamValue) -> TermRef:
        """Cite ``term`` with these parameter values, checked against its specs (§6.3)."""
        return cls(term.id, term.version, term.text_hash, term.check_params(params))

    def to_wire(self) -> dict[str, object]:
        """The msgpack map of §6.2-2, keys in canonical (bytewise-sorted) order."""
        wire: dict[str, object] = {"hash": self.hash, "id": self.id}
        if self.params:
            wire["params"] = dict(self.params)
        wire["version"] = self.version
        return wire

    @classmethod
    def from_wire(cls, obj: object) -> TermRef:
        """Read a decoded term reference; raise :class:`VocabError` naming the bad field."""
        return cls._from_wire(obj)

    @classmethod
    def _from_wire(cls, obj: object) -> TermRef:
        if not isinstance(obj, Mapping):
            raise _invalid(f"term reference must be a map, got {_kind(obj)}", "", "§6.2-2")
        for key in obj:
            if not isinstance(key, str):
                raise _invalid(f"key must be str, got {_kind(key)}", "", "§6.2-4")
            if key not in _REF_KEYS:
                raise _invalid("unknown key in term reference", key, "§6.2-4")
        for key in ("id", "version", "hash"):
            if key not in obj:
                raise _invalid("required key is missing", key, "§6.2-4")
        params = obj.get("params", _NO_PARAMS)
        if "params" in obj:
            if not isinstance(params, Mapping):
                raise _invalid(f"expected map, got {_kind(params)}", "params", "§6.2-4")
            if not params:
                raise _invalid("empty params map must be omitted", "params", "§6.2-5")
        return cls(obj["id"], obj["version"], obj["hash"], params)

    def __repr__(self) -> str:
        extra = f", params={dict(self.params)!r}" if self.params else ""
        return f"TermRef({self.id!r}, {self.version}, {self.hash.hex()[:12]}…{extra})"


_NO_PARAMS = Params()

# The customer terms (§6.4.1). Once published, a text never changes: change means a new version.
_CUSTOMER_TERMS = (
    Term(
        "vrm.no-tracking",
        1,
        "No tracking beyond the first party",
        "Don't track me outside your own site, store or service. You may remember what I do "
        "with you, but you will not follow me anywhere else, and you will not let anyone else "
        "follow me from your site: no third-party cookies, pixels, scripts, fingerprinting or "
        "advertising beacons watching me for you or for them.",
    ),
    Term(
        "vrm.no-third-party",
        1,
        "No sale or sharing with third parties",
        "Don't sell, rent, trade or give away data about me. You may use it yourself, and you "
        "may pass it to someone who works for you only to do what I asked of you, under these "
        "same terms. Nobody else gets it, unless a law makes you hand it over; then you tell "
        "me, if the law lets you.",
    ),
    Term(
        "vrm.purpose-only",
        1,
        "Use only for the stated purpose",
        "Use data about me only for the purpose stated when I shared it or when you collected "
        "it, and for nothing else. If you want to use it for something new, ask me first, and "
        "take my silence as a no.",
    ),
    Term(
        "vrm.delete-after",
        1,
        "Delete after a set number of days",
        "Delete the data I share with you, and what you learn about me, no later than the "
        "number of days I set in this term (days) after you got it. If a law makes you keep "
        "something longer, keep only that, only as long as the law says, and then delete it.",
        params=(ParamSpec("days", "int", minimum=1, maximum=3650),),
    ),
    Term(
        "vrm.return-on-request",
        1,
        "Return my data on request",
        "Data you collect about me is mine as well as yours. When I ask, give me a copy of all "
        "of it (what I gave you, what you saw and what you worked out about me) in the standard "
        "form I name in this term (format), within 30 days and at no charge.",
        params=(ParamSpec("format", "str", values=(DATA_FORMAT,)),),
    ),
)

_MYTERMS_URL = "https://myterms.info/agreements/"


def _myterms(agreement: str, title: str, summary: str) -> Term:
    text = f"Summary of the MyTerms (IEEE 7012) agreement {agreement}, not its official text: "
    return Term(f"myterms.{agreement}", 1, title, text + summary, url=_MYTERMS_URL + agreement)


# The IEEE 7012-2025 "MyTerms" roster (§6.4.2): our one-paragraph summaries, not the official
# texts, which the roster has not yet published in machine-readable form (§6.4-4).
_MYTERMS_TERMS = (
    _myterms(
        "SD-BASE",
        "Service delivery only",
        "you may use the data I give you, and the data you collect while serving me, only to "
        "deliver the service I came to you for; not for advertising, profiling or anything "
        "else, and you share it only as far as delivering that service needs.",
    ),
    _myterms(
        "SD-BASE-DP",
        "Service delivery with data portability",
        "as in SD-BASE, you may use my data only to deliver the service I came to you for; and "
        "when I ask, you give me a copy of the data you hold about me in a portable, "
        "machine-readable form, so that I can keep it or take it elsewhere.",
    ),
    _myterms(
        "PDC-AI",
        "AI training and operations",
        "I agree that the data I share with you may be used to train and to run artificial "
        "intelligence systems, within the limits that agreement sets, and for nothing beyond "
        "them.",
    ),
    _myterms(
        "PDC-GOOD",
        "For the good",
        "I agree that the data I share with you may be used for public-benefit purposes, such "
        "as research or services that serve the public good, within the limits that agreement "
        "sets, and for nothing beyond them.",
    ),
    _myterms(
        "PDC-INTENT",
        "Sharing intent data",
        "I tell you what I intend to buy or do so that you can answer with an offer; you may use "
        "what I share only to reply to that intent, and not to track me, profile me or market "
        "to me afterwards.",
    ),
)

#: Every term this implementation knows, by ``(id, version)`` (§6.4).
ROSTER: Final[Mapping[tuple[str, int], Term]] = types.MappingProxyType(
    {(t.id, t.version): t for t in (*_CUSTOMER_TERMS, *_MYTERMS_TERMS)}
)


def get_term(term_id: str, version: int) -> Term:
    """The roster's term ``(term_id, version)``; :class:`KeyError` if there is none."""
    try:
        return ROSTER[(term_id, version)]
    except KeyError:
        raise KeyError(f"no term {term_id!r} version {version} in the roster") from None


def latest(term_id: str) -> Term:
    """The roster's highest version of ``term_id``; :class:`KeyError` if there is none."""
    versions = [t for (i, _), t in ROSTER.items() if i == term_id]
    if not versions:
        raise KeyError(f"no term {term_id!r} in the roster")
    return max(versions, key=lambda t: t.version)


def check_known(ref: TermRef, roster: Mapping[tuple[str, int], Term] = ROSTER) -> Term:
    """Return the term ``ref`` cites, after checking it is that exact text with valid params.

    Raises :class:`VocabError` with ``unknown_term`` if ``(id, version)`` is not in ``roster``
    or the hash is not that of its text (§6.2-3), ``invalid_field`` if the params do not suit
    the term (§6.3-3).
    """
    term = roster.get((ref.id, ref.version))
    if term is None:
        raise VocabError(
            f"no term {ref.id!r} version {ref.version} is known",
            code=Problem.UNKNOWN_TERM,
            clause="§6.2-3",
            path="id",
        )
    if term.text_hash != ref.hash:
        raise VocabError(
            f"hash does not match the text of {ref.id!r} version {ref.version}",
            code=Problem.UNKNOWN_TERM,
            clause="§6.2-3",
            path="hash",
        )
    term.check_params(ref.params)
    return term


def check_refs(
    refs: Sequence[TermRef], roster: Mapping[tuple[str, int], Term] = ROSTER
) -> tuple[Term, ...]:
    """:func:`check_known` each of ``refs``, and refuse a list citing one id twice (§6.2-6).

    Error paths are prefixed with the index (``"[2].hash"``).
    """
    seen: set[str] = set()
    terms: list[Term] = []
    for i, ref in enumerate(refs):
        if ref.id in seen:
            raise _invalid(f"term {ref.id!r} cited twice", f"[{i}].id", "§6.2-6")
        seen.add(ref.id)
        try:
            terms.append(check_known(ref, roster))
        except VocabError as exc:
            path = f"[{i}]" + (f".{exc.path}" if exc.path else "")
            raise VocabError(exc.detail, code=exc.code, clause=exc.clause, path=path) from None
    return tuple(terms)


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The outcome of :func:`matches`: offered refs split, order kept (§6.5)."""

    accepted: tuple[TermRef, ...]
    refused: tuple[TermRef, ...]

    @property
    def complete(self) -> bool:
        """True when something was offered and every offered term is acceptable."""
        return bool(self.accepted) and not self.refused

    @property
    def refused_ids(self) -> tuple[str, ...]:
        """The ids of the refused refs, for the reasons of a reject or counter (§6.5-5)."""
        return tuple(r.id for r in self.refused)


def matches(offered: Sequence[TermRef], acceptable: Iterable[str]) -> MatchResult:
    """Split ``offered`` by whether each ref's id is one the vendor accepts (§6.5-4).

    Matching is by id only; parameter values do not affect it in this version. Run
    :func:`check_known` (or :func:`check_refs`) first: this does not look at hashes.
    """
    ids = frozenset(acceptable)
    accepted = tuple(r for r in offered if r.id in ids)
    refused = tuple(r for r in offered if r.id not in ids)
    return MatchResult(accepted, refused)


# --------------------------------------------------------------------------------------------
# Kantara Consent Receipt 1.1 vocabularies (§6.6, §6.7)
# --------------------------------------------------------------------------------------------

#: Kantara CR 1.1 ``purposeCategory``: wire number → name (§6.6).
PURPOSES: Final[Mapping[int, str]] = types.MappingProxyType(
    {
        1: "Core Function",
        2: "Contracted Service",
        3: "Delivery",
        4: "Contact Requested",
        5: "Personalized Experience",
        6: "Marketing",
        7: "Marketing Third Parties",
        8: "Sharing for Delivery",
        9: "Sharing for Marketing",
        10: "3rd-Party Sharing for Core Function",
        11: "3rd-Party Sharing for Others",
        12: "Legally Required Data Retention",
        13: "Required by Law Enforcement or Government",
        14: "Protecting Your Health",
        15: "Protecting Our Interests",
        16: "Improve Performance",
    }
)

#: The short name a person types for each purpose (``--purpose delivery``).
PURPOSE_SLUGS: Final[Mapping[int, str]] = types.MappingProxyType(
    {
        1: "core-function",
        2: "contracted-service",
        3: "delivery",
        4: "contact",
        5: "personalization",
        6: "marketing",
        7: "marketing-third-parties",
        8: "sharing-for-delivery",
        9: "sharing-for-marketing",
        10: "third-party-core",
        11: "third-party-other",
        12: "legal-retention",
        13: "law-enforcement",
        14: "health",
        15: "our-interests",
        16: "performance",
    }
)

#: Kantara CR 1.1 ``piiCategory``: wire number → name (§6.7).
PII_CATEGORIES: Final[Mapping[int, str]] = types.MappingProxyType(
    {
        1: "Biographical",
        2: "Contact",
        3: "Biometric",
        4: "Communications/Social",
        5: "Network/Service",
        6: "Health",
        7: "Financial",
        8: "Official ID",
        9: "Social Benefit",
        10: "Judicial",
        11: "Asset",
        12: "HR",
        13: "Mental Health",
        14: "Membership",
        15: "Behavioral",
        16: "Profiling",
    }
)

#: The short name a person types for each personal-data category (``--category contact``).
PII_CATEGORY_SLUGS: Final[Mapping[int, str]] = types.MappingProxyType(
    {
        1: "biographical",
        2: "contact",
        3: "biometric",
        4: "communications",
        5: "network",
        6: "health",
        7: "financial",
        8: "official-id",
        9: "social-benefit",
        10: "judicial",
        11: "asset",
        12: "hr",
        13: "mental-health",
        14: "membership",
        15: "behavioral",
        16: "profiling",
    }
)


def _spellings(names: Mapping[int, str], slugs: Mapping[int, str]) -> Mapping[str, int]:
    table: dict[str, int] = {}
    for n, name in names.items():
        for spelling in (slugs[n], _slug(name)):
            if table.setdefault(spelling, n) != n:
                raise AssertionError(f"ambiguous spelling {spelling!r}")
    return types.MappingProxyType(table)


_PURPOSE_SPELLINGS = _spellings(PURPOSES, PURPOSE_SLUGS)
_CATEGORY_SPELLINGS = _spellings(PII_CATEGORIES, PII_CATEGORY_SLUGS)


def _label(table: Mapping[int, str], n: int, what: str, clause: str) -> str:
    if _is_int(n) and n in table:
        return table[n]
    raise _invalid(f"{excerpt(n)} is not a {what} number (1..{len(table)})", "", clause)


def _parse(
    text: str | int,
    names: Mapping[int, str],
    slugs: Mapping[int, str],
    spellings: Mapping[str, int],
    what: str,
) -> int:
    if _is_int(text):
        assert isinstance(text, int)
        if text in names:
            return text
    elif isinstance(text, str):
        known = _PARSED.get((text, id(spellings))) if type(text) is str else None
        if known is not None:
            return known
        stripped = text.strip()
        # A bare number, or Kantara's display form "N - Name".
        number, _, rest = stripped.partition(" - ")
        if number.isascii() and number.isdigit():
            n = int(number)
            if n in names and (not rest or _slug(rest) == _slug(names[n])):
                return _remember(text, spellings, n)
        elif found := spellings.get(_slug(stripped)):
            return _remember(text, spellings, found)
    options = ", ".join(slugs.values())
    raise ValueError(f"{text!r} is not a {what}: give 1..{len(names)}, a name, or one of {options}")


#: What :func:`_parse` read from text, by (text, id of the table of spellings — one of the two
#: module constants): a sender names the same purposes and categories share after share. Only
#: exact ``str`` texts, at most ``_PARSED_MAX`` of them, so ever-new texts cannot pin memory.
_PARSED: dict[tuple[str, int], int] = {}
_PARSED_MAX = 1024


def _remember(text: str, spellings: Mapping[str, int], n: int) -> int:
    if type(text) is str and len(_PARSED) < _PARSED_MAX:
        _PARSED[(text, id(spellings))] = n
    return n


def purpose_label(n: int) -> str:
    """The Kantara name of purpose category ``n``; :class:`VocabError` if there is none."""
    return _label(PURPOSES, n, "purpose", "§6.6-1")


def category_label(n: int) -> str:
    """The Kantara name of personal-data category ``n``; :class:`VocabError` if none."""
    return _label(PII_CATEGORIES, n, "personal-data category", "§6.7-1")


def parse_purpose(text: str | int) -> int:
    """A purpose number from what a person typed: ``3``, ``"Delivery"``, ``"core-function"``.

    Raises :class:`ValueError` naming the accepted short names.
    """
    return _parse(text, PURPOSES, PURPOSE_SLUGS, _PURPOSE_SPELLINGS, "purpose")


def parse_category(text: str | int) -> int:
    """A personal-data category number from ``2``, ``"Contact"``, ``"official-id"`` and so on."""
    return _parse(text, PII_CATEGORIES, PII_CATEGORY_SLUGS, _CATEGORY_SPELLINGS, "category")


# --------------------------------------------------------------------------------------------
# vrm-data/1: the standard form for returned data (§6.8)
# --------------------------------------------------------------------------------------------

#: Standard field names and their Kantara personal-data category (§6.8-2).
STANDARD_FIELDS: Final[Mapping[str, int]] = types.MappingProxyType(
    {
        "name": 1,
        "given_name": 1,
        "family_name": 1,
        "nickname": 1,
        "birthdate": 1,
        "gender": 1,
        "language": 1,
        "email": 2,
        "phone": 2,
        "street": 2,
        "city": 2,
        "region": 2,
        "postcode": 2,
        "country": 2,
        "ip_address": 5,
        "device_id": 5,
        "user_agent": 5,
        "payment_card": 7,
        "iban": 7,
        "national_id": 8,
        "passport_number": 8,
        "tax_id": 8,
        "membership_id": 14,
        "purchase": 15,
        "interest": 16,
    }
)

_FIELD_ALIASES: Mapping[str, str] = {
    "full_name": "name",
    "first_name": "given_name",
    "last_name": "family_name",
    "surname": "family_name",
    "dob": "birthdate",
    "date_of_birth": "birthdate",
    "birthday": "birthdate",
    "e_mail": "email",
    "email_address": "email",
    "mail": "email",
    "mobile": "phone",
    "telephone": "phone",
    "tel": "phone",
    "phone_number": "phone",
    "address": "street",
    "street_address": "street",
    "address_line1": "street",
    "address_line2": "street",
    "town": "city",
    "locality": "city",
    "state": "region",
    "province": "region",
    "county": "region",
    "zip": "postcode",
    "zip_code": "postcode",
    "postal_code": "postcode",
    "post_code": "postcode",
    "ip": "ip_address",
    "passport": "passport_number",
    "ssn": "national_id",
    "loyalty_id": "membership_id",
    "member_id": "membership_id",
}

_ADDRESSISH = frozenset(
    {
        "address", "street", "city", "town", "postcode", "postal", "zip", "country", "region",
        "province", "phone", "mobile", "tel", "telephone", "fax", "email", "mail", "contact",
    }
)  # fmt: skip


def _norm_field(name: str) -> str:
    return "_".join(re.findall(r"[a-z0-9]+", name))


@functools.lru_cache(maxsize=1024)  # a vendor sees the same few field names in every share
def suggest_category(field_name: str) -> int:
    """A likely Kantara personal-data category for a field name (§6.8-2).

    Standard names and common synonyms map by table (``email`` → 2 Contact, ``birthdate`` →
    1 Biographical, ``iban`` → 7 Financial); other address- or contact-like names give 2, and
    anything else 1 (Biographical). A suggestion only: the vendor knows its data best.
    """
    lowered = field_name.lower()
    norm = _norm_field(lowered)
    for name in (norm, _norm_field(lowered.rpartition(".")[2])):
        key = _FIELD_ALIASES.get(name, name)
        if key in STANDARD_FIELDS:
            return STANDARD_FIELDS[key]
    if _ADDRESSISH.intersection(norm.split("_")):
        return 2
    return 1


@dataclass(frozen=True, slots=True)
class DataRecord:
    """One datum a vendor holds about a customer, in the ``vrm-data/1`` form (§6.8).

    ``purposes`` is kept sorted without duplicates; ``collected`` is milliseconds since the Unix
    epoch (the caller's clock, never ours).
    """

    field: str
    value: str
    category: int
    source: DataSource
    collected: int
    purposes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self._usual():
            self._check()

    def _usual(self) -> bool:
        """True for the usual record, which every check of :meth:`_check` passes and whose
        ``purposes`` are already a sorted tuple of distinct numbers (a vendor makes one per
        field of every share): exact types, a value short enough for any UTF-8 to fit."""
        purposes = self.purposes
        field, value, category, collected = self.field, self.value, self.category, self.collected
        if (type(field) is not str or type(value) is not str or type(category) is not int
                or type(collected) is not int or type(purposes) is not tuple or not purposes):
            return False
        if len(value) > _MAX_VALUE // 4 or not 0 <= collected <= _INT_MAX:
            return False  # (at most 4 UTF-8 bytes a character, surrogates 3)
        if category not in PII_CATEGORIES or self.source not in DATA_SOURCES:
            return False
        if field not in _GOOD_FIELDS:
            if len(field) > _MAX_FIELD or not _FIELD_RE.fullmatch(field):
                return False
            if len(_GOOD_FIELDS) < _GOOD_FIELDS_MAX:
                _GOOD_FIELDS.add(field)
        prev = 0
        for p in purposes:
            if type(p) is not int or p <= prev or p not in PURPOSES:
                return False
            prev = p
        return True

    def _check(self) -> None:
        """Every rule of §6.8-1..7, in order; ``purposes`` then sorted without duplicates."""
        if not isinstance(self.field, str):
            raise _invalid(f"expected str, got {_kind(self.field)}", "field", "§6.8-1")
        if len(self.field) > _MAX_FIELD or not _FIELD_RE.fullmatch(self.field):
            raise _invalid(f"{self.field!r} is not a field name", "field", "§6.8-2")
        if not isinstance(self.value, str):
            raise _invalid(f"expected str, got {_kind(self.value)}", "value", "§6.8-1")
        if len(self.value.encode("utf-8", "surrogatepass")) > _MAX_VALUE:
            raise _invalid(f"longer than {_MAX_VALUE} bytes", "value", "§6.8-3")
        if not _is_int(self.category):
            raise _invalid(f"expected int, got {_kind(self.category)}", "category", "§6.8-1")
        if self.category not in PII_CATEGORIES:
            raise _invalid(f"{self.category} is not a category (1..16)", "category", "§6.7-1")
        if not isinstance(self.source, str):
            raise _invalid(f"expected str, got {_kind(self.source)}", "source", "§6.8-1")
        if self.source not in DATA_SOURCES:
            raise _invalid(
                f"{self.source!r} is not one of {', '.join(DATA_SOURCES)}", "source", "§6.8-5"
            )
        if not _is_int(self.collected):
            raise _invalid(f"expected int, got {_kind(self.collected)}", "collected", "§6.8-1")
        if not 0 <= self.collected <= _INT_MAX:
            raise _invalid("must be milliseconds since the epoch, >= 0", "collected", "§6.8-6")
        if not isinstance(self.purposes, (tuple, list)):  # faster than the union
            raise _invalid(f"expected array, got {_kind(self.purposes)}", "purposes", "§6.8-1")
        for i, p in enumerate(self.purposes):
            if not _is_int(p):
                raise _invalid(f"expected int, got {_kind(p)}", f"purposes[{i}]", "§6.8-1")
            if p not in PURPOSES:
                raise _invalid(f"{p} is not a purpose (1..16)", f"purposes[{i}]", "§6.6-1")
        if not self.purposes:
            raise _invalid("at least one purpose is required", "purposes", "§6.8-7")
        object.__setattr__(self, "purposes", tuple(sorted(set(self.purposes))))

    def to_wire(self) -> dict[str, object]:
        """The msgpack map of §6.8-1, keys in canonical (bytewise-sorted) order."""
        return {
            "category": self.category,
            "collected": self.collected,
            "field": self.field,
            "purposes": list(self.purposes),
            "source": self.source,
            "value": self.value,
        }

    @classmethod
    def from_wire(cls, obj: object) -> DataRecord:
        """Read a decoded record; raise :class:`VocabError` naming the bad field."""
        if not isinstance(obj, Mapping):
            raise _invalid(f"data record must be a map, got {_kind(obj)}", "", "§6.8-1")
        for key in obj:
            if not isinstance(key, str):
                raise _invalid(f"key must be str, got {_kind(key)}", "", "§6.8-1")
            if key not in _RECORD_KEYS:
                raise _invalid("unknown key in data record", key, "§6.8-1")
        for key in sorted(_RECORD_KEYS):
            if key not in obj:
                raise _invalid("required key is missing", key, "§6.8-1")
        purposes = obj["purposes"]
        if not isinstance(purposes, list | tuple):
            raise _invalid(f"expected array, got {_kind(purposes)}", "purposes", "§6.8-1")
        if any(_is_int(a) and _is_int(b) and a >= b for a, b in itertools.pairwise(purposes)):
            raise _invalid("must be strictly ascending", "purposes", "§6.8-7")
        return cls(
            obj["field"],
            obj["value"],
            obj["category"],
            obj["source"],
            obj["collected"],
            tuple(purposes),
        )


def data_to_wire(records: Iterable[DataRecord]) -> dict[str, object]:
    """A ``vrm-data/1`` document (§6.8-8): ``{"format": DATA_FORMAT, "records": [...]}``."""
    wire = [r.to_wire() for r in records]
    if len(wire) > MAX_DATA_RECORDS:
        raise _invalid(f"{len(wire)} records, at most {MAX_DATA_RECORDS}", "records", "§6.8-8")
    return {"format": DATA_FORMAT, "records": wire}


def data_from_wire(obj: object) -> tuple[DataRecord, ...]:
    """Read a ``vrm-data/1`` document; raise :class:`VocabError` naming the bad field."""
    if not isinstance(obj, Mapping):
        raise _invalid(f"data document must be a map, got {_kind(obj)}", "", "§6.8-8")
    for key in obj:
        if not isinstance(key, str) or key not in _DATA_KEYS:
            raise _invalid("unknown key in data document", str(key), "§6.8-8")
    if obj.get("format") != DATA_FORMAT:
        raise _invalid(f"must be {DATA_FORMAT!r}", "format", "§6.8-8")
    records = obj.get("records")
    if not isinstance(records, list | tuple):
        raise _invalid(f"expected array, got {_kind(records)}", "records", "§6.8-8")
    if len(records) > MAX_DATA_RECORDS:
        raise _invalid(f"{len(records)} records, at most {MAX_DATA_RECORDS}", "records", "§6.8-8")
    out: list[DataRecord] = []
    for i, item in enumerate(records):
        try:
            out.append(DataRecord.from_wire(item))
        except VocabError as exc:
            path = f"records[{i}]" + (f".{exc.path}" if exc.path else "")
            raise VocabError(exc.detail, code=exc.code, clause=exc.clause, path=path) from None
    return tuple(out)
