"""Rendering an endpoint's answer for the transcript costs what it shows, not what the endpoint
sent (every exchange is rendered when it is recorded, spec 14.2).

Before, a body of one msgpack array of 8 MiB of zeros was rendered item by item before being cut
to 64 KiB: 7.6 s of CPU, with the event loop (and so every case's time limit) stalled, and
870 MB, for each exchange; a hostile endpoint answering every request so made a run take hours.
"""

from __future__ import annotations

from vrmproto.testing._context import MAX_RESPONSE_BYTES
from vrmproto.testing._exchange import default_decode_body


def test_a_huge_array_is_rendered_up_to_the_shown_size() -> None:
    n = MAX_RESPONSE_BYTES - 5
    shown = default_decode_body(b"\xdd" + n.to_bytes(4, "big") + bytes(n))
    assert shown.startswith("msgpack [\n  0,\n")
    assert "more items)\n]" in shown[-200:], shown[-200:]
    assert "more characters" not in shown


def test_a_long_map_is_rendered_up_to_the_shown_size() -> None:
    n = 60_000
    shown = default_decode_body(b"\xdf" + n.to_bytes(4, "big") + bytes(2 * n))
    assert shown.startswith("msgpack {\n  0: 0,")
    assert "more items)\n}" in shown[-200:], shown[-200:]
    assert "more characters" not in shown


def test_a_map_of_millions_of_pairs_is_not_decoded() -> None:
    n = (MAX_RESPONSE_BYTES - 5) // 2
    shown = default_decode_body(b"\xdf" + n.to_bytes(4, "big") + bytes(2 * n))
    assert shown.startswith("(not decodable as msgpack: ValueError:"), shown[:200]
    assert "exceeds max_map_len" in shown


def test_long_json_is_shown_as_sent() -> None:
    body = b"[" + b"0," * (MAX_RESPONSE_BYTES // 2 - 1) + b"0]"
    shown = default_decode_body(body)
    assert shown.startswith("[0,0,0,")
    assert shown.endswith("more characters)")


def test_small_values_render_as_before() -> None:
    shown = default_decode_body(bytes([0x93, 0x01, 0x92, 0x02, 0x03, 0x81, 0xA1, 0x6B, 0xC0]))
    assert shown == "msgpack [\n  1,\n  [\n    2,\n    3,\n  ],\n  {\n    \"k\": null,\n  },\n]"
    dup = bytes([0x82, 0xA1, 0x6B, 0x01, 0xA1, 0x6B, 0x02])
    assert default_decode_body(dup).count("# DUPLICATE KEY") == 2
