"""PostgresStore on a real, private PostgreSQL: the store contract, durability, group commit,
versioned migrations, locks and uniqueness across processes (spec §12, §12.7-4, §11.11-2)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import _postgres
import aiohttp
import pytest
import test_store_model as store_model
from _broken_vendor import CONNECTION_LIMITS, make_endpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrmproto import (
    Identity,
    Limits,
    Relationship,
    Role,
    TermRef,
    TermsOffer,
    latest,
    open_envelope,
)
from vrmproto._binding import CONTENT_TYPE, DEFAULT_INBOX_PATH, decode_replies
from vrmproto.server import Endpoint, ReferencePolicy, serve
from vrmproto.store import (
    Commit,
    MemoryStore,
    PostgresConfig,
    PostgresStore,
    Store,
    StoreConflict,
    StoreError,
)
from vrmproto.store._pg_cluster import PrivateCluster
from vrmproto.store._pg_schema import SCHEMA_VERSION, migrate
from vrmproto.testing import Outcome, run_suite
from vrmproto.testing.store_contract import (
    BOB,
    T1,
    T2,
    StoreContract,
    dedupe,
    draft,
    entry,
    rel,
    thread_record,
)

asyncpg = pytest.importorskip(
    "asyncpg", reason="asyncpg is not installed (pip install -e '.[dev]')"
)

ROOT = Path(__file__).resolve().parents[1]

ACCEPTS = ("vrm.no-tracking", "vrm.no-third-party")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# the private cluster (one per session) and a fresh schema per test
postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config


class TestPostgresStore(StoreContract):
    """The whole store contract (vrmproto.testing.store_contract) on PostgreSQL."""

    @pytest.fixture
    async def store(self, postgres_config: PostgresConfig) -> AsyncIterator[Store]:
        s = await PostgresStore.open(postgres_config)
        yield s
        await s.close()


@pytest.fixture
async def pg_store(postgres_config: PostgresConfig) -> AsyncIterator[PostgresStore]:
    async with await PostgresStore.open(postgres_config) as s:
        yield s


# -- settings, schema ----------------------------------------------------------------------------


async def test_durable_settings_and_schema_version(pg_store: PostgresStore) -> None:
    settings = await pg_store.settings()
    assert settings["synchronous_commit"] == "on"  # whatever the server's default
    assert settings["search_path"] == pg_store.config.schema
    assert settings["schema_version"] == SCHEMA_VERSION


async def test_commits_are_durable_even_where_the_database_defaults_to_asynchronous(
    postgres_cluster: PrivateCluster,
) -> None:
    """§12.7-2: the store's sessions run with synchronous_commit = on, whatever the database's
    own setting (here off): a receipt waits for the WAL flush."""
    conn = await asyncpg.connect(postgres_cluster.dsn)
    try:
        await conn.execute("CREATE DATABASE lax")
        await conn.execute("ALTER DATABASE lax SET synchronous_commit = off")
        lax = postgres_cluster.dsn.replace("/postgres?", "/lax?")
        other = await asyncpg.connect(lax)
        assert await other.fetchval("SHOW synchronous_commit") == "off"
        await other.close()
        async with await PostgresStore.open(lax) as s:
            assert (await s.settings())["synchronous_commit"] == "on"
            await s.commit(Commit(meta=(("k", b"v"),)))
            assert await s.get_meta("k") == b"v"
    finally:
        await conn.execute("DROP DATABASE IF EXISTS lax WITH (FORCE)")
        await conn.close()


async def test_the_private_cluster_listens_on_no_tcp_port(
    postgres_cluster: PrivateCluster,
) -> None:
    conn = await asyncpg.connect(postgres_cluster.dsn)
    try:
        assert await conn.fetchval("SHOW listen_addresses") == ""
        assert await conn.fetchval("SELECT inet_server_addr()") is None  # a Unix socket
    finally:
        await conn.close()


def test_config_from_url_takes_our_settings_and_leaves_the_rest() -> None:
    config = PostgresConfig.from_url(
        "postgresql://u@db.example/vrm?vrm_schema=crm&vrm_pool_size=8&vrm_writers=3&sslmode=require"
    )
    assert (config.schema, config.pool_size, config.writers) == ("crm", 8, 3)
    assert config.dsn == "postgresql://u@db.example/vrm?sslmode=require"
    with pytest.raises(StoreError, match="schema name"):
        PostgresConfig("postgresql://", schema="x; DROP TABLE history")
    with pytest.raises(ValueError, match="at least 1"):
        PostgresConfig("postgresql://", writers=0)


async def test_stores_opening_a_fresh_schema_at_once_migrate_it_once(
    postgres_config: PostgresConfig,
) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(postgres_config) for _ in range(4)))
    try:
        await stores[0].commit(Commit(meta=(("k", b"v"),)))
        assert [await s.get_meta("k") for s in stores] == [b"v"] * 4
        assert (await stores[3].settings())["schema_version"] == SCHEMA_VERSION
    finally:
        for s in stores:
            await s.close()


async def test_newer_schema_is_refused(postgres_config: PostgresConfig) -> None:
    async with await PostgresStore.open(postgres_config) as s:
        await s._pooled(lambda conn: conn.execute("UPDATE schema_version SET version = 999"))
    with pytest.raises(StoreError, match="newer"):
        await PostgresStore.open(postgres_config)


async def _at_version_1(config: PostgresConfig) -> None:
    """The schema as version 1 of this store made it, with a few rows."""
    conn = await asyncpg.connect(config.dsn, server_settings={"search_path": config.schema})
    try:
        assert await migrate(conn, config.schema, target=1) == 1
        await conn.execute(
            "INSERT INTO relationships VALUES ($1, 'customer', $2, $3, 'offered', $4, 'Avis', "
            "'https://avis.example/vrm', 1000)", T1, b"A" * 32, BOB, b"state",
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO history VALUES ($1, 0, $2, $3, $4, 'out', 2000)",
            T1, entry(T1, 0).msg_hash, entry(T1, 0).entry_hash, b"envelope-0",
        )  # fmt: skip
        await conn.execute("INSERT INTO meta VALUES ('k', 'v')")
        await conn.execute(
            "INSERT INTO outbox (destination, thread, msg_hash, envelope, attempts, "
            "next_attempt_ms, last_error, created_ms) VALUES ('https://a', $1, $2, 'e', 0, 7, "
            "'', 5)", T2, b"h" * 32,
        )  # fmt: skip
    finally:
        await conn.close()


async def test_a_version_1_schema_migrates_to_2_keeping_every_row(
    postgres_config: PostgresConfig,
) -> None:
    await _at_version_1(postgres_config)
    async with await PostgresStore.open(postgres_config) as s:
        assert (await s.settings())["schema_version"] == SCHEMA_VERSION == 11
        stored = await s.get_relationship(T1)
        assert stored is not None
        assert (stored.state, stored.data) == ("offered", b"state")
        assert await s.history(T1) == [entry(T1, 0)]
        assert await s.get_meta("k") == b"v"
        assert [o.destination for o in await s.outbox_for(T2)] == ["https://a"]
        await s.commit(Commit(threads=(thread_record(T1),), drafts_add=(draft(T1, 0),)))
        assert await s.drafts(T1) == [draft(T1, 0)]


async def test_a_failed_migration_step_leaves_the_schema_as_it_was(
    postgres_config: PostgresConfig,
) -> None:
    """A step runs in one transaction: if any statement of it fails (here a table of version 2
    that someone made by hand), the schema stays at version 1 with every row and no new table."""
    await _at_version_1(postgres_config)
    conn = await asyncpg.connect(postgres_config.dsn)
    try:
        await conn.execute(f"CREATE TABLE {postgres_config.schema}.share_notes (x int)")
        with pytest.raises(StoreError, match="share_notes"):
            await PostgresStore.open(postgres_config)
        table = f"{postgres_config.schema}.schema_version"
        assert await conn.fetchval(f"SELECT version FROM {table}") == 1
        for name in ("threads", "drafts", "held"):
            assert (
                await conn.fetchval("SELECT to_regclass($1)", f"{postgres_config.schema}.{name}")
                is None
            )
        assert await conn.fetchval(f"SELECT count(*) FROM {postgres_config.schema}.history") == 1
    finally:
        await conn.close()


async def test_survives_close_and_reopen(postgres_config: PostgresConfig) -> None:
    async with await PostgresStore.open(postgres_config) as s:
        await s.commit(Commit(relationships=(rel(),), history=(entry(T1, 0),), meta=(("k", b"v"),)))
    async with await PostgresStore.open(postgres_config) as s:
        assert await s.get_relationship(T1) == rel()
        assert await s.history(T1) == [entry(T1, 0)]
        assert await s.get_meta("k") == b"v"


# -- group commit ----------------------------------------------------------------------------------


async def test_group_commit_shares_transactions(pg_store: PostgresStore) -> None:
    """Many concurrent writers commit together, as in the SQLite store: 200 Commits in a few
    transactions, each Commit still all or nothing."""
    before = pg_store.stats.transactions
    await asyncio.gather(*(pg_store.commit(Commit(meta=((f"k{n}", b"v"),))) for n in range(200)))
    transactions = pg_store.stats.transactions - before
    assert 1 <= transactions <= 20
    assert pg_store.stats.largest_batch >= 10
    assert await pg_store.get_meta("k199") == b"v"


async def test_a_lost_writer_connection_fails_its_batch_and_the_next_commit_reconnects(
    pg_store: PostgresStore,
) -> None:
    name = f"vrmproto {pg_store.config.schema}"
    await pg_store.commit(Commit(meta=(("before", b"1"),)))
    killed = await pg_store._pooled(lambda conn: conn.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = $1 AND pid <> pg_backend_pid()", name,
    ))  # fmt: skip
    assert killed >= 1
    outcomes: list[BaseException | None] = []
    for n in range(pg_store.config.writers + 1):
        try:
            await pg_store.commit(Commit(meta=((f"after{n}", b"1"),)))
            outcomes.append(None)
        except StoreError as exc:
            outcomes.append(exc)
    assert not any(isinstance(o, StoreConflict) for o in outcomes)
    assert outcomes[-1] is None  # every writer has reconnected by now
    for n, outcome in enumerate(outcomes):
        assert (await pg_store.get_meta(f"after{n}") is None) == (outcome is not None)


async def test_reads_recover_from_lost_and_cancelled_connections(pg_store: PostgresStore) -> None:
    await pg_store.commit(Commit(meta=(("k", b"v"),)))
    assert await pg_store.get_meta("k") == b"v"  # the read connections are open now
    sleeping = asyncio.create_task(pg_store._pooled(lambda c: c.execute("SELECT pg_sleep(30)")))

    async def running() -> None:  # the other read connection watches for it on the server
        while not await pg_store._pooled(lambda c: c.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' "
            "AND state = 'active'"
        )):  # fmt: skip
            pass

    await asyncio.wait_for(running(), 30)
    sleeping.cancel()  # its connection is terminated, not handed to the next reader
    with pytest.raises(asyncio.CancelledError):
        await sleeping
    name = f"vrmproto {pg_store.config.schema}"
    await pg_store._pooled(lambda conn: conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = $1 AND pid <> pg_backend_pid()", name,
    ))  # fmt: skip
    outcomes: list[bytes | StoreError | None] = []
    for _ in range(pg_store.config.pool_size + 1):
        try:
            outcomes.append(await pg_store.get_meta("k"))
        except StoreError as exc:
            outcomes.append(exc)
    assert outcomes[-1] == b"v"  # every read connection was opened again
    assert await asyncio.gather(*(pg_store.get_meta("k") for _ in range(8))) == [b"v"] * 8


# -- across processes ------------------------------------------------------------------------------

_RACER = """
import asyncio, sys
from vrmproto.testing.store_contract import BOB, dedupe, entry, rel
from vrmproto import (
    Identity,
    Limits,
    Relationship,
    Role,
    TermRef,
    TermsOffer,
    latest,
    open_envelope,
)
from vrmproto._binding import decode_replies
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import Commit, PostgresConfig, PostgresStore, StoreConflict

async def main(dsn, schema, name):
    store = await PostgresStore.open(PostgresConfig(dsn, schema=schema, pool_size=1, writers=1))
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        n = int(line)
        thread = n.to_bytes(16, "big")
        same_message = Commit(
            relationships=(rel(thread, state="offered-" + name),),
            history=(entry(thread, 0, tag=name),),
            dedupe=(dedupe(BOB, n),),
        )
        try:
            await store.commit(same_message)
            print(n, "won", flush=True)
        except StoreConflict:
            print(n, "conflict", flush=True)
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


async def _start(script: str, *args: str) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args, cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert child.stdout is not None
    first = await asyncio.wait_for(child.stdout.readline(), 60)
    if not first:
        assert child.stderr is not None
        pytest.fail((await child.stderr.read()).decode())
    return child


async def test_two_processes_committing_the_same_message_one_wins_each_time(
    postgres_config: PostgresConfig,
) -> None:
    """§12.7-4: two server processes applying the same message at once (same history slot,
    same dedupe key), 50 times: exactly one commits, the other gets StoreConflict, and the
    winner's entry, relationship row and replay answer are what is stored."""
    async with await PostgresStore.open(postgres_config) as s:  # migrate once, up front
        racers = [
            await _start(_RACER, postgres_config.dsn, postgres_config.schema, name)
            for name in ("a", "b")
        ]
        try:
            for n in range(50):
                for racer in racers:  # both are told before either answers
                    assert racer.stdin is not None
                    racer.stdin.write(b"%d\n" % n)
                await asyncio.gather(*(r.stdin.drain() for r in racers if r.stdin))
                answers = {}
                for name, racer in zip("ab", racers, strict=True):
                    assert racer.stdout is not None
                    line = await asyncio.wait_for(racer.stdout.readline(), 30)
                    got, outcome = line.decode().split()
                    assert int(got) == n
                    answers[name] = outcome
                assert sorted(answers.values()) == ["conflict", "won"], (n, answers)
                winner = next(k for k, v in answers.items() if v == "won")
                thread = n.to_bytes(16, "big")
                assert await s.history(thread) == [entry(thread, 0, tag=winner)]
                stored = await s.get_relationship(thread)
                assert stored is not None
                assert stored.state == "offered-" + winner
                assert await s.get_dedupe(BOB, dedupe(BOB, n).msg_id) == dedupe(BOB, n)
        finally:
            for racer in racers:
                assert racer.stdin is not None
                racer.stdin.close()
            for racer in racers:
                await asyncio.wait_for(racer.wait(), 30)
        assert [r.returncode for r in racers] == [0, 0]


_CRASH_CHILD = """
import asyncio, sys
from vrmproto.store import Commit, HistoryEntry, PostgresConfig, PostgresStore, RelationshipRecord

async def main(dsn, schema):
    store = await PostgresStore.open(PostgresConfig(dsn, schema=schema))
    thread = bytes(16)
    rel = RelationshipRecord(thread, "vendor", bytes(32), bytes(32), "s", b"", "", "", 0)
    await store.commit(Commit(relationships=(rel,)))
    head = await store.history_head(thread)
    i = 0 if head is None else head.index + 1
    print("ready", flush=True)
    while True:
        h = i.to_bytes(32, "big")
        await store.commit(Commit(history=(HistoryEntry(thread, i, h, h, b"x" * 200, "in", i),)))
        print(i, flush=True)
        i += 1

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_acknowledged_commits_survive_kill_9(postgres_config: PostgresConfig) -> None:
    acknowledged: list[int] = []
    for _ in range(3):
        child = await _start(_CRASH_CHILD, postgres_config.dsn, postgres_config.schema)
        try:
            assert child.stdout is not None
            acknowledged += [
                int(await asyncio.wait_for(child.stdout.readline(), 30)) for _ in range(40)
            ]
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        async with await PostgresStore.open(postgres_config) as s:
            stored = {e.index for e in await s.history(bytes(16))}
        assert set(acknowledged) <= stored
        assert stored == set(range(len(stored)))  # gap-free
    assert len(acknowledged) == 120


# -- locks (§11.11-2) ------------------------------------------------------------------------------


async def test_locks_are_shared_by_store_objects_on_one_database(
    postgres_config: PostgresConfig,
) -> None:
    async with await PostgresStore.open(postgres_config) as a, \
            await PostgresStore.open(postgres_config) as b:  # fmt: skip
        waited = asyncio.Event()
        got = asyncio.Event()

        async def take() -> None:
            async with b.lock(b"t", on_wait=waited.set):
                got.set()

        async with a.lock(b"t"), a.lock(b"u"):
            task = asyncio.create_task(take())
            await waited.wait()
            assert not got.is_set()
            async with b.lock(b"v"):  # another name is free
                pass
        await task


async def test_a_cancelled_waiter_leaves_no_lock_behind(postgres_config: PostgresConfig) -> None:
    async with await PostgresStore.open(postgres_config) as a, \
            await PostgresStore.open(postgres_config) as b:  # fmt: skip
        waited = asyncio.Event()

        async def wait_forever() -> None:
            async with b.lock(b"t", on_wait=waited.set):
                pytest.fail("took a held lock")

        async with a.lock(b"t"):
            task = asyncio.create_task(wait_forever())
            await waited.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        async with a.lock(b"t", on_wait=lambda: pytest.fail("b left it locked")):
            pass


_LOCK_HOLDER = """
import asyncio, sys
from vrmproto.store import PostgresConfig, PostgresStore

async def main() -> None:
    store = await PostgresStore.open(PostgresConfig(sys.argv[1], schema=sys.argv[2]))
    async with store.lock(b"t"):
        print("held", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_lock_is_released_when_its_holder_process_dies(
    postgres_config: PostgresConfig,
) -> None:
    async with await PostgresStore.open(postgres_config) as store:
        child = await _start(_LOCK_HOLDER, postgres_config.dsn, postgres_config.schema)
        try:
            waited = asyncio.Event()

            async def take() -> None:
                async with store.lock(b"t", on_wait=waited.set):
                    pass

            task = asyncio.create_task(take())
            await waited.wait()
        finally:
            child.kill()
            await child.wait()
        await asyncio.wait_for(task, 30)  # the server ended the dead holder's session


# -- two vendor endpoints on one database (§12.7-4) ------------------------------------------------


def _offers(vendor: bytes, n: int) -> list[tuple[bytes, bytes]]:
    """(envelope, message hash) of ``n`` terms.offer, each from a new customer."""
    terms = tuple(TermRef.of(latest(t)) for t in ACCEPTS)
    out = []
    for _ in range(n):
        me = Identity(os.urandom(32))
        rel_ = Relationship(role=Role.CUSTOMER, identity=me, thread=os.urandom(16),
                            peer_key=vendor)  # fmt: skip
        sent = rel_.send(TermsOffer(terms=terms, enc_key=me.enc_public_key), now=_now_ms(),
                         msg_id=os.urandom(16), lifetime_ms=3_600_000)  # fmt: skip
        out.append((sent.message.envelope, sent.message.hash))
    return out


async def test_two_endpoints_answer_the_same_message_with_the_same_receipt_bytes(
    postgres_config: PostgresConfig,
) -> None:
    """Two vendor endpoints (as two server processes: each its own store object, pool and
    locks) on one database receive the same terms.offer at once, 50 times: one history entry
    each time, and both senders get the same receipt bytes (§12.7-4)."""
    vendor = Identity(bytes(32))
    stores = [await PostgresStore.open(postgres_config) for _ in range(2)]
    try:
        endpoints = [
            Endpoint(vendor, store=s, policy=ReferencePolicy(accepts_terms=ACCEPTS)) for s in stores
        ]
        for envelope, msg_hash in _offers(vendor.public_key, 50):
            a, b = await asyncio.gather(*(e.handle_inbox(envelope) for e in endpoints))
            assert (a.status, b.status) == (200, 200)
            assert a.body == b.body
            receipt = open_envelope(decode_replies(a.body, limits=Limits())[0], now=_now_ms())
            assert receipt.body.ack == msg_hash
            thread = receipt.thread
            assert [h.msg_hash for h in await stores[0].history(thread)][:1] == [msg_hash]
            assert [h.msg_hash for h in await stores[1].history(thread)].count(msg_hash) == 1
        # each message landed once; the other endpoint lost the race on its keys or saw a replay
        assert sum(s.stats.writes for s in stores) == 50
    finally:
        for s in stores:
            await s.close()


# -- the reference vendor on PostgreSQL: `store = "postgresql://…"` in its file ----------------


async def test_a_vendor_file_naming_a_postgresql_store_serves_from_it(
    postgres_config: PostgresConfig, tmp_path: Path
) -> None:
    url = f"{postgres_config.dsn}&vrm_schema={postgres_config.schema}"
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "PG Rentals"\nseed = "{"11" * 32}"\naccepts_terms = "all"\n'
                      f'store = "{url}"\n')  # fmt: skip
    vendor = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from vrmproto.cli import main; main()", "vendor", "serve",
        "--config", str(config), "--memory", "--no-advertise", "--json", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert vendor.stdout is not None
        line = await asyncio.wait_for(vendor.stdout.readline(), 60)
        assert line, (await vendor.stderr.read()).decode() if vendor.stderr else "died"
        listening = json.loads(line)
        assert listening["event"] == "listening"
        ((envelope, msg_hash),) = _offers(Identity(bytes.fromhex("11" * 32)).public_key, 1)
        async with aiohttp.ClientSession() as session, session.post(
            listening["url"] + DEFAULT_INBOX_PATH, data=envelope,
            headers={"Content-Type": CONTENT_TYPE},
        ) as answer:  # fmt: skip
            assert answer.status == 200
            replies = decode_replies(await answer.read(), limits=Limits())
            receipt = open_envelope(replies[0], now=_now_ms())
        assert receipt.body.ack == msg_hash
    finally:
        vendor.send_signal(signal.SIGTERM)
        await asyncio.wait_for(vendor.wait(), 30)
    assert vendor.returncode == 0
    async with await PostgresStore.open(postgres_config) as s:
        assert [h.msg_hash for h in await s.history(receipt.thread)][:1] == [msg_hash]


@pytest.mark.integration
async def test_the_conformance_suite_passes_strict_against_a_vendor_on_postgresql(
    postgres_config: PostgresConfig,
) -> None:
    """Spec §14: every case, SHOULDs included, against the reference vendor on PostgresStore."""
    async with await PostgresStore.open(postgres_config) as store:
        server = await serve(make_endpoint(store), connection_limits=CONNECTION_LIMITS)
        try:
            result = await run_suite(server.url, seed=1_767_225_600, strict=True)
        finally:
            await server.close()
    wrong = {r.case.id: (r.outcome.value, r.actual) for r in result.records
             if r.outcome not in (Outcome.PASSED, Outcome.INFORMATIONAL)}  # fmt: skip
    assert not wrong, wrong
    assert result.exit_code() == 0


# -- the typed records against the memory model (as tests/test_store_model.py does for SQLite) -----


async def _compare_with_memory(run: list[Commit], cluster: PrivateCluster) -> None:
    memory = MemoryStore()
    expected: list[type[BaseException] | None] = []
    for c in run:
        try:
            await memory.commit(c)
            expected.append(None)
        except StoreConflict:
            expected.append(StoreConflict)
    schema = "m_" + os.urandom(8).hex()
    try:
        async with await PostgresStore.open(PostgresConfig(cluster.dsn, schema=schema)) as pg:
            got = await asyncio.gather(*(pg.commit(c) for c in run), return_exceptions=True)
            assert [None if r is None else type(r) for r in got] == expected
            assert await store_model.everything(pg) == await store_model.everything(memory)
    finally:
        await _postgres.drop_schema(cluster.dsn, schema)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(run=st.lists(store_model.commits, min_size=1, max_size=8))
def test_postgresql_and_memory_agree_on_typed_records(
    postgres_cluster: PrivateCluster, run: list[Commit]
) -> None:
    """Commits fired at once (so written in group transactions) end as the memory store's
    one-at-a-time application: same outcomes, same answers to every typed query."""
    asyncio.run(_compare_with_memory(run, postgres_cluster))
