"""The store contract: what every :class:`~vrmproto.store.Store` backend must do, as a test suite.

The reference backends (:class:`~vrmproto.store.MemoryStore`, :class:`~vrmproto.store.SQLiteStore`)
run it, and so can any other — a PostgreSQL backend, a vendor's own — with one fixture: subclass
:class:`StoreContract` in a pytest module (with pytest-asyncio) and give it a ``store`` fixture
that yields a fresh, empty, open store and closes it afterwards::

    import pytest_asyncio
    from vrmproto.testing.store_contract import StoreContract

    class TestMyStore(StoreContract):
        @pytest_asyncio.fixture  # (in pytest-asyncio's auto mode, @pytest.fixture will do)
        async def store(self, tmp_path):
            s = await MyStore.open(tmp_path / "db")
            yield s
            await s.close()

Each async test carries the ``asyncio`` mark, so the contract runs in pytest-asyncio's strict
mode (its default) as in auto mode.

What the suite checks: each record's round trip and ordering; the order in which a
:class:`~vrmproto.store.Commit`'s parts apply; all or nothing, and :class:`StoreConflict` for a
taken history slot, dedupe key or draft slot (only the conflicting Commit fails, even among
concurrent ones); the history gap and orphan rules; ``drop`` of a thread with every row of it;
the typed records of schema v3 (threads, drafts, save points, held data, intents, offers, share
notes) and the per-thread outbox; a closed store refusing; named locks (§11.11-2); the event
feed (events in Commit order with their feed positions, all or nothing with their Commit,
personal data dropped with its share, cursors, dead letters and the events being retried, and
its trimming); the counts ``/metrics`` reads.

A backend that batches Commits (group commit) overrides :meth:`StoreContract.gather_in_one_batch`
so that the all-or-nothing tests put their Commits in one batch for sure; the default fires them
concurrently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from vrmproto.store import (
    Commit,
    DeadLetter,
    DedupeRecord,
    DraftRecord,
    EventRecord,
    FailingEvent,
    HeldRecord,
    HistoryEntry,
    IntentRecord,
    NewOutboxItem,
    OfferRecord,
    RelationshipRecord,
    SavePoint,
    ShareNote,
    Store,
    StoreConflict,
    StoreError,
    ThreadKind,
    ThreadRecord,
)

__all__ = [
    "StoreContract",
    "again",
    "dedupe",
    "digest",
    "draft",
    "entry",
    "event",
    "held",
    "intent",
    "note",
    "offer",
    "outbox",
    "rel",
    "save_point",
    "thread_record",
]

T1 = b"\x01" * 16
T2 = b"\x02" * 16
ALICE = b"A" * 32
BOB = b"B" * 32
CAROL = b"C" * 32


def rel(thread: bytes = T1, *, state: str = "offered", peer: bytes = BOB) -> RelationshipRecord:
    return RelationshipRecord(
        thread=thread,
        role="customer",
        local_key=ALICE,
        peer_key=peer,
        state=state,
        data=b"\x81\xa1s\x01" + state.encode(),
        label="Avis",
        peer_url="https://avis.example/vrm",
        updated_ms=1_000,
    )


def digest(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def entry(thread: bytes, index: int, tag: str = "") -> HistoryEntry:
    return HistoryEntry(
        thread=thread,
        index=index,
        msg_hash=digest("msg", thread, index, tag),
        entry_hash=digest("entry", thread, index, tag),
        envelope=b"envelope-%d" % index,
        direction="in" if index % 2 else "out",
        recorded_ms=2_000 + index,
    )


def dedupe(sender: bytes, n: int, expires_ms: int = 10_000) -> DedupeRecord:
    return DedupeRecord(
        sender=sender,
        msg_id=n.to_bytes(16, "big"),
        msg_hash=digest("dedupe", sender, n),
        response=b"receipt-%d" % n,
        expires_ms=expires_ms,
    )


def outbox(destination: str, due_ms: int, thread: bytes = T1) -> NewOutboxItem:
    return NewOutboxItem(
        destination=destination,
        thread=thread,
        msg_hash=digest("out", destination, due_ms),
        envelope=b"env-" + destination.encode(),
        next_attempt_ms=due_ms,
        created_ms=5,
    )


def again(e: HistoryEntry, index: int, thread: bytes | None = None) -> HistoryEntry:
    """The message of ``e`` logged once more, at ``index`` of ``thread`` (by default its own),
    with a link and envelope of its own."""
    thread = e.thread if thread is None else thread
    return HistoryEntry(thread, index, e.msg_hash, digest("again", thread, index),
                        b"again-%d" % index, "in", 3_000 + index)  # fmt: skip


def thread_record(thread: bytes = T1, **changes: Any) -> ThreadRecord:
    fields: dict[str, Any] = {
        "thread": thread, "kind": ThreadKind.VENDOR, "vendor_key": BOB, "name": "Avis",
        "inbox": "https://avis.example/vrm/inbox", "history_url": "https://avis.example/vrm/h",
        "lifetime_ms": 86_400_000, "generation": 0, "intent_id": None, "last_activity_ms": 7,
        "last_problem": "", "types": ("terms.offer", "data.share"),
    }  # fmt: skip
    fields.update(changes)
    return ThreadRecord(**fields)


def draft(thread: bytes, seq: int, kind: str = "data.share") -> DraftRecord:
    return DraftRecord(thread, seq, kind, b"payload-%d" % seq)


def save_point(thread: bytes, tag: str, length: int = 2) -> SavePoint:
    return SavePoint(thread, digest("sent", thread, tag), length, digest("head", length),
                     b"state-" + tag.encode(), length + 1)  # fmt: skip


def held(thread: bytes, name: str, share: bytes, expires_ms: int | None = 50_000,
         value: str = "v") -> HeldRecord:  # fmt: skip
    return HeldRecord(thread, name, value, 2, "provided", 1_000, (1, 3), share, expires_ms)


def intent(n: int, sent_ms: int = 100) -> IntentRecord:
    """Odd ``n``: every optional field set; even ``n``: none."""
    full = n % 2 == 1
    return IntentRecord(
        intent_id=bytes([n]) * 16, what="a car", where="Boston" if full else None,
        start_ms=1 if full else None, end_ms=2 if full else None,
        max_price=(20_000, "USD") if full else None, reply_by_ms=90, sent_ms=sent_ms,
        vendors=("https://avis.example", "https://hertz.example"),
        declines=(("https://hertz.example", "none left"),),
        constraints=("no prepaid gas",) if full else (), memberships=("AAA",) if full else (),
        relay_index=2**32 - 1 if full else None, relays=("wss://relay.example",) if full else (),
    )  # fmt: skip


def offer(n: int, tag: str, received_ms: int = 10) -> OfferRecord:
    return OfferRecord(
        intent_id=bytes([n]) * 16, hash=digest("offer", n, tag), thread=digest("t", tag)[:16],
        vendor="Avis " + tag, url="https://avis.example", vendor_key=BOB, description="compact",
        price=(4_200, "USD"), valid_until_ms=99, conditions=("no smoking",),
        accepts_terms=("vrm.no-tracking",), received_ms=received_ms,
    )  # fmt: skip


def note(thread: bytes, tag: str, shared_ms: int = 10) -> ShareNote:
    return ShareNote(
        share=digest("share", thread, tag), thread=thread, vendor="Avis",
        fields=(("email", "a@example.org"), ("name", "Ann")), purposes=(1,), categories=(2, 3),
        expires_ms=5_000, shared_ms=shared_ms, status="confirmed",
    )  # fmt: skip


def event(thread: bytes, seq: int, tag: str = "", personal: bytes | None = None) -> EventRecord:
    """An event of the feed, about the message ``digest(thread, seq, tag)``."""
    msg_hash = digest(thread, seq, tag)
    return EventRecord("evt_" + msg_hash.hex(), thread, seq, "data.shared", msg_hash,
                       100 + seq, b'{"n":%d}' % seq, personal)  # fmt: skip


class StoreContract:
    """The contract tests; subclass it with a ``store`` fixture (see the module docstring)."""

    @pytest.fixture
    async def store(self) -> Any:
        """A fresh, empty, open store, closed after the test: every backend defines it."""
        raise NotImplementedError("define a `store` fixture in the subclass")

    async def gather_in_one_batch(
        self, store: Store, *commits: Commit
    ) -> list[BaseException | None]:
        """Commit ``commits`` concurrently and return each one's exception (None: it landed).
        A group-committing backend overrides this to put them in one batch for sure."""
        results = await asyncio.gather(*(store.commit(c) for c in commits), return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    # -- round trips ----------------------------------------------------------------------------

    async def test_relationship_upsert_and_find(self, store: Store) -> None:
        await store.commit(Commit(relationships=(rel(T1), rel(T2, peer=CAROL))))
        assert await store.get_relationship(T1) == rel(T1)
        await store.commit(Commit(relationships=(rel(T1, state="agreed"),)))
        assert await store.get_relationship(T1) == rel(T1, state="agreed")
        assert await store.get_relationship(b"\x09" * 16) is None
        assert await store.relationships() == [rel(T1, state="agreed"), rel(T2, peer=CAROL)]
        assert await store.find_relationship(peer_key=CAROL) == [rel(T2, peer=CAROL)]
        assert await store.find_relationship(local_key=ALICE, peer_key=BOB) == [
            rel(T1, state="agreed")
        ]
        assert len(await store.find_relationship(local_key=ALICE)) == 2
        assert await store.find_relationship(local_key=BOB) == []

    async def test_relationships_where(self, store: Store) -> None:
        """``relationships_where``: the records matching every criterion given, by thread,
        ``data`` as ``relationships(with_data=False)`` leaves it — what filtering every record
        gives (an agent finds a vendor by URL, name, key, state or id prefix this way)."""
        other_url = dataclasses.replace(rel(T2, peer=CAROL), peer_url="https://hertz.example/vrm",
                                        label="Hertz")  # fmt: skip
        vendor_side = dataclasses.replace(rel(b"\x03" * 16, state="agreed"), role="vendor")
        await store.commit(Commit(relationships=(rel(T1, state="agreed"), other_url,
                                                 vendor_side)))  # fmt: skip
        everything = await store.relationships(with_data=False)

        def expected(**wanted: Any) -> list[RelationshipRecord]:
            states = wanted.pop("states", None)
            low, high = wanted.pop("thread_range", (None, None))
            return [r for r in everything
                    if all(getattr(r, k) == v for k, v in wanted.items())
                    and (states is None or r.state in states)
                    and (low is None or low <= r.thread <= high)]  # fmt: skip

        def same(got: list[RelationshipRecord], want: list[RelationshipRecord]) -> bool:
            return [dataclasses.replace(r, data=b"") for r in got] == [
                dataclasses.replace(r, data=b"") for r in want]

        for criteria in (
            {"role": "customer"},
            {"role": "customer", "peer_url": "https://avis.example/vrm"},
            {"role": "customer", "label": "Hertz"},
            {"role": "customer", "peer_key": CAROL},
            {"role": "customer", "states": ("agreed",)},
            {"states": ("agreed",)},
            {"role": "customer", "states": ()},
            {"thread_range": (T1, T2)},
            {"role": "vendor", "peer_url": "https://hertz.example/vrm"},
        ):
            assert same(await store.relationships_where(**criteria), expected(**criteria)), criteria
        assert len(await store.relationships_where(role="customer")) == 2

    async def test_relationships_without_data(self, store: Store) -> None:
        """``relationships(with_data=False)``: the same records in the same order, each with
        its ``data`` or with ``data`` empty; the stored blobs are untouched."""
        await store.commit(Commit(relationships=(rel(T2, peer=CAROL), rel(T1, state="agreed"))))
        full = await store.relationships()
        assert [r.thread for r in full] == [T1, T2]  # by thread, not as written
        assert [r.thread for r in await store.find_relationship(local_key=ALICE)] == [T1, T2]
        assert all(r.data for r in full)
        light = await store.relationships(with_data=False)
        assert [dataclasses.replace(r, data=b"") for r in light] == [
            dataclasses.replace(r, data=b"") for r in full
        ]
        assert all(r.data in (b"", f.data) for r, f in zip(light, full, strict=True))
        assert await store.relationships() == full

    async def test_history_round_trip(self, store: Store) -> None:
        entries = [entry(T1, i) for i in range(5)]
        await store.commit(Commit(relationships=(rel(T1),), history=tuple(entries[:2])))
        for e in entries[2:]:
            await store.commit(Commit(history=(e,)))
        assert await store.history(T1) == entries
        assert await store.history(T1, start=2) == entries[2:]
        assert await store.history(T1, start=1, limit=2) == entries[1:3]
        assert await store.history(T1, limit=0) == []
        assert await store.history_head(T1) == entries[-1]
        assert await store.history_entry(T1, entries[3].msg_hash) == entries[3]
        assert await store.history_entry(T2, entries[3].msg_hash) is None
        assert await store.history(T2) == []
        assert await store.history_head(T2) is None

    async def test_dedupe_round_trip_and_purge(self, store: Store) -> None:
        records = [dedupe(ALICE, 1, 100), dedupe(ALICE, 2, 200), dedupe(BOB, 1, 300)]
        await store.commit(Commit(dedupe=tuple(records)))
        assert await store.get_dedupe(ALICE, (1).to_bytes(16, "big")) == records[0]
        assert await store.get_dedupe(BOB, (1).to_bytes(16, "big")) == records[2]
        assert await store.get_dedupe(BOB, (2).to_bytes(16, "big")) is None
        assert await store.purge_dedupe(200) == 1  # expires_ms < now: only the first
        assert await store.get_dedupe(ALICE, (1).to_bytes(16, "big")) is None
        assert await store.get_dedupe(ALICE, (2).to_bytes(16, "big")) == records[1]
        assert await store.purge_dedupe(10_000) == 2
        assert await store.purge_dedupe(10_000) == 0

    async def test_outbox_due_retry_done(self, store: Store) -> None:
        await store.commit(
            Commit(
                outbox_add=(
                    outbox("https://c", 30),
                    outbox("https://a", 10),
                    outbox("https://b", 10),
                )
            )
        )
        everything = await store.outbox_all()
        assert [o.destination for o in everything] == ["https://c", "https://a", "https://b"]
        assert [o.item_id for o in everything] == sorted({o.item_id for o in everything})
        c, a, b = everything
        assert (a.attempts, a.last_error, a.created_ms, a.envelope) == (0, "", 5, b"env-https://a")

        assert await store.outbox_due(9) == []
        assert await store.outbox_due(10) == [a, b]  # due time, then id
        assert await store.outbox_due(100) == [a, b, c]
        assert await store.outbox_due(100, limit=1) == [a]

        await store.outbox_retry(a.item_id, 1, 50, "connection refused")
        await store.outbox_retry(999_999, 1, 50, "no such item: ignored")
        due = await store.outbox_due(100)
        assert [o.destination for o in due] == ["https://b", "https://c", "https://a"]
        assert (due[2].attempts, due[2].next_attempt_ms, due[2].last_error) == (
            1,
            50,
            "connection refused",
        )

        await store.commit(Commit(outbox_done=(b.item_id, 999_999)))
        await store.commit(Commit(outbox_add=(outbox("https://d", 0),)))
        remaining = await store.outbox_all()
        assert [o.destination for o in remaining] == ["https://c", "https://a", "https://d"]
        assert remaining[-1].item_id > b.item_id  # ids are never reused

    async def test_meta(self, store: Store) -> None:
        assert await store.get_meta("head") is None
        await store.commit(Commit(meta=(("head", b"1"), ("node", b"n"))))
        await store.commit(Commit(meta=(("head", b"2"),)))
        assert await store.get_meta("head") == b"2"
        assert await store.get_meta("node") == b"n"

    async def test_erase_replaces_envelope(self, store: Store) -> None:
        e0, e1 = entry(T1, 0), entry(T1, 1)
        await store.commit(Commit(relationships=(rel(),), history=(e0, e1)))
        await store.commit(Commit(erase=((T1, e1.msg_hash, b"erased"), (T2, e0.msg_hash, b"none"))))
        got = await store.history_entry(T1, e1.msg_hash)
        assert got is not None
        assert got.envelope == b"erased"
        assert (got.entry_hash, got.index) == (e1.entry_hash, 1)  # the chain is untouched
        assert await store.history(T1) == [e0, got]

    async def test_truncate_drops_a_refused_tail_and_the_index_is_free_again(
        self, store: Store
    ) -> None:
        """§8.1-5: a refused message leaves the history; its slot and hash can be used again."""
        e0, e1, e2 = entry(T1, 0), entry(T1, 1), entry(T1, 2)
        await store.commit(Commit(relationships=(rel(),), history=(e0, e1, e2)))
        await store.commit(Commit(truncate=((T1, 1),)))
        assert await store.history(T1) == [e0]
        head = await store.history_head(T1)
        assert head is not None
        assert head.index == 0
        # the same Commit may drop a tail and append anew, reusing a dropped hash
        await store.commit(Commit(history=(e1,)))
        await store.commit(Commit(truncate=((T1, 1),), history=(e1,)))
        assert await store.history(T1) == [e0, e1]

    async def test_drop_deletes_a_thread_its_history_and_unset_meta_keys(
        self, store: Store
    ) -> None:
        """§11.8-3: a relationship that never reached an agreement expires whole; other threads,
        meta keys and replay records stay."""
        await store.commit(Commit(
            relationships=(rel(T1), rel(T2)),
            history=(entry(T1, 0), entry(T1, 1), entry(T2, 0)),
            dedupe=(dedupe(BOB, 1),),
            meta=(("held:t1", b"x"), ("keep", b"y")),
        ))  # fmt: skip
        await store.commit(Commit(drop=(T1, b"\x09" * 16), unset=("held:t1", "missing")))
        assert await store.get_relationship(T1) is None
        assert await store.history(T1) == []
        assert await store.history_head(T1) is None
        assert await store.history_entry(T1, entry(T1, 0).msg_hash) is None
        assert [r.thread for r in await store.relationships()] == [T2]
        assert len(await store.history(T2)) == 1
        assert await store.get_meta("held:t1") is None
        assert await store.get_meta("keep") == b"y"
        assert await store.get_dedupe(BOB, dedupe(BOB, 1).msg_id) is not None
        # the thread id can open a relationship again, from index 0
        await store.commit(Commit(relationships=(rel(T1),), history=(entry(T1, 0, "again"),)))
        assert len(await store.history(T1)) == 1

    async def test_usage_grows_with_what_is_stored(self, store: Store) -> None:
        """§11.8-4: a storage budget reads how much the store holds and the room left. The
        envelope is bytes like a real one's (signed, sealed: they do not compress), so a
        backend that compresses what it keeps reports it honestly and passes."""
        before = await store.usage()
        envelope = b"".join(digest("big", n) for n in range(6_250))  # 200,000 bytes
        big = HistoryEntry(T1, 0, digest("big"), digest("big", 0), envelope, "in", 1)
        await store.commit(Commit(relationships=(rel(T1),), history=(big,)))
        after = await store.usage()
        assert after.stored_bytes >= before.stored_bytes + 100_000
        assert after.free_bytes is None or after.free_bytes > 0

    def test_records_reject_bad_enumerations(self) -> None:
        with pytest.raises(ValueError, match="role"):
            RelationshipRecord(T1, "buyer", ALICE, BOB, "s", b"", "", "", 0)
        with pytest.raises(ValueError, match="direction"):
            HistoryEntry(T1, 0, b"h", b"e", b"", "sideways", 0)
        with pytest.raises(ValueError, match="index"):
            HistoryEntry(T1, -1, b"h", b"e", b"", "in", 0)

    # -- all or nothing ------------------------------------------------------------------------

    async def test_conflicting_history_index_rolls_back_alone(self, store: Store) -> None:
        await store.commit(Commit(relationships=(rel(),), history=(entry(T1, 0),)))
        good = [
            Commit(relationships=(rel(bytes([n]) * 16),), meta=((f"good{n}", b"x"),))
            for n in range(10, 40)
        ]
        bad = Commit(
            relationships=(rel(T1, state="clobbered"),),
            meta=(("bad", b"x"),),
            dedupe=(dedupe(BOB, 7),),
            history=(entry(T1, 0, tag="other"),),  # index 0 is taken
        )
        outcomes = await self.gather_in_one_batch(store, *good[:15], bad, *good[15:])
        assert isinstance(outcomes[15], StoreConflict)
        assert outcomes[:15] + outcomes[16:] == [None] * 30
        assert await store.get_meta("bad") is None
        assert await store.get_relationship(T1) == rel(T1)
        assert await store.get_dedupe(BOB, (7).to_bytes(16, "big")) is None
        assert await store.history(T1) == [entry(T1, 0)]
        for n in range(10, 40):
            assert await store.get_meta(f"good{n}") == b"x"

    async def test_conflicting_dedupe_key_rolls_back_alone(self, store: Store) -> None:
        await store.commit(Commit(relationships=(rel(),), dedupe=(dedupe(BOB, 1),)))
        replay = Commit(
            history=(entry(T1, 0),), outbox_add=(outbox("https://x", 0),), dedupe=(dedupe(BOB, 1),)
        )
        others = [Commit(dedupe=(dedupe(CAROL, n),)) for n in range(20)]
        outcomes = await self.gather_in_one_batch(store, *others, replay)
        assert isinstance(outcomes[-1], StoreConflict)
        assert outcomes[:-1] == [None] * 20
        assert await store.history(T1) == []
        assert await store.outbox_all() == []
        assert await store.get_dedupe(BOB, (1).to_bytes(16, "big")) == dedupe(BOB, 1)
        assert await store.get_dedupe(CAROL, (19).to_bytes(16, "big")) == dedupe(CAROL, 19)

    async def test_conflicts_inside_one_commit(self, store: Store) -> None:
        await store.commit(Commit(relationships=(rel(),)))
        with pytest.raises(StoreConflict):
            await store.commit(Commit(meta=(("k", b"v"),), dedupe=(dedupe(BOB, 1), dedupe(BOB, 1))))
        same_slot = (entry(T1, 0), entry(T1, 1), entry(T1, 1, tag="other"))
        with pytest.raises(StoreConflict):
            await store.commit(Commit(meta=(("k", b"v"),), history=same_slot))
        assert await store.get_meta("k") is None
        assert await store.history(T1) == []

    async def test_a_repeated_message_hash_is_not_a_store_conflict(self, store: Store) -> None:
        """The engine keeps a message to one place in a history (§4.5-6, §8.2-2); the store keeps
        only the history slot and the dedupe key, and looks a hash up at its lowest index."""
        e0, e1 = entry(T1, 0), entry(T1, 1)
        # twice in one Commit, then once more in a later one
        await store.commit(Commit(relationships=(rel(),), history=(e0, e1, again(e0, 2))))
        await store.commit(Commit(history=(again(e0, 3),)))
        assert [h.index for h in await store.history(T1)] == [0, 1, 2, 3]
        assert await store.history_entry(T1, e0.msg_hash) == e0
        assert await store.history_entry(T1, e1.msg_hash) == e1
        # the same hash in another thread is another message's business
        await store.commit(Commit(relationships=(rel(T2),), history=(again(e0, 0, T2),)))
        assert await store.history_entry(T2, e0.msg_hash) == again(e0, 0, T2)
        assert await store.history_entry(T1, e0.msg_hash) == e0
        # dropping the first occurrence leaves none; a kept one stays the first
        await store.commit(Commit(truncate=((T1, 3),)))
        assert await store.history_entry(T1, e0.msg_hash) == e0
        await store.commit(Commit(truncate=((T1, 0),)))
        assert await store.history_entry(T1, e0.msg_hash) is None
        await store.commit(Commit(history=(entry(T1, 0, tag="new"), again(e0, 1))))
        assert await store.history_entry(T1, e0.msg_hash) == again(e0, 1)

    async def test_erase_replaces_every_entry_of_the_thread_holding_the_message(
        self, store: Store
    ) -> None:
        e0, e1 = entry(T1, 0), entry(T1, 1)
        await store.commit(Commit(relationships=(rel(), rel(T2)), history=(e0, e1, again(e1, 2))))
        await store.commit(Commit(history=(again(e1, 0, T2), entry(T2, 1))))
        await store.commit(Commit(erase=((T1, e1.msg_hash, b"erased"),)))
        t1 = await store.history(T1)
        assert [h.envelope for h in t1] == [e0.envelope, b"erased", b"erased"]
        assert [h.entry_hash for h in t1] == [e0.entry_hash, e1.entry_hash, again(e1, 2).entry_hash]
        assert await store.history(T2) == [
            again(e1, 0, T2),
            entry(T2, 1),
        ]  # other threads untouched

    async def test_repeated_hashes_in_one_group_transaction(self, store: Store) -> None:
        """Commits written together (SQLite's multi-row group) may repeat a hash across threads and
        within one; a taken slot still fails alone."""
        e0 = entry(T1, 0)
        threads = [bytes([n]) * 16 for n in range(10, 20)]
        commits = [
            Commit(relationships=(rel(t),), history=(again(e0, 0, t), again(e0, 1, t)))
            for t in threads
        ]
        await store.commit(Commit(relationships=(rel(),), history=(e0,)))
        taken = Commit(relationships=(rel(),), history=(entry(T1, 0, tag="other"),))
        outcomes = await self.gather_in_one_batch(store, *commits[:5], taken, *commits[5:])
        assert isinstance(outcomes[5], StoreConflict)
        assert outcomes[:5] + outcomes[6:] == [None] * 10
        for thread in threads:
            assert [h.msg_hash for h in await store.history(thread)] == [e0.msg_hash] * 2
            got = await store.history_entry(thread, e0.msg_hash)
            assert got is not None
            assert got.index == 0
        assert await store.history(T1) == [e0]

    async def test_history_gap_and_orphan_are_errors_not_conflicts(self, store: Store) -> None:
        """A gap, or an entry with no relationship, refuses the Commit; and as for a conflict,
        nothing of it is written (:meth:`~vrmproto.store.Store.commit`)."""
        await store.commit(Commit(relationships=(rel(),)))
        with pytest.raises(StoreError, match="gap") as gap:
            await store.commit(Commit(relationships=(rel(T1, state="clobbered"),),
                                      meta=(("gap", b"x"),), dedupe=(dedupe(BOB, 1),),
                                      history=(entry(T1, 1),)))  # fmt: skip
        assert not isinstance(gap.value, StoreConflict)
        with pytest.raises(StoreError, match="no relationship") as orphan:
            await store.commit(Commit(meta=(("orphan", b"x"),), dedupe=(dedupe(BOB, 2),),
                                      outbox_add=(outbox("https://x", 0),),
                                      history=(entry(T2, 0),)))  # fmt: skip
        assert not isinstance(orphan.value, StoreConflict)
        assert (await store.get_meta("gap"), await store.get_meta("orphan")) == (None, None)
        assert await store.get_relationship(T1) == rel(T1)
        assert await store.get_dedupe(BOB, dedupe(BOB, 1).msg_id) is None
        assert await store.get_dedupe(BOB, dedupe(BOB, 2).msg_id) is None
        assert await store.outbox_all() == []
        assert await store.history(T1) == []
        # a relationship and its first entries in the same Commit is fine
        await store.commit(Commit(relationships=(rel(T2),), history=(entry(T2, 0), entry(T2, 1))))
        assert len(await store.history(T2)) == 2

    async def test_many_concurrent_commits_all_visible(self, store: Store) -> None:
        await store.commit(Commit(relationships=(rel(),)))
        await asyncio.gather(
            *(
                store.commit(Commit(dedupe=(dedupe(BOB, n),), meta=((f"m{n}", b"%d" % n),)))
                for n in range(500)
            )
        )
        for n in range(500):
            assert await store.get_dedupe(BOB, n.to_bytes(16, "big")) == dedupe(BOB, n)
            assert await store.get_meta(f"m{n}") == b"%d" % n

    async def test_closed_store_refuses(self, store: Store) -> None:
        """After ``close()`` every method but ``close()`` raises :class:`StoreError` (the
        :class:`~vrmproto.store.Store` protocol): none answers from what it still holds."""
        await store.commit(Commit(relationships=(rel(),), history=(entry(T1, 0),),
                                  meta=(("k", b"v"),)))  # fmt: skip
        await store.close()
        with pytest.raises(StoreError, match="closed"):
            await store.commit(Commit(meta=(("k", b"v"),)))
        h, n = entry(T1, 0).msg_hash, bytes(16)
        reads: dict[str, Callable[[], Awaitable[object]]] = {
            "get_dedupe": lambda: store.get_dedupe(BOB, n),
            "get_relationship": lambda: store.get_relationship(T1),
            "relationships": store.relationships,
            "relationships_where": lambda: store.relationships_where(role="customer"),
            "find_relationship": lambda: store.find_relationship(peer_key=BOB),
            "history": lambda: store.history(T1),
            "history_head": lambda: store.history_head(T1),
            "history_entry": lambda: store.history_entry(T1, h),
            "outbox_due": lambda: store.outbox_due(10**12),
            "outbox_all": store.outbox_all,
            "outbox_retry": lambda: store.outbox_retry(1, 1, 1, "x"),
            "outbox_for": lambda: store.outbox_for(T1),
            "get_meta": lambda: store.get_meta("k"),
            "get_thread": lambda: store.get_thread(T1),
            "threads": store.threads,
            "drafts": store.drafts,
            "save_point": lambda: store.save_point(T1, h),
            "save_points": lambda: store.save_points(T1),
            "held": lambda: store.held(T1),
            "held_expired": lambda: store.held_expired(10**12),
            "get_intent": lambda: store.get_intent(n),
            "intents": store.intents,
            "offers": store.offers,
            "get_offer": lambda: store.get_offer(h),
            "share_notes": store.share_notes,
            "events": store.events,
            "event": lambda: store.event("evt_x"),
            "event_cursor": lambda: store.event_cursor("crm"),
            "feed_head": store.feed_head,
            "dead_letters": store.dead_letters,
            "failing": store.failing,
            "event_cursors": store.event_cursors,
            "forget_consumer": lambda: store.forget_consumer("crm"),
            "feed_floor": store.feed_floor,
            "trim_events": lambda: store.trim_events(10, recorded_before=10**12),
            "purge_dedupe": lambda: store.purge_dedupe(10**12),
            "usage": store.usage,
            "counts": store.counts,
        }
        answered = []
        for name, call in reads.items():
            try:
                await call()
            except StoreError:
                continue
            answered.append(name)
        try:
            async with store.lock(b"thread-1"):
                answered.append("lock")
        except StoreError:
            pass
        assert answered == [], f"answered after close: {answered}"
        await store.close()  # idempotent

    async def test_a_lock_excludes_other_holders_of_its_name_and_says_they_wait(
        self, store: Store
    ) -> None:
        waited = asyncio.Event()
        order: list[str] = []

        async def second() -> None:
            async with store.lock(b"thread-1", on_wait=waited.set):
                order.append("second")

        async with store.lock(b"thread-1"):
            task = asyncio.create_task(second())
            await waited.wait()  # it is waiting for us
            async with store.lock(b"thread-2", on_wait=lambda: order.append("never")):
                order.append("other name")
            order.append("first")
        await task
        assert order == ["other name", "first", "second"]
        async with store.lock(b"thread-1", on_wait=lambda: order.append("never")):
            pass  # free again, at once
        assert "never" not in order

    # -- typed records (schema v3) --------------------------------------------------------------

    async def test_thread_records_upsert_and_find_by_vendor_key(self, store: Store) -> None:
        one = thread_record(T1)
        other = thread_record(T2, kind=ThreadKind.INTENT, intent_id=b"\x07" * 16,
                              vendor_key=CAROL, types=None)  # fmt: skip
        await store.commit(Commit(threads=(one, other)))
        assert await store.get_thread(T1) == one
        assert await store.get_thread(T2) == other
        assert await store.get_thread(b"\x09" * 16) is None
        moved = thread_record(T1, generation=2, last_problem="refused", types=())
        await store.commit(Commit(threads=(moved,)))
        assert await store.threads() == [moved, other]
        assert await store.threads(vendor_key=CAROL) == [other]
        assert await store.threads(vendor_key=ALICE) == []

    async def test_thread_records_by_kind(self, store: Store) -> None:
        """``threads(kind=...)``: only the threads of that kind, by thread, with or without
        ``vendor_key`` — an agent tells its vendor relationships from its intentcast threads
        (§2.3, §2.4) this way."""
        t3 = b"\x03" * 16
        vendor = thread_record(T2)
        intent_same_key = thread_record(T1, kind=ThreadKind.INTENT, intent_id=b"\x07" * 16)
        intent_other = thread_record(t3, kind=ThreadKind.INTENT, intent_id=b"\x07" * 16,
                                     vendor_key=CAROL)  # fmt: skip
        await store.commit(Commit(threads=(intent_other, vendor, intent_same_key)))
        assert await store.threads(kind=ThreadKind.VENDOR) == [vendor]
        assert await store.threads(kind=ThreadKind.INTENT) == [intent_same_key, intent_other]
        assert await store.threads(vendor_key=BOB, kind=ThreadKind.VENDOR) == [vendor]
        assert await store.threads(vendor_key=BOB, kind=ThreadKind.INTENT) == [intent_same_key]
        assert await store.threads(vendor_key=CAROL, kind=ThreadKind.VENDOR) == []
        assert await store.threads(vendor_key=BOB) == [intent_same_key, vendor]
        assert await store.threads() == [intent_same_key, vendor, intent_other]

    async def test_a_thread_record_keeps_its_documents_expiry(self, store: Store) -> None:
        """When the vendor's discovery document expires (§13.1-8) is stored with the thread,
        read back by every query, replaced by the next upsert; None (unknown) stays None."""
        expires = 1_800_000_000_000 + 86_400_000  # beyond 32 bits: a column of 64
        one = thread_record(T1, doc_expires_ms=expires)
        unknown = thread_record(T2, vendor_key=CAROL)
        await store.commit(Commit(threads=(one, unknown)))
        assert (await store.get_thread(T1), await store.get_thread(T2)) == (one, unknown)
        assert [t.doc_expires_ms for t in await store.threads()] == [expires, None]
        read_again = thread_record(T1, doc_expires_ms=expires + 1)
        learnt = thread_record(T2, vendor_key=CAROL, doc_expires_ms=0)
        await store.commit(Commit(threads=(read_again, learnt)))
        assert await store.threads(vendor_key=BOB) == [read_again]
        assert await store.threads(vendor_key=CAROL) == [learnt]
        assert (await store.get_thread(T2)) == learnt  # 0 is a time, not "unknown"

    def test_thread_kind_and_intent_id_go_together(self) -> None:
        with pytest.raises(ValueError, match="intent_id"):
            thread_record(T1, kind=ThreadKind.INTENT)
        with pytest.raises(ValueError, match="intent_id"):
            thread_record(T1, intent_id=b"\x07" * 16)

    async def test_drafts_are_a_queue_per_thread(self, store: Store) -> None:
        await store.commit(Commit(drafts_add=(draft(T2, 0), draft(T1, 1), draft(T1, 0))))
        assert await store.drafts(T1) == [draft(T1, 0), draft(T1, 1)]
        assert await store.drafts() == [draft(T1, 0), draft(T1, 1), draft(T2, 0)]
        # taking the head and adding at the tail in one Commit; a missing draft is ignored
        await store.commit(Commit(drafts_done=((T1, 0), (T1, 9)), drafts_add=(draft(T1, 2),)))
        assert await store.drafts(T1) == [draft(T1, 1), draft(T1, 2)]
        # a slot freed in the same Commit may be taken again
        await store.commit(Commit(drafts_done=((T1, 1),), drafts_add=(draft(T1, 1, "x"),)))
        assert await store.drafts(T1) == [draft(T1, 1, "x"), draft(T1, 2)]

    async def test_a_taken_draft_slot_is_a_conflict_and_nothing_is_written(
        self, store: Store
    ) -> None:
        await store.commit(Commit(drafts_add=(draft(T1, 0),)))
        for c in (
            Commit(meta=(("k", b"v"),), drafts_add=(draft(T1, 0, "again"),)),
            Commit(meta=(("k", b"v"),), drafts_add=(draft(T1, 1), draft(T1, 1, "twice"))),
        ):
            with pytest.raises(StoreConflict):
                await store.commit(c)
        assert await store.get_meta("k") is None
        assert await store.drafts(T1) == [draft(T1, 0)]
        with pytest.raises(ValueError, match="seq"):
            draft(T1, -1)

    async def test_save_points_upsert_clear_and_done(self, store: Store) -> None:
        a, b, c = save_point(T1, "a"), save_point(T1, "b"), save_point(T2, "c")
        await store.commit(Commit(save_points=(a, b, c)))
        assert await store.save_point(T1, a.msg_hash) == a
        assert await store.save_point(T2, a.msg_hash) is None
        assert await store.save_points(T1) == sorted([a, b], key=lambda p: p.msg_hash)
        await store.commit(Commit(save_points_done=((T1, a.msg_hash), (T1, b"\x00" * 32))))
        assert await store.save_points(T1) == [b]
        # clearing a thread's points comes before the points the same Commit writes
        d = save_point(T1, "d", length=5)
        await store.commit(Commit(save_points_clear=(T1,), save_points=(d,)))
        assert await store.save_points(T1) == [d]
        assert await store.save_points(T2) == [c]
        later = SavePoint(T1, d.msg_hash, 6, d.head, b"newer", 8)
        await store.commit(Commit(save_points=(later,)))
        assert await store.save_points(T1) == [later]
        with pytest.raises(ValueError, match="length"):
            SavePoint(T1, d.msg_hash, 3, d.head, b"", 2)

    async def test_held_rows_update_in_place_and_go_by_share(self, store: Store) -> None:
        s1, s2, upd = digest("s1"), digest("s2"), digest("update")
        await store.commit(Commit(held=(held(T1, "name", s1), held(T1, "email", s1),
                                        held(T2, "name", s2, expires_ms=10))))  # fmt: skip
        assert [h.field for h in await store.held(T1)] == ["email", "name"]
        # an address update replaces one field in place; it no longer expires with its share
        await store.commit(Commit(held=(held(T1, "email", upd, None, "b@example.org"),)))
        assert await store.held(T1) == [held(T1, "email", upd, None, "b@example.org"),
                                        held(T1, "name", s1)]  # fmt: skip
        assert await store.held_expired(9) == []
        assert await store.held_expired(10) == [(T2, s2)]
        assert await store.held_expired(50_000) == sorted([(T1, s1), (T2, s2)])
        # a withdraw of s1 deletes its rows, not the updated field's
        await store.commit(Commit(held_drop=((T1, s1), (T1, digest("none")))))
        assert await store.held(T1) == [held(T1, "email", upd, None, "b@example.org")]
        assert await store.held(T2) == [held(T2, "name", s2, expires_ms=10)]
        # dropping and re-adding a share in one Commit: the drop comes first
        await store.commit(Commit(held_drop=((T2, s2),), held=(held(T2, "zip", s2),)))
        assert [h.field for h in await store.held(T2)] == ["zip"]

    async def test_intents_and_offers_as_they_arrive(self, store: Store) -> None:
        await store.commit(Commit(intents=(intent(1, sent_ms=200), intent(2, sent_ms=100))))
        await store.commit(Commit(offers=(offer(1, "late", 30), offer(1, "early", 10))))
        await store.commit(Commit(offers=(offer(2, "x"), offer(1, "early", 10))))  # again: one
        assert [i.intent_id for i in await store.intents()] == [b"\x02" * 16, b"\x01" * 16]
        assert await store.get_intent(b"\x01" * 16) == intent(1, sent_ms=200)
        assert await store.get_intent(b"\x09" * 16) is None
        assert await store.offers(b"\x01" * 16) == [offer(1, "early", 10), offer(1, "late", 30)]
        assert len(await store.offers()) == 3
        assert await store.get_offer(offer(2, "x").hash) == offer(2, "x")
        declined = dataclasses.replace(intent(2, sent_ms=100), declines=())
        await store.commit(Commit(intents=(declined,), intents_drop=(b"\x01" * 16,)))
        assert await store.intents() == [declined]
        assert await store.offers() == [offer(2, "x")]
        assert await store.get_offer(offer(1, "late", 30).hash) is None

    async def test_share_notes(self, store: Store) -> None:
        n1, n2, n3 = note(T1, "a", 30), note(T2, "b", 20), note(T1, "c", 10)
        await store.commit(Commit(share_notes=(n1, n2, n3)))
        assert await store.share_notes() == [n3, n2, n1]
        assert await store.share_notes(T1) == [n3, n1]
        withdrawn = dataclasses.replace(n1, withdrawn_ms=99)
        await store.commit(Commit(share_notes=(withdrawn,)))
        assert await store.share_notes(T1) == [n3, withdrawn]

    async def test_outbox_for_one_thread(self, store: Store) -> None:
        await store.commit(Commit(outbox_add=(outbox("https://a", 9, T2), outbox("https://b", 1),
                                              outbox("https://c", 5, T2))))  # fmt: skip
        assert [o.destination for o in await store.outbox_for(T2)] == ["https://a", "https://c"]
        assert [o.destination for o in await store.outbox_for(T1)] == ["https://b"]
        assert await store.outbox_for(b"\x09" * 16) == []

    async def test_drop_takes_every_row_of_the_thread(self, store: Store) -> None:
        """A dropped thread (§11.8-3) leaves nothing behind but its outbox items, share notes
        and replay records; other threads keep theirs."""
        share = digest("s")
        for t in (T1, T2):
            await store.commit(Commit(
                relationships=(rel(t),), history=(entry(t, 0),), threads=(thread_record(t),),
                drafts_add=(draft(t, 0),), save_points=(save_point(t, "p"),),
                held=(held(t, "name", share),), share_notes=(note(t, "n"),),
                outbox_add=(outbox("https://x", 1, t),),
            ))  # fmt: skip
        await store.commit(Commit(drop=(T1,)))
        assert await store.get_thread(T1) is None
        assert await store.drafts(T1) == []
        assert await store.save_points(T1) == []
        assert await store.held(T1) == []
        assert await store.held_expired(10**12) == [(T2, share)]
        assert len(await store.outbox_for(T1)) == 1
        assert await store.share_notes(T1) == [note(T1, "n")]
        assert await store.get_thread(T2) == thread_record(T2)
        assert await store.drafts(T2) == [draft(T2, 0)]
        assert await store.save_points(T2) == [save_point(T2, "p")]
        assert len(await store.held(T2)) == 1

    async def test_typed_parts_roll_back_with_a_conflicting_commit(self, store: Store) -> None:
        await store.commit(Commit(relationships=(rel(),), dedupe=(dedupe(BOB, 1),)))
        doomed = Commit(
            threads=(thread_record(T1),), drafts_add=(draft(T1, 0),), held=(held(T1, "a", T1),),
            save_points=(save_point(T1, "p"),), save_points_clear=(T2,), intents=(intent(1),),
            offers=(offer(1, "o"),), share_notes=(note(T1, "n"),), dedupe=(dedupe(BOB, 1),),
        )  # fmt: skip
        await store.commit(Commit(save_points=(save_point(T2, "kept"),)))
        others = [Commit(held=(held(bytes([n]) * 16, "f", T2),)) for n in range(10, 20)]
        outcomes = await self.gather_in_one_batch(store, *others[:5], doomed, *others[5:])
        assert isinstance(outcomes[5], StoreConflict)
        assert outcomes[:5] + outcomes[6:] == [None] * 10
        assert await store.get_thread(T1) is None
        assert await store.drafts() == []
        assert await store.held(T1) == []
        assert await store.save_points(T1) == []
        assert await store.save_points(T2) == [save_point(T2, "kept")]
        assert await store.intents() == []
        assert await store.offers() == []
        assert await store.share_notes() == []
        assert len(await store.held(b"\x13" * 16)) == 1

    async def test_save_points_cleared_in_concurrent_commits_end_as_one_by_one(
        self, store: Store
    ) -> None:
        """Two steps in one batch that both clear and set a thread's save points end as if
        written one after the other: only the later one's points stay."""
        first, second = save_point(T1, "first"), save_point(T1, "second")
        commits = [
            Commit(save_points_clear=(T1,), save_points=(first,)),
            Commit(save_points_clear=(T1,), save_points=(second,)),
            Commit(save_points=(save_point(T2, "other"),)),
        ]
        assert await self.gather_in_one_batch(store, *commits) == [None] * 3
        assert await store.save_points(T1) == [second]
        assert await store.save_points(T2) == [save_point(T2, "other")]

    # -- the event feed -------------------------------------------------------------------------

    async def test_events_get_feed_positions_in_commit_order(self, store: Store) -> None:
        assert await store.feed_head() == 0
        await store.commit(Commit(events=(event(T1, 0), event(T1, 2, personal=b"{}"))))
        await store.commit(Commit(events=(event(T2, 0),)))
        found = await store.events()
        assert await store.feed_head() == found[-1].pos
        assert [(e.thread, e.seq) for e in found] == [(T1, 0), (T1, 2), (T2, 0)]
        assert [e.pos for e in found] == sorted(e.pos for e in found)
        assert len({e.pos for e in found}) == 3
        assert found[0].pos > 0
        assert found[1] == dataclasses.replace(event(T1, 2, personal=b"{}"), pos=found[1].pos)
        assert await store.events(after=found[0].pos, limit=1) == [found[1]]
        assert await store.events(thread=T2) == [found[2]]
        assert await store.event(found[2].id) == found[2]
        assert await store.event("evt_none") is None

    async def test_events_stand_or_fall_with_their_commit(self, store: Store) -> None:
        """An event's id is its message's hash, and the message's history slot — the store's
        rule — is in the same Commit: a Commit refused for a taken slot writes none of its
        events, even among concurrent ones. Ids carry no rule of their own in the store (the
        engine writes each message once, §8.2-2): looking one up gives the newest event with
        it."""
        await store.commit(Commit(relationships=(rel(T1),), history=(entry(T1, 0),),
                                  events=(event(T1, 0),)))  # fmt: skip
        doomed = Commit(relationships=(rel(T2),), history=(entry(T1, 0, "again"),),
                        events=(event(T2, 0),))  # fmt: skip
        others = [Commit(events=(event(T2, n),)) for n in range(1, 5)]
        outcomes = await self.gather_in_one_batch(store, *others[:2], doomed, *others[2:])
        assert isinstance(outcomes[2], StoreConflict)
        assert outcomes[:2] + outcomes[3:] == [None] * 4
        assert await store.get_relationship(T2) is None
        assert sorted(e.seq for e in await store.events(thread=T2)) == [1, 2, 3, 4]
        await store.commit(Commit(events=(event(T1, 0),)))
        found = await store.event(event(T1, 0).id)
        assert found is not None
        assert found.pos == (await store.events(limit=1000))[-1].pos

    async def test_grouped_commits_keep_their_events_in_order(self, store: Store) -> None:
        commits = [
            Commit(relationships=(rel(bytes([n]) * 16),), events=(event(bytes([n]) * 16, 0),))
            for n in range(10, 30)
        ]
        assert await self.gather_in_one_batch(store, *commits) == [None] * 20
        found = await store.events(limit=1000)
        assert [e.thread for e in found] == [bytes([n]) * 16 for n in range(10, 30)]

    async def test_a_dropped_share_takes_its_events_personal_data(self, store: Store) -> None:
        """The event stays, its personal data does not (withdrawn or expired share)."""
        shared, other = event(T1, 0, personal=b'{"email":"a"}'), event(T1, 1, personal=b"{}")
        await store.commit(Commit(events=(shared, other)))
        await store.commit(Commit(relationships=(rel(T2),), drop=(T1,)))  # events outlive drop
        await store.commit(Commit(held_drop=((T1, shared.msg_hash), (T2, other.msg_hash))))
        found = await store.events()
        assert [e.personal for e in found] == [None, b"{}"]
        assert found[0].data == shared.data

    async def test_a_dropped_share_takes_its_fields_out_of_later_updates(
        self, store: Store
    ) -> None:
        """An address.updated event names the share each field is held under (``field_shares``,
        store/_redact.py): dropping that share takes those fields out of it and leaves the
        others byte for byte; an update left with no field keeps no personal data (§12.10-2)."""
        shared = event(T1, 0, personal=b'{"fields":{"email":"a"},"purposes":[2]}')
        sid = "evt_" + shared.msg_hash.hex()

        def update(seq: int, fields: dict[str, str], shares: dict[str, str]) -> EventRecord:
            personal = {"fields": fields, "field_purposes": {name: [2] for name in fields},
                        "field_shares": shares, "field_expires": dict.fromkeys(shares, 9_000),
                        "purposes": [2]}  # fmt: skip
            return dataclasses.replace(
                event(T1, seq), kind="address.updated",
                personal=json.dumps(personal, separators=(",", ":"), sort_keys=True).encode())

        both = update(1, {"email": "b", "phone": "1"}, {"email": sid})
        alone = update(2, {"email": "c"}, {"email": sid})
        unshared = update(3, {"phone": "2"}, {})
        await store.commit(Commit(events=(shared, both, alone, unshared)))
        await store.commit(Commit(held_drop=((T1, shared.msg_hash),)))
        found = {e.seq: e for e in await store.events()}
        assert found[0].personal is None
        kept = json.loads(found[1].personal or b"null")
        assert kept["fields"] == {"phone": "1"}
        assert kept["field_shares"] == {}
        assert b'"b"' not in (found[1].personal or b"")
        assert found[2].personal is None
        assert found[3].personal == unshared.personal

    async def test_every_cursor_and_the_events_being_retried(self, store: Store) -> None:
        """``event_cursors`` lists every consumer's; ``failing`` the events consumers retry,
        upserted by (name, pos) and gone with ``failing_done`` (schema v12)."""
        assert await store.event_cursors() == {}
        assert await store.failing() == []
        first = FailingEvent("crm", 4, 1_000, 1, "HTTP 500")
        other = FailingEvent("bi", 2, 1_500, 3, "HTTP 410", gone=True)
        await store.commit(Commit(event_cursors=(("crm", 3), ("bi", 1)), failing=(first, other)))
        assert await store.event_cursors() == {"crm": 3, "bi": 1}
        again = dataclasses.replace(first, attempts=2, error="timeout")
        await store.commit(Commit(failing=(again,), failing_done=(("bi", 9),)))  # 9: none
        assert await store.failing("crm") == [again]
        assert await store.failing() == [other, again]
        await store.commit(Commit(failing_done=(("crm", 4),), event_cursors=(("crm", 4),)))
        assert await store.failing() == [other]
        assert await store.event_cursors() == {"crm": 4, "bi": 1}

    async def test_forgetting_a_consumer(self, store: Store) -> None:
        """``forget_consumer`` deletes one consumer's cursor, dead letters and events being
        retried, and no one else's; it says whether there was anything (docs/events.md,
        "Retention": an operator drops the cursor of a Tryton database removed)."""
        await store.commit(Commit(
            event_cursors=(("tryton:old", 2), ("crm", 5)),
            dead_letters=(DeadLetter("tryton:old", 1, 10, "x"), DeadLetter("crm", 3, 11, "y")),
            failing=(FailingEvent("tryton:old", 3, 1, 1, "x"), FailingEvent("crm", 6, 1, 1, "y")),
        ))  # fmt: skip
        assert await store.forget_consumer("tryton:old") is True
        assert await store.event_cursors() == {"crm": 5}
        assert await store.event_cursor("tryton:old") == 0
        assert [d.name for d in await store.dead_letters()] == ["crm"]
        assert [f.name for f in await store.failing()] == ["crm"]
        assert await store.forget_consumer("tryton:old") is False  # nothing left of it
        await store.commit(Commit(dead_letters=(DeadLetter("gone", 4, 12, "z"),)))
        assert await store.forget_consumer("gone") is True  # a dead letter alone is something
        assert await store.dead_letters("gone") == []
        assert (await store.counts()).dead_letters == {"crm": 1}

    async def test_counts_are_the_records_counted(self, store: Store) -> None:
        """``counts`` (what ``/metrics`` reads) tells what reading every record would."""
        empty = await store.counts()
        assert (dict(empty.relationships), empty.outbox, empty.drafts) == ({}, 0, 0)
        assert (dict(empty.dead_letters), dict(empty.failing), dict(empty.gone)) == ({}, {}, {})
        t3 = b"\x03" * 16
        await store.commit(Commit(
            relationships=(rel(T1), rel(T2, state="agreed"), rel(t3, state="agreed")),
            outbox_add=(outbox("https://a", 1), outbox("https://b", 2, T2)),
            drafts_add=(draft(T1, 0), draft(T1, 1), draft(T2, 0)),
            dead_letters=(DeadLetter("crm", 3, 10, "x"), DeadLetter("crm", 5, 11, "y"),
                          DeadLetter("bi", 3, 12, "z")),
            failing=(FailingEvent("crm", 6, 1, 1, "x"), FailingEvent("bi", 4, 1, 2, "gone",
                                                                     gone=True)),
        ))  # fmt: skip
        got = await store.counts()
        assert dict(got.relationships) == {"offered": 1, "agreed": 2}
        assert (got.outbox, got.drafts) == (2, 3)
        assert dict(got.dead_letters) == {"crm": 2, "bi": 1}
        assert dict(got.failing) == {"crm": 1, "bi": 1}
        assert dict(got.gone) == {"bi": 1}

    async def test_trimming_the_feed(self, store: Store) -> None:
        """``trim_events`` deletes the oldest events recorded before its time, up to ``upto``,
        never one in ``keep`` nor the newest, and moves ``feed_floor`` past them; a pos is
        never given again (docs/events.md, "Retention")."""
        assert await store.feed_floor() == 0
        assert await store.trim_events(0, recorded_before=10**6) == 0
        await store.commit(Commit(events=tuple(event(T1, n) for n in range(6))))
        pos = [e.pos for e in await store.events()]
        # recorded at 100 + seq: the first four are older than 104
        assert await store.trim_events(pos[-1], recorded_before=104, keep={pos[1]}) == 3
        assert [e.pos for e in await store.events()] == [pos[1], *pos[4:]]
        assert await store.feed_floor() == pos[3]
        assert await store.trim_events(pos[4], recorded_before=10**6) == 2  # pos[1] now too
        assert [e.pos for e in await store.events()] == [pos[5]]
        assert await store.trim_events(pos[-1], recorded_before=10**6) == 0  # the newest stays
        await store.commit(Commit(events=(event(T2, 0),)))
        (newest,) = [e for e in await store.events() if e.thread == T2]
        assert newest.pos > pos[-1]

    async def test_event_cursors_and_dead_letters(self, store: Store) -> None:
        assert await store.event_cursor("crm") == 0
        dead = [DeadLetter("crm", 3, 10, "HTTP 500"), DeadLetter("crm", 5, 11, "timeout"),
                DeadLetter("bi", 3, 12, "refused")]  # fmt: skip
        await store.commit(Commit(event_cursors=(("crm", 2), ("bi", 9)), dead_letters=tuple(dead)))
        await store.commit(Commit(event_cursors=(("crm", 7),), dead_letters_done=(("crm", 3),)))
        assert (await store.event_cursor("crm"), await store.event_cursor("bi")) == (7, 9)
        assert await store.dead_letters("crm") == [dead[1]]
        assert await store.dead_letters() == [dead[2], dead[1]]


# The asyncio mark on each async test (not on the class: pytest-asyncio refuses it on the sync
# ones), so that a suite in pytest-asyncio's strict mode runs them.
for _name, _test in list(vars(StoreContract).items()):
    if _name.startswith("test_") and inspect.iscoroutinefunction(_test):
        setattr(StoreContract, _name, pytest.mark.asyncio(_test))
