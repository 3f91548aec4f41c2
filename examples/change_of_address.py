"""Change your address with every company at once — even the one that is down.

    "A customer should be able to change his or her address (plus other form fields) for every
    company they deal with in one move, rather than one at a time within each company's separate
    CRM system."

The customer has agreements with five vendors. One of them, Silver Star Lodge, is down. The
agent sends the new address to all five in parallel, each copy sealed to its vendor: four
confirm with signed receipts at once, the fifth is queued in the durable outbox. When the lodge
is back, one outbox run delivers it. Finally the agent fetches each vendor's copy of the
relationship's history and compares it with its own: they are identical.

Run it: ``python examples/change_of_address.py`` (vendors serve on 127.0.0.1 only).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from _support import running_vendors

from vrmproto import MasterSeed, TermRef, latest
from vrmproto.client import Agent
from vrmproto.store import MemoryStore

MY_TERMS = (
    TermRef.of(latest("vrm.no-tracking")),
    TermRef.of(latest("vrm.delete-after"), days=365),
    TermRef.of(latest("vrm.return-on-request"), format="vrm-data/1"),
)
NEW_ADDRESS = {
    "street": "1 Main Street",
    "city": "Park City",
    "region": "UT",
    "postcode": "84060",
    "phone": "+1 435 555 0199",
}


@dataclass(frozen=True)
class Outcome:
    at_once: dict[str, str]  # vendor → outcome of the parallel update: confirmed / queued
    after_outbox: list[str]  # outcomes of the outbox run once the lodge is back
    waiting: int  # messages still in the outbox at the end
    lodge_street: str  # what the lodge now holds as the street
    histories_equal: dict[str, bool]  # vendor → its copy of the history equals ours


async def run() -> Outcome:
    names = ("avis", "budget", "outfitters", "lodge", "market")
    async with running_vendors(*names) as vendors:
        agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)), terms=MY_TERMS)
        async with agent:
            for vendor in vendors.values():
                r = await agent.connect(vendor.url)
                if r.status == "countered":
                    r = await agent.accept_counter(r.thread)
                print(f"⊂ ⊃ {vendor.name}: {r.status}")

            lodge = vendors["lodge"]
            await lodge.stop()
            print(f"   ({lodge.name} is down)")
            report = await agent.update_address(NEW_ADDRESS, timeout_s=2.0)
            at_once = {r.vendor: r.status for r in report.results}
            for vendor, status in at_once.items():
                print(f"⊂ new address → {vendor}: {status}")

            await lodge.start()
            print(f"   ({lodge.name} is back)")
            waiting = await agent.pending()
            due = max(item.next_attempt_ms for item in waiting)  # run now, not on schedule
            ran = await agent.run_outbox(max(due, agent.clock()))
            print(f"⊂ outbox: {[d.status for d in ran.deliveries]}")

            views = [v for v in await agent.relationships() if v.kind == "vendor"]
            held = await agent.request_data(next(v.thread for v in views
                                                 if v.vendor == lodge.name))
            equal = {v.vendor: await agent.compare_history(v.thread) is None for v in views}
            for vendor, same in equal.items():
                print(f"⊂ ⊃ history with {vendor}: {'identical' if same else 'DIFFERENT'}")
            return Outcome(
                at_once=at_once,
                after_outbox=[d.status for d in ran.deliveries],
                waiting=len(await agent.pending()),
                lodge_street=next(r.value for r in held if r.field == "street"),
                histories_equal=equal,
            )


def main() -> Outcome:
    return asyncio.run(run())


if __name__ == "__main__":
    main()
