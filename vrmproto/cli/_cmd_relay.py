"""``vrm relay``: intentcasts through Nostr relays, to vendors you do not know yet (spec §15).

``vrm relay intent "…"`` publishes the intentcast to the relays (``--relay``, else the ones kept
in your settings by ``vrm relay add``), waits for vendors to answer, then sends it over HTTP to
them and to each ``--vendor``, and ranks the offers as ``vrm intent`` does (``vrm intent new
--relay`` does the same, together with the vendors you know and those on the local network).
``vrm relay answers`` reads the answers that came later, and after ``vrm key import`` finds the
relayed intentcasts your seed published (spec §15.2-4).
"""

from __future__ import annotations

from typing import Any

import click

from vrmproto.cli._cmd_data import fanout_json
from vrmproto.cli._cmd_intent import (
    cast_outcome,
    no_offers,
    offer_json,
    offers_table,
    rank_offers,
    report_declines,
    report_skipped,
    skipped_json,
)
from vrmproto.cli._common import as_url, conclude, now_ms
from vrmproto.cli._context import Env, common_options, open_agent, pass_env, run
from vrmproto.cli._errors import EXIT_USAGE, CliError, Outcome
from vrmproto.cli._output import money_json, safe
from vrmproto.cli._parse import check_intentcast, parse_date, parse_duration, parse_money
from vrmproto.cli._progress import FanoutDisplay
from vrmproto.cli._relays import (
    WARNING,
    check_geohash,
    check_relay_url,
    kept_relays,
    relays_failed,
    relays_given,
    save_relays,
    show_relay_warnings,
)
from vrmproto.nostr._customer import (
    DEFAULT_POW,
    RelayedIntentcast,
    publish_intentcast,
    relay_answers,
)
from vrmproto.nostr._relay import RelayError

__all__ = ["relay"]

#: What a person can do when the relays failed.
_KEPT_HINT = ("`vrm relay list` shows the relays you kept, `vrm relay remove URL` forgets one, "
              "--relay URL names another")

@click.group()
def relay() -> None:
    """Intentcasts through Nostr relays, to vendors you do not know yet."""


@relay.command("list")
@common_options
@pass_env
def relay_list(env: Env) -> None:
    """The relays `vrm relay intent` publishes to when no --relay is given."""
    urls = kept_relays(env.home)
    if env.out.json_mode:
        env.out.json({"relays": urls})
    else:
        for u in urls:
            env.out.print(safe(u))
        if not urls:
            env.out.print("No relays yet: vrm relay add wss://…")


@relay.command("add")
@click.argument("urls", nargs=-1, required=True)
@common_options
@pass_env
def relay_add(env: Env, *, urls: tuple[str, ...]) -> None:
    """Keep these relays in your settings."""
    home = env.home
    home.require()
    save_relays(home, list(dict.fromkeys([*kept_relays(home), *map(check_relay_url, urls)])))


@relay.command("remove")
@click.argument("urls", nargs=-1, required=True)
@common_options
@pass_env
def relay_remove(env: Env, *, urls: tuple[str, ...]) -> None:
    """Forget these relays (all of them, or none when one is not kept)."""
    home = env.home
    home.require()
    kept = kept_relays(home)
    gone = {u.rstrip("/") for u in urls}
    if unknown := [u for u in urls if u.rstrip("/") not in kept]:
        raise CliError(f"not one of your relays: {', '.join(unknown)}; nothing was "
                       "forgotten (`vrm relay list` shows them)", EXIT_USAGE,
                       kind="no_such_relay")  # fmt: skip
    save_relays(home, [u for u in kept if u not in gone])


def _cast_options(f: Any) -> Any:
    options = [
        click.argument("what"),
        click.option("--relay", "relay_urls", multiple=True, metavar="URL",
                     help="Publish to this relay (repeatable) [default: vrm relay list]."),
        click.option("--geohash", help="Where, as a geohash (e.g. 9x0n8 for Park City)."),
        click.option("--pow", "pow_bits", type=click.IntRange(0, 32), default=DEFAULT_POW,
                     show_default=True, help="Proof of work, in bits (NIP-13)."),
        click.option("--wait", default="5s", show_default=True,
                     help="How long to wait for vendors to answer through the relays."),
        click.option("--expect", type=click.IntRange(min=1),
                     help="Stop waiting once this many vendors answered."),
        click.option("--where", help="Where, in words, e.g. 'Park City, UT'."),
        click.option("--from", "start", help="From date, YYYY-MM-DD."),
        click.option("--to", "end", help="To date, YYYY-MM-DD."),
        click.option("--max-price", help="Most you will pay, e.g. 300USD."),
        click.option("--constraint", "constraints", multiple=True,
                     help="A rule, e.g. 'no prepaid gas' (repeatable)."),
        click.option("--member", "members", multiple=True,
                     help="A loyalty program you belong to (repeatable)."),
        click.option("--deadline", default="30s", show_default=True,
                     help="How long to wait for offers, in all."),
        click.option("--vendor", "vendor_urls", multiple=True, metavar="URL",
                     help="Also ask this vendor over HTTP (repeatable)."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


def _urls(texts: tuple[str, ...]) -> list[str]:
    found = []
    for u in texts:
        url = as_url(u)
        if url is None:
            raise CliError(f"--vendor {u!r} is not a URL", EXIT_USAGE, kind="bad_url")
        found.append(url)
    return found


@relay.command("intent")
@_cast_options
@common_options
@pass_env
def relay_intent(env: Env, *, what: str, relay_urls: tuple[str, ...], geohash: str | None,
                 pow_bits: int, wait: str, expect: int | None, where: str | None,
                 start: str | None, end: str | None, max_price: str | None,
                 constraints: tuple[str, ...], members: tuple[str, ...], deadline: str,
                 vendor_urls: tuple[str, ...]) -> None:  # fmt: skip
    """Publish what you want through Nostr relays, then rank the offers of who answered."""
    check_intentcast(what, where=where, constraints=constraints, memberships=members)
    home = env.home
    urls = relays_given(relay_urls) or kept_relays(home)
    if not urls:
        raise CliError("no relays: give --relay wss://… or keep some with vrm relay add",
                       EXIT_USAGE, kind="no_relays")  # fmt: skip
    args: dict[str, Any] = {
        "where": where, "start": parse_date(start) if start else None,
        "end": parse_date(end, end_of_day=True) if end else None, "constraints": constraints,
        "memberships": members, "max_price": parse_money(max_price) if max_price else None,
        "deadline_ms": parse_duration(deadline), "geohash": check_geohash(geohash),
        "pow_difficulty": pow_bits, "answer_wait_ms": parse_duration(wait),
        "expect_answers": expect,
    }  # fmt: skip
    out, settings = env.out, home.settings()
    out.note(WARNING)

    display = FanoutDisplay(out, "intentcast", answers=True, names={})

    async def go() -> RelayedIntentcast:
        async with open_agent(env, settings=settings) as agent:
            with display:
                return await publish_intentcast(agent, what, relays=urls,
                                                vendors=_urls(vendor_urls),
                                                progress=display.event, **args)  # fmt: skip

    show_relay_warnings()
    try:
        done = run(go())
    except RelayError as exc:
        raise relays_failed(exc, urls, _KEPT_HINT) from None
    _report(env, done, what, args, display)



def _report(env: Env, done: RelayedIntentcast, what: str, args: dict[str, Any],
            shown: FanoutDisplay) -> None:  # fmt: skip
    result, settings, published = done.result, env.home.settings(), done.published
    assert published is not None  # just published, not read back
    ranked = rank_offers(result.offers, settings.terms)
    price = args["max_price"]
    record = {
        "intent": result.intent_id.hex(), "relay_intent": done.relay_intent_id.hex(),
        "event": done.event.id, "published": published.errors,
        "answered": [a.url for a in done.answers], "what": what, "where": args["where"],
        "from": args["start"], "to": args["end"],
        "max_price": money_json(price) if price else None, "reply_by": result.reply_by,
        "sent": now_ms(), "vendors": [r.url for r in result.report.results],
        "offers": [offer_json(o, settings.terms, i + 1) for i, o in enumerate(ranked)],
        "declines": [{"vendor": v, "reason": r} for v, r in result.declines],
        "skipped": skipped_json(result),
    }  # fmt: skip
    out = env.out
    outcome = cast_outcome(result, len(record["offers"]))
    if out.json_mode:
        out.json({**record, "outcome": outcome.label, **fanout_json(result.report)})
    else:
        out.print(f"published to {len(published.accepted)} of {len(published.errors)} "
                  f"relays; {len(done.answers)} vendors answered")  # fmt: skip
        report_skipped(out, result)
        report_declines(out, result, shown)
        if record["offers"]:
            out.print(offers_table(record["offers"], f"offers for “{safe(what)}”, best first"))
        else:
            out.print(no_offers(result))
    conclude(outcome, "no vendor that answered received the intentcast (see above)")


@relay.command("answers")
@click.option("--relay", "relay_urls", multiple=True, metavar="URL",
              help="Also read, and look for your relayed intentcasts on, this relay "
                   "(repeatable) [default: vrm relay list].")  # fmt: skip
@click.option("--wait", default="5s", show_default=True,
              help="How long to wait for answers to each intentcast.")
@click.option("--expect", type=click.IntRange(min=1),
              help="Stop waiting for an intentcast's answers once this many vendors answered.")
@common_options
@pass_env
def relay_answers_cmd(env: Env, *, relay_urls: tuple[str, ...], wait: str,
                      expect: int | None) -> None:  # fmt: skip
    """Read the answers that came to your relayed intentcasts since, and ask those vendors.

    Each relayed intentcast that has not expired is read back from its relays; the vendors that
    answered and were not asked yet get it over HTTP, and their offers join the intentcast's
    (`vrm intent show ID`, `vrm intent accept OFFER`). After `vrm key import` into a new
    directory, the relays (--relay, else the ones you keep) are searched for the intentcasts
    your seed published, which are then read the same way (spec §15.2-4).
    """
    home = env.home
    urls = relays_given(relay_urls) or kept_relays(home)
    settings = home.settings()

    async def go() -> list[RelayedIntentcast]:
        async with open_agent(env, settings=settings) as agent:
            return await relay_answers(agent, urls, answer_wait_ms=parse_duration(wait),
                                       expect_answers=expect)  # fmt: skip

    show_relay_warnings()
    try:
        done = run(go())
    except RelayError as exc:
        raise relays_failed(exc, urls, _KEPT_HINT) from None
    rows: list[dict[str, Any]] = []
    for d in done:
        ranked = rank_offers(d.result.offers, settings.terms)
        rows.append({
            "id": d.record.intent_id.hex()[:8], "intent": d.record.intent_id.hex(),
            "relay_intent": d.relay_intent_id.hex(), "event": d.event.id,
            "what": d.record.what, "answered": [a.url for a in d.answers],
            "asked": [r.url for r in d.result.report.results],
            "offers": [offer_json(o, settings.terms, i + 1) for i, o in enumerate(ranked)],
        })  # fmt: skip
    out = env.out
    if out.json_mode:
        out.json({"outcome": Outcome.DONE.label, "intents": rows})
        return
    if not rows:
        out.print("No relayed intentcast of yours is still open on these relays.")
        return
    for row in rows:
        new = f"{len(row['offers'])} new offer(s)" if row["offers"] else "no new offers"
        out.print(f"[bold]intentcast {row['id']}[/] “{safe(row['what'])}”: "
                  f"{len(row['answered'])} vendor(s) answered, {new}")  # fmt: skip
        if row["offers"]:
            out.print(offers_table(row["offers"], "new offers, best first"))
    out.print("`vrm intent show ID` shows an intentcast with all its offers.")
