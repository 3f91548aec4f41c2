"""``vrm demo``: the three scenarios, end to end, on loopback, in one process.

Six reference vendors (the TOML of ``examples/vendors``) serve on 127.0.0.1, and one person's
agent runs in a temporary data directory with the real layout. The demo narrates each step and
checks each expected outcome in code; it exits 0 only if every scenario came out as it must:

1. **The Park City intentcast.** "Park City, March 20–25, 4-wheel-drive SUV; Avis Wizard,
   Budget FastBreak, Hertz 1 Club; no prepaid gas, no insurance" goes from a throw-away key to
   three car-rental vendors and a gear shop; offers are ranked (your terms first, then price);
   the best is taken up and a relationship opens under the customer's terms.
2. **"Don't track me" as a dialog.** Terms proffered to three vendors: one agrees, one counters
   (the counter is accepted), one refuses (its signed refusal is kept). Data shared with the
   one that agreed comes back in the standard form on request; withdrawing consent gets a
   signed confirmation of deletion.
3. **Change of address.** Five vendors, one of them down: the update reaches four at once and
   the fifth when it is back and the outbox runs. Then the ⊂ ⊃ view, and every relationship's
   history compared with the vendor's copy.

No zeroconf: every vendor is addressed by its known URL.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.panel import Panel
from rich.rule import Rule

from vrmproto._keys import fingerprint
from vrmproto._messages import DataErased, Money, TermsReject
from vrmproto._vocab import TermRef
from vrmproto.cli._cmd_data import relationships_table, view_json
from vrmproto.cli._cmd_intent import offer_json, offers_table, rank_offers
from vrmproto.cli._context import CLI_RETRY, Env, common_options, pass_env, run
from vrmproto.cli._demo_vendors import DEMO_VENDORS
from vrmproto.cli._errors import EXIT_FAILED, EXIT_OK
from vrmproto.cli._home import DEFAULT_TERMS, Home, Settings
from vrmproto.cli._output import Out, records_table, short, terms_text
from vrmproto.cli._progress import FanoutDisplay
from vrmproto.cli._streams import json_text
from vrmproto.cli._vendor import LocalVendor, parse_vendor_config
from vrmproto.client import Agent, ConnectResult
from vrmproto.store import ThreadKind

__all__ = ["Demo", "demo"]

CAR_RENTALS = ("avis", "budget", "hertz")


@dataclass(slots=True)
class Outcome:
    """One scenario's verdict: ``checks`` that failed are listed in ``failed``."""

    name: str
    summary: str = ""
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _next_march(now_ms: int) -> tuple[int, int, int]:
    today = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC).date()
    year = today.year if today < dt.date(today.year, 3, 20) else today.year + 1
    start = dt.datetime(year, 3, 20, tzinfo=dt.UTC)
    end = dt.datetime(year, 3, 25, 23, 59, 59, tzinfo=dt.UTC)
    return year, int(start.timestamp() * 1000), int(end.timestamp() * 1000)


class Demo:
    """The scenarios, their narration and their checks."""

    def __init__(self, out: Out, workdir: Path) -> None:
        self.out = out
        self.home = Home(workdir / "you")
        self.vendors: dict[str, LocalVendor] = {}
        self.outcomes: list[Outcome] = []
        self.terms: tuple[TermRef, ...] = DEFAULT_TERMS

    # -- narration -------------------------------------------------------------------------

    def title(self, text: str) -> None:
        self.out.print()
        self.out.print(Rule(f"[bold]{text}[/]", align="left"))

    def say(self, who: str, text: str) -> None:
        """A line of the dialog: ``You:`` in the ⊂ colour, a vendor in the ⊃ colour."""
        style = "bold cyan" if who == "You" else "bold magenta"
        mark = "⊂" if who == "You" else "⊃"
        self.out.print(f"  [{style}]{mark} {who}:[/] {text}")

    def detail(self, text: str) -> None:
        self.out.print(f"      [dim]{text}[/]")

    @staticmethod
    def check(outcome: Outcome, ok: bool, what: str) -> None:
        if not ok:
            outcome.failed.append(what)

    def verdict(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if outcome.ok:
            self.out.print(Panel(f"[green]✓[/] {outcome.summary}", title=outcome.name,
                                 title_align="left", border_style="green"))  # fmt: skip
        else:
            failures = "\n".join(f"✗ {f}" for f in outcome.failed)
            self.out.print(Panel(f"[red]{failures}[/]", title=outcome.name, title_align="left",
                                 border_style="red"))  # fmt: skip

    # -- vendors ---------------------------------------------------------------------------

    async def start_vendors(self) -> None:
        for key, text in DEMO_VENDORS.items():
            config = parse_vendor_config(tomllib.loads(text), source=f"demo vendor {key}")
            self.vendors[key] = LocalVendor.of(config)
            await self.start(key)

    async def start(self, key: str) -> None:
        await self.vendors[key].start()

    async def stop(self, key: str) -> None:
        await self.vendors[key].stop()

    async def stop_all(self) -> None:
        for key in self.vendors:
            await self.stop(key)

    # -- the whole run ---------------------------------------------------------------------

    async def run(self) -> bool:
        started = time.perf_counter()
        self.out.print(Panel(
            "[bold]⊂ ⊃ vrmproto demo[/]: one person's agent and six vendors, all on this "
            "machine (127.0.0.1).\nEvery message below is signed, stored by both sides and "
            "answered with a signed receipt.", border_style="cyan",
        ))  # fmt: skip
        await self.start_vendors()
        for v in self.vendors.values():
            self.detail(f"⊃ {v.name:<20} {v.url}  key {fingerprint(v.identity.public_key)}")
        self.home.init(os.urandom(32), Settings("Doc", self.terms))
        self.detail(f"⊂ your agent's data directory: {self.home.path}")
        self.detail(f"⊂ your terms: {terms_text(self.terms)}")
        store = await self.home.open_store()
        try:
            agent = await Agent.open(store, self.home.master(), terms=self.terms,
                                     retry=CLI_RETRY)  # fmt: skip
            async with agent:
                await self.intentcast(agent)
                await self.dont_track_me(agent)
                await self.change_of_address(agent)
        finally:
            await store.close()
            await self.stop_all()
        self.title("Results")
        for o in self.outcomes:
            mark = "[green]✓[/]" if o.ok else "[red]✗[/]"
            self.out.print(f"  {mark} {o.name}: {o.summary if o.ok else '; '.join(o.failed)}")
        ok = all(o.ok for o in self.outcomes) and len(self.outcomes) == 3
        self.out.print(f"  [dim]{time.perf_counter() - started:.1f} s[/]")
        return ok

    # -- 1. intentcast ---------------------------------------------------------------------

    async def intentcast(self, agent: Agent) -> None:
        outcome = Outcome("1. The Park City intentcast")
        self.title(outcome.name)
        year, start, end = _next_march(agent.clock())
        what = "4-wheel-drive SUV rental"
        members = ("Avis Wizard", "Budget FastBreak", "Hertz 1 Club")
        constraints = ("no prepaid gas", "no insurance")
        self.say("You", f"“I'll be skiing in Park City from March 20–25, {year}. I want to rent a "
                 "4-wheel-drive SUV. I belong to Avis Wizard, Budget FastBreak and Hertz 1 Club. "
                 "I don't want to pay up front for gas or get any insurance. What can any of "
                 "you do for me?”")  # fmt: skip
        self.detail("sent from a fresh, throw-away key: nothing ties it to you until you choose")
        asked = [*CAR_RENTALS, "outfitters"]
        names = {self.vendors[k].url: self.vendors[k].name for k in asked}
        display = FanoutDisplay(self.out, "intentcast", answers=True, names=names)
        with display:
            result = await agent.intentcast(
                what, vendors=[self.vendors[k].url for k in asked], where="Park City, UT",
                start=start, end=end, constraints=constraints, memberships=members,
                max_price=Money(30000, "USD"), deadline_ms=10_000, progress=display.event,
            )  # fmt: skip
        ranked = rank_offers(result.offers, self.terms)
        rows = [offer_json(o, self.terms, i + 1) for i, o in enumerate(ranked)]
        if rows:
            self.out.print(offers_table(rows, "offers, best first (your terms, then price)"))
        self.check(outcome, len(result.offers) == 3, "three car-rental vendors made offers")
        self.check(outcome, [v for v, _ in result.declines] == ["Wasatch Outfitters"],
                   "the gear shop declined (it rents no cars)")  # fmt: skip
        self.check(outcome, len({o.vendor_key for o in result.offers}) == 3,
                   "each offer is signed by its vendor's key")  # fmt: skip
        if not ranked:
            self.verdict(outcome)
            return
        best = ranked[0]
        self.check(outcome, best.vendor == "Avis Park City",
                   "the best offer is the one that accepts all your terms")  # fmt: skip
        self.say("You", f"I'll take {best.vendor}'s offer ({best.description}, {best.price}) — "
                 "on my terms.")  # fmt: skip
        taken = await agent.take_offer(best)
        self.say(taken.vendor, self._answer(taken))
        self.detail("now with your own pairwise key for this vendor, naming the offer taken up")
        self.check(outcome, taken.status == "accepted", "the vendor agreed to your terms")
        self.check(outcome, taken.terms == self.terms, "the agreement is on your terms")
        outcome.summary = (
            f"{len(result.offers)} signed offers, 1 decline; took {best.vendor}'s at "
            f"{best.price}; relationship {taken.status} on your terms"
        )
        self.verdict(outcome)

    @staticmethod
    def _answer(result: ConnectResult) -> str:
        if result.status == "accepted":
            assert result.agreement is not None
            return (f"Agreed. [dim](signed terms.accept; agreement "
                    f"{short(result.agreement)})[/]")  # fmt: skip
        if result.status == "countered":
            return (f"We can't agree to {', '.join(result.refused)}. We would agree to: "
                    f"{terms_text(result.counter or ())}.")  # fmt: skip
        if result.status == "rejected":
            return f"No: {result.reason}."
        return f"({result.status})"

    # -- 2. don't track me -----------------------------------------------------------------

    async def dont_track_me(self, agent: Agent) -> None:
        outcome = Outcome("2. “Don't track me”, as a dialog")
        self.title(outcome.name)
        results: dict[str, ConnectResult] = {}
        for key in ("outfitters", "budget", "hertz"):
            v = self.vendors[key]
            self.say("You", f"To {v.name}: don't track me. Here are my terms: "
                     f"{terms_text(self.terms)}.")  # fmt: skip
            r = await agent.connect(v.url)
            self.say(v.name, self._answer(r))
            if r.status == "countered":
                self.say("You", "Fine: I accept those terms.")
                r = await agent.accept_counter(r.thread)
                self.say(v.name, self._answer(r))
            if r.status == "rejected":
                reject = next((x.message for x in (r.delivery.replies if r.delivery else ())
                               if isinstance(x.message.body, TermsReject)), None)  # fmt: skip
                if reject is not None:
                    kept = reject.hash in {e.msg_hash for e in await agent.history(r.thread)}
                    self.check(outcome, kept, "the signed rejection is kept in your history")
                    self.detail(f"their signed “no” is kept in your history: message "
                                f"{short(reject.hash)}, signed by "
                                f"{fingerprint(reject.sender)}")  # fmt: skip
                else:
                    self.check(outcome, False, "the rejection came signed")
            results[key] = r
        self.check(outcome, results["outfitters"].status == "accepted",
                   "Wasatch Outfitters agreed to your terms")  # fmt: skip
        self.check(outcome, results["budget"].status == "accepted",
                   "Budget Salt Lake agreed once you accepted its counter-offer")  # fmt: skip
        self.check(outcome, results["hertz"].status == "rejected",
                   "Hertz Wasatch refused delete-after, signed")  # fmt: skip

        shop = results["outfitters"]
        fields = {"email": "doc@example.org", "phone": "+1 801 555 0142"}
        self.say("You", f"To {shop.vendor}: here is my email and phone, to tell me when my skis "
                 "are ready; delete them in 30 days.")  # fmt: skip
        until = agent.clock() + 30 * 86_400_000
        shared = await agent.share(shop.thread, fields, purposes=["contracted-service"],
                                   categories=["contact"], expires_ms=until)  # fmt: skip
        self.detail(f"sealed so only {shop.vendor} can read it; receipt signed "
                    f"(share {short(shared.msg_hash)})")  # fmt: skip
        self.check(outcome, shared.confirmed, "the share was received and receipted")

        self.say("You", "Share the data you hold about me back to me, in the standard form.")
        records = await agent.request_data(shop.thread)
        self.out.print(records_table(records, f"what {shop.vendor} holds about you (vrm-data/1)"))
        got = {r.field: r for r in records}
        self.check(outcome, got.get("email") is not None and got["email"].source == "provided",
                   "the data you shared came back, marked provided")  # fmt: skip
        self.check(outcome, any(r.source == "observed" for r in records),
                   "what the vendor observed came back too")  # fmt: skip

        self.say("You", "I withdraw my consent: delete what I shared.")
        withdrawn = await agent.withdraw(shop.thread, [shared.msg_hash])
        erased = next((x.message for x in withdrawn.replies
                       if isinstance(x.message.body, DataErased)), None)  # fmt: skip
        if erased is not None:
            self.say(shop.vendor, f"Deleted. [dim](signed data.erased {short(erased.hash)}, "
                     f"naming share {short(shared.msg_hash)})[/]")  # fmt: skip
        self.check(outcome, erased is not None and shared.msg_hash in erased.body.shares,
                   "the deletion was confirmed, signed, naming the share")  # fmt: skip
        after = await agent.request_data(shop.thread)
        self.check(outcome, all(r.field not in fields for r in after),
                   "the shared data is gone from what the vendor holds")  # fmt: skip
        self.detail(f"asked again: {len(after)} record(s) left, none of what you shared")
        outcome.summary = (
            "Wasatch Outfitters agreed, Budget countered (accepted), Hertz refused (signed, "
            "kept); data shared, returned in vrm-data/1, withdrawn and deletion confirmed"
        )
        self.verdict(outcome)

    # -- 3. change of address --------------------------------------------------------------

    async def change_of_address(self, agent: Agent) -> None:
        outcome = Outcome("3. Change of address, everywhere at once")
        self.title(outcome.name)
        for key in ("lodge", "market"):
            v = self.vendors[key]
            r = await agent.connect(v.url)
            self.say("You", f"To {v.name}: my terms, please.")
            self.say(v.name, self._answer(r))
            self.check(outcome, r.status == "accepted", f"{v.name} agreed")
        down = self.vendors["lodge"]
        await self.stop("lodge")
        self.detail(f"{down.name} goes down (its server stops)")
        new = {"street": "1 Main Street", "city": "Park City", "region": "UT",
               "postcode": "84060", "phone": "+1 435 555 0199"}  # fmt: skip
        self.say("You", "I've moved: 1 Main Street, Park City, UT 84060; new phone. Tell "
                 "everyone I have an agreement with.")  # fmt: skip
        display = FanoutDisplay(self.out, "address update")
        with display:
            report = await agent.update_address(new, progress=display.event, timeout_s=2.0)
        if any(r.url not in display.said for r in report.results):  # else each said once
            self.out.print(FanoutDisplay.final_table(report, "who has your new address"))
        counts = report.counts()
        self.check(outcome, len(report.results) == 5, "the update went to all five vendors")
        self.check(outcome, counts["confirmed"] == 4, "four vendors confirmed at once")
        queued = [r.vendor for r in report.queued]
        self.check(outcome, queued == [down.name], f"{down.name} (down) is queued, not lost")
        self.detail(f"sent in parallel in {report.elapsed_s * 1000:.0f} ms")

        await self.start("lodge")
        self.detail(f"{down.name} is back (same address); the outbox runs")
        waiting = await agent.pending()
        due = max((i.next_attempt_ms for i in waiting), default=agent.clock())
        ran = await agent.run_outbox(max(due, agent.clock()))
        for d in ran.deliveries:
            self.detail(f"→ {down.name}: {d.status}")
        self.check(outcome, ran.confirmed == 1 and not await agent.pending(),
                   f"{down.name} confirmed from the outbox; nothing left waiting")  # fmt: skip
        lodge = next(v for v in await agent.relationships()
                     if v.vendor == down.name and v.thread_kind is ThreadKind.VENDOR)  # fmt: skip
        held = {r.field: r.value for r in await agent.request_data(lodge.thread)}
        self.check(outcome, held.get("street") == new["street"],
                   f"{down.name} now holds the new address")  # fmt: skip

        views = [v for v in await agent.relationships() if v.thread_kind is ThreadKind.VENDOR]
        notes = await agent.share_notes()
        rows = [view_json(v, notes) for v in views]
        self.out.print(relationships_table(rows))
        equal = 0
        for view in views:
            div = await agent.compare_history(view.thread)
            self.detail(f"history with {view.vendor}: "
                        + ("identical on both sides" if div is None else f"differs ({div.kind})"))
            equal += div is None
        self.check(outcome, equal == len(views), "every history is identical on both sides")
        outcome.summary = (
            f"4 of 5 confirmed at once, {down.name} queued while down and confirmed after; "
            f"{equal}/{len(views)} histories identical with the vendors' copies"
        )
        self.verdict(outcome)

    def report(self) -> dict[str, Any]:
        return {
            "ok": all(o.ok for o in self.outcomes) and len(self.outcomes) == 3,
            "scenarios": [
                {"name": o.name, "ok": o.ok, "summary": o.summary, "failed": o.failed}
                for o in self.outcomes
            ],
        }


async def run_demo(out: Out, *, workdir: Path | None = None) -> Demo:
    """Run every scenario; the :class:`Demo` holds the outcomes."""
    with tempfile.TemporaryDirectory(prefix="vrm-demo-") as tmp:
        d = Demo(out, workdir or Path(tmp))
        await d.run()
        return d


@click.command()
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the demo agent's data directory here.")
@common_options
@pass_env
def demo(env: Env, keep: Path | None) -> None:
    """Run the three scenarios end to end on loopback and check every outcome."""
    out = Out(json_mode=env.json)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    d = run(run_demo(out, workdir=keep))
    report = d.report()
    if out.json_mode:
        click.echo(json_text(report, indent=2))
    raise click.exceptions.Exit(EXIT_OK if report["ok"] else EXIT_FAILED)

