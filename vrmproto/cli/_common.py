"""What the commands that talk to vendors share: naming a vendor, ending with a code."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from vrmproto._envelope import open_envelope
from vrmproto._messages import TermsOffer
from vrmproto._state import State
from vrmproto.cli._errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    CliError,
    Outcome,
    delivery_outcome,
    printable,
)
from vrmproto.client import Agent, Delivery, RelationshipView
from vrmproto.client._meta import LOST
from vrmproto.store import ThreadKind

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "as_url",
    "conclude",
    "end_delivery",
    "finish",
    "lost_by_vendor",
    "lost_words",
    "need_agreement",
    "norm",
    "not_delivered_json",
    "now_ms",
    "pick",
    "superseded",
    "timeout_option",
    "took_up",
]

_HOSTPORT_RE = re.compile(r"[A-Za-z0-9.-]+:\d{1,5}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def finish(code: int, sentence: str) -> None:
    """End the command with ``code`` after its result was printed; ``sentence`` to stderr."""
    click.echo(f"vrm: {printable(sentence)}", err=True)
    raise click.exceptions.Exit(code)


F = TypeVar("F", bound=Callable[..., Any])

#: How long a command that sends waits for the vendor unless told (``--timeout``).
DEFAULT_TIMEOUT_S = 10.0


def timeout_option(f: F) -> F:
    """``--timeout S``: the whole wait for the vendor — every request and retry — of a command
    that sends; what is not delivered by then stays queued in the outbox."""
    return click.option(
        "--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT_S,
        show_default=True, metavar="S",
        help="Seconds to wait for the vendor, retries included; a message not delivered by "
             "then stays queued in the outbox.",
    )(f)  # fmt: skip


def not_delivered_json(d: Delivery) -> dict[str, object]:
    """For ``--json``: the message's ``outcome`` (the exit code's name,
    :func:`~vrmproto.cli._errors.delivery_outcome`), why it was not delivered now (``error``,
    null when it was), and whether it is ``held`` until the person acts rather than retried
    (§11.10-1)."""
    outcome = delivery_outcome(d)
    return {"outcome": outcome.label,
            "error": str(d.error) if d.error is not None and not d.confirmed else None,
            "held": outcome is Outcome.HELD}  # fmt: skip


def conclude(outcome: Outcome, sentence: str) -> None:
    """End the command with ``outcome``'s exit code and ``sentence`` on stderr, after its
    result was printed; nothing for :attr:`Outcome.DONE`."""
    if outcome is not Outcome.DONE:
        finish(outcome, sentence)


def delivery_sentence(vendor: str, d: Delivery) -> str:
    """What became of a message that was not confirmed, in one sentence (what it means and
    what to do was printed above it)."""
    what = f"your {d.type} message" if d.type else "your message"
    outcome = delivery_outcome(d)
    if outcome is Outcome.HELD:
        return (f"not delivered: {vendor} now answers with another key, and {what} is held "
                "in the outbox until you decide (see above)")
    if outcome is Outcome.QUEUED:
        return (f"not delivered yet: {what} waits in the outbox and goes by itself "
                "(`vrm outbox run`); do not send it again")
    if d.status == "refused":
        return f"{vendor} refused {what}: {d.error}"
    return f"{what} was not delivered: {d.error}"


def end_delivery(vendor: str, d: Delivery) -> None:
    """End a command that sent one message with the code of what became of it (0 confirmed,
    3 queued, 5 held, 1 refused or dropped)."""
    conclude(delivery_outcome(d), delivery_sentence(vendor, d))


def lost_by_vendor(view: RelationshipView) -> bool:
    """Whether the vendor's last answer in this relationship was ``no_relationship``: it no
    longer holds it (§4.5-5) — it lost its data, or went back to a backup older than the
    relationship — while our side still reads what was agreed. What we send there is refused.
    The answer is the thread's ``last_problem``, kept with it: no store change."""
    return (State(view.state) is not State.ENDED
            and view.last_problem.startswith(LOST))  # fmt: skip


def lost_words(view: RelationshipView) -> str:
    """What a lost relationship means for the person, and what they can do, in one sentence."""
    return (f"{view.vendor} ({view.url}) answered that it holds no such relationship: it may "
            f"have lost its data, and what you send there is refused. `vrm connect {view.url}` "
            "opens a new one; your signed history of this one stays with you (`vrm history "
            f"{shlex.quote(view.vendor)} --export FILE` shows it to anyone)")


# -- naming vendors ----------------------------------------------------------------------------


def as_url(target: str) -> str | None:
    """``target`` as a base URL if it is one (``host:port`` gets ``http://``), else None.

    Raises :class:`CliError` (exit 2) for something that tries to be a URL and is not (§13.3-1).
    """
    text = target.strip()
    if _HOSTPORT_RE.fullmatch(text):
        text = "http://" + text
    if "://" not in text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"{target!r} is not an http:// or https:// URL of a vendor endpoint",
                       EXIT_USAGE, kind="bad_url")  # fmt: skip
    try:
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        raise CliError(f"{target!r} has an invalid port", EXIT_USAGE, kind="bad_url") from None
    return text.rstrip("/")


def norm(url: str) -> str:
    return url.strip().rstrip("/")


def need_agreement(view: RelationshipView) -> None:
    if State(view.state) is not State.AGREED:
        raise CliError(
            f"you have no agreement with {view.vendor} (the relationship is {view.state}); "
            "sharing, withdrawing and asking for data need one",
            EXIT_FAILED, kind="no_agreement",
        )  # fmt: skip


async def pick(
    agent: Agent, target: str, *, kinds: Sequence[ThreadKind] = (ThreadKind.VENDOR,)
) -> RelationshipView:
    """The relationship ``target`` names: a vendor name (any case), a URL or a thread id prefix.

    Among several, the agreed one, then the most recently active; among several agreed ones
    (one vendor, a new relationship beside an old one), the one opened last that the vendor
    still holds.
    """
    text = target.strip()
    if not text:  # else every name starts with it: the one vendor, or the last active
        raise CliError("name a vendor: its name, URL or thread id (`vrm relationships` lists "
                       "them)", EXIT_USAGE, kind="unknown_vendor")  # fmt: skip
    views = [v for v in await agent.relationships() if v.thread_kind in kinds]
    url = None
    try:
        url = as_url(text)
    except CliError:
        url = None
    lowered = text.lower()
    hits = [
        v for v in views
        if v.vendor.lower() == lowered
        or (url is not None and norm(v.url) == norm(url))
        or (len(text) >= 6 and v.thread.hex().startswith(lowered))
    ]  # fmt: skip
    if not hits:
        hits = [v for v in views if v.vendor.lower().startswith(lowered)]
        if len({v.vendor for v in hits}) > 1:
            names = ", ".join(sorted({v.vendor for v in hits}))
            raise CliError(f"{target!r} could be any of {names}; say which", EXIT_USAGE,
                           kind="ambiguous")  # fmt: skip
    if not hits:
        # a word of a name is not taken for it (a share must not go to another vendor), only
        # named: "vrm data lodge" said no more than that there was no 'lodge'
        near = sorted({v.vendor for v in views if lowered in v.vendor.lower()})
        hint = f" (did you mean {' or '.join(map(repr, near))}?)" if 0 < len(near) <= 3 else ""
        raise CliError(
            f"you have no relationship with {target!r}{hint}; `vrm relationships` lists them",
            EXIT_USAGE, kind="unknown_vendor",
        )  # fmt: skip
    if len(hits) > 1:  # one accepted under a vendor's new key supersedes the old ones
        old = await superseded(agent, views)
        hits = [v for v in hits if v.thread not in old] or hits
    agreed = [v for v in hits if State(v.state) is State.AGREED]
    if len(agreed) > 1:  # one vendor, several agreements: the usable one opened last
        opened = {v.thread: await _opened_ms(agent, v.thread) for v in agreed}
        agreed.sort(key=lambda v: (not lost_by_vendor(v), opened[v.thread], v.last_activity_ms))
        return agreed[-1]
    hits.sort(key=lambda v: (State(v.state) is State.AGREED, v.last_activity_ms))
    return hits[-1]


async def superseded(agent: Agent, views: Sequence[RelationshipView]
                     ) -> dict[bytes, RelationshipView]:  # fmt: skip
    """The live vendor relationships superseded by a newer one at the same URL under another
    key — the person accepted the vendor's new key (§11.10-3), which opened it — each with the
    one that superseded it (:meth:`~vrmproto.client.Agent.superseded`, less the relationships a
    vendor lost, which are shown as lost). Nothing can reach the vendor in an old one (it
    answers with the new key: held, §11.10-1) unless a key.rotate in it moves its key."""
    by_thread = {v.thread: v for v in views}
    live = [r for r in await agent.store.relationships_where(role="customer")
            if r.thread in by_thread]  # fmt: skip
    found: dict[bytes, RelationshipView] = {}
    for old, new in (await agent.superseded(live)).items():
        if by_thread[old].peer_key != by_thread[new].peer_key:
            found[old] = by_thread[new]
    return found


async def _opened_ms(agent: Agent, thread: bytes) -> int:
    """When our relationship ``thread`` was opened: its first message's ``created``. Two
    agreements with one vendor come from a new relationship opened beside an old one the
    person can no longer use — the vendor changed its key, and the person accepted the new
    one (§11.10-3), or it lost the old one (§4.5-5) — and the old one may have been touched
    last (a held message dropped), so the last activity does not tell them apart."""
    entries = await agent.history(thread)
    if not entries:
        return 0
    first = open_envelope(entries[0].envelope, now=0, check_time=False, allow_erased=True)
    return first.header.created




async def took_up(agent: Agent, thread: bytes, offer_hash: bytes) -> bool:
    """Whether a terms offer of ours in ``thread`` names ``offer_hash`` (``in_reply_to``,
    §5.2.1): the relationship is the one an intentcast's offer was taken up in, earlier."""
    for e in await agent.history(thread):
        if e.outgoing:
            body = open_envelope(e.envelope, now=0, check_time=False, allow_erased=True).body
            if isinstance(body, TermsOffer) and body.in_reply_to == offer_hash:
                return True
    return False
