"""``vrm intent``: broadcast what you want from a fresh key, rank the offers, take one up."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

import click

from vrmproto._messages import Money
from vrmproto._vocab import TermRef
from vrmproto.cli._cmd_connect import (
    held_key,
    interface_option,
    report_connect,
    settle_counter,
)
from vrmproto.cli._cmd_data import fanout_json
from vrmproto.cli._common import (
    as_url,
    conclude,
    norm,
    now_ms,
    timeout_option,
    took_up,
)
from vrmproto.cli._context import Env, common_options, open_agent, pass_env, run
from vrmproto.cli._errors import EXIT_FAILED, EXIT_USAGE, CliError, Outcome, fanout_outcome
from vrmproto.cli._output import Out, brief, money_json, safe, table
from vrmproto.cli._parse import (
    by_prefix,
    check_intentcast,
    format_time,
    parse_date,
    parse_duration,
    parse_money,
)
from vrmproto.cli._progress import FanoutDisplay
from vrmproto.cli._relays import (
    WARNING,
    check_geohash,
    kept_relays,
    relays_failed,
    relays_given,
    show_relay_warnings,
)
from vrmproto.client import Agent, IntentcastResult, Offer
from vrmproto.client._ledger import ThreadKind
from vrmproto.nostr._customer import DEFAULT_POW, RelayedIntentcast, publish_intentcast
from vrmproto.nostr._relay import RelayError
from vrmproto.store import IntentRecord

__all__ = ["intent", "no_offers", "offer_json", "offers_table", "rank_offers", "report_declines"]


# -- intentcasts -----------------------------------------------------------------------------


class VerbGroup(click.Group):
    """``vrm intent``'s subcommands; anything else is a usage error, never a broadcast.

    ``vrm intent list`` once broadcast an intentcast named "list": an intentcast is sent only by
    the explicit verb ``new``.
    """

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:  # fmt: skip
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            verbs = ", ".join(self.commands)
            raise click.UsageError(
                f"{args[0]!r} is not a subcommand of `vrm intent` ({verbs}); to broadcast it, "
                f"`vrm intent new {shlex.quote(args[0])} …`", ctx,
            )  # fmt: skip
        return super().resolve_command(ctx, args)


def covers(offer_terms: Sequence[str], mine: Sequence[TermRef]) -> list[str]:
    """Which of my term ids the offer does not accept."""
    return [t.id for t in mine if t.id not in offer_terms]


def rank_offers(offers: Sequence[Offer], mine: Sequence[TermRef]) -> list[Offer]:
    """Offers whose vendor accepts all my terms first, then cheapest, then by name."""
    return sorted(offers, key=lambda o: (bool(covers(o.accepts_terms, mine)), o.price.amount,
                                         o.price.currency, o.vendor))  # fmt: skip


def offer_json(o: Offer, mine: Sequence[TermRef], rank: int, *, taken: bool = False,
               related: bool = False) -> dict[str, Any]:  # fmt: skip
    """An offer for ``--json``; ``taken``: our relationship with the vendor opened naming it;
    ``related``: we have a live relationship with the vendor (taking the offer up needs a new
    one, §5.2.1: ``vrm end`` that one first)."""
    return {
        "id": o.hash.hex()[:8],
        "rank": rank,
        "hash": o.hash.hex(),
        "vendor": o.vendor,
        "url": o.url,
        "vendor_key": o.vendor_key.hex(),
        "thread": o.thread.hex(),
        "intent": o.intent.hex(),
        "description": o.description,
        "price": money_json(o.price),
        "valid_until": o.valid_until,
        "conditions": list(o.conditions),
        "accepts_terms": list(o.accepts_terms),
        "missing_terms": covers(o.accepts_terms, mine),
        "taken": taken,
        "related": related,
    }


def offers_table(rows: Sequence[dict[str, Any]], title: str) -> Any:
    t = table(title, "#", "id", "vendor", "offer", "price", "your terms")
    for r in rows:
        missing = ", ".join(m.removeprefix("vrm.") for m in r["missing_terms"])
        conditions = "".join(f"\n[dim]· {safe(c)}[/]" for c in r["conditions"])
        took = "\n[green]✓ taken up[/]" if r.get("taken") else ""
        t.add_row(
            str(r["rank"]), r["id"], safe(r["vendor"]),
            safe(r["description"]) + conditions + took,
            safe(r["price"]["text"]),
            "[green]all accepted[/]" if not missing else f"[yellow]not {missing}[/]",
        )  # fmt: skip
    return t


async def _known_vendors(agent: Agent) -> dict[str, str]:
    """Base URL → name of every vendor we have a relationship with."""
    known: dict[str, str] = {}
    for v in await agent.relationships():
        if v.thread_kind is ThreadKind.VENDOR and v.url:
            known.setdefault(norm(v.url), v.vendor)
    return known


async def _on_the_network(out: Out, timeout_s: float, interfaces: Sequence[str]
                          ) -> dict[str, str]:  # fmt: skip
    """Base URL → name of every verified vendor zeroconf finds (none where it cannot look)."""
    from vrmproto.discovery import browse  # noqa: PLC0415 -- zeroconf only when needed

    try:
        found = await browse(timeout_s, tuple(interfaces))
    except OSError as exc:  # no multicast there: ask the others
        out.note(f"(local discovery is unavailable: {safe(exc)})")
        return {}
    names: dict[str, str] = {}
    for f in found:
        if f.verified:
            names.setdefault(norm(f.url), f.name)
    return names


@click.group(cls=VerbGroup)
def intent() -> None:
    """Broadcast what you want (`vrm intent new "…"`), look back at your intentcasts (`list`,
    `show ID`) and take up an offer (`accept ID`)."""


@intent.command("new")
@click.argument("what")
@click.option("--where", help="Where, e.g. 'Park City, UT'.")
@click.option("--from", "start", help="From date, YYYY-MM-DD.")
@click.option("--to", "end", help="To date, YYYY-MM-DD.")
@click.option("--max-price", help="Most you will pay, e.g. 300USD.")
@click.option("--constraint", "constraints", multiple=True,
              help="A rule, e.g. 'no prepaid gas' (repeatable).")
@click.option("--member", "members", multiple=True,
              help="A loyalty program you belong to (repeatable).")
@click.option("--deadline", default="30s", show_default=True, help="How long to wait for offers.")
@click.option("--vendor", "vendor_urls", multiple=True, metavar="URL",
              help="Also ask this vendor (repeatable).")
@click.option("--discover/--no-discover", default=True, show_default=True,
              help="Also ask vendors found with zeroconf.")
@interface_option("Where to look for vendors with zeroconf (repeatable).")
@click.option("--relay", "relay_urls", multiple=True, metavar="URL",
              help="Also publish through this Nostr relay (repeatable) [default: the relays "
                   "kept with `vrm relay add`].")
@click.option("--no-relays", is_flag=True, help="Publish through no relay, not even kept ones.")
@click.option("--geohash", help="Where, as a geohash for relays' filters (e.g. 9x0n8).")
@click.option("--pow", "pow_bits", type=click.IntRange(0, 32), default=DEFAULT_POW,
              show_default=True, help="Proof of work on the relayed intentcast, in bits.")
@click.option("--relay-wait", default="5s", show_default=True,
              help="How long to wait for vendors to answer through the relays.")
@click.option("--relay-expect", type=click.IntRange(min=1),
              help="Stop waiting once this many vendors answered through the relays.")
@common_options
@pass_env
def intent_cast(env: Env, *, what: str, where: str | None, start: str | None, end: str | None,
                max_price: str | None, constraints: tuple[str, ...], members: tuple[str, ...],
                deadline: str, vendor_urls: tuple[str, ...], discover: bool,
                interfaces: tuple[str, ...], relay_urls: tuple[str, ...], no_relays: bool,
                geohash: str | None, pow_bits: int, relay_wait: str,
                relay_expect: int | None) -> None:  # fmt: skip
    """Tell vendors what you want, from a fresh key, and rank their offers.

    Sent to the vendors you know, those found on the local network, and each --vendor, all at
    once, and published through Nostr relays (--relay, else the ones `vrm relay add` kept) to
    vendors you do not know yet; those that answer get it over HTTP too. Nothing identifies
    you: each intentcast has its own throw-away keys. Answers that come through the relays
    after --relay-wait are read with `vrm relay answers`.
    """
    check_intentcast(what, where=where, constraints=constraints, memberships=members)
    start_ms = parse_date(start) if start else None
    end_ms = parse_date(end, end_of_day=True) if end else None
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise click.BadParameter("--to is before --from")
    price = parse_money(max_price) if max_price else None
    deadline_ms = parse_duration(deadline)
    extra = []
    for u in vendor_urls:
        url = as_url(u)
        if url is None:
            raise CliError(f"--vendor {u!r} is not a URL", EXIT_USAGE, kind="bad_url")
        extra.append(url)
    out = env.out
    home = env.home
    settings = home.settings()
    relays = [] if no_relays else relays_given(relay_urls) or kept_relays(home)
    geohash = check_geohash(geohash)
    if relays:
        out.note(WARNING)
    relayed: list[RelayedIntentcast] = []

    display = FanoutDisplay(out, "intentcast", answers=True)

    async def go() -> tuple[Any, list[str], set[bytes]]:
        async with open_agent(env, settings=settings) as agent:
            names = await _known_vendors(agent)
            if discover:
                names.update({u: n for u, n in (await _on_the_network(
                    out, min(1.5, deadline_ms / 2000), interfaces)).items() if u not in names})
            for u in extra:
                names.setdefault(norm(u), norm(u))
            urls = list(names)
            if not urls and not relays:
                raise CliError("no vendors to ask: connect to some, run vendors on the local "
                               "network, or name them with --vendor URL", EXIT_USAGE,
                               kind="no_vendors")  # fmt: skip
            display.names = names
            with display:
                if relays:
                    relayed.append(await publish_intentcast(
                        agent, what, relays=relays, vendors=urls, geohash=geohash,
                        pow_difficulty=pow_bits, answer_wait_ms=parse_duration(relay_wait),
                        expect_answers=relay_expect,
                        where=where, start=start_ms, end=end_ms, constraints=constraints,
                        memberships=members, max_price=price, deadline_ms=deadline_ms,
                        progress=display.event))  # fmt: skip
                    cast = relayed[0].result
                    return cast, list(relayed[0].record.vendors), await _related(agent, cast.offers)
                result = await agent.intentcast(
                    what, vendors=urls, where=where, start=start_ms, end=end_ms,
                    constraints=constraints, memberships=members, max_price=price,
                    deadline_ms=deadline_ms, progress=display.event,
                )  # fmt: skip
            return result, urls, await _related(agent, result.offers)

    show_relay_warnings()
    try:
        result, urls, related = run(go())
    except RelayError as exc:  # nothing was sent: the relays come first; exit 4, as every
        # command that reached no one and kept nothing (it was 2, as if mistyped)
        raise relays_failed(exc, relays, "no vendor was asked. --no-relays asks only the "
                            "vendors over HTTP; `vrm relay remove URL` forgets a relay you "
                            "kept") from None  # fmt: skip
    ranked = rank_offers(result.offers, settings.terms)
    rows = [offer_json(o, settings.terms, i + 1, related=o.vendor_key in related)
            for i, o in enumerate(ranked)]  # fmt: skip
    record = {
        "intent": result.intent_id.hex(), "what": what, "where": where, "from": start_ms,
        "to": end_ms, "max_price": money_json(price) if price else None,
        "reply_by": result.reply_by, "sent": now_ms(), "vendors": urls, "offers": rows,
        "declines": [{"vendor": v, "reason": r} for v, r in result.declines],
        "skipped": skipped_json(result),
    }  # fmt: skip
    if relayed:
        done = relayed[0]
        published = done.published.errors if done.published else {}
        record |= {"relays": published, "relay_event": done.event.id,
                   "answered": [a.url for a in done.answers]}  # fmt: skip
        out.note(f"published through {sum(e is None for e in published.values())} of "
                 f"{len(published)} relays; {len(done.answers)} vendor(s) answered through "
                 "them (later answers: `vrm relay answers`)")  # fmt: skip
    _report_cast(out, result, record, display)


def skipped_json(result: IntentcastResult) -> list[dict[str, str]]:
    """The vendors the intentcast was not sent to, and why (:attr:`IntentcastResult.skipped`)."""
    return [{"url": url, "reason": why} for url, why in result.skipped]


def report_skipped(out: Out, result: IntentcastResult) -> None:
    """Say which vendors were not asked: one named with ``--vendor`` and left out without a
    word looked like a vendor that had nothing to offer."""
    for url, why in result.skipped:
        out.print(f"  [dim]{safe(url)} not asked: {safe(why)}[/]")


def cast_outcome(result: IntentcastResult, offers: int) -> Outcome:
    """An intentcast is done when a vendor received it (or offers came); when it reached no
    vendor, the code of why (4 none could be reached, 1 refused, :func:`fanout_outcome`):
    "No offers" from vendors that never saw it is not an answer. Nothing is queued: an
    intentcast that did not reach a vendor by its deadline would be of no use to it."""
    sent = result.report.results
    if not sent or offers or any(r.status == "confirmed" for r in sent):
        return Outcome.DONE
    return fanout_outcome(result.report)


def _report_cast(out: Out, result: IntentcastResult, record: dict[str, Any],
                 shown: FanoutDisplay) -> None:  # fmt: skip
    """The intentcast's outcome: its record and fan-out as JSON, or the ranked offers; and its
    exit code (:func:`cast_outcome`)."""
    outcome = cast_outcome(result, len(record["offers"]))
    if out.json_mode:
        out.json({**record, "outcome": outcome.label, **fanout_json(result.report)})
    else:
        _print_cast(out, result, record, shown)
    conclude(outcome, "no vendor received the intentcast (see above)")


def no_offers(result: IntentcastResult) -> str:
    """The line for an intentcast without offers: declined by every vendor it reached (they
    answered, the deadline did not matter), or none came in time."""
    declined = len(result.declines)
    reached = sum(r.status == "confirmed" for r in result.report.results)
    if declined and declined >= reached:
        return "No offers: every vendor that received it declined."
    return "No offers arrived before the deadline" + (f" ({declined} declined)."
                                                      if declined else ".")  # fmt: skip


def report_declines(out: Out, result: IntentcastResult, shown: FanoutDisplay) -> None:
    """The declines the progress lines did not show already (a decline that came after the
    receipt; every one, after a live table)."""
    for v, r in result.declines:
        if (v, r) not in shown.shown_declines:
            out.print(f"  [dim]{safe(v)} declined: {safe(r)}[/]")


def _print_cast(out: Out, result: IntentcastResult, record: dict[str, Any],
                shown: FanoutDisplay) -> None:  # fmt: skip
    report_skipped(out, result)
    report_declines(out, result, shown)
    for failed in (r for r in result.report.results
                   if r.status != "confirmed" and r.url not in shown.shown_ends):  # fmt: skip
        out.print(f"  [yellow]{safe(failed.vendor)}: {failed.status}[/] — "
                  f"{safe(failed.code or brief(failed.detail))}")  # fmt: skip
    rows = record["offers"]
    if not rows:
        out.print(no_offers(result))
        return
    out.print(offers_table(rows, f"offers for “{safe(record['what'])}”, best first"))
    out.print(take_line(rows[0]))


def take_line(best: dict[str, Any]) -> str:
    """The last line under the offers: how to take up the best one — and, when we already have
    a relationship with its vendor, that `vrm intent accept` would not take it up in that one:
    it said only "Take one with …", which then failed "the offer was not taken up"."""
    line = f"Take one with `vrm intent accept {best['id']}`"
    if best["related"]:
        vendor = safe(best["vendor"])
        line += (f" (you already have a relationship with {vendor}: `vrm end "
                 f"{shlex.quote(vendor)}` it first, to take the offer up in a new one)")
    return line + "."


@intent.command("accept")
@click.argument("offer_id", metavar="OFFER")
@click.option("--accept-counter/--decline-counter", "counter_answer", default=None,
              help="Answer a counter-offer without asking.")
@timeout_option
@common_options
@pass_env
def intent_accept(env: Env, offer_id: str, counter_answer: bool | None, timeout: float) -> None:
    """Take up an offer (by the id in the offers table): connect to that vendor on your terms,
    now with your own pairwise key, naming the offer."""
    out = env.out

    async def go() -> None:
        async with open_agent(env) as agent:
            offer = by_prefix(offer_id, await agent.offers(), lambda o: o.hash.hex(),
                              noun="offer", where="`vrm intent show ID`")  # fmt: skip
            if offer.valid_until < now_ms():
                raise CliError(f"the offer from {offer.vendor} expired on "
                               f"{format_time(offer.valid_until)}", EXIT_FAILED,
                               kind="expired")  # fmt: skip
            out.print(f"[bold]taking up[/] {safe(offer.description)} — {safe(offer.price)}")
            missing = covers(offer.accepts_terms, env.home.settings().terms)
            if missing:  # the table said so ("not …"); said again before anything is sent
                out.note(f"  {safe(offer.vendor)}'s offer does not accept your terms "
                         f"{', '.join(missing)}: it may reject them (your terms go as they "
                         "are; `vrm terms set` changes them)")  # fmt: skip
            first = await agent.take_offer(offer, timeout_s=timeout)  # the vendor's: as connect
            result, answer = await settle_counter(agent, out, first, counter_answer,
                                                  timeout_s=timeout)  # fmt: skip
            not_taken = None
            if first.existing and not await took_up(agent, first.thread, offer.hash):
                not_taken = (f"the offer was not taken up: you already have a relationship "
                             f"with {offer.vendor}, and {offer.vendor} was not told; `vrm end` "
                             "it first to take up the offer in a new one")  # fmt: skip
            report_connect(out, result, answer, first, asked=counter_answer is None,
                           timeout=timeout, failed=not_taken,
                           key=await held_key(agent, result.thread))  # fmt: skip

    run(go())




# -- looking back ------------------------------------------------------------------------------


def intent_json(r: IntentRecord, offers: int) -> dict[str, Any]:
    return {
        "id": r.intent_id.hex()[:8], "intent": r.intent_id.hex(), "what": r.what,
        "where": r.where, "from": r.start_ms, "to": r.end_ms,
        "max_price": money_json(Money(*r.max_price)) if r.max_price else None,
        "sent": r.sent_ms, "reply_by": r.reply_by_ms, "vendors": list(r.vendors),
        "constraints": list(r.constraints), "memberships": list(r.memberships),
        "offers": offers, "declines": [{"vendor": v, "reason": why} for v, why in r.declines],
        "relays": list(r.relays),
    }  # fmt: skip


@intent.command("list")
@common_options
@pass_env
def intent_list(env: Env) -> None:
    """Every intentcast you sent, newest first, with how many offers each has (sends nothing)."""
    out = env.out

    async def go() -> list[tuple[IntentRecord, list[Offer]]]:
        async with open_agent(env) as agent:
            return [(r, await agent.offers(r.intent_id)) for r in await agent.intents()]

    rows = [intent_json(r, len(offers)) for r, offers in reversed(run(go()))]
    if out.json_mode:
        out.json({"intents": rows})
        return
    if not rows:
        out.print('No intentcasts yet: `vrm intent new "what you want" …` sends one.')
        return
    t = table("your intentcasts, newest first", "id", "what", "sent", "vendors", "offers",
              "declined")  # fmt: skip
    for row in rows:
        t.add_row(row["id"], safe(row["what"]), format_time(row["sent"]), str(len(row["vendors"])),
                  str(row["offers"]), str(len(row["declines"])))  # fmt: skip
    out.print(t)
    out.print("`vrm intent show ID` shows one with its offers.")


@intent.command("show")
@click.argument("intent_id", metavar="ID")
@common_options
@pass_env
def intent_show(env: Env, intent_id: str) -> None:
    """One intentcast (by the id `vrm intent list` shows) and its offers, best first."""
    out = env.out
    mine = env.home.settings().terms

    async def go() -> tuple[IntentRecord, list[Offer], set[bytes], set[bytes]]:
        async with open_agent(env) as agent:
            record = by_prefix(intent_id, await agent.intents(), lambda r: r.intent_id.hex(),
                               noun="intentcast", where="`vrm intent list`")  # fmt: skip
            offers = await agent.offers(record.intent_id)
            return record, offers, await _taken(agent, offers), await _related(agent, offers)

    record, offers, taken, related = run(go())
    ranked = [offer_json(o, mine, i + 1, taken=o.hash in taken,
                         related=o.vendor_key in related and o.hash not in taken)
              for i, o in enumerate(rank_offers(offers, mine))]  # fmt: skip
    row = {**intent_json(record, len(ranked)), "offers": ranked}
    if out.json_mode:
        out.json(row)
        return
    out.print(f"[bold]intentcast {row['id']}[/]: “{safe(record.what)}”"
              + (f" in {safe(record.where)}" if record.where else "")
              + f", sent {format_time(record.sent_ms)} to {len(record.vendors)} vendor(s), "
              f"answers until {format_time(record.reply_by_ms)}")  # fmt: skip
    if record.relays:
        out.print(f"  published through {safe(', '.join(record.relays))}; answers that came later: "
                  "`vrm relay answers`")  # fmt: skip
    for d in row["declines"]:
        out.print(f"  [dim]{safe(d['vendor'])} declined: {safe(d['reason'])}[/]")
    if not ranked:
        out.print("No offers.")
        return
    out.print(offers_table(ranked, "its offers, best first"))
    took = [r for r in ranked if r["taken"]]
    if took:
        out.print(f"You took up {took[0]['id']} from {safe(took[0]['vendor'])}: "
                  "`vrm relationships` shows it.")  # fmt: skip
    else:
        out.print(take_line(ranked[0]))


async def _related(agent: Agent, offers: Sequence[Offer]) -> set[bytes]:
    """The keys of the offers' vendors we have a live relationship with."""
    return {o.vendor_key for o in offers if await agent.live_thread(o.vendor_key) is not None}


async def _taken(agent: Agent, offers: Sequence[Offer]) -> set[bytes]:
    """The offers taken up: our live relationship with the vendor opened naming it
    (``in_reply_to``, §5.2.1)."""
    taken = set()
    for o in offers:
        thread = await agent.live_thread(o.vendor_key)
        if thread is not None and await took_up(agent, thread, o.hash):
            taken.add(o.hash)
    return taken
