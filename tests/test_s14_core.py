"""The core's shortcuts of issue #12 (session 14), held to the code they stand for.

- ``Relationship.to_state()`` keeps its last four keys packed while they stand (a share changes
  none of them): ``to_state(compact=True)`` writes exactly what encoding every attribute afresh
  gives, and the stored form ``to_state()`` reads back to it, whatever changes in whatever
  order — the state, the term lists (replaced), pending withdrawals (changed in place), the
  shares and the rest.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from vrmproto import Identity, _codec
from vrmproto._relationship import Relationship
from vrmproto._state import Role, State
from vrmproto._vocab import TermRef


def reference_state(rel: Relationship) -> bytes:
    """Every attribute ``to_state`` writes, encoded afresh by the generic encoder."""

    def wire(refs: tuple[TermRef, ...]) -> list[Any]:
        return [t.to_wire() for t in refs]

    return _codec.encode({
        "agreement": rel.agreement, "awaiting": sorted(rel.awaiting_receipt),
        "counter": wire(rel.counter) if rel.counter is not None else None,
        "generation": rel.generation, "intent": rel.intent, "offered": wire(rel.offered),
        "our_head": rel.our_head, "owed": sorted(rel.owed_receipts),
        "peer_enc_key": rel.peer_enc_key, "peer_head": rel.peer_head, "peer_key": rel.peer_key,
        "pending_offer": rel.pending_offer, "requests": sorted(rel.pending_requests),
        "retired": [[k, v] for k, v in sorted(rel.retired.items())], "role": rel.role.value,
        "shares": [[k, v] for k, v in sorted(rel.shares.items())], "state": rel.state.value,
        "terms": wire(rel.terms), "thread": rel.thread,
        "withdraws": [[k, list(v)] for k, v in sorted(rel.pending_withdraws.items())],
    })  # fmt: skip


_HASH = st.binary(min_size=32, max_size=32)
_TERMS = st.lists(st.sampled_from([TermRef("vrm.one", 1, bytes(32)),
                                   TermRef("vrm.two", 2, bytes(range(32)))]),
                  max_size=2).map(tuple)  # fmt: skip
_OPS = st.lists(st.one_of(
    st.tuples(st.just("state"), st.sampled_from(list(State))),
    st.tuples(st.just("terms"), _TERMS),
    st.tuples(st.just("offered"), _TERMS),
    st.tuples(st.just("withdraw"), _HASH),  # a pending withdrawal added in place
    st.tuples(st.just("withdrawn"), st.none()),  # one taken out in place
    st.tuples(st.just("share"), _HASH),
    st.tuples(st.just("await"), _HASH),
    st.tuples(st.just("head"), _HASH),
    st.tuples(st.just("reload"), st.none()),
    st.tuples(st.just("pack"), st.none()),
), max_size=30)  # fmt: skip


@given(_OPS)
def test_to_state_writes_what_encoding_every_attribute_afresh_gives(ops: list[Any]) -> None:
    rel = Relationship(role=Role.CUSTOMER, identity=Identity(bytes(32)), thread=bytes(16),
                       peer_key=bytes(range(32)), peer_enc_key=bytes(32))  # fmt: skip
    for op, a in ops:
        if op == "state":
            rel.state = a
        elif op == "terms":
            rel.terms = a
        elif op == "offered":
            rel.offered = a
        elif op == "withdraw":
            rel.pending_withdraws[a] = (a,)
        elif op == "withdrawn" and rel.pending_withdraws:
            del rel.pending_withdraws[min(rel.pending_withdraws)]
        elif op == "share":
            rel.shares[a] = 1_900_000_000_000
        elif op == "await":
            rel.awaiting_receipt.add(a)
        elif op == "head":
            rel.our_head = a
        elif op == "reload":
            rel = Relationship.from_state(rel.to_state(), identity=rel.identity)
        assert rel.to_state(compact=True) == reference_state(rel), op
        stored = rel.to_state()
        assert Relationship.from_state(stored, identity=rel.identity).to_state(
            compact=True) == reference_state(rel), op  # the stored form holds the same
        assert rel.to_state(compact=True) == reference_state(rel)  # (again, from what it kept)
        assert rel.to_state() == stored
