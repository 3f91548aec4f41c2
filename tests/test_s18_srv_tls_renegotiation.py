"""``vrm vendor serve`` over HTTPS refuses a client's TLS 1.2 renegotiation (an alert) rather
than serving it: the endpoint's own TLS layer (``vrmproto/server/_tls.py``, session 18) cannot
write while one is in progress, so a client that started one mid-response had its connection
aborted (seen by s18-vendor-edge). Python's ssl cannot start a renegotiation, so this holds
the context the vendor serves with to the option that makes OpenSSL refuse it."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

from vrmproto.cli._cmd_vendor import _tls
from vrmproto.server._config import parse_vendor_file


def test_the_vendors_tls_context_refuses_renegotiation(tmp_path: Path) -> None:
    issued = trustme.CA().issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    issued.private_key_pem.write_to_path(tmp_path / "key.pem")
    file = parse_vendor_file({"name": "Avis", "server": {"tls_cert": "cert.pem",
                                                         "tls_key": "key.pem"}})  # fmt: skip
    context = _tls(file, tmp_path)
    assert context is not None
    assert context.options & ssl.OP_NO_RENEGOTIATION
