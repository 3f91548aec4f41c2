"""spec/vectors/steps.json: steps 22 to 31 of §4.5-1, checked against the reference.

Each vector replays a sequence between a customer and a vendor :class:`Relationship`, as
``state.json`` does; its last message breaks the step named in ``step`` (and often a later one)
and must be refused with that step's code — or, for a problem (step 22), accepted without a
change. The same last messages, sent to a reference vendor over its inbox, get the same codes:
the endpoint's path for a message that could open a relationship keeps the order too.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from test_vectors import b, load, vectors

from vrmproto import Identity, KeyRotate, ProtocolError, Relationship, Role, open_envelope
from vrmproto._steps import processing_order
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore


def _sides(v: dict[str, Any]) -> dict[str, Relationship]:
    vendor = Identity(b(v["vendor_seed"]))
    customer = Identity(b(v["customer_seeds"][0]))
    thread = b(v["thread"])
    return {
        "customer": Relationship(role=Role.CUSTOMER, identity=customer, thread=thread,
                                 peer_key=vendor.public_key, peer_enc_key=vendor.enc_public_key),
        "vendor": Relationship(role=Role.VENDOR, identity=vendor, thread=thread,
                               peer_key=customer.public_key),
    }  # fmt: skip


def test_every_step_from_22_to_31_has_a_vector_but_27() -> None:
    """Step 27 is unreachable by a sequence (spec §14: a message already in the history no
    longer links and is a replay first)."""
    steps = {v["step"].split(".")[0] for v in load("steps.json")["vectors"]}
    assert steps == {str(n) for n in range(22, 32)} - {"27"}
    numbers = {s.number for s in processing_order()}
    assert {v["step"] for v in load("steps.json")["vectors"]} <= numbers


@pytest.mark.parametrize("v", vectors("steps.json"))
def test_step_vector(v: dict[str, Any]) -> None:
    sides = _sides(v)
    other = {"customer": "vendor", "vendor": "customer"}
    *before, final = v["messages"]
    rotated = {Identity(b(seed)).public_key: Identity(b(seed)) for seed in v["customer_seeds"]}
    for m in before:
        received = sides[other[m["from"]]].receive(b(m["envelope"]), now=m["now"])
        body, h = received.message.body, received.message.header
        sender = sides[m["from"]]  # records the same message as sent, signing it again
        if isinstance(body, KeyRotate):
            sent = sender.rotate(rotated[body.new_key], now=h.created, msg_id=h.id)
        else:
            sent = sender.send(body, now=h.created, msg_id=h.id,
                               lifetime_ms=h.expires - h.created)
        assert sent.message.envelope == b(m["envelope"])
    receiver = sides[other[final["from"]]]
    state, length = receiver.to_state(), len(receiver.history)
    if v["result"] == "valid":
        got = receiver.receive(b(final["envelope"]), now=final["now"])
        assert got.entry is None
    else:
        with pytest.raises(ProtocolError) as info:
            receiver.receive(b(final["envelope"]), now=final["now"])
        assert (info.value.code.value, info.value.clause) == (v["problem"], v["clause"])
    assert receiver.to_state() == state
    assert len(receiver.history) == length


#: Sequences whose vendor side rests where the reference policy would not: it answers every
#: offer at once, so no client finds it in state offered.
_NOT_OVER_HTTP = {"steps-28-before-29"}


@pytest.mark.parametrize("v", [p for p in vectors("steps.json") if p.id not in _NOT_OVER_HTTP])
async def test_the_reference_vendor_answers_the_same_code(v: dict[str, Any]) -> None:
    """Over the endpoint (the vendor side of the sequences): the vendor's own messages are
    not replayed, so only what the customer sends is delivered; the customer's messages that
    the vendor answered in the sequence are answered again by the reference policy."""
    vendor = Identity(b(v["vendor_seed"]))
    ep = Endpoint(vendor, store=MemoryStore(), policy=ReferencePolicy(
        accepts_terms=("vrm.no-tracking", "vrm.delete-after", "vrm.return-on-request")))
    *before, final = v["messages"]
    ep.clock = lambda: final["now"]
    for m in before:
        if m["from"] == "customer":
            ep.clock = lambda m=m: m["now"]
            answer = await ep.handle_inbox(b(m["envelope"]))
            assert answer.status == 200, _code(answer.body)
    ep.clock = lambda: final["now"]
    answer = await ep.handle_inbox(b(final["envelope"]))
    if v["result"] == "valid":
        assert answer.status == 204
    else:
        assert _code(answer.body) == v["problem"]


def _code(body: bytes) -> str:
    msg = open_envelope(body, now=0, check_time=False)
    return re.sub(r"[^a-z_]", "", str(msg.body.code))
