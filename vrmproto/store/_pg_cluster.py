"""A private, throw-away PostgreSQL cluster for tests and benchmarks of :class:`PostgresStore`.

:class:`PrivateCluster` runs ``initdb`` into a new temporary directory and ``pg_ctl start`` with
``listen_addresses = ''``: the server listens on a Unix socket in that directory only, never on
TCP, so nothing off this machine (and no other user, the directory being 0700) can reach it.
Authentication is ``trust`` over that socket for the same reason. PostgreSQL refuses to run as
root; run as root, the cluster runs as the ``postgres`` user (``runuser -u postgres --``), which
then owns the directory. :meth:`PrivateCluster.stop` stops the server (``pg_ctl stop -m
immediate``: nothing of it is kept, so no final checkpoint) and deletes the directory.

The binaries are looked up on ``PATH`` and then under ``/usr/lib/postgresql/*/bin`` (Debian's
layout), newest version first. :func:`missing_reason` says why a cluster cannot be started here
(no binaries; root without a ``postgres`` user or ``runuser``), so tests can skip with it.

Nothing here imports asyncpg: :attr:`PrivateCluster.dsn` is a ``postgresql://`` URL naming the
socket directory (``?host=``), which asyncpg and libpq both read.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

__all__ = ["PrivateCluster", "find_binaries", "missing_reason"]

#: The database superuser the private cluster is created with.
SUPERUSER = "vrm"
DATABASE = "postgres"
_RUN_AS = "postgres"  # the account a cluster runs under when we are root
_TIMEOUT_S = 120


def find_binaries() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name))

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for directory in [*candidates, *debian]:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _run_as() -> str | None:
    """The user to run the server as: None for ourselves; ``postgres`` when we are root."""
    return _RUN_AS if os.geteuid() == 0 else None


def _parent_for(run_as: str | None) -> str | None:
    """Where to make the cluster's directory: the usual temporary directory, unless the server
    runs as another user who could not reach it (a private ``$TMPDIR``); then ``/tmp``."""
    if run_as is None:
        return None
    parents = Path(tempfile.gettempdir()).resolve()
    if all(p.stat().st_mode & 0o001 for p in (parents, *parents.parents)):
        return None
    return "/tmp"  # noqa: S108 -- world-traversable; the cluster's own directory is 0700


def missing_reason() -> str | None:
    """Why a private cluster cannot run on this machine, or None if it can."""
    if find_binaries() is None:
        return (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under "
            "/usr/lib/postgresql/*/bin; install Debian's `postgresql` package"
        )
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is missing (PostgreSQL refuses to run as root)"
        try:
            import pwd  # noqa: PLC0415 -- POSIX only, and only needed as root

            pwd.getpwnam(_RUN_AS)
        except KeyError:
            return f"running as root and there is no {_RUN_AS!r} user to run PostgreSQL as"
    return None


class PrivateCluster:
    """One PostgreSQL server in a temporary directory, on a Unix socket only.

    ``with PrivateCluster.start() as cluster: ... cluster.dsn ...``; ``settings`` are extra
    ``postgresql.conf`` lines (name → value, quoted here).
    """

    def __init__(self, root: Path, binaries: Path, run_as: str | None) -> None:
        self.root = root
        self.binaries = binaries
        self.run_as = run_as
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.log = root / "server.log"
        self.port = 5432  # only names the socket file (.s.PGSQL.5432); no TCP listener

    @property
    def dsn(self) -> str:
        """A ``postgresql://`` URL for the superuser, through the Unix socket."""
        return (
            f"postgresql://{SUPERUSER}@/{DATABASE}?host={quote(str(self.socket_dir), safe='/')}"
            f"&port={self.port}"
        )

    @classmethod
    def start(cls, settings: dict[str, str] | None = None) -> PrivateCluster:
        """``initdb`` and start a new cluster; raise RuntimeError (with the log) if it fails."""
        reason = missing_reason()
        binaries = find_binaries()
        if reason is not None or binaries is None:
            raise RuntimeError(reason or "no PostgreSQL binaries")
        run_as = _run_as()
        root = Path(tempfile.mkdtemp(prefix="vrm-pg-", dir=_parent_for(run_as)))
        cluster = cls(root, binaries, run_as)
        try:
            cluster._create(settings or {})
            cluster._pg_ctl("start", "-w", "-t", str(_TIMEOUT_S), "-l", str(cluster.log))
        except BaseException:
            cluster._remove()
            raise
        return cluster

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.binaries / program), *args]
        return ["runuser", "-u", self.run_as, "--", *command] if self.run_as else command

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(  # noqa: S603 -- our own arguments, no shell
            self._command(program, *args),
            capture_output=True, text=True, timeout=_TIMEOUT_S, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}{log}"
            )

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), *args)

    def _create(self, settings: dict[str, str]) -> None:
        self.root.chmod(0o700)
        self.socket_dir.mkdir(mode=0o700)
        if self.run_as is not None:
            import pwd  # noqa: PLC0415 -- POSIX only, and only needed as root

            account = pwd.getpwnam(self.run_as)
            for path in (self.root, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-instructions",
            "--no-sync",  # a throw-away cluster: its files need not be on disk before it starts
        )  # fmt: skip
        conf = {
            "listen_addresses": "",  # no TCP at all
            "unix_socket_directories": str(self.socket_dir),
            "unix_socket_permissions": "0700",
            "port": str(self.port),
            **settings,
        }
        lines = "".join(f"{k} = '{v}'\n" for k, v in conf.items())
        with (self.data / "postgresql.conf").open("a") as f:
            f.write("\n# vrmproto private cluster\n" + lines)

    def postmaster_pid(self) -> int | None:
        """The server's process id (for CPU accounting), or None if it is not running."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop the server and delete the directory. The shutdown is ``immediate``: no final
        checkpoint, since nothing of the cluster is kept."""
        try:
            if self.postmaster_pid() is not None:
                self._pg_ctl("stop", "-m", "immediate", "-w", "-t", str(_TIMEOUT_S))
        finally:
            self._remove()

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)

    def __enter__(self) -> PrivateCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
