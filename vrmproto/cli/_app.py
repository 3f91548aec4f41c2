"""The ``vrm`` command: the root group, and the one place errors become sentences.

Exit codes (the contract, :mod:`vrmproto.cli._errors`): 0 done; 1 refused or failed; 2 usage
or environment; 3 queued in the outbox, goes by itself; 4 could not be reached, nothing kept;
5 held until you decide about the vendor's new key.
"""

from __future__ import annotations

import errno
import importlib
import json
import sqlite3
import sys
from collections.abc import Sequence

import click

from vrmproto import __version__
from vrmproto.cli._context import common_options, current_env, queued_keys, run
from vrmproto.cli._errors import (
    EXIT_FAILED,
    EXIT_QUEUED,
    EXIT_USAGE,
    CliError,
    explain,
    printable,
)
from vrmproto.cli._streams import steady_streams
from vrmproto.store import StoreError

#: ``vrm --help`` ends with the exit codes every command follows (:mod:`vrmproto.cli._errors`);
#: ``\b`` keeps click from rewrapping the lines.
EPILOG = """\b
Exit codes (every command; with --json, "outcome" names it):
  0 done         done as asked: delivered and confirmed, or nothing to send
  1 failed       the vendor refused, or failed; or what you checked does not hold
  2 usage        bad arguments or URL, no or damaged data directory; nothing sent
  3 queued       waits in the outbox and goes by itself: do not send it again
  4 unreachable  no vendor or relay could be reached, nothing kept: run it again later
  5 held         the vendor now has another key: nothing goes until you decide
                 (vrm connect URL --accept-new-key FP)
Several vendors or messages: the code that most needs you (1, then 5, 4, 3).
vrm conformance has its own: 0 conforms, 1 a case failed, 2 could not run
(bad option, endpoint unreachable, no discovery document)."""

__all__ = ["cli", "main"]


#: Each command and the module that defines it, imported only when that command runs (or
#: ``--help`` lists them all): ``vrm relationships`` need not load the vendor's server, the
#: Nostr keys, the browser page or the conformance suite.
COMMANDS: dict[str, str] = {
    "init": "vrmproto.cli._cmd_local:init",
    "key": "vrmproto.cli._cmd_local:key",
    "terms": "vrmproto.cli._cmd_local:terms",
    "discover": "vrmproto.cli._cmd_serve:discover",
    "connect": "vrmproto.cli._cmd_connect:connect",
    "relationships": "vrmproto.cli._cmd_data:relationships",
    "share": "vrmproto.cli._cmd_data:share",
    "withdraw": "vrmproto.cli._cmd_data:withdraw",
    "data": "vrmproto.cli._cmd_data:data",
    "address": "vrmproto.cli._cmd_data:address",
    "intent": "vrmproto.cli._cmd_intent:intent",
    "history": "vrmproto.cli._cmd_history:history",
    "verify": "vrmproto.cli._cmd_history:verify",
    "outbox": "vrmproto.cli._cmd_outbox:outbox",
    "rotate": "vrmproto.cli._cmd_lifecycle:rotate",
    "end": "vrmproto.cli._cmd_lifecycle:end",
    "agent": "vrmproto.cli._cmd_serve:agent",
    "vendor": "vrmproto.cli._cmd_vendor:vendor",
    "demo": "vrmproto.cli._demo:demo",
    "doctor": "vrmproto.cli._cmd_doctor:doctor",
    "relay": "vrmproto.cli._cmd_relay:relay",  # intentcasts through Nostr relays (spec §15)
    "ui": "vrmproto.cli._cmd_ui:ui",
    "conformance": "vrmproto.testing._cli:conformance",
}


class _LazyGroup(click.Group):
    """The root group: a command's module is imported when the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module, _, attr = COMMANDS[cmd_name].partition(":")
        try:
            command = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            if cmd_name != "conformance":
                raise
            command = _unavailable(cmd_name, str(exc))
        assert isinstance(command, click.Command)
        self.add_command(command, cmd_name)
        return command


def _unavailable(name: str, reason: str) -> click.Command:
    """``vrm conformance`` is the suite's own command (``vrmproto.testing``); if that package
    cannot load, the rest of ``vrm`` still works and this command says why."""

    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def unavailable(args: tuple[str, ...]) -> None:
        """Test an endpoint against the spec (unavailable: see the message)."""
        raise CliError(f"the conformance suite cannot load: {reason}", EXIT_USAGE)

    return unavailable


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EPILOG)
@click.version_option(__version__, prog_name="vrm")
@common_options
def cli() -> None:
    """⊂ ⊃ vrm — your own agent for relationships with vendors, on your terms.

    Proffer your terms, share data under them, change your address with every vendor at once,
    broadcast what you want to buy, and keep a signed record of it all. Your data lives in
    ~/.vrm (or $VRM_HOME, or --data-dir).
    """


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: run ``vrm`` and exit with its documented code, whatever its
    output's reader or terminal can take (:mod:`vrmproto.cli._streams`)."""
    steady_streams()
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="vrm",
                          standalone_mode=False)  # fmt: skip
        code = result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort as exc:  # ^C (click's), or no answer at a prompt
        cut = isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt)
        err = _interrupted("interrupted" if cut else "aborted", EXIT_FAILED)
        _report(err)
        code = err.exit_code
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "vrm"
        _report(explain(exc), hint=f"`{where} --help` explains")
        code = EXIT_USAGE
    except click.ClickException as exc:
        _report(explain(exc))
        code = EXIT_USAGE
    except KeyboardInterrupt:  # ^C outside a command (click makes one inside it Abort)
        err = _interrupted("interrupted", EXIT_FAILED)
        _report(err)
        code = EXIT_QUEUED if err.exit_code == EXIT_QUEUED else 130
    except Exception as exc:  # the one place every error becomes a sentence
        err = _unwritable(exc) or _not_text(exc, argv) or explain(exc)
        _report(err)
        code = err.exit_code
    sys.exit(code)


def _interrupted(what: str, code: int) -> CliError:
    """A command stopped by ^C (or a prompt left unanswered): ``code``, unless it had already
    queued messages, which wait in the outbox and go by themselves — then ``queued`` (3): a
    script that ran it again, as ``failed`` (1) tells it to, would send them twice."""
    waiting = _queued_since()
    if waiting:
        return CliError(f"{what}; {waiting} message(s) this command queued wait in the outbox "
                        "and go by themselves (`vrm outbox run`, `vrm agent serve`): do not "
                        "send them again (`vrm outbox` lists them).", EXIT_QUEUED, kind=what)
    return CliError(f"{what}.", code, kind=what)


def _queued_since() -> int:
    """How many messages wait in the outbox of this command's data directory that did not
    when it opened its agent (:attr:`Env.queued_before`); 0 if that cannot be known."""
    env = current_env()
    before = env.queued_before if env is not None else None
    if env is None or before is None:
        return 0

    async def count() -> int:
        store = await env.home.open_store()
        try:
            return len(await queued_keys(store) - before)
        finally:
            await store.close()

    try:
        return run(count())
    except (Exception, KeyboardInterrupt):  # a second ^C: as if nothing were known
        return 0


#: What writing a file says when its directory cannot take it (read-only, full, not ours).
_NO_WRITE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def _unwritable(exc: Exception) -> CliError | None:
    """A store or a file that failed while the data directory cannot be written: said so
    (:meth:`~vrmproto.cli._home.Home.cannot_write`), not as a failed command (exit 1) or a
    damaged directory. The command may have sent a message before: the outbox holds it."""
    if not isinstance(exc, StoreError | sqlite3.Error) and not (
        isinstance(exc, OSError) and exc.errno in _NO_WRITE
    ):
        return None
    env = current_env()
    return env.home.cannot_write(sent=True, exc=exc) if env is not None else None


def _not_text(exc: Exception, argv: Sequence[str] | None) -> CliError | None:
    """A value typed in another encoding than the terminal's (Latin-1 bytes in a UTF-8
    locale): Python kept its bytes as lone surrogates, and the first encode of it failed with
    "surrogates not allowed". Said as the argument it is, a usage error: nothing was sent."""
    if not isinstance(exc, UnicodeEncodeError) or "surrogates" not in str(exc):
        return None
    args = sys.argv[1:] if argv is None else argv
    bad = [a for a in args if any("\udc80" <= c <= "\udcff" for c in a)]
    what = "a value"
    if bad:  # its bytes as typed, the ones that are not text escaped (\xeb)
        raw = bad[0].encode("utf-8", "surrogateescape")
        what = f"'{printable(raw.decode('ascii', 'backslashreplace'))}'"
    return CliError(f"{what} is not text in your terminal's encoding "
                    f"({sys.getfilesystemencoding()}); type it again as such, or set your "
                    "terminal and locale to the same encoding (LANG=C.UTF-8).", EXIT_USAGE,
                    kind="not_text")  # fmt: skip


def _report(err: CliError, hint: str = "") -> None:
    """One sentence on stderr (and, with --json, an error object on stdout)."""
    env = current_env()
    if env is not None and env.json:
        click.echo(json.dumps({"outcome": err.outcome.label,
                               "error": {"kind": err.kind, "message": err.message}}))
    click.echo(f"vrm: {printable(err.message)}" + (f" ({hint})" if hint else ""), err=True)
