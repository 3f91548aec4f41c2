"""The ``vrm`` command's standard output and error: what they cannot carry never stops a command.

A command's exit code says what happened to what it sent (README "Exit codes"); printing is
only telling. Two things about the terminal or the pipe used to override it:

- a reader that goes away (``vrm address set … | grep -q queued``, ``| head -1``): the next
  write failed with ``EPIPE``, click turned that into a silent exit 1 ("refused or failed")
  and a fan-out in flight was cut short, although its messages were sent or kept;
- a terminal whose encoding cannot show a mark (``⊂ ⊃ ✓``; an ISO-8859-1 or ASCII locale,
  ``PYTHONIOENCODING=ascii``): the print raised ``UnicodeEncodeError`` *after* the vendor
  confirmed, and the command exited 2 ("nothing was sent").

:func:`steady_streams` makes both streams drop what their reader no longer takes and write a
character they cannot encode as ``?`` (stderr keeps Python's ``\\uXXXX`` escapes); the command
finishes and ends with its own code. JSON output is escaped to ASCII on such a stream, and
wherever it holds what no encoding can write (a path's non-UTF-8 bytes, kept by Python as lone
surrogates), so it stays valid and lossless (:func:`json_text`).
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["DropWhenGone", "json_ascii", "json_text", "steady_streams"]


class DropWhenGone(io.RawIOBase):
    """A writable file descriptor whose writes, once its reader has gone (``EPIPE``) or it
    cannot take them (``ENOSPC``: output sent to a full disk; ``EIO``), are dropped: the
    command goes on as if they were read. A failure other than a reader gone is said once on
    stderr (fd 2), unless it is stderr that failed."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.gone = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, b: ReadableBuffer, /) -> int | None:
        if not self.gone:
            try:
                return os.write(self._fd, b)
            except BlockingIOError:  # a non-blocking descriptor that is full: as FileIO does
                return None
            except BrokenPipeError:
                self.gone = True
            except OSError as exc:
                self.gone = True
                if self._fd != 2:
                    with contextlib.suppress(OSError):
                        os.write(2, f"vrm: warning: its output could not be written "
                                    f"({exc.strerror or exc}); the command went on without "
                                    "it\n".encode())  # fmt: skip
        return memoryview(b).nbytes


def _steady(stream: TextIO | None, errors: str) -> TextIO | None:
    """``stream`` again over :class:`DropWhenGone`, in its encoding, undecodable characters
    written by ``errors``; ``stream`` itself if it is not a file descriptor's text stream."""
    if not isinstance(stream, io.TextIOWrapper):
        return stream
    try:
        fd = stream.fileno()
        stream.flush()
    except (OSError, ValueError):
        return stream
    return _over(fd, stream.encoding, errors, line_buffering=stream.line_buffering,
                 write_through=stream.write_through)  # fmt: skip


def _over(fd: int, encoding: str, errors: str, *, line_buffering: bool = False,
          write_through: bool = False) -> io.TextIOWrapper:  # fmt: skip
    """A text stream over :class:`DropWhenGone` of ``fd``, which it never closes: the
    descriptor is the process's (0-2), not ours."""
    return io.TextIOWrapper(io.BufferedWriter(DropWhenGone(fd)), encoding=encoding,
                            errors=errors, line_buffering=line_buffering,
                            write_through=write_through)  # fmt: skip


def _open_standard_descriptors() -> None:
    """Open /dev/null on each of the descriptors 0-2 that the process was started without
    (``vrm outbox run >&-`` from cron): else the first file or socket opened takes its number,
    and uvloop aborts the process (SIGABRT) when it closes a descriptor below 3."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:  # a lower one was free too: it is opened next, in this loop
                os.dup2(opened, fd)
                os.close(opened)


def steady_streams() -> None:
    """Replace ``sys.stdout`` and ``sys.stderr`` by streams that never fail a command
    (see the module's docstring); a standard stream the process was started without is
    /dev/null. For the console script only: it runs before any command."""
    _open_standard_descriptors()
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 -- the process's, never closed
    for name, fd, errors in (("stdout", 1, "replace"), ("stderr", 2, "backslashreplace")):
        stream = getattr(sys, name)
        # started without it, Python left it None: its descriptor is /dev/null now
        steady = _over(fd, "utf-8", errors) if stream is None else _steady(stream, errors)
        if steady is not None:
            setattr(sys, name, steady)


def json_ascii(stream: TextIO | None = None) -> bool:
    """Whether JSON written to ``stream`` (default stdout) must escape every non-ASCII
    character: its encoding is not a Unicode one, so ``?`` would replace them."""
    encoding = getattr(stream if stream is not None else sys.stdout, "encoding", None)
    try:
        name = codecs.lookup(encoding or "ascii").name
    except LookupError:
        return True
    return not name.startswith("utf")


def json_text(data: object, *, indent: int | None = None) -> str:
    """``data`` as JSON for stdout: as it is where stdout's encoding can write it, else with
    every non-ASCII character escaped (``\\u00eb``; a lone surrogate as ``\\udcff``, which
    ``json.loads`` gives back as it was) — never a ``?`` in place of a character."""
    text = json.dumps(data, indent=indent, ensure_ascii=json_ascii())
    if not text.isascii():
        try:
            text.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
        except (UnicodeEncodeError, LookupError):
            text = json.dumps(data, indent=indent)
    return text
