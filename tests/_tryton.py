"""One Tryton database per test session, copied for each test that needs one (issue 14).

Creating a database (``TrytonBridge.create``: ``party`` and ``sale_opportunity`` activated with
their dependencies, and a company) loads Tryton's XML data record by record: about 30 s of one
core, the same work every time. :func:`tryton_database` does it once, in the session's temporary
directory, and copies the SQLite database (Tryton's ``[database] path`` holds ``NAME.sqlite``, in
WAL mode: copied with SQLite's backup, which reads the WAL too) for each test, which then opens
its own copy with ``TrytonBridge.open`` or ``TrytonCRM.open`` — or takes it opened from
:func:`open_crm`, the fixture the CRM tests share. Importing this imports no Tryton: a fixture
calls :func:`skip_without_tryton` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from vrmproto.crm.tryton import TrytonCRM

#: The company that owns the leads in every copy.
COMPANY = "Vendor"


async def _create(path: Path, name: str) -> None:
    from vrmproto.crm.tryton import TrytonBridge  # noqa: PLC0415 -- needs trytond

    bridge = await TrytonBridge.create(name, path=path, company=COMPANY)
    await bridge.close()


def tryton_database(factory: pytest.TempPathFactory, into: Path, name: str = "crm") -> Path:
    """Put a copy of the session's Tryton database (created on first use) in ``into`` as
    database ``name``; its file. Call from a sync fixture: it runs its own event loop."""
    template = factory.getbasetemp() / "tryton-template"
    made, ready = template / "crm.sqlite", template / "ready"
    if not ready.exists():  # a creation that failed half way is not used: made again
        shutil.rmtree(template, ignore_errors=True)
        template.mkdir()
        asyncio.run(_create(template, "crm"))
        ready.touch()
    into.mkdir(parents=True, exist_ok=True)
    copy = into / f"{name}.sqlite"
    with contextlib.closing(sqlite3.connect(made)) as src, \
            contextlib.closing(sqlite3.connect(copy)) as dst:  # fmt: skip
        src.backup(dst)
    return copy


def skip_without_tryton() -> None:
    """Skip the calling test (or fixture) when Tryton's modules the bridge needs are missing."""
    pytest.importorskip("trytond", reason="trytond is not installed: pip install "
                                          "'vrmproto[tryton]'")  # fmt: skip
    pytest.importorskip("trytond.modules.sale_opportunity",
                        reason="trytond-sale-opportunity is not installed: pip install "
                               "'vrmproto[tryton]'")  # fmt: skip


def open_crm(factory: pytest.TempPathFactory, into: Path, name: str = "crm") -> TrytonCRM:
    """A copy of the session's Tryton database as ``name`` in ``into`` (:func:`tryton_database`),
    opened: the fixture the CRM tests share (it skips without Tryton)."""
    skip_without_tryton()
    from vrmproto.crm.tryton import TrytonCRM  # noqa: PLC0415 -- needs trytond

    tryton_database(factory, into, name)
    return TrytonCRM.open(name, path=into)


def notes_of(name: str) -> dict[str, list[str]]:
    """The notes on each relationship's party Tryton database ``name`` holds, sorted, by the
    party's code."""
    from trytond.pool import Pool  # noqa: PLC0415 -- Tryton's pool is filled at open
    from trytond.transaction import Transaction  # noqa: PLC0415

    with Transaction().start(name, 0, readonly=True):
        pool = Pool()
        return {p.code: sorted(n.message for n in pool.get("ir.note").search(
                    [("resource", "=", str(p))]))
                for p in pool.get("party.party").search([("code", "like", "vrm-%")])}
