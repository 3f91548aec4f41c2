"""How the ``vrm`` command fails: one plain sentence on stderr and a documented exit code.

=====  =================================================================================
code   meaning
=====  =================================================================================
0      done
1      refused or failed: a vendor said no, could not be reached, or did not confirm
2      usage or environment: bad arguments or URL, no or damaged data directory, bad seed text
=====  =================================================================================

Every exception the library raises is translated here, at the top (:func:`explain`); nothing
reaches the person as a traceback.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator

import click

from vrmproto._errors import (
    PeerProblemError,
    Problem,
    ProtocolError,
    StateError,
    TransportError,
    VrmError,
)
from vrmproto.client._errors import InvalidResponse, Queued

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "explain",
    "printable",
    "vendor_sent",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report to the person as ``message``, exiting with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED, *, kind: str = "failed") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.kind = kind


def printable(text: object) -> str:
    """``text`` with every character that is not printable — a control character (``ESC``
    starts a terminal's escape sequences), a line break, a bidirectional override — shown as
    its escape (``\\x1b``, ``\\n``, ``\\u202e``): what a peer wrote cannot move the cursor,
    retitle or recolour the terminal, write to its clipboard, or fake a line of ours
    (§11.12-1: a peer's text is shown, never interpreted)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)  # fmt: skip


def _sentence(text: str) -> str:
    text = printable(" ".join(text.split()))
    if not text:
        return "something went wrong."
    return text if text.endswith((".", "?", "!")) else text + "."


def _unreachable(detail: str) -> str:
    """``POST http://h/vrm/inbox: connection refused`` → who, and why in a few words."""
    m = re.match(r"(?:GET|POST) (\S+?): (.*)", detail)
    url, reason = (m.group(1), m.group(2)) if m else ("the vendor", detail)
    lowered = reason.lower()
    if any(t in lowered for t in ("connection refused", "connect call failed", "cannot connect")):
        reason = "the connection was refused (is it running?)"
    elif "timeout" in lowered or "timed out" in lowered:
        reason = "it did not answer in time"
    return f"could not reach {url}: {reason}"


@contextlib.contextmanager
def vendor_sent(what: str) -> Iterator[None]:
    """Around a call that verifies bytes the vendor sent and checks nothing of ours (its
    discovery document, its copy of a history): a :class:`~vrmproto.ProtocolError` it raises
    is the vendor's, and is reported as :class:`~vrmproto.client.InvalidResponse` (its problem
    code unchanged), not as a message of ours that was not sent. A :class:`StateError` is
    about our relationship (no key known yet) and passes as it is, and so does what is already
    the vendor's (an :class:`InvalidResponse`: the library says so itself where it verifies the
    vendor's bytes, :mod:`vrmproto.client._errors`)."""
    try:
        yield
    except (StateError, InvalidResponse):
        raise
    except ProtocolError as exc:
        raise InvalidResponse.of(exc, what) from exc


def _clocks(code: Problem | None) -> str:
    return ("; the vendor's clock and yours may differ (`vrm doctor` compares them)"
            if code in (Problem.EXPIRED, Problem.CLOCK_SKEW) else "")  # fmt: skip


def explain(exc: BaseException) -> CliError:
    """The sentence and exit code for any error a command can end with."""
    if isinstance(exc, CliError):
        return CliError(_sentence(exc.message), exc.exit_code, kind=exc.kind)
    if isinstance(exc, click.ClickException):
        return CliError(_sentence(exc.format_message()), EXIT_USAGE, kind="usage")
    if isinstance(exc, PeerProblemError):
        return CliError(
            _sentence(f"the peer refused it ({exc.code}): {exc.detail}"), EXIT_FAILED,
            kind="refused",
        )  # fmt: skip
    if isinstance(exc, InvalidResponse):  # the vendor answered, with what we cannot use
        code = exc.error.code if exc.error is not None else None
        return CliError(_sentence(f"the vendor's answer could not be used: {exc.detail}"
                                  f"{_clocks(code)}"), EXIT_FAILED, kind="protocol")  # fmt: skip
    if isinstance(exc, Queued):  # kept to deliver later: why, by what stopped it now
        from vrmproto.cli._output import held, waits_because  # noqa: PLC0415 -- imports this

        if held(exc.cause):  # not delivered later by itself: the person decides (§11.10-1)
            return CliError(_sentence(f"{exc.detail}, {exc.cause}"), EXIT_FAILED, kind="held")
        why = f" ({waits_because(exc.cause)})" if exc.cause is not None else ""
        return CliError(_sentence(f"{exc.detail}{why}; `vrm outbox run` delivers it"),
                        EXIT_FAILED, kind="queued")  # fmt: skip
    if isinstance(exc, TransportError):
        return CliError(_sentence(_unreachable(str(exc))), EXIT_FAILED, kind="unreachable")
    if isinstance(exc, StateError):
        return CliError(_sentence(f"not possible in this relationship: {exc.detail}"),
                        EXIT_FAILED, kind="state")  # fmt: skip
    if isinstance(exc, ProtocolError):  # ours: checked before it was signed (§7); the
        # vendor's bytes come as InvalidResponse (vrmproto.client._errors, vendor_sent above)
        return CliError(_sentence(f"nothing was sent: your message would break a rule of the "
                                  f"protocol: {exc}"), EXIT_FAILED, kind="not_sent")  # fmt: skip
    if isinstance(exc, VrmError):
        return CliError(_sentence(str(exc)), EXIT_FAILED, kind="failed")
    if isinstance(exc, sqlite3.Error):
        return CliError(_sentence(f"the database failed: {exc}"), EXIT_USAGE, kind="environment")
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        return CliError(_sentence(f"{reason}{where}"), EXIT_USAGE, kind="environment")
    if isinstance(exc, ValueError):
        return CliError(_sentence(str(exc)), EXIT_USAGE, kind="usage")
    return CliError(_sentence(f"{type(exc).__name__}: {exc}"), EXIT_FAILED, kind="failed")
