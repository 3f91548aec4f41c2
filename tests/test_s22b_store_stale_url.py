"""A stale ``agent_url`` in settings.json is not given to vendors as this agent's address.

``vrm agent serve`` writes its URL into settings.json while it runs, and takes it out when it
stops; every command meanwhile tells vendors that URL as the agent's endpoint (§12.11-3). A
serve that did not stop by itself (``kill -9``, a power loss) left it — and so does a data
directory copied to a new laptop while serve ran on the old one: on the new one, every
command then told vendors the OLD machine's address, and what they sent went there. Now the
URL is used only while a ``vrm agent serve`` holds the directory's serve lock; otherwise a
warning says it is stale and vendors are told none.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from pathlib import Path

import pytest

from tests._cli_helpers import new_home
from vrmproto.cli._context import Env, open_node
from vrmproto.cli._home import SERVE_LOCK

OLD_LAPTOP = "http://192.0.2.7:47470"


def _with_url(home: Path) -> None:
    path = home / "settings.json"
    settings = json.loads(path.read_text())
    settings["agent_url"] = OLD_LAPTOP
    path.write_text(json.dumps(settings))
    (home / SERVE_LOCK).touch(mode=0o600)  # copied along, held by nobody here


def _endpoint(home: Path) -> str | None:
    async def read() -> str | None:
        async with open_node(Env(data_dir=str(home))) as node:
            return node.agent.endpoint

    return asyncio.run(read())


def test_a_url_nobody_serves_here_is_not_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = new_home(tmp_path)
    _with_url(home)
    assert _endpoint(home) is None
    err = capsys.readouterr().err
    assert OLD_LAPTOP in err
    assert "vrm agent serve" in err


def test_the_url_of_a_running_serve_is_told(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    _with_url(home)
    fd = os.open(home / SERVE_LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as `vrm agent serve` holds it
        assert _endpoint(home) == OLD_LAPTOP
    finally:
        os.close(fd)
