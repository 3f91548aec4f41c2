"""``--timeout`` bounds the whole wait of every command that sends, retries included.

Before: only ``vrm connect`` had ``--timeout``; ``vrm share`` (and withdraw, data, end, rotate,
intent accept) to a vendor that accepts the connection and never answers waited ~21 s — the
10 s request timeout, twice (``CLI_RETRY``) — and ``Agent.share`` had no way to say how long.
Now ``timeout_s`` of the agent's sending calls bounds every request and retry of the delivery
(the outbox cuts short only requests, never a Commit), the message stays queued in the outbox
when the time runs out, and the CLI says so.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_client import FakeVendor, now_ms

from tests._cli_helpers import fails, new_home, ok, vendor_host, vrm
from vrmproto.cli._cmd_connect import connect_json
from vrmproto.client import Agent, ConnectResult, Delivery, RetryPolicy, Unreachable
from vrmproto.store import MemoryStore

FIELDS = {"email": "ada@example.org"}


@pytest.fixture
async def silent() -> AsyncIterator[FakeVendor]:
    """A vendor whose inbox, once ``hold`` is set, takes requests and never answers."""
    v = FakeVendor("Acme")
    await v.start()
    yield v
    if v.hold is not None:
        v.hold.set()  # let the held handlers end before the server stops
    await v.stop()


async def test_share_timeout_bounds_the_whole_wait_retries_included(silent: FakeVendor) -> None:
    # 10 s a request, three tries: ~30 s without a bound on the whole
    agent = await Agent.open(MemoryStore(), os.urandom(32), timeout_s=10.0,
                             retry=RetryPolicy(attempts=3, base_s=0.0, cap_s=0.0))
    try:
        thread = (await agent.connect(silent.url)).thread
        silent.hold = asyncio.Event()
        started = time.monotonic()
        d = await agent.share(thread, FIELDS, purposes=["delivery"], categories=["contact"],
                              expires_ms=now_ms() + 86_400_000, timeout_s=0.3)
        elapsed = time.monotonic() - started
        assert d.status == "queued"
        assert "timed out" in str(d.error)
        assert elapsed < 2.0, elapsed
        assert [w.msg_id for w in await agent.waiting()] == [d.msg_id]  # kept, to go later
    finally:
        await agent.close()


async def test_end_and_connect_take_a_timeout_too(silent: FakeVendor) -> None:
    agent = await Agent.open(MemoryStore(), os.urandom(32), timeout_s=10.0,
                             retry=RetryPolicy(attempts=3, base_s=0.0, cap_s=0.0))
    try:
        silent.hold = asyncio.Event()
        started = time.monotonic()
        first = await agent.connect(silent.url, timeout_s=0.3)  # the document, then the offer
        assert first.status == "queued"
        ended = await agent.end(first.thread, timeout_s=0.3)
        assert ended.status == "queued"
        assert time.monotonic() - started < 3.0
    finally:
        await agent.close()


def test_vrm_share_timeout_leaves_it_queued_and_says_so(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    with vendor_host("outfitters") as host:
        v = host["outfitters"]
        ok(vrm("connect", v.url, home=home))
        host.stop("outfitters")
    # the vendor's port now takes connections and never answers
    with socket.socket() as quiet:
        quiet.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its port, just closed
        quiet.bind(("127.0.0.1", v.port))
        quiet.listen(16)
        started = time.monotonic()
        # queued: exit 3 (the s17 contract; it was 0, as if delivered)
        r = fails(vrm("share", "Wasatch Outfitters", "email=doc@example.org", "--timeout", "0.5",
                      home=home), 3, "waits in the outbox")  # fmt: skip
        elapsed = time.monotonic() - started
        assert elapsed < 8, elapsed  # ~21 s before: two tries of 10 s
        said = " ".join(r.stdout.split())
        assert "did not answer within 0.5 s (--timeout)" in said, r
        assert "stays in the outbox" in said, r
        rows = ok(vrm("outbox", "--json", home=home)).json["pending"]
        assert [row["type"] for row in rows] == ["data.share"]
        started = time.monotonic()
        fails(vrm("connect", "Wasatch Outfitters", "--timeout", "0.3", home=home), 4,
              "did not answer in time")  # nothing kept: 4 (the s17 contract; it was 1)
        assert time.monotonic() - started < 5


def test_connect_json_says_why_a_queued_offer_waits() -> None:
    d = Delivery(os.urandom(16), os.urandom(16), os.urandom(32), "queued", type="terms.offer",
                 error=Unreachable("POST http://x/vrm/inbox: timed out"))
    result = ConnectResult(d.thread, "Acme", "http://x", "queued", (), delivery=d)
    said = connect_json(result)
    assert (said["status"], said["held"]) == ("queued", False)
    assert said["error"] == "POST http://x/vrm/inbox: timed out"
    assert connect_json(replace(result, status="pending"))["error"] is None
