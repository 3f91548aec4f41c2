"""The shared records layer (:mod:`vrmproto._records`): a relationship to its store records and
back, and the save point both nodes keep for §8.1-5."""

from __future__ import annotations

import ast
from pathlib import Path

from vrmproto import _records
from vrmproto._history import GENESIS
from vrmproto._state import Role
from vrmproto._vocab import DataRecord
from vrmproto.store import Commit, MemoryStore, SavePoint
from vrmproto.testing.pair import CustomerVendorPair

ROOT = Path(__file__).resolve().parents[1]


def agreed_pair() -> CustomerVendorPair:
    pair = CustomerVendorPair()
    pair.agree()
    return pair


async def test_a_relationship_stored_and_loaded_is_the_same_relationship() -> None:
    pair = agreed_pair()
    for role in (Role.CUSTOMER, Role.VENDOR):
        rel = pair.side(role)
        store = MemoryStore()
        record = _records.to_record(rel, label="Avis", peer_url="https://avis.example", now=5)
        assert (record.role, record.state, record.updated_ms) == (role.value, "agreed", 5)
        assert record.local_key == rel.identity.public_key
        await store.commit(Commit(relationships=(record,), history=_records.history_rows(rel, 5)))
        head = await store.history_head(rel.thread)
        loaded = _records.load(record, head, identity=rel.identity, limits=rel.limits)
        assert loaded.to_state() == rel.to_state()
        assert (len(loaded.history), loaded.history.head) == (len(rel.history), rel.history.head)
        assert loaded.role is role
        assert loaded.state is rel.state
        # every stored row maps back to the engine's entry
        rows = await store.history(rel.thread)
        assert [_records.to_entry(h) for h in rows] == list(rel.history.entries())
        assert [_records.to_row(rel.thread, e, 5) for e in rel.history.entries()] == rows


def test_a_relationship_without_history_loads_empty() -> None:
    pair = CustomerVendorPair()
    record = _records.to_record(pair.customer, label="x", peer_url="", now=1)
    loaded = _records.load(record, None, identity=pair.customer_identity)
    assert (len(loaded.history), loaded.history.head) == (0, GENESIS)
    override = _records.to_record(pair.customer, label="x", peer_url="", now=1, state=b"given")
    assert override.data == b"given"


def test_a_save_point_restores_the_relationship_before_the_message() -> None:
    """§8.1-5: a message the peer finally refuses never joined the relationship."""
    pair = agreed_pair()
    rel = pair.customer
    before = (rel.to_state(), len(rel.history), rel.history.head)
    point = _records.capture(rel)
    sent = pair.sign(Role.CUSTOMER, pair.share({"name": "Ann"}))  # signed, not delivered
    assert rel.to_state() != before[0]
    (saved,) = _records.guard(point, [sent.message.hash], after=len(rel.history))
    assert saved == SavePoint(rel.thread, sent.message.hash, before[1], before[2], before[0],
                              before[1] + 1)  # fmt: skip
    restored = _records.restore(saved, identity=rel.identity, limits=rel.limits)
    assert (restored.to_state(), len(restored.history), restored.history.head) == before
    assert _records.still_applies(saved, before[1] + 1)
    assert not _records.still_applies(saved, before[1] + 2)
    assert _records.restore(point, identity=rel.identity).to_state() == before[0]


def test_guard_gives_one_row_per_message_sent_from_the_point() -> None:
    pair = agreed_pair()
    point = _records.capture(pair.vendor)
    rows = _records.guard(point, [b"\x01" * 32, b"\x02" * 32], after=point.length + 3)
    assert [r.msg_hash for r in rows] == [b"\x01" * 32, b"\x02" * 32]
    assert {(r.length, r.head, r.state, r.after) for r in rows} == {
        (point.length, point.head, point.state, point.length + 3)
    }


def test_the_records_layer_is_sans_io() -> None:
    """No event loop, database, socket, clock or randomness in :mod:`vrmproto._records`."""
    tree = ast.parse((ROOT / "vrmproto" / "_records.py").read_text())
    forbidden = {"asyncio", "aiohttp", "sqlite3", "socket", "time", "random", "secrets"}
    for node in ast.walk(tree):
        names = (
            [a.name for a in node.names] if isinstance(node, ast.Import)
            else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        )  # fmt: skip
        assert not {n.split(".")[0] for n in names} & forbidden, ast.dump(node)


def test_held_rows_map_to_data_records_and_expire_with_their_share() -> None:
    record = DataRecord("email", "ada@example.org", 2, "provided", 1_000, (3, 1))
    row = _records.held_row(b"\x01" * 16, b"\x02" * 32, record, 5_000)
    assert (row.field, row.value, row.purposes, row.share, row.expires_ms) == (
        "email",
        "ada@example.org",
        (1, 3),
        b"\x02" * 32,
        5_000,
    )
    assert _records.data_record(row) == record
    assert _records.is_live(row, 4_999)
    assert not _records.is_live(row, 5_000)  # expired at its expiry, as held_expired counts
    assert _records.is_live(_records.held_row(b"\x01" * 16, b"\x03" * 32, record, None), 10**15)
