"""One rule per message body class (spec §5, step 30 of §4.5-1), registered by class, and the
state table and the rules read together: ``(state, role, type) → (next state, rule)``."""

from __future__ import annotations

import os

import pytest

from vrmproto import MESSAGE_TYPES, TRANSITIONS, Identity, ProtocolError, Role, State
from vrmproto._messages import DataShare, ProblemReport, Receipt, TermsAccept
from vrmproto._relationship import Relationship
from vrmproto._rules import RULES, move, rules_by_type
from vrmproto._state import event_of
from vrmproto._vocab import TermRef

VENDOR = Identity(bytes(range(32)))


def test_every_type_but_problem_has_exactly_one_rule() -> None:
    assert set(RULES) == set(MESSAGE_TYPES.values()) - {ProblemReport}
    assert list(rules_by_type()) == [t for t in MESSAGE_TYPES if t != ProblemReport.TYPE]
    for cls, rule in RULES.items():
        assert rule.body is cls


def test_the_data_messages_need_an_agreement_and_the_sealed_ones_say_what_they_carry() -> None:
    needs = {rule.body.TYPE for rule in RULES.values() if rule.needs_agreement}
    assert needs == {"data.share", "data.withdraw", "data.request", "address.update"}
    sealed = {rule.body.TYPE for rule in RULES.values() if rule.sealed is not None}
    assert sealed == {"data.share", "address.update", "data.return"}
    for rule in RULES.values():
        assert (rule.sealed is not None) == ("sealed" in rule.body.__dataclass_fields__)


def test_move_reads_table_7_2_and_the_rule_of_the_type() -> None:
    for (state, role, event), to in TRANSITIONS.items():
        cls = MESSAGE_TYPES["terms.reject" if event == "terms.counter" else event]
        found = move(state, role, _example(cls.TYPE, counter=event == "terms.counter"))
        assert found.to is to
        assert found.rule is RULES[cls]
    with pytest.raises(ProtocolError) as refused:
        move(State.AGREED, Role.CUSTOMER, _example("terms.offer"))
    assert refused.value.code.value == "illegal_transition"


def test_the_machine_pairs_every_row_with_its_rule() -> None:
    from vrmproto._rules import machine  # noqa: PLC0415

    table = machine()
    assert table.keys() == TRANSITIONS.keys()
    for key, found in table.items():
        assert found.to is TRANSITIONS[key]
        assert ("terms.reject" if key[2] == "terms.counter" else key[2]) == found.rule.body.TYPE


def _example(msg_type: str, *, counter: bool = False) -> object:
    """A body of ``msg_type`` for looking up its row (its values are never checked here)."""
    from vrmproto._messages import TermsReject  # noqa: PLC0415

    if msg_type == "terms.reject":
        ref = (TermRef("x.a", 1, bytes(32)),) if counter else None
        return TermsReject(offer=bytes(32), reason="no", refused=(), counter=ref)
    return object.__new__(MESSAGE_TYPES[msg_type])  # only its class is read


def _pair() -> tuple[Relationship, Relationship]:
    customer = Identity(os.urandom(32))
    thread = os.urandom(16)
    c = Relationship(role=Role.CUSTOMER, identity=customer, thread=thread,
                     peer_key=VENDOR.public_key, peer_enc_key=VENDOR.enc_public_key)
    v = Relationship(role=Role.VENDOR, identity=VENDOR, thread=thread)
    return c, v


def test_a_refusal_has_the_code_and_clause_its_check_declares() -> None:
    """The words the spec's step 30 list is generated from are the checks the code makes."""
    _, v = _pair()
    bad = TermsAccept(offer=bytes(32), terms=(TermRef("x.a", 1, bytes(32)),))
    with pytest.raises(ProtocolError) as refused:
        RULES[TermsAccept].apply(v, bad, _turn(Role.VENDOR, ours=True))
    check = RULES[TermsAccept].checks[0]
    assert (refused.value.code, refused.value.clause, refused.value.path) == (
        check.code, check.clause, check.path)
    with pytest.raises(ProtocolError) as refused:
        RULES[Receipt].apply(v, Receipt(ack=bytes(32)), _turn(Role.VENDOR, ours=True))
    (check,) = RULES[Receipt].checks
    assert (refused.value.code, refused.value.clause) == (check.code, check.clause)
    share = DataShare(agreement=bytes(32), purposes=(1,), categories=(1,), expires=1,
                      sealed=b"x")  # fmt: skip
    with pytest.raises(ProtocolError) as refused:
        RULES[DataShare].apply(v, share, _turn(Role.CUSTOMER, ours=False))
    assert refused.value.code is RULES[DataShare].checks[0].code


def _turn(sender: Role, *, ours: bool) -> object:
    from vrmproto._rules import Turn  # noqa: PLC0415

    return Turn(sender, 0, ours)


def test_event_of_a_counter() -> None:
    assert event_of("terms.reject", _example("terms.reject", counter=True)) == "terms.counter"


def test_every_step_of_the_processing_order_cites_clauses_the_spec_defines() -> None:
    """§4.5-1 is generated from :func:`processing_order`; each clause it cites exists."""
    import re  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from vrmproto._steps import processing_order  # noqa: PLC0415

    spec = Path(__file__).resolve().parents[1] / "spec"
    text = "\n".join(p.read_text(encoding="utf-8") for p in spec.glob("*.md"))
    defined = set(re.findall(r"^\*\*(§[0-9.]+-[0-9]+)\*\*", text, re.M))
    steps = processing_order()
    cited = {c for s in steps for c in re.findall(r"§[0-9.]+-[0-9]+", s.clause)}
    assert cited - defined == set()
    numbers = [s.number for s in steps]
    assert len(numbers) == len(set(numbers))
    whole = [n for n in numbers if n.isdigit()]
    assert whole == [str(n) for n in range(1, 32)], "steps 1 to 31 are cited: keep them"
    rules = [s for s in steps if s.number.startswith("30.")]
    assert len(rules) == sum(max(1, len(r.checks)) for r in RULES.values())
