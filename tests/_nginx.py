"""A real nginx in front of a vendor, for the deployment tests (issue 13).

nginx (the Debian package; ``.ci/run`` installs it) runs as this process's user, in the
foreground, with a prefix, configuration and temporary directories of its own under a test's
``tmp_path``, on a loopback port; nothing of the system's nginx is used. Where the binary is
absent the tests using it are skipped with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _ports import free_port

__all__ = ["NGINX", "free_port", "nginx_in_front"]

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)

_CONF = """
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    # the deadlines of spec §10.1 are the proxy's to keep now
    client_header_timeout 10s;
    client_body_timeout 10s;
    keepalive_timeout 15s;
    send_timeout 10s;  # a client that reads nothing (§10.1-7, CONN-004); the default is 60 s
    large_client_header_buffers 4 8k;
    server {{
        listen 127.0.0.1:{port};
        location {location} {{
            proxy_pass http://127.0.0.1:{upstream}{upstream_path};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Forwarded "";  # a client's own would win (§12.13-1)
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_intercept_errors off;
        }}
    }}
}}
"""



async def _until_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """nginx says nothing when it listens: try to connect, for at most 10 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited ({proc.returncode}); see {log}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.02)  # an external process: no event to await
            continue
        writer.close()
        await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def nginx_in_front(tmp_path: Path, upstream: int, *, location: str = "/",
                         upstream_path: str = "", port: int | None = None,
                         ) -> AsyncIterator[str]:  # fmt: skip
    """nginx proxying ``location`` to ``127.0.0.1:upstream`` + ``upstream_path``; yields its
    base URL (``http://127.0.0.1:PORT``)."""
    if NGINX is None:
        pytest.skip("nginx is not installed (Debian package nginx; .ci/run installs it)")
    as_root = os.geteuid() == 0
    # As root, nginx runs as nobody, in a directory of its own that nobody may write.
    d = Path(tempfile.mkdtemp(prefix="vrm-nginx-")) if as_root else tmp_path / "nginx"
    d.mkdir(exist_ok=True)
    user = pwd.getpwnam("nobody") if as_root else None
    if user is not None:
        os.chown(d, user.pw_uid, user.pw_gid)
    port = port or free_port()
    conf = d / "nginx.conf"
    conf.write_text(_CONF.format(d=d, port=port, upstream=upstream, location=location,
                                 upstream_path=upstream_path))  # fmt: skip
    proc = subprocess.Popen(  # noqa: ASYNC220 -- started once, waited for by connecting
        [NGINX, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        user=None if user is None else user.pw_uid, group=None if user is None else user.pw_gid,
        extra_groups=[] if user is not None else None,
    )  # fmt: skip
    try:
        await _until_listening(port, proc, d / "error.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if as_root:
            shutil.rmtree(d, ignore_errors=True)
