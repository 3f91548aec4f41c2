"""Hostile input over HTTP: every request gets a 4xx with a signed problem, never a 5xx, and a
normal customer is served during and after (spec §12.4-2). Together with the table-driven test
of test_server.py this shows ``internal_error`` is unreachable from input."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, Reply, craft, header_for, now_ms, post
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrmproto import DEFAULT_LIMITS, Identity, encode, open_envelope
from vrmproto._binding import CONTENT_TYPE, DEFAULT_HISTORY_PATH, DEFAULT_INBOX_PATH
from vrmproto.server import Endpoint, ReferencePolicy, Server, serve
from vrmproto.store import SQLiteStore

VENDOR = Identity(VENDOR_SEED)


@pytest.fixture
async def vendor(tmp_path: Path) -> AsyncIterator[tuple[Server, aiohttp.ClientSession]]:
    store = await SQLiteStore.open(tmp_path / "vendor.db")
    endpoint = Endpoint(VENDOR, store=store, policy=ReferencePolicy(accepts_terms=ACCEPTED))
    server = await serve(endpoint)
    try:
        async with aiohttp.ClientSession() as session:
            yield server, session
    finally:
        await server.close()
        await store.close()


def assert_refused(reply: Reply) -> None:
    """A 4xx whose body is one decodable, verifiable, signed problem from the vendor."""
    assert 400 <= reply.status < 500, (reply.status, reply.body[:200])
    assert reply.headers.get("Content-Type") == CONTENT_TYPE
    problem = open_envelope(reply.body, now=now_ms())
    assert problem.type == "problem"
    assert problem.sender == VENDOR.public_key
    assert problem.body.code != "internal_error"


async def normal_customer(server: Server, session: aiohttp.ClientSession) -> None:
    """A well-behaved customer: offer accepted, data shared, receipts verified."""
    c = Customer(VENDOR, base_url=server.url)
    await c.agree(session)
    got = await c.deliver(session, c.share({"email": "ann@example.org"}))
    assert [r.message.type for r in got] == ["receipt"]


def valid_envelope() -> bytes:
    c = Customer(VENDOR)
    return c.offer(*ACCEPTED).envelope


def nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


def hostile_bodies() -> Iterator[tuple[str, bytes]]:
    good = valid_envelope()
    for n in (0, 1, 2, 5, 17, 40, len(good) // 2, len(good) - 65, len(good) - 1):
        yield f"truncated-{n}", good[:n]
    yield "trailing-byte", good + b"\x00"
    yield "deep-array", nested(100_000)
    yield "deep-map", b"\x81\xa1a" * 50_000 + b"\xc0"
    yield "deep-in-hdr", encode({"hdr": nested(5_000), "sig": bytes(64)})
    yield "array32-huge", b"\xdd\xff\xff\xff\xff"
    yield "map32-huge", b"\xdf\xff\xff\xff\xff"
    yield "bin32-huge", b"\xc6\xff\xff\xff\xff" + b"xyz"
    yield "str32-huge", b"\xdb\xff\xff\xff\xff" + b"xyz"
    yield "ext", b"\xd4\x01\x00"
    yield "float", b"\xcb" + bytes(8)
    yield "hdr-bin32-huge", b"\x83\xa4body\xc4\x00\xa3hdr\xc6\xff\xff\xff\xff"
    yield "env-map32-huge", b"\xdf\xff\xff\xff\xff\xa4body\xc4\x00"
    yield "empty", b""
    yield "json", b'{"hdr": "x", "sig": "y"}'
    yield "not-canonical-int", encode({"hdr": b"\xcd\x00\x01", "sig": bytes(64)})
    # A correctly signed header over a body nested far too deep: refused at the body (§10-2).
    me = Identity(os.urandom(32))
    deep_body = nested(200)
    yield "deep-body-signed", craft(me, header_for(me, VENDOR.public_key, deep_body), deep_body)
    # A signed header whose body is a valid map of the wrong shape.
    odd = encode({"terms": [{"x": 1}], "zzz": True})
    yield "wrong-body-signed", craft(me, header_for(me, VENDOR.public_key, odd), odd)


HOSTILE = list(hostile_bodies())


@pytest.mark.parametrize(("name", "data"), HOSTILE, ids=[n for n, _ in HOSTILE])
async def test_hostile_body_is_refused_with_a_signed_problem(
    vendor: tuple[Server, aiohttp.ClientSession], name: str, data: bytes
) -> None:
    server, session = vendor
    assert_refused(await post(session, server.url + DEFAULT_INBOX_PATH, data))


async def test_hostile_bodies_interleaved_with_a_normal_customer(
    vendor: tuple[Server, aiohttp.ClientSession],
) -> None:
    server, session = vendor
    url = server.url + DEFAULT_INBOX_PATH
    results = await asyncio.gather(
        *(post(session, url, data) for _, data in HOSTILE),
        normal_customer(server, session),
        *(post(session, server.url + DEFAULT_HISTORY_PATH, data) for _, data in HOSTILE[:10]),
    )
    for result in results:
        if isinstance(result, Reply):
            assert_refused(result)
    await normal_customer(server, session)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # one server, many inputs
@given(data=st.one_of(
    st.binary(max_size=600),
    st.binary(min_size=1, max_size=600).map(lambda b: b"\x83" + b),  # looks like a 3-key map
    st.builds(lambda i, b: valid_envelope()[:i] + b + valid_envelope()[i + len(b):],
              st.integers(0, 500), st.binary(min_size=1, max_size=8)),  # a few bytes flipped
))  # fmt: skip
async def test_random_bytes_never_reach_a_5xx(
    vendor: tuple[Server, aiohttp.ClientSession], data: bytes
) -> None:
    server, session = vendor
    reply = await post(session, server.url + DEFAULT_INBOX_PATH, data)
    if reply.status == 200:  # a flip that kept the message valid (the routing copies, say)
        return
    assert_refused(reply)


async def test_sixteen_mebibytes_with_a_length(
    vendor: tuple[Server, aiohttp.ClientSession],
) -> None:
    server, session = vendor
    body = io.BytesIO(bytes(16 * 1024 * 1024))  # sized: sent with a Content-Length
    async with session.post(server.url + DEFAULT_INBOX_PATH, data=body,
                            headers={"Content-Type": CONTENT_TYPE}) as resp:  # fmt: skip
        assert resp.request_info.headers["Content-Length"] == str(16 * 1024 * 1024)
        reply = Reply(resp.status, await resp.read(), dict(resp.headers))
    assert reply.status == 413
    assert_refused(reply)
    await normal_customer(server, session)


async def test_sixteen_mebibytes_chunked(vendor: tuple[Server, aiohttp.ClientSession]) -> None:
    server, session = vendor
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(256):
            sent += 65536
            yield bytes(65536)

    async with session.post(server.url + DEFAULT_INBOX_PATH, data=chunks(),
                            headers={"Content-Type": CONTENT_TYPE}) as resp:  # fmt: skip
        reply = Reply(resp.status, await resp.read(), dict(resp.headers))
    assert reply.status == 413
    assert_refused(reply)
    await normal_customer(server, session)


async def test_declared_length_is_refused_before_the_body(
    vendor: tuple[Server, aiohttp.ClientSession],
) -> None:
    """Only the headers are sent: the 413 arrives without the body ever being read (§12.9-2)."""
    server, session = vendor
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write((
            f"POST {DEFAULT_INBOX_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {16 * 1024 * 1024}\r\n\r\n"
        ).encode())  # fmt: skip
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        assert head.startswith("HTTP/1.1 413")
        length = int(head.lower().split("content-length: ")[1].split("\r\n")[0])
        assert_refused(Reply(413, await reader.readexactly(length),
                             {"Content-Type": CONTENT_TYPE}))  # fmt: skip
    finally:
        writer.close()
    await normal_customer(server, session)


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "application/json", "application/msgpack", "multipart/form-data",
    "application/vnd.vrmproto+json", "",
])  # fmt: skip
async def test_wrong_or_missing_content_type(
    vendor: tuple[Server, aiohttp.ClientSession], content_type: str | None
) -> None:
    server, session = vendor
    reply = await post(session, server.url + DEFAULT_INBOX_PATH, valid_envelope(),
                       content_type=content_type)  # fmt: skip
    assert reply.status == 415
    assert_refused(reply)


async def test_content_type_parameters_are_ignored(
    vendor: tuple[Server, aiohttp.ClientSession],
) -> None:
    server, session = vendor
    reply = await post(session, server.url + DEFAULT_INBOX_PATH, valid_envelope(),
                       content_type=CONTENT_TYPE + "; charset=binary")  # fmt: skip
    assert reply.status == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", [DEFAULT_INBOX_PATH, DEFAULT_HISTORY_PATH])
async def test_wrong_methods(
    vendor: tuple[Server, aiohttp.ClientSession], method: str, path: str
) -> None:
    server, session = vendor
    async with session.request(method, server.url + path) as resp:
        reply = Reply(resp.status, await resp.read(), dict(resp.headers))
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST"
    assert_refused(reply)


@pytest.mark.parametrize("path", ["/", "/vrm", "/vrm/inbox/", "/.well-known/vrm/x", "/%ff"])
async def test_unknown_paths(vendor: tuple[Server, aiohttp.ClientSession], path: str) -> None:
    server, session = vendor
    for method in ("GET", "POST"):
        async with session.request(method, server.url + path) as resp:
            reply = Reply(resp.status, await resp.read(), dict(resp.headers))
        assert reply.status == 404
        assert_refused(reply)


async def test_a_slow_body_times_out_while_others_are_served(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "v.db")
    endpoint = Endpoint(VENDOR, store=store, policy=ReferencePolicy(accepts_terms=ACCEPTED),
                        limits=_limits(body_read_timeout_ms=300))  # fmt: skip
    server = await serve(endpoint)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write((
            f"POST {DEFAULT_INBOX_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: 500\r\n\r\n"
        ).encode() + b"\x83")  # fmt: skip
        await writer.drain()
        async with aiohttp.ClientSession() as session:
            await normal_customer(server, session)  # served while the slow body hangs
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            assert head.startswith("HTTP/1.1 408")
            assert "Connection: close" in head
            length = int(head.lower().split("content-length: ")[1].split("\r\n")[0])
            assert_refused(Reply(408, await reader.readexactly(length),
                                 {"Content-Type": CONTENT_TYPE}))  # fmt: skip
            writer.close()
            await normal_customer(server, session)
    finally:
        await server.close()
        await store.close()


def _limits(**kw: Any) -> Any:
    fields = DEFAULT_LIMITS.to_wire()
    fields.update(kw)
    return type(DEFAULT_LIMITS)(**fields)
