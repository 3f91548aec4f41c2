"""A relationship's life: ``vrm rotate`` (a new key, §2.6) and ``vrm end`` (§5.6.4)."""

from __future__ import annotations

import shlex

import click

from vrmproto._keys import fingerprint
from vrmproto._messages import RelationshipEnd
from vrmproto._state import State
from vrmproto.cli._common import end_delivery, finish, not_delivered_json, pick, timeout_option
from vrmproto.cli._context import Env, common_options, open_agent, pass_env, run
from vrmproto.cli._errors import EXIT_FAILED, EXIT_USAGE, CliError
from vrmproto.cli._output import queued_line, rbutton, refused_line, short
from vrmproto.cli._parse import check_text, format_time
from vrmproto.cli._vendor_holds import erased_of, holds_ours
from vrmproto.client import Delivery, RelationshipView

__all__ = ["end", "rotate"]


def _report(env: Env, view: RelationshipView, d: Delivery, done: str, extra: dict[str, object],
            *, timeout: float, header: bool = True) -> None:  # fmt: skip
    result: dict[str, object] = {"vendor": view.vendor, "thread": view.thread.hex(),
                                 "message": d.msg_hash.hex(), "status": d.status,
                                 **not_delivered_json(d), **extra}
    if env.out.json_mode:
        env.out.json(result)
    else:
        if header:  # (else printed by the caller, above lines of its own)
            env.out.print(f"[bold]{rbutton(view.vendor)}[/]")
        if d.status == "confirmed":
            env.out.print(f"  [green]✓ {done}[/] (message {short(d.msg_hash)}, its receipt kept)")
        elif d.status == "queued":
            env.out.print(queued_line(d.error, timeout))
        else:
            env.out.print(refused_line(d))
    end_delivery(view.vendor, d)


@click.command()
@click.argument("vendor")
@click.option("--compromised", is_flag=True,
              help="The old key may be in someone else's hands: the vendor refuses it from now "
              "on as revoked, not merely rotated.")
@timeout_option
@common_options
@pass_env
def rotate(env: Env, *, vendor: str, compromised: bool, timeout: float) -> None:
    """Move your relationship with VENDOR to a new key, signed by the old one (§2.6)."""

    async def go() -> tuple[RelationshipView, Delivery, RelationshipView]:
        async with open_agent(env) as agent:
            view = await pick(agent, vendor)
            if State(view.state) is State.ENDED:  # §7.1: no key.rotate after the end
                raise CliError(f"your relationship with {view.vendor} is ended: no message "
                               "goes in it any more, a new key included; `vrm connect "
                               f"{view.url}` opens a new one", EXIT_FAILED, kind="state")
            d = await agent.rotate_key(view.thread, timeout_s=timeout,
                                       reason="compromise" if compromised else "rotate")
            after = await pick(agent, view.thread.hex())
            return view, d, after

    view, d, after = run(go())
    # the key it is under now, not only the message's hash: "now under a new key (c1c5…)"
    # read as if c1c5… were the key
    _report(env, view, d, f"now under your new key {fingerprint(after.local_key)}, was "
            f"{fingerprint(view.local_key)}", {
        "reason": "compromise" if compromised else "rotate",
        "old_key": fingerprint(view.local_key), "new_key": fingerprint(after.local_key),
    }, timeout=timeout)


@click.command()
@click.argument("vendor")
@click.option("--reason", help="Why, if you want to say.")
@click.option("--withdraw", "data", flag_value="withdraw",
              help="First withdraw all you gave the vendor and wait for its signed deletion; "
                   "then end.")  # fmt: skip
@click.option("--keep-data", "data", flag_value="keep",
              help="End, and leave what you shared with the vendor, under your terms.")
@timeout_option
@common_options
@pass_env
def end(env: Env, *, vendor: str, reason: str | None, data: str | None, timeout: float) -> None:
    """End your relationship with VENDOR: nothing more is sent in it; its history stays.

    Ending does not delete what the vendor holds of yours, and no deletion can be confirmed
    once it has ended (§5.6.4-2): while it holds something you gave, say which you want —
    --withdraw or --keep-data."""
    check_text(reason, RelationshipEnd, "reason", "--reason")

    async def go() -> tuple[RelationshipView, Delivery | None, Delivery | None]:
        async with open_agent(env) as agent:
            view = await pick(agent, vendor)
            if State(view.state) is State.ENDED:  # done already: nothing needs sending
                return view, None, None
            gave = await holds_ours(agent, view)
            if gave and data is None:
                raise _holds(view)
            withdrawn = None
            if gave and data == "withdraw":
                withdrawn = await agent.withdraw(view.thread, reason=reason, timeout_s=timeout)
                if withdrawn.status != "confirmed" or erased_of(withdrawn) is None:
                    return view, withdrawn, None  # not ended: its data.erased could not come
            return view, withdrawn, await agent.end(view.thread, reason, timeout_s=timeout)

    view, withdrawn, d = run(go())
    if d is None and withdrawn is not None:
        _not_ended(env, view, withdrawn, timeout=timeout)
        return
    if d is None:  # it said "not possible in this relationship: relationship.end … is not
        # allowed in state ended", exit 1, to a person (or script) making sure it is ended
        if env.out.json_mode:
            env.out.json({"vendor": view.vendor, "thread": view.thread.hex(), "message": None,
                          "status": "ended", "outcome": "done", "error": None, "held": False,
                          "reason": reason, "already_ended": True})  # fmt: skip
        else:
            env.out.print(f"[bold]{rbutton(view.vendor)}[/]")
            env.out.print(f"  already ended ({format_time(view.last_activity_ms)}): nothing "
                          "sent; `vrm connect` opens a new relationship")  # fmt: skip
        return
    extra: dict[str, object] = {"reason": reason}
    if withdrawn is not None:
        erased = erased_of(withdrawn)
        extra["withdraw"] = {"message": withdrawn.msg_hash.hex(), "status": withdrawn.status,
                             "erased": None if erased is None else erased.hash.hex()}  # fmt: skip
        if not env.out.json_mode:
            env.out.print(f"[bold]{rbutton(view.vendor)}[/]")
            env.out.print(f"  [green]✓ deleted[/]: all you gave it; signed confirmation "
                          f"{short(erased.hash)} from {fingerprint(erased.sender)}")  # fmt: skip
    _report(env, view, d, "ended", extra, timeout=timeout, header=withdrawn is None)


def _holds(view: RelationshipView) -> CliError:
    """An end asked for while the vendor holds something the person gave it (§5.6.4-2)."""
    what = f"{len(view.shares)} live share(s)" if view.shares else "what your address updates gave"
    return CliError(
        f"{view.vendor} still holds what you gave it ({what}). Ending does not delete it, and "
        "no deletion can be confirmed once the relationship has ended (§5.6.4-2): "
        f"`vrm end {shlex.quote(view.vendor)} --withdraw` has it deleted first, `--keep-data` "
        "ends and leaves it with the vendor under your terms; nothing was sent",
        EXIT_USAGE, kind="data_held")


def _not_ended(env: Env, view: RelationshipView, withdrawn: Delivery, *, timeout: float) -> None:
    """``--withdraw`` whose deletion was not confirmed: the end is not sent (after it, no
    data.erased could come, §5.6.4-1)."""
    if env.out.json_mode:
        env.out.json({"vendor": view.vendor, "thread": view.thread.hex(), "message": None,
                      "status": "not_ended", "withdraw": {
                          "message": withdrawn.msg_hash.hex(), "status": withdrawn.status,
                          "erased": None}, **not_delivered_json(withdrawn)})  # fmt: skip
    else:
        env.out.print(f"[bold]{rbutton(view.vendor)}[/]")
        if withdrawn.status == "queued":
            env.out.print(queued_line(withdrawn.error, timeout))
        elif withdrawn.status != "confirmed":
            env.out.print(refused_line(withdrawn))
        env.out.print("  not ended: the vendor has not confirmed the deletion, which it could "
                      "not do after the end; run `vrm end` again once it has")  # fmt: skip
    if withdrawn.status == "confirmed":  # delivered, no data.erased in answer
        finish(EXIT_FAILED, f"{view.vendor} has not confirmed the deletion; not ended")
    end_delivery(view.vendor, withdrawn)
