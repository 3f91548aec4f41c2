"""Shared test configuration: the hypothesis profiles.

Pick one with the environment variable ``VRM_HYPOTHESIS_PROFILE``:

- ``default`` (used when the variable is unset): 50 examples per property, no per-example
  deadline, the ``too_slow`` health check off — the whole suite stays fast.
- ``ci``: the same settings, named separately so CI can be tuned on its own later.
- ``long``: 5000 examples per property, for a soak run before a release::

      VRM_HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/test_properties.py

Nothing else is global: fixtures live with the tests that use them, and the shared hypothesis
strategies are in ``tests/strategies.py``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def _register(name: str, max_examples: int) -> None:
    settings.register_profile(
        name,
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


_register("default", 50)
_register("ci", 50)
_register("long", 5000)
settings.load_profile(os.environ.get("VRM_HYPOTHESIS_PROFILE", "default"))
