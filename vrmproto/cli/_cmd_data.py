"""The relationship and its data: ``vrm relationships``, ``share``, ``withdraw``, ``data``,
``address set`` and ``history`` (``outbox`` lives in :mod:`._cmd_outbox`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from vrmproto._keys import fingerprint
from vrmproto._messages import DataErased
from vrmproto._vocab import parse_category, parse_purpose, suggest_category
from vrmproto.cli._cmd_outbox import outbox
from vrmproto.cli._common import finish, need_agreement, pick
from vrmproto.cli._context import Env, common_options, open_agent, pass_env, run
from vrmproto.cli._errors import EXIT_FAILED, EXIT_USAGE, CliError
from vrmproto.cli._output import (
    THEM,
    YOU,
    rbutton,
    record_json,
    records_table,
    short,
    table,
    term_json,
    terms_short,
)
from vrmproto.cli._parse import format_date, format_time, parse_duration, parse_fields
from vrmproto.cli._progress import FanoutDisplay
from vrmproto.client import Delivery, Reconciliation, RelationshipView
from vrmproto.client._ledger import ThreadKind
from vrmproto.client._own import own_header
from vrmproto.store import ShareNote

__all__ = ["address", "data", "history", "outbox", "relationships", "share", "withdraw"]


# -- relationships -----------------------------------------------------------------------------


def _shares_of(view: RelationshipView, notes: Sequence[ShareNote]) -> list[dict[str, Any]]:
    by_hash = {n.share: n for n in notes}
    out = []
    for share_hash, expires in view.shares:
        note = by_hash.get(share_hash)
        out.append({
            "hash": share_hash.hex(),
            "expires": expires,
            "fields": [name for name, _ in note.fields] if note is not None else [],
        })  # fmt: skip
    return out


def view_json(view: RelationshipView, notes: Sequence[ShareNote]) -> dict[str, Any]:
    return {
        "vendor": view.vendor,
        "url": view.url,
        "thread": view.thread.hex(),
        "kind": view.kind,
        "state": view.state,
        "terms": [term_json(t) for t in view.terms],
        "terms_short": terms_short(view.terms),
        "agreement": view.agreement.hex() if view.agreement else None,
        "shares": _shares_of(view, notes),
        "last_activity": view.last_activity_ms,
        "pending": view.pending,
        "last_problem": view.last_problem,
        "vendor_fingerprint": view.vendor_fingerprint,
        "your_fingerprint": fingerprint(view.local_key),
    }


_STATE_STYLE = {"agreed": "green", "rejected": "red", "countered": "yellow", "ended": "dim"}


def relationships_table(rows: list[dict[str, Any]], title: str | None = None) -> Any:
    t = table(title or f"{YOU} you {THEM} vendors", "vendor", "state", "agreed terms", "shared",
              "last activity", "outbox")  # fmt: skip
    for r in rows:
        style = _STATE_STYLE.get(r["state"], "")
        shared = "; ".join(
            (", ".join(s["fields"]) or s["hash"][:8]) + f" (until {format_date(s['expires'])})"
            for s in r["shares"]
        )  # fmt: skip
        t.add_row(
            f"{YOU} {THEM} {r['vendor']}",
            f"[{style}]{r['state']}[/]" if style else r["state"],
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

    async def go() -> tuple[list[RelationshipView], list[ShareNote]]:
        async with open_agent(env) as agent:
            return await agent.relationships(), await agent.share_notes()

    views, notes = run(go())
    rows = [view_json(v, notes) for v in views if show_all or v.thread_kind is ThreadKind.VENDOR]
    if out.json_mode:
        out.json({"relationships": rows})
        return
    if not rows:
        out.print("No relationships yet: `vrm connect URL` proffers your terms to a vendor.")
        return
    out.print(relationships_table(rows))


# -- data ------------------------------------------------------------------------------------


def _erased(d: Delivery) -> Any:
    for r in d.replies:
        if isinstance(r.message.body, DataErased):
            return r.message
    return None


@click.command()
@click.argument("vendor")
@click.argument("fields", nargs=-1, required=True, metavar="FIELD=VALUE…")
@click.option("--purpose", "purposes", multiple=True, default=("core-function",),
              show_default=True, help="Why the vendor may use it (Kantara purpose; repeatable).")
@click.option("--category", "categories", multiple=True,
              help="Kind of data (Kantara category; repeatable); guessed from field names.")
@click.option("--expires", default="30d", show_default=True,
              help="When the vendor must delete it: 30d, 12h, …")
@common_options
@pass_env
def share(env: Env, *, vendor: str, fields: tuple[str, ...], purposes: tuple[str, ...],
          categories: tuple[str, ...], expires: str) -> None:  # fmt: skip
    """Share data with one vendor under your agreement, sealed so only it can read it."""
    values = parse_fields(fields)
    try:
        purpose_ids = sorted({parse_purpose(p) for p in purposes})
        category_ids = sorted({parse_category(c) for c in categories}
                              or {suggest_category(f) for f in values})  # fmt: skip
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    lifetime = parse_duration(expires, default_unit="d")
    out = env.out

    async def go() -> tuple[RelationshipView, Delivery, int, bool]:
        async with open_agent(env) as agent:
            view = await pick(agent, vendor)
            need_agreement(view)
            until = agent.clock() + lifetime
            d = await agent.share(view.thread, values, purposes=purpose_ids,
                                  categories=category_ids, expires_ms=until)  # fmt: skip
            notes = await agent.share_notes(view.thread)
            return view, d, until, any(n.share == d.msg_hash for n in notes)

    view, d, until, noted = run(go())
    result = {
        "vendor": view.vendor, "share": d.msg_hash.hex(), "status": d.status,
        "fields": sorted(values), "purposes": purpose_ids, "categories": category_ids,
        "expires": until, "noted": noted,
    }  # fmt: skip
    if out.json_mode:
        out.json(result)
        return
    out.print(f"[bold]{rbutton(view.vendor)}[/]")
    if d.status == "confirmed":
        out.print(f"  [green]✓ shared[/] {', '.join(sorted(values))} until {format_date(until)}"
                  f" — share {short(d.msg_hash)}, receipt signed by the vendor")  # fmt: skip
    else:
        out.print(f"  ⏸ queued ({d.error}); `vrm outbox run` delivers it")


@click.command()
@click.argument("vendor")
@click.option("--share", "share_ids", multiple=True, metavar="HASH",
              help="Withdraw only this share (a prefix of its hash; repeatable). Default: all.")
@click.option("--reason", help="Why, if you want to say.")
@common_options
@pass_env
def withdraw(env: Env, *, vendor: str, share_ids: tuple[str, ...], reason: str | None) -> None:
    """Withdraw consent: the vendor must delete what you shared, and confirms it signed."""
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
            if not live:
                raise CliError(f"nothing shared with {view.vendor} is live; nothing to withdraw",
                               EXIT_USAGE, kind="nothing_shared")  # fmt: skip
            d = await agent.withdraw(view.thread, chosen, reason=reason)
            return view, d, chosen or live

    view, d, withdrawn = run(go())
    erased = _erased(d) if d.status == "confirmed" else None  # the notes say so too
    result = {
        "vendor": view.vendor,
        "withdraw": d.msg_hash.hex(),
        "status": d.status,
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
            out.print(f"  [green]✓ deleted[/]: {len(erased.body.shares)} share(s); signed "
                      f"confirmation {short(erased.hash)} from {fingerprint(erased.sender)}, "
                      "kept in your history")  # fmt: skip
        elif d.status == "queued":
            out.print(f"  ⏸ queued ({d.error}); `vrm outbox run` delivers it")
        else:
            out.print("  delivered; the vendor has not confirmed the deletion yet")
    if d.status == "confirmed" and erased is None:
        finish(EXIT_FAILED, f"{view.vendor} has not confirmed the deletion")


@click.command()
@click.argument("vendor")
@common_options
@pass_env
def data(env: Env, vendor: str) -> None:
    """Ask a vendor for the data it holds about you, in the standard form (vrm-data/1)."""
    out = env.out

    async def go() -> tuple[RelationshipView, Any]:
        async with open_agent(env) as agent:
            view = await pick(agent, vendor)
            need_agreement(view)
            return view, await agent.request_data(view.thread)

    view, records = run(go())
    if out.json_mode:
        out.json({"vendor": view.vendor, "format": "vrm-data/1",
                  "records": [record_json(r) for r in records]})  # fmt: skip
        return
    if not records:
        out.print(f"{rbutton(view.vendor)}: it holds nothing about you.")
        return
    out.print(records_table(records, f"what {view.vendor} holds about you (vrm-data/1)"))


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
@common_options
@pass_env
def address_set(env: Env, fields: tuple[str, ...], timeout: float) -> None:
    """Send new contact details to every vendor you have an agreement with, in parallel.

    Vendors that cannot be reached now keep the update queued; `vrm outbox run` (or a running
    `vrm agent serve`) delivers it when they are back.
    """
    values = parse_fields(fields)
    out = env.out

    async def go() -> Any:
        async with open_agent(env) as agent:
            display = FanoutDisplay(out, "address update")
            with display:
                return await agent.update_address(values, progress=display.event,
                                                  timeout_s=timeout)  # fmt: skip

    report = run(go())
    result = {"fields": sorted(values), **fanout_json(report)}
    if out.json_mode:
        out.json(result)
    elif not report.results:
        out.print("You have no agreed relationships; nothing was sent.")
    else:
        out.print(FanoutDisplay.final_table(report, "who has your new address"))
        counts = report.counts()
        out.print(f"{counts['confirmed']} confirmed, {counts['queued']} queued, "
                  f"{counts['refused']} refused, {counts['failed']} failed "
                  f"in {report.elapsed_s:.2f} s")  # fmt: skip
    if report.refused or report.failed:
        finish(EXIT_FAILED, "some vendors refused or failed the update (see above)")


# -- history ---------------------------------------------------------------------------------


def entry_json(e: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"index": e.index, "hash": e.msg_hash.hex(), "link": e.link.hex(),
                           "direction": "out" if e.outgoing else "in"}  # fmt: skip
    header = own_header(e.envelope)  # every entry was verified when the history was loaded
    if header is None:  # pragma: no cover - and so is an envelope
        row.update(type="?", created=0, erased=False)
    else:
        row.update(type=header.type, created=header.created, erased=header.erased)
    return row


@click.command()
@click.argument("vendor")
@click.option("--compare", is_flag=True, help="Fetch the vendor's copy and compare it with yours.")
@click.option("--reconcile", is_flag=True,
              help="Compare, and adopt the entries yours lacks (after restoring a backup).")
@common_options
@pass_env
def history(env: Env, vendor: str, compare: bool, reconcile: bool) -> None:
    """Your signed, hash-linked record of a relationship; --compare checks it against theirs,
    --reconcile also takes from theirs what yours lacks (§8.3)."""
    out = env.out

    async def go() -> tuple[RelationshipView, list[Any], Any, bool, Reconciliation | None]:
        async with open_agent(env) as agent:
            view = await pick(agent, vendor, kinds=(ThreadKind.VENDOR, ThreadKind.INTENT))
            if reconcile:  # compares, and leaves the copies equal unless they part for good
                done = await agent.reconcile(view.thread)
                div = None if done.kind in ("equal", "adopted") else done.divergence
                if done.kind == "fork" and done.adopted:  # they now part further on
                    div = await agent.compare_history(view.thread)
            else:
                done, div = None, await agent.compare_history(view.thread) if compare else None
            entries = await agent.history(view.thread)
            return view, entries, div, compare or reconcile, done

    view, entries, div, compared, done = run(go())
    if done is not None:
        _report_reconciliation(env, done)
    rows = [entry_json(e) for e in entries]
    comparison: dict[str, Any] | None = None
    if compared:
        comparison = {"equal": div is None, "entries": len(rows)}
        if div is not None:
            comparison.update(kind=div.kind, index=div.index,
                              ours=div.ours.msg_hash.hex() if div.ours else None,
                              theirs=div.theirs.msg_hash.hex() if div.theirs else None)  # fmt: skip
    if out.json_mode:
        out.json({"vendor": view.vendor, "thread": view.thread.hex(), "entries": rows,
                  "comparison": comparison,
                  "reconciliation": _reconciliation_json(done) if done else None})  # fmt: skip
    else:
        t = table(f"{rbutton(view.vendor)} — history of {view.thread.hex()[:12]}",
                  "#", "", "type", "created", "message")  # fmt: skip
        for r in rows:
            arrow = f"{YOU} →" if r["direction"] == "out" else f"← {THEM}"
            kind = r["type"] + (" [dim](erased)[/]" if r.get("erased") else "")
            t.add_row(str(r["index"]), arrow, kind, format_time(r["created"]), r["hash"][:12])
        out.print(t)
        if comparison is not None:
            if comparison["equal"]:
                out.print(f"[green]✓ identical[/]: the vendor's copy has the same {len(rows)} "
                          "entries, every link and signature verified")  # fmt: skip
            else:
                out.print(f"[red]✗ the histories part at entry {comparison['index']}[/] "
                          f"({comparison['kind']})")  # fmt: skip
    if done is not None and done.kind == "fork":
        finish(EXIT_FAILED, f"your history with {view.vendor} and theirs fork: nothing past "
                            "that point was adopted")  # fmt: skip
    if done is None and comparison is not None and not comparison["equal"]:
        finish(EXIT_FAILED, f"your history with {view.vendor} and theirs differ")


def _reconciliation_json(done: Reconciliation) -> dict[str, Any]:
    div = done.divergence
    return {"kind": done.kind, "adopted": done.adopted, "index": div.index if div else None,
            "stopped": str(done.stopped) if done.stopped else None}  # fmt: skip


_RECONCILED = {
    "equal": "[green]✓ nothing to adopt[/]: your copy already matches the vendor's",
    "adopted": "[green]✓ adopted {n} entries[/] your copy lacked, each checked as when it was sent",
    "ahead": "the vendor lacks entries you hold; it will catch up when it reconciles (§8.3-5)",
    "crossing": "you and the vendor sent at the same time: both copies hold the same messages",
    "fork": "[red]✗ the copies fork at entry {i}[/]: nothing past it was adopted",
}


def _report_reconciliation(env: Env, done: Reconciliation) -> None:
    if env.out.json_mode:
        return
    div = done.divergence
    at = div.index + done.adopted if div else 0  # where they part after what was adopted
    env.out.print(_RECONCILED[done.kind].format(n=done.adopted, i=at))
    if done.stopped is not None:
        env.out.print(f"  the entry that could not be applied: {done.stopped}")
