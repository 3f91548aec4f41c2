"""A person's week with ``vrm`` (session 20): ^C while a share waits for a vendor that does not
answer. The share was already in the outbox (stored before it is sent, §8.1-2) and went later
by itself; vrm said "aborted." and exited 1 ("refused or failed: run again, same answer"), and
with ``--json`` printed nothing on stdout. A script that ran it again shared twice. It now says
the message waits, exit 3 (queued), and the JSON error object says so too.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests._cli_helpers import VendorHost, connected, hosted, ok, vrm, vrm_process

vendors = hosted("outfitters")


async def _interrupted_share(home: Path, port: int) -> tuple[int, bytes]:
    """``vrm --json share`` to a vendor whose port accepts and never answers, ^C once its
    request has arrived: the exit code and stdout."""
    silent = socket.create_server(("127.0.0.1", port), reuse_port=False)
    silent.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        async with vrm_process("--json", "share", "Wasatch Outfitters", "email=doc@example.org",
                               "--purpose", "contracted-service", home=home) as proc:
            conn, _ = await asyncio.wait_for(loop.sock_accept(silent), 30)
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:  # the POST is here: the share was stored first
                    head += await asyncio.wait_for(loop.sock_recv(conn, 65536), 30)
                assert head.startswith(b"POST "), head
                proc.send_signal(signal.SIGINT)
                assert proc.stdout is not None
                out = await asyncio.wait_for(proc.stdout.read(), 30)
                return await proc.wait(), out
    finally:
        silent.close()


def test_a_share_cut_short_by_ctrl_c_says_it_waits_in_the_outbox(
    tmp_path: Path, vendors: VendorHost
) -> None:
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # every vrm run here inherits it
        pytest.skip("the suite runs with SIGINT ignored (started in the background by a "
                    "non-interactive shell): a vrm it starts ignores ^C too, so ^C cannot be "
                    "shown (the share would wait out its timeout)")
    url = vendors["outfitters"].url
    home = connected(tmp_path, url)
    port = urlsplit(url).port
    assert port is not None
    vendors.stop("outfitters")
    try:
        code, out = asyncio.run(_interrupted_share(home, port))
    finally:
        vendors.start("outfitters")
    said = json.loads(out)  # was empty
    assert code == 3, said  # was 1
    assert said["outcome"] == "queued", said
    if isinstance(said["error"], dict):  # the ^C reached the command while it waited
        assert said["error"]["kind"] == "interrupted", said
        assert "1 message(s) this command queued wait in the outbox" in said["error"]["message"]
    else:  # (a loaded machine: the attempt ended first, as a queued delivery, with its error)
        assert said["error"], said
    ran = ok(vrm("outbox", "run", "--json", home=home)).json  # as it said: it goes by itself
    assert [d["status"] for d in ran["deliveries"]] == ["confirmed"], ran

