"""``python -S tests/_forkclient.py SOCKET ARGV...``: run ``vrm ARGV`` through the fork server at
SOCKET (``tests/_forkserver.py``) as if this process were it.

The run gets this process's standard streams, environment and working directory; a signal this
process receives is passed on to the run (SIGKILL cannot be: the server kills the run when this
process's connection closes); this process exits with the run's code, or dies of the run's
signal. Only the standard library, and no ``site``, so it starts in ~20 ms.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)  # fmt: skip


def _pass_on(pid: int) -> None:
    def handler(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):  # it has ended; its code is on its way
            os.kill(pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, handler)


def main(path: str, args: list[str]) -> int:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    body = json.dumps({"argv": ["vrm", *args], "env": dict(os.environ), "cwd": os.getcwd()})
    socket.send_fds(conn, [struct.pack("!I", len(body.encode())) + body.encode()], [0, 1, 2])
    buffer = b""
    lines: list[int] = []
    while len(lines) < 2:
        more = conn.recv(64)
        if not more:
            return 1
        buffer += more
        while b"\n" in buffer:
            line, _, buffer = buffer.partition(b"\n")
            lines.append(int(line))
            if len(lines) == 1:
                _pass_on(lines[0])
    code = lines[1]
    if code < 0:  # the run died of a signal: so do we
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv[1], sys.argv[2:]))
