"""``python -m vrmproto.testing URL …``: the conformance suite without the ``vrm`` command.

Errors read as every ``vrm`` command's do: ``vrm: …`` on stderr, exit code 2 for usage.
"""

import sys

import click

from vrmproto.testing._cli import conformance

if __name__ == "__main__":
    try:
        conformance.main(prog_name="python -m vrmproto.testing", standalone_mode=False)
    except click.ClickException as exc:
        click.echo(f"vrm: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted.", err=True)
        sys.exit(1)
