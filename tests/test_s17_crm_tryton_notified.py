"""``vrm vendor tryton`` on a vendor whose store is PostgreSQL wakes on the feed's notifications
(LISTEN/NOTIFY, :mod:`vrmproto.store._pg_notify`), as the webhooks and ``vrm vendor events
--follow`` do, and polls by ``[server] feed_poll_s`` only as the fallback. Before, it made a
``Wakeup`` that watched nothing: an event committed by the vendor's server reached Tryton only
at the next poll, and the bridge read the store every second for nothing.

The vendor file here polls once an hour, so an event committed while the bridge waits reaches
Tryton only by a notification.

Slow: Tryton (its database is the session's, tests/_tryton.py) and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import _postgres
import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer

pytest.importorskip("trytond", reason="trytond is not installed: pip install 'vrmproto[tryton]'")
pytest.importorskip("trytond.modules.sale_opportunity",
                    reason="trytond-sale-opportunity is not installed: pip install "
                           "'vrmproto[tryton]'")  # fmt: skip

from tests._cli_helpers import ROOT, cli_env, vrm_command
from tests._tryton import tryton_database
from vrmproto import Identity
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import PostgresConfig, PostgresStore

pytestmark = pytest.mark.slow

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config

VENDOR = Identity(VENDOR_SEED)


async def offer(store: PostgresStore) -> None:
    """A customer's offer, stored by the vendor's endpoint (as its server would): events."""
    endpoint = Endpoint(VENDOR, store=store, policy=ReferencePolicy(accepts_terms=ACCEPTED))
    c = Customer(VENDOR)
    sent = c.offer(*ACCEPTED)
    got = await endpoint.handle_inbox(sent.envelope, client="192.0.2.1")
    assert got.status == 200


@pytest.fixture
def tryton(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with Tryton database ``crm``, a copy of the session's."""
    tryton_database(tmp_path_factory, tmp_path / "tryton", "crm")
    return tmp_path / "tryton"


async def test_the_bridge_applies_an_event_committed_while_it_waits(
    postgres_config: PostgresConfig, tryton: Path, tmp_path: Path
) -> None:
    url = f"{postgres_config.dsn}{'&' if '?' in postgres_config.dsn else '?'}" + urlencode(
        {"vrm_schema": postgres_config.schema})
    config = tmp_path / "shop.toml"
    config.write_text(f'name = "Corner Shop"\naccepts_terms = "all"\nstore = "{url}"\n\n'
                      "[server]\nfeed_poll_s = 3600\n")  # fmt: skip
    store = await PostgresStore.open(postgres_config)
    try:
        await offer(store)  # before the bridge starts: read at once
        bridge = await asyncio.create_subprocess_exec(
            *vrm_command(), "vendor", "tryton", "--config", str(config), "--database", "crm",
            "--tryton-path", str(tryton), "--json", stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=cli_env(None), cwd=ROOT)  # fmt: skip
        assert bridge.stdout is not None

        async def row(wait_s: float) -> dict[str, Any]:
            assert bridge.stdout is not None
            line = await asyncio.wait_for(bridge.stdout.readline(), wait_s)
            assert line, "the bridge ended"
            found: dict[str, Any] = json.loads(line)
            return found

        try:
            first = [await row(60) for _ in range(2)]
            assert all(r["applied"] for r in first)
            await offer(store)  # while the bridge waits: only a notification tells it
            later = await row(30)
            assert later["applied"]
            assert later["pos"] > max(r["pos"] for r in first)
        finally:
            bridge.terminate()
            _, err = await asyncio.wait_for(bridge.communicate(), 30)
        assert bridge.returncode in (0, -15), err
    finally:
        await store.close()
