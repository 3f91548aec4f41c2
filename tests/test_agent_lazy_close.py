"""The agent's lazy close (issue #12; :mod:`vrmproto.client._sending`, ``Sender._close``): the
Commit that records a confirmed delivery does not wait for its fsync when it queues nothing and
truncates nothing — and only then. A lost lazy close is a lost response: the agent delivers the
same stored bytes again and the vendor answers with its stored receipt (§5.6.1-4, §12.6-2,
§12.7-3)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_client import FakeVendor, ServerVendor

from vrmproto import Problem
from vrmproto.client import Agent, PeerProblemError, RetryPolicy
from vrmproto.client._sending import may_close_lazily
from vrmproto.store import Commit, MemoryStore, SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
YEAR_MS = 365 * 86_400_000


def clock() -> int:
    return time.time_ns() // 1_000_000


class Writes:
    """Every Commit an inline SQLiteStore writes, with whether its caller waited for the fsync."""

    def __init__(self, store: SQLiteStore) -> None:
        self.seen: list[tuple[Commit, bool]] = []
        write = store._write

        async def spy(apply: Any, commit: Any = None, expect: Any = None, **kw: Any) -> Any:
            if commit is not None:
                self.seen.append((commit, kw.get("durable", True)))
            return await write(apply, commit, expect, **kw)

        store._write = spy  # type: ignore[method-assign]  # store.commit itself stays as it is

    def take(self) -> list[tuple[Commit, bool]]:
        seen, self.seen = self.seen, []
        return seen


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Agent, SQLiteStore, FakeVendor]]:
    vendor = FakeVendor("Acme")
    await vendor.start()
    store = await SQLiteStore.open(tmp_path / "agent.db", inline=True)
    agent = await Agent.open(store, os.urandom(32), retry=RetryPolicy(attempts=1))
    try:
        yield agent, store, vendor
    finally:
        await agent.close()
        await store.close()
        await vendor.stop()


async def share(agent: Agent, vendor: FakeVendor) -> Any:
    return await agent.share(vendor.url, {"email": "a@b.c"}, purposes=["delivery"],
                             categories=["contact"], expires_ms=clock() + YEAR_MS)


async def test_a_confirmed_share_is_closed_without_waiting_for_its_fsync(
    setup: tuple[Agent, SQLiteStore, FakeVendor],
) -> None:
    agent, store, vendor = setup
    await agent.connect(vendor.url)
    writes = Writes(store)
    d = await share(agent, vendor)
    assert d.confirmed
    (persist, p_durable), (close, c_durable) = writes.take()
    assert persist.outbox_add
    assert p_durable
    assert close.outbox_done
    assert not close.outbox_add
    assert not close.truncate
    assert not c_durable
    assert store._horizon.durable < store._horizon.committed  # it really did not wait
    d = await share(agent, vendor)  # the next share's first Commit covers it
    assert d.confirmed
    assert [durable for _, durable in writes.take()] == [True, False]
    assert await agent.compare_history(d.thread) is None


async def test_a_close_that_queues_our_receipt_for_replies_waits(
    setup: tuple[Agent, SQLiteStore, FakeVendor],
) -> None:
    """A terms.offer answered with terms.accept: the close queues our receipt for the reply,
    which goes on the wire next, so it is durable; the receipt's own close (answered 204,
    nothing queued) is not."""
    agent, store, vendor = setup
    writes = Writes(store)
    c = await agent.connect(vendor.url)
    assert c.status == "accepted"
    flags = [(bool(w.outbox_add), bool(w.outbox_done), durable) for w, durable in writes.take()
             if w.outbox_add or w.outbox_done]  # fmt: skip
    assert flags == [(True, False, True), (True, True, True), (False, True, False)]


async def test_a_refused_share_rolled_back_is_closed_durably(
    setup: tuple[Agent, SQLiteStore, FakeVendor],
) -> None:
    agent, store, vendor = setup
    await agent.connect(vendor.url)
    writes = Writes(store)
    vendor.refuse_next = Problem.NO_AGREEMENT
    with pytest.raises(PeerProblemError):
        await share(agent, vendor)
    (_, p_durable), (close, c_durable) = writes.take()
    assert close.truncate  # the refused share is taken back out of our chain (§8.1-5)
    assert p_durable
    assert c_durable
    assert store._horizon.durable == store._horizon.committed


async def test_a_store_whose_commit_was_replaced_sees_every_commit_as_usual() -> None:
    plain = MemoryStore()
    assert may_close_lazily(plain) is plain
    spied = MemoryStore()
    seen: list[Commit] = []
    inner = spied.commit

    async def spy(c: Commit) -> None:  # takes no durable=
        seen.append(c)
        await inner(c)

    spied.commit = spy  # type: ignore[method-assign]
    assert may_close_lazily(spied) is None
    vendor = FakeVendor("Acme")
    await vendor.start()
    agent = await Agent.open(spied, os.urandom(32))
    try:
        await agent.connect(vendor.url)
        before = len(seen)
        assert (await share(agent, vendor)).confirmed
        assert len(seen) == before + 2  # the persist and the close, both through the spy
    finally:
        await agent.close()
        await vendor.stop()


# -- a crash right after a lazily closed share ------------------------------------------------

_SHARE_AND_DIE = textwrap.dedent("""
    import asyncio, os, shutil, signal, sys, time
    from vrmproto.client import Agent, EndpointClient
    from vrmproto.store import SQLiteStore

    db, seed, url, snap = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[4]

    class SnapshotBeforeSending(EndpointClient):
        # What a power loss may leave: everything up to the last fsync, which the Commit
        # that stored the share (durable, before the wire) was; nothing has been written since.
        async def post_envelope(self, *args, **kwargs):
            for suffix in ("", "-wal"):
                shutil.copyfile(db + suffix, snap + suffix)
            return await super().post_envelope(*args, **kwargs)

    async def main() -> None:
        store = await SQLiteStore.open(db, inline=True)
        agent = await Agent.open(store, seed, client=SnapshotBeforeSending())
        d = await agent.share(url, {"email": "a@b.c"}, purposes=["delivery"],
                              categories=["contact"], expires_ms=int(time.time() * 1000) + 10**10)
        lazy = store._horizon.durable < store._horizon.committed
        print(d.status, d.msg_hash.hex(), "lazy" if lazy else "durable", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # right after the lazily closed share

    asyncio.run(main())
""")


async def test_kill_9_after_a_lazy_close_and_a_power_loss_before_it_agree(tmp_path: Path) -> None:
    """The share's process is killed right after its lazy close. As kill -9 left the store,
    the share is confirmed; as a power loss may have left it (the last fsync: the share
    stored, its close not), the share is still in the outbox and is delivered again, the
    same bytes: the vendor answers with its stored receipt and applies nothing twice. Both
    end with the same history as the vendor's — never another message at that place."""
    vendor = ServerVendor("Acme")
    await vendor.start()
    seed = os.urandom(32)
    db, snap = tmp_path / "agent.db", tmp_path / "lost.db"
    try:
        async with await SQLiteStore.open(db) as store:
            agent = await Agent.open(store, seed)
            thread = (await agent.connect(vendor.url)).thread
            await agent.close()

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _SHARE_AND_DIE, str(db), seed.hex(), vendor.url, str(snap),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == -signal.SIGKILL, err.decode()
        status, share_hash, how = out.decode().split()
        assert (status, how) == ("confirmed", "lazy")
        assert len(await vendor.heard("data.share")) == 1

        async with await SQLiteStore.open(db, inline=True) as store:  # as kill -9 left it
            agent = await Agent.open(store, seed)
            assert await agent.pending() == []
            (note,) = await agent.share_notes()
            assert note.status == "confirmed"
            assert await agent.compare_history(thread) is None
            kept = [h.envelope for h in await store.history(thread)]
            await agent.close()

        async with await SQLiteStore.open(snap, inline=True) as store:  # as a power loss may
            agent = await Agent.open(store, seed)
            (item,) = await agent.pending()
            assert item.msg_hash.hex() == share_hash  # the same stored bytes, unconfirmed
            run = await agent.run_outbox(now=clock() + 3_600_000)
            assert run.counts()["confirmed"] == 1
            assert await agent.pending() == []
            # (its note stays "queued": a share re-delivered by another process than the one
            # that signed it does not update its note — so after any crash before the close)
            assert await agent.compare_history(thread) is None
            assert [h.envelope for h in await store.history(thread)] == kept  # its receipt too
            await agent.close()
        assert len(await vendor.heard("data.share")) == 1  # applied once (§12.6-2)
    finally:
        await vendor.stop()
