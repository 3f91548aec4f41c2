"""``bench/events.py`` runs with tiny parameters and ends with its JSON line, with either
receiver; and its lean receiver is a real webhook receiver: it takes the deliverer's signed
POSTs (kept alive, several in one read) and refuses a wrong signature.

The figures themselves are not asserted (no timed assertions).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vrmproto.server._webhooks import Renderer, Webhook
from vrmproto.store import EventRecord

BENCH = Path(__file__).resolve().parent.parent / "bench" / "events.py"
sys.path.insert(0, str(BENCH.parent))

import events as bench  # noqa: E402 -- bench/ is not a package


@pytest.mark.parametrize("kind", ["lean", "aiohttp"])
def test_events_bench_runs_and_prints_its_json_line(kind: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--n", "20", "--rounds", "1",
                           "--receiver-kind", kind], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["receiver_kind"] == kind
    assert set(result["accepted_msgs_per_s"]) == {"nofeed", "events", "feed"}
    assert result["events_per_s"] > 0
    assert result["receiver_cpu_us"] is not None


def post(event: EventRecord, *, key: bytes = bench.KEY) -> bytes:
    hook = Webhook("bench", "http://127.0.0.1/hook", key, "https://bench.example/vrm")
    renderer = Renderer(hook)
    body = renderer.body(event, 1_700_000_000_000)
    return b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), renderer.signature(event.id, 1_700_000_000, body), body)


EVENTS = [EventRecord(f"evt_{i:064x}", b"t" * 16, i, "terms.offered", bytes(32), 1, b"{}", None)
          for i in range(3)]  # fmt: skip


async def test_the_lean_receiver_takes_signed_posts_and_refuses_a_wrong_signature() -> None:
    bench.LeanReceiver.count = 0
    bench.LeanReceiver.want = 3
    bench.LeanReceiver.done = asyncio.Event()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(bench.LeanReceiver, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1",
                                                   server.sockets[0].getsockname()[1])
    requests = b"".join(post(e) for e in EVENTS)
    writer.write(requests[:100])  # a head cut short, then the rest: two pipelined, in one read
    await writer.drain()
    writer.write(requests[100:])
    answers = b""
    while answers.count(b"204") < 3:
        answers += await reader.read(1000)
    assert answers == b"HTTP/1.1 204 No Content\r\n\r\n" * 3
    assert bench.LeanReceiver.done.is_set()
    writer.close()
    receiver = bench.LeanReceiver()
    with pytest.raises(AssertionError, match="bad signature"):
        receiver.data_received(post(EVENTS[0], key=b"another key, 16+ bytes"))
    server.close()
