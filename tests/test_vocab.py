"""Tests for the terms vocabulary and data-share vocabularies (spec §6, vrmproto/_vocab.py)."""

from __future__ import annotations

import contextlib
import hashlib
import re
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vrmproto._errors import Problem
from vrmproto._vocab import (
    DATA_FORMAT,
    DATA_SOURCES,
    MAX_DATA_RECORDS,
    PII_CATEGORIES,
    PII_CATEGORY_SLUGS,
    PURPOSE_SLUGS,
    PURPOSES,
    ROSTER,
    STANDARD_FIELDS,
    DataRecord,
    Params,
    ParamSpec,
    Term,
    TermRef,
    VocabError,
    category_label,
    check_known,
    check_refs,
    data_from_wire,
    data_to_wire,
    get_term,
    latest,
    matches,
    parse_category,
    parse_purpose,
    purpose_label,
    suggest_category,
)

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "spec" / "06-terms-vocabulary.md"
SOURCE = ROOT / "vrmproto" / "_vocab.py"

DELETE_AFTER = get_term("vrm.delete-after", 1)
RETURN = get_term("vrm.return-on-request", 1)
NO_TRACKING = get_term("vrm.no-tracking", 1)


def roundtrip(obj: object) -> object:
    """Through real msgpack bytes, the way a peer would see it."""
    return msgpack.unpackb(msgpack.packb(obj, use_bin_type=True), raw=False)


def refused(exc: pytest.ExceptionInfo[ValueError], code: Problem, path: str, clause: str) -> None:
    err = exc.value
    assert isinstance(err, VocabError)
    assert err.code is code
    assert err.path == path
    assert err.clause == clause
    assert path in str(err)


# ---------------------------------------------------------------------------------------------
# The roster
# ---------------------------------------------------------------------------------------------

REQUIRED_IDS = [
    "vrm.no-tracking",
    "vrm.no-third-party",
    "vrm.purpose-only",
    "vrm.delete-after",
    "vrm.return-on-request",
    "myterms.SD-BASE",
    "myterms.SD-BASE-DP",
    "myterms.PDC-AI",
    "myterms.PDC-GOOD",
    "myterms.PDC-INTENT",
]


@pytest.mark.parametrize("term_id", REQUIRED_IDS)
def test_every_required_term_is_in_the_roster(term_id: str) -> None:
    term = get_term(term_id, 1)
    assert term.id == term_id
    assert latest(term_id) is term
    assert ROSTER[(term_id, 1)] is term
    assert term.text_hash == hashlib.sha256(term.text.encode()).digest()
    # §6.1-5: texts are ASCII, one paragraph, copyable from the spec exactly.
    assert term.text.isascii()
    assert "\n" not in term.text
    assert term.title


@pytest.mark.parametrize("key", list(ROSTER))
def test_every_roster_entry_round_trips_and_checks(key: tuple[str, int]) -> None:
    term = ROSTER[key]
    params: dict[str, int | str] = {}
    for spec in term.params:
        params[spec.name] = spec.minimum if spec.type == "int" else spec.values[0]  # type: ignore[assignment]
    ref = TermRef.of(term, **params)
    assert ref.hash == term.text_hash
    again = TermRef.from_wire(roundtrip(ref.to_wire()))
    assert again == ref
    assert hash(again) == hash(ref)
    assert check_known(again) is term


def test_myterms_entries_have_urls_and_say_they_are_summaries() -> None:
    for term_id in REQUIRED_IDS:
        term = get_term(term_id, 1)
        if term_id.startswith("myterms."):
            agreement = term_id.removeprefix("myterms.")
            assert term.url == f"https://myterms.info/agreements/{agreement}"
            assert term.text.startswith(
                f"Summary of the MyTerms (IEEE 7012) agreement {agreement},"
            )
            assert "not its official text" in term.text
        else:
            assert term.url is None


def test_lookup_misses_raise_key_error() -> None:
    with pytest.raises(KeyError):
        get_term("vrm.no-tracking", 2)
    with pytest.raises(KeyError):
        get_term("vrm.nope", 1)
    with pytest.raises(KeyError):
        latest("vrm.nope")


def test_roster_is_read_only() -> None:
    with pytest.raises(TypeError):
        ROSTER[("vrm.x", 1)] = NO_TRACKING  # type: ignore[index]


def test_term_rejects_bad_definitions() -> None:
    with pytest.raises(ValueError, match="term id"):
        Term("NoDots", 1, "t", "text")
    with pytest.raises(ValueError, match="version"):
        Term("x.y", 0, "t", "text")
    with pytest.raises(ValueError, match="one paragraph"):
        Term("x.y", 1, "t", "two\nlines")
    with pytest.raises(ValueError, match="twice"):
        Term("x.y", 1, "t", "text", params=(ParamSpec("a", "str", values=("b",)),) * 2)
    with pytest.raises(ValueError):
        ParamSpec("a", "int")
    with pytest.raises(ValueError):
        ParamSpec("a", "str")
    with pytest.raises(ValueError):
        ParamSpec("Bad", "int", minimum=1, maximum=2)


# ---------------------------------------------------------------------------------------------
# Term references on the wire (§6.2)
# ---------------------------------------------------------------------------------------------


def test_to_wire_shape_and_canonical_key_order() -> None:
    wire = TermRef.of(DELETE_AFTER, days=90).to_wire()
    assert list(wire) == ["hash", "id", "params", "version"]
    assert wire == {
        "hash": DELETE_AFTER.text_hash,
        "id": "vrm.delete-after",
        "params": {"days": 90},
        "version": 1,
    }
    bare = TermRef.of(NO_TRACKING).to_wire()
    assert list(bare) == ["hash", "id", "version"]  # §6.2-5: params omitted when empty


@given(days=st.integers(1, 3650))
def test_roundtrip_any_valid_days(days: int) -> None:
    ref = TermRef.of(DELETE_AFTER, days=days)
    assert TermRef.from_wire(roundtrip(ref.to_wire())) == ref
    assert check_known(ref) is DELETE_AFTER
    assert ref.params["days"] == days


def test_hash_mismatch_is_unknown_term() -> None:
    wire = TermRef.of(NO_TRACKING).to_wire()
    wire["hash"] = hashlib.sha256(b"Track me wherever you like.").digest()
    ref = TermRef.from_wire(wire)  # the shape is fine...
    with pytest.raises(ValueError) as exc:  # ...but the text is not the one we know
        check_known(ref)
    refused(exc, Problem.UNKNOWN_TERM, "hash", "§6.2-3")


def test_hash_of_a_different_known_term_is_refused() -> None:
    ref = TermRef("vrm.no-tracking", 1, get_term("vrm.purpose-only", 1).text_hash)
    with pytest.raises(ValueError) as exc:
        check_known(ref)
    refused(exc, Problem.UNKNOWN_TERM, "hash", "§6.2-3")


@pytest.mark.parametrize(("term_id", "version"), [("vrm.no-tracking", 2), ("com.example.x", 1)])
def test_unknown_id_or_version_is_unknown_term(term_id: str, version: int) -> None:
    with pytest.raises(ValueError) as exc:
        check_known(TermRef(term_id, version, NO_TRACKING.text_hash))
    refused(exc, Problem.UNKNOWN_TERM, "id", "§6.2-3")


def test_check_known_accepts_a_custom_roster() -> None:
    mine = Term("com.example.no-calls", 1, "No calls", "Don't phone me; write.")
    assert check_known(TermRef.of(mine), {(mine.id, 1): mine}) is mine
    with pytest.raises(VocabError):
        check_known(TermRef.of(mine))


GOOD = TermRef.of(DELETE_AFTER, days=30).to_wire()


@pytest.mark.parametrize(
    ("wire", "path", "clause"),
    [
        ({k: v for k, v in GOOD.items() if k != "id"}, "id", "§6.2-4"),
        ({k: v for k, v in GOOD.items() if k != "version"}, "version", "§6.2-4"),
        ({k: v for k, v in GOOD.items() if k != "hash"}, "hash", "§6.2-4"),
        ({**GOOD, "extra": 1}, "extra", "§6.2-4"),
        ({**GOOD, "id": 7}, "id", "§6.2-4"),
        ({**GOOD, "id": "no-tracking"}, "id", "§6.1-1"),  # a bare name is not an id
        ({**GOOD, "id": "VRM.no-tracking"}, "id", "§6.1-1"),
        ({**GOOD, "id": "vrm." + "x" * 64}, "id", "§6.1-1"),
        ({**GOOD, "version": "1"}, "version", "§6.2-4"),
        ({**GOOD, "version": True}, "version", "§6.2-4"),
        ({**GOOD, "version": 1.0}, "version", "§6.2-4"),
        ({**GOOD, "version": 0}, "version", "§6.1-2"),
        ({**GOOD, "version": 2**32}, "version", "§6.1-2"),
        ({**GOOD, "hash": DELETE_AFTER.text_hash.hex()}, "hash", "§6.2-4"),
        ({**GOOD, "hash": DELETE_AFTER.text_hash[:31]}, "hash", "§6.2-4"),
        ({**GOOD, "hash": DELETE_AFTER.text_hash + b"\0"}, "hash", "§6.2-4"),
        ({**GOOD, "params": {}}, "params", "§6.2-5"),
        ({**GOOD, "params": [["days", 30]]}, "params", "§6.2-4"),
        ({**GOOD, "params": {"days": True}}, "params.days", "§6.3-4"),
        ({**GOOD, "params": {"days": 1.5}}, "params.days", "§6.3-4"),
        ({**GOOD, "params": {"days": 2**64}}, "params.days", "§6.3-4"),
        ({**GOOD, "params": {"Days": 30}}, "params.Days", "§6.3-4"),
        ({**GOOD, "params": {1: 30}}, "params", "§6.3-4"),
        ({**GOOD, "params": {"days": "x" * 257}}, "params.days", "§6.3-4"),
        ({**GOOD, "params": {f"p{i}": i for i in range(17)}}, "params", "§6.3-4"),
    ],
)
def test_from_wire_refuses_bad_shapes(wire: dict[object, object], path: str, clause: str) -> None:
    with pytest.raises(ValueError) as exc:
        TermRef.from_wire(wire)
    refused(exc, Problem.INVALID_FIELD, path, clause)


@pytest.mark.parametrize("obj", [None, [], "vrm.no-tracking", b"", 1, {1: 2}])
def test_from_wire_refuses_non_maps_and_non_str_keys(obj: object) -> None:
    with pytest.raises(VocabError) as exc:
        TermRef.from_wire(obj)
    assert exc.value.code is Problem.INVALID_FIELD


# Anything msgpack could decode to.
ANY_WIRE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda c: st.lists(c) | st.dictionaries(st.text() | st.integers(), c),
)


@given(ANY_WIRE)
def test_from_wire_raises_only_vocab_error(obj: object) -> None:
    """The error contract: a TermRef or a VocabError, never anything else."""
    with contextlib.suppress(VocabError):
        TermRef.from_wire(obj)


@given(
    st.fixed_dictionaries(
        {
            "id": st.sampled_from([t.id for t in ROSTER.values()]) | st.text(max_size=8),
            "version": st.integers(-2, 3) | st.booleans(),
            "hash": st.sampled_from([t.text_hash for t in ROSTER.values()]) | st.binary(),
        },
        optional={"params": st.dictionaries(st.text(max_size=8), st.integers() | st.text())},
    )
)
def test_from_wire_then_check_known_raises_only_vocab_error(obj: dict[str, object]) -> None:
    with contextlib.suppress(VocabError):
        check_known(TermRef.from_wire(obj))


def test_params_are_immutable_hashable_and_ordered() -> None:
    p = Params({"b": 1, "a": "x"})
    assert list(p) == ["a", "b"]
    assert p == {"a": "x", "b": 1}
    assert p == Params([("b", 1), ("a", "x")])
    assert hash(p) == hash(Params({"a": "x", "b": 1}))
    assert len(p) == 2
    with pytest.raises(TypeError):
        p["a"] = "y"  # type: ignore[index]
    ref = TermRef("vrm.delete-after", 1, DELETE_AFTER.text_hash, {"days": 5})  # type: ignore[arg-type]
    assert isinstance(ref.params, Params)
    assert {ref, TermRef.of(DELETE_AFTER, days=5)} == {ref}


def test_bare_name_cannot_be_a_ref() -> None:
    with pytest.raises(VocabError):
        TermRef.from_wire("vrm.no-tracking")
    with pytest.raises(VocabError):
        TermRef.from_wire({"id": "vrm.no-tracking", "version": 1})


# ---------------------------------------------------------------------------------------------
# Parameters (§6.3)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [0, -1, 3651, 10**6])
def test_days_out_of_range(days: int) -> None:
    with pytest.raises(ValueError) as exc:
        TermRef.of(DELETE_AFTER, days=days)
    refused(exc, Problem.INVALID_FIELD, "params.days", "§6.3-3")


@pytest.mark.parametrize("days", ["90", True, None, 9.0])
def test_days_wrong_type(days: object) -> None:
    with pytest.raises(ValueError) as exc:
        TermRef.of(DELETE_AFTER, days=days)  # type: ignore[arg-type]
    refused(exc, Problem.INVALID_FIELD, "params.days", "§6.3-3")


def test_unknown_param_refused() -> None:
    with pytest.raises(ValueError) as exc:
        TermRef.of(DELETE_AFTER, days=3, weeks=1)
    refused(exc, Problem.INVALID_FIELD, "params.weeks", "§6.3-3")
    with pytest.raises(ValueError) as exc:
        TermRef.of(NO_TRACKING, days=3)
    refused(exc, Problem.INVALID_FIELD, "params.days", "§6.3-3")


def test_missing_required_param_refused() -> None:
    with pytest.raises(ValueError) as exc:
        TermRef.of(DELETE_AFTER)
    refused(exc, Problem.INVALID_FIELD, "params.days", "§6.3-3")


def test_str_param_allowed_values() -> None:
    assert TermRef.of(RETURN, format=DATA_FORMAT).params == {"format": "vrm-data/1"}
    with pytest.raises(ValueError) as exc:
        TermRef.of(RETURN, format="csv")
    refused(exc, Problem.INVALID_FIELD, "params.format", "§6.3-3")
    with pytest.raises(ValueError) as exc:
        TermRef.of(RETURN, format=1)
    refused(exc, Problem.INVALID_FIELD, "params.format", "§6.3-3")


def test_check_known_validates_params_from_the_wire() -> None:
    wire = {**TermRef.of(DELETE_AFTER, days=1).to_wire(), "params": {"days": 4000}}
    ref = TermRef.from_wire(wire)  # shape is fine
    with pytest.raises(ValueError) as exc:
        check_known(ref)
    refused(exc, Problem.INVALID_FIELD, "params.days", "§6.3-3")
    bare = {k: v for k, v in wire.items() if k != "params"}
    with pytest.raises(VocabError, match="requires parameter 'days'"):
        check_known(TermRef.from_wire(bare))


def test_optional_param_may_be_omitted() -> None:
    term = Term("com.example.t", 1, "t", "Text.", params=(
        ParamSpec("n", "int", minimum=1, maximum=2, required=False),))  # fmt: skip
    assert TermRef.of(term).params == {}
    assert TermRef.of(term, n=2).params == {"n": 2}
    assert "optional" in term.params[0].describe()


# ---------------------------------------------------------------------------------------------
# Lists of refs and matching (§6.2-6, §6.5)
# ---------------------------------------------------------------------------------------------


def test_check_refs_refuses_duplicates_and_prefixes_paths() -> None:
    a = TermRef.of(NO_TRACKING)
    b = TermRef.of(DELETE_AFTER, days=7)
    assert check_refs([a, b]) == (NO_TRACKING, DELETE_AFTER)
    with pytest.raises(ValueError) as exc:
        check_refs([a, b, a])
    refused(exc, Problem.INVALID_FIELD, "[2].id", "§6.2-6")
    bad = TermRef(NO_TRACKING.id, 1, bytes(32))
    with pytest.raises(ValueError) as exc:
        check_refs([b, bad])
    refused(exc, Problem.UNKNOWN_TERM, "[1].hash", "§6.2-3")


def test_matches_splits_by_id_keeping_order() -> None:
    offered = [
        TermRef.of(NO_TRACKING),
        TermRef.of(DELETE_AFTER, days=30),
        TermRef.of(get_term("myterms.SD-BASE", 1)),
    ]
    result = matches(offered, ["myterms.SD-BASE", "vrm.no-tracking", "vrm.purpose-only"])
    assert result.accepted == (offered[0], offered[2])
    assert result.refused == (offered[1],)
    assert result.refused_ids == ("vrm.delete-after",)
    assert not result.complete
    everything = matches(offered, (t.id for t in ROSTER.values()))
    assert everything.complete
    assert everything.accepted == tuple(offered)
    assert not matches([], ["vrm.no-tracking"]).complete
    assert matches(offered, []).refused == tuple(offered)


# ---------------------------------------------------------------------------------------------
# Kantara vocabularies (§6.6, §6.7)
# ---------------------------------------------------------------------------------------------

KANTARA_PURPOSES = [
    "Core Function", "Contracted Service", "Delivery", "Contact Requested",
    "Personalized Experience", "Marketing", "Marketing Third Parties", "Sharing for Delivery",
    "Sharing for Marketing", "3rd-Party Sharing for Core Function", "3rd-Party Sharing for Others",
    "Legally Required Data Retention", "Required by Law Enforcement or Government",
    "Protecting Your Health", "Protecting Our Interests", "Improve Performance",
]  # fmt: skip
KANTARA_CATEGORIES = [
    "Biographical", "Contact", "Biometric", "Communications/Social", "Network/Service", "Health",
    "Financial", "Official ID", "Social Benefit", "Judicial", "Asset", "HR", "Mental Health",
    "Membership", "Behavioral", "Profiling",
]  # fmt: skip


def test_kantara_tables_are_exact() -> None:
    assert dict(PURPOSES) == dict(enumerate(KANTARA_PURPOSES, start=1))
    assert dict(PII_CATEGORIES) == dict(enumerate(KANTARA_CATEGORIES, start=1))
    assert set(PURPOSE_SLUGS) == set(PURPOSES)
    assert set(PII_CATEGORY_SLUGS) == set(PII_CATEGORIES)


@pytest.mark.parametrize("n", range(1, 17))
def test_parse_purpose_every_spelling(n: int) -> None:
    name = PURPOSES[n]
    for spelling in (n, str(n), f" {n} ", name, name.upper(), name.lower(), PURPOSE_SLUGS[n],
                     f"{n} - {name}"):  # fmt: skip
        assert parse_purpose(spelling) == n, spelling
    assert purpose_label(n) == name


@pytest.mark.parametrize("n", range(1, 17))
def test_parse_category_every_spelling(n: int) -> None:
    name = PII_CATEGORIES[n]
    for spelling in (n, str(n), name, name.upper(), name.lower(), PII_CATEGORY_SLUGS[n],
                     f"{n} - {name}"):  # fmt: skip
        assert parse_category(spelling) == n, spelling
    assert category_label(n) == name


def test_parse_examples_from_the_cli() -> None:
    assert parse_purpose("delivery") == 3
    assert parse_purpose("contact") == 4
    assert parse_purpose("core-function") == 1
    assert parse_purpose("3rd-party-sharing-for-core-function") == 10
    assert parse_category("contact") == 2
    assert parse_category("official-id") == 8
    assert parse_category("communications/social") == 4
    assert parse_category("Network/Service") == 5


@pytest.mark.parametrize(
    "junk", ["", "  ", "0", "17", "-1", "junk", "deliveries", 0, 17, True, None, 3.0, "3 - Contact",
             "١"],
)  # fmt: skip
def test_parse_refuses_junk(junk: object) -> None:
    with pytest.raises(ValueError, match="is not a"):
        parse_purpose(junk)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a"):
        parse_category(junk)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, 17, -3, True])
def test_labels_refuse_unknown_numbers(n: int) -> None:
    with pytest.raises(ValueError) as exc:
        purpose_label(n)
    refused(exc, Problem.INVALID_FIELD, "", "§6.6-1")
    with pytest.raises(ValueError) as exc:
        category_label(n)
    refused(exc, Problem.INVALID_FIELD, "", "§6.7-1")


# ---------------------------------------------------------------------------------------------
# vrm-data/1 (§6.8)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("email", 2), ("Email", 2), ("e-mail", 2), ("phone", 2), ("mobile", 2), ("street", 2),
        ("city", 2), ("postcode", 2), ("Postal Code", 2), ("zip", 2), ("country", 2),
        ("billing.street", 2), ("home_phone", 2), ("work_email_address", 2), ("address_line1", 2),
        ("name", 1), ("given_name", 1), ("first_name", 1), ("birthdate", 1), ("date_of_birth", 1),
        ("iban", 7), ("passport", 8), ("ip_address", 5), ("loyalty_id", 14),
        ("favourite_colour", 1), ("shoe_size", 1),
    ],
)  # fmt: skip
def test_suggest_category(name: str, category: int) -> None:
    assert suggest_category(name) == category


def test_standard_fields_suggest_their_own_category() -> None:
    for name, category in STANDARD_FIELDS.items():
        assert suggest_category(name) == category
        assert category in PII_CATEGORIES


RECORD = DataRecord("email", "ada@example.org", 2, "provided", 1_767_225_600_000, (3, 1))

records = st.builds(
    DataRecord,
    field=st.sampled_from(list(STANDARD_FIELDS)),
    value=st.text(max_size=50),
    category=st.integers(1, 16),
    source=st.sampled_from(DATA_SOURCES),
    collected=st.integers(0, 2**53 - 1),
    purposes=st.lists(st.integers(1, 16), min_size=1).map(tuple),
)


def test_record_normalises_purposes_and_has_canonical_keys() -> None:
    assert RECORD.purposes == (1, 3)
    wire = RECORD.to_wire()
    assert list(wire) == sorted(wire, key=str.encode)
    assert wire["purposes"] == [1, 3]


@given(st.lists(records, max_size=5))
def test_data_document_roundtrip(recs: list[DataRecord]) -> None:
    doc = data_to_wire(recs)
    assert list(doc) == ["format", "records"]
    assert doc["format"] == DATA_FORMAT
    assert data_from_wire(roundtrip(doc)) == tuple(recs)
    for r in recs:
        assert DataRecord.from_wire(roundtrip(r.to_wire())) == r


GOOD_RECORD = RECORD.to_wire()


@pytest.mark.parametrize(
    ("wire", "path", "clause"),
    [
        ({k: v for k, v in GOOD_RECORD.items() if k != "value"}, "value", "§6.8-1"),
        ({k: v for k, v in GOOD_RECORD.items() if k != "purposes"}, "purposes", "§6.8-1"),
        ({**GOOD_RECORD, "note": "x"}, "note", "§6.8-1"),
        ({**GOOD_RECORD, "field": 3}, "field", "§6.8-1"),
        ({**GOOD_RECORD, "field": "E-mail"}, "field", "§6.8-2"),
        ({**GOOD_RECORD, "field": ""}, "field", "§6.8-2"),
        ({**GOOD_RECORD, "field": "a" * 65}, "field", "§6.8-2"),
        ({**GOOD_RECORD, "value": b"x"}, "value", "§6.8-1"),
        ({**GOOD_RECORD, "value": "x" * 4097}, "value", "§6.8-3"),
        ({**GOOD_RECORD, "category": "contact"}, "category", "§6.8-1"),
        ({**GOOD_RECORD, "category": 17}, "category", "§6.7-1"),
        ({**GOOD_RECORD, "category": True}, "category", "§6.8-1"),
        ({**GOOD_RECORD, "source": "bought"}, "source", "§6.8-5"),
        ({**GOOD_RECORD, "source": None}, "source", "§6.8-1"),
        ({**GOOD_RECORD, "collected": -1}, "collected", "§6.8-6"),
        ({**GOOD_RECORD, "collected": 1.5}, "collected", "§6.8-1"),
        ({**GOOD_RECORD, "collected": 2**53}, "collected", "§6.8-6"),
        ({**GOOD_RECORD, "purposes": []}, "purposes", "§6.8-7"),
        ({**GOOD_RECORD, "purposes": [3, 1]}, "purposes", "§6.8-7"),
        ({**GOOD_RECORD, "purposes": [1, 1]}, "purposes", "§6.8-7"),
        ({**GOOD_RECORD, "purposes": 3}, "purposes", "§6.8-1"),
        ({**GOOD_RECORD, "purposes": [1, "delivery"]}, "purposes[1]", "§6.8-1"),
        ({**GOOD_RECORD, "purposes": [0]}, "purposes[0]", "§6.6-1"),
    ],
)
def test_record_from_wire_refuses_bad_shapes(
    wire: dict[str, object], path: str, clause: str
) -> None:
    with pytest.raises(ValueError) as exc:
        DataRecord.from_wire(wire)
    refused(exc, Problem.INVALID_FIELD, path, clause)


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ([], ""),
        ({"format": "vrm-data/2", "records": []}, "format"),
        ({"records": []}, "format"),
        ({"format": DATA_FORMAT}, "records"),
        ({"format": DATA_FORMAT, "records": {}}, "records"),
        ({"format": DATA_FORMAT, "records": [], "more": 1}, "more"),
        ({"format": DATA_FORMAT, "records": [GOOD_RECORD, "x"]}, "records[1]"),
        (
            {"format": DATA_FORMAT, "records": [{**GOOD_RECORD, "category": 0}]},
            "records[0].category",
        ),
        ({"format": DATA_FORMAT, "records": [GOOD_RECORD] * (MAX_DATA_RECORDS + 1)}, "records"),
    ],
)
def test_data_document_refuses_bad_shapes(doc: object, path: str) -> None:
    with pytest.raises(ValueError) as exc:
        data_from_wire(doc)
    assert isinstance(exc.value, VocabError)
    assert exc.value.code is Problem.INVALID_FIELD
    assert exc.value.path == path


def test_data_to_wire_refuses_too_many_records() -> None:
    with pytest.raises(VocabError):
        data_to_wire([RECORD] * (MAX_DATA_RECORDS + 1))


@given(ANY_WIRE | st.fixed_dictionaries(dict.fromkeys(GOOD_RECORD, ANY_WIRE)))
def test_record_from_wire_raises_only_vocab_error(obj: object) -> None:
    with contextlib.suppress(VocabError):
        DataRecord.from_wire(obj)


# ---------------------------------------------------------------------------------------------
# Spec and code cannot drift
# ---------------------------------------------------------------------------------------------

_ROW = re.compile(r"^\| `([^`]+)` \| (\d+) \| ([^|]+) \| ([^|]+) \| `([0-9a-f]{64})` \|$", re.M)
_TEXT = re.compile(r"^#### `([^`]+)` version (\d+)\n\n```text\n(.*)\n```$", re.M)


def _expected_row(key: tuple[str, int]) -> str:
    t = ROSTER[key]
    params = "; ".join(p.describe() for p in t.params) or "none"
    return f"| `{t.id}` | {t.version} | {t.title} | {params} | `{t.text_hash.hex()}` |"


def test_spec_term_tables_equal_the_code() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    rows = {(m[1], int(m[2])): m for m in _ROW.finditer(spec)}
    assert set(rows) == set(ROSTER), "spec tables 6-1/6-2 and ROSTER list different terms"
    for key, m in rows.items():
        term = ROSTER[key]
        expected = _expected_row(key)
        assert m[5] == term.text_hash.hex(), f"hash of {key} in spec is stale; use:\n{expected}"
        assert m[0] == expected, f"row for {key} in spec is stale; use:\n{expected}"


def test_spec_texts_equal_the_code() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    texts = {(m[1], int(m[2])): m[3] for m in _TEXT.finditer(spec)}
    assert set(texts) == set(ROSTER)
    for key, text in texts.items():
        assert text == ROSTER[key].text, f"text of {key} in spec 6.4.3 differs from the code"
        assert hashlib.sha256(text.encode()).digest() == ROSTER[key].text_hash


def test_spec_kantara_tables_equal_the_code() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    for names, slugs in ((PURPOSES, PURPOSE_SLUGS), (PII_CATEGORIES, PII_CATEGORY_SLUGS)):
        for n, name in names.items():
            assert f"| {n} | {name} | `{slugs[n]}` |" in spec


def test_spec_standard_fields_equal_the_code() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    for name, c in STANDARD_FIELDS.items():
        assert f"| `{name}` | {c} ({PII_CATEGORIES[c]}) |" in spec


def test_every_clause_the_code_cites_exists_in_the_spec() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    defined = re.findall(r"^\*\*(§6\.\d+-\d+)\*\*", spec, re.M)
    assert len(defined) == len(set(defined)), "a clause number is defined twice"
    cited = set(re.findall(r"§6\.\d+-\d+", SOURCE.read_text(encoding="utf-8")))
    assert cited
    assert cited <= set(defined), f"cited but not defined: {sorted(cited - set(defined))}"


def test_spec_clauses_are_numbered_in_order() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    assert spec.startswith("# 6. Terms vocabulary and data categories\n")
    by_section: dict[str, list[int]] = {}
    for sec, k in re.findall(r"^\*\*§(6\.\d+)-(\d+)\*\*", spec, re.M):
        by_section.setdefault(sec, []).append(int(k))
    for sec, ks in by_section.items():
        assert ks == list(range(1, len(ks) + 1)), f"clauses of {sec} are not 1..n: {ks}"
