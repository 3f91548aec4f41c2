"""``check_fields``: some fields of a body checked before the rest of it exists (§5.1-2), with
the rules its receiver's ``load_record`` applies — what a sender checks of a note, a reason or
the terms a person gave before the relationship supplies the rest at signing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vrmproto._errors import ValidationError
from vrmproto._fields import check_fields, dump_record, load_record
from vrmproto._messages import DataWithdraw, RelationshipEnd, TermsOffer


@given(st.one_of(st.none(), st.text(max_size=1100)))
def test_a_reason_is_refused_exactly_when_the_receiver_would(reason: str | None) -> None:
    def path_refused(check: object) -> str | None:
        try:
            check()  # type: ignore[operator]
        except ValidationError as exc:
            return exc.path
        return None

    body = RelationshipEnd(reason=reason)
    receiver = path_refused(lambda: load_record(RelationshipEnd, dump_record(body), "$.body"))
    sender = path_refused(lambda: check_fields(RelationshipEnd, "$.body", reason=reason))
    assert sender == receiver


def test_paths_and_required_fields() -> None:
    with pytest.raises(ValidationError) as raised:
        check_fields(DataWithdraw, "$.body", reason="x" * 1001)
    assert raised.value.path == "$.body.reason"
    with pytest.raises(ValidationError, match="required"):
        check_fields(TermsOffer, "$.body", terms=None)
    check_fields(TermsOffer, "$.body", note=None, in_reply_to=None)  # optional, absent


def test_a_name_the_body_does_not_declare_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="nota"):
        check_fields(RelationshipEnd, "$.body", nota="x")
