"""Replays count against the address they come from, not against their sender (spec §12.9-6).

Issue 10, item 3: one captured envelope replayed 700 times from another address used to get its
real sender ``429``. Only a verified message the receiver stores as new spends its sender's
allowance; a replay (or a refusal) spends the allowance of the client address it came from.
"""

from __future__ import annotations

import os

from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, Reply, now_ms

from vrmproto import Identity, Limits
from vrmproto._binding import sign_history_request
from vrmproto.server import Endpoint, ReferencePolicy, Response
from vrmproto.store import MemoryStore

VENDOR = Identity(VENDOR_SEED)
HONEST = "198.51.100.20"
ATTACKER = "203.0.113.66"


def _reply(response: Response) -> Reply:
    return Reply(response.status, response.body, dict(response.headers))


async def test_a_replayed_envelope_does_not_lock_out_its_sender() -> None:
    endpoint = Endpoint(
        VENDOR, store=MemoryStore(), policy=ReferencePolicy(accepts_terms=ACCEPTED),
        limits=Limits(rate_per_sender_per_minute=5, rate_per_address_per_minute=100),
    )  # fmt: skip
    c = Customer(VENDOR)
    offer = c.offer(*ACCEPTED)
    c.absorb(_reply(await endpoint.handle_inbox(offer.envelope, client=HONEST)), offer)
    share = c.share({"email": "ann@example.org"})
    first = await endpoint.handle_inbox(share.envelope, client=HONEST)
    c.absorb(_reply(first), share)

    for _ in range(700):  # captured on the way, replayed from elsewhere
        again = await endpoint.handle_inbox(share.envelope, client=ATTACKER)
        assert again.status == 200  # the stored answer (§12.6-2), whatever the rates
        assert again.body == first.body

    # The real sender is not limited: it spent 2 of its 5 messages, the replays none.
    for n in range(3):
        update = c.share({"phone": f"+1555000{n}"})
        c.absorb(_reply(await endpoint.handle_inbox(update.envelope, client=HONEST)), update)
    # The replays were counted against the address they came from.
    limited = endpoint.check_address(ATTACKER)
    assert limited is not None
    assert limited.status == 429
    assert "Retry-After" in limited.headers
    assert endpoint.check_address(HONEST) is None


async def test_new_messages_still_spend_the_senders_allowance() -> None:
    endpoint = Endpoint(
        VENDOR, store=MemoryStore(), policy=ReferencePolicy(accepts_terms=ACCEPTED),
        limits=Limits(rate_per_sender_per_minute=2),
    )  # fmt: skip
    c = Customer(VENDOR)
    offer = c.offer(*ACCEPTED)
    c.absorb(_reply(await endpoint.handle_inbox(offer.envelope, client=HONEST)), offer)
    share = c.share({"email": "ann@example.org"})
    c.absorb(_reply(await endpoint.handle_inbox(share.envelope, client=HONEST)), share)
    third = await endpoint.handle_inbox(c.share({"phone": "+15550001"}).envelope, client=HONEST)
    assert third.status == 429
    assert third.headers["Retry-After"] == "30"


async def test_a_replayed_history_request_does_not_lock_out_its_sender() -> None:
    """A history request (§12.5) is valid for minutes and may be captured too: a replay of one
    counts against the address it comes from, not against its signer."""
    endpoint = Endpoint(
        VENDOR, store=MemoryStore(), policy=ReferencePolicy(accepts_terms=ACCEPTED),
        limits=Limits(rate_per_sender_per_minute=3, rate_per_address_per_minute=100),
    )  # fmt: skip
    c = Customer(VENDOR)
    offer = c.offer(*ACCEPTED)
    c.absorb(_reply(await endpoint.handle_inbox(offer.envelope, client=HONEST)), offer)

    def request() -> bytes:
        return sign_history_request(c.identity, thread=c.thread, recipient=VENDOR.public_key,
                                    now=now_ms(), nonce=os.urandom(16))  # fmt: skip

    captured = request()
    first = await endpoint.handle_history(captured, client=HONEST)
    assert first.status == 200
    for _ in range(200):
        assert (await endpoint.handle_history(captured, client=ATTACKER)).status == 200
    assert (await endpoint.handle_history(request(), client=HONEST)).status == 200
    assert endpoint.check_address(ATTACKER) is not None
    assert endpoint.check_address(HONEST) is None
