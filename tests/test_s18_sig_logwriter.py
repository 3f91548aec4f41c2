"""The log writer's thread blocks SIGTERM and SIGINT (:mod:`vrmproto.server._logwriter`), so
that a process that blocks them in its main thread for a while holds them until it unblocks
them, instead of this thread taking them.

The ``--workers`` supervisor blocks them around each ``fork()`` so that one sent meanwhile
reaches the new worker. While the writer took a process-directed SIGTERM, Python ran the
supervisor's handler in the main thread at its next bytecode — inside that window, before the
new worker was counted — and the new worker was told to stop only by the next SIGTERM, a second
later (a52564a's supervisor, 12 runs of 12; 7 to 14 ms with the writer blocking them).
"""

from __future__ import annotations

import io
import signal
import threading
from pathlib import Path

import pytest

from vrmproto.server._logwriter import QueuedLines

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _blocked(thread: threading.Thread) -> set[int]:
    """The signals ``thread`` blocks, as the kernel says (``SigBlk``)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("SigBlk:")), 16)  # fmt: skip
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_the_writer_thread_blocks_the_stop_signals_and_its_creator_does_not() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    handler = QueuedLines(io.StringIO())
    try:
        assert _blocked(handler._thread) >= STOP_SIGNALS
        assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before  # as it was
    finally:
        handler.close()
