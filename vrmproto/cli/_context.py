"""What every ``vrm`` command shares: the global options, the data directory, the agent.

``--data-dir`` and ``--json`` are accepted both before the command (``vrm --json relationships``)
and after it (``vrm relationships --json``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from vrmproto import _loop
from vrmproto.cli._errors import EXIT_USAGE, CliError
from vrmproto.cli._home import Home, Settings
from vrmproto.cli._notes_import import import_notes
from vrmproto.cli._output import Out
from vrmproto.client import Agent, CustomerNode, ForeignStore, RetryPolicy
from vrmproto.store import Store

__all__ = ["Env", "common_options", "json_option", "open_agent", "open_node", "pass_env",
           "queued_keys", "run"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: How patiently an interactive command retries one request before reporting or queueing.
CLI_RETRY = RetryPolicy(attempts=2, base_s=0.1, cap_s=0.5, max_retry_after_s=2.0)

_current: list[Env] = []


@dataclass(slots=True)
class Env:
    """The options in force for this invocation."""

    data_dir: str | None = None
    json: bool = False
    #: What waited in the outbox when the command opened its agent (:func:`queued_keys`), so
    #: that a command cut short (^C) can tell what it queued itself.
    queued_before: frozenset[tuple[bytes, int]] | None = None

    @property
    def home(self) -> Home:
        return Home.at(self.data_dir)

    @property
    def out(self) -> Out:
        return Out(json_mode=self.json)


def current_env() -> Env | None:
    """The Env of the command being run (for the error reporter), if one was made."""
    return _current[-1] if _current else None


def _env(ctx: click.Context) -> Env:
    root = ctx.find_root()
    if not isinstance(root.obj, Env):
        root.obj = Env()
        _current.append(root.obj)
    return root.obj


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _env(ctx).json = True


def _set_data_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        _env(ctx).data_dir = value


def json_option(f: F) -> F:
    """Add ``--json`` to a command that reads no data directory (``vrm verify``)."""
    return click.option(
        "--json", "json_", is_flag=True, expose_value=False, callback=_set_json,
        help="Print machine-readable JSON on stdout.",
    )(f)  # fmt: skip


def common_options(f: F) -> F:
    """Add ``--json`` and ``--data-dir`` to a command (they also work before the command)."""
    f = json_option(f)
    return click.option(
        "--data-dir", type=click.Path(file_okay=False), expose_value=False,
        callback=_set_data_dir, envvar=None,
        help="Your data directory (default $VRM_HOME or ~/.vrm).",
    )(f)  # fmt: skip


def pass_env(f: Callable[..., T]) -> Callable[..., T]:
    """Pass the invocation's :class:`Env` as the first argument."""

    @click.pass_context
    def wrapper(ctx: click.Context, /, *args: Any, **kwargs: Any) -> T:
        return ctx.invoke(f, _env(ctx), *args, **kwargs)

    wrapper.__name__ = getattr(f, "__name__", "command")
    wrapper.__doc__ = f.__doc__
    return wrapper


async def queued_keys(store: Store) -> frozenset[tuple[bytes, int]]:
    """What waits in the outbox: each message signed and queued (``b""``, its item id) and
    each draft behind one (its thread, its number in the thread's queue)."""
    items = {(b"", item.item_id) for item in await store.outbox_all()}
    return frozenset(items | {(d.thread, d.seq) for d in await store.drafts()})


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine on a fresh event loop: uvloop's where it is installed
    (``vrmproto[speed]``, see :mod:`vrmproto._loop`)."""
    return _loop.run(coro)


@contextlib.asynccontextmanager
async def open_agent(
    env: Env, *, settings: Settings | None = None, **kwargs: Any
) -> AsyncIterator[Agent]:
    """The person's agent on their data directory; closed (store too) when the block ends."""
    async with open_node(env, settings=settings, **kwargs) as node:
        yield node.agent


@contextlib.asynccontextmanager
async def open_node(
    env: Env, *, settings: Settings | None = None, **kwargs: Any
) -> AsyncIterator[CustomerNode]:
    """The person's node on their data directory (its :attr:`~CustomerNode.agent` is what
    commands drive); closed, store too, when the block ends."""
    home = env.home
    master = home.master()
    chosen = settings or home.settings()
    store = await home.open_store()
    try:
        env.queued_before = await queued_keys(store)
        try:
            node = await CustomerNode.open(
                store, master, terms=chosen.terms,
                endpoint=home.agent_url(chosen),
                retry=kwargs.pop("retry", CLI_RETRY), **kwargs,
            )  # fmt: skip
        except ForeignStore:
            raise CliError(
                f"the data directory {home.path} is damaged: agent.db belongs to another seed "
                "than the one in its seed file (copied from another machine or directory?); "
                "nothing was changed. Import the seed it was made with: `vrm key import`, "
                "with the text `vrm key export` printed where it comes from",
                EXIT_USAGE, kind="damaged",
            ) from None  # fmt: skip
        try:
            await import_notes(home, store)
            yield node
        finally:
            await node.close()
    finally:
        await store.close()

