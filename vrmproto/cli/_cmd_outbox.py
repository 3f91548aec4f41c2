"""``vrm outbox``: every message waiting for a vendor, relationship by relationship, and why;
``vrm outbox run`` delivers them, ``vrm outbox retry [ID]`` now whatever the schedule says,
``vrm outbox drop ID`` gives one up (spec §12, durability; :mod:`vrmproto.client._waiting`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from vrmproto.cli._common import conclude
from vrmproto.cli._context import Env, common_options, open_agent, pass_env, run
from vrmproto.cli._errors import EXIT_USAGE, CliError, Outcome, delivery_outcome, worst
from vrmproto.cli._output import Out, brief, held, safe, table, waits_because
from vrmproto.cli._parse import format_time
from vrmproto.client import Delivery, OutboxRun
from vrmproto.client._held import HELD
from vrmproto.client._waiting import Waiting, WaitReason

__all__ = ["outbox"]


def _waiting_rows(items: Sequence[Waiting], labels: dict[bytes, str]) -> list[dict[str, Any]]:
    return [{
        "id": w.msg_id.hex(), "vendor": labels.get(w.thread, w.destination or w.thread.hex()),
        "thread": w.thread.hex(), "type": w.type, "signed": w.signed,
        "reason": w.reason.value, "item": w.item_id, "destination": w.destination,
        "message": w.msg_hash.hex(), "attempts": w.attempts,
        "next_attempt": w.next_attempt_ms, "last_error": w.last_error,
    } for w in items]  # fmt: skip


def _print_waiting(out: Out, rows: list[dict[str, Any]]) -> None:
    t = table("waiting to be delivered, in order", "vendor", "id", "message", "why it waits",
              "attempts", "next try")  # fmt: skip
    for r in rows:
        why = r["reason"]
        if why == WaitReason.HELD.value:  # the key change, and what the person can do
            why = r["last_error"] or why
        elif why == WaitReason.UNREACHABLE.value:  # or answered "not now"
            why = waits_because(r["last_error"])
        elif r["last_error"]:
            why += f": {brief(r['last_error'])}"
        t.add_row(safe(r["vendor"]), r["id"][:12], r["type"], safe(why), str(r["attempts"]),
                  "when you act" if r["reason"] == WaitReason.HELD.value
                  else format_time(r["next_attempt"]) if r["next_attempt"] else "—")  # fmt: skip
    out.print(t)
    out.print(f"[dim]{len(rows)} waiting. `vrm outbox run` delivers what is due, "
              "`vrm outbox retry [ID]` tries now, `vrm outbox drop ID` gives one up.[/]")


@click.group(invoke_without_command=True)
@common_options
@pass_env
def outbox(env: Env) -> None:
    """Every message waiting for a vendor, by relationship, with the reason it waits."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    out = env.out

    async def go() -> list[dict[str, Any]]:
        async with open_agent(env) as agent:
            labels = {v.thread: v.vendor for v in await agent.relationships()}
            return _waiting_rows(await agent.waiting(), labels)

    rows = run(go())
    if out.json_mode:
        out.json({"pending": rows})
        return
    if not rows:
        out.print("The outbox is empty: nothing waits to be delivered.")
        return
    _print_waiting(out, rows)


def _run_outcome(outcome: OutboxRun, left: Sequence[Waiting]) -> Outcome:
    """What a run leaves: a message refused or dropped (1), then one held until the person
    decides (5), then one still waiting (3); 0 when the outbox is empty."""
    return worst([*(delivery_outcome(d) for d in outcome.deliveries),
                  *(Outcome.HELD if w.reason is WaitReason.HELD else Outcome.QUEUED
                    for w in left)])  # fmt: skip


def _report_run(env: Env, outcome: OutboxRun, labels: dict[bytes, str],
                left: Sequence[Waiting]) -> None:  # fmt: skip
    out = env.out
    rows: list[dict[str, Any]] = [
        {"vendor": labels.get(d.thread, d.thread.hex()), "thread": d.thread.hex(),
         "id": d.msg_id.hex(), "message": d.msg_hash.hex(), "type": d.type or None,
         "status": d.status, "detail": str(d.error) if d.error else ""}
        for d in outcome.deliveries
    ]  # fmt: skip
    ends = _run_outcome(outcome, left)
    if out.json_mode:
        out.json({"outcome": ends.label, "deliveries": rows, "counts": outcome.counts(),
                  "waiting": len(left)})  # fmt: skip
    elif not rows:
        out.print("Nothing was due." if left else "Nothing was waiting.")
    else:
        t = table("outbox run", "vendor", "message, id", "result")
        marks = {"confirmed": "[green]✓ confirmed[/]", "queued": "⏸ still queued",
                 "refused": "[red]✗ refused[/]", "dropped": "[red]✗ dropped[/]"}  # fmt: skip
        for r in rows:
            # by the id `vrm outbox` lists and `vrm outbox retry/drop ID` take, not its hash
            what = " ".join(filter(None, (r["type"], r["id"][:12])))
            mark = "[red]⏸ held[/]" if held(r["detail"]) else marks[r["status"]]
            detail = r["detail"].removeprefix(HELD)  # said by the mark
            t.add_row(safe(r["vendor"]), what,
                      mark + (f" — {safe(brief(detail))}" if detail and
                              r["status"] != "confirmed" else ""))  # fmt: skip
        out.print(t)
    gone = sum(1 for r in rows if r["status"] in ("refused", "dropped"))
    kept = sum(1 for w in left if w.reason is WaitReason.HELD)
    said = [f"{gone} message(s) refused or dropped (see above)"] if gone else []
    if kept:
        said.append(f"{kept} message(s) held until you decide about a vendor's new key "
                    "(`vrm outbox` says which)")
    if len(left) > kept:
        said.append(f"{len(left) - kept} message(s) still waiting, and they go by themselves "
                    "(`vrm outbox` says why)")
    conclude(ends, "; ".join(said))


@outbox.command("run")
@common_options
@pass_env
def outbox_run(env: Env) -> None:
    """Deliver everything waiting, every relationship in order, without waiting for the retry
    schedule."""

    async def go() -> tuple[OutboxRun, dict[bytes, str], list[Waiting]]:
        async with open_agent(env) as agent:
            labels = {v.thread: v.vendor for v in await agent.relationships()}
            outcome = await agent.retry_waiting()
            return outcome, labels, list(await agent.waiting())

    _report_run(env, *run(go()))


@outbox.command("retry")
@click.argument("message_id", required=False)
@common_options
@pass_env
def outbox_retry(env: Env, message_id: str | None) -> None:
    """Try now the relationship of the waiting message MESSAGE_ID (every one without it)."""

    async def go() -> tuple[OutboxRun, dict[bytes, str], list[Waiting]]:
        async with open_agent(env) as agent:
            labels = {v.thread: v.vendor for v in await agent.relationships()}
            try:
                outcome = await agent.retry_waiting(message_id)
            except LookupError as exc:
                raise CliError(str(exc.args[0]), EXIT_USAGE, kind="not_found") from None
            return outcome, labels, list(await agent.waiting())

    _report_run(env, *run(go()))


@outbox.command("drop")
@click.argument("message_id")
@common_options
@pass_env
def outbox_drop(env: Env, message_id: str) -> None:
    """Give up the waiting message MESSAGE_ID (at least 4 hex digits of the id `vrm outbox`
    shows): it is taken back out of your history, never sent."""
    out = env.out

    async def go() -> Delivery:
        async with open_agent(env) as agent:
            try:
                return await agent.drop_waiting(message_id)
            except LookupError as exc:
                raise CliError(str(exc.args[0]), EXIT_USAGE, kind="not_found") from None

    d = run(go())
    if out.json_mode:
        out.json({"dropped": d.msg_id.hex(), "thread": d.thread.hex(),
                  "message": d.msg_hash.hex()})  # fmt: skip
        return
    out.print(f"Dropped {d.msg_id.hex()[:12]}: it will not be sent; what waited behind it "
              "goes next (`vrm outbox run`).")
