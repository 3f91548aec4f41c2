"""One recorded HTTP exchange, and how its bytes are shown to a person.

Every request a case makes through :class:`~vrmproto.testing.CaseContext` is kept as an
:class:`Exchange`: the exact bytes sent and received, so that a failure can be shown byte for
byte and replayed with ``curl``. Bodies are rendered twice: as hex (the truth) and decoded (for
reading). The decoder is pluggable; the default one renders msgpack, JSON and text and falls back
to saying why the bytes could not be decoded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

__all__ = [
    "DecodeBody",
    "Exchange",
    "default_decode_body",
    "hexdump",
]

#: Renders body bytes as readable text. The protocol layer plugs in a decoder that knows the
#: envelope format; :func:`default_decode_body` is used otherwise.
DecodeBody = Callable[[bytes], str]

_MAX_DECODED_CHARS = 64 * 1024
_MAX_DEPTH = 32
_MAX_BIN_SHOWN = 64
#: Longest msgpack map a transcript decodes: each pair costs a tuple, and the longest answer the
#: suite reads (8 MiB) could hold four million of them.
_MAX_MAP_ITEMS = 1 << 16
#: What a rendering keeps of :data:`_MAX_DECODED_CHARS` for the lines it ends with when its
#: budget runs out (the closing brackets of every depth, and each "more items").
_CLOSING_ROOM = _MAX_DEPTH * 80


@dataclass(frozen=True)
class Exchange:
    """One request and its response (or the transport error that replaced the response).

    ``status`` is ``None`` when no response arrived; ``error`` then says why (connection reset,
    timeout, …). Header mappings keep the names as sent and received.
    """

    method: str
    url: str
    request_headers: Mapping[str, str]
    request_body: bytes
    status: int | None
    response_headers: Mapping[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    elapsed_ms: float = 0.0
    error: str | None = None
    request_decoded: str = ""
    response_decoded: str = ""

    @property
    def content_type(self) -> str | None:
        """The request's Content-Type, if it had one."""
        return _header(self.request_headers, "Content-Type")

    @property
    def response_content_type(self) -> str | None:
        """The response's Content-Type, if it had one (parameters stripped, lower case)."""
        value = _header(self.response_headers, "Content-Type")
        return value.split(";", 1)[0].strip().lower() if value else None

    def header(self, name: str) -> str | None:
        """A response header, looked up case-insensitively."""
        return _header(self.response_headers, name)

    def json(self) -> Any:
        """The response body parsed as JSON (raises ``ValueError`` if it is not JSON)."""
        return json.loads(self.response_body)

    def describe(self) -> str:
        """A one-line summary: ``POST http://… -> 413`` or ``… -> connection error: …``."""
        result = str(self.status) if self.status is not None else (self.error or "no response")
        return f"{self.method} {self.url} -> {result}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def hexdump(data: bytes, *, limit: int | None = None) -> str:
    """An ``xxd``-style dump: offset, 16 bytes in hex, and the printable ASCII.

    With ``limit``, only the first ``limit`` bytes are dumped and a final line says how many
    were left out.
    """
    shown = data if limit is None else data[:limit]
    lines = []
    for offset in range(0, len(shown), 16):
        chunk = shown[offset : offset + 16]
        groups = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}: {groups:<39}  {text}")
    if len(shown) < len(data):
        lines.append(f"… {len(data) - len(shown)} more bytes ({len(data)} in all)")
    return "\n".join(lines)


def default_decode_body(data: bytes) -> str:
    """Render body bytes for a person: JSON or text if printable, else msgpack, else a reason.

    msgpack maps are shown with every key they contain, duplicates included (a plain ``dict``
    would silently keep only the last one, hiding exactly the bug a conformance case looks for).
    Never raises.
    """
    if not data:
        return "(empty body)"
    text = _as_printable_text(data)
    if text is not None:
        if len(text) > _MAX_DECODED_CHARS:  # indented, it would only be cut: show it as sent
            return _clip(text)
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: [[[[…]]]] past the stack
            return _clip(text)
        return _clip(json.dumps(parsed, indent=2, ensure_ascii=False))
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False,
                              object_pairs_hook=_MsgpackMap, max_map_len=_MAX_MAP_ITEMS)
    except UnicodeDecodeError:
        try:
            obj = msgpack.unpackb(data, raw=True, strict_map_key=False,
                                  object_pairs_hook=_MsgpackMap, max_map_len=_MAX_MAP_ITEMS)
        except Exception as exc:
            return f"(not decodable as msgpack: {type(exc).__name__}: {exc}; {len(data)} bytes)"
    except Exception as exc:
        return f"(not decodable as msgpack: {type(exc).__name__}: {exc}; {len(data)} bytes)"
    return _clip("msgpack " + _render(obj, 0, _Budget(_MAX_DECODED_CHARS - _CLOSING_ROOM)))


class _MsgpackMap(list[tuple[Any, Any]]):
    """A msgpack map as its list of (key, value) pairs, so duplicates stay visible."""


def _as_printable_text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return text
    return None


def _clip(text: str) -> str:
    if len(text) <= _MAX_DECODED_CHARS:
        return text
    return text[:_MAX_DECODED_CHARS] + f"\n… ({len(text) - _MAX_DECODED_CHARS} more characters)"


@dataclass
class _Budget:
    """Characters a rendering may still produce: past them, a container lists no more items
    (the whole is cut to :data:`_MAX_DECODED_CHARS` anyway), so rendering costs what is shown,
    not the size of what the endpoint sent."""

    left: int

    def take(self, text: str) -> str:
        self.left -= len(text)
        return text


def _items(rendered: Iterator[str], count: int, pad: str, budget: _Budget) -> list[str]:
    items: list[str] = []
    for line in rendered:
        items.append(budget.take(line + "\n")[:-1])
        if budget.left <= 0 and len(items) < count:
            items.append(f"{pad}… ({count - len(items)} more items)")
            break
    return items


def _render(obj: Any, depth: int, budget: _Budget) -> str:
    pad = "  " * (depth + 1)
    end = "  " * depth
    if depth >= _MAX_DEPTH:
        return f"…(nested deeper than {_MAX_DEPTH})"
    if isinstance(obj, _MsgpackMap):
        if not obj:
            return "{}"
        keys = [k for k, _ in obj] if len(obj) < 256 else []
        dup = {repr(k) for k in keys if keys.count(k) > 1}
        pairs = (f"{pad}{_render(key, depth + 1, budget)}: {_render(value, depth + 1, budget)},"
                 + ("  # DUPLICATE KEY" if repr(key) in dup else "") for key, value in obj)
        return "{\n" + "\n".join(_items(pairs, len(obj), pad, budget)) + f"\n{end}}}"
    if isinstance(obj, list):
        if not obj:
            return "[]"
        values = (f"{pad}{_render(v, depth + 1, budget)}," for v in obj)
        return "[\n" + "\n".join(_items(values, len(obj), pad, budget)) + f"\n{end}]"
    if isinstance(obj, bytes):
        shown = obj[:_MAX_BIN_SHOWN].hex()
        more = "…" if len(obj) > _MAX_BIN_SHOWN else ""
        return f"h'{shown}{more}' ({len(obj)} bytes)"
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=False)
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, int | float):
        return repr(obj)
    if isinstance(obj, msgpack.ExtType):
        return f"ext({obj.code}, {_render(obj.data, depth, budget)})"
    return repr(obj)
