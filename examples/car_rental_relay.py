"""The Park City intentcast through a Nostr relay: a vendor the customer never heard of answers.

Same request as ``car_rental_intentcast.py``. Avis, Budget and Wasatch Outfitters are vendors the
customer knows (their URLs are given); Hertz Wasatch is not: it is in no store of the customer's,
not advertised on the local network (``vrm vendor serve --no-advertise``), and listens only on a
Nostr relay (spec §15). The customer's agent publishes the intentcast to the relay from a
throw-away key; Hertz answers with where to reach it, sealed to that key; the agent then sends
the intentcast over HTTP to all four, ranks the offers — Hertz's with the rest — and takes up the
best on the customer's terms.

Run it: ``python examples/car_rental_relay.py [ws://relay]`` — without a relay URL it starts
``nostr-relay`` (``pip install nostr-relay``) on 127.0.0.1 with a database in a temporary folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from _support import running_vendors
from car_rental_intentcast import MY_TERMS, Outcome, next_march_20_to_25, rank

from vrmproto import MasterSeed, Money
from vrmproto.client import Agent
from vrmproto.nostr._customer import publish_intentcast
from vrmproto.nostr._local import local_relay
from vrmproto.nostr._vendor import RelayVendor, catalogue_keywords, relay_vendor
from vrmproto.store import MemoryStore

PARK_CITY = "9x0n8"  # the geohash of Park City, UT (5 characters: about 5 km)


@contextlib.contextmanager
def a_relay(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory() as tmp, local_relay(Path(tmp)) as started:
        yield started


async def run(relay_url: str) -> Outcome:
    async with running_vendors("avis", "budget", "outfitters", "hertz") as vendors:
        hertz = vendors["hertz"]  # reached only through the relay
        known = [v.url for name, v in vendors.items() if name != "hertz"]
        listener = RelayVendor(hertz.config.policy(), hertz.identity, hertz.url,
                               catalogue_keywords(hertz.config.catalogue))  # fmt: skip
        agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)), terms=MY_TERMS)
        async with relay_vendor(listener, [relay_url]), agent:
            start, end = next_march_20_to_25()
            out = await publish_intentcast(
                agent, "4-wheel-drive SUV rental", relays=[relay_url], geohash=PARK_CITY,
                vendors=known, where="Park City, UT",
                start=start, end=end, memberships=["Hertz 1 Club"],
                constraints=["no prepaid gas", "no insurance"], max_price=Money(30000, "USD"),
                answer_wait_ms=20_000, expect_answers=1, deadline_ms=30_000,
            )  # fmt: skip
            print(f"⊂ published to the relay; answered through it: "
                  f"{', '.join(a.url for a in out.answers)} (Hertz, unknown to you)")  # fmt: skip
            ranked = rank(out.result.offers)
            for i, o in enumerate(ranked, 1):
                print(f"  {i}. {o.vendor:<18} {o.price}  {o.description}")
            for vendor, reason in out.result.declines:
                print(f"  -  {vendor:<18} declined: {reason}")
            taken = await agent.take_offer(ranked[0])
            print(f"⊂ you took {ranked[0].vendor}'s offer; it answered: {taken.status}")
            return Outcome(
                offers=[(o.vendor, str(o.price)) for o in ranked],
                declined=[vendor for vendor, _ in out.result.declines],
                taken=ranked[0].vendor, status=taken.status,
                agreed_terms=[t.id for t in taken.terms],
            )  # fmt: skip


def main(relay_url: str | None = None) -> Outcome:
    with a_relay(relay_url) as url:
        return asyncio.run(run(url))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
