"""``vrm ui`` as a person starts it: one line says where (with the token), SIGTERM stops it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests._cli_helpers import ROOT, cli_env, vrm, vrm_command


def test_vrm_ui_prints_its_address_and_serves_only_with_the_token(tmp_path: Path) -> None:
    assert vrm("init", home=tmp_path).code == 0
    proc = subprocess.Popen([*vrm_command(), "ui", "--no-browser", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(tmp_path), cwd=ROOT)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        url = line["url"]
        assert line["event"] == "listening"
        assert url.startswith(f"http://127.0.0.1:{line['port']}/t/")
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
            assert "Your relationships" in r.read().decode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{line['port']}/", timeout=10)
        refused.value.close()
        assert refused.value.code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_vrm_ui_on_a_taken_port_says_so(tmp_path: Path) -> None:
    assert vrm("init", home=tmp_path).code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = vrm("ui", "--no-browser", "--port", str(port), home=tmp_path)
    assert result.code == 2, result
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
