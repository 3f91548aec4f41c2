"""MemoryTransport answers as the HTTP app does (vrmproto/testing/transport.py): a builder's test
that passes in memory must not fail over HTTP for a reason the memory path hid."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from vrmproto import Identity, Problem
from vrmproto.client import (
    Agent,
    EndpointClient,
    InvalidResponse,
    PeerProblemError,
    Transient,
    Unreachable,
)
from vrmproto.server import Endpoint, ReferencePolicy, Response
from vrmproto.store import MemoryStore
from vrmproto.testing import MemoryTransport
from vrmproto.testing.transport import Route

ACME = "http://acme.test"


TERMS = ("vrm.no-tracking", "vrm.no-third-party")  # the agent's default terms


def endpoint() -> Endpoint:
    return Endpoint(Identity(os.urandom(32)), store=MemoryStore(), name="Acme",
                    policy=ReferencePolicy(accepts_terms=TERMS, name="Acme"))  # fmt: skip


async def test_a_path_the_vendor_does_not_serve_is_its_404_not_an_unreachable_host() -> None:
    """Over HTTP a served host answers an unknown path with its signed ``not_found`` (§12.2-5):
    "is it a vrmproto endpoint?", a mistake to fix. Unreachable would have the agent queue
    and retry a URL that can never work."""
    transport = MemoryTransport({ACME: endpoint()})
    with pytest.raises(InvalidResponse) as disc:
        await transport.fetch_discovery(ACME + "/shop")
    assert disc.value.status == 404
    assert "is it a vrmproto endpoint?" in str(disc.value)
    doc = await transport.fetch_discovery(ACME)
    with pytest.raises(InvalidResponse) as post:
        await transport.post_envelope(ACME + "/inbox", b"\x85", expected_keys=(doc.key,),
                                      ref=bytes(32))  # fmt: skip
    assert post.value.status == 404
    assert "not_found" in str(post.value)
    assert [r.status for r in transport.requests] == [404, 200, 404]
    with pytest.raises(Unreachable):  # another host: nothing there at all
        await transport.fetch_discovery("http://hertz.test")


async def test_a_route_asked_with_the_wrong_method_is_405() -> None:
    """A POST to the discovery document: ``method_not_allowed`` (§12.2-4), with ``Allow``."""
    transport = MemoryTransport({ACME: endpoint()})
    doc = await transport.fetch_discovery(ACME)
    with pytest.raises(InvalidResponse) as post:
        await transport.post_envelope(ACME + "/.well-known/vrm", b"\x85",
                                      expected_keys=(doc.key,), ref=bytes(32))  # fmt: skip
    assert post.value.status == 405
    assert "method_not_allowed" in str(post.value)
    assert (transport.requests[1].route, transport.requests[1].status) == (Route.DISCOVERY, 405)


async def test_a_history_request_posted_to_the_inbox_is_answered_by_the_inbox() -> None:
    """The URL picks the handler, as a router does; the caller's intent does not."""
    e = endpoint()
    transport = MemoryTransport({ACME: e})
    doc = await transport.fetch_discovery(ACME)
    me = Identity(os.urandom(32))
    with pytest.raises(PeerProblemError) as wrong:  # the inbox's signed refusal, as over HTTP
        await transport.fetch_history(doc.inbox, me, bytes(16), doc.key)
    assert (wrong.value.problem, wrong.value.status) == (Problem.MALFORMED, 400)
    assert transport.requests[-1].route is Route.INBOX


async def test_host_names_compare_without_case_and_the_default_port_is_the_same_url() -> None:
    """RFC 3986, section 6.2.2: ``http://ACME.test:80`` is ``http://acme.test``; an agent given the
    vendor's URL as a person typed it connects over HTTP, and so it does in memory."""
    transport = MemoryTransport({ACME: endpoint()})
    for url in ("http://ACME.test", "http://acme.test:80", "HTTP://Acme.Test:80/"):
        doc = await transport.fetch_discovery(url)
        assert doc.name == "Acme"
    async with await Agent.open(MemoryStore(), os.urandom(32), client=transport) as agent:
        connected = await agent.connect("http://Acme.TEST")
        assert connected.status == "accepted"
    with pytest.raises(Unreachable):
        await transport.fetch_discovery("https://acme.test")  # another scheme, another origin


class Broken(Endpoint):
    """A vendor whose own code fails (a builder simulating an outage this way)."""

    async def handle_inbox(self, data: bytes, *, client: str = "") -> Response:
        raise RuntimeError("the vendor's database is down")


async def test_a_vendor_that_fails_is_a_500_not_its_exception_in_the_customers_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over HTTP the server answers 500 and the client reads a Transient (the agent queues
    and retries, §12.4-3); before, the vendor's own exception came out of the customer's
    ``post_envelope`` (and ``agent.share``) as if the customer had failed."""
    broken = Broken(Identity(os.urandom(32)), store=MemoryStore(), name="Acme",
                    policy=ReferencePolicy(accepts_terms=TERMS, name="Acme"))  # fmt: skip
    transport = MemoryTransport({ACME: broken})
    doc = await transport.fetch_discovery(ACME)
    with pytest.raises(Transient) as failed:
        await transport.post_envelope(doc.inbox, b"\x85", expected_keys=(doc.key,))
    assert failed.value.status == 500
    assert transport.requests[-1].status == 500
    assert "the vendor's database is down" in caplog.text  # the builder sees why



async def test_the_module_docstrings_example_connects() -> None:
    """The example a builder copies first must do what it shows: connect, and be accepted
    (before, its Endpoint had the default policy, which accepts no terms: ``rejected``)."""
    import textwrap  # noqa: PLC0415

    import vrmproto.testing.transport as module  # noqa: PLC0415

    doc = module.__doc__ or ""
    lines = doc[doc.index("::\n\n") + 4:].splitlines()
    end = next(i for i, line in enumerate(lines) if line and not line.startswith(" "))
    example = textwrap.dedent("\n".join(lines[:end]))
    assert "assert connected.status == \"accepted\"" in example
    namespace: dict[str, object] = {}
    exec(  # our own docstring's example
        "async def run(identity, seed, clock):\n" + textwrap.indent(example, "    "), namespace
    )
    run = namespace["run"]
    assert callable(run)
    await run(Identity(os.urandom(32)), os.urandom(32), lambda: time.time_ns() // 1_000_000)


async def test_a_request_without_its_own_timeout_has_the_transports_as_over_http() -> None:
    """EndpointClient bounds a request given no ``timeout_s`` by its own (10 s by default);
    before, MemoryTransport waited forever, so a builder's test of a vendor that never answers
    (a connect, a history) hung where production gives Unreachable."""
    assert MemoryTransport().timeout_s == EndpointClient().timeout_s
    never = asyncio.Event()

    class Hung(Endpoint):
        async def handle_inbox(self, data: bytes, *, client: str = "") -> Response:
            await never.wait()
            raise AssertionError("never answered")

    transport = MemoryTransport({ACME: Hung(Identity(os.urandom(32)), store=MemoryStore())},
                                timeout_s=0.01)  # fmt: skip
    with pytest.raises(Unreachable, match=r"no answer in 0\.01 s"):
        await transport.post_envelope(ACME + "/vrm/inbox", b"x")
    never.set()
    await transport.drain()
