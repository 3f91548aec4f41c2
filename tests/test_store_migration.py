"""Schema 2 → 3 on files written by vrmproto 25ceebf (``tests/data/v2``, made by
``scripts/make_v2_fixtures.py``): every relationship, history entry, outbox item, draft, save
point and held record is there afterwards, the v2 meta blobs are gone, and a migration that
fails leaves the v2 file as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from vrmproto import Identity, MasterSeed, _codec, _records
from vrmproto._history import verify_entries
from vrmproto.store import (
    Commit,
    HeldRecord,
    HistoryEntry,
    OutboxItem,
    RelationshipRecord,
    SavePoint,
    SQLiteStore,
    StoreError,
    ThreadKind,
    _migrate_v3,
)
from vrmproto.store._v2_files import intents_from_v2, share_notes_from_v2

V2 = Path(__file__).resolve().parent / "data" / "v2"


def copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copyfile(V2 / name, dst)
    dst.chmod(0o600)
    return dst


def raw(path: Path) -> dict[str, Any]:
    """What a v2 file holds, read with sqlite3 alone (not through the store)."""
    conn = sqlite3.connect(path)
    try:
        return {
            "version": conn.execute("PRAGMA user_version").fetchone()[0],
            "relationships": [RelationshipRecord(*r) for r in conn.execute(
                "SELECT thread, role, local_key, peer_key, state, data, label, peer_url, "
                "updated_ms FROM relationships ORDER BY thread")],
            "history": [HistoryEntry(*r) for r in conn.execute(
                "SELECT thread, idx, msg_hash, entry_hash, envelope, direction, recorded_ms "
                "FROM history ORDER BY thread, idx")],
            "outbox": [OutboxItem(*r) for r in conn.execute(
                "SELECT item_id, destination, thread, msg_hash, envelope, attempts, "
                "next_attempt_ms, last_error, created_ms FROM outbox ORDER BY item_id")],
            "meta": dict(conn.execute("SELECT key, value FROM meta")),
        }  # fmt: skip
    finally:
        conn.close()


def dump(path: Path) -> list[str]:
    """Schema and every row of a file, and its version: what "unchanged" compares."""
    conn = sqlite3.connect(path)
    try:
        return [str(conn.execute("PRAGMA user_version").fetchone()[0]), *conn.iterdump()]
    finally:
        conn.close()


def blobs(meta: dict[str, bytes], prefix: str) -> dict[bytes, bytes]:
    return {bytes.fromhex(k.removeprefix(prefix)): v for k, v in meta.items()
            if k.startswith(prefix)}  # fmt: skip


async def check_common(store: SQLiteStore, before: dict[str, Any]) -> None:
    assert (await store.pragmas())["user_version"] == 15  # v3, feed (v4), relays (v5), v6-v15
    assert await store.relationships() == before["relationships"]
    history = [h for r in before["relationships"] for h in await store.history(r.thread)]
    assert history == before["history"]
    assert await store.outbox_all() == before["outbox"]


async def test_a_customer_v2_file_keeps_everything(tmp_path: Path) -> None:
    path = copy("agent.db", tmp_path)
    before = raw(path)
    assert before["version"] == 2
    metas = {t: json.loads(v) for t, v in blobs(before["meta"], "client.thread.").items()}
    types = {t: json.loads(v) for t, v in blobs(before["meta"], "client.types.").items()}
    # the fixture holds what the migration must carry: kinds, drafts, rollback points, outbox
    assert {m["kind"] for m in metas.values()} == {"vendor", "intent"}
    assert sum(len(m["drafts"]) for m in metas.values()) >= 1
    assert sum(len(m["rollback"]) for m in metas.values()) >= 1
    assert before["outbox"]
    assert {r.state for r in before["relationships"]} >= {
        "agreed",
        "countered",
    }
    async with await SQLiteStore.open(path) as store:
        await check_common(store, before)
        threads = await store.threads()
        assert [t.thread for t in threads] == sorted(metas)
        for t in threads:
            m = metas[t.thread]
            assert t.kind is ThreadKind(m["kind"])
            assert (t.vendor_key.hex(), t.name, t.inbox, t.history_url) == (
                m["vendor_key"],
                m["name"],
                m["inbox"],
                m["history"],
            )
            assert (t.lifetime_ms, t.generation, t.last_activity_ms, t.last_problem) == (
                m["lifetime_ms"],
                m["generation"],
                m["last_activity_ms"],
                m["last_problem"],
            )
            assert t.intent_id == (bytes.fromhex(m["intent_id"]) if m["intent_id"] else None)
            assert t.types == (tuple(types[t.thread]) if t.thread in types else None)
            drafts = await store.drafts(t.thread)
            assert [(d.seq, d.payload) for d in drafts] == [
                (i, bytes.fromhex(h)) for i, h in enumerate(m["drafts"])
            ]
            assert [d.kind for d in drafts] == [_codec.decode(d.payload)["op"] for d in drafts]
            assert await store.save_points(t.thread) == sorted(
                (
                    SavePoint(
                        t.thread,
                        bytes.fromhex(h),
                        n,
                        bytes.fromhex(head),
                        bytes.fromhex(state),
                        n + 1,
                    )
                    for h, (n, head, state) in m["rollback"].items()
                ),
                key=lambda p: p.msg_hash,
            )
        assert {k for k in before["meta"] if not k.startswith("client.")} == set()
        assert await store.get_meta("client.master") == before["meta"]["client.master"]
    after = raw(path)
    assert set(after["meta"]) == {"client.master"}  # only the store-level setting stays


async def test_a_vendor_v2_file_keeps_everything(tmp_path: Path) -> None:
    path = copy("vendor.db", tmp_path)
    before = raw(path)
    held = blobs(before["meta"], "held:")
    rollbacks = {t: v for t, v in blobs(before["meta"], "rollback:").items() if v}
    assert held
    assert rollbacks
    async with await SQLiteStore.open(path) as store:
        await check_common(store, before)
        for thread, blob in held.items():
            (record,) = [r for r in before["relationships"] if r.thread == thread]
            expiry = {bytes(h): e for h, e in _codec.decode_form(record.data)["shares"]}
            expected = sorted((
                HeldRecord(thread, i["record"]["field"], i["record"]["value"],
                           i["record"]["category"], i["record"]["source"],
                           i["record"]["collected"], tuple(i["record"]["purposes"]),
                           bytes(i["share"]), expiry.get(bytes(i["share"])))
                for i in _codec.decode(blob)), key=lambda h: h.field)  # fmt: skip
            assert await store.held(thread) == expected
            assert any(h.expires_ms is not None for h in expected)  # from a data.share
        for thread, blob in rollbacks.items():
            hashes, length, head, state, after = _codec.decode_form(blob)
            assert await store.save_points(thread) == sorted(
                (SavePoint(thread, h, length, head, state, after) for h in hashes),
                key=lambda p: p.msg_hash)  # fmt: skip
    assert raw(path)["meta"] == {}


async def test_a_failed_migration_leaves_the_v2_file_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step is one transaction: a failure after some rows were written (here, injected
    after the held rows of a thread went in) rolls all of it back; the next open migrates."""
    path = copy("vendor.db", tmp_path)
    before = dump(path)
    real = _migrate_v3._held

    def held_then_fail(conn: sqlite3.Connection, thread: bytes, blob: bytes) -> None:
        real(conn, thread, blob)
        raise OSError("injected failure")

    monkeypatch.setattr(_migrate_v3, "_held", held_then_fail)
    with pytest.raises(OSError, match="injected"):
        await SQLiteStore.open(path)
    assert dump(path) == before
    monkeypatch.undo()
    async with await SQLiteStore.open(path) as store:
        assert (await store.pragmas())["user_version"] == 15


async def test_a_damaged_v2_blob_fails_the_migration_and_loses_nothing(tmp_path: Path) -> None:
    path = copy("agent.db", tmp_path)
    conn = sqlite3.connect(path)
    (key,) = conn.execute("SELECT key FROM meta WHERE key LIKE 'client.thread.%' "
                          "ORDER BY key LIMIT 1").fetchone()  # fmt: skip
    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (b"{not json", key))
    conn.commit()
    conn.close()
    before = dump(path)
    with pytest.raises(StoreError, match=key):
        await SQLiteStore.open(path)
    assert dump(path) == before


async def test_types_of_a_thread_never_opened_are_dropped(tmp_path: Path) -> None:
    """``client.types.`` is written before the first message; if that could not be signed, no
    thread record followed, and there is nothing to attach the types to."""
    path = copy("agent.db", tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO meta VALUES (?, ?)", ("client.types." + "ab" * 16, b'["x"]'))
    conn.commit()
    conn.close()
    async with await SQLiteStore.open(path) as store:
        assert await store.get_meta("client.types." + "ab" * 16) is None
        assert await store.get_thread(b"\xab" * 16) is None


def fixture_seed(label: str) -> bytes:
    """The fixed key seeds of ``scripts/make_v2_fixtures.py``."""
    return hashlib.sha256(b"vrmproto v2 fixture: " + label.encode()).digest()


async def check_loads(store: SQLiteStore, identity_of: Any) -> int:
    """Every migrated relationship loads through the shared layer with the identity that wrote
    it, its history verifies (§8.2), and every save point sits right before the message it
    guards. Returns how many save points there were."""
    points = 0
    for record in await store.relationships():
        identity = await identity_of(record)
        assert identity.public_key == record.local_key
        rows = await store.history(record.thread)
        verify_entries([_records.to_entry(h) for h in rows])
        rel = _records.load(record, rows[-1], identity=identity)
        assert (rel.state.value, len(rel.history), rel.history.head) == (
            record.state,
            len(rows),
            rows[-1].entry_hash,
        )
        for p in await store.save_points(record.thread):
            points += 1
            assert p.head == rows[p.length - 1].entry_hash
            assert p.msg_hash in {h.msg_hash for h in rows[p.length : p.after]}
            back = _records.restore(p, identity=identity)
            assert (len(back.history), back.history.head) == (p.length, p.head)
    return points


async def test_migrated_files_load_with_the_keys_that_wrote_them(tmp_path: Path) -> None:
    master = MasterSeed(fixture_seed("customer"))

    async def customer(record: RelationshipRecord) -> Identity:
        t = await store.get_thread(record.thread)
        assert t is not None
        if t.kind is ThreadKind.INTENT:
            assert t.intent_id is not None
            return master.for_intent(t.intent_id)
        return master.pairwise(t.vendor_key, t.generation)

    async def vendor(record: RelationshipRecord) -> Identity:
        return Identity(fixture_seed("vendor Acme"))

    async with await SQLiteStore.open(copy("agent.db", tmp_path)) as store:
        assert await check_loads(store, customer) >= 1
        (waiting,) = await store.outbox_all()
        assert await store.save_point(waiting.thread, waiting.msg_hash) is not None
    async with await SQLiteStore.open(copy("vendor.db", tmp_path)) as store:
        assert await check_loads(store, vendor) >= 1


async def test_the_json_notes_beside_a_v2_agent_become_records(tmp_path: Path) -> None:
    """``intents.json`` and ``shares.json`` as vrm 25ceebf wrote them: every intentcast, offer
    and keyed share note becomes a record and round-trips through the store."""
    intents_doc = json.loads((V2 / "intents.json").read_text("utf-8"))
    shares_doc = json.loads((V2 / "shares.json").read_text("utf-8"))
    intents, offers = intents_from_v2(intents_doc)
    notes, unkeyed = share_notes_from_v2(shares_doc)
    (cast,) = intents_doc["items"]
    assert [i.intent_id.hex() for i in intents] == [cast["intent"]]
    assert (intents[0].where, intents[0].start_ms, intents[0].max_price) == (
        "Boston",
        None,
        (cast["max_price"]["amount"], cast["max_price"]["currency"]),
    )
    assert [o.hash.hex() for o in offers] == [o["hash"] for o in cast["offers"]]
    assert {o.received_ms for o in offers} == {cast["sent"]}
    keyed = [n for n in shares_doc["items"] if n["hash"]]
    assert [n.share.hex() for n in notes] == [n["hash"] for n in keyed]
    assert [dict(n.fields) for n in notes] == [n["fields"] for n in keyed]
    assert [n.withdrawn_ms for n in notes] == [n["withdrawn"] for n in keyed]
    assert len(unkeyed) == 1  # the share still a draft when noted
    async with await SQLiteStore.open(copy("agent.db", tmp_path)) as store:
        await store.commit(Commit(intents=intents, offers=offers, share_notes=notes))
        assert await store.intents() == list(intents)
        assert await store.offers() == sorted(offers, key=lambda o: (o.intent_id, o.hash))
        assert await store.share_notes() == sorted(notes, key=lambda n: (n.shared_ms, n.share))
        for o in offers:  # each offer answers on a thread the agent holds
            assert await store.get_relationship(o.thread) is not None


def test_notes_of_another_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="format-1"):
        intents_from_v2({"items": []})
    with pytest.raises(ValueError, match="entry 0"):
        intents_from_v2({"format": 1, "items": [{"intent": "zz"}]})
    with pytest.raises(ValueError, match="entry 1"):
        share_notes_from_v2({"format": 1, "items": [{"hash": ""}, {"hash": "00"}]})
