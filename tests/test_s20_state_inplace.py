"""A relationship's stored state keeps its length and its shares' places from one message to the
next, so a store overwrites the row in place (issue #12, ``growth``; :meth:`Relationship.to_state`).

With every live share inside the state, sorted by hash, each message moved the bytes after the
new share, and SQLite wrote every page of the row again (with the overflow chain freed and
allocated anew): seven WAL frames a message at 256 shares, 23 at 1,000. The stored form keeps
fixed-width entries in their places inside a room with spare capacity, after a head with room of
its own: a message changes the head and an entry, the row keeps its length, and SQLite writes
only the pages whose bytes changed (``btreeOverwriteCell``).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from vrmproto import _records
from vrmproto._keys import Identity
from vrmproto._relationship import SHARE_ENTRY, Relationship
from vrmproto._state import Role, State
from vrmproto.store import Commit, SQLiteStore

YEAR_2027 = 1_800_000_000_000


def relationship(shares: int, rng: random.Random) -> Relationship:
    rel = Relationship(role=Role.VENDOR, identity=Identity(bytes(32)), thread=rng.randbytes(16),
                       peer_key=rng.randbytes(32), peer_enc_key=bytes(32))  # fmt: skip
    rel.state = State.AGREED
    for i in range(shares):
        rel.shares[rng.randbytes(32)] = YEAR_2027 + i
    return rel


def a_message(rel: Relationship, rng: random.Random, i: int) -> None:
    """What a data.share changes: both heads, a receipt owed or awaited, one share more."""
    rel.our_head, rel.peer_head = rng.randbytes(32), rng.randbytes(32)
    if i % 2:
        rel.awaiting_receipt.add(rng.randbytes(32))
    else:
        rel.awaiting_receipt.clear()
    rel.shares[rng.randbytes(32)] = YEAR_2027 + i


def test_an_older_state_reads_and_is_written_in_the_stored_form() -> None:
    rel = relationship(40, random.Random(1))
    older = rel.to_state(compact=True)  # the form every earlier release wrote
    assert older[:3] == b"\xde\x00\x14"  # a map of 20 entries
    again = Relationship.from_state(older, identity=rel.identity)
    assert again.shares == rel.shares
    assert again.to_state(compact=True) == older
    assert again.to_state()[:1] == b"\x93"  # the stored form from the next write on


def test_a_message_changes_the_head_and_one_entry_only() -> None:
    rng = random.Random(2)
    rel = relationship(200, rng)
    before = rel.to_state()
    same_length = 0
    for i in range(100):
        a_message(rel, rng, i)
        after = rel.to_state()
        if len(after) != len(before):  # the room grew: now and then, not every message
            before = after
            continue
        same_length += 1
        room = 1 + rel._head_room  # the array header, the head and its filler
        changed = [j for j in range(room, len(after), SHARE_ENTRY)
                   if after[j : j + SHARE_ENTRY] != before[j : j + SHARE_ENTRY]]  # fmt: skip
        assert len(changed) <= 2, i  # (an entry may straddle two of these windows)
        before = after
    assert same_length >= 90


def wal_frames(wal: Path) -> int:
    """The frames of the WAL's current generation (their salts are the header's)."""
    data = wal.read_bytes()
    if len(data) < 32:
        return 0
    page_size = struct.unpack(">I", data[8:12])[0]
    salts = data[16:24]
    n, at = 0, 32
    while at + 24 + page_size <= len(data) and data[at + 8 : at + 16] == salts:
        n, at = n + 1, at + 24 + page_size
    return n


@pytest.mark.parametrize("shares", [256, 1000])
async def test_sqlite_writes_a_page_or_two_per_message_whatever_the_shares(
    tmp_path: Path, shares: int
) -> None:
    rng = random.Random(shares)
    store = await SQLiteStore.open(tmp_path / "vendor.db")
    try:
        rel = relationship(shares, rng)
        now = 1_700_000_000_000
        await store.commit(Commit(relationships=(
            _records.to_record(rel, label="", peer_url="", now=now),)))  # fmt: skip
        wal = tmp_path / "vendor.db-wal"
        frames = []
        for i in range(20):
            a_message(rel, rng, i)
            start = wal_frames(wal)
            await store.commit(Commit(relationships=(
                _records.to_record(rel, label="", peer_url="", now=now + i + 1),)))  # fmt: skip
            frames.append(wal_frames(wal) - start)
            assert frames[-1] > 0  # (a checkpoint restarting the WAL would make this moot)
    finally:
        await store.close()
    # the leaf with the head, the overflow page of the new entry; a third now and then
    assert sum(frames) <= 3 * len(frames), frames
