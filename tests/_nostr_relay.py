"""A real Nostr relay on 127.0.0.1 for the tests of §15 (:func:`vrmproto.nostr._local.local_relay`),
skipping the test, with the reason, where ``nostr-relay`` is not installed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from vrmproto.nostr._local import local_relay, relay_command


def need_relay() -> None:
    """Skip the calling test, saying why, when ``nostr-relay`` is not installed."""
    if relay_command() is None:
        pytest.skip("nostr-relay is not installed (pip install -e '.[dev]' brings it)")


@contextlib.contextmanager
def relay(tmp: Path) -> Iterator[str]:
    """Run one relay with its own database under ``tmp``; yield its ``ws://`` URL."""
    need_relay()
    with local_relay(tmp) as url:
        yield url
