"""Atomic file writes: a reader sees the old content or the new, never a torn mix.

The recipe (spec §12 (durability)): write a temporary file in the same directory, fsync it,
``os.replace`` it over the target (atomic on POSIX), then fsync the directory so the rename
itself survives a power loss. These are plain blocking functions; async callers run them off the
event loop (``await asyncio.to_thread(atomic_write, path, data)``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text"]


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
