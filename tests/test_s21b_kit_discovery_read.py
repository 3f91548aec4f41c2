"""Before the first case, the suite reads the discovery document and probes the inbox and
history (§13.1, §12.13-3) within bounds, and a document it cannot use ends the run with exit
code 2 and a message (§14.3), never a traceback.

Before, the runner read both answers whole with ``resp.read()``: a 3 GB discovery document took
3 GB, and an endlessly streamed one or an endless probe answer grew the suite until the time
limit. A document of nested arrays (``[[[[…]]]]``, 400 kB) let ``RecursionError`` out of
``run_suite``: ``vrm conformance`` crashed with a traceback and exit code 1, as if a case had
failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from click.testing import CliRunner
from test_conformance_framework import LiveServer, grading_registry

from tests._loopback import serving_app
from vrmproto.testing import SuiteCannotRun, run_suite
from vrmproto.testing._cli import make_command
from vrmproto.testing._context import MAX_RESPONSE_BYTES

DEEP = b"[" * 200_000 + b"]" * 200_000
DOC = {"inbox": "../vrm/inbox", "history": "../vrm/history"}


async def _stream(request: web.Request, status: int, head: bytes, size: int,
                  done: asyncio.Event) -> web.StreamResponse:
    """``head`` and then ``size`` bytes more, and then the answer never ends (until ``done``)."""
    resp = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(head)
    piece = b"x" * 65536
    for _ in range(size // len(piece)):
        await resp.write(piece)
    await done.wait()
    return resp


def _app(done: asyncio.Event) -> web.Application:
    async def deep(_: web.Request) -> web.Response:
        return web.Response(body=DEEP, content_type="application/json")

    async def endless_doc(request: web.Request) -> web.StreamResponse:
        return await _stream(request, 200, b'{"name": "', MAX_RESPONSE_BYTES + 2**20, done)

    async def doc(_: web.Request) -> web.Response:
        return web.json_response(DOC)

    async def endless_probe(request: web.Request) -> web.StreamResponse:
        return await _stream(request, 400, b"", MAX_RESPONSE_BYTES + 2**20, done)

    app = web.Application()
    app.router.add_get("/deep/.well-known/vrm", deep)
    app.router.add_get("/huge/.well-known/vrm", endless_doc)
    app.router.add_get("/probe/.well-known/vrm", doc)
    app.router.add_post("/probe/vrm/inbox", endless_probe)
    app.router.add_post("/probe/vrm/history", endless_probe)
    return app


@asynccontextmanager
async def _endpoint() -> AsyncIterator[str]:
    done = asyncio.Event()
    runner = web.AppRunner(_app(done), handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        done.set()
        await runner.cleanup()


async def test_a_deeply_nested_document_cannot_run() -> None:
    async with _endpoint() as root:
        with pytest.raises(SuiteCannotRun, match="is not JSON: nested too deeply"):
            await run_suite(root + "/deep", registry=grading_registry(), timeout_per_case=5)


async def test_an_endless_document_is_read_only_up_to_the_cap() -> None:
    async with _endpoint() as root:
        with pytest.raises(SuiteCannotRun, match=f"larger than {MAX_RESPONSE_BYTES} bytes"):
            await run_suite(root + "/huge", registry=grading_registry(), timeout_per_case=5)


async def test_an_endless_probe_answer_is_read_only_up_to_the_cap() -> None:
    async with _endpoint() as root:
        result = await run_suite(root + "/probe", registry=grading_registry(),
                                 only=["T-005"], timeout_per_case=5)
    assert result.records[0].case.id == "T-005"


@pytest.fixture
def live() -> Iterator[str]:
    with LiveServer(_app(asyncio.Event())) as server:
        yield server.url


def test_the_command_exits_2_with_a_message_for_a_deeply_nested_document(live: str) -> None:
    result = CliRunner().invoke(make_command(grading_registry()), [live + "/deep"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "the suite cannot run" in result.stderr
    assert "nested too deeply" in result.stderr


async def test_an_inbox_that_is_no_url_cannot_run() -> None:
    """Before, urljoin's ValueError ('Invalid IPv6 URL') left run_suite: a traceback, exit 1."""
    app = web.Application()

    async def doc(_: web.Request) -> web.Response:
        return web.json_response({"inbox": "http://[::1/vrm/inbox", "history": "/vrm/history"})

    app.router.add_get("/.well-known/vrm", doc)
    async with serving_app(app) as url:
        with pytest.raises(SuiteCannotRun, match=r"the inbox URL 'http://\[::1/vrm/inbox' of "
                           r".* is not a URL: Invalid IPv6 URL"):
            await run_suite(url, registry=grading_registry(), timeout_per_case=5)
