"""``vrm agent serve`` stopped by SIGTERM at any moment after it wrote its URL into the
settings clears it again (seen by s18-signals): the handler was installed only after the URL
was written, so a SIGTERM in between ended the process by the default action and left a stale
``agent_url``, which every later ``vrm`` command then gave vendors as this agent's endpoint.

Deterministic: the program sends itself SIGTERM right after the settings are written."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests._cli_helpers import ROOT, cli_env, new_home

PROGRAM = textwrap.dedent("""
    import os, signal, sys
    from vrmproto.cli import _home, main

    write = _home.Home.write_settings

    def write_then_stop(self, settings):
        write(self, settings)
        if settings.extra.get("agent_url"):
            os.kill(os.getpid(), signal.SIGTERM)

    _home.Home.write_settings = write_then_stop
    main(["agent", "serve", "--port", "0", "--json"])
""")


def test_a_sigterm_just_after_the_url_is_written_still_clears_it(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    proc = subprocess.run([sys.executable, "-c", PROGRAM], env=cli_env(home), cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    settings = json.loads((home / "settings.json").read_text())
    assert "agent_url" not in settings, settings  # (extra settings are top-level keys)
    assert '"event": "stopped"' in proc.stdout, proc.stdout
