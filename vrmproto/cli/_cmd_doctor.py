"""``vrm doctor``: is everything in order? One line per check, exit 1 if a person must act.

Checks, in order: the data directory's modes (§11.13-1), the seed file, settings.json, the
conflicted copies a sync service left of agent.db, the seed or settings.json (two machines used
the directory at once), that the directory can be written (not read-only, its disk not full),
the store's schema version and integrity (read-only: nothing is migrated or repaired), that the
store belongs to the seed, each known vendor's discovery document and the key we hold for it
(§13.1, §2.5), the clock against each vendor's ``Date`` (§10-3: messages from a clock off by
more than the skew limit are refused), and the outbox. ``warn`` lines are worth knowing;
``fail`` lines need a person, and make the exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import sqlite3
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import click

from vrmproto._binding import discovery_url
from vrmproto._errors import ProtocolError, VrmError
from vrmproto._keys import fingerprint
from vrmproto._limits import DEFAULT_LIMITS
from vrmproto._state import State
from vrmproto.cli._common import finish, lost_by_vendor, lost_words
from vrmproto.cli._context import Env, common_options, pass_env, run
from vrmproto.cli._errors import EXIT_FAILED, CliError, Outcome
from vrmproto.cli._home import Home, settings_missing
from vrmproto.cli._output import brief, safe
from vrmproto.client import RelationshipView
from vrmproto.client._agent_base import _MASTER_CHECK_KEY
from vrmproto.client._http import describe_failure
from vrmproto.client._transport import Answer, discovery_from_answer
from vrmproto.store import SQLiteStore, StoreError, ThreadKind
from vrmproto.store._sqlite import SCHEMA_VERSION

__all__ = ["doctor"]

Status = Literal["ok", "warn", "fail"]
#: An outbox item this many attempts old needs a look (the vendor may be gone for good).
STUCK_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str


def _modes(home: Home) -> Check:
    """§11.13-1: the directory 0700, each file 0600 (checked before anything tightens them)."""
    loose = []
    if stat.S_IMODE(home.path.stat().st_mode) & 0o077:
        loose.append(f"{home.path} ({stat.S_IMODE(home.path.stat().st_mode):04o})")
    for f in sorted(p for p in home.path.iterdir() if p.is_file()):
        mode = stat.S_IMODE(f.stat().st_mode)
        if mode & 0o077:
            loose.append(f"{f.name} ({mode:04o})")
    if loose:
        return Check("data directory", "fail", "others could read " + ", ".join(loose)
                     + "; they are private now, but if others use this machine, treat the seed "
                     "as exposed")  # fmt: skip
    return Check("data directory", "ok", f"{home.path}: 0700, every file 0600")


def _settings(home: Home) -> Check:
    """The terms the person proffers: settings.json there and readable."""
    if not home.settings_path.exists():
        return Check("settings", "warn", settings_missing(home))
    try:
        terms = home.settings().terms
    except CliError as exc:
        return Check("settings", "fail", str(exc))
    return Check("settings", "ok", "you proffer " + (", ".join(
        f"{t.id}@{t.version}" for t in terms) or "no terms"))


#: The data directory's files whose conflicted copies a sync service may leave beside them,
#: by the stem it keeps: "agent (conflicted copy 2026-12-05).db" (Dropbox, Nextcloud),
#: "agent.sync-conflict-20261205-112233-ABCDEFG.db" (Syncthing).
_SYNCED = ("agent", "seed", "settings")


def _conflicted_copies(home: Home) -> dict[str, list[str]]:
    """The conflicted copies in the data directory, by the stem of the file they copy."""
    found: dict[str, list[str]] = {}
    for entry in sorted(home.path.iterdir()):
        name = entry.name
        if "conflict" not in name.lower() or not entry.is_file():
            continue
        for stem in _SYNCED:
            if name.startswith(stem) and name[len(stem):len(stem) + 1] in (" ", ".", "-", "_"):
                found.setdefault(stem, []).append(name)
    return found


def _sync_conflicts(home: Home) -> Check | None:
    """Conflicted copies a sync service (Dropbox, Syncthing, Nextcloud) made of agent.db, the
    seed or settings.json: two machines used the data directory at once, and what one of
    them recorded is only in the copy. None if there is none."""
    found = _conflicted_copies(home)
    if not found:
        return None
    said: list[str] = []
    status: Status = "warn"
    if "agent" in found:
        status = "fail"
        said.append(f"{', '.join(found['agent'])}: another machine's agent.db, kept by a sync "
                    "service beside yours — two machines ran vrm on this data directory at "
                    "once, and what the other recorded is only in the copy. Run vrm on one "
                    "machine only; `vrm history VENDOR --reconcile` takes back from each vendor "
                    "what your agent.db lacks; then move the copy out of the directory")
    if "seed" in found:
        mine = home.seed_path.read_bytes()
        other = [n for n in found["seed"] if (home.path / n).read_bytes() != mine]
        if other:
            status = "fail"
            said.append(f"{', '.join(other)}: another seed than yours, kept by a sync service; "
                        "find which one your relationships belong to (`vrm doctor` checks the "
                        "seed file), keep it safe and move the other out of the directory")
        if len(other) < len(found["seed"]):
            said.append(f"{', '.join(n for n in found['seed'] if n not in other)}: a copy "
                        "of your seed; remove it")
    if "settings" in found:
        said.append(f"{', '.join(found['settings'])}: settings another machine wrote, kept "
                    "by a sync service; the terms chosen there may be in it: compare them "
                    "with yours (`vrm terms`), choose (`vrm terms set …`), then remove the copy")
    return Check("sync conflicts", status, "; ".join(said))


def _schema(db: Path, first: str = "") -> list[Check]:
    """The schema version and ``PRAGMA integrity_check``, on a read-only connection. ``first``:
    what to do before restoring agent.db from a backup (:meth:`Home.before_restoring`)."""
    if not db.exists():
        return [Check("store", "ok", "no agent.db yet (made by the first command that needs it)")]
    try:
        # the path quoted into the URI: a "#", "?" or "%" in it would cut it short
        conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            integrity = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [Check("store", "fail", f"{db.name} is not a usable database: {exc}; restore "
                                       f"it from a backup{first}")]  # fmt: skip
    checks = []
    if version > SCHEMA_VERSION:
        checks.append(Check("schema", "fail", f"version {version}, newer than this vrm "
                                              f"({SCHEMA_VERSION}): upgrade vrm"))  # fmt: skip
    elif version < SCHEMA_VERSION:
        checks.append(Check("schema", "warn", f"version {version}: the next command migrates "
                                              f"it to {SCHEMA_VERSION}"))  # fmt: skip
    else:
        checks.append(Check("schema", "ok", f"version {version}"))
    if integrity != ["ok"]:
        checks.append(Check("integrity", "fail", "; ".join(integrity[:3])
                            + f" — restore agent.db from a backup{first}"))  # fmt: skip
    else:
        checks.append(Check("integrity", "ok", f"{db.name}: integrity_check ok"))
    return checks


async def _seed_matches(home: Home, store: SQLiteStore) -> Check:
    stored = await store.get_meta(_MASTER_CHECK_KEY)
    mine = home.master().for_intent(bytes(16)).public_key
    if stored is None:
        return Check("seed ↔ store", "ok", "no relationship yet binds the store to a seed")
    if stored != mine:
        return Check("seed ↔ store", "fail", "agent.db belongs to another seed than the seed "
                     "file: restore the right seed with `vrm key import`")  # fmt: skip
    return Check("seed ↔ store", "ok", "agent.db belongs to this seed")


async def _vendor(session: aiohttp.ClientSession, v: RelationshipView, timeout_s: float,
                  accepted: Sequence[bytes] = ()) -> list[Check]:  # fmt: skip
    """The vendor's signed discovery document, by the key we hold (§13.1, §2.5), and the skew
    of our clock against its ``Date``. ``accepted``: the vendor keys of our other relationships
    at the same URL: a document signed by one of them is the vendor's new key, which the person
    accepted in a new relationship (§11.10-3), and this old one is only superseded."""
    name = f"vendor {v.vendor}"
    url = discovery_url(v.url)
    try:
        async with asyncio.timeout(timeout_s), session.get(url) as resp:
            answer = Answer(resp.status, dict(resp.headers), await resp.read(), str(resp.url))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        why = brief(describe_failure(exc))  # "unreachable: connection refused" as a rule
        return [Check(name, "warn", f"{v.url}: " + (
            why if why.startswith("unreachable") else f"unreachable ({why})"))]
    now = time.time_ns() // 1_000_000
    try:
        doc = discovery_from_answer(answer, now=now, expected_key=v.peer_key, role="vendor")
    except ProtocolError as exc:
        for key in accepted:
            with contextlib.suppress(ProtocolError):
                discovery_from_answer(answer, now=now, expected_key=key, role="vendor")
                return [Check(name, "warn", f"{v.url}: this relationship is under its old key "
                              f"{v.vendor_fingerprint}; you accepted its new key "
                              f"{fingerprint(key)} in a newer one, which `vrm` uses")]
        return [Check(name, "fail", f"{v.url}: its discovery document does not verify by the "
                                    f"key you hold ({exc.code}): {exc}")]  # fmt: skip
    except VrmError as exc:
        return [Check(name, "warn", f"{v.url}: {exc}")]
    checks = [Check(name, "ok", f"{v.url}: discovery verified, key {v.vendor_fingerprint} "
                                f"as pinned ({doc.name})")]  # fmt: skip
    date = answer.header("Date")
    if date:
        # Date names a whole second (RFC 9110): the vendor's clock read somewhere in it
        said = int(email.utils.parsedate_to_datetime(date).timestamp() * 1000)
        skew_ms = now - (said + 500)
        limit = DEFAULT_LIMITS.max_clock_skew_ms
        status: Status = "fail" if abs(skew_ms) > limit else "ok"
        apart = "within 1 s" if abs(skew_ms) < 1000 else f"{skew_ms / 1000:+.0f} s"
        checks.append(Check(f"clock vs {v.vendor}", status,
                            f"{apart} (the limit is ±{limit // 1000} s)"))
    return checks


def _forgotten(v: RelationshipView) -> Check | None:
    """A vendor that no longer holds the relationship (§4.5-5, :func:`lost_by_vendor`)."""
    if not lost_by_vendor(v):
        return None
    return Check(f"relationship with {v.vendor}", "fail", lost_words(v))


def _outbox(items: Sequence[Any]) -> Check:
    if not items:
        return Check("outbox", "ok", "empty")
    stuck = [i for i in items if i.attempts >= STUCK_ATTEMPTS]
    if stuck:
        return Check("outbox", "fail", f"{len(items)} waiting, {len(stuck)} after "
                     f"{STUCK_ATTEMPTS} or more attempts: `vrm outbox` shows why")  # fmt: skip
    return Check("outbox", "warn", f"{len(items)} waiting; `vrm outbox run` delivers them")


async def _with_store(home: Home, timeout_s: float) -> list[Check]:
    store = await SQLiteStore.open(home.db_path)
    try:
        checks = [await _seed_matches(home, store)]
        if checks[0].status == "fail":
            return checks
        views = await _views(home, store)
        async with aiohttp.ClientSession(trust_env=False) as session:
            found = await asyncio.gather(*(_vendor(session, v, timeout_s, _newer_keys(v, views))
                                           for v in views))  # fmt: skip
        checks += [c for group in found for c in group]
        checks += [c for c in map(_forgotten, views) if c is not None]
        checks.append(_outbox(await store.outbox_all()))
        return checks
    finally:
        await store.close()


def _newer_keys(v: RelationshipView, views: Sequence[RelationshipView]) -> list[bytes]:
    """The vendor keys of our other relationships with the vendor at ``v``'s URL."""
    return [w.peer_key for w in views
            if w.thread != v.thread and w.url == v.url and w.peer_key != v.peer_key]


async def _views(home: Home, store: SQLiteStore) -> list[RelationshipView]:
    from vrmproto.client import Agent  # noqa: PLC0415

    agent = await Agent.open(store, home.master())
    try:
        return [v for v in await agent.relationships()
                if v.thread_kind is ThreadKind.VENDOR and v.url
                and v.state != State.ENDED.value]  # fmt: skip
    finally:
        await agent.close()


def diagnose(home: Home, timeout_s: float) -> list[Check]:
    """Every check, in order; later ones only where the earlier ones let them run."""
    if not home.path.is_dir() or not home.exists():
        return [Check("data directory", "fail", f"no vrm agent in {home.path}: `vrm init`, or "
                      "`vrm key import` to restore one")]  # fmt: skip
    checks = [_modes(home)]
    try:
        home.read_seed_bytes()
    except click.ClickException as exc:
        return [*checks, Check("seed", "fail", exc.format_message())]
    except Exception as exc:  # CliError: a damaged seed file
        return [*checks, Check("seed", "fail", str(exc))]
    checks.append(Check("seed", "ok", "readable, check value correct"))
    checks.append(_settings(home))
    conflicts = _sync_conflicts(home)
    if conflicts is not None:
        checks.append(conflicts)
    unwritable = home.unwritable()
    if unwritable is not None:  # SQLite would say "unable to open" or "disk I/O error"
        return [*checks, Check("writable", "fail", f"{home.path}: {unwritable}; vrm can record "
                               "nothing there until there is room or it is writable")]
    if home.store_emptied():  # else read as schema version 0, "migrated by the next command"
        return [*checks, Check("store", "fail", home.emptied())]
    checks += _schema(home.db_path, home.before_restoring())
    if any(c.status == "fail" for c in checks) or not home.db_path.exists():
        return checks
    if any(c.name == "schema" and c.status == "warn" for c in checks):  # an older schema
        # Opening the store would migrate it: doctor changes nothing (the next command does).
        return [*checks, Check("store", "warn", "the seed's binding, the vendors and the "
                               "outbox are checked once agent.db is migrated (the next "
                               "command does it)")]  # fmt: skip
    try:
        return checks + run(_with_store(home, timeout_s))
    except StoreError as exc:  # busy in another process, or failed while migrating
        return [*checks, Check("store", "fail", home.unusable(exc).message)]


_MARK = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}


@click.command()
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds to wait for each vendor.")
@common_options
@pass_env
def doctor(env: Env, timeout: float) -> None:
    """Check your data directory, your store, your vendors, your clock and your outbox; one
    line each. Exit code 1 if something needs you."""
    checks = diagnose(Home(env.home.path), timeout)
    failed = [c for c in checks if c.status == "fail"]
    if env.out.json_mode:
        env.out.json({"ok": not failed,
                      "outcome": (Outcome.FAILED if failed else Outcome.DONE).label, "checks": [
            {"check": c.name, "status": c.status, "detail": c.detail} for c in checks]})
    else:
        for c in checks:
            env.out.print(f"{_MARK[c.status]} {safe(c.name)}: {safe(c.detail)}")
    if failed:
        finish(EXIT_FAILED, f"{len(failed)} check(s) need you: "
                            + ", ".join(c.name for c in failed))  # fmt: skip
