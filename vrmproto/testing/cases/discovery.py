"""The discovery document read as JSON text, not as the object a parser makes of it (§11.3-1,
§13.1-1)."""

from __future__ import annotations

import json
from typing import Any

from vrmproto._binding import WELL_KNOWN_PATH
from vrmproto.testing._case import Level, case
from vrmproto.testing._context import CaseContext

M = Level.MUST


def repeated_keys(text: str) -> list[str]:
    """Every key that some object of the JSON ``text`` holds more than once (after escapes are
    decoded), in the order found; ValueError if ``text`` is not JSON."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                found.append(key)
            seen.add(key)
        return dict(items)

    json.loads(text, object_pairs_hook=pairs)
    return found


@case(id="DISC-009", clause="§11.3-1", level=M, tags=("discovery", "signature"),
      covers=("§13.1-1",),
      requirement="An endpoint MUST NOT write a discovery document in which an object holds the "
      "same key twice: JSON parsers disagree on which one wins, so one signed document would "
      "mean two things.",
      accepts="a document in which no object, the top-level one or one inside it, repeats a "
      "key")
async def discovery_no_repeated_keys(ctx: CaseContext) -> None:
    ex = await ctx.get(WELL_KNOWN_PATH)
    try:
        twice = repeated_keys(ex.response_body.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        ctx.fail(expected="a UTF-8 JSON document", actual=str(exc))
    ctx.expect(not twice, expected="each key once in every object",
               actual=f"repeated keys: {twice}")
