"""``vrm history --reconcile`` after restoring a backup, as the README says to (session 22)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests._cli_helpers import VendorHost, connected, fails, hosted, ok, vrm

vendors = hosted("outfitters")
VENDOR = "Wasatch Outfitters"


def _share(home: Path, value: str) -> None:
    vrm("share", VENDOR, f"email={value}", "--purpose", "contracted-service", home=home)


def test_a_fork_made_only_by_a_message_still_waiting_says_how_to_go_on(
    tmp_path: Path, vendors: VendorHost
) -> None:
    """A person restored their data directory from a backup and, before anything else, ran
    ``vrm history VENDOR --reconcile`` (§8.3-4). A share they made since was waiting in the
    outbox (the vendor was down): the copies "fork" there, since the vendor never accepted
    it, and the command ended "your history … and theirs fork: nothing past that point was
    adopted" with no way on. Now it names the waiting message and what to do: `vrm outbox
    drop ID` (the vendor would refuse it: it links to what the backup held), then reconcile
    again — which then takes what the vendor holds."""
    home = connected(tmp_path, vendors["outfitters"].url)
    db, backup = home / "agent.db", tmp_path / "backup.db"
    ok(vrm("outbox", home=home))  # (settles the store)
    shutil.copyfile(db, backup)
    ok(vrm("share", VENDOR, "email=doc@example.org", "--purpose", "contracted-service",
           home=home))  # fmt: skip
    for path in (db, db.with_name("agent.db-wal"), db.with_name("agent.db-shm")):
        path.unlink(missing_ok=True)
    shutil.copyfile(backup, db)  # restored: the vendor holds a share this copy lacks
    vendors.stop("outfitters")
    try:
        r = vrm("share", VENDOR, "email=doc@example.com", "--purpose", "contracted-service",
                home=home)  # fmt: skip
        assert r.code == 3, r  # queued
    finally:
        vendors.start("outfitters")
    (waiting,) = ok(vrm("--json", "outbox", home=home)).json["pending"]

    r = fails(vrm("history", VENDOR, "--reconcile", home=home), 1, "fork")
    assert f"vrm outbox drop {waiting['id'][:12]}" in r.stdout, r
    said = fails(vrm("--json", "history", VENDOR, "--reconcile", home=home), 1, "fork").json
    assert said["reconciliation"]["waiting"] == [waiting["id"]], said

    ok(vrm("outbox", "drop", waiting["id"][:12], home=home))
    said = ok(vrm("--json", "history", VENDOR, "--reconcile", home=home)).json
    assert said["reconciliation"]["kind"] == "adopted", said
