"""What is wrong with a vendor's document or history copy is the vendor's: InvalidResponse.

Before: ``EndpointClient.fetch_discovery``, ``Agent.connect``, ``Agent.compare_history`` and
``Agent.reconcile`` raised the vendor's :class:`~vrmproto.ProtocolError` bare — the type that
means "your own message breaks a rule" — so ``vrm connect`` read the vendor's discovery
document once apart, before ``agent.connect`` read it again, only to tell whose fault a failure
was. Now the library says it where it verifies the vendor's bytes: an ``InvalidResponse``
whose ``error`` is the rule broken (still that ``ProtocolError`` too, for callers that catch
it), and ``vrm connect`` asks for the document once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_client import FakeVendor

from tests._cli_helpers import VendorHost, fails, new_home, vrm
from vrmproto import Identity, Problem, ProtocolError
from vrmproto._history import Entry
from vrmproto.client import DEFAULT_TERMS, Agent, InvalidResponse, RetryPolicy
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore
from vrmproto.testing.transport import MemoryTransport

URL = "http://acme.test"


async def test_a_tampered_document_is_the_vendors_invalid_response() -> None:
    v = FakeVendor("Acme")
    await v.start()
    agent = await Agent.open(MemoryStore(), os.urandom(32), retry=RetryPolicy(attempts=1))
    try:
        v.tamper_discovery = True
        with pytest.raises(InvalidResponse) as info:
            await agent.connect(v.url)
        assert isinstance(info.value.error, ProtocolError)
        assert info.value.error.code is Problem.BAD_SIGNATURE
        assert isinstance(info.value, ProtocolError)  # as callers caught it before
        assert info.value.code is Problem.BAD_SIGNATURE
        assert "discovery document" in str(info.value)
        with pytest.raises(InvalidResponse):
            await agent.client.fetch_discovery(v.url)
        assert await agent.relationships() == []
    finally:
        await agent.close()
        await v.stop()


class ForgedCopy(MemoryTransport):
    """The vendor's copy of a history, one envelope's byte flipped on the way."""

    async def fetch_history(self, *args: Any, **kwargs: Any) -> list[Entry]:
        entries = await super().fetch_history(*args, **kwargs)
        e = entries[0]
        flipped = e.envelope[:-1] + bytes([e.envelope[-1] ^ 1])
        return [replace(e, envelope=flipped), *entries[1:]]


async def test_a_history_copy_that_does_not_verify_is_the_vendors_invalid_response() -> None:
    transport = ForgedCopy()
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Acme")
    transport.add(URL, Endpoint(Identity(os.urandom(32)), store=MemoryStore(), policy=policy,
                                name="Acme"))
    # another transport than HTTP: the agent says the same
    agent = await Agent.open(MemoryStore(), os.urandom(32), client=transport)
    try:
        thread = (await agent.connect(URL)).thread
        for call in (agent.compare_history, agent.reconcile):
            with pytest.raises(InvalidResponse) as info:
                await call(thread)
            assert isinstance(info.value.error, ProtocolError)
            assert "the vendor's copy of the history" in str(info.value)
    finally:
        await agent.close()


class Counted(FakeVendor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.documents = 0

    async def discovery(self, request: web.Request) -> web.Response:
        self.documents += 1
        return await super().discovery(request)


@pytest.fixture
def counted() -> Iterator[tuple[VendorHost, Counted]]:
    host = VendorHost()
    v = Counted("Acme", accepts=[t.id for t in DEFAULT_TERMS])
    host.call(v.start())
    try:
        yield host, v
    finally:
        host.call(v.stop())
        host.close()


def test_vrm_connect_reads_the_document_once_and_reports_a_bad_one_as_the_vendors(
    tmp_path: Path, counted: tuple[VendorHost, Counted]
) -> None:
    _, v = counted
    home = new_home(tmp_path)
    r = vrm("connect", v.url, home=home)  # rejected (it takes two of our terms): no matter
    assert "Traceback" not in r.stderr, r
    assert "rejected" in r.stdout, r
    assert v.documents == 1  # two before: the CLI read it apart first
    v.tamper_discovery = True
    fails(vrm("connect", v.url, home=home), 1, "the vendor's answer could not be used",
          "discovery document", "bad_signature")
