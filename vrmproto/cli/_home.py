"""The person's data directory: their seed, their settings and their agent's database.

Layout (default ``~/.vrm``; ``VRM_HOME`` or ``--data-dir`` choose another)::

    seed            the master seed as `vrm1-…` text with its check value (mode 0600)
    settings.json   the person's name and terms (written atomically)
    agent.db        the agent's SQLite store: relationships, histories, outbox, intentcasts
                    and their offers, notes of what was shared (with its -wal and -shm files)
    agent.db-locks/ a lock file per relationship a vrm process worked on lately (§11.11-2)
    intents.json, shares.json   notes of earlier releases: imported into agent.db once and
                    renamed ``*.imported`` (:mod:`vrmproto.cli._notes_import`)

Every file is written with :func:`vrmproto._files.atomic_write`, so a crash leaves the old
version or the new, never a torn mix. Anything unreadable is reported as a damaged data
directory, naming the file and the remedy for it (``vrm key import`` for the seed, ``vrm terms
set`` for settings.json, a backup for agent.db), with exit code 2; a directory that cannot be
written (read-only, or its disk full) is said to be that, and a file written by a newer vrm
(agent.db's schema, settings.json's format or terms) is said to need a newer vrm, also with
exit code 2, and neither is called damaged.

Only the person may read any of it (spec §11.13-1): the directory is 0700 and its files 0600.
Each time it is opened, a looser directory or file is tightened, and a warning says so
(``vrm: warning: …`` on stderr; :func:`show_warnings` routes the library's warnings there).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from vrmproto._files import atomic_write, atomic_write_text, private_data_dir, private_dir
from vrmproto._keys import MasterSeed
from vrmproto._vocab import ROSTER, TermRef, latest
from vrmproto.cli._errors import EXIT_USAGE, CliError
from vrmproto.cli._parse import term_from_json, term_to_json
from vrmproto.cli._seedtext import SeedTextError, seed_from_text, seed_to_text
from vrmproto.store import SchemaTooNew, SQLiteStore, StoreBusy, StoreError

__all__ = ["DEFAULT_TERMS", "SERVE_LOCK", "Home", "Settings", "default_home", "show_warnings",
           "warn"]

fcntl: Any
try:
    import fcntl
except ImportError:  # pragma: no cover -- not POSIX
    fcntl = None


SETTINGS_FORMAT = 1
#: The file in the data directory that ``vrm agent serve`` holds locked while it runs.
SERVE_LOCK = "agent-serve.lock"
#: Where ``vrm terms set`` keeps a damaged settings.json it replaces.
DAMAGED_SETTINGS = "settings.json.damaged"

#: Why an empty agent.db (:meth:`Home.store_emptied`) is not opened as a new store.
EMPTIED = ("is empty (0 bytes): what it held is lost here (the vendors still hold your "
           "relationships). Restore it from a backup{first}, then `vrm history VENDOR "
           "--reconcile` takes back what the backup lacks; or, to start afresh here, remove it")

#: Free space below which a store that fails is said to have failed for want of it: a commit
#: appends a few dozen 4 KiB pages to the WAL, and SQLite then reports "disk I/O error".
LOW_SPACE = 1 << 20


def _default_terms() -> tuple[TermRef, ...]:
    return (
        TermRef.of(latest("vrm.no-tracking")),
        TermRef.of(latest("vrm.no-third-party")),
        TermRef.of(latest("vrm.delete-after"), days=365),
        TermRef.of(latest("vrm.return-on-request"), format="vrm-data/1"),
    )


#: The terms a new data directory starts with: don't track me, don't sell my data, delete it
#: after a year, and give it back to me in the standard form when I ask.
DEFAULT_TERMS = _default_terms()


def warn(text: str) -> None:
    """A warning for the person: ``vrm: warning: …`` on stderr (stdout stays the result)."""
    click.echo(f"vrm: warning: {text}", err=True)


class _Warnings(logging.Handler):
    """The library's warnings, said the command line's way (:func:`warn`)."""

    def emit(self, record: logging.LogRecord) -> None:
        warn(record.getMessage())


#: The loggers whose warnings are for the person: files made private (§11.13-1), a
#: relationship busy in another process (§11.11-2), the store.
_WARNING_LOGGERS = ("vrmproto.files", "vrmproto.client", "vrmproto.store")


def show_warnings() -> None:
    """Show the library's warnings on stderr as :func:`warn` does (idempotent)."""
    for name in _WARNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _Warnings) for h in logger.handlers):
            logger.addHandler(_Warnings(logging.WARNING))


def default_home(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``data_dir``, else ``$VRM_HOME``, else ``~/.vrm``."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("VRM_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".vrm"


@dataclass(slots=True)
class Settings:
    """What the person chose: the name their agent goes by and the terms they proffer."""

    name: str = ""
    terms: tuple[TermRef, ...] = DEFAULT_TERMS
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "format": SETTINGS_FORMAT,
            "name": self.name,
            "terms": [term_to_json(t) for t in self.terms],
        }

    @classmethod
    def from_json(cls, data: Any) -> Settings:
        """Settings as :meth:`to_json` wrote them; :class:`NewerSettingsError` for a later format
        or a term this vrm's roster does not hold (``vrm terms set`` takes only roster terms,
        so a newer vrm wrote it), :class:`ValueError` (or ``KeyError``) for anything else."""
        if type(data) is not dict:
            raise ValueError(f"not a format-{SETTINGS_FORMAT} settings object")
        fmt = data.get("format")
        if type(fmt) is int and fmt > SETTINGS_FORMAT:
            raise NewerSettingsError(f"format {fmt}; this vrm reads format {SETTINGS_FORMAT}")
        if fmt != SETTINGS_FORMAT:
            raise ValueError(f"not a format-{SETTINGS_FORMAT} settings object")
        terms = data.get("terms")
        if type(terms) is not list:
            raise ValueError("terms is not a list")
        extra = {k: v for k, v in data.items() if k not in ("format", "name", "terms")}
        return cls(str(data.get("name", "")), tuple(_stored_term(t) for t in terms), extra)


class NewerSettingsError(ValueError):
    """settings.json was written by a newer vrm (:meth:`Settings.from_json`)."""


def _stored_term(obj: Any) -> TermRef:
    """A term of settings.json (:func:`term_from_json`); one well-formed but missing from the
    roster is a newer roster's (:class:`NewerSettingsError`)."""
    if type(obj) is not dict:
        raise ValueError("a stored term is a map")
    term_id, version = obj.get("id"), obj.get("version")
    if type(term_id) is str and type(version) is int and (term_id, version) not in ROSTER:
        raise NewerSettingsError(f"it names {term_id}@{version}, a term this vrm does not know")
    return term_from_json(obj)


def _disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` or what caused it is SQLite's SQLITE_FULL ("database or disk is full")
    or a file's ENOSPC or EDQUOT: the disk had less room than a write needed."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, sqlite3.Error) and (
                getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL):  # fmt: skip
            return True
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def settings_missing(home: Home) -> str:
    """What a data directory without ``settings.json`` means for the person."""
    terms = ", ".join(f"{t.id}@{t.version}" for t in DEFAULT_TERMS)
    return (f"{home.settings_path} is missing: you proffer the default terms ({terms}) under "
            "no name until you choose yours with `vrm terms set …` (a backup of this "
            "directory holds the ones you had)")


class Home:
    """One data directory. Nothing is created until :meth:`init`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._missing_said = False  # settings.json missing, and the person told (settings())

    @classmethod
    def at(cls, data_dir: str | os.PathLike[str] | None = None) -> Home:
        """The command line's data directory (whose warnings go to stderr, :func:`warn`)."""
        show_warnings()
        return cls(default_home(data_dir))

    @property
    def seed_path(self) -> Path:
        return self.path / "seed"

    @property
    def settings_path(self) -> Path:
        return self.path / "settings.json"

    @property
    def db_path(self) -> Path:
        return self.path / "agent.db"

    @property
    def intents_path(self) -> Path:
        return self.path / "intents.json"

    def exists(self) -> bool:
        return self.seed_path.exists()

    def _orphan_store(self) -> bool:
        """A store without its seed file: the seed was lost (or never restored) here."""
        return not self.exists() and self.db_path.is_file() and self.db_path.stat().st_size > 0

    def unwritable(self) -> str | None:
        """Why nothing can be written in the directory, if that is so: it is on a read-only
        file system (one the kernel remounted read-only after a disk error, a backup disk),
        its permissions do not let us, or its disk is (nearly) full. SQLite says only
        "unable to open database file" or "disk I/O error" for each of them."""
        try:
            st = os.statvfs(self.path)
        except OSError:
            return None
        if st.f_flag & os.ST_RDONLY:
            return "it is on a read-only file system"
        if not os.access(self.path, os.W_OK) or (
            self.db_path.exists() and not os.access(self.db_path, os.W_OK)
        ):
            return "its permissions do not let you write in it"
        free = st.f_bavail * st.f_frsize
        if free < LOW_SPACE:
            return f"the disk it is on is full ({free // 1024} KiB free)"
        return None

    def cannot_write(self, *, sent: bool = False,
                     exc: BaseException | None = None) -> CliError | None:  # fmt: skip
        """The error to report instead of a store that failed, when the cause is that nothing
        can be written here (:meth:`unwritable`, or ``exc`` is SQLite's SQLITE_FULL or a
        file's ENOSPC: more was needed than was left): the files are not damaged, and
        restoring a backup would lose what they hold. ``sent``: the command may have sent
        something first (its message waits in the outbox, and `vrm outbox run` finishes it)."""
        why = self.unwritable()
        if why is None and _disk_full(exc):
            why = f"the disk it is on is full ({self._free() // 1024} KiB free is not enough)"
        if why is None:
            return None
        then = ("then `vrm outbox run` delivers what waits there, and run the command again "
                "if `vrm outbox` does not list it." if sent else
                "then run the command again; nothing was sent.")  # fmt: skip
        return CliError(f"cannot write in your data directory {self.path}: {why}. Your "
                        f"files are as they were: make room or make it writable, {then}",
                        EXIT_USAGE, kind="unwritable")  # fmt: skip

    def _free(self) -> int:
        """Bytes free for us where the directory is (0 if that cannot be told)."""
        try:
            st = os.statvfs(self.path)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def _damaged(self, what: Path, why: str) -> CliError:
        if what == self.seed_path:  # `vrm key import` here checks it against agent.db
            remedy = ("`vrm key import` restores it here from the text `vrm key export` "
                      "printed, or restore it from a backup")  # fmt: skip
        elif what == self.settings_path:
            remedy = ("`vrm terms set …` chooses your terms again and writes it anew (keeping "
                      f"this one as {DAMAGED_SETTINGS}), or restore it from a backup")
        else:
            first = self.before_restoring() if what == self.db_path else ""
            remedy = (f"restore it from a backup{first}, or import your seed into a new "
                      "directory with `vrm key import`")  # fmt: skip
        return CliError(f"the data directory {self.path} is damaged: {what.name} {why}; "
                        f"{remedy}", EXIT_USAGE, kind="damaged")  # fmt: skip

    # -- creating -----------------------------------------------------------------------------

    def refuse_non_directory(self) -> None:
        """Refuse a data directory path that names something else (a file): making it
        private would change that file's mode, and nothing could be written in it."""
        if self.path.exists() and not self.path.is_dir():
            raise CliError(f"{self.path} is not a directory: point --data-dir or VRM_HOME at "
                           "your data directory (or where one is to be made); nothing was "
                           "changed", EXIT_USAGE, kind="not_a_directory")  # fmt: skip

    def init(self, seed: bytes, settings: Settings) -> Settings:
        """Create the directory (mode 0700) with ``seed`` and ``settings``; a settings.json
        already there keeps its terms (:meth:`_settings_for_init`). The settings in force."""
        self.refuse_non_directory()
        if self.exists():
            raise CliError(f"{self.path} already holds a vrm agent (it has a seed)", EXIT_USAGE,
                           kind="exists")  # fmt: skip
        if self._orphan_store():  # a new seed would never match it
            raise CliError(
                f"{self.path} holds an agent's store ({self.db_path.name}: relationships, "
                "histories) but no seed file; a new seed would not match it. Restore your seed "
                "with `vrm key import` (the text `vrm key export` printed). To start afresh "
                f"instead, move {self.db_path} away first",
                EXIT_USAGE, kind="seed_missing",
            )  # fmt: skip
        kept = self._settings_for_init(settings) if self.path.is_dir() else None
        private_dir(self.path)
        self.write_seed(seed)
        if kept is None or settings.name:  # kept as it was, unless --name renames it
            self.write_settings(kept or settings)
        return kept or settings

    def make_private(self) -> None:
        """The directory 0700 and each file in it 0600, tightened with a warning where they
        were looser (§11.13-1)."""
        if self.path.is_dir():
            private_data_dir(self.path)

    def write_seed(self, seed: bytes) -> None:
        atomic_write_text(self.seed_path, seed_to_text(seed) + "\n", mode=0o600)

    def write_settings(self, settings: Settings) -> None:
        text = json.dumps(settings.to_json(), indent=2, ensure_ascii=False) + "\n"
        atomic_write_text(self.settings_path, text, mode=0o600)

    # -- reading ------------------------------------------------------------------------------

    def require(self) -> None:
        """Refuse to go on unless :meth:`init` has run here."""
        if self._orphan_store():
            raise CliError(
                f"the seed file {self.seed_path} is missing, but {self.db_path} holds your "
                "relationships: restore the seed with `vrm key import` (the text `vrm key "
                "export` printed). `vrm init` would make a new seed that does not match them",
                EXIT_USAGE, kind="seed_missing",
            )  # fmt: skip
        if not self.path.exists() or not self.exists():
            raise CliError(
                f"no vrm agent in {self.path}; run `vrm init` first (or point --data-dir or "
                "VRM_HOME at your data directory)",
                EXIT_USAGE,
                kind="not_initialised",
            )
        self.make_private()

    def read_seed_bytes(self) -> bytes:
        self.require()
        try:
            text = self.seed_path.read_text("utf-8")
        except UnicodeDecodeError:
            raise self._damaged(self.seed_path, "is not text") from None
        try:
            return seed_from_text(text)
        except SeedTextError as exc:
            raise self._damaged(self.seed_path, f"does not hold a valid seed ({exc})") from None

    def master(self) -> MasterSeed:
        return MasterSeed(self.read_seed_bytes())

    def settings(self, *, warn_missing: bool = True) -> Settings:
        """What the person chose (``settings.json``). ``vrm init`` and ``vrm key import`` write
        it, so a directory with a seed and no settings lost them (a partial restore, a file
        deleted): the defaults stand in, said once per command (:func:`warn`) — else every
        connect would proffer other terms than the person's without a word."""
        self.require()
        try:
            return self._load_settings()
        except FileNotFoundError:
            if warn_missing and not self._missing_said:
                self._missing_said = True
                warn(settings_missing(self))
            return Settings()
        except NewerSettingsError as exc:
            raise self._newer(self.settings_path, str(exc)) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise self._damaged(self.settings_path, f"cannot be read ({exc})") from None

    def _load_settings(self) -> Settings:
        """settings.json as it is: ``FileNotFoundError``, :class:`NewerSettingsError`, or
        another ``ValueError`` (``KeyError``, ``TypeError``) for a damaged one."""
        return Settings.from_json(json.loads(self.settings_path.read_text("utf-8")))

    def _set_aside(self) -> Path:
        """Move a damaged settings.json to :data:`DAMAGED_SETTINGS`, saying so."""
        aside = self.path / DAMAGED_SETTINGS
        os.replace(self.settings_path, aside)
        warn(f"{self.settings_path.name} was damaged: it is kept as {aside}; your new terms "
             "replace it (the name it held, shown only to you, is not carried over)")
        return aside

    def _settings_for_init(self, chosen: Settings) -> Settings | None:
        """The settings a new seed starts with where settings.json is already there (copied
        back by hand, the seed not yet): its terms and name stay, ``chosen.name`` replaces
        the name if given; None if there is none (or it was damaged, and is now set aside)."""
        try:
            found = self._load_settings()
        except FileNotFoundError:
            return None
        except NewerSettingsError as exc:
            raise self._newer(self.settings_path, str(exc)) from None
        except (ValueError, KeyError, TypeError):
            self._set_aside()
            return None
        if chosen.name:
            found.name = chosen.name
        warn(f"kept the terms you chose in {self.settings_path} "
             f"({', '.join(f'{t.id}@{t.version}' for t in found.terms) or 'none'}); "
             "`vrm terms set …` chooses others")
        return found

    def settings_to_replace(self) -> Settings:
        """:meth:`settings`, for a command that writes them anew (``vrm terms set``): a
        damaged settings.json is moved aside to :data:`DAMAGED_SETTINGS`, with a warning, and
        the defaults stand in — else nothing could repair it. One a newer vrm wrote is refused
        as :meth:`settings` refuses it."""
        try:
            return self.settings(warn_missing=False)
        except CliError as exc:
            if exc.kind != "damaged":
                raise
        self._set_aside()
        return Settings()

    async def open_store(self, *, require_seed: bool = True) -> SQLiteStore:
        """The agent's store, refusing a file that is not a vrm database. Its commits run on
        the event loop's thread and are fsynced together (``inline=True``, #12)."""
        if require_seed:
            self.require()
        if self.store_emptied():
            raise CliError(f"the data directory {self.path} is damaged: {self.emptied()}",
                           EXIT_USAGE, kind="damaged")  # fmt: skip
        try:
            store = await SQLiteStore.open(self.db_path, inline=True)
        except StoreError as exc:
            raise self.unusable(exc) from None
        try:
            await store.relationships()
        except StoreError as exc:
            await store.close()
            raise self.unusable(exc) from None
        return store

    def served(self) -> bool:
        """Whether a ``vrm agent serve`` runs on this directory now: it holds
        :data:`SERVE_LOCK` locked (``flock``, dropped by the kernel when it ends however it
        ends, and never copied with the file)."""
        if fcntl is None:  # pragma: no cover -- not POSIX: serve holds no lock either
            return False
        try:
            fd = os.open(self.path / SERVE_LOCK, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except OSError:  # none: no serve ran here (or it is not ours to open)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # releases the lock if we took it
        return False

    def agent_url(self, settings: Settings) -> str | None:
        """The URL ``vrm agent serve`` wrote into ``settings`` while it runs (§12.11-3), if a
        serve runs here now (:meth:`served`). One left by a serve that did not stop by itself
        (``kill -9``, a power loss), or copied with the directory from another machine, is
        stale: vendors told it would send what they have for you there. Said, and not used."""
        url = settings.extra.get("agent_url")
        if not isinstance(url, str) or not url:
            return None
        if self.served():
            return url
        warn(f"{self.settings_path.name} names {url} as your agent's address, but no `vrm "
             "agent serve` runs on this data directory (one was stopped abruptly, or the "
             "directory was copied from another machine): vendors are not told it; "
             "`vrm agent serve` tells them where it listens")
        return None

    def before_restoring(self) -> str:
        """What to do before agent.db is restored from a backup, as words to put after
        "restore it from a backup" ("" if nothing): remove the ``-wal`` and ``-shm`` files a
        vrm that did not close left beside it. They belong to the damaged file, and SQLite
        lays a ``-wal`` it finds over the database it opens: over the backup, which would then
        be malformed too, or silently a mix of both."""
        left = [p.name for p in (self.db_path.with_name(self.db_path.name + s)
                                 for s in ("-wal", "-shm")) if p.exists()]  # fmt: skip
        if not left:
            return ""
        return (f" — first remove {' and '.join(left)} beside it (they belong to the damaged "
                "file, and would be laid over the backup)")

    def emptied(self) -> str:
        """Why an empty agent.db is refused, and the remedy (:data:`EMPTIED`)."""
        return f"{self.db_path.name} {EMPTIED.format(first=self.before_restoring())}"

    def store_emptied(self) -> bool:
        """Whether agent.db is there but empty (0 bytes). The first command that opens it
        writes its schema at once, so an empty one was truncated (a crash of the file system,
        a copy cut short) — or made a moment before a crash. Opened as it is, SQLite would make
        a new store of it and every relationship would be gone without a word."""
        try:
            return self.db_path.stat().st_size == 0
        except OSError:
            return False

    def _newer(self, what: Path, why: str) -> CliError:
        """``what`` was written by a newer vrm: not damage, and a backup would be older."""
        return CliError(
            f"{what} was written by a newer vrm than this one ({why}): upgrade vrm to use this "
            "data directory. Your files are as they were; do not restore an older backup over "
            "them, it would lose what the newer vrm recorded",
            EXIT_USAGE, kind="too_new",
        )  # fmt: skip

    def unusable(self, exc: StoreError) -> CliError:
        """agent.db could not be opened: written by a newer vrm, its write lock held by
        another process, unwritable here (:meth:`cannot_write`), or damaged."""
        if isinstance(exc, SchemaTooNew):
            return self._newer(self.db_path, f"its schema is version {exc.version}, this vrm "
                               f"reads up to {exc.supported}")  # fmt: skip
        if isinstance(exc, StoreBusy):
            return CliError(
                f"{self.db_path} is busy: another vrm process is writing to it (bringing it to "
                "this version of vrm, or stopped in the middle of a write: `jobs`, `ps`); "
                "nothing was changed, run the command again when it is done",
                EXIT_USAGE, kind="busy",
            )  # fmt: skip
        unwritable = self.cannot_write(exc=exc)
        if unwritable is not None:
            return unwritable
        return self._damaged(self.db_path, f"is not a usable database ({exc})")

    # -- notes: intent offers and shares -----------------------------------------------------

    @property
    def shares_path(self) -> Path:
        return self.path / "shares.json"

    def _read_notes(self, path: Path) -> list[dict[str, Any]]:
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return []
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._damaged(path, f"cannot be read ({exc})") from None
        if type(data) is not dict or type(data.get("items")) is not list:
            raise self._damaged(path, "is not a notes file")
        return [dict(item) for item in data["items"] if type(item) is dict]

    def _write_notes(self, path: Path, items: Sequence[dict[str, Any]]) -> None:
        text = json.dumps({"format": 1, "items": list(items)}, indent=2, ensure_ascii=False)
        atomic_write(path, (text + "\n").encode("utf-8"), mode=0o600)

    def read_intents(self) -> list[dict[str, Any]]:
        return self._read_notes(self.intents_path)

    def write_intents(self, intents: Sequence[dict[str, Any]]) -> None:
        self._write_notes(self.intents_path, intents)

    def read_shares(self) -> list[dict[str, Any]]:
        return self._read_notes(self.shares_path)

    def write_shares(self, shares: Sequence[dict[str, Any]]) -> None:
        self._write_notes(self.shares_path, shares)
