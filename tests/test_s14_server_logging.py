"""Log lines go through a bounded queue to a writer thread (vrmproto/server/_logwriter.py): a log
stream that stops reading never stalls the vendor; what does not fit is dropped and counted;
a normal run writes every line; a forked worker writes with a writer of its own."""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import aiohttp
from _cli_helpers import ROOT, VENDOR_FILES, cli_env, vrm_command
from _logger_reset import logging_as_it_was  # noqa: F401 - an autouse fixture
from prometheus_client.parser import text_string_to_metric_families

from vrmproto._binding import CONTENT_TYPE, DEFAULT_INBOX_PATH
from vrmproto.server._logging import configure_logging
from vrmproto.server._logwriter import QueuedLines, flush_all

LOG = logging.getLogger("vrmproto.server.s14test")
_F_SETPIPE_SZ = 1031  # Linux: a pipe's capacity (fcntl.F_SETPIPE_SZ from Python 3.10 on Linux)


class _Stalled(io.StringIO):
    """A stream whose writes wait until :attr:`reads` is set (a pager paused, a full pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = threading.Event()
        self.writing = threading.Event()  # set once a write waits

    def write(self, text: str) -> int:
        self.writing.set()
        self.reads.wait()
        return super().write(text)


def test_a_normal_run_writes_every_line_in_order_tracebacks_too() -> None:
    stream = io.StringIO()
    handler = configure_logging(vendor="Corner Shop", stream=stream)
    try:
        for i in range(5000):
            LOG.info("line %d", i)
        try:
            raise ValueError("boom")
        except ValueError:
            LOG.exception("failed")
    finally:
        logging.getLogger("vrmproto").removeHandler(handler)
        handler.close()
    assert isinstance(handler, QueuedLines)
    assert handler.dropped == 0
    lines = stream.getvalue().splitlines()
    assert [line.split(" INFO [Corner Shop] ")[1] for line in lines[:5000]] == [
        f"line {i}" for i in range(5000)]  # fmt: skip
    assert lines[5000].endswith("ERROR [Corner Shop] failed")
    assert lines[-1] == "ValueError: boom"


def test_a_stream_that_does_not_read_drops_and_counts_never_waits() -> None:
    stream = _Stalled()
    handler = QueuedLines(stream, queue_size=4)
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOG.addHandler(handler)
    try:
        LOG.warning("first")  # taken by the writer, which then waits on the stream
        assert stream.writing.wait(30)
        for i in range(100):  # each returns at once: 4 wait in the queue, the rest dropped
            LOG.warning("more %d", i)
        assert handler.dropped == 96
    finally:
        LOG.removeHandler(handler)
        stream.reads.set()  # the stream reads again
        handler.close()
    lines = stream.getvalue().splitlines()
    assert lines == ["first", "more 0", "more 1", "more 2", "more 3",
                     "96 log records dropped: the log stream was not reading (queue of 4)"]


def test_a_forked_worker_writes_with_a_writer_of_its_own() -> None:
    """``--workers`` forks after logging is configured: the child starts a writer thread of
    its own (threads do not survive a fork), and drains it before it exits."""
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w")
    handler = configure_logging(vendor="V", json_lines=True, stream=stream)
    LOG.info("before")
    pid = os.fork()
    if pid == 0:  # the worker: what it logs is written by its own writer thread
        status = 1
        try:
            for i in range(200):
                LOG.info("child %d", i)
            flush_all()
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    LOG.info("after")
    logging.getLogger("vrmproto").removeHandler(handler)
    handler.close()
    stream.close()
    with os.fdopen(read_fd, "rb") as pipe:
        messages = [json.loads(line)["message"] for line in pipe.read().splitlines()]
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(messages, key=lambda m: m.startswith("child")) == [
        "before", "after", *(f"child {i}" for i in range(200))]  # fmt: skip


async def test_a_vendor_whose_log_pipe_nobody_reads_still_answers(tmp_path: Path) -> None:
    """The real use: ``vrm vendor serve`` with its stdout a pipe nobody reads (a paused pager,
    journald under load). It answers every request, counts what it could not log on
    ``/metrics``, and once the pipe is read again says so and writes the rest."""
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, _F_SETPIPE_SZ, 4096)  # the smallest pipe: a dozen lines fill it
    env = cli_env(None) | {"VRM_LOGGING_QUEUE_SIZE": "8"}
    with (tmp_path / "stderr").open("w") as err:
        proc = await asyncio.create_subprocess_exec(
            *vrm_command(), "vendor", "serve", "--json",
            "--config", str(VENDOR_FILES / "avis.toml"), "--memory", "--no-advertise",
            "--port", "0", "--metrics",
            stdout=write_fd, stderr=err, env=env, cwd=ROOT)  # fmt: skip
    os.close(write_fd)
    pipe = os.fdopen(read_fd, "rb")
    try:
        listening = json.loads(await asyncio.to_thread(pipe.readline))
        url = listening["url"]
        async with aiohttp.ClientSession() as http:
            for _ in range(120):  # each logs a refusal line: the pipe is full after a dozen
                post = http.post(url + DEFAULT_INBOX_PATH, data=b"\x80",
                                 headers={"Content-Type": CONTENT_TYPE})  # fmt: skip
                async with await asyncio.wait_for(post, 30) as r:
                    assert r.status == 400
            async with await asyncio.wait_for(http.get(f"{url}/metrics"), 30) as r:
                text = await r.text()
        counted = next(s.value for f in text_string_to_metric_families(text)
                       for s in f.samples if s.name == "vrm_log_records_dropped_total")  # fmt: skip
        assert counted >= 120 - 8 - 20  # the queue, and the lines the small pipe took
        lines: list[dict[str, Any]] = []
        while not any(line["event"] == "log_dropped" for line in lines):  # read again
            lines.append(json.loads(await asyncio.to_thread(pipe.readline)))
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.to_thread(pipe.read)
        pipe.close()
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0, (tmp_path / "stderr").read_text()
    lines += [json.loads(line) for line in rest.splitlines()]
    # every refusal was written, or dropped and counted: on /metrics and in a line
    notes = [line["dropped"] for line in lines if line["event"] == "log_dropped"]
    assert sum(notes) == counted
    assert sum(line["event"] == "refused" for line in lines) + counted == 120
    assert lines[-1]["event"] == "stopped"  # written at shutdown
