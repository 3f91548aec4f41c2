"""What a customer-tool builder catches: every error the agent raises is a ``VrmError``.

Before, a reference that named no relationship (``agent.share("https://unknown.example", …)``,
a thread id of the wrong length, a waiting message's id prefix) raised a bare ``LookupError``
and an agent opened on another seed's store a bare ``ValueError`` — outside the library's tree,
so ``except VrmError`` let them through. They are :class:`NotFound` and :class:`ForeignStore`
now, still a ``LookupError`` and a ``ValueError`` for code that caught those.
"""

from __future__ import annotations

import os
import time

import pytest

from vrmproto import Identity, VrmError
from vrmproto.client import DEFAULT_TERMS, Agent, ForeignStore, NotFound
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport

URL = "http://hotel.test"


async def test_lookups_and_a_foreign_store_are_vrm_errors() -> None:
    vendor = Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name="Hotel",
                      policy=ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS],
                                             name="Hotel"))  # fmt: skip
    store = MemoryStore()
    agent = await Agent.open(store, os.urandom(32), client=MemoryTransport({URL: vendor}))
    try:
        expires = time.time_ns() // 1_000_000 + 86_400_000
        for ref in ("http://unknown.test", b"\x01" * 15, "Nobody"):
            with pytest.raises(NotFound) as caught:
                await agent.share(ref, {"email": "zoe@example.org"}, purposes=["delivery"],
                                  categories=["contact"], expires_ms=expires)  # fmt: skip
            assert isinstance(caught.value, VrmError)
            assert isinstance(caught.value, LookupError)
        assert (await agent.connect(URL)).status == "accepted"
        for ref in ("ab", "abcdef12"):
            with pytest.raises(NotFound) as caught:
                await agent.drop_waiting(ref)
            assert isinstance(caught.value, VrmError)
        with pytest.raises(ForeignStore) as wrong:
            await Agent.open(store, os.urandom(32), client=MemoryTransport({URL: vendor}))
        assert isinstance(wrong.value, VrmError)
        assert isinstance(wrong.value, ValueError)
    finally:
        await agent.close()
        await vendor.drain()
