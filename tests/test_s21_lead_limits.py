"""A limit the protocol cannot publish is refused when ``Limits`` is made (§13.1-3, §3.3).

Before, only a vendor file's limits were capped (s21b-vendorops): code making ``Limits``
directly could set ``replay_window_ms=10**20``, which the endpoint then published in its
discovery document and overflowed SQLite with — every message answered 500.
"""

from __future__ import annotations

import pytest

from vrmproto import Limits


def test_a_limit_past_the_protocols_integers_is_refused() -> None:
    with pytest.raises(ValueError, match="replay_window_ms must be at most 2"):
        Limits(replay_window_ms=2**53)
    assert Limits(replay_window_ms=2**53 - 1).replay_window_ms == 2**53 - 1
