"""The Park City intentcast: vendors compete for a customer who says what she wants.

    "I'll be skiing in Park City from March 20-25. I want to rent a 4-wheel drive SUV. I belong
    to Avis Wizard, Budget FastBreak and Hertz 1 Club. I don't want to pay up front for gas or
    get any insurance. What can any of you companies do for me?"

The customer's agent broadcasts that as an intentcast from a fresh, throw-away key, to three
car-rental vendors and an outdoor-gear shop, all at once. Each answers with a signed offer or a
signed decline. The agent ranks the offers — first those whose vendor accepts all of the
customer's terms, then by price — and takes up the best: a terms offer, now from the customer's
own pairwise key for that vendor, naming the offer. The relationship opens under the customer's
terms.

Run it: ``python examples/car_rental_intentcast.py`` (vendors serve on 127.0.0.1 only).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from dataclasses import dataclass

from _support import running_vendors

from vrmproto import MasterSeed, Money, TermRef, latest
from vrmproto.client import Agent, Offer
from vrmproto.store import MemoryStore

#: The customer's own terms (spec §6.4): don't track me, don't sell my data, delete it after a
#: year, give it back to me in the standard form when I ask.
MY_TERMS = (
    TermRef.of(latest("vrm.no-tracking")),
    TermRef.of(latest("vrm.no-third-party")),
    TermRef.of(latest("vrm.delete-after"), days=365),
    TermRef.of(latest("vrm.return-on-request"), format="vrm-data/1"),
)


@dataclass(frozen=True)
class Outcome:
    offers: list[tuple[str, str]]  # (vendor, price), best first
    declined: list[str]  # vendors that said "nothing for you"
    taken: str  # the vendor whose offer was taken up
    status: str  # its answer to the customer's terms: "accepted", …
    agreed_terms: list[str]  # the term ids of the relationship that opened


def rank(offers: tuple[Offer, ...]) -> list[Offer]:
    """Offers from vendors that accept all my terms first, then the cheapest."""
    mine = {t.id for t in MY_TERMS}
    return sorted(offers, key=lambda o: (not mine <= set(o.accepts_terms), o.price.amount))


def next_march_20_to_25() -> tuple[int, int]:
    today = dt.datetime.now(dt.UTC).date()
    year = today.year if today < dt.date(today.year, 3, 20) else today.year + 1
    start = dt.datetime(year, 3, 20, tzinfo=dt.UTC)
    return int(start.timestamp() * 1000), int((start + dt.timedelta(days=6)).timestamp() * 1000)


async def run() -> Outcome:
    async with running_vendors("avis", "budget", "hertz", "outfitters") as vendors:
        agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)), terms=MY_TERMS)
        async with agent:
            start, end = next_march_20_to_25()
            result = await agent.intentcast(
                "4-wheel-drive SUV rental",
                vendors=[v.url for v in vendors.values()],
                where="Park City, UT",
                start=start,
                end=end,
                memberships=["Avis Wizard", "Budget FastBreak", "Hertz 1 Club"],
                constraints=["no prepaid gas", "no insurance"],
                max_price=Money(30000, "USD"),
                deadline_ms=10_000,
            )
            ranked = rank(result.offers)
            print("⊂ you asked four vendors, from a throw-away key; offers, best first:")
            for i, o in enumerate(ranked, 1):
                missing = [t.id for t in MY_TERMS if t.id not in o.accepts_terms]
                fit = "accepts all your terms" if not missing else "not: " + ", ".join(missing)
                print(f"  {i}. {o.vendor:<18} {o.price}  {o.description}  [{fit}]")
            for vendor, reason in result.declines:
                print(f"  -  {vendor:<18} declined: {reason}")
            best = ranked[0]
            taken = await agent.take_offer(best)
            print(f"⊂ you took {best.vendor}'s offer; on your terms it answered: {taken.status}")
            return Outcome(
                offers=[(o.vendor, str(o.price)) for o in ranked],
                declined=[vendor for vendor, _ in result.declines],
                taken=best.vendor,
                status=taken.status,
                agreed_terms=[t.id for t in taken.terms],
            )


def main() -> Outcome:
    return asyncio.run(run())


if __name__ == "__main__":
    main()
