"""The in-memory transport fails on a bad discovery document as the HTTP one does (§13.1).

Before: :meth:`MemoryTransport.fetch_discovery` let the bare :class:`~vrmproto.ProtocolError`
of the document's check escape, where :class:`~vrmproto.client.EndpointClient` raises
:class:`~vrmproto.client.PeerRuleError` — the vendor's fault, an ``InvalidResponse`` whose
``error`` is the rule broken. Code tested in memory (``vrm`` commands, the UI's actions) took
a vendor's bad document for a message of ours that broke a rule.
"""

from __future__ import annotations

import os

import pytest

from vrmproto import Identity, ProtocolError
from vrmproto.client import DEFAULT_TERMS, EndpointClient, PeerRuleError, RetryPolicy
from vrmproto.server import Endpoint, ReferencePolicy, serve
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport

URL = "http://acme.test"


def vendor() -> Endpoint:
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
    return Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy, name="Acme")


@pytest.mark.parametrize("why", ["another key", "another role"])
async def test_a_document_that_does_not_verify_is_the_vendors_in_memory_as_over_http(
    why: str,
) -> None:
    endpoint = vendor()
    ask: dict[str, object] = ({"expected_key": Identity(os.urandom(32)).public_key}
                              if why == "another key" else {"role": "customer"})  # fmt: skip
    memory = MemoryTransport()
    memory.add(URL, endpoint)
    with pytest.raises(PeerRuleError) as in_memory:
        await memory.fetch_discovery(URL, **ask)  # type: ignore[arg-type]

    server = await serve(endpoint)
    client = EndpointClient(retry=RetryPolicy(attempts=1))
    try:
        with pytest.raises(PeerRuleError) as over_http:
            await client.fetch_discovery(server.url, **ask)  # type: ignore[arg-type]
    finally:
        await client.close()
        await server.close()
    m, h = in_memory.value, over_http.value
    assert isinstance(m, ProtocolError)  # callers that caught the bare error still do
    assert (m.code, m.clause, m.status) == (h.code, h.clause, h.status)
    assert type(m.error) is type(h.error)
    assert str(m).replace(URL, "") == str(h).replace(server.url, "")
