"""``vrm agent serve`` as a person runs it every day (session 22)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from tests._cli_helpers import AsyncProcess, fails, new_home, vrm, vrm_process


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
