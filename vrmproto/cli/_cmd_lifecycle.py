"""A relationship's life: ``vrm rotate`` (a new key, §2.6) and ``vrm end`` (§5.6.4)."""

from __future__ import annotations

import click

from vrmproto._keys import fingerprint
from vrmproto._messages import RelationshipEnd
from vrmproto._state import State
from vrmproto.cli._common import end_delivery, not_delivered_json, pick, timeout_option
from vrmproto.cli._context import Env, common_options, open_agent, pass_env, run
from vrmproto.cli._errors import EXIT_FAILED, CliError
from vrmproto.cli._output import queued_line, rbutton, refused_line, short
from vrmproto.cli._parse import check_text, format_time
from vrmproto.client import Delivery, RelationshipView

__all__ = ["end", "rotate"]


def _report(env: Env, view: RelationshipView, d: Delivery, done: str, extra: dict[str, object],
            *, timeout: float) -> None:  # fmt: skip
    result: dict[str, object] = {"vendor": view.vendor, "thread": view.thread.hex(),
                                 "message": d.msg_hash.hex(), "status": d.status,
                                 **not_delivered_json(d), **extra}
    if env.out.json_mode:
        env.out.json(result)
    else:
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
@timeout_option
@common_options
@pass_env
def end(env: Env, *, vendor: str, reason: str | None, timeout: float) -> None:
    """End your relationship with VENDOR: nothing more is sent in it; its history stays."""
    check_text(reason, RelationshipEnd, "reason", "--reason")

    async def go() -> tuple[RelationshipView, Delivery | None]:
        async with open_agent(env) as agent:
            view = await pick(agent, vendor)
            if State(view.state) is State.ENDED:  # done already: nothing needs sending
                return view, None
            return view, await agent.end(view.thread, reason, timeout_s=timeout)

    view, d = run(go())
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
    _report(env, view, d, "ended", {"reason": reason}, timeout=timeout)
