"""``Limits`` takes ints only (§3.3, §13.1-3: every limit is published as an int in the
discovery document). ``nan <= 0`` and ``nan > 2**53 - 1`` are both False, so
``Limits(max_depth=float("nan"))`` was made and published; a float (``1.5``) or a bool
(``True``, an int to Python) too, and a customer refuses such a document (s22-embed's note).
"""

from __future__ import annotations

import pytest

from vrmproto import Limits


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1.5, 16.0, True, "16", None])
def test_a_limit_that_is_no_int_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="max_depth must be an int"):
        Limits(max_depth=value)  # type: ignore[arg-type]


def test_ints_are_taken() -> None:
    assert Limits(max_depth=16).max_depth == 16
