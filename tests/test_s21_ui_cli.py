"""``vrm ui`` as a person starts it, on a computer other people use too."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests._cli_helpers import ROOT, cli_env, vrm, vrm_command


@pytest.mark.parametrize("relative", [False, True])
def test_the_browser_is_not_given_the_token_on_its_command_line(tmp_path: Path,
                                                                relative: bool) -> None:
    """Before: ``vrm ui`` started the browser with the page's address, token and all, as an
    argument: any other user of the computer could read it in the process list (``ps``,
    ``/proc/PID/cmdline``) and, 127.0.0.1 being theirs too, use the page. Now the browser is
    given a file only the person can read that sends it on to the address (as Jupyter does);
    the file is removed when ``vrm ui`` stops."""
    home = tmp_path / "home"
    assert vrm("init", home=home).code == 0
    browser = tmp_path / "browser"  # says what it was given on vrm's stdout, which it shares
    browser.write_text('#!/bin/sh\nprintf "browser: %s\\n" "$1"\n')
    browser.chmod(0o700)
    where = ["--data-dir", os.path.relpath(home, ROOT)] if relative else []  # (cwd: ROOT)
    proc = subprocess.Popen([*vrm_command(), "ui", "--json", *where], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=cli_env(home) | {"BROWSER": f"{browser} %s"})  # fmt: skip
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        token = url.rstrip("/").rsplit("/", 1)[1]
        said = proc.stdout.readline()  # (EOF, "", if vrm ui ended first)
        assert said.startswith("browser: "), said
        argument = said.removeprefix("browser: ").rstrip("\n")
        assert token not in argument
        opened = Path(unquote(urlsplit(argument).path))
        assert urlsplit(argument).scheme == "file"
        assert stat.S_IMODE(opened.stat().st_mode) == 0o600
        assert f'content="0;url={url}"' in opened.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not opened.exists()
