"""The relationship and its data: ``vrm relationships``, ``share``, ``withdraw``, ``data``,
``address set`` (``vrm outbox`` is in :mod:`vrmproto.cli._cmd_outbox`, ``vrm history`` in
:mod:`vrmproto.cli._cmd_history`)."""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

import click

from vrmproto._errors import Problem
from vrmproto._keys import fingerprint
from vrmproto._messages import DataWithdraw
from vrmproto._vocab import parse_category, parse_purpose, suggest_category
from vrmproto.cli._common import (
    conclude,
    end_delivery,
    finish,
    lost_by_vendor,
    lost_words,
    need_agreement,
    not_delivered_json,
    pick,
    superseded,
    timeout_option,
)
from vrmproto.cli._context import Env, common_options, open_agent, pass_env, run
from vrmproto.cli._errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    CliError,
    Outcome,
    behind_words,
    explain,
    fanout_outcome,
    vendor_outcome,
)
from vrmproto.cli._output import (
    THEM,
    YOU,
    held,
    queued_line,
    rbutton,
    record_json,
    records_table,
    refused_line,
    safe,
    short,
    table,
    term_json,
    terms_short,
)
from vrmproto.cli._parse import (
    check_text,
    format_date,
    format_time,
    parse_duration,
    parse_fields,
    parse_until,
)
from vrmproto.cli._progress import FanoutDisplay
from vrmproto.cli._vendor_holds import erased_of, updated
from vrmproto.client import Delivery, Queued, RelationshipView
from vrmproto.client._ledger import ThreadKind
from vrmproto.store import ShareNote

__all__ = ["address", "data", "relationships", "share", "withdraw"]


# -- what an earlier queued message became ------------------------------------------------------


def earlier_json(d: Delivery | None) -> list[dict[str, Any]]:
    """The messages that waited before ``d`` and went, or were given up, with it."""
    return [{"type": e.type or None, "msg_id": e.msg_id.hex(), "status": e.status,
             "error": str(e.error) if e.error is not None else None}
            for e in (d.earlier if d is not None else ())]  # fmt: skip


def earlier_lines(vendor: str, d: Delivery | None) -> list[str]:
    """A line for each earlier queued message that the vendor refused or that was dropped:
    what the person sent before, and would otherwise learn of only from ``last_problem``."""
    return [f"  [yellow]![/] {safe(vendor)}: an earlier queued {e.type or 'message'} was "
            f"{e.status}" + (f": {safe(e.error)}" if e.error is not None else "")
            for e in (d.earlier if d is not None else ()) if e.status in ("refused", "dropped")]


# -- relationships -----------------------------------------------------------------------------


def _shares_of(view: RelationshipView, notes: Sequence[ShareNote],
               waiting: Collection[bytes]) -> list[dict[str, Any]]:  # fmt: skip
    """The relationship's shares; ``delivered`` false for one still in the outbox: it is in our
    relationship from the moment it is signed (§8.1-2), in the vendor's once it confirms it."""
    by_hash = {n.share: n for n in notes}
    out = []
    for share_hash, expires in view.shares:
        note = by_hash.get(share_hash)
        out.append({
            "hash": share_hash.hex(),
            "expires": expires,
            "fields": [name for name, _ in note.fields] if note is not None else [],
            "delivered": share_hash not in waiting,
        })  # fmt: skip
    return out


def view_json(view: RelationshipView, notes: Sequence[ShareNote],
              newer: RelationshipView | None = None, *,
              waiting: Collection[bytes] = ()) -> dict[str, Any]:  # fmt: skip
    """One relationship as JSON; ``newer``: the relationship that superseded it
    (:func:`~vrmproto.cli._common.superseded`); ``waiting``: the hashes of the messages still
    in the outbox."""
    return {
        "vendor": view.vendor,
        "url": view.url,
        "thread": view.thread.hex(),
        "kind": view.kind,
        "state": view.state,
        "terms": [term_json(t) for t in view.terms],
        "terms_short": terms_short(view.terms),
        "agreement": view.agreement.hex() if view.agreement else None,
        "shares": _shares_of(view, notes, waiting),
        "last_activity": view.last_activity_ms,
        "pending": view.pending,
        "last_problem": view.last_problem,
        "lost_by_vendor": lost_by_vendor(view),  # it answered no_relationship (§4.5-5)
        # the person accepted the vendor's new key in a newer relationship (§11.10-3)
        "superseded_by": newer.thread.hex() if newer is not None else None,
        "vendor_fingerprint": view.vendor_fingerprint,
        "your_fingerprint": fingerprint(view.local_key),
    }


_STATE_STYLE = {"agreed": "green", "rejected": "red", "countered": "yellow", "ended": "dim"}
#: An intentcast's thread with one vendor (``--all``), in words: the state's wire spelling
#: ("intent_declined") was shown as it is (§7.1).
_INTENT_WORDS = {"intent_open": "intentcast, no answer", "intent_answered": "intentcast, offer",
                 "intent_declined": "intentcast, declined"}  # fmt: skip


def relationships_table(rows: list[dict[str, Any]], title: str | None = None) -> Any:
    t = table(title or f"{YOU} you {THEM} vendors", "vendor", "state", "agreed terms", "shared",
              "last activity", "outbox")  # fmt: skip
    names = Counter(r["vendor"] for r in rows)
    for r in rows:
        # one vendor in several rows (a new relationship beside an old one): which key each is
        key = f"\n[dim]key {r['vendor_fingerprint']}[/]" if names[r["vendor"]] > 1 else ""
        style = _STATE_STYLE.get(r["state"], "")
        shared = "; ".join(
            (", ".join(s["fields"]) or s["hash"][:8]) + f" (until {format_date(s['expires'])}"
            + (")" if s.get("delivered", True) else ", [yellow]not delivered yet[/])")
            for s in r["shares"]
        )  # fmt: skip
        words = _INTENT_WORDS.get(r["state"], r["state"])
        state = f"[{style}]{words}[/]" if style else words
        if r.get("lost_by_vendor"):
            state += "\n[red]lost by the vendor[/]"
        elif r.get("superseded_by"):
            state += "\n[yellow]superseded[/]"
        t.add_row(
            f"{YOU} {THEM} {safe(r['vendor'])}{key}",
            state,
            r["terms_short"],
            shared or "—",
            format_time(r["last_activity"]),
            f"{r['pending']} waiting" if r["pending"] else "—",
        )  # fmt: skip
    return t


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include intentcast threads.")
@common_options
@pass_env
def relationships(env: Env, show_all: bool) -> None:
    """The ⊂ ⊃ view: every vendor, its state, your terms, what you shared, what waits."""
    out = env.out

    async def go() -> tuple[list[RelationshipView], list[ShareNote], dict[bytes, Any],
                            set[bytes]]:  # fmt: skip
        async with open_agent(env) as agent:
            views = await agent.relationships()
            waiting = {item.msg_hash for item in await agent.pending()}
            return views, await agent.share_notes(), await superseded(agent, views), waiting

    views, notes, old, waiting = run(go())
    rows = [view_json(v, notes, old.get(v.thread), waiting=waiting) for v in views
            if show_all or v.thread_kind is ThreadKind.VENDOR]  # fmt: skip
    if out.json_mode:
        out.json({"relationships": rows})
        return
    if not rows:
        out.print("No relationships yet: `vrm connect URL` proffers your terms to a vendor.")
        return
    out.print(relationships_table(rows))
    for v in views:
        if lost_by_vendor(v) and (show_all or v.thread_kind is ThreadKind.VENDOR):
            out.print(f"[red]![/] {safe(lost_words(v))}.")
        elif v.thread in old:
            newer = old[v.thread]
            out.print(f"[yellow]![/] {safe(v.vendor)} under key {v.vendor_fingerprint} is "
                      f"superseded: you accepted its new key {newer.vendor_fingerprint}, in a "
                      f"newer relationship, which commands that name {safe(v.vendor)} use. "
                      "Nothing reaches the vendor in the old one; its history stays with you.")


# -- data ------------------------------------------------------------------------------------


@click.command()
@click.argument("vendor")
@click.argument("fields", nargs=-1, required=True, metavar="FIELD=VALUE…")
@click.option("--purpose", "purposes", multiple=True, default=("core-function",),
              show_default=True, help="Why the vendor may use it (Kantara purpose; repeatable).")
@click.option("--category", "categories", multiple=True,
              help="Kind of data (Kantara category; repeatable); guessed from field names.")
@click.option("--expires", default="30d", show_default=True,
              help="When the vendor must delete it: 30d, 1h30m, 2 weeks, P30D or a date.")
@timeout_option
@common_options
@pass_env
def share(env: Env, *, vendor: str, fields: tuple[str, ...], purposes: tuple[str, ...],
          categories: tuple[str, ...], expires: str, timeout: float) -> None:  # fmt: skip
    """Share data with one vendor under your agreement, sealed so only it can read it."""
    values = parse_fields(fields)
    try:
        purpose_ids = sorted({parse_purpose(p) for p in purposes})
        category_ids = sorted({parse_category(c) for c in categories}
                              or {suggest_category(f) for f in values})  # fmt: skip
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    parse_duration(expires, default_unit="d")  # a usage error before anything is opened
    out = env.out

    async def go() -> tuple[RelationshipView, Delivery, int, bool]:
        async with open_agent(env) as agent:
            view = await pick(agent, vendor)
            need_agreement(view)
            until = parse_until(expires, agent.clock(), default_unit="d")
            d = await agent.share(view.thread, values, purposes=purpose_ids,
                                  categories=category_ids, expires_ms=until,
                                  timeout_s=timeout)  # fmt: skip
            notes = await agent.share_notes(view.thread)
            return view, d, until, any(n.share == d.msg_hash for n in notes)

    view, d, until, noted = run(go())
    result = {
        "vendor": view.vendor, "share": d.msg_hash.hex(), "status": d.status,
        **not_delivered_json(d),
        "fields": sorted(values), "purposes": purpose_ids, "categories": category_ids,
        "expires": until, "noted": noted, "earlier": earlier_json(d),
    }  # fmt: skip
    if out.json_mode:
        out.json(result)
    else:
        out.print(f"[bold]{rbutton(view.vendor)}[/]")
        for line in earlier_lines(view.vendor, d):
            out.print(line)
        if d.status == "confirmed":
            out.print(f"  [green]✓ shared[/] {', '.join(sorted(values))} until "
                      f"{format_date(until)} — share {short(d.msg_hash)}, receipt signed by the "
                      "vendor")  # fmt: skip
        elif d.status == "queued":
            out.print(queued_line(d.error, timeout))
        else:
            out.print(refused_line(d))
    end_delivery(view.vendor, d)


@click.command()
@click.argument("vendor")
@click.option("--share", "share_ids", multiple=True, metavar="HASH",
              help="Withdraw only this share (a prefix of its hash; repeatable). Default: all.")
@click.option("--reason", help="Why, if you want to say.")
@timeout_option
@common_options
@pass_env
def withdraw(env: Env, *, vendor: str, share_ids: tuple[str, ...], reason: str | None,
             timeout: float) -> None:  # fmt: skip
    """Withdraw consent: the vendor must delete what you shared, and confirms it signed."""
    check_text(reason, DataWithdraw, "reason", "--reason")
    out = env.out

    async def go() -> tuple[RelationshipView, Delivery, list[bytes]]:
        async with open_agent(env) as agent:
            view = await pick(agent, vendor)
            need_agreement(view)
            live = [h for h, _ in view.shares]
            chosen: list[bytes] = []
            for prefix in share_ids:
                hits = [h for h in live if h.hex().startswith(prefix.lower())]
                if len(hits) != 1:
                    what = "no live share" if not hits else "several shares"
                    raise CliError(f"{what} of {view.vendor} match {prefix!r}", EXIT_USAGE,
                                   kind="unknown_share")  # fmt: skip
                chosen.append(hits[0])
            if not live and not await updated(agent, view.thread):
                # what the relationship holds, not a mistyped command: 1, as no agreement is
                raise CliError(f"nothing shared with {view.vendor} is live; nothing to withdraw",
                               EXIT_FAILED, kind="nothing_shared")  # fmt: skip
            d = await agent.withdraw(view.thread, chosen, reason=reason, timeout_s=timeout)
            return view, d, chosen or live

    view, d, withdrawn = run(go())
    erased = erased_of(d) if d.status == "confirmed" else None  # the notes say so too
    unconfirmed = d.status == "confirmed" and erased is None  # delivered, deletion not confirmed
    result = {
        "vendor": view.vendor,
        "withdraw": d.msg_hash.hex(),
        "status": d.status,
        **not_delivered_json(d),
        **({"outcome": Outcome.FAILED.label} if unconfirmed else {}),
        "shares": [h.hex() for h in withdrawn],
        "erased": None if erased is None else {
            "hash": erased.hash.hex(),
            "signed_by": fingerprint(erased.sender),
            "shares": [h.hex() for h in erased.body.shares],
        },
    }  # fmt: skip
    if out.json_mode:
        out.json(result)
    else:
        out.print(f"[bold]{rbutton(view.vendor)}[/]")
        if erased is not None:
            also = "" if share_ids else " and what your address updates gave"  # (§5.3.2-1)
            out.print(f"  [green]✓ deleted[/]: {len(erased.body.shares)} share(s){also}; signed "
                      f"confirmation {short(erased.hash)} from {fingerprint(erased.sender)}, "
                      "kept in your history")  # fmt: skip
        elif d.status == "queued":
            out.print(queued_line(d.error, timeout))
        elif unconfirmed:
            out.print("  delivered; the vendor has not confirmed the deletion yet")
        else:
            out.print(refused_line(d))
    if unconfirmed:
        finish(EXIT_FAILED, f"{view.vendor} has not confirmed the deletion")
    end_delivery(view.vendor, d)


@click.command()
@click.argument("vendor")
@timeout_option
@common_options
@pass_env
def data(env: Env, vendor: str, timeout: float) -> None:
    """Ask a vendor for the data it holds about you, in the standard form (vrm-data/1)."""
    out = env.out

    async def go() -> tuple[RelationshipView, Any]:
        async with open_agent(env) as agent:
            view = await pick(agent, vendor)
            need_agreement(view)
            try:
                return view, await agent.request_data(view.thread, timeout_s=timeout)
            except Queued as exc:  # its answer comes with the delivery: say where to read it
                err = explain(exc)
                if err.outcome is not Outcome.QUEUED:
                    raise
                raise CliError(f"{err.message.rstrip('.')}, and `vrm history "
                               f"{shlex.quote(view.vendor)}` then shows what it returned",
                               err.exit_code, kind=err.kind) from None  # fmt: skip

    view, records = run(go())
    if out.json_mode:
        out.json({"vendor": view.vendor, "outcome": Outcome.DONE.label, "format": "vrm-data/1",
                  "records": [record_json(r) for r in records],
                  "earlier": earlier_json(records.delivery)})  # fmt: skip
        return
    for line in earlier_lines(view.vendor, records.delivery):
        out.print(line)
    if not records:
        out.print(f"{rbutton(view.vendor)}: it holds nothing about you.")
        return
    out.print(records_table(records, f"what {safe(view.vendor)} holds about you (vrm-data/1)"))


# -- address ---------------------------------------------------------------------------------


def fanout_json(report: Any) -> dict[str, Any]:
    return {
        "results": [
            {
                "vendor": r.vendor,
                "url": r.url,
                "thread": r.thread.hex() if r.thread else None,
                "status": r.status,
                "code": r.code,
                "detail": r.detail,
                "elapsed_s": round(r.elapsed_s, 4),
                "earlier": earlier_json(r.delivery),
            }
            for r in report.results
        ],
        "counts": report.counts(),
        "elapsed_s": round(report.elapsed_s, 4),
    }


@click.group()
def address() -> None:
    """Change your contact details with every vendor at once."""


@address.command("set")
@click.argument("fields", nargs=-1, required=True, metavar="FIELD=VALUE…")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds to wait for each vendor before queueing.")
@click.option("--only-held", is_flag=True,
              help="Send each vendor only the fields it holds from a share of yours, and none "
                   "to a vendor that holds none of them.")  # fmt: skip
@common_options
@pass_env
def address_set(env: Env, fields: tuple[str, ...], timeout: float, only_held: bool) -> None:
    """Send new contact details to every vendor you have an agreement with, in parallel.

    Vendors that cannot be reached now keep the update queued; `vrm outbox run` (or a running
    `vrm agent serve`) delivers it when they are back. A vendor that never had a field holds
    it from the update, without expiry, until `vrm withdraw` takes it back: --only-held sends
    each vendor only what it holds from a share of yours.
    """
    values = parse_fields(fields)
    out = env.out

    display = FanoutDisplay(out, "address update")

    async def go() -> Any:
        async with open_agent(env) as agent:
            with display:
                return await agent.update_address(values, progress=display.event,
                                                  timeout_s=timeout,
                                                  only_held=only_held)  # fmt: skip

    report = run(go())
    # nothing done when no vendor has an agreement: no vendor has the new address (exit 1)
    outcome = fanout_outcome(report) if report.results else Outcome.FAILED
    result = {"fields": sorted(values), "outcome": outcome.label, **fanout_json(report),
              "skipped": [{"vendor": t.vendor, "url": t.url} for t in report.skipped]}
    if out.json_mode:
        out.json(result)
    elif not report.results:
        pass  # said on stderr, below
    else:
        if any(r.url not in display.said for r in report.results):  # else each said once
            out.print(FanoutDisplay.final_table(report, "who has your new address"))
        for r in report.results:
            for line in earlier_lines(r.vendor, r.delivery):
                out.print(line)
            if r.delivery is not None and held(r.delivery.error):
                out.print(f"[bold]{rbutton(r.vendor)}[/]")
                out.print(queued_line(r.delivery.error))
            if r.code == Problem.CHAIN_BROKEN.value:  # behind the vendor (§11.11)
                out.print(f"  {safe(r.vendor)}: {safe(behind_words(r.vendor))}")
        for t in report.skipped:
            out.print(f"  – {safe(t.vendor)}: not sent, it holds none of these fields from you")
        counts = report.counts()
        out.print(f"{counts['confirmed']} confirmed, {counts['queued']} queued, "
                  f"{counts['refused']} refused, {counts['failed']} failed "
                  f"in {report.elapsed_s:.2f} s")  # fmt: skip
    if not report.results and report.skipped:
        finish(EXIT_FAILED, "no vendor holds any of these fields from you, so nothing "
                            "was sent (--only-held); `vrm share VENDOR …` gives one to a "
                            "vendor")  # fmt: skip
    if not report.results:
        finish(EXIT_FAILED, "you have no agreed relationships, so nothing was sent; `vrm "
                            "connect URL` proffers your terms to a vendor")  # fmt: skip
    who = ", ".join(r.vendor for r in report.results if vendor_outcome(r) is outcome)
    conclude(outcome, {
        Outcome.FAILED: f"not taken by {who}: refused or failed (see above)",
        Outcome.HELD: f"not delivered to {who}: it now answers with another key, and the "
                      "update is held in the outbox until you decide (see above)",
        Outcome.UNREACHABLE: f"{who} could not be reached (see above)",
        Outcome.QUEUED: f"not delivered to {who} yet: the update waits in the outbox and goes "
                        "by itself (`vrm outbox run`); do not send it again",
    }.get(outcome, ""))
