"""An opening message in a thread the vendor already holds open (s16 hunt; spec §10-17).

A vendor tries a message that opens a relationship without reading the store first (the thread
is assumed new); when the thread exists after all, the commit conflicts and the step runs again
from what is stored. The first try admitted the message as a first contact, counting the thread
as an open negotiation of the sender's prefix, and the conflict gave that back. Before, the
count and the giving back keyed the thread by its *last* prefix only: the thread, already
counted under the prefix that opened it, was re-counted under the new one, and giving that back
forgot the thread altogether — so

- from another prefix, the first prefix kept the thread counted for good (no settlement or
  expiry could find it any more): repeated, a prefix is refused new negotiations it has room
  for (§10-17: MUST NOT);
- from the same prefix, the thread stopped counting while still open: sending every new offer
  twice, a prefix held more open negotiations than ``open_relationships_per_address`` (MUST).
"""

from __future__ import annotations

import os

from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, now_ms

from vrmproto import Identity, Intentcast, Limits, Money
from vrmproto.server import CatalogueItem, Endpoint, ReferencePolicy
from vrmproto.server._admission import Admission, Ticket, address_prefix
from vrmproto.store import MemoryStore

VENDOR = Identity(VENDOR_SEED)
DAY_MS = 86_400_000
#: What the vendor offers in answer to an intentcast: the negotiation stays open (§10-17).
SUV = CatalogueItem("Jeep Grand Cherokee 4x4", ("suv",), Money(28_900, "USD"))
HOME = "198.51.100.7"
ELSEWHERE = "203.0.113.9"


def endpoint(open_per_address: int) -> Endpoint:
    return Endpoint(VENDOR, store=MemoryStore(),
                    limits=Limits(open_relationships_per_address=open_per_address),
                    policy=ReferencePolicy(accepts_terms=ACCEPTED, catalogue=(SUV,)))  # fmt: skip


def intentcast(c: Customer) -> bytes:
    body = Intentcast(what="a 4-wheel-drive SUV", reply_by=now_ms() + DAY_MS, constraints=(),
                      memberships=())  # fmt: skip
    return c.rel.send(body, now=now_ms(), msg_id=os.urandom(16)).message.envelope


def reopening(c: Customer) -> bytes:
    """Another message that opens ``c``'s thread (no ``prev``), from the same key."""
    return intentcast(Customer(VENDOR, identity=c.identity, thread=c.thread))


async def test_reopening_from_another_prefix_leaves_the_first_count_as_it_was() -> None:
    ep = endpoint(open_per_address=1)
    c = Customer(VENDOR)
    assert (await ep.handle_inbox(intentcast(c), client=HOME)).status == 200
    home = address_prefix(HOME)
    assert ep.admission.open_count(home) == 1
    again = await ep.handle_inbox(reopening(c), client=ELSEWHERE)
    assert again.status != 200  # the thread is held: no second relationship
    assert ep.admission.open_count(address_prefix(ELSEWHERE)) == 0
    assert ep.admission.open_count(home) == 1
    # The negotiation expires: its place is free again (before: counted for good, and HOME
    # was refused every new negotiation from then on).
    assert await ep.expire_unagreed(now_ms() + ep.limits.open_relationship_ttl_ms + 60_000) == 1
    assert ep.admission.open_count(home) == 0
    assert (await ep.handle_inbox(intentcast(Customer(VENDOR)), client=HOME)).status == 200


async def test_reopening_from_the_same_prefix_keeps_the_thread_counted() -> None:
    ep = endpoint(open_per_address=2)  # room for the reopening to be counted, then given back
    c = Customer(VENDOR)
    assert (await ep.handle_inbox(intentcast(c), client=HOME)).status == 200
    assert (await ep.handle_inbox(reopening(c), client=HOME)).status != 200
    assert ep.admission.open_count(address_prefix(HOME)) == 1
    # One more negotiation fits; then the prefix holds two and a third is refused (before: the
    # first no longer counted, and the third was admitted).
    assert (await ep.handle_inbox(intentcast(Customer(VENDOR)), client=HOME)).status == 200
    refused = await ep.handle_inbox(intentcast(Customer(VENDOR)), client=HOME)
    assert refused.status == 429


def test_a_thread_counts_under_one_prefix_at_a_time() -> None:
    """The unit: tracking a thread again moves it; giving back the second admission restores
    the first; closing it frees whichever prefix holds it."""
    now = 1_800_000_000_000
    admission = Admission(Limits(), clock=lambda: now)
    a, b = address_prefix(HOME), address_prefix(ELSEWHERE)
    thread = os.urandom(16)
    admission.admit(HOME, thread, opens=True, large=False)
    second = admission.admit(ELSEWHERE, thread, opens=True, large=False)
    assert (admission.open_count(a), admission.open_count(b)) == (0, 1)
    assert isinstance(second, Ticket)
    second.cancel()
    assert (admission.open_count(a), admission.open_count(b)) == (1, 0)
    admission.close(thread)
    assert (admission.open_count(a), admission.open_count(b)) == (0, 0)
