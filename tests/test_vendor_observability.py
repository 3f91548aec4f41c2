"""Issue 13, finding 4 and the metrics acceptance: a running vendor's log lines (stdlib
logging, human or JSON: timestamp, vendor, event, type, thread, sender, status, problem code,
latency; every refusal once, without a traceback), ``/metrics`` (Prometheus, off by default)
and ``/healthz`` / ``/readyz``.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _broken_vendor import make_endpoint
from _cli_helpers import ROOT, VENDOR_FILES, cli_env, vrm_command
from _logger_reset import logging_as_it_was  # noqa: F401 -- autouse
from _vendor_proc import Customer
from prometheus_client.parser import text_string_to_metric_families

from vrmproto._keys import Identity
from vrmproto._messages import MESSAGE_TYPES
from vrmproto.server import serve
from vrmproto.server._logging import configure_logging
from vrmproto.server._logwriter import flush_all
from vrmproto.server._metrics import Metrics
from vrmproto.server._observe import READY_READ_MIN_MS
from vrmproto.store import Commit, DeadLetter, MemoryStore
from vrmproto.testing import run_suite
from vrmproto.testing.store_contract import T1, event, outbox, rel

CONTENT_TYPE = "application/vnd.vrmproto+msgpack"
FAMILIES = {
    "vrm_requests": "counter",
    "vrm_request_seconds": "histogram",
    "vrm_problems": "counter",
    "vrm_store_commit_seconds": "histogram",
    "vrm_store_commit_records": "histogram",
    "vrm_relationships": "gauge",
    "vrm_outbox_depth": "gauge",
    "vrm_log_records_dropped": "counter",
}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging(vendor="Corner Shop", json_lines=True, stream=stream)
    yield stream
    logging.getLogger("vrmproto").removeHandler(handler)
    handler.close()  # writes what its thread still holds


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    flush_all()  # what the log writer's thread still holds
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_refusal_is_logged_once_with_its_fields_and_no_traceback(
    captured: io.StringIO,
) -> None:
    """Finding 4: a refused request (HTTP 400) was not logged at all; lines had no timestamp
    and no vendor name."""
    server = await serve(make_endpoint(MemoryStore()))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/vrm/inbox", data=b"\x80",
                                 headers={"Content-Type": CONTENT_TYPE}) as r:
                assert r.status == 400
            async with http.get(f"{server.url}/nowhere") as r:
                assert r.status == 404
    finally:
        await server.close()
    refused = [line for line in _lines(captured) if line["event"] == "refused"]
    assert [(r["status"], r["problem"], r["path"]) for r in refused] == [
        (400, "malformed", "/vrm/inbox"), (404, "not_found", "/nowhere")]
    for line in refused:
        assert line["ts"].endswith("Z")
        assert line["vendor"] == "conformance test vendor"
        assert line["latency_ms"] >= 0
        assert line["client"] == "127.0.0.1"
        assert "traceback" not in line


def test_human_lines_carry_a_timestamp_and_the_vendor() -> None:
    stream = io.StringIO()
    handler = configure_logging(vendor="Corner Shop", stream=stream)
    try:
        logging.getLogger("vrmproto.server.requests").info("← terms.offer", extra={
            "event": "message"})  # fmt: skip
    finally:
        logging.getLogger("vrmproto").removeHandler(handler)
        handler.close()
    line = stream.getvalue()
    assert line.endswith("INFO [Corner Shop] ← terms.offer\n")
    assert line[:4].isdigit()
    assert "T" in line.split()[0]
    assert line.split()[0].endswith("Z")


async def test_metrics_are_off_by_default_and_health_answers() -> None:
    store = MemoryStore()
    endpoint = make_endpoint(store)
    now = [1_000_000]
    endpoint.clock = lambda: now[0]
    server = await serve(endpoint)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/metrics") as r:
                assert r.status == 404
            async with http.get(f"{server.url}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{server.url}/readyz") as r:
                assert r.status == 200
            await store.close()  # the store is gone: live, but not ready
            now[0] += READY_READ_MIN_MS  # once /readyz reads the store again
            async with http.get(f"{server.url}/readyz") as r:
                assert r.status == 503
                assert "store" in (await r.json())["reason"]
            async with http.get(f"{server.url}/healthz") as r:
                assert r.status == 200
    finally:
        await server.close()


async def test_readyz_names_the_kind_of_failure_and_logs_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """/readyz may be on the public port: a store's error text (its host, path or user) goes to
    the log, once per kind of failure, and the answer names only the kind."""

    class Down(MemoryStore):
        async def get_meta(self, key: str) -> bytes | None:
            raise ConnectionRefusedError("db-7.internal.example:5432 user=vendor_admin")

    server = await serve(make_endpoint(Down()))
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.get(f"{server.url}/readyz") as r:
                    assert r.status == 503
                    answer = await r.json()
                assert answer == {"status": "unavailable",
                                  "reason": "store: ConnectionRefusedError"}  # fmt: skip
    finally:
        await server.close()
    told = [r.getMessage() for r in caplog.records if "not ready" in r.getMessage()]
    assert len(told) == 1
    assert "db-7.internal.example:5432" in told[0]


class _Served:
    """``vrm vendor serve --json …`` with its stdout read by a thread (lines into a queue)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*vrm_command(), "vendor", "serve", "--json", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=cli_env(None), cwd=ROOT)  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.lines.get(timeout=60)
        assert first is not None, self.proc.stderr.read() if self.proc.stderr else ""
        self.info = json.loads(first)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def stop(self) -> list[dict[str, Any]]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        out = []
        while (line := self.lines.get(timeout=10)) is not None:
            out.append(json.loads(line))
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return out


async def test_vendor_serve_metrics_after_a_conformance_run(tmp_path: Path) -> None:
    """Acceptance: ``vrm vendor serve --config … --metrics`` exposes ``/metrics`` in the
    Prometheus text format with the issue's families, checked by parsing it after a run of the
    suite (the quick cases); every refusal the run drew is logged once."""
    vendor = _Served("--config", str(VENDOR_FILES / "avis.toml"), "--data-dir",
                     str(tmp_path / "avis"), "--no-advertise", "--metrics")  # fmt: skip
    try:
        url = vendor.info["url"]
        assert vendor.info["event"] == "listening"
        assert vendor.info["metrics"] == f"{url}/metrics"
        await run_suite(url, seed=1_767_225_600, skip=("slow", "RATE-*"))
        async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    finally:
        lines = vendor.stop()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in FAMILIES.items():
        assert families[name].type == kind, name
    samples = {name: f.samples for name, f in families.items()}
    by_status: dict[str, float] = {}
    for s in samples["vrm_requests"]:
        if s.name == "vrm_requests_total":
            by_status[s.labels["status"]] = by_status.get(s.labels["status"], 0) + s.value
    assert by_status.get("200", 0) > 0
    assert by_status.get("400", 0) > 0
    kinds = {s.labels["type"] for s in samples["vrm_requests"] if s.name == "vrm_requests_total"}
    assert kinds <= {*MESSAGE_TYPES, "", "other"}  # claims add no series of their own
    assert any(s.value > 0 for s in samples["vrm_problems"] if s.name == "vrm_problems_total")
    assert any(s.value > 0 for s in samples["vrm_store_commit_seconds"]
               if s.name == "vrm_store_commit_seconds_count")  # fmt: skip
    assert any(s.value > 0 for s in samples["vrm_relationships"])
    refusals = sum(v for status, v in by_status.items() if int(status) >= 400)
    logged = [line for line in lines if line.get("event") in ("refused", "failed")]
    assert len(logged) == refusals
    assert all("traceback" not in line for line in logged)
    messages = [line for line in lines if line.get("event") == "message"]
    assert messages
    assert all({"ts", "vendor", "kind", "thread", "sender", "status", "latency_ms"}
                            <= line.keys() for line in messages)


async def test_metrics_on_a_listener_of_their_own(tmp_path: Path) -> None:
    """``--metrics-port``: ``/metrics`` answers on its own listener, and only there (the main
    port serves the protocol and the health probes, not the metrics)."""
    vendor = _Served("--config", str(VENDOR_FILES / "avis.toml"), "--data-dir",
                     str(tmp_path / "avis"), "--no-advertise", "--metrics-port", "0")  # fmt: skip
    try:
        url, metrics_url = vendor.info["url"], vendor.info["metrics"]
        assert metrics_url.endswith("/metrics")
        assert not metrics_url.startswith(url + "/")  # another port
        async with aiohttp.ClientSession() as http:
            async with http.get(metrics_url) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain")
                text = await r.text()
            async with http.get(f"{url}/metrics") as r:
                assert r.status == 404
            async with http.get(f"{url}/healthz") as r:
                assert r.status == 200
    finally:
        vendor.stop()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert {name: families.get(name) for name in FAMILIES} == FAMILIES


async def test_the_outbox_depth_gauge_counts_what_waits_in_the_outbox() -> None:
    """``vrm_outbox_depth`` reads the store: the messages waiting, not yet delivered."""
    store = MemoryStore()
    await store.commit(Commit(relationships=(rel(T1),), outbox_add=(
        outbox("https://a.example", 0), outbox("https://b.example", 1))))  # fmt: skip
    metrics = Metrics()

    def depth(text: str) -> float:
        (family,) = (f for f in text_string_to_metric_families(text)
                     if f.name == "vrm_outbox_depth")  # fmt: skip
        return float(family.samples[0].value)

    await metrics.refresh(store)
    assert depth(metrics.text().decode()) == 2
    (first, _) = await store.outbox_all()
    await store.commit(Commit(outbox_done=(first.item_id,)))
    await metrics.refresh(store)
    assert depth(metrics.text().decode()) == 1


async def test_the_feed_gauges_tell_how_far_each_webhook_is_behind() -> None:
    """``vrm_feed_head``, ``vrm_webhook_behind`` and ``vrm_webhook_dead_letters``: read from the
    store per scrape, for the webhooks the runner names."""
    store = MemoryStore()
    await store.commit(Commit(events=tuple(event(T1, n) for n in range(5))))
    head = (await store.events())[-1].pos
    await store.commit(Commit(event_cursors=(("crm", head - 3),),
                              dead_letters=(DeadLetter("crm", head - 4, 1, "HTTP 400"),)))
    metrics = Metrics()
    metrics.webhooks = ("crm", "bi")
    await metrics.refresh(store)
    samples = {(s.name, s.labels.get("webhook")): s.value
               for f in text_string_to_metric_families(metrics.text().decode())
               for s in f.samples}  # fmt: skip
    assert samples[("vrm_feed_head", None)] == head
    assert samples[("vrm_webhook_behind", "crm")] == 3
    assert samples[("vrm_webhook_behind", "bi")] == head  # never delivered: all of it
    assert samples[("vrm_webhook_dead_letters", "crm")] == 1
    assert samples[("vrm_webhook_dead_letters", "bi")] == 0


async def test_vendor_serve_names_its_webhooks_to_the_feed_gauges(tmp_path: Path) -> None:
    """``vrm vendor serve`` with a ``[[webhooks]]`` receiver that is down: after an accepted
    terms.offer (two events), ``/metrics`` shows the receiver two events behind."""
    avis = (VENDOR_FILES / "avis.toml").read_text("utf-8")
    config = tmp_path / "vendor.toml"
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    config.write_text(avis + f'\n[[webhooks]]\nname = "crm"\nurl = "http://127.0.0.1:9/hook"\n'
                      f'secret = "{secret}"\n', "utf-8")  # fmt: skip
    seed = bytes.fromhex(avis.split('seed = "')[1].split('"')[0])
    vendor = _Served("--config", str(config), "--data-dir", str(tmp_path / "data"),
                     "--no-advertise", "--metrics")  # fmt: skip
    try:
        url = vendor.info["url"]
        async with aiohttp.ClientSession() as http:
            await Customer(Identity(seed), base_url=url).agree(http, "vrm.no-tracking")
            async with http.get(f"{url}/metrics") as r:
                text = await r.text()
    finally:
        vendor.stop()
    samples = {(s.name, s.labels.get("webhook")): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip
    assert samples[("vrm_webhook_behind", "crm")] == 2
    assert samples[("vrm_feed_head", None)] == 2


def test_a_claimed_type_the_protocol_does_not_define_counts_as_other() -> None:
    """The ``type`` label is what a sender claims before anything is verified: each made-up
    type would be a series of its own, kept for the life of the process."""
    metrics = Metrics()
    for n in range(50):
        metrics.observe("inbox", f"made.up.{n}", 400, 0.001, "unknown_type")
    metrics.observe("inbox", "data.share", 200, 0.001, None)
    metrics.observe("discovery", None, 200, 0.001, None)
    counts = {s.labels["type"]: s.value for f in text_string_to_metric_families(
        metrics.text().decode()) if f.name == "vrm_requests" for s in f.samples
        if s.name == "vrm_requests_total"}  # fmt: skip
    assert counts == {"other": 50, "data.share": 1, "": 1}
