"""``vrm history``: your signed record of a relationship, read, compared, reconciled, exported;
``vrm verify``: check an exported record without a data directory.

Moved out of ``_cmd_data.py`` (issue 11 item 7) when it learned to show what each message says.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from vrmproto._envelope import open_envelope
from vrmproto._errors import ProtocolError, VrmError
from vrmproto._files import atomic_write_text
from vrmproto._history import Entry
from vrmproto.cli._common import finish, now_ms, pick
from vrmproto.cli._context import Env, common_options, json_option, open_agent, pass_env, run
from vrmproto.cli._errors import EXIT_FAILED, EXIT_USAGE, CliError, Outcome
from vrmproto.cli._evidence import check_evidence, evidence_json
from vrmproto.cli._history_bodies import decode_entry
from vrmproto.cli._output import THEM, YOU, rbutton, safe, table
from vrmproto.cli._parse import format_time
from vrmproto.client import Agent, Reconciliation, RelationshipView
from vrmproto.client._ledger import ThreadKind
from vrmproto.client._reconcile import HISTORY_TIMEOUT_S
from vrmproto.client._waiting import Waiting

__all__ = ["history", "verify"]


async def _decoded(agent: Agent, view: RelationshipView, entries: list[Entry]
                   ) -> list[dict[str, Any]]:  # fmt: skip
    """Each entry with its body decoded, sealed content opened where we hold the key."""
    await agent.ledger.load(view.thread)  # remembers our keys in the thread for identity_of
    notes = {n.share: n for n in await agent.share_notes(view.thread)}
    return [decode_entry(e, agent.ledger.identity_of, notes) for e in entries]


@click.command()
@click.argument("vendor")
@click.option("--compare", is_flag=True, help="Fetch the vendor's copy and compare it with yours.")
@click.option("--reconcile", is_flag=True,
              help="Compare, and adopt the entries yours lacks (after restoring a backup).")
@click.option("--export", "export_to", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Write the signed evidence (every envelope, and how to check "
              "it) to FILE, to hand to someone else; `vrm verify FILE` checks it.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=HISTORY_TIMEOUT_S,
              show_default=True, metavar="S",
              help="Seconds to wait for the vendor's copy (--compare, --reconcile), every page "
                   "and retry included.")  # fmt: skip
@common_options
@pass_env
def history(env: Env, vendor: str, compare: bool, reconcile: bool, export_to: Path | None, *,
            timeout: float) -> None:  # fmt: skip
    """Your signed, hash-linked record of a relationship and what each message says;
    --compare checks it against theirs, --reconcile also takes from theirs what yours lacks
    (§8.3), --export writes it as evidence."""
    out = env.out

    async def go() -> tuple[RelationshipView, list[Entry], list[dict[str, Any]], Any, bool,
                            Reconciliation | None, list[Waiting]]:  # fmt: skip
        async with open_agent(env) as agent:
            view = await pick(agent, vendor, kinds=(ThreadKind.VENDOR, ThreadKind.INTENT))
            # a copy that does not verify is the vendor's: InvalidResponse (§8.3-2)
            if reconcile:  # compares, and leaves the copies equal unless they part for good
                done = await agent.reconcile(view.thread, timeout_s=timeout)
                div = None if done.kind in ("equal", "adopted") else done.divergence
                if done.kind == "fork" and done.adopted:  # they now part further on
                    div = await agent.compare_history(view.thread, timeout_s=timeout)
            else:
                done = None
                div = (await agent.compare_history(view.thread, timeout_s=timeout) if compare
                       else None)  # fmt: skip
            entries = await agent.history(view.thread)
            rows = await _decoded(agent, view, entries)
            unsent = (_unsent_at_fork(done, entries, await agent.waiting(),
                                      agent.ledger.identity_of)
                      if done is not None and done.kind == "fork" else [])  # fmt: skip
            return view, entries, rows, div, compare or reconcile, done, unsent

    view, entries, rows, div, compared, done, unsent = run(go())
    if done is not None:
        _report_reconciliation(env, done, unsent, view.vendor)
    comparison = _comparison(div, len(rows)) if compared else None
    if export_to is not None:
        doc = evidence_json(vendor=view.vendor, url=view.url, thread=view.thread,
                            exported_ms=now_ms(), entries=entries, rows=rows)  # fmt: skip
        try:
            atomic_write_text(export_to, json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
                              mode=0o600)  # it may hold what you shared, in clear
        except OSError as exc:  # named by the file asked for, not the temporary one beside it
            raise CliError(f"cannot write {export_to}: {exc.strerror or exc}", EXIT_USAGE,
                           kind="environment") from None  # fmt: skip
        out.note(f"wrote the signed evidence of {len(rows)} entries to {safe(export_to)}; "
                 f"`vrm verify {safe(export_to)}` checks it")  # fmt: skip
    forked = done is not None and done.kind == "fork"
    differ = done is None and comparison is not None and not comparison["equal"]
    outcome = Outcome.FAILED if forked or differ else Outcome.DONE
    if out.json_mode:
        out.json({"vendor": view.vendor, "thread": view.thread.hex(),
                  "outcome": outcome.label, "entries": rows,
                  "comparison": comparison,
                  "reconciliation": _reconciliation_json(done, unsent) if done else None,
                  })  # fmt: skip
    else:
        _print_history(env, view, rows, comparison)
    if forked:
        finish(EXIT_FAILED, f"your history with {view.vendor} and theirs fork: nothing past "
                            "that point was adopted" + (
                                f"; there your message {unsent[0].msg_id.hex()[:12]} waits in "
                                "the outbox, which the vendor never accepted (see above)"
                                if unsent else ""))  # fmt: skip
    if differ:
        finish(EXIT_FAILED, f"your history with {view.vendor} and theirs differ")


def _comparison(div: Any, entries: int) -> dict[str, Any]:
    comparison: dict[str, Any] = {"equal": div is None, "entries": entries}
    if div is not None:
        comparison.update(kind=div.kind, index=div.index,
                          ours=div.ours.msg_hash.hex() if div.ours else None,
                          theirs=div.theirs.msg_hash.hex() if div.theirs else None)  # fmt: skip
    return comparison


def _print_history(env: Env, view: RelationshipView, rows: list[dict[str, Any]],
                   comparison: dict[str, Any] | None) -> None:  # fmt: skip
    out = env.out
    t = table(f"{rbutton(view.vendor)} — history of {view.thread.hex()[:12]}",
              "#", "", "type", "created", "says", "message")  # fmt: skip
    for r in rows:
        arrow = f"{YOU} →" if r["direction"] == "out" else f"← {THEM}"
        kind = r["type"] + (" [dim](erased)[/]" if r.get("erased") else "")
        t.add_row(str(r["index"]), arrow, kind, format_time(r["created"]), safe(r["summary"]),
                  r["hash"][:12])  # fmt: skip
    out.print(t)
    if comparison is None:
        return
    if comparison["equal"]:
        out.print(f"[green]✓ identical[/]: the vendor's copy has the same {len(rows)} "
                  "entries, every link and signature verified")  # fmt: skip
    else:
        out.print(f"[red]✗ the histories part at entry {comparison['index']}[/] "
                  f"({comparison['kind']})")  # fmt: skip


def _unsent_at_fork(done: Reconciliation, entries: list[Entry], waiting: list[Waiting],
                    ours: Callable[[bytes], object]) -> list[Waiting]:  # fmt: skip
    """The messages of ours still waiting in the outbox from where the copies fork, when the
    entry there is one and the vendor holds a message of ours in its place (``ours``: our
    identity of a key, None if not ours): the vendor never accepted the waiting one
    (§8.1-5), and it links to what an older copy of our history held (a restored backup,
    §11.11), so the vendor would refuse it ``chain_broken`` — the fork is ours to undo (`vrm
    outbox drop`), not a disagreement to keep (§8.3-6). Where the vendor's own message
    stands there instead, both sent at once and the vendor may still take ours: no hint."""
    div = done.divergence
    if div is None or done.adopted or div.theirs is None or div.index >= len(entries):
        return []
    try:
        theirs = open_envelope(div.theirs.envelope, now=0, check_time=False, allow_erased=True)
    except VrmError:
        return []
    if not entries[div.index].outgoing or ours(theirs.sender) is None:
        return []
    mine = {w.msg_hash: w for w in waiting if w.thread == done.thread and w.signed}
    if entries[div.index].msg_hash not in mine:
        return []
    return [mine[e.msg_hash] for e in entries[div.index:] if e.msg_hash in mine]


def _reconciliation_json(done: Reconciliation, unsent: list[Waiting]) -> dict[str, Any]:
    div = done.divergence
    return {"kind": done.kind, "adopted": done.adopted, "index": div.index if div else None,
            "stopped": str(done.stopped) if done.stopped else None,
            "waiting": [w.msg_id.hex() for w in unsent]}  # fmt: skip


_RECONCILED = {
    "equal": "[green]✓ nothing to adopt[/]: your copy already matches the vendor's",
    "adopted": "[green]✓ adopted {n} entries[/] your copy lacked, each checked as when it was sent",
    "ahead": "the vendor lacks entries you hold; it will catch up when it reconciles (§8.3-5)",
    "crossing": "you and the vendor sent at the same time: both copies hold the same messages",
    "fork": "[red]✗ the copies fork at entry {i}[/]: nothing past it was adopted",
}


def _report_reconciliation(env: Env, done: Reconciliation, unsent: list[Waiting],
                           vendor: str) -> None:  # fmt: skip
    if env.out.json_mode:
        return
    div = done.divergence
    at = div.index + done.adopted if div else 0  # where they part after what was adopted
    env.out.print(_RECONCILED[done.kind].format(n=done.adopted, i=at))
    if done.stopped is not None:
        env.out.print(f"  the entry that could not be applied: {safe(done.stopped)}")
    if unsent:
        first = unsent[0]
        env.out.print(
            f"  there your {safe(first.type)} {first.msg_id.hex()[:12]} waits in the outbox: "
            "the vendor never accepted it, and holds a message of yours there that your "
            "history lacks (was your data directory restored from a backup?), so it would "
            "refuse it. "
            f"`vrm outbox drop {first.msg_id.hex()[:12]}` takes it back out"
            + (f" with the {len(unsent) - 1} after it" if len(unsent) > 1 else "")
            + f" (send it again afterwards), then `vrm history {safe(shlex.quote(vendor))} "
            "--reconcile` takes what the vendor holds"
        )  # fmt: skip


#: The largest evidence file ``vrm verify`` reads (a file someone hands over may be anything).
MAX_EVIDENCE_BYTES = 256 * 1024 * 1024


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@pass_env
def verify(env: Env, file: Path) -> None:
    """Check an evidence file from `vrm history --export`: every signature, body hash and hash
    link (§3.5, §8.2). Needs no data directory."""
    size = file.stat().st_size
    if size > MAX_EVIDENCE_BYTES:  # read whole, then parsed: several times this in memory
        raise CliError(f"{file} is not an evidence file vrm reads: {size:,} bytes, more than "
                       f"{MAX_EVIDENCE_BYTES:,} (an export of a relationship of hundreds of "
                       "thousands of messages)", EXIT_USAGE, kind="not_evidence")  # fmt: skip
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"{file} is not an evidence file: {exc}", EXIT_USAGE,
                       kind="not_evidence") from None  # fmt: skip
    except RecursionError:  # a file made to break the parser: `vrm history --export` nests 3
        raise CliError(f"{file} is not an evidence file: its JSON nests too deeply",
                       EXIT_USAGE, kind="not_evidence") from None  # fmt: skip
    try:
        proved = check_evidence(doc)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE, kind="not_evidence") from None
    except ProtocolError as exc:  # its text ends with the clause it cites ("(§8.3-2)")
        raise CliError(f"{file} does not verify: {exc}", EXIT_FAILED,
                       kind="forged") from None  # fmt: skip
    if env.out.json_mode:
        env.out.json({"file": str(file), "valid": True, **proved})
        return
    env.out.print(f"[green]✓ verified[/]: {proved['entries']} entries of thread "
                  f"{proved['thread'][:12]} between {' and '.join(proved['parties'])}, every "
                  "signature, body hash and link")  # fmt: skip
