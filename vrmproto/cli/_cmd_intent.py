"""``vrm intent``: broadcast what you want from a fresh key, rank the offers, take one up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from vrmproto._vocab import TermRef
from vrmproto.cli._cmd_connect import report_connect, settle_counter
from vrmproto.cli._cmd_data import fanout_json
from vrmproto.cli._common import as_url, norm, now_ms
from vrmproto.cli._context import Env, common_options, open_agent, pass_env, run
from vrmproto.cli._errors import EXIT_FAILED, EXIT_USAGE, CliError
from vrmproto.cli._output import Out, money_json, table
from vrmproto.cli._parse import format_time, parse_date, parse_duration, parse_money
from vrmproto.cli._progress import FanoutDisplay
from vrmproto.client import Agent, IntentcastResult, Offer
from vrmproto.client._ledger import ThreadKind

__all__ = ["intent", "offer_json", "offers_table", "rank_offers"]


# -- intentcasts -----------------------------------------------------------------------------


class DefaultGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to a default one."""

    default_command = "cast"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def covers(offer_terms: Sequence[str], mine: Sequence[TermRef]) -> list[str]:
    """Which of my term ids the offer does not accept."""
    return [t.id for t in mine if t.id not in offer_terms]


def rank_offers(offers: Sequence[Offer], mine: Sequence[TermRef]) -> list[Offer]:
    """Offers whose vendor accepts all my terms first, then cheapest, then by name."""
    return sorted(offers, key=lambda o: (bool(covers(o.accepts_terms, mine)), o.price.amount,
                                         o.price.currency, o.vendor))  # fmt: skip


def offer_json(o: Offer, mine: Sequence[TermRef], rank: int) -> dict[str, Any]:
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
    }


def offers_table(rows: Sequence[dict[str, Any]], title: str) -> Any:
    t = table(title, "#", "id", "vendor", "offer", "price", "your terms")
    for r in rows:
        missing = ", ".join(m.removeprefix("vrm.") for m in r["missing_terms"])
        conditions = "".join(f"\n[dim]· {c}[/]" for c in r["conditions"])
        t.add_row(
            str(r["rank"]), r["id"], r["vendor"], r["description"] + conditions,
            r["price"]["text"],
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
        out.note(f"(local discovery is unavailable: {exc})")
        return {}
    names: dict[str, str] = {}
    for f in found:
        if f.verified:
            names.setdefault(norm(f.url), f.name)
    return names


@click.group(cls=DefaultGroup)
def intent() -> None:
    """Broadcast what you want (`vrm intent "…"`) and take up an offer (`vrm intent accept`)."""


@intent.command("cast")
@click.argument("what")
@click.option("--where", help="Where, e.g. 'Park City, UT'.")
@click.option("--from", "start", help="From date, YYYY-MM-DD.")
@click.option("--to", "end", help="To date, YYYY-MM-DD.")
@click.option("--max-price", help="Most you will pay, e.g. 300USD.")
@click.option("--constraint", "constraints", multiple=True, help="A rule, e.g. 'no prepaid gas'.")
@click.option("--member", "members", multiple=True, help="A loyalty program you belong to.")
@click.option("--deadline", default="30s", show_default=True, help="How long to wait for offers.")
@click.option("--vendor", "vendor_urls", multiple=True, metavar="URL",
              help="Also ask this vendor (repeatable).")
@click.option("--discover/--no-discover", default=True, show_default=True,
              help="Also ask vendors found with zeroconf.")
@click.option("--interface", "interfaces", multiple=True, default=("127.0.0.1",),
              show_default=True, help="Where to look for vendors with zeroconf.")
@common_options
@pass_env
def intent_cast(env: Env, *, what: str, where: str | None, start: str | None, end: str | None,
                max_price: str | None, constraints: tuple[str, ...], members: tuple[str, ...],
                deadline: str, vendor_urls: tuple[str, ...], discover: bool,
                interfaces: tuple[str, ...]) -> None:  # fmt: skip
    """Tell vendors what you want, from a fresh key, and rank their offers.

    Sent to the vendors you know, those found on the local network, and each --vendor, all at
    once. Nothing identifies you: each intentcast has its own throw-away key.
    """
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

    async def go() -> tuple[Any, list[str]]:
        async with open_agent(env, settings=settings) as agent:
            names = await _known_vendors(agent)
            if discover:
                names.update({u: n for u, n in (await _on_the_network(
                    out, min(1.5, deadline_ms / 2000), interfaces)).items() if u not in names})
            for u in extra:
                names.setdefault(norm(u), norm(u))
            urls = list(names)
            if not urls:
                raise CliError("no vendors to ask: connect to some, run vendors on the local "
                               "network, or name them with --vendor URL", EXIT_USAGE,
                               kind="no_vendors")  # fmt: skip
            display = FanoutDisplay(out, "intentcast", answers=True, names=names)
            with display:
                result = await agent.intentcast(
                    what, vendors=urls, where=where, start=start_ms, end=end_ms,
                    constraints=constraints, memberships=members, max_price=price,
                    deadline_ms=deadline_ms, progress=display.event,
                )  # fmt: skip
            return result, urls

    result, urls = run(go())
    ranked = rank_offers(result.offers, settings.terms)
    rows = [offer_json(o, settings.terms, i + 1) for i, o in enumerate(ranked)]
    record = {
        "intent": result.intent_id.hex(), "what": what, "where": where, "from": start_ms,
        "to": end_ms, "max_price": money_json(price) if price else None,
        "reply_by": result.reply_by, "sent": now_ms(), "vendors": urls, "offers": rows,
        "declines": [{"vendor": v, "reason": r} for v, r in result.declines],
    }  # fmt: skip
    _report_cast(out, result, record)


def _report_cast(out: Out, result: IntentcastResult, record: dict[str, Any]) -> None:
    """The intentcast's outcome: its record and fan-out as JSON, or the ranked offers."""
    if out.json_mode:
        out.json({**record, **fanout_json(result.report)})
        return
    for v, r in result.declines:
        out.print(f"  [dim]{v} declined: {r}[/]")
    rows = record["offers"]
    if not rows:
        out.print("No offers arrived before the deadline.")
        return
    out.print(offers_table(rows, f"offers for “{record['what']}”, best first"))
    out.print(f"Take one with `vrm intent accept {rows[0]['id']}`.")


@intent.command("accept")
@click.argument("offer_id", metavar="OFFER")
@click.option("--accept-counter/--decline-counter", "counter_answer", default=None,
              help="Answer a counter-offer without asking.")
@common_options
@pass_env
def intent_accept(env: Env, offer_id: str, counter_answer: bool | None) -> None:
    """Take up an offer (by the id in the offers table): connect to that vendor on your terms,
    now with your own pairwise key, naming the offer."""
    wanted = offer_id.strip().lower()
    out = env.out

    async def go() -> None:
        async with open_agent(env) as agent:
            hits = [o for o in await agent.offers() if o.hash.hex().startswith(wanted)]
            if len(wanted) < 4 or len(hits) != 1:
                what = "no offer" if not hits else "several offers"
                raise CliError(f"{what} with id {offer_id!r}; `vrm intent` shows the offers' ids",
                               EXIT_USAGE, kind="unknown_offer")  # fmt: skip
            offer = hits[0]
            if offer.valid_until < now_ms():
                raise CliError(f"the offer from {offer.vendor} expired on "
                               f"{format_time(offer.valid_until)}", EXIT_FAILED,
                               kind="expired")  # fmt: skip
            out.print(f"[bold]taking up[/] {offer.description} — {offer.price}")
            first = await agent.take_offer(offer)
            result, answer = await settle_counter(agent, out, first, counter_answer)
            report_connect(out, result, answer, first, asked=counter_answer is None)

    run(go())


