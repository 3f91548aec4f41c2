"""Commands that need no network: ``vrm init``, ``vrm key``, ``vrm terms``."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from vrmproto._files import private_dir
from vrmproto._keys import MasterSeed
from vrmproto._state import Role
from vrmproto._vocab import ROSTER, TermRef
from vrmproto.cli._context import Env, common_options, json_option, pass_env, run
from vrmproto.cli._errors import EXIT_FAILED, EXIT_USAGE, CliError
from vrmproto.cli._home import DEFAULT_TERMS, Home, Settings, warn
from vrmproto.cli._output import kv_table, safe, table, term_json, term_title, terms_text
from vrmproto.cli._parse import parse_terms, term_spec
from vrmproto.cli._seedtext import SeedTextError, seed_from_text, seed_to_text

__all__ = ["init", "key", "terms"]

@click.command()
@click.option("--name", default="", help="What your agent calls you (never sent to vendors).")
@common_options
@pass_env
def init(env: Env, name: str) -> None:
    """Create your data directory: a new master seed and your default terms."""
    home = env.home
    seed = os.urandom(32)
    settings = home.init(seed, Settings(name=name, terms=DEFAULT_TERMS))
    out = env.out
    if out.json_mode:
        out.json({
            "data_dir": str(home.path),
            "name": settings.name,
            "terms": [term_json(t) for t in settings.terms],
        })  # fmt: skip
        return
    out.print(f"⊂ ⊃ your agent lives in [bold]{safe(home.path)}[/]")
    out.print(kv_table({"name": settings.name or "—", "terms": terms_text(settings.terms)}))
    out.print(
        "Back up your seed now: `vrm key export` prints it as 14 groups of 4 letters and "
        "digits after vrm1-, with a check value, to write down; with it, every key "
        "of every relationship can be made again."
    )


@click.group()
def key() -> None:
    """Back up or restore your master seed."""


@key.command("export")
@common_options
@pass_env
def key_export(env: Env) -> None:
    """Print your master seed as text with a check value (keep it offline)."""
    text = seed_to_text(env.home.read_seed_bytes())
    out = env.out
    if out.json_mode:
        out.json({"seed": text, "format": "vrm1"})
        return
    click.echo(text)
    click.echo(
        "Anyone holding this text can act as you in every relationship: store it offline. "
        "`vrm key import` restores it; a mistyped character is detected.",
        err=True,
    )


def _drop_database(home: Home) -> None:
    for suffix in ("", "-wal", "-shm"):
        path = home.db_path.with_name(home.db_path.name + suffix)
        if path.exists():
            path.unlink()


async def _held(home: Home) -> str:
    """What agent.db holds that belongs to its seed, in words ("" if nothing): its
    relationships, intentcasts and their offers, and messages waiting to go. An agent.db that
    holds any of them is never deleted by an import of another seed."""
    if not home.db_path.exists():
        return ""
    store = await home.open_store(require_seed=False)
    try:
        rels = [r for r in await store.relationships(with_data=False)
                if Role(r.role) is Role.CUSTOMER]  # fmt: skip
        counts = (
            (len(rels), "relationship", "relationships"),
            (len(await store.intents()), "intentcast", "intentcasts"),
            (len(await store.offers()), "offer", "offers"),
            (len(await store.outbox_all()) + len(await store.drafts()),
             "message waiting to go", "messages waiting to go"),
        )  # fmt: skip
    finally:
        await store.close()
    return ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in counts if n)


async def _seed_matches_store(home: Home, seed: bytes) -> bool:
    from vrmproto.client import Agent  # noqa: PLC0415 -- only this check needs the client

    store = await home.open_store(require_seed=False)
    try:
        agent = await Agent.open(store, MasterSeed(seed))
        await agent.close()
    except ValueError:
        return False
    finally:
        await store.close()
    return True


#: Most characters read as seed text from stdin (the text is 60-odd characters).
_MAX_SEED_INPUT = 4096

_ARGUMENT_WARNING = (
    "a seed given as an argument can be seen by other users of this machine (in `ps`) and "
    "stays in your shell history; type it at the prompt, or pipe it in, instead"
)


def _seed_input() -> str:
    """The seed text typed at a prompt that does not echo it, or read from piped stdin."""
    stdin = sys.stdin
    if stdin.isatty():
        typed: str = click.prompt("Your seed (vrm1-…)", hide_input=True, err=True)
        return typed
    text = stdin.read(_MAX_SEED_INPUT + 1)
    if len(text) > _MAX_SEED_INPUT:
        raise CliError("that is not a valid seed: the input is far too long", EXIT_USAGE,
                       kind="bad_seed")  # fmt: skip
    if not text.strip():
        raise CliError("no seed given: type it at the prompt, or pipe it in "
                       "(`vrm key import < seed.txt`)", EXIT_USAGE, kind="bad_seed")  # fmt: skip
    return text


@key.command("import")
@click.argument("text", nargs=-1)
@click.option("--name", default="", help="Your name, if this creates the data directory.")
@common_options
@pass_env
def key_import(env: Env, text: tuple[str, ...], name: str) -> None:
    """Restore your master seed from the text `vrm key export` printed.

    Type the text at the prompt (it is not shown) or pipe it in (`vrm key import < seed.txt`);
    spaces, dashes and line breaks do not matter. Given as arguments it still works, with a
    warning: other users can see arguments (`ps`), and your shell history keeps them. A seed
    that does not match what agent.db already holds (relationships, intentcasts and their
    offers, messages waiting to go) is refused, and nothing is changed.
    """
    if text:
        warn(_ARGUMENT_WARNING)
    raw = " ".join(text) if text else _seed_input()
    try:
        seed = seed_from_text(" ".join(raw.split()))
    except SeedTextError as exc:
        raise CliError(f"that is not a valid seed: {exc}", EXIT_USAGE, kind="bad_seed") from None
    home = env.home
    status = run(_import(home, seed, name))
    out = env.out
    if out.json_mode:
        out.json({"data_dir": str(home.path), "status": status})
        return
    where = safe(home.path)
    messages = {
        "unchanged": "That is already the seed of this data directory; nothing changed.",
        # the seed makes every key again, not the relationships: a person restoring on a new
        # machine found `vrm relationships` empty, and nothing said where they were
        "created": f"Seed restored into a new data directory, {where}. Your relationships are "
                   "not in the seed but in agent.db: to have them back, copy a backup of it "
                   f"into {where} (`vrm doctor` checks that it belongs to this seed; `vrm "
                   "history VENDOR --reconcile` takes back from each vendor what the backup "
                   "lacks).",
        "restored": f"Seed restored in {where}; it matches the relationships there.",
        "replaced": f"Seed replaced in {where} (it held no relationships).",
    }
    out.print(messages[status])


async def _import(home: Home, seed: bytes, name: str) -> str:
    home.refuse_non_directory()
    existed = home.exists()
    if existed:
        try:
            current: bytes | None = home.read_seed_bytes()
        except CliError:
            current = None  # a damaged seed file: this import is the repair
        if current == seed:
            return "unchanged"
    _refuse_while_served(home)
    held = await _held(home)
    if held and not await _seed_matches_store(home, seed):
        raise _mismatch(home, held)
    if not held:
        _drop_database(home)  # bound to no seed, or to another, and holding nothing
    private_dir(home.path)
    home.write_seed(seed)
    if not existed and not home.settings_path.exists():
        home.write_settings(Settings(name=name, terms=DEFAULT_TERMS))
    if held:
        return "restored"
    return "replaced" if existed else "created"


def _refuse_while_served(home: Home) -> None:
    """Refuse to change the seed while ``vrm agent serve`` runs on the directory: it would go
    on under the old seed, writing what vendors send it into an agent.db the import may
    delete."""
    if home.served():
        raise CliError(f"`vrm agent serve` is running on the data directory {home.path}: "
                       "stop it first, then import the seed; nothing was changed", EXIT_USAGE,
                       kind="busy")  # fmt: skip


def _mismatch(home: Home, held: str) -> CliError:
    return CliError(
        f"this seed does not match the relationships in {home.path}: its agent.db holds "
        f"{held} made with another seed; nothing was changed. Import the seed `vrm key "
        "export` printed there, or, to start afresh with this one, move agent.db away first",
        EXIT_FAILED,
        kind="seed_mismatch",
    )


@click.group(invoke_without_command=True)
@common_options
@pass_env
def terms(env: Env) -> None:
    """Show the terms you proffer to vendors (`vrm terms set`, `vrm terms list`)."""
    ctx = click.get_current_context()
    if ctx.invoked_subcommand is not None:
        return
    _show_terms(env, env.home.settings().terms)


def _show_terms(env: Env, refs: tuple[TermRef, ...]) -> None:
    out = env.out
    if out.json_mode:
        out.json({"terms": [term_json(t) for t in refs]})
        return
    t = table("⊂ your terms", "term", "title", "text hash")
    for ref in refs:
        t.add_row(term_spec(ref), term_title(ref), ref.hash.hex()[:16])
    out.print(t)


@terms.command("list")
@json_option
@pass_env
def terms_list(env: Env) -> None:
    """The roster: every term you can proffer, with its parameters."""
    out = env.out
    rows: list[dict[str, Any]] = []
    for (term_id, version), term in sorted(ROSTER.items()):
        rows.append({
            "id": term_id,
            "version": version,
            "title": term.title,
            "text": term.text,
            "hash": term.text_hash.hex(),
            "params": [p.describe() for p in term.params],
            "url": term.url,
        })  # fmt: skip
    if out.json_mode:
        out.json({"roster": rows})
        return
    t = table("the terms roster (spec §6.4)", "id", "title", "parameters")
    for row in rows:
        t.add_row(f"{row['id']}@{row['version']}", row["title"], "; ".join(row["params"]) or "—")
    out.print(t)
    out.print("Set yours with e.g. `vrm terms set vrm.no-tracking vrm.delete-after:days=30`.")


@terms.command("set")
@click.argument("specs", nargs=-1, required=True, metavar="ID[:param=value,…]…")
@common_options
@pass_env
def terms_set(env: Env, specs: tuple[str, ...]) -> None:
    """Choose the terms you proffer, from the roster (`vrm terms list`)."""
    refs = parse_terms(specs)
    home = env.home
    settings = home.settings_to_replace()  # how a lost or damaged settings.json comes back
    settings.terms = refs
    home.write_settings(settings)
    _show_terms(env, refs)
