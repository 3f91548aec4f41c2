"""The ``--workers`` supervisor always stops (:mod:`vrmproto.server._workers`,
docs/deployment.md): a worker that lets a SIGTERM pass gets another every second, one that never
stops is killed ``stop_timeout_s`` after the first, and one told to stop while it starts is
waited for the same way.

Session 17 saw ``vrm vendor serve --workers 2`` not stop, a few runs in a hundred: one worker
lost the supervisor's only SIGTERM, and the supervisor waited for it in ``os.wait()`` for good.
Here the workers are small programs of the test's that behave so on purpose, under the real
:class:`Supervisor`, in a process of its own (it forks and takes SIGTERM); the test waits for
that process to exit, never for a time.
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

#: The supervisor under test, with two workers; argv: MODE STOP_TIMEOUT_S. Worker 1 behaves as
#: MODE says; worker 0 stops at the first SIGTERM. Each line printed is one JSON object.
PROGRAM = textwrap.dedent("""
    import json, os, signal, sys
    from vrmproto.server._workers import Supervisor, listening_socket

    mode, timeout = sys.argv[1], float(sys.argv[2])

    def say(**fields):  # one write: signal handlers print too
        os.write(1, (json.dumps(fields) + "\\n").encode())

    def work(index, sock, ready):
        terms = []
        def on_term(signum, frame):
            terms.append(signum)
            say(event="sigterm", worker=index, n=len(terms))
        signal.signal(signal.SIGTERM, on_term)
        if index == 1 and mode == "starting":
            say(event="starting", worker=index, pid=os.getpid())
        else:
            ready()
        need = 1 if index == 0 else {"twice": 2, "starting": 2, "never": 10**9}[mode]
        while len(terms) < need:
            signal.pause()
        return 0

    sock = listening_socket("127.0.0.1", 0)
    supervisor = Supervisor(2, sock, work, lambda e, human, f: say(event=e, **f),
                            stop_timeout_s=timeout)
    status = supervisor.run(lambda pids: say(event="listening", pids=pids))
    say(event="status", status=status)
    sys.exit(status)
""")


def supervise(mode: str, stop_timeout_s: float) -> tuple[int, list[dict[str, Any]]]:
    """Run the supervisor; SIGTERM it once the workers are up (or worker 1 is starting); its
    exit code and the lines printed."""
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, mode, str(stop_timeout_s)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    lines: list[dict[str, Any]] = []
    try:
        assert proc.stdout is not None
        wanted = "starting" if mode == "starting" else "listening"
        for raw in proc.stdout:
            lines.append(json.loads(raw))
            if lines[-1]["event"] == wanted:
                break
        else:
            pytest.fail(f"the supervisor ended before {wanted}: {lines}")
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)  # the bug: TimeoutExpired
        lines += [json.loads(raw) for raw in rest.splitlines()]
        return proc.returncode, lines
    finally:
        with contextlib.suppress(ProcessLookupError):  # workers left behind, after a failure
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def terms(lines: list[dict[str, Any]], worker: int) -> int:
    return sum(1 for x in lines if x["event"] == "sigterm" and x["worker"] == worker)


def test_a_worker_that_lets_the_first_sigterm_pass_gets_another() -> None:
    status, lines = supervise("twice", stop_timeout_s=30)
    assert status == 0, lines
    assert (terms(lines, 0), terms(lines, 1)) == (1, 2), lines
    assert not [x for x in lines if x["event"] == "worker_killed"], lines
    assert lines[-1] == {"event": "status", "status": 0}


def test_a_worker_that_never_stops_is_killed_after_the_stop_timeout() -> None:
    status, lines = supervise("never", stop_timeout_s=1.5)
    assert status == 0, lines
    killed = [x for x in lines if x["event"] == "worker_killed"]
    assert [x["worker"] for x in killed] == [1], lines
    assert terms(lines, 1) >= 2, lines  # told again before it was killed
    assert lines[-1] == {"event": "status", "status": 0}


def test_a_worker_told_to_stop_while_it_starts_is_waited_for_the_same_way() -> None:
    """SIGTERM while worker 1 has not said it serves: the supervisor was reading its ready
    pipe, and waited there for good if the worker let the SIGTERM pass."""
    status, lines = supervise("starting", stop_timeout_s=30)
    assert status == 0, lines
    assert terms(lines, 1) == 2, lines
    assert not [x for x in lines if x["event"] in ("listening", "worker_killed")], lines
