"""A first offer the vendor refuses stays in the vendor's records (s18; spec §8.1-1, §5.2.3-5).

Checked, not changed: s17 noted "refused first offer: refusal not in history". On the vendor's
side a refused offer is answered with a signed ``terms.reject`` — a message of the
relationship, which both sides log with the offer and the vendor's receipt for it (§8.1-1),
and which the customer may show as proof (§5.2.3-5); the relationship is ``rejected``, and a
new offer in the same thread continues the same history (§7.2). What s17 saw is the customer's
side of a *problem* refusing a first offer: a problem report is no message of the relationship
and is never logged (§8.1-1, §5.6.2-1), and the refused offer is dropped (§8.1-5) — as the spec
says. These tests hold the vendor to it over HTTP, on SQLite, as ``vrm vendor serve`` runs.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
from _vendor_proc import ACCEPTED, Customer

from vrmproto import Identity
from vrmproto._history import Entry
from vrmproto._state import State
from vrmproto.server import Endpoint, ReferencePolicy, serve
from vrmproto.store import SQLiteStore, Store

VENDOR = Identity(bytes(range(32)))
NOT_ACCEPTED = "vrm.purpose-only"


async def vendor_log(store: Store, thread: bytes) -> list[tuple[int, bytes, bytes]]:
    return [(e.index, e.msg_hash, e.envelope) for e in await store.history(thread)]


def customer_log(entries: list[Entry] | tuple[Entry, ...]) -> list[tuple[int, bytes, bytes]]:
    return [(e.index, e.msg_hash, e.envelope) for e in entries]


async def test_a_refused_first_offer_is_kept_by_both_sides(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "vendor.db")
    endpoint = Endpoint(VENDOR, store=store, name="shop",
                        policy=ReferencePolicy(accepts_terms=ACCEPTED, name="shop"))  # fmt: skip
    server = await serve(endpoint)
    try:
        c = Customer(VENDOR, base_url=server.url)
        async with aiohttp.ClientSession() as session:
            got = await c.deliver(session, c.offer(*ACCEPTED, NOT_ACCEPTED))
            assert [r.message.type for r in got] == ["receipt", "terms.reject"]
            assert c.rel.state is State.REJECTED
            refused = customer_log(list(c.rel.history.entries()))
            assert len(refused) == 3  # the offer, the vendor's receipt, its terms.reject
            assert await vendor_log(store, c.thread) == refused
            [record] = [r for r in await store.relationships() if r.thread == c.thread]
            assert record.state == State.REJECTED.value

            # The customer may offer again in the thread (§7.2): the history goes on from the
            # refusal, which stays in it.
            await c.agree(session)
            assert c.rel.state is State.AGREED
            both = customer_log(list(c.rel.history.entries()))
            assert both[:3] == refused
            assert len(both) == 6
            assert await vendor_log(store, c.thread) == both
    finally:
        await server.close()
        await store.close()
