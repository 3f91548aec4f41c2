"""``vrm agent serve`` as a person runs it every day (session 22)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path

import pytest
from test_client import FakeVendor

from tests._cli_helpers import AsyncProcess, fails, new_home, vrm, vrm_process
from vrmproto.cli._cmd_serve import _stop_signals
from vrmproto.client import CustomerNode, RetryPolicy
from vrmproto.store import MemoryStore


async def _listening(proc: AsyncProcess) -> dict[str, object]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    said = json.loads(line)
    assert said["event"] == "listening", said
    return said


def _agent_url(home: Path) -> object:
    return json.loads((home / "settings.json").read_text()).get("agent_url")


async def _second_serve_on_one_directory(home: Path) -> None:
    async with vrm_process("agent", "serve", "--json", home=home) as first:
        url = (await _listening(first))["url"]
        second = await asyncio.to_thread(vrm, "agent", "serve", "--json", home=home)
        fails(second, 2, "another vrm agent serve", str(url))
        assert _agent_url(home) == url  # still the running one's
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 30) == 0


def test_a_second_agent_serve_on_one_data_directory_is_refused(tmp_path: Path) -> None:
    """Two ``vrm agent serve`` on one data directory both listened, the second wrote its URL
    over the first's, and the first to stop erased it while the other still ran: every
    command after it told vendors no endpoint at all. Now the second is refused (2) naming
    where the first listens, and that URL stays."""
    home = new_home(tmp_path)
    asyncio.run(_second_serve_on_one_directory(home))
    assert _agent_url(home) is None  # cleared by the one that served


async def test_a_stopped_node_does_not_wait_for_a_vendor_that_never_answers() -> None:
    """SIGTERM (or ^C) set the node's stop event, but the round it was in went on waiting for
    a vendor that accepted the request and never answered — ten seconds a request, retries
    and the §8.1-8 check on top — and a service manager's stop timeout then killed it with
    SIGKILL mid-delivery. Now the round gets ``grace_s`` to finish and is then cut short;
    what it was delivering stays in the outbox."""
    vendor = FakeVendor("Acme")
    await vendor.start()
    node = await CustomerNode.open(MemoryStore(), os.urandom(32),
                                   retry=RetryPolicy(attempts=1))  # fmt: skip
    try:
        thread = (await node.agent.connect(vendor.url)).thread
        await vendor.stop()
        assert (await node.agent.end(thread, "closing")).status == "queued"
        await vendor.start(port=vendor.port)
        vendor.hold = asyncio.Event()  # takes the request, and never answers
        arrived = asyncio.Event()
        real_inbox = vendor.inbox

        async def inbox(request: object) -> object:
            arrived.set()
            return await real_inbox(request)  # type: ignore[arg-type]

        vendor.inbox = inbox  # type: ignore[method-assign]
        await vendor.stop()
        await vendor.start(port=vendor.port)
        stop = asyncio.Event()
        running = asyncio.create_task(node.run(stop, interval_s=0.2, grace_s=0.05))
        await asyncio.wait_for(arrived.wait(), 10)
        stop.set()
        await asyncio.wait_for(running, 2)  # the client's own timeout is 10 s
        assert [w.type for w in await node.agent.waiting()] == ["relationship.end"]
    finally:
        vendor.hold = None
        await node.close()
        await vendor.stop()


async def _serve_and_stop(home: Path, *args: str) -> dict[str, object]:
    async with vrm_process("agent", "serve", "--json", *args, home=home) as proc:
        said = await _listening(proc)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        return said


def test_a_restarted_agent_listens_where_vendors_were_told_it_does(tmp_path: Path) -> None:
    """Each vendor connected while ``vrm agent serve`` ran holds its URL, port included (the
    ``endpoint`` of our terms offer, §12.11-3). Without ``--port`` every start took any free
    port, so after the first restart no vendor could reach the agent any more: a terms
    accept after review, a data return, a relationship's end never arrived. Now a start
    without ``--port`` listens where the last one did; ``--port 0`` asks for any port."""
    home = new_home(tmp_path)
    first = asyncio.run(_serve_and_stop(home))
    again = asyncio.run(_serve_and_stop(home))
    assert again["url"] == first["url"]
    other = asyncio.run(_serve_and_stop(home, "--port", "0"))
    assert other["port"] != first["port"]


def test_a_restart_whose_port_is_taken_says_so(tmp_path: Path) -> None:
    """...and if that port is taken now, it says so, and how to choose another, rather than
    silently listening where no vendor looks."""
    home = new_home(tmp_path)
    port = asyncio.run(_serve_and_stop(home))["port"]
    assert isinstance(port, int)
    with socket.create_server(("127.0.0.1", port)):
        fails(vrm("agent", "serve", "--json", home=home), 2, f"127.0.0.1:{port}", "--port")


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])  # refused before it binds
def test_listening_on_every_interface_needs_the_url_vendors_reach_it_at(
    tmp_path: Path, host: str
) -> None:
    """``--host 0.0.0.0`` (to be reachable from outside this machine) told every vendor
    connected meanwhile the URL ``http://0.0.0.0:PORT``, which names no machine: their
    messages to the agent never arrived. Now it is refused (2) unless ``--url`` says where
    vendors reach it (a router's forwarded port, a reverse proxy, a tunnel)."""
    home = new_home(tmp_path)
    fails(vrm("agent", "serve", "--host", host, home=home), 2, "--url")
    assert _agent_url(home) is None


def test_the_url_vendors_are_told_can_be_given(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    said = asyncio.run(_serve_and_stop(home, "--url", "https://agent.example.org:8443/"))
    assert said["url"] == "https://agent.example.org:8443"


@pytest.mark.parametrize("url", ["ftp://agent.example.org", "https://agent.example.org/vrm",
                                 "https://agent.example.org?x=1", "https://", "agent.example.org",
                                 "https://u:p@agent.example.org", "https://agent.example.org:99999"])
def test_a_url_that_is_not_an_origin_is_refused(tmp_path: Path, url: str) -> None:
    """The discovery document names its inbox by an absolute path (``/r/<token>/vrm/inbox``):
    a URL with a path of its own would lose it, so only ``scheme://host[:port]`` is taken."""
    home = new_home(tmp_path)
    fails(vrm("agent", "serve", "--url", url, home=home), 2, "--url")


async def test_the_node_refuses_to_tell_vendors_an_address_no_machine_has() -> None:
    async with await CustomerNode.open(MemoryStore(), os.urandom(32)) as node:
        with pytest.raises(ValueError, match="every interface"):
            await node.listen("0.0.0.0")  # refused before it binds
        with pytest.raises(ValueError, match="http"):
            await node.listen(url="https://agent.example.org/prefix")
        await node.listen(url="HTTPS://agent.example.org")
        assert node.agent.endpoint == "https://agent.example.org"


def test_a_taken_metrics_port_is_named_as_such(tmp_path: Path) -> None:
    """A taken ``--metrics-port`` ended with aiohttp's "error while attempting to bind on
    address …", read as the agent's own port being taken. Now it names the option."""
    home = new_home(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        r = fails(vrm("agent", "serve", "--port", "0", "--metrics-port", str(port), home=home),
                  2, "--metrics-port", f"127.0.0.1:{port}")  # fmt: skip
    assert "attempting" not in r.stderr, r
    assert _agent_url(home) is None


def test_closing_the_terminal_stops_the_agent_cleanly(tmp_path: Path) -> None:
    """A ``vrm agent serve`` in a terminal that is closed gets SIGHUP: it died by the default
    action wherever it was — mid-delivery too — leaving its URL in the settings for every
    later command to give vendors. Now it stops as for SIGTERM (0, "stopped", URL cleared).
    (``nohup`` still keeps it running: an ignored SIGHUP stays ignored.)"""
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:  # (every vrm run here inherits it)
        pytest.skip("the suite runs with SIGHUP ignored (under nohup): a vrm it starts "
                    "ignores it too, as it should, so a closed terminal cannot be shown")
    home = new_home(tmp_path)

    async def hang_up() -> tuple[int, bytes]:
        async with vrm_process("agent", "serve", "--json", home=home) as proc:
            await _listening(proc)
            proc.send_signal(signal.SIGHUP)
            assert proc.stdout is not None
            rest = await asyncio.wait_for(proc.stdout.read(), 30)
            return await asyncio.wait_for(proc.wait(), 30), rest

    code, rest = asyncio.run(hang_up())
    assert code == 0, code
    assert json.loads(rest)["event"] == "stopped"
    assert _agent_url(home) is None


def test_an_ignored_hangup_stays_ignored() -> None:
    """``nohup vrm agent serve`` ignores SIGHUP before the agent starts: it is not taken."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert signal.SIGHUP not in _stop_signals()
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        assert signal.SIGHUP in _stop_signals()
    finally:
        signal.signal(signal.SIGHUP, before)
