"""The message path made cheaper keeps what it promised (#12): no figures asserted here, only
the work each step does and what it leaves stored.

- A data.share costs the agent two Commits — the share persisted before it is sent, and the
  vendor's receipt with the outbox item's removal — and the second one also confirms the
  customer's note of the share (§5.3.1), which used to take a read and a third Commit.
- The SQLite store's point reads run on the calling thread and see every commit already made.
- A vendor takes the relationship it has just stored as it kept it, and rebuilds it from the
  store whenever the store holds anything else (another process of the same vendor wrote it).
  On a store whose commit checks the row (``expect=``), it does not even read the record: the
  commit refuses a row that moved on, and a refusal is decided only after reading it.
- An agent takes back the relationship its last step left when the store holds exactly its state,
  and rebuilds it whenever another agent on the same store (another process) moved the thread.
- A vendor without metrics whose request log is off decodes nothing to log a request; with the
  log on, every message is logged as before.
- An event's body shows the same fields as when they were listed per message.
- A relationship's live shares keep their stored form (:class:`~vrmproto._relationship.ShareMap`):
  whatever is done to them, ``to_state()`` reads back to the same shares and the same bytes, and
  ``to_state(compact=True)`` is exactly what packing them whole gives.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, Reply
from hypothesis import given
from hypothesis import strategies as st
from strategies import bodies
from test_client import ServerVendor

from vrmproto import Identity, _codec
from vrmproto._envelope import Signed, open_envelope, sign_message
from vrmproto._errors import ValidationError
from vrmproto._messages import Money, ProblemReport
from vrmproto._relationship import Relationship, ShareMap
from vrmproto._state import Role
from vrmproto._vocab import DataRecord, TermRef
from vrmproto.client import Agent, RetryPolicy, _ledger
from vrmproto.server import Endpoint, ReferencePolicy, _events, _held, _observe, _response, _warm
from vrmproto.server._metrics import MeteredStore, Metrics
from vrmproto.store import (
    Commit,
    HeldRecord,
    HistoryEntry,
    MemoryStore,
    RelationshipRecord,
    SQLiteStore,
    Store,
    StoreError,
)

YEAR_MS = 365 * 86_400_000


def in_a_year() -> int:
    return time.time_ns() // 1_000_000 + YEAR_MS


async def test_a_share_takes_two_commits_and_its_note_is_confirmed(tmp_path: Path) -> None:
    vendor = ServerVendor("Acme")
    await vendor.start()
    store = await SQLiteStore.open(tmp_path / "agent.db")
    agent = await Agent.open(store, os.urandom(32), retry=RetryPolicy(attempts=1))
    try:
        await agent.connect(vendor.url)
        before = store.stats.writes
        d = await agent.share("Acme", {"email": "ada@example.org"}, purposes=["delivery"],
                              categories=["contact"], expires_ms=in_a_year())  # fmt: skip
        assert d.confirmed
        assert store.stats.writes - before == 2
        (note,) = await agent.share_notes()
        assert note.share == d.msg_hash
        assert note.status == "confirmed"
        assert dict(note.fields) == {"email": "ada@example.org"}
        assert await agent.pending() == []
    finally:
        await agent.close()
        await store.close()
        await vendor.stop()


async def test_a_share_delivered_later_by_the_outbox_gets_its_note_confirmed() -> None:
    vendor = ServerVendor("Acme")
    await vendor.start()
    agent = await Agent.open(MemoryStore(), os.urandom(32), retry=RetryPolicy(attempts=1))
    try:
        await agent.connect(vendor.url)
        port = vendor.port
        await vendor.stop()
        d = await agent.share("Acme", {"email": "ada@example.org"}, purposes=["delivery"],
                              categories=["contact"], expires_ms=in_a_year())  # fmt: skip
        assert d.status == "queued"
        assert [n.status for n in await agent.share_notes()] == ["queued"]
        await vendor.start(port)
        run = await agent.run_outbox(now=time.time_ns() // 1_000_000 + 86_400_000)
        assert run.counts()["confirmed"] == 1
        assert [n.status for n in await agent.share_notes()] == ["confirmed"]
    finally:
        await agent.close()
        await vendor.stop()


async def test_sqlite_point_reads_see_each_commit_and_end_with_the_store(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    thread = os.urandom(16)
    assert await store.get_relationship(thread) is None
    for n in range(3):
        record = RelationshipRecord(thread, "vendor", bytes(32), bytes(32), "agreed",
                                    bytes([n]), "label", "", n)  # fmt: skip
        await store.commit(Commit(relationships=(record,)))
        assert await store.get_relationship(thread) == record  # read right after the commit
    await store.close()
    with pytest.raises(StoreError):
        await store.get_relationship(thread)


# -- the vendor keeps the relationships it just stored warm (server/_warm.py) ---------------


class CountingStore(MemoryStore):
    """A MemoryStore that counts the rebuilds of a relationship (its newest history row read)
    and the reads of a relationship record."""

    def __init__(self) -> None:
        super().__init__()
        self.head_reads = 0
        self.record_reads = 0

    async def history_head(self, thread: bytes) -> HistoryEntry | None:
        self.head_reads += 1
        return await super().history_head(thread)

    async def get_relationship(self, thread: bytes) -> RelationshipRecord | None:
        self.record_reads += 1
        return await super().get_relationship(thread)


def vendor_endpoint(store: MemoryStore) -> Endpoint:
    return Endpoint(Identity(VENDOR_SEED), store=store,
                    policy=ReferencePolicy(accepts_terms=ACCEPTED))  # fmt: skip


async def send(ep: Endpoint, customer: Customer, msg: Signed[Any]) -> None:
    response = await ep.handle_inbox(msg.envelope)
    customer.absorb(Reply(response.status, response.body, dict(response.headers)), msg)


async def warm_shares(ep: Endpoint, count: Callable[[], int]) -> tuple[int, int, Customer]:
    """A customer's offer and first share, then five more shares: ``count()`` before and after
    the five, and the customer (7 messages in all)."""
    customer = Customer(Identity(VENDOR_SEED))
    await send(ep, customer, customer.offer(*ACCEPTED))
    await send(ep, customer, customer.share({"email": "a@b.c"}))
    before = count()
    for n in range(5):
        await send(ep, customer, customer.share({"email": f"{n}@b.c"}))
    return before, count(), customer


async def test_a_vendor_does_not_rebuild_the_relationship_it_just_stored() -> None:
    store = CountingStore()
    before, after, customer = await warm_shares(vendor_endpoint(store), lambda: store.head_reads)
    assert after == before
    assert len(await store.history(customer.thread)) == 15  # 7 messages, 7 receipts, 1 accept


@pytest.mark.parametrize("metered", [False, True], ids=["store", "metered"])
async def test_a_vendor_does_not_read_the_record_of_a_relationship_it_kept(metered: bool) -> None:
    """The store checks the kept record at the commit (``expect=``), so the step reads none;
    with metrics on too: ``MeteredStore`` passes ``expect=`` on to the store it wraps (and a
    metered store that does not check is not taken to)."""
    store = CountingStore()
    used: Store = MeteredStore.wrap(store, Metrics()) if metered else store
    assert _warm.checks_expect(used) is used
    assert _warm.checks_expect(MeteredStore.wrap(OwnCommitStore(), Metrics())) is None
    before, after, customer = await warm_shares(vendor_endpoint(used), lambda: store.record_reads)
    assert after == before
    assert len(await store.history(customer.thread)) == 15


class OwnCommitStore(CountingStore):
    """A store whose commit is its own (a subclass's, a wrapper's): not known to check."""

    async def commit(self, c: Commit) -> None:
        await super().commit(c)


async def test_a_vendor_reads_the_record_when_its_store_is_not_known_to_check() -> None:
    store = OwnCommitStore()
    assert _warm.checks_expect(store) is None
    spied = MemoryStore()

    async def spy(c: Commit) -> None: ...

    spied.commit = spy  # type: ignore[method-assign]
    assert _warm.checks_expect(spied) is None
    ep = vendor_endpoint(store)
    customer = Customer(Identity(VENDOR_SEED))
    await send(ep, customer, customer.offer(*ACCEPTED))
    before = (store.record_reads, store.head_reads)
    for n in range(5):
        await send(ep, customer, customer.share({"email": f"{n}@b.c"}))
    assert store.record_reads == before[0] + 5  # read, and then taken warm: no rebuild
    assert store.head_reads == before[1]


async def test_a_record_changed_elsewhere_is_not_overwritten_by_the_kept_one() -> None:
    """A write that moved no chain head (a relabel, say) still changes the row: the kept record
    no longer matches, the commit conflicts, and the step runs again from what is stored."""
    store = CountingStore()
    ep = vendor_endpoint(store)
    customer = Customer(Identity(VENDOR_SEED))
    await send(ep, customer, customer.offer(*ACCEPTED))
    record = await store.get_relationship(customer.thread)
    assert record is not None
    await store.commit(Commit(relationships=(dataclasses.replace(record, label="Ada"),)))
    await send(ep, customer, customer.share({"email": "a@b.c"}))
    stored = await store.get_relationship(customer.thread)
    assert stored is not None
    assert stored.label == "Ada"
    assert len(await store.history(customer.thread)) == 5


async def test_a_refusal_on_a_kept_relationship_is_decided_on_the_store() -> None:
    """Another process took the thread on (here: a second endpoint on the store); the message
    after that one is refused by the kept, stale relationship (its prev does not link there),
    so the step reads the record, sees it moved, and accepts the message from the store."""
    store = CountingStore()
    one, two = vendor_endpoint(store), vendor_endpoint(store)
    customer = Customer(Identity(VENDOR_SEED))
    await send(one, customer, customer.offer(*ACCEPTED))
    await send(one, customer, customer.share({"email": "0@b.c"}))  # one keeps it warm
    await send(two, customer, customer.share({"email": "1@b.c"}))
    share = customer.share({"email": "2@b.c"})
    response = await one.handle_inbox(share.envelope)
    assert response.status == 200, response.body
    assert len(await store.history(customer.thread)) == 9


async def test_a_relationship_changed_elsewhere_is_rebuilt_from_the_store() -> None:
    """Two endpoints on one store (two processes of one vendor): each message goes to the other
    one, which must see what the first stored, not what it kept itself."""
    store = CountingStore()
    one, two = vendor_endpoint(store), vendor_endpoint(store)
    customer = Customer(Identity(VENDOR_SEED))
    await send(one, customer, customer.offer(*ACCEPTED))
    for n in range(6):
        await send((two, one)[n % 2], customer, customer.share({"email": f"{n}@b.c"}))
    assert store.head_reads >= 6  # every step rebuilt: the record had moved on
    history = await store.history(customer.thread)
    assert [h.index for h in history] == list(range(15))


# -- the agent takes back the relationship its last step left (client/_ledger.py) ----------


def count_rebuilds(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every relationship the agents' ledgers rebuild from a stored record, by thread."""
    rebuilt: list[bytes] = []
    load = _ledger._records.load

    def counting(record: RelationshipRecord, *args: Any, **kw: Any) -> Relationship:
        rebuilt.append(record.thread)
        return load(record, *args, **kw)

    monkeypatch.setattr(_ledger._records, "load", counting)
    return rebuilt


async def share(agent: Agent, n: int) -> None:
    d = await agent.share("Acme", {"email": f"{n}@example.org"}, purposes=["delivery"],
                          categories=["contact"], expires_ms=in_a_year())  # fmt: skip
    assert d.confirmed, (d.status, d.error)


async def test_an_agent_does_not_rebuild_the_relationship_its_last_step_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rebuilt = count_rebuilds(monkeypatch)
    vendor = ServerVendor("Acme")
    await vendor.start()
    agent = await Agent.open(MemoryStore(), os.urandom(32), retry=RetryPolicy(attempts=1))
    try:
        await agent.connect(vendor.url)
        await share(agent, 0)
        before = len(rebuilt)
        for n in range(1, 6):
            await share(agent, n)
        assert len(rebuilt) == before
        (rel,) = await agent.relationships()
        assert len(rel.shares) == 6
    finally:
        await agent.close()
        await vendor.stop()


async def test_an_agent_rebuilds_a_relationship_another_process_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two agents on one data directory (two vrm processes) share in turn in one relationship:
    each must sign after what the other stored, not after what it kept itself."""
    rebuilt = count_rebuilds(monkeypatch)
    vendor = ServerVendor("Acme")
    await vendor.start()
    seed = os.urandom(32)
    stores = [await SQLiteStore.open(tmp_path / "agent.db") for _ in range(2)]
    one, two = [await Agent.open(s, seed, retry=RetryPolicy(attempts=1)) for s in stores]
    try:
        await one.connect(vendor.url)
        for n in range(6):
            await share((one, two)[n % 2], n)  # refused (chain_broken) if a stale one signed
        assert len(rebuilt) >= 5  # each step after the other agent's rebuilt
        (rel,) = await two.relationships()
        assert len(rel.shares) == 6
        history = await stores[0].history(rel.thread)
        assert [h.index for h in history] == list(range(len(history)))
    finally:
        for agent in (one, two):
            await agent.close()
        for store in stores:
            await store.close()
        await vendor.stop()


_HASHES = st.binary(min_size=32, max_size=32)
_EXPIRES = st.integers(min_value=0, max_value=2**53 - 1)
_SHARE_OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), _HASHES, _EXPIRES),
    st.tuples(st.just("pop"), st.integers(min_value=0, max_value=40), st.booleans()),
    st.tuples(st.just("del"), st.integers(min_value=0, max_value=40), st.booleans()),
    st.tuples(st.just("update"), st.dictionaries(_HASHES, _EXPIRES, max_size=3), st.booleans()),
    st.tuples(st.just("pack"), st.none(), st.none()),
    st.tuples(st.just("reload"), st.none(), st.none()),
), max_size=40)  # fmt: skip


def _packed_whole(rel: Relationship) -> bytes:
    """to_state() as it was before ShareMap: the whole map packed in one call."""
    stored = _codec.decode_form(rel.to_state(compact=True))
    stored["shares"] = [[k, v] for k, v in sorted(rel.shares.items())]
    return _codec.pack_sorted(stored)


@given(_SHARE_OPS)
def test_shares_kept_packed_are_the_bytes_packing_them_whole_gives(ops: list[Any]) -> None:
    rel = Relationship(role=Role.VENDOR, identity=Identity(bytes(32)), thread=bytes(16),
                       peer_key=bytes(range(32)), peer_enc_key=bytes(32))  # fmt: skip
    for op, a, b in ops:
        keys = sorted(rel.shares)
        if op == "set":
            rel.shares[a] = b
        elif op in ("pop", "del") and keys:
            key = keys[a % len(keys)] if b else bytes(32 - len(keys)) + b"\xff" * len(keys)
            if op == "pop":
                rel.shares.pop(key, None)
            elif key in rel.shares:
                del rel.shares[key]
        elif op == "update":
            (rel.shares.update if b else rel.shares.__ior__)(a)
        elif op == "reload":
            rel = Relationship.from_state(rel.to_state(), identity=rel.identity)
        assert isinstance(rel.shares, ShareMap)
        state = rel.to_state()
        assert rel.to_state(compact=True) == _packed_whole(rel)
        again = Relationship.from_state(state, identity=rel.identity)
        assert again.shares == rel.shares
        assert again.to_state() == state
        assert again.to_state(compact=True) == _packed_whole(rel)


def test_a_share_that_cannot_be_packed_changes_nothing() -> None:
    shares = ShareMap([(b"a" * 32, 1)])
    before = shares.region(), shares.sorted_packed()
    with pytest.raises((OverflowError, TypeError, ValueError)):
        shares[b"b" * 32] = 2**70
    assert dict(shares) == {b"a" * 32: 1}
    assert (shares.region(), shares.sorted_packed()) == before


# -- a request nobody logs or counts is not decoded for it (server/_observe.py) ---------------


async def test_requests_are_summarised_only_for_a_log_or_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    summarised: list[bytes] = []
    summarize = _observe.summarize

    def counting(body: bytes) -> Any:
        summarised.append(body)
        return summarize(body)

    monkeypatch.setattr(_observe, "summarize", counting)
    logger = logging.getLogger("vrmproto.server.requests")
    lines: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record)

    vendor = ServerVendor("Acme")
    await vendor.start()
    agent = await Agent.open(MemoryStore(), os.urandom(32), retry=RetryPolicy(attempts=1))
    keep, level = Keep(), logger.level
    try:
        await agent.connect(vendor.url)
        logger.setLevel(logging.WARNING)
        await share(agent, 0)
        assert summarised == []
        assert lines == []
        logger.addHandler(keep)
        logger.setLevel(logging.INFO)
        await share(agent, 1)
        assert len(summarised) == 1
        assert [r.fields["kind"] for r in lines] == ["data.share"]  # type: ignore[attr-defined]
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
        await agent.close()
        await vendor.stop()


# -- an event's body: the shown fields listed once per body class (server/_events.py) ---------


class _Carrier:
    """What _events._body reads of a message: its body."""

    def __init__(self, body: Any) -> None:
        self.body = body


def _plain_before(value: Any) -> Any:
    """How an event's values were made JSON before #12: converted before the encoding (and,
    since session 14, a term with its params when it has any: docs/events.md)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, TermRef):
        ref = {"id": value.id, "version": value.version}
        return ref | {"params": dict(value.params)} if value.params else ref
    if isinstance(value, Money):
        return {"amount": value.amount, "currency": value.currency}
    if isinstance(value, (tuple, list)):
        return [_plain_before(v) for v in value]
    return value


@given(bodies)
def test_an_events_body_shows_what_listing_the_fields_per_message_showed(body: Any) -> None:
    listed = {
        f.name: _plain_before(getattr(body, f.name))
        for f in dataclasses.fields(body)
        if f.name not in _events._SKIPPED_FIELDS and getattr(body, f.name) is not None
    }  # the definition before #12
    shown = _events._body(_Carrier(body))  # type: ignore[arg-type]
    assert list(shown) == list(listed)
    # the values are converted by the encoder now: the same JSON, byte for byte
    before = json.dumps(listed, separators=(",", ":"), sort_keys=True).encode()
    assert _events._dumps(shown) == before
    assert _events._dumps({"body": shown, "erase": ["evt_00"]}) == (
        json.dumps({"body": listed, "erase": ["evt_00"]}, separators=(",", ":"),
                   sort_keys=True).encode()
    )  # fmt: skip


# -- held rows: a field shape once accepted is not validated again (server/_held.py) ---------


def test_a_value_of_safe_length_is_always_short_enough() -> None:
    """The premise of the fast path: SAFE_VALUE_CHARS characters of the widest UTF-8 (4 bytes,
    a lone surrogate 3) are still a value DataRecord accepts (§6.8-3)."""
    for char in ("\U0001f600", "\udc80"):
        DataRecord("note", char * _held.SAFE_VALUE_CHARS, 1, "provided", 0, (1,))


_FIELD_NAMES = st.sampled_from(["email", "name", "note", "Bad-Name", "x" * 65, "a.b", "a..b"])
_VALUES = st.one_of(st.text(max_size=40), st.text(min_size=1020, max_size=1100),
                    st.just("\U0001f600" * 1025), st.just("é" * 2049))  # fmt: skip


@given(st.lists(st.tuples(_FIELD_NAMES, _VALUES), min_size=1, max_size=6),
       st.sampled_from([(2,), (1, 2, 2), (3, 1)]), st.booleans())  # fmt: skip
def test_held_rows_are_exactly_what_data_records_give(
    fields: list[tuple[str, str]], purposes: tuple[int, ...], twice: bool
) -> None:
    """merge_fields gives the rows a DataRecord per field gives, or refuses the first field a
    DataRecord refuses — the shapes it skips validating included (run twice: the second time
    every accepted shape is known)."""
    by_name = dict(fields)
    expected: list[HeldRecord] | str = []
    for name, value in by_name.items():
        try:
            r = DataRecord(name, value, _held.suggest_category(name), "provided", 5, purposes)
        except ValidationError:
            expected = f"$.sealed.content.fields.{name}"[:200]  # where merge_fields puts it
            break
        assert isinstance(expected, list)
        expected.append(HeldRecord(bytes(16), r.field, r.value, r.category, r.source,
                                   r.collected, r.purposes, bytes(32), 9))  # fmt: skip
    for _ in range(2 if twice else 1):
        try:
            got: list[HeldRecord] | str = _held.merge_fields(
                bytes(16), {}, by_name, source_msg=bytes(32), now=5, categories=None,
                purposes=purposes, expires_ms=9)  # fmt: skip
        except ValidationError as exc:
            got = exc.path
        assert got == expected


def test_to_state_writes_the_term_lists_as_they_are_now() -> None:
    """The wire form of a term list is kept with the tuple it came from: a list replaced is
    written anew, one kept is written as before (the bytes packing it afresh gives)."""
    rel = Relationship(role=Role.VENDOR, identity=Identity(bytes(32)), thread=bytes(16),
                       peer_key=bytes(range(32)), peer_enc_key=bytes(32))  # fmt: skip
    one, two = TermRef("vrm.one", 1, bytes(32)), TermRef("vrm.two", 2, bytes(range(32)))
    for terms, offered in (((one,), (one, two)), ((one, two), (one, two)), ((), (two,))):
        rel.terms, rel.offered, rel.counter = terms, offered, offered
        stored = _codec.decode_form(rel.to_state(compact=True))
        assert _codec.decode_form(rel.to_state())[0]["terms"] == stored["terms"]
        assert stored["terms"] == [t.to_wire() for t in terms]
        assert stored["offered"] == stored["counter"] == [t.to_wire() for t in offered]
        assert rel.to_state(compact=True) == _packed_whole(rel)


# -- the peek before verifying reads a usual envelope once (server/_response.py) -------------


@given(bodies, st.binary(max_size=3), st.integers(min_value=0, max_value=900))
def test_a_peek_is_what_decoding_the_envelope_gives(body: Any, junk: bytes, at: int) -> None:
    """The usual-layout look gives the Peek the generic decoder gives, for every message type
    and for the same envelope with bytes changed (then it may fall back, never differ)."""
    sender = Identity(bytes(32))
    to = None if isinstance(body, ProblemReport) else bytes(range(32))
    msg = sign_message(body, identity=sender, recipient=to, thread=bytes(16), prev=None,
                       now=1_700_000_000_000, msg_id=bytes(16))  # fmt: skip
    for data in (msg.envelope, msg.envelope[:at] + junk + msg.envelope[at + len(junk):]):
        assert _response.peek(data) == _response.decode_peek(data)
        assert _response.peek_sender(data) == _response.decode_peek(data).sender


def test_open_envelope_after_a_peek_is_open_envelope() -> None:
    """The reading a peek kept serves only the same bytes with the same limits."""
    sender, vendor = Identity(bytes(32)), Identity(bytes(range(32)))
    msgs = [
        sign_message(ProblemReport(code="malformed", detail=str(n)), identity=sender,
                     recipient=vendor.public_key, thread=bytes(16), prev=None,
                     now=1_700_000_000_000, msg_id=bytes([n]) * 16)
        for n in range(2)
    ]  # fmt: skip
    _response.peek(msgs[0].envelope)
    opened = open_envelope(msgs[1].envelope, now=1_700_000_000_001)
    assert opened.envelope == msgs[1].envelope
    assert opened.body.detail == "1"
