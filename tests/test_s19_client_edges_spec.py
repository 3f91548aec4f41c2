"""The bounds the reference agent puts on what a vendor answers are the spec's (§12.3-7,
§12.5-7): the numbers the clauses give are the code's, so that neither drifts alone."""

from __future__ import annotations

import inspect

from test_conformance_coverage import spec_clauses

from vrmproto.client import EndpointClient
from vrmproto.client._delivery import MAX_REPLIES
from vrmproto.client._reconcile import HISTORY_TIMEOUT_S
from vrmproto.client._transport import MAX_HISTORY_ENTRIES


def _default(name: str) -> int:
    value = inspect.signature(EndpointClient).parameters[name].default
    assert isinstance(value, int)
    return value


def test_the_replies_clause_gives_the_agents_bound() -> None:
    text = " ".join(spec_clauses()["§12.3-7"].split())
    assert f"no more than {MAX_REPLIES} replies" in text
    assert f"accepts {MAX_REPLIES} (`MAX_REPLIES`)" in text
    assert f"up to {_default('max_response_bytes') // 2**20} MiB" in text


def test_the_export_clause_gives_the_agents_bounds() -> None:
    text = " ".join(spec_clauses()["§12.5-7"].split())
    assert f"at most {_default('max_history_bytes') // 2**20} MiB" in text
    assert f"{MAX_HISTORY_ENTRIES:,} entries" in text
    assert f"at most {HISTORY_TIMEOUT_S:g} s" in text
