"""`vrm key import` of another seed never deletes an agent.db that holds something.

Before, ``vrm key import`` decided by the customer relationships alone: an agent.db holding
intentcasts and the vendors' offers to them (and no relationship yet) was deleted without a
word when another seed was imported — "Seed replaced (it held no relationships)", or, into a
directory whose seed file was missing, "Seed restored into a new data directory … copy a backup
of agent.db" right after deleting the agent.db that was there. Now such an import is refused
(exit 1, kind seed_mismatch) and agent.db is left as it was; the right seed still restores.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

from tests._cli_helpers import fails, new_home, ok, vrm
from vrmproto._keys import MasterSeed
from vrmproto.cli._home import SERVE_LOCK
from vrmproto.cli._seedtext import seed_from_text, seed_to_text
from vrmproto.client._agent_base import check_master
from vrmproto.store import Commit, IntentRecord, OfferRecord, SQLiteStore


def _intentcast_only(home: Path, seed: bytes) -> None:
    """agent.db of ``seed`` holding one intentcast and one offer, no relationship."""

    async def make() -> None:
        store = await SQLiteStore.open(home / "agent.db")
        try:
            await check_master(store, MasterSeed(seed))
            intent = IntentRecord(bytes(range(16)), "a 4-wheel-drive SUV", "Park City", None,
                                  None, None, 2_000_000_000_000, 1_700_000_000_000)  # fmt: skip
            offer = OfferRecord(intent.intent_id, bytes(32), bytes(16), "Avis",
                                "http://127.0.0.1:1", bytes(32), "a Jeep", (9900, "USD"),
                                2_000_000_000_000, (), (), 1_700_000_000_000)  # fmt: skip
            await store.commit(Commit(intents=(intent,), offers=(offer,)))
        finally:
            await store.close()

    asyncio.run(make())


def _seed_of(home: Path) -> str:
    return ok(vrm("key", "export", home=home)).stdout.strip()


def _intents(home: Path) -> int:
    async def count() -> int:
        store = await SQLiteStore.open(home / "agent.db")
        try:
            return len(await store.intents()) + len(await store.offers())
        finally:
            await store.close()

    return asyncio.run(count())


def test_another_seed_does_not_delete_intentcasts(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    mine = _seed_of(home)
    _intentcast_only(home, seed_from_text(mine))
    other = seed_to_text(os.urandom(32))
    r = fails(vrm("key", "import", home=home, stdin=other), 1, "does not match", "intentcast")
    assert "nothing was changed" in r.stderr
    assert _intents(home) == 2
    assert _seed_of(home) == mine
    # the right seed is still "unchanged"
    assert ok(vrm("--json", "key", "import", home=home, stdin=mine)).json["status"] == "unchanged"


def test_a_lost_seed_file_and_another_seed_keeps_agent_db(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    mine = _seed_of(home)
    _intentcast_only(home, seed_from_text(mine))
    (home / "seed").unlink()
    fails(vrm("key", "import", home=home, stdin=seed_to_text(os.urandom(32))), 1,
          "does not match", "intentcast")
    assert _intents(home) == 2
    assert not (home / "seed").exists()
    restored = ok(vrm("--json", "key", "import", home=home, stdin=mine))
    assert restored.json["status"] == "restored"
    assert _intents(home) == 2


def test_an_empty_store_of_another_seed_is_still_replaced(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    ok(vrm("relationships", home=home))  # binds agent.db to this seed; it holds nothing
    other = seed_to_text(os.urandom(32))
    assert ok(vrm("--json", "key", "import", home=home, stdin=other)).json["status"] == "replaced"
    assert _seed_of(home) == other



def test_another_seed_waits_for_agent_serve_to_stop(tmp_path: Path) -> None:
    """Before, the import deleted agent.db under a running `vrm agent serve`, which went on
    with the old seed, writing what vendors sent it into the deleted file."""
    home = new_home(tmp_path)
    mine = _seed_of(home)
    ok(vrm("relationships", home=home))  # agent.db bound to this seed, holding nothing
    fd = os.open(home / SERVE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as `vrm agent serve` holds it
        fails(vrm("key", "import", home=home, stdin=seed_to_text(os.urandom(32))), 2,
              "vrm agent serve")
        assert (home / "agent.db").exists()
        assert _seed_of(home) == mine
        # the same seed changes nothing, and is fine while it runs
        assert ok(vrm("--json", "key", "import", home=home, stdin=mine)).json["status"] \
            == "unchanged"
    finally:
        os.close(fd)
    assert ok(vrm("--json", "key", "import", home=home, stdin=seed_to_text(os.urandom(32)))
              ).json["status"] == "replaced"  # fmt: skip
