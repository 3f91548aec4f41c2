"""What the agent's HTTP client makes of odd answers from a vendor (spec §12.3, §12.4).

- A status outside 100-599 (RFC 9110 §15: "invalid"; a client SHOULD process it as a 5xx) is a
  :class:`Transient` like a 5xx: retried, but only as many times as the retry policy allows.
- Bytes that are not an HTTP/1.1 answer come from a server that *was* reached: an
  :class:`InvalidResponse` (the vendor's answer could not be used), not :class:`Unreachable`
  ("no answer"), and not retried on the spot — sending the same request again to the same
  server gets the same bytes. (Before, it was ``Unreachable`` and sent ``attempts`` times; the
  person read "could not reach" about a server that answered.) An answer cut short by the
  connection closing stays ``Unreachable``: that is the network's failure.

Servers are scripted asyncio ones on 127.0.0.1 (``tests/_scripted.py``).
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from _scripted import Scripted, scripted_server

from vrmproto._http1 import MalformedResponse
from vrmproto.client import EndpointClient, InvalidResponse, RetryPolicy, Transient, Unreachable
from vrmproto.client._http import Sleep, describe_failure
from vrmproto.client._transport import Answer, transient_from_answer

THREE = RetryPolicy(attempts=3)
SSH = b"SSH-2.0-OpenSSH_9.6\r\n\r\n"


def recorder() -> tuple[list[float], Sleep]:
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    return waits, sleep


async def post(c: EndpointClient, url: str) -> Answer:
    return await c._request("POST", url, b"x", headers={"Content-Type": "application/x-test"},
                            timeout_s=None, retry=None, cap=1000, channel=b"t")  # fmt: skip


@pytest.mark.parametrize("status", [600, 677, 999])
def test_a_status_past_599_is_transient_as_a_5xx(status: int) -> None:
    answer = Answer(status, {"Retry-After": "3"}, b"", "http://v/inbox")
    err = transient_from_answer(answer)
    assert isinstance(err, Transient)
    assert (err.status, err.retry_after) == (status, 3.0)


async def test_a_status_past_599_is_retried_only_as_the_policy_allows() -> None:
    log: list[tuple[int, bytes]] = []
    odd = b"HTTP/1.1 999 Library Error\r\nContent-Length: 0\r\n\r\n"
    server, port = await scripted_server([[odd, odd, odd, odd, odd]], log)
    waits, sleep = recorder()
    try:
        async with EndpointClient(retry=THREE, sleep=sleep) as c:
            with pytest.raises(Transient, match="answered 999") as info:
                await post(c, f"http://127.0.0.1:{port}/inbox")
    finally:
        server.close()
    assert info.value.status == 999
    assert len([i for i, _ in log if i >= 0]) == 3  # three tries, then the caller's (outbox)
    assert len(waits) == 2


async def test_bytes_that_are_not_http_are_an_invalid_answer_asked_once() -> None:
    log: list[tuple[int, bytes]] = []
    server, port = await scripted_server([[SSH], [SSH], [SSH]], log)
    waits, sleep = recorder()
    try:
        async with EndpointClient(retry=THREE, sleep=sleep) as c:
            with pytest.raises(InvalidResponse, match="malformed answer") as info:
                await post(c, f"http://127.0.0.1:{port}/inbox")
    finally:
        server.close()
    assert not isinstance(info.value, Transient)
    assert [i for i, _ in log if i >= 0] == [0]  # asked once: the same server, the same bytes
    assert waits == []


async def test_bytes_that_are_not_http_through_a_given_session_alike() -> None:
    """The aiohttp path (a session the caller gave) says the same."""
    log: list[tuple[int, bytes]] = []
    server, port = await scripted_server([[SSH], [SSH], [SSH]], log)
    waits, sleep = recorder()
    try:
        async with aiohttp.ClientSession() as session, EndpointClient(
                session=session, retry=THREE, sleep=sleep) as c:
            with pytest.raises(InvalidResponse, match="malformed answer") as info:
                await post(c, f"http://127.0.0.1:{port}/inbox")
    finally:
        server.close()
    assert not isinstance(info.value, Transient)
    assert [i for i, _ in log if i >= 0] == [0]
    assert waits == []


class CutShort(Scripted):
    """Answers every request with the start of an answer, then closes the connection."""

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.log.append((self.index, data))
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhal")
        self.transport.close()


async def test_an_answer_cut_short_is_still_unreachable_and_retried() -> None:
    log: list[tuple[int, bytes]] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: CutShort([], log), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    waits, sleep = recorder()
    try:
        async with EndpointClient(retry=THREE, sleep=sleep) as c:
            with pytest.raises(Unreachable, match="cut short"):
                await post(c, f"http://127.0.0.1:{port}/inbox")
    finally:
        server.close()
    assert len(waits) == 2
    assert len([i for i, _ in log if i >= 0]) == 3


def test_a_malformed_answer_is_worded_alike_whichever_client_read_it() -> None:
    ours = describe_failure(MalformedResponse("not an HTTP/1.x status line"))
    assert ours == "a malformed answer (not an HTTP/1.x status line)"


async def test_a_proxy_that_will_not_connect_us_is_unreachable_not_malformed() -> None:
    """A caller's session through a proxy that refuses the tunnel: aiohttp's error for it is a
    kind of its "response error", but nothing of the vendor's came: Unreachable, retried."""
    log: list[tuple[int, bytes]] = []
    refuse = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
    server, port = await scripted_server([[refuse], [refuse], [refuse]], log)
    waits, sleep = recorder()
    try:
        async with (aiohttp.ClientSession(proxy=f"http://127.0.0.1:{port}") as session,
                    EndpointClient(session=session, retry=THREE, sleep=sleep) as c):
            with pytest.raises(Unreachable, match="the proxy answered 407") as info:
                await post(c, "https://vendor.example/inbox")
    finally:
        server.close()
    assert "malformed" not in str(info.value)
    assert len(waits) == 2
