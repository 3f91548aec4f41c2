"""What a signed problem may repeat of the input it refuses (spec §11.12-1, §9.1-3).

A problem is signed by the receiver about bytes an attacker chose. Its ``detail`` quotes received
input only as a short excerpt with every character outside printable ASCII escaped, and its
``path`` is escaped and bounded too (issue 10, item 4).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, craft, header_for, now_ms, terms

from vrmproto import Identity, encode, open_envelope
from vrmproto._errors import EXCERPT_CHARS, excerpt, printable
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import MemoryStore

VENDOR = Identity(VENDOR_SEED)
#: Attacker text: long, with a newline, an escape, a bidi override and a quote in its first
#: characters, so a cut excerpt still has to escape them.
HOSTILE = "pay\n\x1b[31m\u202eevil\" " + "A" * 900


def _offer_body(who: Identity, **extra: Any) -> bytes:
    body: dict[str, Any] = {"enc_key": who.enc_public_key,
                            "terms": [t.to_wire() for t in terms(*ACCEPTED)]}  # fmt: skip
    body.update(extra)
    return encode(body)


def _hostile_envelopes() -> list[tuple[str, bytes]]:
    me = Identity(os.urandom(32))
    body = _offer_body(me)
    term = terms("vrm.no-tracking")[0].to_wire()
    bad_id = _offer_body(me, terms=[{**term, "id": HOSTILE}])
    bad_param = _offer_body(me, terms=[{**term, "params": {HOSTILE[:60]: 1}}])
    return [
        ("unknown type", craft(me, header_for(me, VENDOR.public_key, body, type=HOSTILE), body)),
        ("unknown header key",
         craft(me, {**header_for(me, VENDOR.public_key, body), HOSTILE: 1}, body)),
        ("bad term id", craft(me, header_for(me, VENDOR.public_key, bad_id), bad_id)),
        ("bad param name", craft(me, header_for(me, VENDOR.public_key, bad_param), bad_param)),
    ]


def _quoted_input(detail: str) -> str:
    """The part of ``detail`` between its first and last double quote (the excerpt)."""
    start, end = detail.find('"'), detail.rfind('"')
    return detail[start + 1 : end] if 0 <= start < end else ""


@pytest.mark.parametrize(("name", "data"), _hostile_envelopes(),
                         ids=[n for n, _ in _hostile_envelopes()])  # fmt: skip
async def test_a_signed_problem_quotes_only_a_short_escaped_excerpt(name: str, data: bytes) -> None:
    endpoint = Endpoint(VENDOR, store=MemoryStore(),
                        policy=ReferencePolicy(accepts_terms=ACCEPTED))  # fmt: skip
    response = await endpoint.handle_inbox(data, client="127.0.0.1")
    assert 400 <= response.status < 500
    problem = open_envelope(response.body, now=now_ms()).body
    for text in (problem.detail, problem.path or ""):
        assert text.isascii() or text.isprintable(), text
        assert not {"\n", "\x1b", "\u202e"} & set(text), text
        assert "A" * (EXCERPT_CHARS + 1) not in text, text  # no more than an excerpt
    assert len(problem.detail) < 200, problem.detail
    assert len(problem.path or "") <= 200


def test_excerpt_is_short_escaped_and_says_it_was_cut() -> None:
    assert EXCERPT_CHARS == 40
    quoted = excerpt(HOSTILE)
    assert quoted.startswith('"pay\\x0a\\x1b[31m\\u202eevil\\" ')
    assert quoted.endswith(f'… ({len(HOSTILE)} characters)')
    assert len(_quoted_input(quoted)) <= EXCERPT_CHARS
    assert _quoted_input(quoted).isascii()
    assert excerpt("gold") == '"gold"'
    assert excerpt(12) == "12"
    assert excerpt(b"\x00" * 10_000) == "<bytes>"


def test_printable_escapes_only_what_cannot_be_shown() -> None:
    assert printable("§4.2-3 ≤ 64") == "§4.2-3 ≤ 64"
    assert printable("a\u202eb\nc") == "a\\u202eb\\x0ac"
