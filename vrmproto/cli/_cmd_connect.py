"""``vrm connect``: proffer your terms; accepted, rejected or countered (and the answer)."""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from vrmproto._keys import fingerprint
from vrmproto._messages import TermsReject
from vrmproto._state import State
from vrmproto.cli._common import (
    as_url,
    delivery_sentence,
    finish,
    not_delivered_json,
    timeout_option,
)
from vrmproto.cli._context import Env, common_options, open_agent, pass_env, run
from vrmproto.cli._errors import EXIT_FAILED, EXIT_HELD, EXIT_USAGE, CliError, Outcome
from vrmproto.cli._output import (
    Out,
    held,
    printable,
    queued_line,
    rbutton,
    safe,
    short,
    term_json,
    terms_short,
    why_queued,
)
from vrmproto.cli._parse import check_note, parse_terms
from vrmproto.client import Agent, ConnectResult, RelationshipView
from vrmproto.client._agent import KeyChangedError
from vrmproto.client._ledger import ThreadKind

__all__ = ["connect", "connect_json", "interface_option", "report_connect", "settle_counter",
           "unavailable"]

F = TypeVar("F", bound=Callable[..., Any])


def _ipv4_addresses(ctx: click.Context, param: click.Parameter,
                    value: tuple[str, ...]) -> tuple[str, ...]:  # fmt: skip
    # zeroconf, on an IPv6 address, listened nowhere (and "no vrm endpoints answered") or
    # raised a RuntimeError; on a name, it said "… an IPv4 or IPv6 address"
    for address in value:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise click.BadParameter(
                f"{printable(address)!r} is not an IPv4 interface address: local discovery is "
                "multicast DNS over IPv4 only (§13.2-4)", param_hint="--interface",
            ) from None  # fmt: skip
    return value


def unavailable(exc: OSError, interfaces: Sequence[str]) -> str:
    """Why zeroconf could not browse on ``interfaces``, in words."""
    if exc.errno in (errno.ENODEV, errno.EADDRNOTAVAIL):  # joining the group there failed
        reason = "no interface of this machine has that address"
    else:
        reason = exc.strerror or str(exc) or type(exc).__name__
    return f"local discovery is unavailable on {', '.join(interfaces)}: {reason}"


def interface_option(help_text: str) -> Callable[[F], F]:
    """``--interface ADDRESS`` (repeatable, 127.0.0.1 unless given): where zeroconf looks,
    each an IPv4 interface address (:func:`vrmproto.discovery._check_interfaces`)."""
    return click.option("--interface", "interfaces", multiple=True, default=("127.0.0.1",),
                        show_default=True, metavar="ADDRESS", callback=_ipv4_addresses,
                        help=help_text)  # fmt: skip


# -- connect ---------------------------------------------------------------------------------


def _reject_message(result: ConnectResult) -> dict[str, Any] | None:
    d = result.delivery
    if d is None:
        return None
    for r in d.replies:
        if isinstance(r.message.body, TermsReject):
            return {"hash": r.message.hash.hex(), "signed_by": fingerprint(r.message.sender),
                    "created": r.message.header.created}  # fmt: skip
    return None


def _vendor_fingerprint(result: ConnectResult, held: bytes | None = None) -> str | None:
    """The fingerprint of the key that signed the vendor's receipt, else of ``held``, the key
    the relationship holds for the vendor (shown at first contact, §11.10-2, §13.3-3). With no
    receipt in this run — already connected, or the offer queued after the vendor's document
    verified — the key is still known: it was pinned from that document (§11.10-1)."""
    d = result.delivery
    if d is None or d.receipt is None:
        return fingerprint(held) if held is not None else None
    return fingerprint(d.receipt.sender)


async def held_key(agent: Agent, thread: bytes) -> bytes | None:
    """The vendor key the relationship ``thread`` holds (pinned, §11.10-1), if it is kept."""
    try:
        return (await agent.ledger.load(thread)).rel.peer_key
    except LookupError:
        return None


def connect_outcome(result: ConnectResult, counter_answer: str | None = None) -> Outcome:
    """Accepted (or delivered, the answer to come) is done; a rejection, a counter-offer left
    open or declined is no agreement (failed); a queued offer is queued, or held."""
    if counter_answer == "declined" or result.status in ("rejected", "countered"):
        return Outcome.FAILED
    if result.status == "queued" and result.delivery is not None:
        return Outcome.HELD if not_delivered_json(result.delivery)["held"] else Outcome.QUEUED
    return Outcome.DONE


def connect_json(result: ConnectResult, *, counter_answer: str | None = None,
                 first: ConnectResult | None = None, key: bytes | None = None
                 ) -> dict[str, Any]:  # fmt: skip
    """``key``: the vendor key the relationship holds (:func:`held_key`)."""
    shown = first or result
    return {
        "vendor": result.vendor,
        "outcome": connect_outcome(result, counter_answer).label,
        "url": result.url,
        "vendor_fingerprint": _vendor_fingerprint(shown) or _vendor_fingerprint(result, key),
        "thread": result.thread.hex(),
        "status": result.status,
        "terms": [term_json(t) for t in result.terms],
        "agreement": result.agreement.hex() if result.agreement else None,
        "reason": shown.reason,
        "refused": list(shown.refused),
        "counter": [term_json(t) for t in shown.counter] if shown.counter else None,
        "counter_answer": counter_answer,
        "rejection": _reject_message(shown),
        "existing": result.existing,
        # why the offer waits in the outbox, and whether it is held (§11.10-1), when queued
        **(not_delivered_json(result.delivery) if result.status == "queued"
           and result.delivery is not None else {"error": None, "held": False}),
    }


def _print_connect(out: Out, result: ConnectResult, whose: str = "your", *,
                   timeout: float | None = None, key: bytes | None = None) -> None:  # fmt: skip
    fp = _vendor_fingerprint(result, key)
    shown_key = f"  key {fp}" if fp else ""
    out.print(f"[bold]{rbutton(result.vendor)}[/]  [dim]{safe(result.url)}{shown_key}[/]")
    if result.existing:
        out.print(f"  already connected (thread {short(result.thread)}): one relationship per "
                  "vendor; `vrm end` it to proffer other terms")  # fmt: skip
    if result.status == "accepted":
        assert result.agreement is not None
        if result.existing:  # agreed earlier: on ours, or on a counter-offer we took
            whose = "the terms agreed then:"
        else:
            whose += " terms:"
        out.print(f"  [green]✓ accepted[/] — agreement {short(result.agreement)} on {whose} "
                  f"{terms_short(result.terms)}")  # fmt: skip
    elif result.status in ("rejected", "countered"):
        mark = "[red]✗ rejected[/]" if result.status == "rejected" else "[yellow]↺ countered[/]"
        out.print(f"  {mark}" + (f": {safe(result.reason)}" if result.reason else ""))
        if result.refused and not all(r in result.reason for r in result.refused):
            out.print(f"  refused: {safe(', '.join(result.refused))}")  # the reason did not say
        if result.counter:
            out.print(f"  they would agree to: {terms_short(result.counter)}")
        rejection = _reject_message(result)
        if rejection is not None:
            kept = f"message {rejection['hash'][:12]}, signed by {rejection['signed_by']}"
            out.print(f"  [dim]their signed answer is kept in your history ({kept})[/]")
    elif result.status == "queued":
        error = result.delivery.error if result.delivery is not None else None
        if held(error):
            out.print(queued_line(error))
        else:
            out.print(f"  ⏸ queued: {safe(why_queued(error, timeout))}; it stays in the outbox: "
                      "`vrm outbox run` delivers it")  # fmt: skip
    else:
        out.print("  … delivered; the vendor has not answered yet")


async def settle_counter(
    agent: Agent, out: Out, result: ConnectResult, answer: bool | None, *,
    timeout_s: float | None = None,
) -> tuple[ConnectResult, str | None]:
    """Ask (or use ``answer``) whether to take a counter-offer; the final result.
    ``timeout_s``: the whole wait for the vendor's answer to ours (``--timeout``)."""
    if result.status != "countered":
        return result, None
    if answer is None:
        if not out.json_mode:
            _print_connect(out, result)
        try:
            answer = click.confirm(
                f"{printable(result.vendor)} would agree to "
                f"{terms_short(result.counter or ())}. "
                "Accept these terms instead?", default=False, err=True,
            )  # fmt: skip
        except click.exceptions.Abort:
            click.echo(err=True)  # end the unanswered prompt's line
            out.note("No answer given; the counter-offer is left open "
                     "(`vrm connect NAME --accept-counter` answers it).")  # fmt: skip
            return result, None
    if answer:
        final = await agent.accept_counter(result.thread, timeout_s=timeout_s)
        return final, "accepted"
    await agent.decline_counter(result.thread, timeout_s=timeout_s)
    return result, "declined"


async def _find_on_network(name: str, interfaces: Sequence[str]) -> tuple[str, bytes] | None:
    """The URL and key of the one verified vendor on the local network that goes by ``name``
    (§13.2-6): advertised under it, or named so by its signed document. The whole browse is
    heard: where several keys claim the name — an impostor, or the vendor itself renamed by
    mDNS because another took its name first (RFC 6762 §9) — none is taken, and the person is
    shown each fingerprint to compare (§11.10-2, §13.2-7). Unverified lookalikes are passed
    over; only when nothing verified goes by the name is the person told why they are not used.
    """
    from vrmproto.discovery import browse  # noqa: PLC0415 -- zeroconf only when needed

    wanted = name.strip().casefold()
    try:
        found = await browse(2.0, interfaces)
    except OSError as exc:  # no multicast on these interfaces: nothing can be found there
        click.echo(f"({unavailable(exc, interfaces)})", err=True)
        return None
    named = [f for f in found if f.name.casefold() == wanted]
    claimed = [f for f in found if f.verified and f.key is not None and (
        f.name.casefold() == wanted
        or (f.document is not None and f.document.name.strip().casefold() == wanted))]  # fmt: skip
    keys = {f.key for f in claimed}
    if len(keys) > 1:
        each = "; ".join(f"{f.name} at {f.url} (key {f.fingerprint})" for f in claimed)
        raise CliError(f"{len(keys)} endpoints on the local network go by the name {name!r}, "
                       f"each with its own key: {each}. At most one is the vendor: compare the "
                       "fingerprints with one it publishes (its website, a printed notice), "
                       "then `vrm connect URL` with that one's URL", EXIT_USAGE,
                       kind="ambiguous")  # fmt: skip
    if claimed:
        f = next((f for f in claimed if f.name.casefold() == wanted), claimed[0])
        assert f.key is not None
        said = "its signed discovery document matches its advertisement"
        if f.document_name is not None:
            said += f"; the document calls it {f.document_name!r}"
        click.echo(printable(f"found {f.name} at {f.url}, key {f.fingerprint} ({said})"),
                   err=True)  # fmt: skip
        return f.url, f.key
    if named:
        f = named[0]
        raise CliError(f"found {f.name} at {f.url}, but {f.problem}", EXIT_FAILED,
                       kind="unverified")  # fmt: skip
    return None


def report_connect(out: Out, result: ConnectResult, answer: str | None,
                   first: ConnectResult, *, asked: bool, timeout: float | None = None,
                   failed: str | None = None, key: bytes | None = None) -> None:  # fmt: skip
    """Print the outcome (``first`` was already shown if the person was ``asked``);
    ``timeout``: the command's ``--timeout``, named if the vendor did not answer within it;
    ``failed``: why what was asked was not done after all (exit 1), beside this outcome;
    ``key``: the vendor key the relationship holds (:func:`held_key`)."""
    if out.json_mode:
        said = connect_json(result, counter_answer=answer, first=first, key=key)
        out.json(said | ({"outcome": Outcome.FAILED.label} if failed else {}))
    else:
        if first is not result:
            if not asked:
                _print_connect(out, first, key=key)
            out.print("  you accepted the counter-offer:")
        if not (asked and first is result and result.status == "countered"):
            _print_connect(out, result, "the vendor's" if first is not result else "your",
                           timeout=timeout, key=key)  # fmt: skip
        if answer == "declined":
            out.print("  you declined the counter-offer; the relationship is ended")
    if failed is not None:
        finish(EXIT_FAILED, failed)
    if answer == "declined":
        finish(EXIT_FAILED, f"no agreement with {result.vendor}: you declined its counter-offer")
    if result.status == "rejected":
        finish(EXIT_FAILED, f"{result.vendor} rejected your terms: {result.reason}")
    if result.status == "countered":
        finish(EXIT_FAILED, f"no agreement with {result.vendor} yet: its counter-offer is open")
    if result.status == "queued" and result.delivery is not None:
        finish(connect_outcome(result), delivery_sentence(result.vendor, result.delivery))


@click.command()
@click.argument("target", metavar="URL|NAME")
@click.option("--accept-counter/--decline-counter", "counter_answer", default=None,
              help="Answer a counter-offer without asking.")
@click.option("--term", "term_specs", multiple=True, metavar="ID[:param=value]",
              help="Proffer these terms instead of yours (repeatable).")
@click.option("--note", help="A message to the vendor's people.")
@interface_option("Where to look for NAME with zeroconf (repeatable).")
@timeout_option
@click.option("--accept-new-key", "accept_new_key", metavar="FINGERPRINT",
              help="A vendor you know now signs with another key: accept this one (its "
                   "fingerprint or full key, checked with the vendor another way).")  # fmt: skip
@common_options
@pass_env
def connect(env: Env, *, target: str, counter_answer: bool | None, term_specs: tuple[str, ...],
            note: str | None, interfaces: tuple[str, ...], timeout: float,
            accept_new_key: str | None) -> None:  # fmt: skip
    """Proffer your terms to a vendor: accepted, rejected or countered.

    URL|NAME is the vendor's endpoint URL (http://127.0.0.1:8701), the name of a vendor you
    know, or the name of one found on the local network (`vrm discover`): its key fingerprint
    is shown before the offer goes, and a name that several keys claim there is refused. On a
    counter-offer you are asked whether to accept it (--accept-counter/--decline-counter for
    scripts).

    A vendor you already know (by its URL or the name it gave) must answer with the key you
    hold for it; another key is refused (§11.10-1). If the vendor really changed its key,
    compare the new fingerprint with one it publishes elsewhere and pass --accept-new-key.
    """
    terms = parse_terms(term_specs, "--term") or None
    check_note(note)
    out = env.out

    async def go() -> None:
        async with open_agent(env) as agent:
            url = as_url(target)
            key: bytes | None = None
            if url is None:
                views = [v for v in await agent.relationships()
                         if v.thread_kind is ThreadKind.VENDOR]  # fmt: skip
                known = _known(views, target)
                open_counter = [v for v in known if State(v.state) is State.COUNTERED]
                if open_counter:
                    await _answer_open_counter(agent, out, open_counter[0], counter_answer,
                                               timeout)  # fmt: skip
                    return
                if known:  # its key is pinned by its URL (agent.connect, §13.1-4); where we
                    # last dealt with it (most recent first), not an address it has left
                    url = known[0].url
                else:
                    hit = await _find_on_network(target, interfaces)
                    if hit is None:
                        raise CliError(
                            f"{target!r} is not a URL, a vendor you know, or a vendor on the "
                            "local network (`vrm discover`)", EXIT_USAGE, kind="unknown_vendor",
                        )  # fmt: skip
                    url, key = hit
            # Even with an agreement on these terms, the vendor is asked: its key must still be
            # the one we hold (§11.10-1; --accept-new-key), and it may have moved (§13.1).
            # What is wrong with its document is the vendor's (InvalidResponse, §13.1); a
            # ProtocolError is our offer's, checked before it is signed. --timeout bounds the
            # whole wait, retries included.
            try:
                first = await agent.connect(url, terms, note=note, expected_key=key,
                                            timeout_s=timeout, accept_new_key=accept_new_key)
            except KeyChangedError as exc:
                raise CliError(_key_changed(exc, target, accept_new_key), EXIT_HELD,
                               kind="key_changed") from None  # fmt: skip
            result, answer = await settle_counter(agent, out, first, counter_answer,
                                                  timeout_s=timeout)  # fmt: skip
            report_connect(out, result, answer, first, asked=counter_answer is None,
                           timeout=timeout, key=await held_key(agent, result.thread))

    run(go())


def _known(views: list[RelationshipView], target: str) -> list[RelationshipView]:
    """The relationships with the vendor ``target`` names: by its whole name (any case), else
    by the start of it when that names one vendor — as ``vrm share`` and the others find a
    vendor (:func:`~vrmproto.cli._common.pick`); several names starting so are ambiguous."""
    lowered = target.strip().lower()
    known = [v for v in views if v.vendor.lower() == lowered]
    if known or not lowered:
        return known
    known = [v for v in views if v.vendor.lower().startswith(lowered)]
    if len({v.vendor for v in known}) > 1:
        names = ", ".join(sorted({v.vendor for v in known}))
        raise CliError(f"{target!r} could be any of {names}; say which", EXIT_USAGE,
                       kind="ambiguous")  # fmt: skip
    return known


def _key_changed(exc: KeyChangedError, target: str, given: str | None) -> str:
    """What to tell the person when a known vendor answers with another key (§11.10-1)."""
    where = f"at {exc.url}" if exc.by == "url" else f"named {exc.name!r}"
    held = ", ".join(fingerprint(k) for k in exc.pinned)
    new = fingerprint(exc.offered)
    wrong = f" (--accept-new-key {given} is not its fingerprint)" if given else ""
    return (f"refused: the vendor {where} now signs with key {new}, not the key you hold for "
            f"it ({held}){wrong}. It may be an impostor. If the vendor really changed its key, "
            f"check {new} with it another way, then run `vrm connect {target} "
            f"--accept-new-key {new}`")


async def _answer_open_counter(agent: Agent, out: Out, view: RelationshipView,
                               answer: bool | None, timeout_s: float) -> None:  # fmt: skip
    t = await agent.ledger.load(view.thread)
    pending = ConnectResult(view.thread, view.vendor, view.url, "countered", t.rel.offered,
                            reason="counter-offer open", counter=t.rel.counter)  # fmt: skip
    result, answered = await settle_counter(agent, out, pending, answer, timeout_s=timeout_s)
    report_connect(out, result, answered, pending, asked=answer is None, key=view.peer_key)


