"""The fork server the CLI tests run ``vrm`` through (``tests/_forkserver.py``) gives what a fresh
``python -m vrmproto.cli`` gives: the same output and exit codes, its own process, environment
and standard input, and a run killed at its timeout; a script (the broken vendors of
``tests/_broken_vendor.py``) runs as ``python SCRIPT`` runs it; a run started from an event loop
has its own pid, pipes and, if asked, session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import _cli_helpers
from tests._cli_helpers import ROOT, VENDOR_FILES, VRM, VendorProcess, cli_env, new_home, vrm
from tests._forkserver import AsyncRun, needs_fresh


def fresh(*args: str, home: Path | None, stdin: str = "") -> tuple[int, str, str]:
    proc = subprocess.run([*VRM, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, env=cli_env(home), cwd=ROOT, check=False)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("relationships", "--json"),
        ("connect",),  # a usage error: exit 2, a sentence on stderr
        ("key", "import", "-"),  # reads a seed from stdin, refuses it: exit 2
    ],
)
def test_a_forked_run_answers_as_a_fresh_interpreter(args: tuple[str, ...], tmp_path: Path) -> None:
    home = new_home(tmp_path)
    forked = vrm(*args, home=home, stdin="not a seed\n")
    assert (forked.code, forked.stdout, forked.stderr) == fresh(*args, home=home,
                                                                 stdin="not a seed\n")


def test_each_run_is_its_own_process_with_its_own_environment(tmp_path: Path) -> None:
    """Two runs' homes never mix, and neither is the test's process or the server."""
    first, second = new_home(tmp_path / "1"), new_home(tmp_path / "2")  # two seeds
    one = vrm("key", "export", home=first)
    two = vrm("key", "export", home=second)
    assert one.code == two.code == 0
    assert one.stdout != two.stdout
    assert one.stdout == vrm("key", "export", home=first).stdout
    assert os.environ.get("VRM_HOME") is None


def test_a_run_past_its_timeout_is_killed(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(subprocess.TimeoutExpired):
            vrm("connect", url, "--timeout", "60", home=home, timeout=1)
    # the server still serves the next run
    assert vrm("--version", home=home).code == 0


def test_the_server_is_used_unless_asked_not_to() -> None:
    if os.environ.get("VRM_TEST_CLI") == "subprocess":
        pytest.skip("VRM_TEST_CLI=subprocess: every run is a fresh interpreter")
    vrm("--version", home=None)
    server = _cli_helpers._fork_server()
    assert server.proc.poll() is None


def test_a_run_whose_start_up_environment_differs_gets_a_fresh_interpreter() -> None:
    """aiohttp reads SSL_CERT_FILE when it is imported; the interpreter reads PYTHON* and the
    locale when it starts: a forked run would keep the server's."""
    base = {"HOME": "/h", "VRM_HOME": "/a", "PYTHONUTF8": "1", "PATH": "/bin"}
    assert not needs_fresh({**base, "VRM_HOME": "/b", "COLUMNS": "80"}, base)
    assert needs_fresh({**base, "SSL_CERT_FILE": "/ca.pem"}, base)
    assert needs_fresh({**base, "PYTHONWARNINGS": "ignore"}, base)
    assert needs_fresh({k: v for k, v in base.items() if k != "PYTHONUTF8"}, base)
    assert needs_fresh({**base, "LC_ALL": "C"}, base)


def test_a_popen_run_streams_and_passes_signals_on(tmp_path: Path) -> None:
    """`vrm vendor serve` through the fork client: its first line arrives while it runs, and
    SIGTERM reaches it (it exits 0, as on SIGTERM from a person's shell)."""
    vendor = VendorProcess("--config", str(VENDOR_FILES / "avis.toml"), "--memory", "--port", "0",
                           "--no-advertise", home=tmp_path)  # fmt: skip
    assert vendor.info["event"] == "listening"
    assert vendor.url.startswith("http://127.0.0.1:")
    code, _ = vendor.stop()
    assert code == 0


SCRIPT = """\
import os, sys
print(__name__, sys.argv, sys.path[0], os.getcwd(), os.environ.get("WHO"))
sys.exit(int(sys.argv[1]))
"""


def test_a_script_runs_as_python_runs_it(tmp_path: Path) -> None:
    """``SCRIPT ARGS`` (as ``tests/_broken_vendor.py MODE`` is run): ``__main__``, its argv, its
    folder first on ``sys.path``, the run's cwd and environment, its exit code."""
    script = tmp_path / "lib" / "script.py"
    script.parent.mkdir()
    script.write_text(SCRIPT)
    env = {**cli_env(), "WHO": "me"}
    argv = [str(script), "3", "é"]
    forked = _cli_helpers._fork_server().run(argv, env=env, cwd=tmp_path, stdin="", timeout=60)
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60, check=False)  # fmt: skip
    assert forked == (proc.returncode, proc.stdout, proc.stderr)
    assert forked[0] == 3
    assert f"__main__ ['{script}', '3', 'é'] {script.parent} {tmp_path} me" in forked[1]


SESSION = """\
import os, sys
print(os.getpid(), os.getpgid(0), os.getsid(0), flush=True)
sys.stdin.read()
print("stdin closed", flush=True)
"""


async def test_an_async_run_has_its_own_pid_pipes_and_session(tmp_path: Path) -> None:
    """What ``tests/test_workers.py`` and ``tests/_broken_vendor.Vendors`` rely on: the pid is
    the run's (signals and process groups reach it, not a client's), in a session of its own
    if asked; its stdout streams; closing its stdin ends it, a signal's death is ``-N``."""
    script = tmp_path / "session.py"
    script.write_text(SESSION)
    server = _cli_helpers._fork_server()
    async with await AsyncRun.start(server, [str(script)], env=cli_env(), cwd=tmp_path,
                                    stdin=True, session=True) as run:  # fmt: skip
        pid, group, session = map(int, (await run.stdout.readline()).split())
        assert pid == group == session == run.pid != os.getsid(0)
        run.close_stdin()
        assert await run.stdout.readline() == b"stdin closed\n"
        assert await run.wait() == 0
        assert run.returncode == 0
    async with await AsyncRun.start(server, [str(script)], env=cli_env(), cwd=tmp_path,
                                    stdin=True) as run:  # fmt: skip
        pid, group, session = map(int, (await run.stdout.readline()).split())
        assert pid == run.pid
        assert session == os.getsid(0) != pid
        run.send_signal(signal.SIGTERM)
        assert await run.wait() == -signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(run.pid, 0)  # reaped
