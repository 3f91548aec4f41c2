"""Files of our own: atomic writes, and directories and files only their owner can read.

Atomic writes: a reader sees the old content or the new, never a torn mix. The recipe (spec §12
(durability)): write a temporary file in the same directory, fsync it, ``os.replace`` it over
the target (atomic on POSIX), then fsync the directory so the rename itself survives a power
loss.

Private files (spec §11.13-1): a data directory holds the master seed, the histories and, in a
vendor's database, customers' shared data in clear. :func:`private_dir` and :func:`private_file`
make a directory 0700 and a file 0600, creating them so or tightening looser ones they find —
each tightening reported as a warning on the ``vrmproto.files`` logger, since the person should
know their data was readable by others.

These are plain blocking functions; async callers run them off the event loop
(``await asyncio.to_thread(atomic_write, path, data)``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "private_data_dir", "private_dir", "private_file"]

log = logging.getLogger("vrmproto.files")

#: Permission bits that let anyone but the owner in.
_OTHERS = 0o077


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync elsewhere
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Replace ``path``'s content with ``data`` atomically and durably; the file gets ``mode``
    exactly (the umask does not apply), and is never visible with any other mode or content."""
    target = Path(path)
    directory = target.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with open(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, mode: int = 0o600, encoding: str = "utf-8"
) -> None:
    """:func:`atomic_write` for text."""
    atomic_write(path, text.encode(encoding), mode)


def _tighten(path: Path, mode: int, what: str) -> bool:
    """Give ``path`` ``mode`` if it lets others in; a warning says so. True if it was loose."""
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    if not current & _OTHERS:
        return False
    try:
        os.chmod(path, mode)
    except OSError as exc:
        log.warning("%s %s can be read by other users (mode %04o) and could not be made "
                    "private: %s", what, path, current, exc.strerror or exc)
        return True
    log.warning("%s %s could be read by other users (mode %04o); it is now %04o", what, path,
                current, mode)
    return True


def private_dir(path: str | os.PathLike[str], *, create: bool = True) -> bool:
    """Make ``path`` a directory only its owner can use (0700): create it so (with its missing
    parents, if ``create``), or tighten a looser one, with a warning (§11.13-1).

    True if an existing directory was loose. Only ``path`` itself is checked, not its parents.
    """
    directory = Path(path)
    if create and not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return False
    return _tighten(directory, 0o700, "the data directory")


def private_file(path: str | os.PathLike[str]) -> bool:
    """Tighten the file ``path`` to 0600 if others may read it, with a warning (§11.13-1).

    True if it was loose; a missing file is left missing.
    """
    return _tighten(Path(path), 0o600, "the file")


def private_data_dir(path: str | os.PathLike[str]) -> None:
    """A data directory of ours: created 0700, or it and each file directly in it tightened
    (0700, 0600) where they were looser, with a warning for each (§11.13-1)."""
    directory = Path(path)
    private_dir(directory)
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                private_file(entry.path)
