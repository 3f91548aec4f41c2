"""``python -S tests/_forkclient.py SOCKET ARGV...``: run ``python ARGV`` (``-m vrmproto.cli
ARGS``, say) through the fork server at SOCKET (``tests/_forkserver.py``) as if this process
were it.

The run gets this process's standard streams, environment and working directory; a signal this
process receives is passed on to the run (SIGKILL cannot be: the server kills the run when this
process's connection closes); this process exits with the run's code, or dies of the run's
signal. Only the standard library, and no ``site``, so it starts in ~20 ms.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys

from _forkserver import Lines, request_bytes  # beside this script: the same wire format

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)  # fmt: skip


def _pass_on(pid: int) -> None:
    def handler(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):  # it has ended; its code is on its way
            os.kill(pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, handler)


def main(path: str, argv: list[str]) -> int:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    socket.send_fds(conn, [request_bytes(argv, dict(os.environ), os.getcwd())], [0, 1, 2])
    answer = Lines(conn)
    try:
        _pass_on(answer.line())
        code = answer.line()
    except EOFError:
        return 1
    if code < 0:  # the run died of a signal: so do we
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv[1], sys.argv[2:]))
