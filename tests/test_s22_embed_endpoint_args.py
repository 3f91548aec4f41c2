"""An ``Endpoint`` whose discovery document no customer could take is refused when it is made
(s22 hunt, §13.1-5, §13.1-6).

Each of these was accepted and served: every customer then refused the document, and the
vendor saw only that nobody came.

- ``discovery_lifetime_ms`` 0 or negative: ``expires`` not later than ``issued`` (§13.1-6),
  and ``Cache-Control: max-age=0`` (or negative); 1.5: ``expires`` a fraction and
  ``max-age=0.0``, where numbers are integers (§13.1-3); 2^53: past the protocol's integers.
- A name (or paths, or terms) making the document larger than 65,536 bytes: a reader must
  refuse it (§13.1-5).
- The same path for the inbox and the history export: one route hid the other, and every
  history request went to the inbox (or the other way round).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from vrmproto._binding import MAX_DISCOVERY_BYTES, verify_discovery
from vrmproto._keys import Identity
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore


def _endpoint(**kw: Any) -> Endpoint:
    return Endpoint(Identity(os.urandom(32)), store=MemoryStore(), clock=lambda: 10**12, **kw)


@pytest.mark.parametrize("lifetime", [0, -5, 1.5, True, 2**53, None])
def test_a_discovery_lifetime_no_document_can_have_is_refused(lifetime: object) -> None:
    with pytest.raises(ValueError, match="discovery_lifetime_ms must be"):
        _endpoint(discovery_lifetime_ms=lifetime)


def test_a_short_discovery_lifetime_still_makes_a_valid_document() -> None:
    endpoint = _endpoint(discovery_lifetime_ms=1)
    body, signature = endpoint.discovery()
    assert verify_discovery(body, signature, now=10**12).expires == 10**12 + 1


def test_a_name_making_the_document_too_large_is_refused() -> None:
    with pytest.raises(ValueError, match=r"65536 bytes \(§13\.1-5\)"):
        _endpoint(name="A" * MAX_DISCOVERY_BYTES)


def test_terms_making_the_document_too_large_are_refused() -> None:
    many = [f"example.term-{n:05d}" for n in range(4000)]
    with pytest.raises(ValueError, match=r"§13\.1-5"):
        _endpoint(policy=ReferencePolicy(accepts_terms=many))


def test_a_long_name_that_fits_is_served() -> None:
    endpoint = _endpoint(name="A" * 60_000)
    body, signature = endpoint.discovery()
    assert len(body) <= MAX_DISCOVERY_BYTES
    assert verify_discovery(body, signature, now=10**12).name == "A" * 60_000


def test_one_path_for_inbox_and_history_is_refused() -> None:
    with pytest.raises(ValueError, match="inbox_path and history_path"):
        _endpoint(inbox_path="/vrm/x", history_path="/vrm/x")
