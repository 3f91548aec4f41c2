"""A store call that raises ``CancelledError`` though nothing cancelled the request (s22 hunt).

A store of the vendor's own — or a driver under it — can hand the endpoint a future someone
else cancelled (a pool closing a connection, a shared task cancelled); awaiting it raises
``CancelledError`` in a request nothing cancelled. ``handle_inbox`` and ``handle_history``
"never raise": an ``Exception`` is a signed 500 (§12.4-3), but ``CancelledError`` went up. On
``serve()``'s lean connections the connection then stayed busy without a deadline, held for
good (§10.1), the client waiting for an answer that never came. Now it is answered as any
failure of ours: 500, ``internal_error``, and the request may be sent again. A request really
cancelled (the server stopping) is still cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import os

import aiohttp
import pytest
from _vendor_proc import ACCEPTED, Customer, post

from vrmproto._keys import Identity
from vrmproto.server import Endpoint, ReferencePolicy, serve
from vrmproto.store import Commit, MemoryStore, RelationshipRecord


class Cancelling(MemoryStore):
    """Its driver hands back futures a closing pool cancelled."""

    async def commit_ids(self, c: Commit, *, expect: RelationshipRecord | None = None,
                         durable: bool = True) -> tuple[int, ...]:  # fmt: skip
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gone.cancel()
        await gone
        return ()


@pytest.mark.parametrize("lean", [True, False])
async def test_a_cancelled_store_call_is_answered_500(lean: bool) -> None:
    vendor = Identity(os.urandom(32))
    endpoint = Endpoint(vendor, store=Cancelling(), policy=ReferencePolicy(accepts_terms=ACCEPTED))
    server = await serve(endpoint, access_log=None if lean else logging.getLogger("s22.embed"))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            c = Customer(vendor, base_url=server.url)
            reply = await post(http, c.inbox, c.offer(*ACCEPTED).envelope)
    finally:
        await server.close()
    assert reply.status == 500
    assert reply.problem().body.code == "internal_error"


async def test_handle_inbox_and_history_say_so_without_http() -> None:
    vendor = Identity(os.urandom(32))
    endpoint = Endpoint(vendor, store=Cancelling(), policy=ReferencePolicy(accepts_terms=ACCEPTED))
    c = Customer(vendor)
    assert (await endpoint.handle_inbox(c.offer(*ACCEPTED).envelope)).status == 500
