"""The conformance suite against a vendor over HTTPS (spec §14, §12.4): the cases that write
their own requests — slow heads, idle and unread connections, unparsable HTTP, trickled,
chunked and oversized bodies — speak TLS to an ``https`` target, as its clients do.

Before, they opened plain TCP connections to the TLS port whatever the scheme: against the
reference vendor over HTTPS, nine cases failed (CONN-002, CONN-003, WIRE-014, -015, -016,
-020, -021, -022) or were graded non-strict (WIRE-018) for answers the vendor never got, CONN-001
passed for a close that was the TLS layer's, and CONN-004 was not checked at all.

The suite's HTTP client trusts what the process trusts (aiohttp reads ``SSL_CERT_FILE`` when
it is imported), so the whole-suite run is a fresh interpreter given the test CA that way, as a
vendor with a private CA runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import trustme
from _broken_vendor import CONNECTION_LIMITS, make_endpoint

from vrmproto.server import Server, _connections, _lean, serve
from vrmproto.store import MemoryStore
from vrmproto.testing import Outcome
from vrmproto.testing._case import load_default_cases
from vrmproto.testing._context import CaseContext
from vrmproto.testing._runner import _run_one
from vrmproto.testing.cases import connections

#: The cases that open connections of their own (all but CONN-005, which sends a raw
#: ClientHello on purpose and is tests/test_s16_srv_conformance.py's).
OWN_CONNECTIONS = ("CONN-001", "CONN-002", "CONN-003", "CONN-004", "WIRE-014", "WIRE-015",
                   "WIRE-016", "WIRE-018", "WIRE-020", "WIRE-021", "WIRE-022",
                   "ROB-001")  # fmt: skip

RUN = """
import asyncio, json, sys
from vrmproto.testing import run_suite
result = asyncio.run(run_suite(sys.argv[1], only=sys.argv[2].split(","), seed=7))
print(json.dumps({r.case.id: [r.outcome.name, r.actual or ""] for r in result.records
                  if r.outcome.name != "SKIPPED"}))
"""


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@asynccontextmanager
async def vendor_over_tls(ca: trustme.CA) -> AsyncIterator[Server]:
    server = await serve(make_endpoint(MemoryStore()), connection_limits=CONNECTION_LIMITS,
                         ssl_context=server_tls(ca))  # fmt: skip
    try:
        yield server
    finally:
        await server.close()


def test_the_cases_with_connections_of_their_own_pass_the_reference_vendor_over_https(
    ca: trustme.CA, ca_file: Path
) -> None:
    async def run() -> dict[str, list[str]]:
        async with vendor_over_tls(ca) as server:
            assert server.url.startswith("https://")
            env = {**os.environ, "SSL_CERT_FILE": str(ca_file)}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", RUN, server.url, ",".join(OWN_CONNECTIONS), env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        got: dict[str, list[str]] = json.loads(out.decode().splitlines()[-1])
        return got

    got = asyncio.run(run())
    assert set(got) == set(OWN_CONNECTIONS)
    wrong = {case: v for case, v in got.items()
             if v[0] not in (Outcome.PASSED.name, Outcome.INFORMATIONAL.name)}  # fmt: skip
    assert not wrong
    # CONN-004 ran: it is not passed with a note for want of room or of TLS
    assert not got["CONN-004"][1].startswith("not checked"), got["CONN-004"]


async def unread_case(ca: trustme.CA) -> Outcome:
    """CONN-004 alone against a vendor over TLS (graded as the runner grades it); its deadlines
    are short, and so is the ceiling the case waits for (as in test_s16_srv_conformance)."""
    [conn_004] = [c for c in load_default_cases() if c.id == "CONN-004"]
    client_tls = ssl.create_default_context(cafile=None)
    async with vendor_over_tls(ca) as server, aiohttp.ClientSession() as session:
        ca.configure_trust(client_tls)
        async with session.get(server.url + "/.well-known/vrm", ssl=client_tls) as got:
            discovery = json.loads(await got.read())
        ctx = CaseContext(case=conn_004, base_url=server.url, discovery=discovery,
                          session=session, rng=random.Random(4), state={})  # fmt: skip
        record = await _run_one(conn_004, ctx, 30.0, 0)
    assert record.info is None or not record.info.text.startswith("not checked"), record.info
    return record.outcome


@pytest.mark.parametrize("mistake", ["reference", "graceful-unread"])
def test_unread_answers_over_tls(monkeypatch: pytest.MonkeyPatch, ca: trustme.CA, ca_file: Path,
                                 mistake: str) -> None:  # fmt: skip
    """The TLS variant of test_s16_srv_conformance's CONN-004 test: the reference vendor
    resets an unread connection (PASSED); one that closes it gracefully keeps it (NON_STRICT)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # what the case's own connection trusts
    monkeypatch.setattr(connections, "CEILING_MS", 2_000)
    monkeypatch.setattr(connections, "GRACE_S", 0.5)
    if mistake == "graceful-unread":
        def close(transport: asyncio.BaseTransport) -> None:
            transport.close()

        monkeypatch.setattr(_lean, "abort", close)
        monkeypatch.setattr(_connections, "abort", close)
    outcome = asyncio.run(unread_case(ca))
    assert outcome is (Outcome.PASSED if mistake == "reference" else Outcome.NON_STRICT)
