""""Don't track me", turned into a dialog between a customer and three vendors.

    User: Don't track me.
    Site: Okay, what would you like us to do?
    User: Share the data I shed here back to me in a standard form.
    ...
    User: Here are my other preferences and policies, and means for matching them up with
          yours to see where we can agree.

The customer's agent proffers the same terms to three vendors: Wasatch Outfitters agrees,
Budget Salt Lake counters (it will not promise "no third parties" but offers "purpose only";
the customer accepts), and Hertz Wasatch refuses "delete after", with a signed rejection the
customer keeps. With the vendor that agreed, the customer shares an email address and a phone
number — sealed so only that vendor can read them — then asks for the data it holds back in the
standard form (vrm-data/1), and finally withdraws consent and gets a signed confirmation that the
data was deleted.

Run it: ``python examples/dont_track_me.py`` (vendors serve on 127.0.0.1 only).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from _support import running_vendors

from vrmproto import DataErased, MasterSeed, TermRef, TermsReject, latest
from vrmproto.client import Agent
from vrmproto.store import MemoryStore

MY_TERMS = (
    TermRef.of(latest("vrm.no-tracking")),
    TermRef.of(latest("vrm.no-third-party")),
    TermRef.of(latest("vrm.delete-after"), days=365),
    TermRef.of(latest("vrm.return-on-request"), format="vrm-data/1"),
)
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Outcome:
    answers: dict[str, str]  # vendor → its first answer: accepted / countered / rejected
    final: dict[str, str]  # vendor → the end state after answering the counter
    rejection_kept: bool  # Hertz's signed rejection is in the customer's history
    returned: dict[str, str]  # field → source ("provided" / "observed") of the data returned
    erased_shares: int  # how many shares the signed data.erased names
    left_after_withdraw: list[str]  # fields the vendor still returns afterwards


async def run() -> Outcome:
    async with running_vendors("outfitters", "budget", "hertz") as vendors:
        agent = await Agent.open(MemoryStore(), MasterSeed(os.urandom(32)), terms=MY_TERMS)
        async with agent:
            answers: dict[str, str] = {}
            final: dict[str, str] = {}
            rejection_kept = False
            agreed = None
            for vendor in vendors.values():
                print(f"⊂ You → {vendor.name}: don't track me; here are my terms.")
                r = await agent.connect(vendor.url)
                answers[vendor.name] = r.status
                print(f"⊃ {vendor.name}: {r.status}" + (f" ({r.reason})" if r.reason else ""))
                if r.status == "countered":
                    print(f"⊂ You: I accept your counter-offer: {[t.id for t in r.counter or ()]}")
                    r = await agent.accept_counter(r.thread)
                    print(f"⊃ {vendor.name}: {r.status}")
                if r.status == "rejected" and r.delivery is not None:
                    reject = next(x.message for x in r.delivery.replies
                                  if isinstance(x.message.body, TermsReject))
                    kept = {e.msg_hash for e in await agent.history(r.thread)}
                    rejection_kept = reject.hash in kept
                    print(f"  (their signed rejection {reject.hash.hex()[:12]} is kept)")
                final[vendor.name] = r.status
                if vendor.name == "Wasatch Outfitters":
                    agreed = r

            if agreed is None or agreed.status != "accepted":
                raise SystemExit("Wasatch Outfitters did not agree; nothing to share")
            fields = {"email": "doc@example.org", "phone": "+1 801 555 0142"}
            print(f"⊂ You → {agreed.vendor}: my email and phone, for 30 days.")
            share = await agent.share(agreed.thread, fields, purposes=["contracted-service"],
                                      categories=["contact"],
                                      expires_ms=agent.clock() + 30 * DAY_MS)
            print("⊂ You: share the data you hold about me back to me, in the standard form.")
            records = await agent.request_data(agreed.thread)
            for rec in records:
                print(f"⊃ {agreed.vendor}: {rec.field} = {rec.value!r} ({rec.source})")
            print("⊂ You: I withdraw my consent.")
            withdrawn = await agent.withdraw(agreed.thread, [share.msg_hash])
            erased = next(x.message.body for x in withdrawn.replies
                          if isinstance(x.message.body, DataErased))
            print(f"⊃ {agreed.vendor}: deleted {len(erased.shares)} share(s), signed.")
            after = await agent.request_data(agreed.thread)
            return Outcome(
                answers=answers,
                final=final,
                rejection_kept=rejection_kept,
                returned={rec.field: rec.source for rec in records},
                erased_shares=len(erased.shares),
                left_after_withdraw=[rec.field for rec in after],
            )


def main() -> Outcome:
    return asyncio.run(run())


if __name__ == "__main__":
    main()
