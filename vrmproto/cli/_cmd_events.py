"""``vrm vendor events``: read a vendor's event feed (docs/events.md), and its webhooks' dead
letters.

::

    vrm vendor events --config vendor.toml                  # the whole feed, one line each
    vrm vendor events --config vendor.toml --since evt_…    # after that event (or a position)
    vrm vendor events --config vendor.toml --follow --json  # then each new one, as JSON lines
    vrm vendor events --config vendor.toml --dead           # the webhooks' dead letters
    vrm vendor events --config vendor.toml --replay         # deliver them again
    vrm vendor events --config vendor.toml --cursors        # every consumer's cursor
    vrm vendor events --config vendor.toml --forget tryton:old   # drop a consumer gone for good

The store is the one ``vrm vendor serve`` uses for the same file (and ``--data-dir``). With
``--follow`` in a process of its own, new events are found as they are committed on a
``postgresql`` store (LISTEN/NOTIFY), and by reading the store every ``[server] feed_poll_s``
seconds (default 1) on the others.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from pathlib import Path

import click

from vrmproto.cli._context import run
from vrmproto.cli._errors import EXIT_FAILED, EXIT_USAGE, CliError
from vrmproto.cli._home import default_home
from vrmproto.cli._vendor import check_vendor_file, default_vendor_dir
from vrmproto.server._config import VendorFile
from vrmproto.server._events import FeedEvent, FeedTrimmed, Wakeup, follow
from vrmproto.server._retention import BRIDGE_PREFIX
from vrmproto.server._webhooks import Deliverer, listening_url, shown
from vrmproto.store import Store

__all__ = ["vendor_events"]


def _line(e: FeedEvent) -> str:
    when = dt.datetime.fromtimestamp(e.recorded_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    fields = "" if e.personal is None else "  fields: " + ", ".join(sorted(e.personal["fields"]))
    return f"{e.pos:>6}  {when}  {e.kind:<20}  {e.thread.hex()[:12]}  {e.id[:16]}…{fields}"


async def _open(file: VendorFile, name: str, data_dir: Path | None) -> Store:
    from vrmproto.cli import _cmd_vendor  # noqa: PLC0415 -- it registers this command

    memory = file.store.kind == "memory"
    if memory:
        raise CliError("a vendor whose store is in memory keeps no feed to read", EXIT_USAGE,
                       kind="config")  # fmt: skip
    directory = data_dir or default_vendor_dir(default_home(), name)
    if file.store.kind != "postgresql" and not directory.is_dir():
        raise CliError(f"no vendor data in {directory} (serve it first, or give --data-dir)",
                       EXIT_USAGE, kind="config")  # fmt: skip
    return await _cmd_vendor._open_store(file, directory)


async def _read(store: Store, since: str | None, follow_: bool, as_json: bool,
                poll_s: float) -> None:  # fmt: skip
    after: int | str = 0
    if since:
        after = int(since) if since.isascii() and since.isdigit() else since  # not "²"
    if isinstance(after, int) and after > (head := await store.feed_head()):
        # positions are never handed out again: following from there would skip every event
        # up to it without a word (or wait for ever)
        newest = (f"the feed's newest event is at position {head}: `--since {head}` reads "
                  "the events that come next" if head else "the feed holds no event yet: "
                  "without --since (or `--since 0`) it reads every event")  # fmt: skip
        raise CliError(f"no event comes after position {after}: {newest} (a position from a "
                       "store since restored from a backup, or another vendor's?)", EXIT_USAGE,
                       kind="usage")  # fmt: skip
    try:
        wakeup = Wakeup(poll_s).watch(store) if follow_ else None
        async for e in follow(store, wakeup, after):
            click.echo(json.dumps(e.as_json()) if as_json else _line(e))
    except KeyError as exc:
        floor = await store.feed_floor()
        trimmed = (f", which retention trimmed up to position {floor} ([feed] in the vendor "
                   f"file): an event that was there is no longer. {await _starts(store, floor)}"
                   if floor else "")  # fmt: skip
        raise CliError(f"{exc.args[0]}{trimmed}", EXIT_USAGE, kind="usage") from None
    except FeedTrimmed as exc:  # docs/events.md "Retention": told, never skipped silently
        raise CliError(
            f"the events after position {exc.after} up to {exc.floor} are no longer in the "
            "feed: retention trimmed them ([feed] keep_days and max_days in the vendor file, "
            f"docs/events.md \"Retention\"), and they cannot be read again. "
            f"{await _starts(store, exc.floor)}", EXIT_FAILED, kind="trimmed") from None


async def _starts(store: Store, floor: int) -> str:
    """Where the feed goes on after what was trimmed up to ``floor``, and how to read it."""
    kept = await store.events(floor, 1)
    if not kept:
        return "It holds no event after them yet (`--follow` waits for the next)"
    return (f"It now goes on at position {kept[0].pos}: `--since {floor}` reads from there "
            "(without --since: everything it keeps)")


async def _dead(file: VendorFile, store: Store, replay: bool, as_json: bool) -> None:
    if not replay:
        dead = await store.dead_letters()
        if not dead and not as_json:  # it printed nothing: as if it had not looked
            click.echo("No dead letters: no webhook has given up on an event.")
        for d in dead:
            row = {"webhook": shown(d.name), "pos": d.pos, "failed": d.failed_ms,
                   "error": d.error}  # fmt: skip
            click.echo(json.dumps(row) if as_json else f"{row['webhook']}  {d.pos:>6}  {d.error}")
        return
    if not file.webhooks and not as_json:  # it printed nothing: as if it had not looked
        click.echo("The vendor file has no [[webhooks]]: nothing to deliver again.")
    # the source serve delivers from (docs/events.md): a receiver routes and de-duplicates by it
    source = file.server.public_url or listening_url(file) or "urn:vrmproto:vendor"
    for entry in file.webhooks:
        hook = entry.webhook(source)
        async with Deliverer(hook, store) as deliverer:
            delivered, left = await deliverer.replay()
        row = {"webhook": hook.shown, "delivered": delivered, "still_dead": left}
        click.echo(json.dumps(row) if as_json else
                   f"{hook.shown}: {delivered} delivered, {left} still dead")  # fmt: skip


def _named(file: VendorFile) -> dict[str, str]:
    """The consumers the vendor file names, each with what it is: retention keeps the feed for
    each (docs/events.md, "Retention")."""
    named = {e.name or e.url: "webhook" for e in file.webhooks}
    return named | dict.fromkeys(file.feed.consumers, "[feed] consumers")


def _kind(name: str, named: dict[str, str]) -> str:
    if name in named:
        return named[name]
    if name.startswith(BRIDGE_PREFIX):
        return "Tryton bridge"
    return "not in the vendor file"


async def _cursors(file: VendorFile, store: Store, as_json: bool) -> None:
    """Every consumer's cursor: where it is, how far behind the feed, and whether retention
    keeps the feed for it (a name the vendor file no longer gives does not count)."""
    named, head = _named(file), await store.feed_head()
    cursors = await store.event_cursors()
    rows = [{"consumer": shown(name), "pos": cursors.get(name, 0),
             "behind": max(0, head - cursors.get(name, 0)),
             "ahead": max(0, cursors.get(name, 0) - head), "kind": _kind(name, named),
             "keeps_feed": name in named or name.startswith(BRIDGE_PREFIX)}
            for name in sorted({*cursors, *named})]  # fmt: skip
    for row in rows:
        where = (f"{row['ahead']} past the feed's newest event (a store restored from an older "
                 "backup? its consumer stops: docs/events.md)" if row["ahead"]
                 else f"{row['behind']} behind")  # fmt: skip
        click.echo(json.dumps(row) if as_json else
                   f"{row['consumer']}  at {row['pos']}, {where}  ({row['kind']}"
                   + ("" if row["keeps_feed"] else ": does not keep the feed") + ")")  # fmt: skip
    if not rows and not as_json:
        click.echo("No consumer has a cursor yet.")


async def _forget(file: VendorFile, store: Store, name: str) -> None:
    """Drop a consumer the vendor no longer has (a Tryton database removed, a webhook taken
    out of the file): its cursor held the feed back until ``[feed] max_days``."""
    named, cursors = _named(file), await store.event_cursors()
    known = {*cursors, *(d.name for d in await store.dead_letters())}
    matches = [n for n in known if n == name] or [n for n in known if shown(n) == name]
    if name in named or any(n in named for n in matches):
        raise CliError(f"{name} is a {named.get(name) or 'consumer'} the vendor file still "
                       "names: take it out of the file first (forgotten, it would start over "
                       "from the oldest event kept and keep the whole feed until then)",
                       EXIT_USAGE, kind="usage")  # fmt: skip
    if len(matches) > 1:  # webhook urls that differ only in their password (shown as ***)
        raise CliError(f"{len(matches)} consumers show as {name!r}: webhook urls that differ "
                       "only in their password. Give the url with its password to forget one",
                       EXIT_USAGE, kind="usage")  # fmt: skip
    if not matches:
        listed = ", ".join(sorted(shown(n) for n in known)) or "none"
        raise CliError(f"no consumer named {name!r} (the consumers with a cursor or dead letters: "
                       f"{listed}; `--cursors` lists them)", EXIT_USAGE, kind="usage")  # fmt: skip
    (found,) = matches
    pos = cursors.get(found)
    await store.forget_consumer(found)
    click.echo(f"forgot {shown(found)}"
               + (f" (its cursor was at position {pos})" if pos is not None else "")
               + ": the feed is no longer kept for it, and the next trim of `vrm vendor serve` "
               "may let go of what only it held back"
               + (" (a bridge run again records its cursor anew)"
                  if found.startswith(BRIDGE_PREFIX) else ""))  # fmt: skip


async def _events(config_path: str, data_dir: Path | None, *, since: str | None, follow_: bool,
                  as_json: bool, dead: bool, replay: bool, cursors: bool,
                  forget: str | None) -> None:  # fmt: skip
    file, config = check_vendor_file(config_path, os.environ)
    store = await _open(file, config.name, data_dir)
    try:
        if forget is not None:
            await _forget(file, store, forget)
        elif cursors:
            await _cursors(file, store, as_json)
        elif dead or replay:
            await _dead(file, store, replay, as_json)
        else:
            await _read(store, since, follow_, as_json, file.server.feed_poll_s)
    finally:
        await store.close()


@click.command("events")
@click.option("--config", "config_path", required=True,
              type=click.Path(dir_okay=False, exists=True), help="The vendor's TOML file.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The vendor's data directory (as given to vrm vendor serve).")
@click.option("--since", help="Start after this event id (or feed position).")
@click.option("--follow", "follow_", is_flag=True, help="Then print each new event.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--dead", is_flag=True, help="List the webhooks' dead letters.")
@click.option("--replay", is_flag=True, help="Deliver the webhooks' dead letters again.")
@click.option("--cursors", is_flag=True,
              help="List every consumer's cursor: where it is, how far behind, and whether the "
                   "feed is kept for it.")  # fmt: skip
@click.option("--forget", metavar="CONSUMER",
              help="Drop the cursor (and dead letters) of a consumer that is gone for good — a "
                   "Tryton database removed (tryton:DB), a webhook taken out of the file — so "
                   "that the feed is no longer kept for it.")  # fmt: skip
def vendor_events(*, config_path: str, data_dir: Path | None, since: str | None, follow_: bool,
                  as_json: bool, dead: bool, replay: bool, cursors: bool,
                  forget: str | None) -> None:  # fmt: skip
    """Read the vendor's event feed: what its customers agreed, shared, changed or withdrew."""
    given = [option for option, on in (("--cursors", cursors), ("--forget", forget is not None),
             ("--dead", dead), ("--replay", replay), ("--since", since), ("--follow", follow_))
             if on]  # fmt: skip
    if (cursors or forget is not None) and len(given) > 1:
        raise click.UsageError(f"{' and '.join(given)} do not go together")
    if (dead or replay) and (since or follow_):  # each acts on every dead letter: not a feed
        raise click.UsageError(f"{' and '.join(given)} do not go together: --dead and "
                               "--replay act on every dead letter, --since and --follow read "
                               "the feed")  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):  # --follow ends with ^C
        run(_events(config_path, data_dir, since=since, follow_=follow_, as_json=as_json,
                    dead=dead, replay=replay, cursors=cursors, forget=forget))
