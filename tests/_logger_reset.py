"""An autouse fixture for test modules that call ``configure_logging``: it sets the level,
propagation and handlers of the ``vrmproto`` logger, and they are put back after each test, so
that no later test finds request lines enabled (test_speed_paths counts them). Import it into
the test module: ``from _logger_reset import logging_as_it_was``."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    root = logging.getLogger("vrmproto")
    level, propagate, handlers = root.level, root.propagate, list(root.handlers)
    yield
    root.setLevel(level)
    root.propagate = propagate
    root.handlers[:] = handlers
