"""The agent's inbound endpoint (§12.11) while the person's own messages are on their way
(session 22)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_client import FakeVendor, now_ms

from vrmproto import MasterSeed, RelationshipEnd, open_envelope
from vrmproto.cli._cmd_serve import _catch_up_printer, _delivery_printer
from vrmproto.cli._output import Out
from vrmproto.client import (
    CustomerNode,
    Delivery,
    EndpointClient,
    Reconciliation,
    RetryPolicy,
    Unreachable,
    _inbound,
)
from vrmproto.client._inbound import InboundEndpoint
from vrmproto.client._node import CatchUp
from vrmproto.client._paths import endpoint_path
from vrmproto.store import MemoryStore, SQLiteStore


@dataclass
class Setup:
    seed: MasterSeed
    vendor: FakeVendor
    node: CustomerNode
    client: EndpointClient
    thread: bytes
    inbox: str


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    seed = MasterSeed(os.urandom(32))
    vendor = FakeVendor("Acme")
    await vendor.start()
    node = await CustomerNode.open(MemoryStore(), seed, retry=RetryPolicy(attempts=1))
    client = EndpointClient(retry=RetryPolicy(attempts=1))
    try:
        thread = (await node.agent.connect(vendor.url)).thread
        server = await node.listen()
        doc = await client.fetch_discovery(server.url + endpoint_path(seed, thread),
                                           role="customer")  # fmt: skip
        yield Setup(seed, vendor, node, client, thread, doc.inbox)
    finally:
        await client.close()
        await node.close()
        await vendor.stop()


async def test_a_vendor_ending_the_relationship_while_a_share_waits_is_not_forgotten(
    setup: Setup,
) -> None:
    """The vendor ends the relationship through the agent endpoint while the person's share
    waits in the outbox (the vendor was busy); the share, delivered next, is refused. The
    agent took the share back out of its history with everything logged after it — the
    vendor's signed ``relationship.end`` and our receipt for it, which the vendor holds — and
    the relationship read ``agreed`` again. A refusal drops a message only while nothing of
    the peer follows it (§8.1-6): the end and its receipt stay, the relationship is ended."""
    s = setup
    s.vendor.fail_next = [(503, {})]
    shared = await s.node.agent.share(s.thread, {"email": "doc@example.org"}, purposes=[1],
                                      categories=[1], expires_ms=now_ms() + 86_400_000)  # fmt: skip
    assert shared.status == "queued"
    end = s.vendor.threads[s.thread].send(RelationshipEnd(reason="closing"), now=now_ms(),
                                          msg_id=os.urandom(16))  # fmt: skip
    answer = await s.client.post_envelope(s.inbox, end.message.envelope)
    assert open_envelope(answer[0], now=now_ms()).type == "receipt"

    run = await s.node.agent.retry_waiting()
    assert [d.status for d in run.deliveries] == ["refused"]  # not allowed once ended

    hashes = [e.msg_hash for e in await s.node.agent.history(s.thread)]
    assert end.message.hash in hashes  # was taken out
    (view,) = await s.node.agent.relationships()
    assert view.state == "ended"  # was "agreed"
    assert await s.node.agent.waiting() == []


@contextlib.asynccontextmanager
async def _restored(tmp_path: Path) -> AsyncIterator[tuple[CustomerNode, FakeVendor, bytes,
                                                          list[int]]]:  # fmt: skip
    """A node on a store restored from a backup taken before a share the vendor holds; its
    vendor, the thread, and how far ahead the node's clock runs (ms, settable)."""
    seed = MasterSeed(os.urandom(32))
    db, backup = tmp_path / "agent.db", tmp_path / "backup.db"
    vendor = FakeVendor("Acme")
    await vendor.start()
    try:
        store = await SQLiteStore.open(db)
        node = await CustomerNode.open(store, seed, retry=RetryPolicy(attempts=1))
        thread = (await node.agent.connect(vendor.url)).thread
        await node.close()
        await store.close()
        shutil.copyfile(db, backup)  # the backup, before the share

        store = await SQLiteStore.open(db)
        node = await CustomerNode.open(store, seed, retry=RetryPolicy(attempts=1))
        shared = await node.agent.share(thread, {"email": "doc@example.org"}, purposes=[1],
                                        categories=[1], expires_ms=now_ms() + 86_400_000)
        assert shared.confirmed
        await node.close()
        await store.close()
        for path in (db, db.with_name("agent.db-wal"), db.with_name("agent.db-shm")):
            path.unlink(missing_ok=True)
        shutil.copyfile(backup, db)  # restored

        store = await SQLiteStore.open(db)
        ahead = [0]  # the retry is due in seconds: moved there, not waited for
        node = await CustomerNode.open(store, seed, retry=RetryPolicy(attempts=1),
                                       clock=lambda: now_ms() + ahead[0])  # fmt: skip
        try:
            yield node, vendor, thread, ahead
        finally:
            await node.close()
            await store.close()
    finally:
        await vendor.stop()


async def test_the_node_catches_up_when_the_vendor_says_its_chain_is_broken(
    tmp_path: Path,
) -> None:
    """A person restored their data directory from a backup taken before a share, and ``vrm
    agent serve`` delivered what the backup's outbox held: the vendor refused it
    ``chain_broken`` (it holds the share the backup lacks). The always-on node said
    "refused" and did nothing more: every later message of the relationship was refused the
    same way until the person ran ``vrm history --reconcile``. §12.8-2: a sender that does
    not know what the receiver holds fetches its history and reconciles (§8.3). Now the node
    does, at once, and says what it adopted."""
    async with _restored(tmp_path) as (node, vendor, thread, ahead):
        vendor.fail_next = [(503, {})]
        queued = await node.agent.share(thread, {"phone": "+1 555 0100"}, purposes=[1],
                                        categories=[1], expires_ms=now_ms() + 86_400_000)
        assert queued.status == "queued"
        ahead[0] = 60_000
        caught: list[CatchUp] = []
        outcome, _ = await node.round(on_catch_up=caught.append)
        assert [d.status for d in outcome.deliveries] == ["refused"]
        assert [(c.thread, c.result.kind if c.result else c.error) for c in caught] == [
            (thread, "adopted")]
        assert await node.agent.compare_history(thread) is None  # caught up
        again = await node.agent.share(thread, {"phone": "+1 555 0100"}, purposes=[1],
                                       categories=[1], expires_ms=now_ms() + 86_400_000)
        assert again.confirmed, again.error


def test_vrm_agent_serve_says_what_it_reconciled(capsys: pytest.CaptureFixture[str]) -> None:
    """``vrm agent serve`` prints each catch-up, a line for people and an event in JSON."""
    refused = Delivery(b"\x01" * 16, b"\x02" * 16, b"\x03" * 32, "refused")
    adopted = CatchUp(b"\x01" * 16, refused, result=Reconciliation(b"\x01" * 16, "adopted", 2))
    failed = CatchUp(b"\x01" * 16, refused, error=Unreachable("POST …: timed out"))
    for json_mode in (False, True):
        show = _catch_up_printer(Out(json_mode=json_mode))
        show(adopted)
        show(failed)
    lines = capsys.readouterr().out.splitlines()
    assert "took 2 entries your history lacked" in lines[0], lines
    assert "could not compare with the vendor's copy: POST …: timed out" in lines[1], lines
    said = [json.loads(line) for line in lines[2:]]
    assert [(s["event"], s["kind"], s["adopted"]) for s in said] == [
        ("reconciled", "adopted", 2), ("reconciled", "failed", 0)]


async def test_a_relationship_opened_meanwhile_is_found_after_the_clock_went_back(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint re-reads the relationships when a vendor names a path it does not know
    (one opened by another ``vrm`` meanwhile), at most every ``_REFRESH_EVERY_MS``, timed by
    the wall clock: once it was set back (an NTP step), no re-read happened until it caught
    up again, and the new relationship's vendor got ``not_found``."""
    s = setup
    clock = [now_ms()]
    monkeypatch.setattr(_inbound, "_now_ms", lambda: clock[0])
    monkeypatch.setattr(_inbound, "_REFRESH_EVERY_MS", 0)  # (no waiting in a test)
    await s.node.inbound.refresh()
    clock[0] -= 3_600_000  # set back an hour
    other = FakeVendor("Other")
    await other.start()
    try:
        thread = (await s.node.agent.connect(other.url)).thread  # (no round: not refreshed)
        base = s.inbox.split("/r/")[0]
        doc = await s.client.fetch_discovery(base + endpoint_path(s.seed, thread),
                                             role="customer")  # fmt: skip
        assert doc.inbox.endswith("/vrm/inbox")
    finally:
        await other.stop()


def test_vrm_agent_serve_names_a_delivery_by_the_id_the_outbox_commands_take(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``→ outbox: queued 3fa2…`` named the message by its hash, while ``vrm outbox`` lists
    and ``vrm outbox retry/drop ID`` take its id: the number a person copied from the
    agent's log was "no waiting message with id …". Now the line says the type and the id
    (and JSON has ``id`` beside ``message``)."""
    d = Delivery(b"\x01" * 16, bytes.fromhex("ab" * 16), bytes.fromhex("cd" * 32), "queued",
                 error=Unreachable("POST …: connection refused"), type="data.share")  # fmt: skip
    for json_mode in (False, True):
        _delivery_printer(Out(json_mode=json_mode))(d)
    human, machine = capsys.readouterr().out.splitlines()
    assert "data.share " + "ab" * 6 in human, human
    assert "cd" * 6 not in human, human
    said = json.loads(machine)
    assert (said["id"], said["message"], said["type"]) == ("ab" * 16, "cd" * 32, "data.share")


async def test_a_save_point_left_by_a_stop_does_not_take_the_vendors_end_back(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same, with the node stopped between logging the vendor's end and dropping the
    share's save point (two commits): the point is still there when the refusal comes. The
    rollback itself now sees that the vendor logged a message after ours (its head moved) and
    leaves the history as it is (§8.1-6)."""
    s = setup

    async def kept(self: Any, thread: bytes, head: Any) -> None:  # as if stopped before it
        return None

    monkeypatch.setattr(InboundEndpoint, "_moved_on", kept)
    s.vendor.fail_next = [(503, {})]
    shared = await s.node.agent.share(s.thread, {"email": "doc@example.org"}, purposes=[1],
                                      categories=[1], expires_ms=now_ms() + 86_400_000)  # fmt: skip
    assert shared.status == "queued"
    end = s.vendor.threads[s.thread].send(RelationshipEnd(reason="closing"), now=now_ms(),
                                          msg_id=os.urandom(16))  # fmt: skip
    await s.client.post_envelope(s.inbox, end.message.envelope)
    run = await s.node.agent.retry_waiting()
    assert [d.status for d in run.deliveries] == ["refused"]
    hashes = [e.msg_hash for e in await s.node.agent.history(s.thread)]
    assert end.message.hash in hashes  # was taken out with the share
    (view,) = await s.node.agent.relationships()
    assert view.state == "ended"
