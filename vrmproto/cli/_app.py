"""The ``vrm`` command: the root group, and the one place errors become sentences.

Exit codes (see :mod:`vrmproto.cli._errors`): 0 done; 1 refused or failed; 2 usage or
environment (bad arguments or URL, no or damaged data directory, bad seed text).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import click

from vrmproto import __version__
from vrmproto.cli._cmd_connect import connect
from vrmproto.cli._cmd_data import address, data, relationships, share, withdraw
from vrmproto.cli._cmd_doctor import doctor
from vrmproto.cli._cmd_history import history, verify
from vrmproto.cli._cmd_intent import intent
from vrmproto.cli._cmd_lifecycle import end, rotate
from vrmproto.cli._cmd_local import init, key, terms
from vrmproto.cli._cmd_outbox import outbox
from vrmproto.cli._cmd_relay import relay
from vrmproto.cli._cmd_serve import agent, discover
from vrmproto.cli._cmd_ui import ui
from vrmproto.cli._cmd_vendor import vendor
from vrmproto.cli._context import common_options, current_env
from vrmproto.cli._demo import demo
from vrmproto.cli._errors import EXIT_FAILED, EXIT_USAGE, CliError, explain

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vrm")
@common_options
def cli() -> None:
    """⊂ ⊃ vrm — your own agent for relationships with vendors, on your terms.

    Proffer your terms, share data under them, change your address with every vendor at once,
    broadcast what you want to buy, and keep a signed record of it all. Your data lives in
    ~/.vrm (or $VRM_HOME, or --data-dir).

    Exit codes: 0 done; 1 refused or failed; 2 usage or environment.
    """


for command in (
    init, key, terms, discover, connect, relationships, share, withdraw, data, address, intent,
    history, verify, outbox, rotate, end, agent, vendor, demo, doctor,
):  # fmt: skip
    cli.add_command(command)
cli.add_command(relay)  # intentcasts through Nostr relays (spec §15)


def _mount_conformance() -> None:
    """``vrm conformance`` is the suite's own command (``vrmproto.testing``); if that package
    cannot load, the rest of ``vrm`` still works and this command says why."""
    try:
        from vrmproto.testing._cli import conformance  # noqa: PLC0415
    except ImportError as exc:
        reason = str(exc)

        @click.command("conformance", context_settings={"ignore_unknown_options": True})
        @click.argument("args", nargs=-1, type=click.UNPROCESSED)
        def unavailable(args: tuple[str, ...]) -> None:
            """Test an endpoint against the spec (unavailable: see the message)."""
            raise CliError(f"the conformance suite cannot load: {reason}", EXIT_USAGE)

        cli.add_command(unavailable, "conformance")
        return
    cli.add_command(conformance, "conformance")


_mount_conformance()
cli.add_command(ui)


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: run ``vrm`` and exit with its documented code."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="vrm",
                          standalone_mode=False)  # fmt: skip
        code = result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted.", err=True)
        code = EXIT_FAILED
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "vrm"
        _report(explain(exc), hint=f"`{where} --help` explains")
        code = EXIT_USAGE
    except click.ClickException as exc:
        _report(explain(exc))
        code = EXIT_USAGE
    except KeyboardInterrupt:
        click.echo("interrupted.", err=True)
        code = 130
    except Exception as exc:  # the one place every error becomes a sentence
        err = explain(exc)
        _report(err)
        code = err.exit_code
    sys.exit(code)


def _report(err: CliError, hint: str = "") -> None:
    """One sentence on stderr (and, with --json, an error object on stdout)."""
    env = current_env()
    if env is not None and env.json:
        click.echo(json.dumps({"error": {"kind": err.kind, "message": err.message}}))
    click.echo(f"vrm: {err.message}" + (f" ({hint})" if hint else ""), err=True)
