"""How the ``vrm`` command ends: a documented exit code (and, with ``--json``, its name as
``outcome``), and on failure one plain sentence on stderr.

The contract, for every command (README "Exit codes"; ``vrm --help``):

====  ===============  ==========================================================================
code  ``outcome``      meaning, and what a script does
====  ===============  ==========================================================================
0     ``done``         done as asked: delivered and confirmed, or nothing needed sending
1     ``failed``       refused or failed: the vendor said no (a signed rejection or problem), its
                       answer could not be used, the relationship does not allow it, or what you
                       checked does not hold (``verify``, ``history --compare``, ``doctor``).
                       Running it again as it is gives the same answer
2     ``usage``        usage or environment: bad arguments or URL, no or damaged data directory,
                       one that cannot be written (read-only, its disk full), bad seed text.
                       Nothing was sent
3     ``queued``       not delivered yet: it waits in the outbox and goes by itself
                       (``vrm outbox run``, ``vrm agent serve``). Do not send it again
4     ``unreachable``  no vendor (or relay) could be reached, and nothing was kept to retry: run
                       the command again later
5     ``held``         the vendor now answers with another key: nothing goes to it until you
                       decide (``vrm connect URL --accept-new-key FP``); what you sent is held in
                       the outbox, not retried
====  ===============  ==========================================================================

A command that deals with several vendors or messages at once (``address set``, ``outbox
run``) ends with the code of the outcome that most needs you: 1, then 5, 4, 3; 0 only when all
were done (:func:`worst`). The code of a message's :class:`~vrmproto.client.Delivery` is
:func:`delivery_outcome`; every exception the library raises is translated at the top
(:func:`explain`); nothing reaches the person as a traceback.
"""

from __future__ import annotations

import contextlib
import enum
import re
import shlex
import sqlite3
from collections.abc import Iterable, Iterator

import click

from vrmproto._errors import (
    PeerProblemError,
    Problem,
    ProtocolError,
    StateError,
    TransportError,
    VrmError,
)
from vrmproto.client._delivery import Delivery
from vrmproto.client._errors import InvalidResponse, KeyChangedError, Queued
from vrmproto.client._fanout import FanoutReport, VendorResult
from vrmproto.client._held import HELD

__all__ = [
    "EXIT_FAILED",
    "EXIT_HELD",
    "EXIT_OK",
    "EXIT_QUEUED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CliError",
    "Outcome",
    "behind_words",
    "delivery_outcome",
    "explain",
    "fanout_outcome",
    "printable",
    "vendor_outcome",
    "vendor_sent",
    "worst",
]


class Outcome(enum.IntEnum):
    """How a command ended: its exit code, and its name (:attr:`label`, ``outcome`` in JSON)."""

    DONE = 0
    FAILED = 1
    USAGE = 2
    QUEUED = 3
    UNREACHABLE = 4
    HELD = 5

    @property
    def label(self) -> str:
        return self.name.lower()


EXIT_OK = Outcome.DONE
EXIT_FAILED = Outcome.FAILED
EXIT_USAGE = Outcome.USAGE
EXIT_QUEUED = Outcome.QUEUED
EXIT_UNREACHABLE = Outcome.UNREACHABLE
EXIT_HELD = Outcome.HELD

#: Which outcome of several needs the person most, first (a usage error ends a command alone).
_MOST_NEEDED = (Outcome.USAGE, Outcome.FAILED, Outcome.HELD, Outcome.UNREACHABLE,
                Outcome.QUEUED, Outcome.DONE)  # fmt: skip


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """The outcome of a command that did several things: the one that most needs the person
    (``done`` for none)."""
    seen = set(outcomes)
    return next((o for o in _MOST_NEEDED if o in seen), Outcome.DONE)


def delivery_outcome(d: Delivery | None) -> Outcome:
    """The outcome of one message: ``confirmed`` is done; ``queued`` waits in the outbox, or is
    held there until the person decides about the vendor's new key (§11.10-1); ``refused``
    (a signed problem, §9) and ``dropped`` (expired unsent) failed."""
    if d is None or d.status == "confirmed":
        return Outcome.DONE
    if d.status == "queued":
        return Outcome.HELD if str(d.error).startswith(HELD) else Outcome.QUEUED
    return Outcome.FAILED


def vendor_outcome(r: VendorResult) -> Outcome:
    """The outcome for one vendor of a fan-out (address update, intentcast): its message's,
    or, where the branch failed before a message went (its document could not be fetched,
    say), the failure's (:func:`explain`)."""
    if r.delivery is not None:
        return delivery_outcome(r.delivery)
    if r.status == "refused" or r.error is None:
        return Outcome.FAILED
    return explain(r.error).outcome


def fanout_outcome(report: FanoutReport) -> Outcome:
    """The outcome of a fan-out: that of the vendor that most needs the person (:func:`worst`)."""
    return worst(vendor_outcome(r) for r in report.results)


class CliError(Exception):
    """A failure to report to the person as ``message``, exiting with ``exit_code`` (an
    :class:`Outcome`); ``kind`` says which failure, for ``--json``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED, *, kind: str = "failed") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = Outcome(exit_code)
        self.kind = kind

    @property
    def outcome(self) -> Outcome:
        return self.exit_code


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


def _where(detail: str) -> tuple[str, str]:
    """``POST http://h/vrm/inbox: connection refused`` → (the URL, the reason)."""
    m = re.match(r"(?:GET|POST) (\S+?): (.*)", detail)
    return (m.group(1), m.group(2)) if m else ("the vendor", detail)


def _untrusted(detail: str) -> str | None:
    """The sentence for a TLS certificate that does not verify, or None: it was said to be a
    refused connection ("cannot connect: [SSL: CERTIFICATE_VERIFY_FAILED] …")."""
    url, reason = _where(detail)
    m = re.search(r"certificate verify failed: ([^(]*)", reason, re.I)
    if m is None and "certificate" not in reason.lower():
        return None
    why = m.group(1).strip() if m is not None else reason
    return (f"the TLS certificate of {url} does not verify ({why}): the vendor's, or the "
            "certificate authority you trust for it (SSL_CERT_FILE), is not the one expected")


def _unreachable(detail: str) -> str:
    """``POST http://h/vrm/inbox: connection refused`` → who, and why in a few words."""
    url, reason = _where(detail)
    lowered = reason.lower()
    if any(t in lowered for t in ("connection refused", "connect call failed",
                                  "cannot connect to host")):  # fmt: skip
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


def behind_words(vendor: str) -> str:
    """What a ``chain_broken`` refusal of a message of ours whose predecessor the vendor
    accepted means (§4.5-6): the vendor holds more of the relationship than our history does —
    the data directory came back from a backup, or a copy of it sent from elsewhere (§11.11)
    — and what the person does: take back what ours lacks (§8.3-3), then send again."""
    quoted = vendor if vendor == "VENDOR" else shlex.quote(vendor)
    return (f"the vendor may hold messages your history lacks (was your data directory restored "
            f"from a backup, or copied?): `vrm history {quoted} --reconcile` takes them back "
            "from it; then send again")


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
        behind = f"; {behind_words('VENDOR')}" if exc.problem is Problem.CHAIN_BROKEN else ""
        return CliError(
            _sentence(f"the peer refused it ({exc.code}): {exc.detail}{behind}"), EXIT_FAILED,
            kind="refused",
        )  # fmt: skip
    if isinstance(exc, InvalidResponse):  # the vendor answered, with what we cannot use
        code = exc.error.code if exc.error is not None else None
        rekeyed = isinstance(exc.error, KeyChangedError)  # signed by another key (§11.10-1)
        return CliError(_sentence(f"the vendor's answer could not be used: {exc.detail}"
                                  f"{_clocks(code)}"), EXIT_HELD if rekeyed else EXIT_FAILED,
                        kind="key_changed" if rekeyed else "protocol")  # fmt: skip
    if isinstance(exc, Queued):  # kept to deliver later: why, by what stopped it now
        from vrmproto.cli._output import held, waits_because  # noqa: PLC0415 -- imports this

        if held(exc.cause):  # not delivered later by itself: the person decides (§11.10-1)
            return CliError(_sentence(f"{exc.detail}, {exc.cause}"), EXIT_HELD, kind="held")
        why = f" ({waits_because(exc.cause)})" if exc.cause is not None else ""
        return CliError(_sentence(f"{exc.detail}{why}; `vrm outbox run` delivers it"),
                        EXIT_QUEUED, kind="queued")  # fmt: skip
    if isinstance(exc, TransportError):  # no answer (or "not now"), and nothing kept
        untrusted = _untrusted(str(exc))  # answered, by a server we do not trust: not "later"
        if untrusted is not None:
            return CliError(_sentence(untrusted), EXIT_FAILED, kind="tls")
        return CliError(_sentence(_unreachable(str(exc))), EXIT_UNREACHABLE, kind="unreachable")
    if isinstance(exc, KeyChangedError):  # a person decides about the new key (§11.10-3)
        return CliError(_sentence(f"refused: {exc}"), EXIT_HELD, kind="key_changed")
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
