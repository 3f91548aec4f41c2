"""The runners' event loop (vrmproto/_loop.py): uvloop's where installed, asyncio's if asked."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
from collections.abc import Iterator

import pytest

from vrmproto import _loop


async def _kind() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_asyncio_s_own_loop_when_asked() -> None:
    assert _loop.loop_factory(False) is None
    assert _loop.run(_kind(), fast=False) == "asyncio"


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop not installed")
def test_uvloop_where_installed() -> None:
    assert _loop.run(_kind()) == "uvloop"
    assert _loop.run(_kind(), fast=True) == "uvloop"


def test_asking_for_uvloop_without_it_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert _loop.loop_factory() is None
    with pytest.raises(ImportError):
        _loop.loop_factory(True)


@pytest.fixture
def thresholds() -> Iterator[None]:
    kept = gc.get_threshold()
    yield
    gc.set_threshold(*kept)


@pytest.mark.usefixtures("thresholds")
def test_a_runner_collects_less_often_unless_the_process_chose() -> None:
    gc.set_threshold(700, 10, 10)  # Python's default
    _loop.run(_kind(), fast=False)
    assert gc.get_threshold() == _loop.GC_THRESHOLDS
    gc.set_threshold(2_000, 5, 5)  # the application's own
    _loop.run(_kind(), fast=False)
    assert gc.get_threshold() == (2_000, 5, 5)
