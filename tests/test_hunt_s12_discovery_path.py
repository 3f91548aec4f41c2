"""A zeroconf advertisement's TXT ``path`` names a document on the advertised host (§13.2-5).

``//host/…`` starts with a slash but is not an absolute path (RFC 3986 §4.2: a network-path
reference); joined to ``http://<address>:<port>`` it names a document on ``host``. Before, the
agent fetched the document from there, and showed the advertised address as verified by a
document it never fetched from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from vrmproto._keys import fingerprint
from vrmproto.discovery import SERVICE_TYPE, _parse_info


@dataclass
class Info:
    """What :func:`_parse_info` reads of a resolved ``AsyncServiceInfo``."""

    properties: dict[bytes, bytes | None] = field(default_factory=dict)
    port: int = 8701

    def parsed_addresses(self, _version: object = None) -> list[str]:
        return ["192.168.1.66"]


@pytest.mark.parametrize(("path", "ok"), [
    ("/.well-known/vrm", True),
    ("/shop/.well-known/vrm", True),
    ("//avis.example/.well-known/vrm", False),
    ("//192.168.1.1:80/admin", False),
    (".well-known/vrm", False),
])  # fmt: skip
def test_the_txt_path_stays_on_the_advertised_host(path: str, ok: bool) -> None:
    info = Info({b"txtvers": b"1", b"v": b"1", b"path": path.encode(),
                 b"fp": fingerprint(bytes(32)).encode()})  # fmt: skip
    found = _parse_info(f"Avis.{SERVICE_TYPE}", info)  # type: ignore[arg-type]
    assert found is not None
    assert (found.problem == "") is ok, found.problem
    if ok:
        assert found.document_url.startswith("http://192.168.1.66:8701/")
