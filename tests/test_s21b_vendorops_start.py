"""Session 21b: what ``vrm vendor serve`` says when it cannot start — a TLS file that is not
there, a worker that fails — names the file and is logged as the failure it is.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from _cli_helpers import fails, vrm

BASE = ('name = "Corner Shop"\n'
        'seed = "eef7010a19794491b6779e2795788d233186a0c4a13fbb27846f000390d0ded5"\n')  # fmt: skip
#: Nothing listens on port 1: a worker's store fails at once (connection refused).
NO_DATABASE = 'store = "postgresql://vrm@127.0.0.1:1/vrm"\n'


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "v.toml"
    path.write_text(BASE + text, "utf-8")
    return str(path)


def test_a_missing_tls_file_is_named(tmp_path: Path) -> None:
    """Before: ``cannot load the TLS certificate or key: [Errno 2] No such file or directory``
    — which of the two, and where (relative to the vendor file), it did not say."""
    (tmp_path / "cert.pem").write_text("not a certificate\n", "utf-8")
    config = _config(tmp_path, '[server]\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n')
    fails(vrm("vendor", "serve", "--config", config, "--memory", "--no-advertise",
              home=tmp_path / "home"), 2, "server.tls_key", str(tmp_path / "key.pem"))  # fmt: skip
    (tmp_path / "key.pem").write_text("not a key either\n", "utf-8")
    fails(vrm("vendor", "serve", "--config", config, "--memory", "--no-advertise",
              home=tmp_path / "home"), 2, str(tmp_path / "cert.pem"))  # fmt: skip


def test_with_workers_a_missing_tls_file_is_a_config_error_before_forking(tmp_path: Path) -> None:
    """Before: each worker found it, the supervisor stopped with exit 1 and one INFO line."""
    config = _config(tmp_path, NO_DATABASE + '[server]\nworkers = 2\ntls_cert = "c.pem"\n'
                     'tls_key = "k.pem"\n')  # fmt: skip
    r = fails(vrm("vendor", "serve", "--config", config, "--no-advertise", "--json",
                  home=tmp_path / "home"), 2, "server.tls_cert", "c.pem")  # fmt: skip
    assert "worker" not in r.stdout, r


def test_a_worker_that_fails_to_start_is_logged_as_an_error(tmp_path: Path) -> None:
    """The line that says why the service stopped was an INFO one, hidden by a level filter."""
    config = _config(tmp_path, NO_DATABASE + "[server]\nworkers = 2\n")
    r = vrm("vendor", "serve", "--config", config, "--no-advertise", "--json",
            home=tmp_path / "home")  # fmt: skip
    assert r.code == 1, r
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    failed = [x for x in lines if x["event"] == "worker_failed"]
    assert failed, r
    assert failed[0]["level"] == "error", failed
    assert "cannot open the store" in failed[0]["message"], failed


def test_a_metrics_port_in_use_is_named_as_the_metrics_listener(tmp_path: Path) -> None:
    """Before: ``vrm: error while attempting to bind on address ('127.0.0.1', N): address
    already in use.`` — which of the vendor's two listeners, it did not say."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _config(tmp_path, f"[metrics]\nenabled = true\nport = {port}\n")
        fails(vrm("vendor", "serve", "--config", config, "--memory", "--no-advertise",
                  home=tmp_path / "home"), 2, "/metrics", "metrics.port", f":{port}")  # fmt: skip
