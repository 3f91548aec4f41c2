"""The event feed's cost: messages accepted per second with and without the feed, and events
delivered per second to a local webhook receiver, in one run (issue 14).

Each of ``--n`` customers posts one prebuilt terms.offer to the reference vendor (SQLiteStore in
a temp dir, the reference policy accepting: two events per message, the offer's and the
accept's). Three server modes, alternated for ``--rounds`` rounds each, the server in a subprocess
(this file with ``--serve``) and the client in this process, as in ``bench/inbox.py``:

- ``nofeed``: the accept step writes no events (``events_of`` replaced by one returning none):
  the engine as it was before the feed;
- ``events``: events written in each message's Commit, no webhook (the feed's write cost
  alone: ``events_cost``);
- ``feed``: events written in each message's Commit, and a webhook delivering them (CloudEvents
  JSON, Standard Webhooks signature) to a receiver on 127.0.0.1 — the vendor configured as a
  user would (one ``[[webhooks]]`` url and secret, everything else default). The receiver runs
  in a process of its own (this file with ``--receive``), as a CRM's would: in the load
  generator's process it would slow the load generator down, not the vendor (``--receiver
  inline`` puts it there, as this bench first did). ``--batched``: the webhook in batched mode
  (one POST per batch of events, docs/events.md).

The receiver (``--receiver-kind``): what is measured is what the feed costs the VENDOR, but on a
2-core machine the receiver shares the cores with the vendor and the load generator, where a
CRM's receiver would run on the CRM's machines. So by default it is ``lean``: a receiver as
small as a real one can be (:class:`LeanReceiver`: each request parsed, its signature verified,
its events counted, 204 answered), ~35 µs of CPU per event. ``aiohttp``: an aiohttp web app
(~130-210 µs per event), as this bench used until it had this choice; its CPU, two events per
accepted message, is a third of the vendor's own per message, so its figure says as much about
the receiver as about the feed.

Figures: ``accepted_msgs_per_s`` per mode (median of the rounds), ``feed_cost`` = 1 - feed /
nofeed (the issue asks for at most 0.15), ``events_cost`` the same for ``events``, and
``events_per_s``: events delivered and acknowledged per second, from the first post until the
receiver has them all. On a 2-core machine the vendor, the load generator and the receiver
share the two cores, so throughput mixes the vendor's cost with theirs: ``vendor_cpu_us`` (the
vendor process's CPU per message, its deliveries included, from /proc) and ``feed_cpu_cost`` =
1 - nofeed / feed of it say what the feed costs the vendor alone; ``receiver_cpu_us`` is the
receiver process's CPU per event (from when it listened).

``--delivery`` measures delivery alone (see :func:`delivery`): ``deliverer_cpu_us_per_event``
against ``post_cpu_us_per_event``, the same POSTs sent bare in the same run, and their ratio.

Every process runs on the event loop ``vrm vendor serve`` picks (``--loop auto``: uvloop where
``vrmproto[speed]`` is installed), so the figures are those of what vendors run.

Prints human lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inbox import LIMITS, TERMS, VENDOR_SEED, announce_and_wait, build_offers, run_client

from vrmproto import Identity, _loop
from vrmproto.server import Endpoint, ReferencePolicy, serve
from vrmproto.server import _accept as accept_step
from vrmproto.server._webhook_http import Poster
from vrmproto.server._webhooks import Deliverer, Webhook, parse_secret, running
from vrmproto.store import Commit, EventRecord, SQLiteStore

#: --loop: what each process runs on (the vendor's is what users get from ``vrm vendor``).
LOOPS = {"auto": None, "asyncio": False, "uvloop": True}
SECRET = "whsec_" + base64.b64encode(b"bench-secret-bench-secret").decode()


async def serve_vendor(db: str, mode: str, hook_url: str, batched: bool = False) -> None:
    if mode == "nofeed":
        accept_step.events_of = lambda *args: ()  # type: ignore[assignment]
    store = await SQLiteStore.open(Path(db) / "vendor.db")
    policy = ReferencePolicy(accepts_terms=TERMS)
    endpoint = Endpoint(Identity(VENDOR_SEED), store=store, limits=LIMITS, policy=policy,
                        name="bench vendor")  # fmt: skip
    hooks = [] if mode != "feed" else [
        Webhook("bench", hook_url, parse_secret(SECRET), "https://bench.example/vrm",
                batched=batched)
    ]  # fmt: skip
    server = await serve(endpoint)
    async with running(endpoint, hooks):
        await announce_and_wait(server.port)
    await server.close()
    await store.close()


KEY = parse_secret(SECRET)


def check(webhook_id: bytes, timestamp: bytes, body: bytes, signature: bytes) -> None:
    """Verify a POST's Standard Webhooks signature (HMAC-SHA256 of ``id.timestamp.body``,
    compared in constant time); a wrong one stops the bench."""
    mac = hmac.new(KEY, b"%s.%s.%s" % (webhook_id, timestamp, body), hashlib.sha256)
    assert hmac.compare_digest(b"v1," + base64.b64encode(mac.digest()), signature), "bad signature"


class Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.want = 0
        self.done = asyncio.Event()
        self.last = 0.0

    async def start(self) -> tuple[web.AppRunner, str]:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            h = request.headers
            check(h["webhook-id"].encode(), h["webhook-timestamp"].encode(), body,
                  h["webhook-signature"].encode())  # fmt: skip
            batch = request.content_type == "application/cloudevents-batch+json"
            self.count += len(json.loads(body)) if batch else 1
            if self.want and self.count >= self.want:
                self.last = time.monotonic()
                self.done.set()
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


class LeanReceiver(asyncio.Protocol):
    """``--receiver-kind lean``: a webhook receiver as small as a real one can be, so that on a
    2-core machine it takes as little as possible of the CPU the vendor and the load generator
    share (a CRM's receiver runs on the CRM's machines, not the vendor's). Per request: the
    head parsed (Content-Length, Content-Type, the three ``webhook-*`` fields), the body read,
    its Standard Webhooks signature verified (HMAC-SHA256, compared in constant time: a wrong
    one stops the bench), the events counted, ``204`` answered; kept alive, pipelining
    tolerated, the answers to one read written at once."""

    count = 0
    want = 0
    done: asyncio.Event
    last = 0.0

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        answers = 0
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            fields = {}
            for line in buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                fields[name.strip().lower()] = value.strip()
            length = int(fields[b"content-length"])
            if len(buf) < end + 4 + length:
                break
            body = buf[end + 4:end + 4 + length]
            buf = buf[end + 4 + length:]
            check(fields[b"webhook-id"], fields[b"webhook-timestamp"], body,
                  fields[b"webhook-signature"])  # fmt: skip
            batch = fields.get(b"content-type") == b"application/cloudevents-batch+json"
            LeanReceiver.count += len(json.loads(body)) if batch else 1
            answers += 1
        self.buf = buf
        if answers:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n" * answers)
        if self.want and LeanReceiver.count >= self.want and not self.done.is_set():
            LeanReceiver.last = time.monotonic()
            self.done.set()


async def serve_receiver(want: int, kind: str = "lean") -> None:
    """``--receive``: the receiver in a process of its own; prints its URL, then the monotonic
    time (system-wide on Linux) at which it had ``want`` events; runs until stdin closes."""
    if kind == "lean":
        LeanReceiver.want = want
        LeanReceiver.done = asyncio.Event()
        server = await asyncio.get_running_loop().create_server(LeanReceiver, "127.0.0.1", 0)
        print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook", flush=True)
        start = time.process_time()
        await LeanReceiver.done.wait()
        print(LeanReceiver.last, time.process_time() - start, flush=True)
        await announce_and_wait(0)
        server.close()
        return
    receiver = Receiver()
    receiver.want = want
    runner, url = await receiver.start()
    print(url, flush=True)
    start = time.process_time()
    await receiver.done.wait()
    print(receiver.last, time.process_time() - start, flush=True)
    await announce_and_wait(0)
    await runner.cleanup()


class ReceiverProcess:
    """A receiver in a process of its own (``--receiver process``): beside the vendor and the
    load generator, as a CRM's receiver would be; on 2 cores it still shares them."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self, want: int, loop: str = "auto", kind: str = "lean") -> str:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--receive", str(want), "--loop", loop,
            "--receiver-kind", kind,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.url = (await self.proc.stdout.readline()).decode().strip()
        return self.url

    async def done(self) -> tuple[float, float]:
        """The monotonic time at which it had every event, and the CPU seconds it spent
        receiving them (from when it listened: its start-up left out)."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        last, used = (await self.proc.stdout.readline()).split()
        return float(last), float(used)

    async def stop(self) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await asyncio.wait_for(self.proc.wait(), 30)


def cpu_s(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_round(mode: str, n: int, concurrency: int, where: str = "process", *,
                    loop: str = "auto", batched: bool = False, kind: str = "lean"
                    ) -> tuple[float, float | None, float, float | None]:  # fmt: skip
    """(accepted msgs/s, events/s delivered or None, the vendor's CPU µs per message — all its
    work included: accepting, and delivering the round's events —, the receiver's CPU µs per
    event or None) of one round. ``where``: the receiver in a ``process`` of its own, or
    ``inline`` in this one, beside the load generator."""
    feed = mode == "feed"
    inline = Receiver()
    apart = ReceiverProcess()
    runner = None
    if not feed:
        url = "http://127.0.0.1:9/unused"
    elif where == "inline":
        inline.want = 2 * n
        runner, url = await inline.start()
    else:
        url = await apart.start(2 * n, loop, kind)
    with tempfile.TemporaryDirectory() as db:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", mode, "--db", db, "--hook", url, "--loop", loop,
            *(["--batched"] if batched else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            port = int(await proc.stdout.readline())
            offers = build_offers(n)
            start = time.monotonic()
            elapsed, _ = await run_client([f"http://127.0.0.1:{port}/vrm/inbox"], offers,
                                          concurrency, check_ack=True)  # fmt: skip
            events = receiver_us = None
            if feed and where == "inline":
                await asyncio.wait_for(inline.done.wait(), 120)
                events = inline.count / (inline.last - start)
            elif feed:
                last, used = await asyncio.wait_for(apart.done(), 120)
                events = 2 * n / (last - start)
                receiver_us = used * 1e6 / (2 * n)
            cpu_us = cpu_s(proc.pid) * 1e6 / n
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), 30)
    if runner is not None:
        await runner.cleanup()
    elif feed:
        await apart.stop()
    return n / elapsed, events, cpu_us, receiver_us


async def run(n: int, concurrency: int, rounds: int, where: str, *, loop: str = "auto",
              batched: bool = False, kind: str = "lean") -> dict[str, object]:  # fmt: skip
    rates: dict[str, list[float]] = {"nofeed": [], "events": [], "feed": []}
    cpu: dict[str, list[float]] = {"nofeed": [], "events": [], "feed": []}
    delivered: list[float] = []
    receiving: list[float] = []
    order = ("nofeed", "events", "feed")
    for r in range(rounds):
        for mode in order if r % 2 == 0 else order[::-1]:
            rate, events, cpu_us, receiver_us = await one_round(mode, n, concurrency, where,
                                                                loop=loop, batched=batched,
                                                                kind=kind)
            rates[mode].append(rate)
            cpu[mode].append(cpu_us)
            if events is not None:
                delivered.append(events)
            if receiver_us is not None:
                receiving.append(receiver_us)
            print(f"round {r + 1} {mode:>6}: {rate:8.0f} msgs/s accepted, vendor "
                  f"{cpu_us:6.0f} µs CPU/msg"
                  + (f", {events:8.0f} events/s delivered" if events else ""), flush=True)
    nofeed, with_events, feed = (statistics.median(rates[m]) for m in order)
    return {"n": n, "concurrency": concurrency, "rounds": rounds, "receiver": where,
            "receiver_kind": kind,
            "batched": batched, "loop": "uvloop" if _loop.loop_factory(LOOPS[loop]) else "asyncio",
            "accepted_msgs_per_s": {"nofeed": round(nofeed), "events": round(with_events),
                                    "feed": round(feed)},
            "feed_cost": round(1 - feed / nofeed, 3),
            "events_cost": round(1 - with_events / nofeed, 3),
            "vendor_cpu_us": {m: round(statistics.median(cpu[m])) for m in order},
            "feed_cpu_cost": round(1 - statistics.median(cpu["nofeed"])
                                   / statistics.median(cpu["feed"]), 3),
            "events_per_s": round(statistics.median(delivered)),
            "receiver_cpu_us": round(statistics.median(receiving)) if receiving else None,
            }  # fmt: skip


async def delivery(n: int, rounds: int, loop: str, kind: str = "lean") -> dict[str, object]:
    """``--delivery``: what delivering costs the vendor per event, apart from accepting.
    ``2 n`` events (``n`` relationships, two each, as a round of the main run makes) are
    written first; then a :class:`Deliverer` delivers them all to the receiver process, and,
    as the baseline, the same number of prebuilt POSTs go to it through the deliverer's own
    client, 16 at a time as the deliverer sends them: the HTTP round trips alone. This
    process's CPU per event (its store threads included) for each, medians of ``rounds``."""
    hook_cpu: list[float] = []
    post_cpu: list[float] = []
    data = b'{"body":{"terms":[{"id":"vrm.no-tracking","version":1}]},"from":"customer",' \
           b'"type":"terms.offer"}'  # fmt: skip
    for _ in range(rounds):
        events = []
        for _ in range(n):
            thread = os.urandom(16)
            for seq in (0, 1):
                digest = os.urandom(32)
                events.append(EventRecord("evt_" + digest.hex(), thread, seq, "terms.offered",
                                          digest, int(time.time() * 1000), data, None))
        with tempfile.TemporaryDirectory() as db:
            store = await SQLiteStore.open(Path(db) / "vendor.db")
            for i in range(0, len(events), 500):
                await store.commit(Commit(events=tuple(events[i:i + 500])))
            apart = ReceiverProcess()
            url = await apart.start(2 * len(events), loop, kind)
            hook = Webhook("bench", url, parse_secret(SECRET), "https://bench.example/vrm")
            async with Deliverer(hook, store) as deliverer:
                start = process_cpu_s()
                while await deliverer.step():
                    pass
                hook_cpu.append((process_cpu_s() - start) * 1e6 / len(events))
                assert deliverer.delivered == len(events)
                body = deliverer.renderer.body(events[0], 0)
                lines = deliverer.renderer.signature(events[0].id, 0, body)
                start = process_cpu_s()
                await post_all(deliverer.poster, lines, body, len(events), hook.parallel)
                post_cpu.append((process_cpu_s() - start) * 1e6 / len(events))
            await asyncio.wait_for(apart.done(), 120)
            await apart.stop()
            await store.close()
        print(f"deliverer {hook_cpu[-1]:5.1f} µs CPU/event, the POSTs alone {post_cpu[-1]:5.1f}",
              flush=True)
    hook_us, post_us = statistics.median(hook_cpu), statistics.median(post_cpu)
    return {"events": 2 * n, "rounds": rounds,
            "loop": "uvloop" if _loop.loop_factory(LOOPS[loop]) else "asyncio",
            "deliverer_cpu_us_per_event": round(hook_us, 1),
            "post_cpu_us_per_event": round(post_us, 1),
            "delivery_to_post_ratio": round(hook_us / post_us, 2)}  # fmt: skip


async def post_all(poster: Poster, lines: bytes, body: bytes, count: int, parallel: int) -> None:
    """POST ``body`` ``count`` times, ``parallel`` at once, each acknowledged."""
    left = count

    async def sender() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await poster.post(lines, body)
            assert 200 <= status < 300, status

    await asyncio.gather(*(sender() for _ in range(parallel)))


def process_cpu_s() -> float:
    """CPU time of this process, every thread."""
    return time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="messages (customers) per round")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", choices=["nofeed", "events", "feed"], help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--receiver", choices=["process", "inline"], default="process",
                        help="the webhook receiver in a process of its own (default), or in "
                             "the load generator's")  # fmt: skip
    parser.add_argument("--loop", choices=tuple(LOOPS), default="auto",
                        help="event loop of every process: auto (as the vrm runners pick: "
                             "uvloop where installed), asyncio or uvloop")  # fmt: skip
    parser.add_argument("--batched", action="store_true",
                        help="the webhook in batched mode (one POST per batch of events)")
    parser.add_argument("--delivery", action="store_true",
                        help="measure delivery alone: the deliverer's CPU per event against "
                             "the same POSTs sent bare")  # fmt: skip
    parser.add_argument("--receiver-kind", choices=["lean", "aiohttp"], default="lean",
                        help="the receiver: a minimal asyncio one (default), or an aiohttp web "
                             "app; signatures verified either way")  # fmt: skip
    parser.add_argument("--hook", help=argparse.SUPPRESS)
    parser.add_argument("--receive", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    fast = LOOPS[args.loop]
    if args.serve:
        _loop.run(serve_vendor(args.db, args.serve, args.hook, args.batched), fast=fast)
        return
    if args.receive:
        _loop.run(serve_receiver(args.receive, args.receiver_kind), fast=fast)
        return
    if args.delivery:
        print(json.dumps(_loop.run(delivery(args.n, args.rounds, args.loop, args.receiver_kind),
                                   fast=fast)))  # fmt: skip
        return
    report = _loop.run(run(args.n, args.concurrency, args.rounds, args.receiver,
                           loop=args.loop, batched=args.batched, kind=args.receiver_kind),
                       fast=fast)  # fmt: skip
    print(f"feed cost: {report['feed_cost']:.1%} of accepted msgs/s (events alone: "
          f"{report['events_cost']:.1%}); "
          f"events delivered: {report['events_per_s']}/s")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
