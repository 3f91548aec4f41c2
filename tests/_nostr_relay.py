"""A real Nostr relay (``nostr-relay`` from PyPI) on 127.0.0.1, for the tests of §15.

The test binds the listening socket itself and hands it to the relay process (uvicorn's ``fd``),
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

import pytest

try:
    import nostr_relay
except ImportError:  # pragma: no cover - the dev extra installs it
    nostr_relay = None

_CONFIG = """\
DEBUG: false
relay_name: vrmproto test relay
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


def need_relay() -> None:
    """Skip the calling test, saying why, when ``nostr-relay`` is not installed."""
    if nostr_relay is None or shutil.which("nostr-relay", path=str(Path(sys.executable).parent)
                                           ) is None:  # fmt: skip
        pytest.skip("nostr-relay is not installed (pip install -e '.[dev]' brings it)")


@contextlib.contextmanager
def relay(tmp: Path) -> Iterator[str]:
    """Run one relay with its own database under ``tmp``; yield its ``ws://`` URL."""
    need_relay()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    home = tmp / f"relay-{port}"
    home.mkdir()
    conf = home / "config.yaml"
    conf.write_text(_CONFIG.format(db=home / "relay.sqlite3", port=port, fd=sock.fileno()))
    exe = str(Path(sys.executable).parent / "nostr-relay")
    with (home / "stderr").open("wb") as err:
        proc = subprocess.Popen(
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
