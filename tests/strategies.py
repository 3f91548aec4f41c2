"""Hypothesis strategies shared by the core's tests.

Every message body type (spec §5) has a strategy producing *valid* bodies — values within each
field's declared kind: exact byte sizes, text lengths, integer ranges, term references cited
from the real roster with valid parameters (§6.2, §6.3), :class:`Money`, lists within their
bounds. Also: identities from 32-byte seeds, and arbitrary canonical msgpack values (§3.3).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from vrmproto import (
    DATA_FORMAT,
    MESSAGE_TYPES,
    PII_CATEGORIES,
    PURPOSES,
    ROSTER,
    AddressUpdate,
    Body,
    DataErased,
    DataRecord,
    DataRequest,
    DataReturn,
    DataShare,
    DataWithdraw,
    FieldsContent,
    Identity,
    Intentcast,
    IntentDecline,
    IntentOffer,
    KeyRotate,
    MasterSeed,
    Money,
    ProblemReport,
    Receipt,
    RecordsContent,
    RelationshipEnd,
    Term,
    TermRef,
    TermsAccept,
    TermsOffer,
    TermsReject,
)
from vrmproto._codec import MAX_SAFE_INT
from vrmproto._vocab import DATA_SOURCES

# -- scalars ------------------------------------------------------------------------------------

hashes = st.binary(min_size=32, max_size=32)
keys32 = st.binary(min_size=32, max_size=32)
ids = st.binary(min_size=16, max_size=16)
seeds = st.binary(min_size=32, max_size=32)
safe_ints = st.integers(-MAX_SAFE_INT, MAX_SAFE_INT)
times = st.integers(0, MAX_SAFE_INT)


def text(max_len: int, *, min_len: int = 1) -> st.SearchStrategy[str]:
    """Text of ``min_len``..``max_len`` characters (the ``Str`` kind counts code points)."""
    return st.text(min_size=min_len, max_size=max_len)


def texts(max_items: int, max_len: int) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(text(max_len), max_size=max_items).map(tuple)


def sealed_bytes() -> st.SearchStrategy[bytes]:
    """Stand-ins for sealed content: the envelope only checks the size (≤ 64 KiB)."""
    return st.binary(max_size=256)


# -- identities ---------------------------------------------------------------------------------

identities: st.SearchStrategy[Identity] = seeds.map(Identity)
master_seeds: st.SearchStrategy[MasterSeed] = seeds.map(MasterSeed)

# -- vocabulary (§6) ----------------------------------------------------------------------------


def _ref_of(term: Term) -> st.SearchStrategy[TermRef]:
    """A valid citation of ``term``, with parameter values its specs allow (§6.3)."""
    params: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for spec in term.params:
        if spec.type == "int":
            assert spec.minimum is not None
            assert spec.maximum is not None
            strat: st.SearchStrategy[Any] = st.integers(spec.minimum, spec.maximum)
        else:
            strat = st.sampled_from(spec.values)
        (params if spec.required else optional)[spec.name] = strat
    return st.fixed_dictionaries(params, optional=optional).map(lambda p: TermRef.of(term, **p))


_ROSTER_TERMS = sorted(ROSTER.values(), key=lambda t: (t.id, t.version))
term_refs: st.SearchStrategy[TermRef] = st.sampled_from(_ROSTER_TERMS).flatmap(_ref_of)


def term_lists(min_len: int = 1, max_len: int = 5) -> st.SearchStrategy[tuple[TermRef, ...]]:
    """Distinct roster terms (a list may cite each id once, §6.2-6), in any order."""
    return st.lists(
        st.sampled_from(_ROSTER_TERMS), min_size=min_len, max_size=max_len, unique_by=lambda t: t.id
    ).flatmap(lambda terms: st.tuples(*(_ref_of(t) for t in terms)))


purposes = st.sampled_from(sorted(PURPOSES))
categories = st.sampled_from(sorted(PII_CATEGORIES))


def _int_lists(elems: st.SearchStrategy[int], max_len: int = 16) -> st.SearchStrategy[
    tuple[int, ...]
]:
    return st.lists(elems, min_size=1, max_size=max_len).map(tuple)


field_names = st.from_regex(r"[a-z][a-z0-9_]{0,20}(\.[a-z][a-z0-9_]{0,10})?", fullmatch=True)

data_records: st.SearchStrategy[DataRecord] = st.builds(
    DataRecord,
    field=field_names,
    value=text(100, min_len=0),
    category=categories,
    source=st.sampled_from(DATA_SOURCES),
    collected=times,
    purposes=_int_lists(purposes, 4),
)

money: st.SearchStrategy[Money] = st.builds(
    Money,
    amount=st.integers(0, MAX_SAFE_INT),
    currency=st.from_regex(r"[A-Z]{3}", fullmatch=True),
)

# -- sealed contents (§5.5) ---------------------------------------------------------------------

personal_fields: st.SearchStrategy[dict[str, str]] = st.dictionaries(
    text(64), text(200, min_len=0), min_size=1, max_size=8
)
fields_contents: st.SearchStrategy[FieldsContent] = personal_fields.map(
    lambda f: FieldsContent(fields=f)
)
records_contents: st.SearchStrategy[RecordsContent] = st.lists(data_records, max_size=5).map(
    lambda r: RecordsContent(records=tuple(r))
)

# -- message bodies (§5) ------------------------------------------------------------------------

terms_offers = st.builds(
    TermsOffer,
    terms=term_lists(),
    enc_key=keys32,
    note=st.none() | text(1000),
    in_reply_to=st.none() | hashes,
    endpoint=st.none() | text(400),
)
terms_accepts = st.builds(TermsAccept, offer=hashes, terms=term_lists())
terms_rejects = st.builds(
    TermsReject,
    offer=hashes,
    reason=text(1000),
    refused=texts(32, 64),
    counter=st.none() | term_lists(),
)
data_shares = st.builds(
    DataShare,
    agreement=hashes,
    purposes=_int_lists(purposes),
    categories=_int_lists(categories),
    expires=times,
    sealed=sealed_bytes(),
)
data_withdraws = st.builds(
    DataWithdraw,
    agreement=hashes,
    shares=st.lists(hashes, max_size=4).map(tuple),
    reason=st.none() | text(1000),
)
data_erasures = st.builds(
    DataErased, withdraw=hashes, shares=st.lists(hashes, max_size=4).map(tuple)
)
data_requests = st.builds(DataRequest, agreement=hashes, format=st.just(DATA_FORMAT))
data_returns = st.builds(
    DataReturn, request=hashes, format=st.just(DATA_FORMAT), sealed=sealed_bytes()
)
address_updates = st.builds(AddressUpdate, agreement=hashes, sealed=sealed_bytes())


@st.composite
def intentcasts(draw: st.DrawFn) -> Intentcast:
    start = draw(st.none() | times)
    end = draw(st.none() | st.integers(start if start is not None else 0, MAX_SAFE_INT))
    return Intentcast(
        what=draw(text(500)),
        reply_by=draw(times),
        constraints=draw(texts(32, 200)),
        memberships=draw(texts(32, 200)),
        where=draw(st.none() | text(200)),
        start=start,
        end=end,
        max_price=draw(st.none() | money),
        terms=draw(st.none() | term_lists()),
    )


intent_offers = st.builds(
    IntentOffer,
    intent=hashes,
    description=text(1000),
    price=money,
    valid_until=times,
    conditions=texts(32, 200),
    accepts_terms=texts(32, 64),
)
intent_declines = st.builds(IntentDecline, intent=hashes, reason=text(1000))
receipts = st.builds(Receipt, ack=hashes)
problems = st.builds(
    ProblemReport,
    code=st.from_regex(r"[a-z_]{1,64}", fullmatch=True),
    detail=text(1000, min_len=0),
    clause=st.none() | text(32),
    path=st.none() | text(200),
    ref=st.none() | hashes,
    retry_after=st.none() | st.integers(0, 86_400),
    server_time=st.none() | times,
    supported_versions=st.none() | st.lists(st.integers(1, 255), max_size=8).map(tuple),
)
key_rotations = st.builds(
    KeyRotate,
    new_key=keys32,
    new_enc_key=keys32,
    proof=st.binary(min_size=64, max_size=64),
    reason=st.sampled_from(("rotate", "compromise")),
)
relationship_ends = st.builds(RelationshipEnd, reason=st.none() | text(1000))

#: One strategy per wire type name; a test asserts it covers every type in MESSAGE_TYPES.
BODIES: dict[str, st.SearchStrategy[Any]] = {
    TermsOffer.TYPE: terms_offers,
    TermsAccept.TYPE: terms_accepts,
    TermsReject.TYPE: terms_rejects,
    DataShare.TYPE: data_shares,
    DataWithdraw.TYPE: data_withdraws,
    DataErased.TYPE: data_erasures,
    DataRequest.TYPE: data_requests,
    DataReturn.TYPE: data_returns,
    AddressUpdate.TYPE: address_updates,
    Intentcast.TYPE: intentcasts(),
    IntentOffer.TYPE: intent_offers,
    IntentDecline.TYPE: intent_declines,
    Receipt.TYPE: receipts,
    ProblemReport.TYPE: problems,
    KeyRotate.TYPE: key_rotations,
    RelationshipEnd.TYPE: relationship_ends,
}
assert set(BODIES) == set(MESSAGE_TYPES), "a message type has no strategy"

message_types = st.sampled_from(sorted(MESSAGE_TYPES))
bodies: st.SearchStrategy[Body] = message_types.flatmap(lambda t: BODIES[t])

# -- canonical msgpack values (§3.3) ------------------------------------------------------------

msgpack_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    safe_ints,
    st.text(max_size=40),
    st.binary(max_size=40),
)


def msgpack_values(max_depth: int = 6) -> st.SearchStrategy[Any]:
    """Values the canonical codec carries, nested at most ``max_depth`` containers deep.

    Lists and text-keyed maps only (what :func:`vrmproto.decode` returns), so a decoded value
    compares equal to the original.
    """
    if max_depth == 0:
        return msgpack_scalars
    inner = msgpack_values(max_depth - 1)
    return st.one_of(
        msgpack_scalars,
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=12), inner, max_size=4),
    )


# -- one fixed, valid body of each type (for example-based tests) ------------------------------


def sample_bodies() -> dict[str, Body]:
    """A small valid body of every message type, keyed by wire type name."""
    h = bytes(range(32))
    terms = (TermRef.of(ROSTER[("vrm.no-tracking", 1)]),)
    price = Money(amount=12_345, currency="USD")
    samples: list[Body] = [
        TermsOffer(terms=terms, enc_key=bytes(32), note="hello"),
        TermsAccept(offer=h, terms=terms),
        TermsReject(offer=h, reason="no", refused=("vrm.no-tracking",), counter=terms),
        DataShare(agreement=h, purposes=(1,), categories=(2,), expires=10**13, sealed=b"s"),
        DataWithdraw(agreement=h, shares=(h,), reason="bye"),
        DataErased(withdraw=h, shares=(h,)),
        DataRequest(agreement=h, format=DATA_FORMAT),
        DataReturn(request=h, format=DATA_FORMAT, sealed=b"r"),
        AddressUpdate(agreement=h, sealed=b"a"),
        Intentcast(
            what="a 4-wheel-drive SUV",
            reply_by=10**13,
            constraints=("no prepaid gas",),
            memberships=("Hertz 1 Club",),
            where="Park City",
            start=1,
            end=2,
            max_price=price,
            terms=terms,
        ),
        IntentOffer(
            intent=h,
            description="a Jeep",
            price=price,
            valid_until=10**13,
            conditions=(),
            accepts_terms=("vrm.no-tracking",),
        ),
        IntentDecline(intent=h, reason="sold out"),
        Receipt(ack=h),
        ProblemReport(code="expired", detail="", ref=h, supported_versions=(1,)),
        KeyRotate(new_key=bytes(32), new_enc_key=bytes(32), proof=bytes(64), reason="rotate"),
        RelationshipEnd(reason="moving on"),
    ]
    out = {b.TYPE: b for b in samples}
    assert set(out) == set(MESSAGE_TYPES)
    return out


# -- anything msgpack can carry, canonical or not (for hostile-input tests) --------------------

wild_scalars: st.SearchStrategy[Any] = st.one_of(
    msgpack_scalars,
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True),
    st.sampled_from([MAX_SAFE_INT + 1, -MAX_SAFE_INT - 1, 2**63, 2**64 - 1, -(2**63)]),
)


def wild_values(max_depth: int = 3) -> st.SearchStrategy[Any]:
    """Values msgpack packs that the canonical codec must refuse or cope with (§3.3)."""
    if max_depth == 0:
        return wild_scalars
    inner = wild_values(max_depth - 1)
    keys = st.one_of(st.text(max_size=8), st.integers(-5, 5), st.binary(max_size=4))
    return st.one_of(
        wild_scalars,
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
    )
