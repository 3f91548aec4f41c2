"""The ``--workers`` supervisor killed outright leaves no workers behind (s22 hunt).

``vrm vendor serve --workers N`` forks N workers that inherit the listening socket. When the
supervisor died without passing SIGTERM on — ``kill -9``, an out-of-memory kill, or
``kill -HUP`` (whose default action ends it at once) — its workers went on serving, orphans
no one supervised: the port stayed taken, so the service could not be started again, and
nothing stopped them but a kill by hand. Now each worker asks the kernel for SIGTERM when its
supervisor dies (Linux ``PR_SET_PDEATHSIG``), and stops as it would at the supervisor's.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = textwrap.dedent("""
    import json, os, signal, sys
    from vrmproto.server._workers import Supervisor, listening_socket

    # as started from a terminal, whatever the suite inherited (under nohup it ignores SIGHUP)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

    def say(**fields):
        os.write(1, (json.dumps(fields) + "\\n").encode())

    def work(index, sock, ready):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        ready()
        while True:
            signal.pause()

    sock = listening_socket("127.0.0.1", 0)
    supervisor = Supervisor(2, sock, work, lambda e, human, f: say(event=e, **f))
    sys.exit(supervisor.run(lambda pids: say(event="listening", pids=pids)))
""")

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Linux: pidfd_open")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGHUP])
def test_workers_stop_when_their_supervisor_dies(how: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = json.loads(raw)
            if line["event"] == "listening":
                pids = line["pids"]
                break
        else:
            pytest.fail("the supervisor ended before listening")
        fds = [os.pidfd_open(pid) for pid in pids]
        try:
            proc.send_signal(how)  # to the supervisor alone, not its process group
            proc.wait(timeout=30)
            poll = select.poll()
            for fd in fds:
                poll.register(fd, select.POLLIN)
            ended: set[int] = set()
            while len(ended) < len(fds):  # a pidfd is readable once its process has ended
                ready = poll.poll(10_000)
                assert ready, f"workers {pids} still running 10 s after their supervisor died"
                for fd, _ in ready:
                    ended.add(fd)
                    poll.unregister(fd)
        finally:
            for fd in fds:
                os.close(fd)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
