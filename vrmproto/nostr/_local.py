"""A Nostr relay on 127.0.0.1 for tests, benchmarks and examples: ``nostr-relay`` from PyPI
(the ``dev`` extra installs it), run as a subprocess with a database of its own.

The caller's process binds the listening socket and hands it to the relay (uvicorn's ``fd``),
so clients may connect at once: their connections wait in the socket's backlog until the relay
accepts them, and nothing polls or sleeps for the relay to come up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["local_relay", "relay_command"]

_CONFIG = """\
DEBUG: false
relay_name: vrmproto local relay
storage:
  sqlalchemy.url: sqlite+aiosqlite:///{db}
  num_concurrent_reqs: 4
  num_concurrent_adds: 1
  validators:
    - nostr_relay.validators.is_not_too_large
    - nostr_relay.validators.is_signed
    - nostr_relay.validators.is_recent
verification:
  nip05_verification: disabled
gunicorn:
  bind: 127.0.0.1:{port}
  fd: {fd}
  workers: 1
  loglevel: warning
  reload: false
authentication:
  enabled: false
message_timeout: 1800
subscription_limit: 32
max_limit: 6000
logging:
  version: 1
  root:
    level: WARNING
"""


def relay_command() -> str | None:
    """The ``nostr-relay`` script beside this Python, or on the PATH; None when not installed."""
    return shutil.which("nostr-relay", path=str(Path(sys.executable).parent)) or shutil.which(
        "nostr-relay"
    )


@contextlib.contextmanager
def local_relay(directory: Path) -> Iterator[str]:
    """Run one relay with its database in a new folder under ``directory``; yield its
    ``ws://127.0.0.1:port`` URL; stop it when the block ends. RuntimeError if not installed."""
    exe = relay_command()
    if exe is None:
        raise RuntimeError("nostr-relay is not installed (pip install nostr-relay)")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    home = directory / f"relay-{port}"
    home.mkdir()
    conf = home / "config.yaml"
    conf.write_text(_CONFIG.format(db=home / "relay.sqlite3", port=port, fd=sock.fileno()))
    with (home / "stderr").open("wb") as err:
        proc = subprocess.Popen(  # noqa: S603 - the installed relay, fixed arguments
            [exe, "-c", str(conf), "serve", "--use-uvicorn"], cwd=home,
            pass_fds=(sock.fileno(),), stdout=subprocess.DEVNULL, stderr=err,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
    sock.close()  # the relay holds its copy
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
