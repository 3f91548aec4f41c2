"""The protocol's conformance cases (loaded by the runner: every module here registers cases).

Importing this package also teaches the default registry to show envelopes in transcripts the
way a person wants to read them: the envelope, and inside it the header and body decoded.
"""

from __future__ import annotations

from typing import Any

import msgpack

from vrmproto.testing._case import DEFAULT_REGISTRY
from vrmproto.testing._exchange import default_decode_body


def render_envelope(data: bytes) -> str:
    """Decode an envelope's ``hdr`` and ``body`` in place; anything else as the default does."""
    try:
        env: Any = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # a transcript renderer never raises; show the raw form instead
        return default_decode_body(data)
    if type(env) is not dict or not {"hdr", "sig"} <= env.keys():
        return default_decode_body(data)
    parts = [f"envelope with keys {sorted(map(str, env))}"]
    for key in ("hdr", "body"):
        value = env.get(key)
        if isinstance(value, bytes):
            parts.append(f"{key}: {default_decode_body(value)}")
    sig = env.get("sig")
    if isinstance(sig, bytes):
        parts.append(f"sig: {len(sig)} bytes {sig.hex()}")
    return "\n".join(parts)


if DEFAULT_REGISTRY.decode_body is None:
    DEFAULT_REGISTRY.decode_body = render_envelope
