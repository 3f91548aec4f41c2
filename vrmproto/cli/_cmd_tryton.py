"""``vrm vendor tryton``: keep a Tryton database in step with the vendor's event feed (issue 14,
docs/events.md "A bridge to Tryton").

::

    vrm vendor tryton --config vendor.toml --database crm --tryton-path DIR --create \\
        --company "Budget Salt Lake"                     # make the database, then follow
    vrm vendor tryton --config vendor.toml --database crm --tryton-path DIR   # until ^C
    vrm vendor tryton --config vendor.toml --database crm --tryton-path DIR --once

It runs in a process of its own beside ``vrm vendor serve``, on the same store (``--data-dir``
as for ``vrm vendor events``), and finds new events by reading the store once a second. The
cursor is kept in the Tryton database: a restart resumes after the last event applied.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import click

from vrmproto.cli._cmd_events import _open
from vrmproto.cli._context import run
from vrmproto.cli._errors import EXIT_USAGE, CliError
from vrmproto.cli._vendor import check_vendor_file
from vrmproto.server._events import FeedEvent, Wakeup, follow

__all__ = ["vendor_tryton"]


async def _tryton(config_path: str, data_dir: Path | None, *, database: str, uri: str,
                  path: Path | None, create: bool, company: str, currency: str, once: bool,
                  as_json: bool, resync: bool = False) -> None:  # fmt: skip
    try:
        from vrmproto.crm.tryton import FeedRewound, TrytonBridge  # noqa: PLC0415 -- optional
    except ImportError as exc:
        raise CliError(f"Tryton is not installed ({exc.name}): pip install 'vrmproto[tryton]'",
                       EXIT_USAGE, kind="usage") from None  # fmt: skip
    file, config = check_vendor_file(config_path, os.environ)
    store = await _open(file, config.name, data_dir)
    counts = {"applied": 0, "seen": 0}

    def report(e: FeedEvent, applied: bool) -> None:
        counts["applied" if applied else "seen"] += 1
        outcome = "applied" if applied else "already applied"
        row = {"pos": e.pos, "id": e.id, "kind": e.kind, "applied": applied}
        click.echo(json.dumps(row) if as_json else f"{e.pos:>6}  {e.kind:<20}  {outcome}")

    try:
        try:
            bridge = await (
                TrytonBridge.create(database, uri=uri, path=path, company=company,
                                    currency=currency)
                if create
                else TrytonBridge.open(database, uri=uri, path=path)
            )  # fmt: skip
        except Exception as exc:  # trytond's errors have no common base: say which, and stop
            verb = "create" if create else "open"
            raise CliError(f"cannot {verb} the Tryton database {database!r}: "
                           f"{type(exc).__name__}: {exc}", kind="tryton") from None  # fmt: skip
        async with bridge:
            # woken by every process's commits on PostgreSQL (LISTEN/NOTIFY), else it polls
            wakeup = None if once else Wakeup(file.server.feed_poll_s).watch(store)
            try:
                if not resync and await store.feed_head() < bridge.position:  # else it waits
                    applied = await bridge.applied_at(bridge.position)
                    raise FeedRewound(bridge.position, str(applied), None)
                await bridge.run(lambda after: follow(store, wakeup, after), report=report,
                                 after=0 if resync else None)  # fmt: skip
            except FeedRewound as exc:
                raise CliError(str(exc), kind="tryton") from None
            if not as_json:
                click.echo(f"{counts['applied']} event(s) applied, {counts['seen']} already "
                           f"applied; Tryton holds the feed up to {bridge.position}")  # fmt: skip
    finally:
        await store.close()


@click.command("tryton")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="The vendor's TOML file.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The vendor's data directory (as given to vrm vendor serve).",
)
@click.option("--database", required=True, help="The Tryton database's name.")
@click.option(
    "--tryton-uri",
    "uri",
    default="sqlite://",
    show_default=True,
    help="Tryton's database URI (postgresql://… for a PostgreSQL server).",
)
@click.option(
    "--tryton-path",
    "path",
    type=click.Path(file_okay=False, path_type=Path),
    help="The directory of Tryton's SQLite databases.",
)
@click.option(
    "--create",
    is_flag=True,
    help="Create the database (modules party and sale_opportunity, and a company) first.",
)
@click.option(
    "--company",
    default="Vendor",
    show_default=True,
    help="With --create: the company that owns the opportunities.",
)
@click.option(
    "--currency",
    default="USD",
    show_default=True,
    help="With --create: the company's currency (ISO 4217).",
)
@click.option("--once", is_flag=True, help="Apply what the feed holds now, then stop.")
@click.option("--resync", is_flag=True,
              help="Go through the whole feed again (after the vendor's store was restored "
                   "from a backup): what Tryton holds is skipped, the rest applied.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
def vendor_tryton(*, config_path: str, data_dir: Path | None, database: str, uri: str,
                  path: Path | None, create: bool, company: str, currency: str, once: bool,
                  as_json: bool, resync: bool) -> None:  # fmt: skip
    """Keep a Tryton database in step with the vendor's event feed: parties, terms notes,
    addresses, erasures and leads."""
    with contextlib.suppress(KeyboardInterrupt):  # without --once it ends with ^C
        run(
            _tryton(
                config_path,
                data_dir,
                database=database,
                uri=uri,
                path=path,
                create=create,
                company=company,
                currency=currency,
                once=once,
                as_json=as_json,
                resync=resync,
            )
        )
