"""The checks of §4.5-1 run in the order of its steps, whatever path the receiver takes.

A vendor endpoint handles a message that could open a relationship (a ``terms.offer`` or an
``intentcast`` with ``prev`` nil) first as if its thread were new. When that thread is one it
holds, the relationship steps 23 to 29 come before the body's rules (step 30): a stranger is
``not_a_party`` (§4.5-5, §12.2-7), and the peer's second "first" message is ``chain_broken``
(§4.5-6), however bad its terms or keys (issue 9, "Where the reference and the spec disagree").
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, now_ms, terms

from vrmproto import Identity, Intentcast, TermsOffer, open_envelope
from vrmproto._envelope import sign_message
from vrmproto._messages import Body
from vrmproto._vocab import TermRef
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore

VENDOR = Identity(VENDOR_SEED)
DAY_MS = 86_400_000
UNKNOWN = TermRef("x.not-a-term", 1, bytes(32))
#: One X25519 point of small order (§2.1-5): an unusable encryption key.
SMALL_ORDER = bytes(32)


def _endpoint() -> Endpoint:
    return Endpoint(VENDOR, store=MemoryStore(), policy=ReferencePolicy(accepts_terms=ACCEPTED))


def _signed(who: Identity, body: Body, thread: bytes, prev: bytes | None = None) -> bytes:
    """``body`` signed as is: no rule of §5 is checked on the way out."""
    now = now_ms()
    return sign_message(body, identity=who, recipient=VENDOR.public_key, thread=thread,
                        prev=prev, now=now, msg_id=os.urandom(16),
                        lifetime_ms=DAY_MS).envelope  # fmt: skip


def _offer(who: Identity, refs: tuple[TermRef, ...], enc_key: bytes | None = None) -> TermsOffer:
    return TermsOffer(terms=refs, enc_key=who.enc_public_key if enc_key is None else enc_key)


def _code(response: Any) -> str:
    msg = open_envelope(response.body, now=0, check_time=False)
    assert msg.type == "problem", (response.status, msg.type)
    code: str = msg.body.code
    return code


def _bodies(who: Identity) -> dict[str, Body]:
    """First-contact bodies that each break a rule of step 30 (§6.2, §6.3, §2.1-5)."""
    good = terms(*ACCEPTED)
    return {
        "unknown term": _offer(who, (UNKNOWN,)),
        "term cited twice": _offer(who, (good[0], good[0])),
        "unusable enc_key": _offer(who, good, SMALL_ORDER),
        "intentcast with an unknown term": Intentcast(
            what="a car", reply_by=now_ms() + DAY_MS, constraints=(), memberships=(),
            terms=(UNKNOWN,)),
    }  # fmt: skip


@pytest.mark.parametrize("case", list(_bodies(Identity(bytes(32)))))
async def test_a_stranger_in_a_held_thread_is_not_a_party_whatever_its_body(case: str) -> None:
    """§4.5-1 step 24 comes before step 30; §12.2-7."""
    ep = _endpoint()
    peer = Customer(VENDOR)
    sent = peer.offer(*ACCEPTED)
    assert (await ep.handle_inbox(sent.envelope)).status == 200
    stranger = Identity(os.urandom(32))
    refused = await ep.handle_inbox(_signed(stranger, _bodies(stranger)[case], peer.thread))
    assert (refused.status, _code(refused)) == (403, "not_a_party")


@pytest.mark.parametrize("case", list(_bodies(Identity(bytes(32)))))
async def test_the_peers_second_first_message_is_chain_broken_whatever_its_body(case: str) -> (
    None
):
    """§4.5-1 step 26 comes before step 30: ``prev`` nil after the peer's first message."""
    ep = _endpoint()
    peer = Customer(VENDOR)
    assert (await ep.handle_inbox(peer.offer(*ACCEPTED).envelope)).status == 200
    who = peer.identity
    refused = await ep.handle_inbox(_signed(who, _bodies(who)[case], peer.thread))
    assert (refused.status, _code(refused)) == (409, "chain_broken")


async def test_a_new_thread_still_gets_the_codes_of_step_30() -> None:
    """The fix does not hide the body's rules where the thread is new."""
    ep = _endpoint()
    for case, want in [("unknown term", "unknown_term"), ("term cited twice", "invalid_field"),
                       ("unusable enc_key", "bad_key")]:  # fmt: skip
        who = Identity(os.urandom(32))
        refused = await ep.handle_inbox(_signed(who, _bodies(who)[case], os.urandom(16)))
        assert _code(refused) == want, case
