"""The ``--workers`` supervisor acts on a SIGTERM that the kernel gives to a thread other than
its main one (:mod:`vrmproto.server._workers`).

Session 17's ``vrm vendor serve --workers 2`` that did not stop (``test_workers.py``'s SIGKILL
test, a few runs in a hundred) was the supervisor, not a worker: timestamps of each SIGTERM sent
and each worker's ``stop.set`` show both workers alive and untold, and the supervisor's first
SIGTERM to them 60 s late, when the test's cleanup signalled the whole process group. It
waited in ``os.wait()`` with a Python-level handler: Python runs that handler in the main thread
between bytecodes, so a SIGTERM that arrives after the interpreter's last check and before
``wait()`` blocks, or that the kernel gives to another thread (the log writer), leaves the main
thread blocked until a worker exits. The supervisor now waits in ``poll()`` on a wake-up pipe
that the C-level handler writes to (:func:`signal.set_wakeup_fd`), in whichever thread it runs.

Here the SIGTERM is sent to a thread of the supervisor's own, the deterministic form of the
same loss; the test waits for the supervisor to exit, never for a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: A supervisor of two workers that stop at their first SIGTERM. Once it reports listening, a
#: thread of its own waits for a byte on stdin, then sends SIGTERM to itself (that thread).
PROGRAM = textwrap.dedent("""
    import json, os, signal, sys, threading
    from vrmproto.server._workers import Supervisor, listening_socket

    def say(**fields):  # one write: a signal handler may print too
        os.write(1, (json.dumps(fields) + "\\n").encode())

    def work(index, sock, ready):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # held for sigwait
        ready()
        signal.sigwait({signal.SIGTERM})
        say(event="sigterm", worker=index)
        return 0

    def taker():
        os.read(0, 1)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # to this thread alone

    def listening(pids):
        threading.Thread(target=taker, daemon=True).start()
        say(event="listening", pids=pids)

    supervisor = Supervisor(2, listening_socket("127.0.0.1", 0), work,
                            lambda e, human, f: say(event=e, **f))
    status = supervisor.run(listening)
    say(event="status", status=status)
    sys.exit(status)
""")


def test_a_sigterm_taken_by_another_thread_of_the_supervisor_stops_the_workers() -> None:
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    lines: list[dict[str, Any]] = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(json.loads(raw))
            if lines[-1]["event"] == "listening":
                break
        else:
            pytest.fail(f"the supervisor ended before it listened: {lines}")
        rest, _ = proc.communicate("t", timeout=60)  # before the fix: TimeoutExpired
        lines += [json.loads(raw) for raw in rest.splitlines()]
    finally:
        with contextlib.suppress(ProcessLookupError):  # workers left behind, after a failure
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, lines
    assert sorted(x["worker"] for x in lines if x["event"] == "sigterm") == [0, 1], lines
    assert lines[-1] == {"event": "status", "status": 0}
