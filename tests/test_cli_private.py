"""The data a person's ``vrm`` keeps is theirs alone, and what went out is never reported lost
(issue 10, items 11 and 13; spec §11.11-2, §11.13-1).

- data directories 0700 and their files 0600 — the agent's and a vendor's, the SQLite WAL and
  SHM files included — and a looser one found is tightened, with a warning;
- the seed is read from a prompt or stdin; as an argument it still works, with a warning;
- `vrm share` that delivered exits 0 when only its note could not be written;
- several `vrm address set` at once on one data directory lose no update.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._cli_helpers import (
    ROOT,
    VendorHost,
    VendorProcess,
    cli_env,
    new_home,
    vendor_host,
    vrm,
    vrm_command,
)
from vrmproto._envelope import open_envelope
from vrmproto.cli._seedtext import seed_to_text
from vrmproto.client._ledger import LOCK_PREFIX
from vrmproto.store import SQLiteStore

WARNING = "vrm: warning:"
ARGUMENT = "can be seen by other users"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what most systems give; the children inherit it
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def host() -> Iterator[VendorHost]:
    with vendor_host("avis") as h:
        yield h


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return new_home(tmp_path)


def test_a_data_directory_others_could_read_is_made_private_with_a_warning(
    home: Path, host: VendorHost
) -> None:
    r = vrm("connect", host["avis"].url, "--json", home=home)
    assert r.code == 0, r
    assert WARNING not in r.stderr
    for name in ("agent.db", "agent.db-wal", "agent.db-shm", "seed", "settings.json"):
        if (home / name).exists():
            assert mode(home / name) == 0o600, name
    assert mode(home) == 0o700

    home.chmod(0o755)  # as an older vrm, a restore or a careless copy left it
    for name in ("agent.db", "seed"):
        (home / name).chmod(0o644)
    r = vrm("relationships", "--json", home=home)
    assert r.code == 0, r
    assert mode(home) == 0o700
    assert mode(home / "agent.db") == mode(home / "seed") == 0o600
    warnings = [line for line in r.stderr.splitlines() if line.startswith(WARNING)]
    assert len(warnings) == 3, r.stderr
    assert all("could be read by other users" in w for w in warnings)
    again = vrm("relationships", "--json", home=home)
    assert WARNING not in again.stderr  # fixed once, for good


def test_init_into_an_existing_open_directory_makes_it_private(tmp_path: Path) -> None:
    path = tmp_path / "you"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    r = vrm("init", home=path)
    assert r.code == 0, r
    assert mode(path) == 0o700
    assert WARNING in r.stderr


def test_a_vendor_data_directory_and_database_are_private(tmp_path: Path) -> None:
    config = tmp_path / "shop.toml"
    config.write_text('name = "Corner Shop"\naccepts_terms = "all"\n')
    data = tmp_path / "shop-data"
    data.mkdir()
    data.chmod(0o755)
    first = VendorProcess("--config", str(config), "--data-dir", str(data), "--no-advertise")
    first.stop()
    assert mode(data) == 0o700
    for path in data.iterdir():
        if path.is_file():
            assert mode(path) == 0o600, path.name
    assert mode(data / "vendor.db") == 0o600

    data.chmod(0o755)
    (data / "vendor.db").chmod(0o644)
    second = VendorProcess("--config", str(config), "--data-dir", str(data), "--no-advertise")
    second.proc.send_signal(signal.SIGTERM)
    _, err = second.proc.communicate(timeout=15)
    assert mode(data) == 0o700
    assert mode(data / "vendor.db") == 0o600
    assert err.count(WARNING) == 2, err


def test_key_import_reads_the_seed_from_stdin_and_warns_about_an_argument(
    home: Path, tmp_path: Path
) -> None:
    text = vrm("key", "export", home=home).stdout.strip()
    restored = tmp_path / "restored"
    r = vrm("key", "import", "--json", home=restored, stdin=text + "\n")
    assert r.code == 0, r
    assert r.json["status"] == "created"
    assert WARNING not in r.stderr
    assert vrm("key", "export", home=restored).stdout.strip() == text
    # words on several lines, as someone copied them from paper
    r = vrm("key", "import", "--json", home=home, stdin="\n".join(text.split("-")) + "\n")
    assert (r.code, r.json["status"]) == (0, "unchanged"), r

    r = vrm("key", "import", text, "--json", home=home)  # still works, with a warning
    assert (r.code, r.json["status"]) == (0, "unchanged"), r
    assert WARNING in r.stderr
    assert ARGUMENT in r.stderr

    empty = vrm("key", "import", home=tmp_path / "none", stdin="")
    assert empty.code == 2, empty
    assert "no seed given" in empty.stderr
    wrong = vrm("key", "import", home=tmp_path / "none", stdin=seed_to_text(os.urandom(32))[:-3])
    assert wrong.code == 2, wrong


def test_a_share_is_noted_in_the_store_even_beside_an_unreadable_old_notes_file(
    home: Path, host: VendorHost
) -> None:
    assert vrm("connect", host["avis"].url, home=home).code == 0
    (home / "shares.json").mkdir()  # an earlier release's notes file that cannot be read
    r = vrm("share", "avis", "email=doc@example.org", "--json", home=home)
    assert r.code == 0, r
    assert r.json["status"] == "confirmed"
    assert r.json["noted"] is True  # the note is stored with the share
    assert WARNING in r.stderr
    assert "shares.json" in r.stderr  # left as it was, and said so
    assert (home / "shares.json").is_dir()
    rels = vrm("relationships", "--json", home=home).json["relationships"]
    assert rels[0]["shares"][0]["fields"] == ["email"]


def test_the_notes_files_of_an_earlier_release_are_imported_once(home: Path) -> None:
    """intents.json and shares.json as 25ceebf's `vrm` wrote them (tests/data/v2) go into the
    store the first time the data directory is opened, and are kept as ``.imported`` copies."""
    assert vrm("outbox", home=home).code == 0  # makes agent.db
    fixtures = ROOT / "tests" / "data" / "v2"
    intents_doc = json.loads((fixtures / "intents.json").read_text())
    shares_doc = json.loads((fixtures / "shares.json").read_text())
    for name in ("intents.json", "shares.json"):
        (home / name).write_bytes((fixtures / name).read_bytes())
    first = vrm("outbox", home=home)
    assert first.code == 0, first
    assert "not imported" in first.stderr  # the note of a share still a draft names no share
    assert vrm("outbox", home=home).code == 0  # nothing left to import
    assert not (home / "intents.json").exists()
    assert (home / "intents.json.imported").read_bytes() == (fixtures / "intents.json").read_bytes()
    assert (home / "shares.json.imported").exists()

    async def stored() -> tuple[Any, Any, Any]:
        store = await SQLiteStore.open(home / "agent.db")
        try:
            return await store.intents(), await store.offers(), await store.share_notes()
        finally:
            await store.close()

    intents, offers, notes = asyncio.run(stored())
    (cast,) = intents_doc["items"]
    assert [i.intent_id.hex() for i in intents] == [cast["intent"]]
    assert [(o.intent_id.hex(), o.hash.hex()) for o in offers] == [
        (cast["intent"], o["hash"]) for o in cast["offers"]]
    assert sorted(n.share.hex() for n in notes) == sorted(
        n["hash"] for n in shares_doc["items"] if n["hash"])


def test_four_address_updates_at_once_on_one_data_directory_lose_nothing(
    home: Path, host: VendorHost
) -> None:
    """Four `vrm address set` processes at once: each reports its update confirmed or queued,
    none fails, and after `vrm outbox run` the vendor holds all four."""
    thread = vrm("connect", host["avis"].url, "--json", home=home).json["thread"]
    procs = [
        subprocess.Popen([*vrm_command(), "address", "set", f"city=city {n}", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=cli_env(home), cwd=ROOT)
        for n in range(4)
    ]
    outcomes = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outcomes, strict=True):
        # 0 confirmed, 3 queued (the README's exit codes): queued when the vendor is slower
        # than the command's timeout; an update another process delivered is confirmed
        assert (p.returncode, json.loads(out)["outcome"]) in ((0, "done"), (3, "queued")), err
        assert json.loads(out)["counts"]["failed"] == 0, out
    ran = vrm("outbox", "run", "--json", home=home)
    assert ran.code == 0, ran
    assert ran.json["waiting"] == 0

    async def vendor_types() -> list[str]:
        entries = await host["avis"].store.history(bytes.fromhex(thread))
        return [open_envelope(e.envelope, now=0, check_time=False).type for e in entries]

    assert host.call(vendor_types()).count("address.update") == 4
    cmp = vrm("history", "avis", "--compare", "--json", home=home)
    assert cmp.json["comparison"]["equal"] is True, cmp




async def test_a_command_that_waits_for_another_vrm_says_so_and_then_goes_on(
    home: Path, host: VendorHost
) -> None:
    """While another process holds a relationship (here: this test, through the store's lock),
    `vrm address set` says it waits for it, and sends once the lock is free (§11.11-2)."""
    connected = await asyncio.to_thread(vrm, "connect", host["avis"].url, "--json", home=home)
    thread = bytes.fromhex(connected.json["thread"])
    async with await SQLiteStore.open(home / "agent.db") as store:
        async with store.lock(LOCK_PREFIX + thread):
            proc = await asyncio.create_subprocess_exec(
                *vrm_command(), "address", "set", "city=Park City", "--json", env=cli_env(home),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert proc.stderr is not None
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line.decode().startswith(
                "vrm: warning: another vrm is working on this relationship"), line
            assert "retrying" in line.decode()
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    assert json.loads(out)["counts"]["confirmed"] == 1
